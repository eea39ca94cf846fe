"""resolve_route: OpenClaw (latest) precedence, matching rules and default-agent election."""

from __future__ import annotations

from typing import Any

import pytest

from clawmesh.checks import default_checks
from clawmesh.config import ConfigError, parse_config
from clawmesh.routing import AGENT_SELECTION_REQUIRED, AgentSelectionRequired, resolve_route


def cfg(bindings: list[dict[str, Any]], agents: list[str] | None = ("main", "a", "b", "c"), **extra: Any):  # type: ignore[no-untyped-def]
    data: dict[str, Any] = {"bindings": bindings, **extra}
    if agents is not None:
        data.setdefault("agents", {"list": [{"id": a, "default": a == "main"} for a in agents]})
    return parse_config(data, env={}, checks=default_checks())


def b(
    agent: str, channel: str = "discord", session: dict[str, str] | None = None, **match: Any
) -> dict[str, Any]:
    binding: dict[str, Any] = {"agentId": agent, "match": {"channel": channel, **match}}
    if session is not None:
        binding["session"] = session
    return binding


PEER = {"kind": "channel", "id": "c1"}


def test_peer_beats_every_other_tier() -> None:
    config = cfg(
        [
            b("a", accountId="*"),
            b("b", guildId="g1"),
            b("c", peer={"kind": "channel", "id": "c1"}),
        ]
    )
    route = resolve_route(config, channel="discord", peer=PEER, guild_id="g1")
    assert (route.agent_id, route.matched_by) == ("c", "binding.peer")


@pytest.mark.parametrize(
    ("kwargs", "agent", "matched_by"),
    [
        (
            {
                "peer": {"kind": "channel", "id": "c1"},
                "guild_id": "g1",
                "member_role_ids": ["r1"],
                "team_id": "t1",
            },
            "a",
            "binding.peer",
        ),
        (
            {
                "peer": {"kind": "channel", "id": "t9"},
                "parent_peer": {"kind": "channel", "id": "p1"},
                "guild_id": "g1",
                "member_role_ids": ["r1"],
            },
            "b",
            "binding.peer.parent",
        ),
        (
            {"peer": {"kind": "group", "id": "zz"}, "guild_id": "g1", "member_role_ids": ["r1"]},
            "c",
            "binding.peer.wildcard",
        ),
        (
            {"peer": {"kind": "direct", "id": "zz"}, "guild_id": "g1", "member_role_ids": ["r1"]},
            "a",
            "binding.guild+roles",
        ),
        (
            {"peer": {"kind": "direct", "id": "zz"}, "guild_id": "g1", "member_role_ids": ["nope"]},
            "b",
            "binding.guild",
        ),
        ({"peer": {"kind": "direct", "id": "zz"}, "team_id": "t1"}, "c", "binding.team"),
        ({"peer": {"kind": "direct", "id": "zz"}}, "a", "binding.account"),
        ({"peer": {"kind": "direct", "id": "zz"}, "account_id": "other"}, "b", "binding.channel"),
    ],
)
def test_each_tier_in_order(kwargs: dict[str, Any], agent: str, matched_by: str) -> None:
    config = cfg(
        [
            b("b", accountId="*"),  # channel tier, listed first on purpose
            b("a"),  # account tier (default account only)
            b("c", teamId="t1"),
            b("b", guildId="g1"),
            b("a", guildId="g1", roles=["r1"]),
            b("c", peer={"kind": "channel", "id": "*"}),
            b("b", peer={"kind": "channel", "id": "p1"}),
            b("a", peer={"kind": "channel", "id": "c1"}),
        ]
    )
    route = resolve_route(config, channel="discord", **kwargs)
    assert (route.agent_id, route.matched_by) == (agent, matched_by)


def test_default_tier_when_nothing_matches() -> None:
    route = resolve_route(cfg([b("a", channel="slack")]), channel="discord", peer=PEER)
    assert (route.agent_id, route.matched_by, route.binding_index) == ("main", "default", None)


def test_peer_with_guild_is_never_a_guild_wide_fallback() -> None:
    # OpenClaw #14752: peer + guildId only matches in the peer tier, and only in that guild.
    config = cfg([b("a", peer={"kind": "channel", "id": "c1"}, guildId="g1")])
    assert resolve_route(config, channel="discord", peer=PEER, guild_id="g1").agent_id == "a"
    assert resolve_route(config, channel="discord", peer=PEER, guild_id="g2").matched_by == "default"
    assert (
        resolve_route(
            config, channel="discord", peer={"kind": "channel", "id": "c2"}, guild_id="g1"
        ).matched_by
        == "default"
    )


