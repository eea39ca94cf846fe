"""The runner applies the sandbox and sub-agent stages of the tool policy: what the model is
offered, and what happens when it calls a tool anyway, per kind of session.

`sandbox.mode: non-main` sandboxes every session but the agent's main one (groups and
sub-agents included); the sandbox stage denies `exec` and the sub-agent stage `write`. No
tool runs here (no node-agent), so no Docker is needed: the policy decides before any node.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import nats
import pytest

from clawmesh.wire import (
    InboundMessage,
    Peer,
    RouteInfo,
    ToolResultEvent,
    TurnEvent,
    TurnFinal,
    TurnRequest,
    decode,
    encode_msgpack,
)
from tests.fakes.models import FakeModelServer, Text, ToolCall
from tests.fixtures.gateway import Gateway, run_gateway, wait_until
from tests.fixtures.sse import sse_events


@pytest.fixture
async def fake() -> AsyncIterator[FakeModelServer]:
    async with FakeModelServer() as server:
        yield server


@pytest.fixture
async def gw(fake: FakeModelServer, nats_url: str, tmp_path: Path) -> AsyncIterator[Gateway]:
    config = {
        "agents": {
            "defaults": {"model": "openai/fake-model", "sandbox": {"mode": "non-main"}},
            "list": [{"id": "main", "default": True, "workspace": str(tmp_path / "ws")}],
        },
        "tools": {
            "sandbox": {"tools": {"deny": ["exec"]}},
            "subagents": {"tools": {"deny": ["write"]}},
        },
        "models": {"providers": {"openai": {"baseUrl": fake.base_url + "/v1", "apiKey": "sk-test"}}},
    }
    async with run_gateway(nats_url, config, tmp_path) as gateway:
        yield gateway


async def _http_turn(gw: Gateway, peer: dict[str, str]) -> list[tuple[str, dict[str, Any]]]:
    async with gw.client() as http:
        r = await http.post(
            "/v1/messages",
            json={"text": "go", "peer": peer},
            headers={"Accept": "text/event-stream"},
        )
    assert r.status_code == 200
    return sse_events(r.text)


async def _subagent_turn(nats_url: str) -> list[Any]:
    """A turn of a sub-agent session (`agent:main:subagent:<id>`), as the router would send it."""
    key = "agent:main:subagent:7d1f0c1e-0000-4000-8000-000000000001"
    nc = await nats.connect(nats_url)
    events: list[Any] = []

    async def on_event(msg: Any) -> None:
        events.append(decode(msg.data, TurnEvent, msg.headers))

    try:
        await nc.subscribe("cm.ev.>", cb=on_event)
        await nc.flush()
        route = RouteInfo(
            agent_id="main",
            session_key=key,
            main_session_key="agent:main:main",
            matched_by="explicit",
            channel="api",
            account_id="default",
        )
        inbound = InboundMessage(id="sub-1", channel="api", text="go", peer=Peer(kind="direct", id="p"))
        data, headers = encode_msgpack(TurnRequest(turn_id="sub-1", seq=1, route=route, inbound=inbound))
        await nc.jetstream().publish("cm.turn.main", data, headers=headers)
        await wait_until(lambda: any(isinstance(e, TurnFinal) for e in events), message="sub-agent final")
    finally:
        await nc.close()
    return events


async def test_each_session_kind_is_offered_its_stages_tools(
    fake: FakeModelServer, gw: Gateway, nats_url: str
) -> None:
    fake.script(Text("main"), Text("group"), Text("sub"))
    await _http_turn(gw, {"kind": "direct", "id": "dev"})  # the main session: not sandboxed
    await _http_turn(gw, {"kind": "group", "id": "g1"})  # a group: sandboxed
    await _subagent_turn(nats_url)  # a sub-agent: sandboxed, and the sub-agent stage
    main, group, sub = (set(r.tool_names) for r in fake.requests)
    assert {"exec", "write", "read"} <= main
    assert "exec" not in group and {"write", "read"} <= group
    assert "exec" not in sub and "write" not in sub and "read" in sub


async def test_a_tool_removed_by_a_stage_is_refused_naming_it(
    fake: FakeModelServer, gw: Gateway, nats_url: str
) -> None:
    fake.script(ToolCall("exec", {"command": "id"}), Text("group done"))
    events = await _http_turn(gw, {"kind": "group", "id": "g1"})
    result = next(d for e, d in events if e == "tool_result")
    assert result["isError"] is True
    assert "removed by tools.sandbox.tools.deny: exec" in result["content"]
    assert events[-1][0] == "final"

    fake.script(ToolCall("write", {"path": "x.txt", "content": "x"}), Text("sub done"))
    sub_events = await _subagent_turn(nats_url)
    refused = next(e for e in sub_events if isinstance(e, ToolResultEvent))
    assert refused.is_error and "removed by tools.subagents.tools.deny: write" in refused.content
    # nothing was written: the refusal came before any node
    assert not (Path(str(gw.config_path.parent)) / "ws" / "x.txt").exists()
