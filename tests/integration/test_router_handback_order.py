"""A batch the router cannot store (CM_TURNS unavailable past the publish retry window) is
handed back so that it is still routed before any later message of its sessions: a message
handed back with a delay let a later one of its session be numbered first (the chaos run of
issue 18 saw replies 124, 126, 127, 125)."""

from __future__ import annotations

import logging
from pathlib import Path

import nats
import pytest

from clawmesh.wire import TurnRequest, decode
from tests.fixtures.gateway import run_gateway, wait_until

pytestmark = pytest.mark.slow

CONFIG = {
    "agents": {"list": [{"id": "main", "default": True, "model": "echo/x"}]},
    "runtime": {"publishRetrySeconds": 0.2},
}


async def test_a_handed_back_batch_keeps_its_place(
    nats_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="clawmesh.router")
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    body = {"peer": {"kind": "direct", "id": "u8"}}
    try:
        async with (
            run_gateway(nats_url, CONFIG, tmp_path, services=("ingress", "router")) as gw,
            gw.client() as http,
        ):
            r = await http.post("/v1/messages", json={**body, "text": "m1", "messageId": "m1"})
            assert r.status_code == 202, r.text
            await wait_until(
                lambda: js.stream_info("CM_TURNS"), timeout=30, message="CM_TURNS with the first turn"
            )
            await wait_until(lambda: _count(js, "CM_TURNS", 1), timeout=30, message="the first turn routed")
            turns_config = (await js.stream_info("CM_TURNS")).config
            await js.delete_stream("CM_TURNS")  # storing turns fails until it is back
            r = await http.post("/v1/messages", json={**body, "text": "m2", "messageId": "m2"})
            assert r.status_code == 202, r.text
            await wait_until(
                lambda: any("handing them back" in rec.getMessage() for rec in caplog.records),
                timeout=30,
                message="the router handing m2 back",
            )
            await js.add_stream(turns_config)
            r = await http.post("/v1/messages", json={**body, "text": "m3", "messageId": "m3"})
            assert r.status_code == 202, r.text
            await wait_until(lambda: _count(js, "CM_TURNS", 2), timeout=30, message="m2 and m3 routed")
            turns = []
            for seq in (1, 2):
                msg = await js.get_msg("CM_TURNS", seq)
                turns.append(decode(msg.data, TurnRequest, msg.headers))
            assert [(t.inbound.text, t.seq) for t in turns] == [("m2", 2), ("m3", 3)]
    finally:
        await nc.close()


async def _count(js: object, stream: str, n: int) -> bool:
    info = await js.stream_info(stream)  # type: ignore[attr-defined]
    return bool(info.state.messages >= n)
