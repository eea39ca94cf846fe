"""`runnerType: a2a` end to end: a clawmesh agent whose turns run at ANOTHER clawmesh gateway's
A2A endpoint (its own nats-server), found by the agent's base URL (card discovery, streamed) or
called at its JSON-RPC endpoint (no card there: blocking SendMessage); one remote conversation
per local session; `/stop` while the remote agent works (its `CancelTask` stops the remote turn
too); a remote task that fails, a wrong
token, and an unreachable agent (the local agent's fallback answers). And the same against
a2a-sdk 1.3.0's own server (v1, v0.3, `/stop` → `CancelTask`)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import nats
import pytest_asyncio

from clawmesh.bus import NatsServer
from clawmesh.sessions import TxAssistant
from clawmesh.wire import TurnError, TurnEvent, decode
from tests.fakes.a2a_agents import SdkAgent
from tests.fakes.models import FakeModelServer, Gate, HTTPError
from tests.fakes.serve import serve_app
from tests.fixtures.gateway import Gateway, run_gateway, wait_until
from tests.fixtures.sse import sse_events


@pytest_asyncio.fixture
async def model() -> AsyncIterator[FakeModelServer]:
    async with FakeModelServer(validate=False) as fake:
        yield fake


@pytest_asyncio.fixture
async def remote(tmp_path: Path, model: FakeModelServer) -> AsyncIterator[Gateway]:
    """Another clawmesh, on its own nats-server: `far` echoes, `slow` and `broken` ask the
    fake model (scripted per test)."""
    where = tmp_path / "remote"
    where.mkdir()
    server = NatsServer(store_dir=where / "js", work_dir=where, log_file=where / "nats.log")
    await server.start()
    try:
        config = {
            "agents": {
                "list": [
                    {"id": "far", "default": True, "model": "echo/x"},
                    {"id": "slow", "model": "openai/m-slow"},
                    {"id": "broken", "model": "openai/m-broken"},
                ]
            },
            "models": {"providers": {"openai": {"baseUrl": model.base_url + "/v1", "apiKey": "sk-test"}}},
        }
        async with run_gateway(server.url, config, where) as gateway:
            yield gateway
    finally:
        await server.stop()


def _config(remote: Gateway) -> dict[str, Any]:
    def a2a(agent_id: str, url: str, token: str = "${FAR_TOKEN}", **more: Any) -> dict[str, Any]:
        return {"id": agent_id, "runnerType": "a2a", "a2a": {"url": url, "token": token}, **more}

    return {
        "agents": {
            "list": [
                a2a("hop", f"{remote.url}/a2a/far"),  # the agent's base URL: its card is below it
                a2a("rpc", f"{remote.url}/a2a/far/v1"),  # its JSON-RPC endpoint: no card there
                a2a("slow", f"{remote.url}/a2a/slow/.well-known/agent-card.json"),
                a2a("broken", f"{remote.url}/a2a/broken"),
                a2a("intruder", f"{remote.url}/a2a/far", token="not-the-token"),
                a2a(
                    "down",
                    "http://127.0.0.1:9/a2a/v1",
                    model={"primary": "echo/unused", "fallbacks": ["echo/fallback"]},
                ),
            ]
        }
    }


async def _ask(
    gw: Gateway, agent: str, text: str, seen: asyncio.Event | None = None
) -> list[tuple[str, dict[str, Any]]]:
    """The turn's events; `seen` is set once its first delta arrived."""
    body = ""
    async with (
        gw.client(timeout=90) as http,
        http.stream(
            "POST",
            "/v1/messages",
            json={"text": text, "agentId": agent, "peer": {"kind": "direct", "id": "u1"}},
            headers={"Accept": "text/event-stream"},
        ) as r,
    ):
        async for chunk in r.aiter_text():
            body += chunk
            if seen is not None and "event: delta" in body:
                seen.set()
    assert r.status_code == 200, body
    return sse_events(body)


