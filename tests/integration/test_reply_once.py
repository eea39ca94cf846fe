"""A caller gets exactly one final answer per turn, even when the turn's final event arrives
more than once. That happens when a turn is replayed (a runner died after emitting `final`
but before acking; the next runner answers again from the completion record): events are core
NATS messages and are not deduplicated.

The test plays router and runner itself: it reads the inbound message ingress stored, and
sends the decision and then duplicated final events to that message's reply subject, back to
back, as a replay would.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import nats
import pytest

from clawmesh.wire import (
    InboundMessage,
    RouteDecision,
    TextDeltaEvent,
    TurnError,
    TurnFinal,
    TurnStarted,
    decode,
    encode_json,
)
from tests.fixtures.gateway import Gateway, run_gateway, wait_until
from tests.fixtures.sse import sse_events

CONFIG = {"agents": {"defaults": {"model": "echo/x"}, "list": [{"id": "main", "default": True}]}}


@pytest.fixture
async def ingress(nats_url: str, tmp_path: Path) -> Any:
    async with run_gateway(nats_url, CONFIG, tmp_path, services=("ingress",)) as gw:
        yield gw


async def _replay_twice(nats_url: str, tag: str, texts: tuple[str, str]) -> None:
    """Wait for the inbound message (`tag`: its message id or peer id), then answer it like a
    runner whose turn was replayed:
    a decision, a start, some text, `final` twice (the replay's possibly different), an error."""
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()

        async def stored() -> InboundMessage | None:
            try:
                msg = await js.get_last_msg("CM_INBOUND", "cm.in.api.default")
            except Exception:
                return None
            inbound = decode(msg.data, InboundMessage, msg.headers)
            mine = tag in (inbound.message_id, inbound.peer.id if inbound.peer else None)
            return inbound if mine else None

        inbound: InboundMessage = await wait_until(stored, timeout=30, message="the inbound message")
        assert inbound.reply_subject
        stamp = {"turn_id": inbound.id, "agent_id": "main", "session_key": "agent:main:main"}
        events: list[Any] = [
            RouteDecision(
                turn_id=inbound.id,
                channel="api",
                account_id="default",
                agent_id="main",
                session_key="agent:main:main",
                matched_by="default",
                seq=1,
            ),
            TurnStarted(**stamp, seq=1, model="echo/x", runner="r1"),
            TextDeltaEvent(**stamp, text=texts[0]),
            TurnFinal(**stamp, text=texts[0], model="echo/x"),
            TurnStarted(**stamp, seq=1, model="echo/x", runner="r2"),
            TurnFinal(**stamp, text=texts[1], model="echo/x"),
            TurnError(**stamp, code="LATE", message="a late error"),
        ]
        for event in events:
            data, headers = encode_json(event)
            await nc.publish(inbound.reply_subject, data, headers=headers)
        await nc.flush()
    finally:
        await nc.close()


async def test_sse_caller_gets_one_final(ingress: Gateway, nats_url: str) -> None:
    async with ingress.client() as http:
        request = asyncio.create_task(
            http.post(
                "/v1/messages",
                json={"text": "hi", "messageId": "sse-1"},
                headers={"Accept": "text/event-stream"},
            )
        )
        await _replay_twice(nats_url, "sse-1", ("first answer", "replayed answer"))
        r = await asyncio.wait_for(request, 60)
    assert r.status_code == 200
    events = sse_events(r.text)
    kinds = [e for e, _ in events]
    assert kinds.count("final") == 1 and "error" not in kinds, kinds
    assert kinds[-1] == "final" and events[-1][1]["text"] == "first answer"


async def test_waiting_caller_gets_the_first_final(ingress: Gateway, nats_url: str) -> None:
    async with ingress.client() as http:
        request = asyncio.create_task(
            http.post("/v1/messages?wait=60", json={"text": "hi", "messageId": "wait-1"})
        )
        await _replay_twice(nats_url, "wait-1", ("first answer", "replayed answer"))
        r = await asyncio.wait_for(request, 60)
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "done" and r.json()["text"] == "first answer"


async def test_openai_stream_gets_one_completion(ingress: Gateway, nats_url: str) -> None:
    async with ingress.client() as http:
        request = asyncio.create_task(
            http.post(
                "/v1/chat/completions",
                json={
                    "model": "clawmesh/main",
                    "stream": True,
                    "messages": [{"role": "user", "content": "hi"}],
                    "user": "oa-1",
                },
            )
        )
        await _replay_twice(nats_url, "oa-1", ("first answer", "replayed answer"))
        r = await asyncio.wait_for(request, 60)
    assert r.status_code == 200, r.text
    lines = [line[6:] for line in r.text.splitlines() if line.startswith("data: ")]
    assert lines.count("[DONE]") == 1 and lines[-1] == "[DONE]", lines
    chunks = [json.loads(line) for line in lines[:-1]]
    stops = [c for c in chunks if c["choices"] and c["choices"][0].get("finish_reason") == "stop"]
    assert len(stops) == 1
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == "first answer"
