"""explain_route: plain-words reasons, and the same outcome as resolve_route for any config."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from clawmesh.checks import default_checks
from clawmesh.config import parse_config
from clawmesh.routing import AgentSelectionRequired, explain_route, resolve_route


def _config(bindings: list[dict[str, Any]]):  # type: ignore[no-untyped-def]
    agents = {"list": [{"id": "main", "default": True}, {"id": "a"}, {"id": "b"}]}
    return parse_config({"agents": agents, "bindings": bindings}, env={}, checks=default_checks())


def _reasons(expl, path: str) -> list[str]:  # type: ignore[no-untyped-def]
    return [r for t in expl.tiers for c in t.candidates if c.path == path for r in c.reasons]


def test_case_sensitive_id_is_explained() -> None:
    config = _config(
        [{"agentId": "a", "match": {"channel": "discord", "peer": {"kind": "channel", "id": "ABC"}}}]
    )
    expl = explain_route(config, channel="discord", peer={"kind": "channel", "id": "abc"})
    assert "peer id 'ABC' ≠ 'abc': ids match case-sensitively" in _reasons(expl, "$.bindings[0]")
    assert expl.route is not None and expl.route.matched_by == "default"


def test_missing_account_is_explained() -> None:
    config = _config([{"agentId": "a", "match": {"channel": "telegram"}}])
    expl = explain_route(config, channel="telegram", account_id="work")
    reasons = _reasons(expl, "$.bindings[0]")
    assert any("binding has no accountId, so it only matches account 'default'" in r for r in reasons)
    text = expl.render()
    assert "binding has no accountId" in text and "⇒ agent 'main' via default" in text


def test_winner_and_shadowed_match_are_marked() -> None:
    config = _config(
        [
            {"agentId": "a", "match": {"channel": "discord", "guildId": "g"}},
            {"agentId": "b", "match": {"channel": "discord", "guildId": "g"}},
        ]
    )
    expl = explain_route(config, channel="discord", guild_id="g")
    guild = next(t for t in expl.tiers if t.matched_by == "binding.guild")
    assert [c.chosen for c in guild.candidates] == [True, False]
    assert "comes first in config order" in guild.candidates[1].reasons[0]
    assert expl.to_dict()["route"]["agentId"] == "a"


def test_agent_selection_required_is_reported() -> None:
    config = parse_config({"agents": {"list": [{"id": "a"}, {"id": "b"}]}}, env={}, checks=default_checks())
    expl = explain_route(config, channel="slack")
    assert expl.route is None and expl.error is not None
    assert "AGENT_SELECTION_REQUIRED" in expl.render()


_channels = st.sampled_from(["discord", "slack"])
_ids = st.sampled_from(["x", "X", "y", "*", "1"])


@st.composite
def _binding(draw: st.DrawFn) -> dict[str, Any]:
    match: dict[str, Any] = {"channel": draw(_channels)}
    if draw(st.booleans()):
        match["accountId"] = draw(st.sampled_from(["*", "work", "Work", "default", ""]))
    if draw(st.booleans()):
        match["peer"] = {
            "kind": draw(st.sampled_from(["direct", "group", "channel", "dm"])),
            "id": draw(_ids),
        }
    if draw(st.booleans()):
        match["guildId"] = draw(st.sampled_from(["g1", "g2"]))
    if draw(st.booleans()):
        match["teamId"] = draw(st.sampled_from(["t1", "t2"]))
    if draw(st.booleans()):
        match["roles"] = draw(st.lists(st.sampled_from(["r1", "r2"]), max_size=2))
    return {"agentId": draw(st.sampled_from(["main", "a", "b"])), "match": match}


@settings(max_examples=300, deadline=None)
@given(
    bindings=st.lists(_binding(), max_size=8),
    channel=_channels,
    account=st.sampled_from([None, "work", "home"]),
    peer=st.one_of(
        st.none(),
        st.fixed_dictionaries({"kind": st.sampled_from(["direct", "group", "channel"]), "id": _ids}),
    ),
    parent=st.one_of(
        st.none(), st.fixed_dictionaries({"kind": st.sampled_from(["group", "channel"]), "id": _ids})
    ),
    guild=st.sampled_from([None, "g1", "g2"]),
    team=st.sampled_from([None, "t1"]),
    roles=st.lists(st.sampled_from(["r1", "r2", "r3"]), max_size=2),
)
def test_explain_agrees_with_resolve(
    bindings: list[dict[str, Any]],
    channel: str,
    account: str | None,
    peer: dict[str, str] | None,
    parent: dict[str, str] | None,
    guild: str | None,
    team: str | None,
    roles: list[str],
) -> None:
    config = _config(bindings)
    kwargs = dict(
        channel=channel,
        account_id=account,
        peer=peer,
        parent_peer=parent,
        guild_id=guild,
        team_id=team,
        member_role_ids=roles,
    )
    expl = explain_route(config, **kwargs)  # type: ignore[arg-type]
    try:
        route = resolve_route(config, **kwargs)  # type: ignore[arg-type]
    except AgentSelectionRequired:
        route = None
    # explain_route walks the tiers itself (to say something about every binding): the binding it
    # marks as chosen, in the tier it marks, must be the one resolve_route picked.
    chosen = [(t.matched_by, c.path) for t in expl.tiers for c in t.candidates if c.chosen]
    assert len(chosen) <= 1
    if route is None:
        assert expl.error is not None
    elif route.matched_by == "default":
        assert chosen == []
    else:
        assert chosen == [(route.matched_by, f"$.bindings[{route.binding_index}]")]
        assert [c.agent_id for t in expl.tiers for c in t.candidates if c.chosen] == [route.agent_id]
    chosen = [(t.matched_by, c.path) for t in expl.tiers for c in t.candidates if c.chosen]
    if route is not None and route.binding_index is not None:
        assert chosen == [(route.matched_by, f"$.bindings[{route.binding_index}]")]
    elif route is not None:
        assert chosen == [] and route.matched_by == "default"