async def _remote_sessions(remote: Gateway, agent: str) -> list[Any]:
    return [s for s in await remote.service("runner").store.list_sessions() if s.agent_id == agent]


async def test_turns_run_at_another_gateways_a2a_agent_streamed_or_not(
    nats_url: str, tmp_path: Path, remote: Gateway
) -> None:
    env = {"FAR_TOKEN": remote.token or ""}
    async with run_gateway(nats_url, _config(remote), tmp_path, env=env) as gw:
        first = await _ask(gw, "hop", "over there")
        second = await _ask(gw, "hop", "and back")
        blocking = await _ask(gw, "rpc", "no stream please")
        runner = gw.service("runner")
        local = {s.agent_id: s.session_key for s in await runner.store.list_sessions()}
        contexts = {
            agent: {
                e.backend.get("session")
                for e in await runner.store.history(agent, key, limit=50)
                if isinstance(e, TxAssistant)
            }
            for agent, key in local.items()
        }
        far_before = {s.session_key: s.seq for s in await _remote_sessions(remote, "far")}
        await _ask(gw, "hop", "/new")
        renewed = await _ask(gw, "hop", "a fresh start")
    # found by its card: streamed, the deltas are the reply
    assert first[-1] == ("final", first[-1][1]) and first[-1][1]["text"] == "echo: over there"
    assert "".join(d["text"] for e, d in first if e == "delta") == "echo: over there"
    assert second[-1][1]["text"] == "echo: and back"
    # the endpoint itself: one blocking SendMessage, the reply in the final event
    assert blocking[-1][0] == "final" and blocking[-1][1]["text"] == "echo: no stream please"
    # one remote conversation per local session: the context its first turn started, kept in
    # the local transcript
    assert [len(contexts["hop"]), len(contexts["rpc"])] == [1, 1], contexts
    (hop_context,), (rpc_context,) = contexts["hop"], contexts["rpc"]
    assert far_before == {f"agent:far:a2a:{hop_context}": 2, f"agent:far:a2a:{rpc_context}": 1}
    # after /new the local session starts a new remote conversation
    assert renewed[-1][1]["text"] == "echo: a fresh start"
    far = {s.session_key: s.seq for s in await _remote_sessions(remote, "far")}
    assert len(far) == 3 and {k: far[k] for k in far_before} == far_before


async def test_stop_ends_the_turn_while_the_remote_agent_works(
    nats_url: str, tmp_path: Path, remote: Gateway, model: FakeModelServer
) -> None:
    never = asyncio.Event()
    model.script("m-slow", Gate(never))
    env = {"FAR_TOKEN": remote.token or ""}
    remote_errors: list[TurnError] = []

    async def on_remote_event(msg: Any) -> None:
        event = decode(msg.data, TurnEvent, msg.headers)
        if isinstance(event, TurnError):
            remote_errors.append(event)

    far_nc = await nats.connect(remote.nats_url)
    try:
        await far_nc.subscribe("cm.ev.>", cb=on_remote_event)
        await far_nc.flush()
        async with run_gateway(nats_url, _config(remote), tmp_path, env=env) as gw:
            running = asyncio.create_task(_ask(gw, "slow", "take your time"))
            await wait_until(lambda: model.requests, timeout=60, message="the remote agent's model call")
            stopped = await _ask(gw, "slow", "/stop")
            events = await asyncio.wait_for(running, 60)
            # the local turn's CancelTask stopped the remote gateway's turn too, as /stop there would
            remote_stopped = await wait_until(
                lambda: remote_errors, timeout=60, message="the remote turn ended"
            )
    finally:
        await far_nc.close()
    assert events[-1][0] == "error" and events[-1][1]["code"] == "TURN_STOPPED", events[-1]
    assert stopped[-1][0] == "final" and "aborted" in stopped[-1][1]["text"].lower(), stopped[-1]
    assert [e.code for e in remote_stopped] == ["TURN_STOPPED"]
    assert remote_stopped[0].session_key.startswith("agent:slow:a2a:")


