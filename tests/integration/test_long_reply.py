"""A long reply streamed in tiny pieces reaches clients as a bounded number of delta events
(ingress → router → runner → fake OpenAI model streaming ~20,000 chunks), with the exact text."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from clawmesh_runner.coalesce import FLUSH_AFTER, FLUSH_CHARS
from tests.fakes.models import FakeModelServer, Text
from tests.fixtures.gateway import run_gateway, wait_until
from tests.fixtures.sse import sse_events

pytestmark = pytest.mark.slow

CHUNKS = 20_000


async def test_a_100kb_reply_of_20000_chunks_is_a_bounded_number_of_events(
    nats_url: str, nc: Any, tmp_path: Path
) -> None:
    reply = "".join(f"word{i % 10} " for i in range(CHUNKS))[:100_000]  # 100 KB, 5 chars a chunk
    async with FakeModelServer() as fake:
        fake.script(Text(reply, chunks=CHUNKS))
        config = {
            "agents": {"defaults": {"model": "openai/fake-model"}, "list": [{"id": "main", "default": True}]},
            "models": {"providers": {"openai": {"baseUrl": fake.base_url + "/v1", "apiKey": "sk-test"}}},
        }
        on_bus: list[str] = []
        on_reply: list[str] = []

        async def bus(msg: Any) -> None:
            on_bus.append(json.loads(msg.data)["type"])

        async def replies(msg: Any) -> None:
            on_reply.append(json.loads(msg.data).get("type", "route"))

        async with run_gateway(nats_url, config, tmp_path) as gw:
            await nc.subscribe("cm.ev.>", cb=bus)
            await nc.subscribe(gw.service("ingress").reply_subject, cb=replies)
            await nc.flush()
            started = time.monotonic()
            async with gw.client(timeout=120) as http:
                r = await http.post(
                    "/v1/messages",
                    json={"text": "a long one please"},
                    headers={"Accept": "text/event-stream"},
                )
            elapsed = time.monotonic() - started
            assert r.status_code == 200, r.text
            await wait_until(lambda: "final" in on_bus, message="final event on cm.ev")

    events = sse_events(r.text)
    assert events[-1][0] == "final"
    assert "".join(d["text"] for e, d in events if e == "delta") == events[-1][1]["text"] == reply
    # one event per full buffer, per timer expiry (at most one per FLUSH_AFTER), the first, the last
    bound = len(reply) // FLUSH_CHARS + int(elapsed / FLUSH_AFTER) + 2
    deltas_on_bus = on_bus.count("delta")
    print(
        f"\n{CHUNKS} model chunks, {len(reply)} chars in {elapsed:.2f}s: {deltas_on_bus} delta events "
        f"on cm.ev (of {len(on_bus)}), {on_reply.count('delta')} on the reply subject (of {len(on_reply)})"
    )
    assert deltas_on_bus <= bound
