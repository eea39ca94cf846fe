"""clawmesh's session-key, id and routing helpers against OpenClaw 2026.9.6's own functions.

The fixture holds `{input, output}` pairs that `make oracle-fixtures` (scripts/oracle/) recorded
by running the real OpenClaw on generated and adversarial inputs; no node is needed here.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from clawmesh.checks import default_checks
from clawmesh.config import parse_config
from clawmesh.routing import (
    AgentSelectionRequired,
    build_agent_main_session_key,
    build_agent_session_key,
    build_group_history_key,
    classify_session_key_shape,
    derive_session_chat_type,
    get_subagent_depth,
    is_cron_session_key,
    is_subagent_session_key,
    is_valid_agent_id,
    normalize_account_id,
    normalize_agent_id,
    normalize_main_key,
    normalize_optional_account_id,
    parse_agent_session_key,
    resolve_route,
    resolve_thread_session_keys,
    to_agent_store_session_key,
)

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "oracle" / "session_keys.json.gz"


@cache
def _fixture() -> dict[str, Any]:
    with gzip.open(FIXTURE, "rb") as fh:
        loaded: dict[str, Any] = json.loads(fh.read().decode("utf-8", "surrogatepass"))
    return loaded


def _parse(key: Any) -> Any:
    parsed = parse_agent_session_key(key)
    return None if parsed is None else {"agentId": parsed.agent_id, "rest": parsed.rest}


def _thread(p: dict[str, Any]) -> Any:
    use_suffix = p["useSuffix"]
    key, parent = resolve_thread_session_keys(
        p["baseSessionKey"], p["threadId"], p["parentSessionKey"], True if use_suffix is None else use_suffix
    )
    return {"sessionKey": key, "parentSessionKey": parent}


def _build(p: dict[str, Any]) -> Any:
    return build_agent_session_key(
        agent_id=p["agentId"],
        channel=p["channel"],
        account_id=p["accountId"],
        peer=p["peer"],
        dm_scope=p["dmScope"],
        group_scope=p["groupScope"],
        identity_links=p["identityLinks"],
        main_key=p["mainKey"],
    )


# OpenClaw name → the clawmesh function, adapted to the oracle's calling convention.
FUNCTIONS: dict[str, Callable[[Any], Any]] = {
    "normalizeAgentId": normalize_agent_id,
    "isValidAgentId": is_valid_agent_id,
    "normalizeAccountId": normalize_account_id,
    "normalizeOptionalAccountId": normalize_optional_account_id,
    "normalizeMainKey": normalize_main_key,
    "parseAgentSessionKey": _parse,
    "classifySessionKeyShape": classify_session_key_shape,
    "deriveSessionChatTypeFromKey": derive_session_chat_type,
    "getSubagentDepth": get_subagent_depth,
    "isSubagentSessionKey": is_subagent_session_key,
    "isCronSessionKey": is_cron_session_key,
    "resolveThreadSessionKeys": _thread,
    "buildAgentSessionKey": _build,
    "buildAgentMainSessionKey": lambda p: build_agent_main_session_key(p["agentId"], p["mainKey"]),
    "toAgentStoreSessionKey": lambda p: to_agent_store_session_key(
        p["agentId"], p["requestKey"], p["mainKey"]
    ),
    "buildGroupHistoryKey": lambda p: build_group_history_key(
        p["channel"], p["accountId"], p["peerKind"], p["peerId"]
    ),
}


def _run(fn: Callable[[Any], Any], inp: Any) -> Any:
    try:
        return fn(inp)
    except Exception as exc:  # reported as a mismatch, with the input that raised
        return {"raised": repr(exc)}


def _report(name: str, mismatches: list[tuple[Any, Any, Any]], total: int) -> str:
    lines = [f"{name}: {len(mismatches)} of {total} differ from OpenClaw"]
    for inp, want, got in mismatches[:12]:
        lines.append(f"  input={inp!r:.200}\n    openclaw={want!r:.200}\n    clawmesh={got!r:.200}")
    return "\n".join(lines)


def test_fixture_covers_every_function_with_many_cases() -> None:
    data = _fixture()
    assert data["openclaw"] == "2026.9.6"
    assert set(data["functions"]) == set(FUNCTIONS)
    assert sum(len(v) for v in data["functions"].values()) > 10_000
    assert sum(len(r["cases"]) for r in data["routes"]) > 1_000


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_function_matches_openclaw(name: str) -> None:
    cases = _fixture()["functions"][name]
    fn = FUNCTIONS[name]
    mismatches = [(inp, want, got) for inp, want in cases if (got := _run(fn, inp)) != want]
    assert not mismatches, _report(name, mismatches, len(cases))


_ROUTE_FIELDS = (
    "agentId",
    "channel",
    "accountId",
    "sessionKey",
    "mainSessionKey",
    "lastRoutePolicy",
    "matchedBy",
    "dmScope",
    "groupScope",
)


def _route(config: Any, inp: dict[str, Any]) -> Any:
    try:
        route = resolve_route(
            config,
            channel=inp["channel"],
            account_id=inp.get("accountId"),
            peer=inp.get("peer"),
            parent_peer=inp.get("parentPeer"),
            guild_id=inp.get("guildId"),
            team_id=inp.get("teamId"),
            member_role_ids=inp.get("memberRoleIds"),
            dm_scope=inp.get("dmScope"),
            group_scope=inp.get("groupScope"),
            default_agent_id=inp.get("defaultAgentId"),
        )
    except AgentSelectionRequired as exc:
        # OpenClaw throws a plain Error (no code) when the roster is empty
        return {"error": "Error" if exc.message.startswith("No agents configured") else exc.code}
    got = route.to_dict()
    return {k: got[k] for k in _ROUTE_FIELDS}


def test_resolve_route_matches_openclaw_on_generated_configs() -> None:
    mismatches: list[tuple[Any, Any, Any]] = []
    total = 0
    for entry in _fixture()["routes"]:
        config = parse_config(entry["config"], env={}, checks=default_checks())
        for inp, want in entry["cases"]:
            total += 1
            expected = want if "error" in want else {k: want[k] for k in _ROUTE_FIELDS}
            got = _route(config, inp)
            if got != expected:
                mismatches.append(({"config": entry["config"], "input": inp}, expected, got))
    assert not mismatches, _report("resolveAgentRoute", mismatches, total)
