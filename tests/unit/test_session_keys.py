"""Session keys: shapes per dmScope/groupScope, identity links, parsing and classification."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from clawmesh.routing import (
    build_agent_main_session_key,
    build_agent_session_key,
    build_group_history_key,
    build_subagent_session_key,
    classify_session_key_shape,
    derive_last_route_policy,
    derive_session_chat_type,
    get_subagent_depth,
    is_cron_session_key,
    is_subagent_session_key,
    normalize_agent_id,
    parse_agent_session_key,
    resolve_linked_peer_id,
    resolve_thread_session_keys,
    to_agent_store_session_key,
)

DM = {"kind": "direct", "id": "Alice"}


@pytest.mark.parametrize(
    ("scope", "expected"),
    [
        ("main", "agent:main:main"),
        ("per-peer", "agent:main:direct:alice"),
        ("per-channel-peer", "agent:main:telegram:direct:alice"),
        ("per-account-channel-peer", "agent:main:telegram:work:direct:alice"),
    ],
)
def test_dm_keys_per_scope(scope: str, expected: str) -> None:
    key = build_agent_session_key(
        agent_id="Main", channel="Telegram", account_id="Work", peer=DM, dm_scope=scope
    )
    assert key == expected


def test_builder_takes_the_peer_kind_as_given_and_missing_peer_uses_main_key() -> None:
    # OpenClaw's buildAgentSessionKey does not fold `dm` into `direct` (resolve_route does, before
    # it builds the key), and a peer with an empty id is the peer `unknown`; see the oracle fixture.
    assert (
        build_agent_session_key(
            agent_id="a", channel="x", peer={"kind": "dm", "id": "B"}, dm_scope="per-peer"
        )
        == "agent:a:x:dm:b"
    )
    assert (
        build_agent_session_key(agent_id="a", channel="x", peer=None, dm_scope="per-peer") == "agent:a:main"
    )
    assert build_agent_session_key(
        agent_id="a", channel="x", peer={"kind": "direct", "id": " "}, dm_scope="per-peer"
    ) == ("agent:a:direct:unknown")
    assert build_agent_session_key(
        agent_id="a", channel="x", peer={"kind": "direct", "id": " "}, dm_scope="main"
    ) == ("agent:a:main")


def test_main_key_is_honoured_and_lower_cased() -> None:
    assert build_agent_session_key(agent_id="a", channel="x", peer=DM, main_key="Work") == "agent:a:work"
    assert build_agent_main_session_key("A", "  ") == "agent:a:main"


def test_group_keys_have_no_account_and_keep_runtime_kind() -> None:
    group = build_agent_session_key(
        agent_id="a", channel="discord", account_id="bot2", peer={"kind": "group", "id": "G1"}
    )
    room = build_agent_session_key(agent_id="a", channel="discord", peer={"kind": "channel", "id": "C1"})
    assert group == "agent:a:discord:group:g1"
    assert room == "agent:a:discord:channel:c1"


def test_empty_group_id_becomes_unknown_not_main() -> None:
    assert build_agent_session_key(agent_id="a", channel="slack", peer={"kind": "group", "id": ""}) == (
        "agent:a:slack:group:unknown"
    )


def test_group_scope_main_folds_rooms_into_main() -> None:
    key = build_agent_session_key(
        agent_id="a",
        channel="discord",
        peer={"kind": "channel", "id": "c1"},
        group_scope="main",
        main_key="home",
    )
    assert key == "agent:a:home"


def test_signal_groups_and_matrix_rooms_keep_their_case() -> None:
    signal = build_agent_session_key(agent_id="a", channel="signal", peer={"kind": "group", "id": "AbC+/="})
    matrix = build_agent_session_key(
        agent_id="a", channel="matrix", peer={"kind": "channel", "id": "!RoOm:Server.org"}
    )
    signal_dm = build_agent_session_key(
        agent_id="a", channel="signal", peer={"kind": "direct", "id": "+AB"}, dm_scope="per-peer"
    )
    assert signal == "agent:a:signal:group:AbC+/="
    assert matrix == "agent:a:matrix:channel:!RoOm:Server.org"
    assert signal_dm == "agent:a:direct:+ab"
    assert parse_agent_session_key(signal) == ("a", "signal:group:AbC+/=")
    # the thread marker is folded; a Matrix thread's event id keeps its case (OpenClaw 2026.9.6)
    assert parse_agent_session_key("AGENT:A:Matrix:Group:!Xy:S:Thread:$EvT1") == (
        "a",
        "matrix:group:!Xy:S:thread:$EvT1",
    )


def test_identity_links_apply_only_when_dm_scope_is_not_main() -> None:
    links = {"alice": ["telegram:111", "discord:Alice#1"], "bob": ["222"]}
    tg = {"kind": "direct", "id": "111"}
    assert build_agent_session_key(
        agent_id="m", channel="telegram", peer=tg, dm_scope="per-peer", identity_links=links
    ) == ("agent:m:direct:alice")
    assert build_agent_session_key(
        agent_id="m", channel="telegram", peer=tg, dm_scope="main", identity_links=links
    ) == ("agent:m:main")
    assert (
        build_agent_session_key(
            agent_id="m",
            channel="discord",
            peer={"kind": "direct", "id": "alice#1"},
            dm_scope="per-channel-peer",
            identity_links=links,
        )
        == "agent:m:discord:direct:alice"
    )
    # bare ids match on any channel
    assert resolve_linked_peer_id(links, "slack", "222") == "bob"
    assert resolve_linked_peer_id(links, "slack", "333") is None


def test_identity_links_first_canonical_in_object_order_wins() -> None:
    links = {"first": ["x:1"], "second": ["x:1", "1"]}
    assert resolve_linked_peer_id(links, "x", "1") == "first"


def test_thread_suffix_is_lower_cased() -> None:
    assert resolve_thread_session_keys("agent:a:slack:channel:c1", " TS.123 ") == (
        "agent:a:slack:channel:c1:thread:ts.123",
        None,
    )
    assert resolve_thread_session_keys("agent:a:main", "") == ("agent:a:main", None)
    assert resolve_thread_session_keys("k", "T", "parent", use_suffix=False) == ("k", "parent")


@pytest.mark.parametrize(
    ("key", "parsed"),
    [
        ("agent:ops:main", ("ops", "main")),
        ("AGENT:Ops:Main", ("ops", "main")),
        ("agent: ops :cron:job", ("ops", "cron:job")),
        ("agent:ops:cron:", ("ops", "cron:")),
        ("agent:voice:room::part", ("voice", "room::part")),
        ("agent:ops::main", None),
        ("agent::ops:main", None),
        ("agent:ops:", None),
        ("agent:ops", None),
        ("main", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_agent_session_key(key: str | None, parsed: tuple[str, str] | None) -> None:
    assert parse_agent_session_key(key) == parsed


@pytest.mark.parametrize(
    ("key", "shape"),
    [
        (None, "missing"),
        ("  ", "missing"),
        ("agent:a:main", "agent"),
        ("agent:a", "malformed_agent"),
        ("main", "legacy_or_alias"),
    ],
)
def test_classify_session_key_shape(key: str | None, shape: str) -> None:
    assert classify_session_key_shape(key) == shape


@pytest.mark.parametrize(
    ("key", "depth"),
    [
        (None, 0),
        ("agent:a:main", 0),
        ("agent:a:subagent:u1", 1),
        ("agent:a:subagent:u1:subagent:u2", 2),
        ("subagent:u1", 1),
        ("subagent:u1:subagent:u2", 2),
    ],
)
def test_subagent_depth(key: str | None, depth: int) -> None:
    assert get_subagent_depth(key) == depth


def test_subagent_and_cron_classification() -> None:
    child = build_subagent_session_key("Worker")
    assert child.startswith("agent:worker:subagent:") and is_subagent_session_key(child)
    assert is_subagent_session_key("subagent:x")
    assert not is_subagent_session_key("agent:a:main")
    assert is_cron_session_key("agent:a:cron:job1:run:r1")
    assert not is_cron_session_key("cron:job1")


@pytest.mark.parametrize(
    ("key", "kind"),
    [
        ("agent:a:discord:group:g1", "group"),
        ("agent:a:discord:channel:c1", "channel"),
        ("agent:a:telegram:direct:b", "direct"),
        ("agent:a:whatsapp:dm:b", "direct"),
        ("agent:a:main", "unknown"),
        ("discord:acct:guild-1:channel-2", "channel"),
        (None, "unknown"),
    ],
)
def test_derive_session_chat_type(key: str | None, kind: str) -> None:
    assert derive_session_chat_type(key) == kind


def test_last_route_policy_and_store_keys() -> None:
    assert derive_last_route_policy("agent:a:main", "agent:a:main") == "main"
    assert derive_last_route_policy("agent:a:direct:b", "agent:a:main") == "session"
    assert to_agent_store_session_key("A", "main") == "agent:a:main"
    assert to_agent_store_session_key("A", "agent:x:Y") == "agent:x:y"  # agent keys are normalised
    assert to_agent_store_session_key("A", "Discord:Group:1") == "agent:a:discord:group:1"
    assert build_group_history_key("Discord", None, "channel", " c1 ") == "discord:default:channel:c1"


_ids = st.text(
    alphabet=st.characters(min_codepoint=33, max_codepoint=126, blacklist_characters=":"),
    min_size=1,
    max_size=20,
)


@given(
    agent=st.text(max_size=30),
    channel=st.sampled_from(["telegram", "discord", "slack", "signal", "matrix", "api"]),
    account=st.one_of(st.none(), st.text(max_size=20)),
    kind=st.sampled_from(["direct", "dm", "group", "channel"]),
    peer=_ids,
    scope=st.sampled_from(["main", "per-peer", "per-channel-peer", "per-account-channel-peer"]),
)
def test_built_keys_parse_back(
    agent: str, channel: str, account: str | None, kind: str, peer: str, scope: str
) -> None:
    key = build_agent_session_key(
        agent_id=agent, channel=channel, account_id=account, peer={"kind": kind, "id": peer}, dm_scope=scope
    )
    parsed = parse_agent_session_key(key)
    assert parsed is not None
    assert parsed.agent_id == normalize_agent_id(agent)
    assert f"agent:{parsed.agent_id}:{parsed.rest}" == key
    assert classify_session_key_shape(key) == "agent"