def test_group_and_channel_kinds_are_interchangeable_but_direct_is_not() -> None:
    config = cfg([b("a", peer={"kind": "group", "id": "x"}), b("b", peer={"kind": "direct", "id": "y"})])
    assert resolve_route(config, channel="discord", peer={"kind": "channel", "id": "x"}).agent_id == "a"
    assert resolve_route(config, channel="discord", peer={"kind": "group", "id": "x"}).agent_id == "a"
    assert (
        resolve_route(config, channel="discord", peer={"kind": "direct", "id": "x"}).matched_by == "default"
    )
    assert resolve_route(config, channel="discord", peer={"kind": "group", "id": "y"}).matched_by == "default"


def test_runtime_dm_kind_is_direct() -> None:
    # OpenClaw #22730
    config = cfg([b("a", channel="whatsapp", peer={"kind": "direct", "id": "u1"})])
    route = resolve_route(config, channel="whatsapp", peer={"kind": "dm", "id": "u1"})
    assert (route.agent_id, route.matched_by) == ("a", "binding.peer")


def test_binding_dm_kind_is_direct() -> None:
    config = cfg([b("a", peer={"kind": "dm", "id": "u1"})])
    assert resolve_route(config, channel="discord", peer={"kind": "direct", "id": "u1"}).agent_id == "a"


def test_wildcard_peer_respects_kind() -> None:
    config = cfg([b("a", peer={"kind": "direct", "id": "*"}), b("b", peer={"kind": "group", "id": "*"})])
    assert resolve_route(config, channel="discord", peer={"kind": "direct", "id": "q"}).agent_id == "a"
    assert resolve_route(config, channel="discord", peer={"kind": "channel", "id": "q"}).agent_id == "b"
    assert (
        resolve_route(config, channel="discord", peer={"kind": "channel", "id": "q"}).matched_by
        == "binding.peer.wildcard"
    )


def test_parent_peer_tier_comes_before_wildcard() -> None:
    config = cfg(
        [b("a", peer={"kind": "channel", "id": "*"}), b("b", peer={"kind": "channel", "id": "parent"})]
    )
    route = resolve_route(
        config,
        channel="discord",
        peer={"kind": "channel", "id": "thread1"},
        parent_peer={"kind": "channel", "id": "parent"},
    )
    assert (route.agent_id, route.matched_by) == ("b", "binding.peer.parent")


def test_parent_tier_skipped_when_parent_id_is_empty() -> None:
    config = cfg([b("b", peer={"kind": "channel", "id": "p"})])
    route = resolve_route(
        config,
        channel="discord",
        peer={"kind": "channel", "id": "t"},
        parent_peer={"kind": "channel", "id": "  "},
    )
    assert route.matched_by == "default"


def test_parent_match_uses_parent_scope_for_other_fields() -> None:
    config = cfg([b("b", peer={"kind": "channel", "id": "p"}, guildId="g1")])
    parent = {"kind": "channel", "id": "p"}
    assert (
        resolve_route(
            config, channel="discord", peer={"kind": "channel", "id": "t"}, parent_peer=parent, guild_id="g1"
        ).agent_id
        == "b"
    )
    assert (
        resolve_route(
            config, channel="discord", peer={"kind": "channel", "id": "t"}, parent_peer=parent, guild_id="g2"
        ).matched_by
        == "default"
    )


def test_numeric_ids_match_their_string_form() -> None:
    config = cfg([b("a", peer={"kind": "channel", "id": 123}), b("b", guildId=456)])
    assert resolve_route(config, channel="discord", peer={"kind": "channel", "id": "123"}).agent_id == "a"
    assert resolve_route(config, channel="discord", peer={"kind": "channel", "id": 123}).agent_id == "a"
    assert (
        resolve_route(config, channel="discord", peer={"kind": "channel", "id": 2**70}, guild_id=456).agent_id
        == "b"
    )
    assert (
        resolve_route(
            config, channel="discord", peer={"kind": "channel", "id": " 9 "}, guild_id=" 456 "
        ).agent_id
        == "b"
    )


