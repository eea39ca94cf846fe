"""Publishing to a stream survives the stream being unavailable for a while (a leader change:
the server is gone, or no stream answers): the publish is retried with the same Nats-Msg-Id
within the configured window, stored once, and a caller's retry with the same messageId never
creates a second turn. Past the window, ingress answers 503 with Retry-After."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import Any

import nats
import pytest
from nats.js.api import StreamConfig

from clawmesh.bus import Layout, NatsServer, connect, provision, publish_retrying
from tests.fixtures.gateway import run_gateway, wait_until

pytestmark = pytest.mark.slow

BODY = {"text": "hello", "peer": {"kind": "direct", "id": "ann"}, "messageId": "m-1"}


def _config(window: float) -> dict[str, Any]:
    return {
        "agents": {"defaults": {"model": "echo/x"}, "list": [{"id": "main", "default": True}]},
        "runtime": {"publishRetrySeconds": window},
    }


async def test_a_publish_outlasts_a_server_restart_and_is_stored_once(tmp_path: Path) -> None:
    store = tmp_path / "js"
    first = await NatsServer(store_dir=store, work_dir=tmp_path).start()
    port = first.client_port
    nc = await connect(first.url, name="publisher", retry_forever=True)
    second: NatsServer | None = None
    try:
        js = nc.jetstream()
        await js.add_stream(StreamConfig(name="T", subjects=["t.>"], duplicate_window=120.0))
        await first.stop()  # the stream's (only) server is gone
        counters: Counter[str] = Counter()
        headers = {"Nats-Msg-Id": "once"}
        publishing = asyncio.create_task(
            publish_retrying(js, "t.x", b"payload", headers, within=60, counters=counters)
        )
        await wait_until(lambda: counters["publish_retries"] >= 1, message="a failed try")
        assert not publishing.done()
        second = await NatsServer(store_dir=store, work_dir=tmp_path, port=port).start()
        ack = await publishing
        # (a try nats-py buffered while reconnecting may be the one stored: then this one's
        # answer is `duplicate`; either way the message is stored once)
        assert ack.stream == "T" and ack.seq == 1
        again = await publish_retrying(js, "t.x", b"payload", headers, within=60)
        assert again.duplicate and again.seq == ack.seq
        assert (await js.stream_info("T")).state.messages == 1
    finally:
        await nc.close()
        if second is not None:
            await second.stop()


async def test_ingress_keeps_trying_while_the_inbound_stream_is_unavailable(
    nats_url: str, tmp_path: Path
) -> None:
    async with run_gateway(nats_url, _config(60), tmp_path, services=("ingress",)) as gw:
        nc = await nats.connect(nats_url)
        js = nc.jetstream()
        await js.delete_stream("CM_INBOUND")  # no stream answers, as during a leader election
        counters = gw.service("ingress").ctx.counters
        async with gw.client() as http:
            posting = asyncio.create_task(http.post("/v1/messages", json=BODY, timeout=120))
            await wait_until(lambda: counters["publish_retries"] >= 1, message="a failed try")
            assert not posting.done()
            await provision(js, Layout())  # the stream is back (a new leader)
            accepted = await posting
            assert accepted.status_code == 202, accepted.text
            # the caller's retry of the same message: the same turn, not a second one
            again = await http.post("/v1/messages", json=BODY)
            assert again.status_code == 200 and again.json()["duplicate"] is True
            assert again.json()["turnId"] == accepted.json()["turnId"]
        assert (await js.stream_info("CM_INBOUND")).state.messages == 1
        await nc.close()


async def test_ingress_answers_503_with_retry_after_past_the_window(nats_url: str, tmp_path: Path) -> None:
    async with run_gateway(nats_url, _config(0.3), tmp_path, services=("ingress",)) as gw:
        nc = await nats.connect(nats_url)
        await nc.jetstream().delete_stream("CM_INBOUND")
        async with gw.client() as http:
            refused = await http.post("/v1/messages", json=BODY)
        assert refused.status_code == 503
        assert int(refused.headers["Retry-After"]) >= 1
        assert refused.json()["error"]["code"] == "unavailable"
        assert gw.service("ingress").ctx.counters["publish_retries"] >= 1
        await nc.close()
