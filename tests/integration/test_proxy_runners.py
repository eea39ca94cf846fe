"""Proxy runners end to end: ingress → router → runner → the backend, on real nats-servers.
`coze` against the fake Coze API (one conversation per session, transcript records, failover to
the agent's fallbacks when Coze is down) and `openclawx` against a second clawmesh gateway
(one remote session per local session)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest_asyncio

from clawmesh.bus import NatsServer
from tests.fakes.coze import CozeHang, CozeReply, FakeCoze
from tests.fakes.serve import serve_app
from tests.fixtures.gateway import Gateway, run_gateway, wait_until
from tests.fixtures.sse import sse_events

TOKEN = "pat_secret_token"


@pytest_asyncio.fixture
async def coze() -> AsyncIterator[tuple[FakeCoze, str]]:
    fake = FakeCoze(token=TOKEN)
    async with serve_app(fake.app) as url:
        yield fake, url


@pytest_asyncio.fixture
async def remote(tmp_path: Path) -> AsyncIterator[Gateway]:
    """Another clawmesh, on its own nats-server: an echo agent."""
    where = tmp_path / "remote"
    where.mkdir()
    server = NatsServer(store_dir=where / "js", work_dir=where, log_file=where / "nats.log")
    await server.start()
    try:
        config = {"agents": {"list": [{"id": "far", "default": True, "model": "echo/x"}]}}
        async with run_gateway(server.url, config, where) as gateway:
            yield gateway
    finally:
        await server.stop()


def _config(coze_url: str, remote_url: str, token_file: Path) -> dict[str, Any]:
    return {
        "agents": {
            "list": [
                {
                    "id": "bot",
                    "default": True,
                    "runnerType": "coze",
                    "coze": {
                        "region": "com",
                        "baseUrl": coze_url,
                        "com": {"botId": "7348293334", "apiKey": "${COZE_TOKEN}"},
                    },
                },
                {
                    "id": "down",
                    "runnerType": "coze",
                    "coze": {
                        "region": "cn",
                        "baseUrl": "http://127.0.0.1:9",
                        "cn": {"botId": "1", "apiKey": "k"},
                    },
                    "model": {"primary": "echo/unused", "fallbacks": ["echo/fallback"]},
                },
                {
                    "id": "hop",
                    "runnerType": "openclawx",
                    "openclawx": {
                        "baseUrl": remote_url + "/v1",
                        "apiKey": {"source": "file", "id": str(token_file)},
                    },
                },
            ]
        }
    }


async def _ask(gw: Gateway, agent: str, text: str, peer: str = "u1") -> list[tuple[str, dict[str, Any]]]:
    async with gw.client() as http:
        r = await http.post(
            "/v1/messages",
            json={"text": text, "agentId": agent, "peer": {"kind": "direct", "id": peer}},
            headers={"Accept": "text/event-stream"},
        )
    assert r.status_code == 200, r.text
    return sse_events(r.text)


async def test_coze_and_openclawx_agents_answer_through_their_backends(
    nats_url: str, tmp_path: Path, coze: tuple[FakeCoze, str], remote: Gateway
) -> None:
    fake, coze_url = coze
    fake.script(CozeReply("hello from coze", chunks=3), CozeReply("again from coze", chunks=2))
    token_file = tmp_path / "remote.token"
    token_file.write_text(f"{remote.token}\n")
    config = _config(coze_url, remote.url, token_file)
    async with run_gateway(nats_url, config, tmp_path, env={"COZE_TOKEN": TOKEN}) as gw:
        first = await _ask(gw, "bot", "hi")
        second = await _ask(gw, "bot", "more")
        hop1 = await _ask(gw, "hop", "over there")
        hop2 = await _ask(gw, "hop", "and back")
        down = await _ask(gw, "down", "anyone?")
    # Coze: deltas streamed as events, one conversation for the session
    assert "".join(d["text"] for e, d in first if e == "delta") == "hello from coze"
    assert first[-1][0] == "final" and first[-1][1]["text"] == "hello from coze"
    assert second[-1][1]["text"] == "again from coze"
    chats = [r for r in fake.requests if r.path == "/v3/chat"]
    assert "conversation_id" not in chats[0].query and chats[1].query.get("conversation_id")
    assert chats[0].headers["authorization"] == f"Bearer {TOKEN}"
    # openclawx: the remote gateway answered, and kept the conversation for our session
    assert hop1[-1][0] == "final" and hop1[-1][1]["text"] == "echo: over there"
    assert hop2[-1][1]["text"] == "echo: and back"
    far = [s for s in await remote.service("runner").store.list_sessions() if s.agent_id == "far"]
    assert len(far) == 1 and far[0].seq == 2 and "openai-user" in far[0].session_key
    # Coze unreachable: the agent's fallback answered, visibly
    failover = next(d for e, d in down if e == "failover")
    assert (failover["fromModel"], failover["toModel"], failover["reason"]) == (
        "coze",
        "echo/fallback",
        "connection",
    )
    assert down[-1][0] == "final" and down[-1][1]["text"] == "echo: anyone?"


async def test_a_cancelled_turn_cancels_the_chat_at_coze(
    nats_url: str, tmp_path: Path, coze: tuple[FakeCoze, str]
) -> None:
    """The turn outlives runtime.turnTimeoutSeconds while Coze keeps the chat open: the runner
    cancels the turn, and the cancellation reaches Coze (`/v3/chat/cancel`)."""
    fake, coze_url = coze
    fake.script(CozeHang())
    config: dict[str, Any] = {
        "runtime": {"turnTimeoutSeconds": 2},
        "agents": {
            "list": [
                {
                    "id": "bot",
                    "default": True,
                    "runnerType": "coze",
                    "coze": {
                        "region": "cn",
                        "baseUrl": coze_url,
                        "cn": {"botId": "7348293334", "apiKey": TOKEN},
                    },
                }
            ]
        },
    }
    async with run_gateway(nats_url, config, tmp_path) as gw:
        events = await _ask(gw, "bot", "take your time")
    assert events[-1][0] == "error" and events[-1][1]["code"] == "TURN_TIMEOUT"
    assert [r.path for r in fake.requests] == ["/v3/chat", "/v3/chat/cancel"]
    chat = fake.requests[1].body
    assert chat is not None and (chat["conversation_id"], chat["chat_id"]) == fake.cancelled[0]


async def test_stop_in_the_chat_cancels_the_chat_at_coze(
    nats_url: str, tmp_path: Path, coze: tuple[FakeCoze, str]
) -> None:
    """`/stop` while a proxy agent's turn waits on Coze: the turn ends stopped and the
    cancellation reaches Coze (`/v3/chat/cancel`), long before any timeout."""
    fake, coze_url = coze
    fake.script(CozeHang())
    config: dict[str, Any] = {
        "agents": {
            "list": [
                {
                    "id": "bot",
                    "default": True,
                    "runnerType": "coze",
                    "coze": {
                        "region": "cn",
                        "baseUrl": coze_url,
                        "cn": {"botId": "7348293334", "apiKey": TOKEN},
                    },
                }
            ]
        },
    }
    async with run_gateway(nats_url, config, tmp_path) as gw:
        running = asyncio.create_task(_ask(gw, "bot", "take your time"))
        await wait_until(
            lambda: any(r.path == "/v3/chat" for r in fake.requests), timeout=30, message="the chat"
        )
        stopped = await _ask(gw, "bot", "/stop")
        events = await asyncio.wait_for(running, 30)
    assert events[-1][0] == "error" and events[-1][1]["code"] == "TURN_STOPPED", events[-1]
    assert stopped[-1][0] == "final" and "aborted" in stopped[-1][1]["text"].lower(), stopped[-1]
    assert [r.path for r in fake.requests] == ["/v3/chat", "/v3/chat/cancel"]
    chat = fake.requests[1].body
    assert chat is not None and (chat["conversation_id"], chat["chat_id"]) == fake.cancelled[0]