def test_ids_match_case_sensitively_but_keys_are_lower_cased() -> None:
    config = cfg([b("a", peer={"kind": "channel", "id": "abc"})], session={"dmScope": "per-peer"})
    assert (
        resolve_route(config, channel="discord", peer={"kind": "channel", "id": "ABC"}).matched_by
        == "default"
    )
    upper = resolve_route(config, channel="discord", peer={"kind": "channel", "id": "ABC"})
    lower = resolve_route(config, channel="discord", peer={"kind": "channel", "id": "abc"})
    assert upper.session_key == "agent:main:discord:channel:abc"
    assert lower.session_key == "agent:a:discord:channel:abc"


def test_roles_are_any_of_and_exact() -> None:
    config = cfg([b("a", guildId="g", roles=["mod", "admin"])])
    assert (
        resolve_route(config, channel="discord", guild_id="g", member_role_ids=["x", "admin"]).agent_id == "a"
    )
    assert (
        resolve_route(config, channel="discord", guild_id="g", member_role_ids=["Admin"]).matched_by
        == "default"
    )
    assert (
        resolve_route(config, channel="discord", guild_id="g", member_role_ids=[" admin"]).matched_by
        == "default"
    )
    assert resolve_route(config, channel="discord", guild_id="g").matched_by == "default"


def test_empty_roles_mean_no_roles_and_land_in_guild_tier() -> None:
    config = cfg([b("a", guildId="g", roles=[])])
    route = resolve_route(config, channel="discord", guild_id="g", member_role_ids=["r"])
    assert (route.agent_id, route.matched_by) == ("a", "binding.guild")


def test_roles_without_guild_land_in_account_tier_and_still_need_a_role() -> None:
    config = cfg([b("a", roles=["r1"]), b("b", accountId="*")])
    with_role = resolve_route(config, channel="discord", guild_id="g", member_role_ids=["r1"])
    without = resolve_route(config, channel="discord", guild_id="g", member_role_ids=["r2"])
    assert (with_role.agent_id, with_role.matched_by) == ("a", "binding.account")
    assert (without.agent_id, without.matched_by) == ("b", "binding.channel")


def test_guild_roles_tier_beats_guild_tier_regardless_of_order() -> None:
    config = cfg([b("b", guildId="g"), b("a", guildId="g", roles=["r"])])
    assert resolve_route(config, channel="discord", guild_id="g", member_role_ids=["r"]).agent_id == "a"


def test_guild_roles_tier_needs_member_roles() -> None:
    config = cfg([b("a", guildId="g", roles=["r"]), b("b", guildId="g")])
    assert resolve_route(config, channel="discord", guild_id="g").agent_id == "b"


def test_team_binding_with_guild_needs_both() -> None:
    config = cfg([b("a", guildId="g", teamId="t")])
    assert resolve_route(config, channel="slack", team_id="t").matched_by == "default"
    config = cfg([b("a", channel="slack", teamId="t")])
    assert resolve_route(config, channel="slack", team_id="t").matched_by == "binding.team"


def test_omitted_account_id_means_literal_default_account() -> None:
    config = cfg([b("a", channel="telegram")], channels={"telegram": {"defaultAccount": "work"}})
    assert resolve_route(config, channel="telegram").agent_id == "a"
    assert resolve_route(config, channel="telegram", account_id="default").agent_id == "a"
    assert resolve_route(config, channel="telegram", account_id="work").matched_by == "default"


def test_binding_account_id_is_normalised() -> None:
    config = cfg([b("a", channel="telegram", accountId="Bot Main")])
    route = resolve_route(config, channel="telegram", account_id="bot-main")
    assert (route.agent_id, route.account_id) == ("a", "bot-main")
    assert resolve_route(config, channel="telegram", account_id="BOT MAIN").agent_id == "a"


def test_channel_is_trimmed_and_case_insensitive() -> None:
    config = cfg([b("a", channel=" Telegram ")])
    route = resolve_route(config, channel="TELEGRAM ")
    assert (route.agent_id, route.channel) == ("a", "telegram")


def test_star_binding_listed_first_beats_account_binding_in_same_tier() -> None:
    config = cfg(
        [
            b("a", accountId="*", peer={"kind": "channel", "id": "c1"}),
            b("b", accountId="work", peer={"kind": "channel", "id": "c1"}),
        ]
    )
    assert resolve_route(config, channel="discord", account_id="work", peer=PEER).agent_id == "a"
    flipped = cfg(
        [
            b("b", accountId="work", peer={"kind": "channel", "id": "c1"}),
            b("a", accountId="*", peer={"kind": "channel", "id": "c1"}),
        ]
    )
    assert resolve_route(flipped, channel="discord", account_id="work", peer=PEER).agent_id == "b"
    assert resolve_route(flipped, channel="discord", account_id="home", peer=PEER).agent_id == "a"