async def test_a_failing_remote_a_wrong_token_and_an_unreachable_agent(
    nats_url: str, tmp_path: Path, remote: Gateway, model: FakeModelServer
) -> None:
    model.script("m-broken", HTTPError(400, message="this request is malformed"))
    env = {"FAR_TOKEN": remote.token or ""}
    async with run_gateway(nats_url, _config(remote), tmp_path, env=env) as gw:
        broken = await _ask(gw, "broken", "please work")
        intruder = await _ask(gw, "intruder", "let me in")
        down = await _ask(gw, "down", "anyone?")
    # the remote task failed: the user is told why, from the remote's status message
    kind, error = broken[-1]
    assert kind == "error" and error["code"] == "MODEL_ERROR", broken[-1]
    assert "a2a: the A2A agent at" in error["message"] and "failed the task" in error["message"]
    assert "this request is malformed" in error["message"]
    # the remote gateway refused the token: an auth error, the token not shown
    kind, error = intruder[-1]
    assert kind == "error" and "HTTP 401" in error["message"] and "not-the-token" not in str(error)
    assert "a2a.token" in error.get("hint", ""), error
    # nobody there: the agent's fallback answered, visibly
    failover = next(d for e, d in down if e == "failover")
    assert (failover["fromModel"], failover["toModel"], failover["reason"]) == (
        "a2a",
        "echo/fallback",
        "connection",
    )
    assert down[-1][0] == "final" and down[-1][1]["text"] == "echo: anyone?"


async def test_against_a2a_sdks_own_server_v1_and_v03_and_stop_cancels_its_task(
    nats_url: str, tmp_path: Path
) -> None:
    """The reference implementation (a2a-sdk 1.3.0's server): streamed over v1, over v0.3 when
    its card is a v0.3 one, and `/stop` reaches its executor as `CancelTask`."""
    current, legacy = SdkAgent(token="sdk-token"), SdkAgent(legacy_card=True, token="sdk-token")
    async with serve_app(current.app) as current_url, serve_app(legacy.app) as legacy_url:
        current.base, legacy.base = current_url, legacy_url
        token = {"source": "env", "id": "SDK_TOKEN"}
        config = {
            "agents": {
                "list": [
                    {"id": "sdk", "runnerType": "a2a", "a2a": {"url": current_url, "token": token}},
                    {"id": "old", "runnerType": "a2a", "a2a": {"url": legacy_url, "token": token}},
                ]
            }
        }
        async with run_gateway(nats_url, config, tmp_path, env={"SDK_TOKEN": "sdk-token"}) as gw:
            v1 = await _ask(gw, "sdk", "hello reference")
            v03 = await _ask(gw, "old", "hello legacy")
            first_words = asyncio.Event()
            running = asyncio.create_task(_ask(gw, "sdk", "hang in there", seen=first_words))
            await asyncio.wait_for(first_words.wait(), 60)  # the task's "working on it", streamed
            stopped = await _ask(gw, "sdk", "/stop")
            events = await asyncio.wait_for(running, 60)
    for reply, text in ((v1, "echo: hello reference"), (v03, "echo: hello legacy")):
        assert reply[-1][0] == "final" and reply[-1][1]["text"] == text, reply[-1]
        assert "".join(d["text"] for e, d in reply if e == "delta") == text
    assert [c.method for c in legacy.calls] == ["message/stream"]
    assert events[-1][0] == "error" and events[-1][1]["code"] == "TURN_STOPPED", events[-1]
    assert stopped[-1][0] == "final" and "aborted" in stopped[-1][1]["text"].lower()
    # the cancellation reached the remote executor
    assert [c.method for c in current.calls] == ["SendStreamingMessage"] * 2 + ["CancelTask"]
    assert current.cancelled == [current.calls[-1].params["id"]]