def test_first_binding_in_config_order_wins_within_a_tier() -> None:
    config = cfg([b("b", guildId="g"), b("a", guildId="g")])
    assert resolve_route(config, channel="discord", guild_id="g").agent_id == "b"


def test_account_tier_beats_channel_tier_even_when_listed_later() -> None:
    config = cfg([b("b", accountId="*"), b("a", accountId="work")])
    assert resolve_route(config, channel="discord", account_id="work").agent_id == "a"


def test_unknown_binding_agent_is_rejected_at_load() -> None:
    with pytest.raises(ConfigError) as err:
        cfg([b("ghost")])
    assert "$.bindings[0].agentId" in str(err.value)
    assert "unknown agent 'ghost'" in str(err.value)


def test_main_binding_is_honoured_even_when_not_in_roster() -> None:
    config = cfg([b("main")], agents=["a", "b"])
    assert resolve_route(config, channel="discord").agent_id == "main"


def test_roster_lookup_is_normalised() -> None:
    config = parse_config(
        {"agents": {"list": [{"id": "Ops Team", "default": True}]}, "bindings": [b("ops-team")]},
        env={},
        checks=default_checks(),
    )
    assert resolve_route(config, channel="discord").agent_id == "ops-team"


def test_without_roster_any_agent_id_is_accepted_and_default_is_main() -> None:
    config = cfg([b("Some Agent")], agents=None)
    assert resolve_route(config, channel="discord").agent_id == "some-agent"
    assert resolve_route(config, channel="slack").agent_id == "main"


def test_sole_agent_is_the_default() -> None:
    config = cfg([], agents=["solo"])
    assert resolve_route(config, channel="x").agent_id == "solo"


def test_several_agents_without_owner_require_selection() -> None:
    config = parse_config({"agents": {"list": [{"id": "a"}, {"id": "b"}]}}, env={}, checks=default_checks())
    with pytest.raises(AgentSelectionRequired) as err:
        resolve_route(config, channel="telegram", account_id="bot1")
    assert err.value.code == AGENT_SELECTION_REQUIRED == "AGENT_SELECTION_REQUIRED"
    assert "Add a channel-wide binding for telegram:bot1" in str(err.value)
    # a matching binding still routes
    config = parse_config(
        {
            "agents": {"list": [{"id": "a"}, {"id": "b"}]},
            "bindings": [b("b", channel="telegram", accountId="*")],
        },
        env={},
        checks=default_checks(),
    )
    assert resolve_route(config, channel="telegram", account_id="bot1").agent_id == "b"


def test_two_defaults_are_a_config_error() -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(
            {"agents": {"list": [{"id": "a", "default": True}, {"id": "b", "default": True}]}},
            env={},
            checks=default_checks(),
        )
    assert "more than one agent is marked default" in str(err.value)


def test_explicit_ownership_uses_system_agent() -> None:
    data = {
        "agents": {
            "ownership": "explicit",
            "defaults": {"systemAgent": {"agentId": "b"}},
            "list": [{"id": "a"}, {"id": "b"}],
        }
    }
    assert resolve_route(parse_config(data, env={}, checks=default_checks()), channel="x").agent_id == "b"
    no_system = {"agents": {"ownership": "explicit", "list": [{"id": "a"}, {"id": "b"}]}}
    with pytest.raises(AgentSelectionRequired):
        resolve_route(parse_config(no_system, env={}, checks=default_checks()), channel="x")


def test_caller_supplied_default_agent() -> None:
    config = parse_config({"agents": {"list": [{"id": "a"}, {"id": "b"}]}}, env={}, checks=default_checks())
    assert resolve_route(config, channel="x", default_agent_id="B").agent_id == "b"
    with pytest.raises(AgentSelectionRequired):
        resolve_route(config, channel="x", default_agent_id="ghost")


def test_entries_roster_form() -> None:
    config = parse_config(
        {
            "agents": {"entries": {"home": {"default": True}, "work": {}}},
            "bindings": [b("work", channel="slack")],
        },
        env={},
        checks=default_checks(),
    )
    assert config.agent_ids == ("home", "work")
    assert resolve_route(config, channel="slack").agent_id == "work"
    assert resolve_route(config, channel="x").agent_id == "home"


def test_session_scopes_from_config_binding_and_call() -> None:
    config = cfg(
        [b("a", channel="telegram", accountId="*", session={"dmScope": "per-account-channel-peer"})],
        session={"dmScope": "per-peer", "mainKey": "Home"},
    )
    dm = {"kind": "direct", "id": "U1"}
    bound = resolve_route(config, channel="telegram", account_id="Work", peer=dm, dm_scope="main")
    assert (
        bound.session_key == "agent:a:telegram:work:direct:u1"
        and bound.dm_scope == "per-account-channel-peer"
    )
    unbound = resolve_route(config, channel="slack", peer=dm)
    assert unbound.session_key == "agent:main:direct:u1"
    call = resolve_route(config, channel="slack", peer=dm, dm_scope="main")
    assert call.session_key == "agent:main:home" == call.main_session_key
    assert call.last_route_policy == "main" and unbound.last_route_policy == "session"


def test_group_scope_main_and_per_binding_override() -> None:
    config = cfg(
        [b("a", channel="discord", accountId="*", session={"groupScope": "per-group"})],
        session={"groupScope": "main"},
    )
    assert resolve_route(config, channel="discord", peer=PEER).session_key == "agent:a:discord:channel:c1"
    route = resolve_route(config, channel="slack", peer=PEER)
    assert route.session_key == "agent:main:main" and route.group_scope == "main"


def test_identity_links_used_in_route_keys() -> None:
    config = cfg([], session={"dmScope": "per-peer", "identityLinks": {"alice": ["telegram:1", "discord:2"]}})
    a = resolve_route(config, channel="telegram", peer={"kind": "direct", "id": "1"})
    b_ = resolve_route(config, channel="discord", peer={"kind": "direct", "id": "2"})
    assert a.session_key == b_.session_key == "agent:main:direct:alice"


def test_to_dict_uses_openclaw_keys() -> None:
    route = resolve_route(cfg([]), channel="x")
    assert set(route.to_dict()) == {
        "agentId",
        "channel",
        "accountId",
        "sessionKey",
        "mainSessionKey",
        "lastRoutePolicy",
        "matchedBy",
        "dmScope",
        "groupScope",
    }


def test_acp_bindings_and_empty_channels_are_ignored() -> None:
    config = cfg([{"type": "acp", "agentId": "a", "match": {"channel": "discord"}}, b("a", channel=" ")])
    assert resolve_route(config, channel="discord").matched_by == "default"
    assert any("ACP" in w.message for w in config.warnings)


def test_repeated_inputs_hit_the_cache_and_unhashable_inputs_still_work() -> None:
    config = cfg([b("a", peer={"kind": "channel", "id": "c1"})])
    first = resolve_route(config, channel="discord", peer=PEER)
    assert resolve_route(config, channel="discord", peer=PEER) is first
    odd = resolve_route(
        config, channel="discord", peer={"kind": "channel", "id": "c1"}, member_role_ids=[["unhashable"]]
    )  # type: ignore[list-item]
    assert odd.agent_id == "a"


def test_many_accounts_do_not_grow_the_index() -> None:
    config = cfg([b("a", channel="telegram", accountId="*")])
    for i in range(3000):
        assert resolve_route(config, channel="telegram", account_id=f"acct{i}").agent_id == "a"
    from clawmesh.routing import route_index

    index = route_index(config)
    assert list(index.buckets["telegram"]) == ["*"]
    assert len(index.cache) <= 4096


def test_the_route_cache_keeps_recently_used_inputs() -> None:
    """The cache is bounded and evicts the least recently used input, not the oldest insert."""
    from clawmesh.routing import route_index
    from clawmesh.routing._resolve import _CACHE_LIMIT

    config = cfg([b("a", channel="telegram", accountId="*")])
    hot = resolve_route(config, channel="telegram", account_id="hot")
    cold = resolve_route(config, channel="telegram", account_id="cold")
    for i in range(3 * _CACHE_LIMIT):
        resolve_route(config, channel="telegram", account_id=f"acct{i}")
        if i % 100 == 0:  # a busy account keeps being asked for while strangers come and go
            assert resolve_route(config, channel="telegram", account_id="hot") is hot
    assert len(route_index(config).cache) == _CACHE_LIMIT
    assert resolve_route(config, channel="telegram", account_id="hot") is hot
    assert resolve_route(config, channel="telegram", account_id="cold") is not cold


def test_a_rosterless_config_routes_to_the_bound_agent() -> None:
    # resolve_route takes a parsed Config only (it no longer parses mappings itself)
    config = parse_config({"bindings": [b("x")]}, env={}, checks=default_checks())
    assert resolve_route(config, channel="discord").agent_id == "x"
