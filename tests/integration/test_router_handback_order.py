"""A batch the router cannot store (CM_TURNS unavailable past the publish retry window) is
handed back so that it is still routed before any later message of its sessions: a message
handed back with a delay let a later one of its session be numbered first (the chaos run of
issue 18 saw replies 124, 126, 127, 125)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import nats
import pytest
from nats.aio.msg import Msg

from clawmesh.wire import TurnRequest, decode
from tests.fixtures.gateway import run_gateway, wait_until

pytestmark = pytest.mark.slow

CONFIG: dict[str, Any] = {
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
            turns = await _first_turns(js, 2)
            assert [(t.inbound.text, t.seq) for t in turns] == [("m2", 2), ("m3", 3)]
    finally:
        await nc.close()


async def _first_turns(js: Any, n: int) -> list[TurnRequest]:
    """The first `n` turns stored in CM_TURNS, in the order the router published them."""
    turns = []
    for seq in range(1, n + 1):
        msg = await js.get_msg("CM_TURNS", seq)
        turns.append(decode(msg.data, TurnRequest, msg.headers))
    return turns


async def _count(js: object, stream: str, n: int) -> bool:
    info = await js.stream_info(stream)  # type: ignore[attr-defined]
    return bool(info.state.messages >= n)


async def test_a_hand_back_lost_on_the_way_still_keeps_its_place(
    nats_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A hand-back (nak) is a plain publish: lost while the consumer's leader moves, it leaves
    the message pending until its ack wait while newer ones are delivered. The router holds
    the newer ones back until the handed-back one is redelivered (a 240 s chaos run with 8
    partitions numbered three sessions' messages out of order without this)."""
    from clawmesh_router.app import Router

    number, retry = Router._number, Router._retry_later
    failed: list[str] = []
    lost: list[str] = []

    async def failing_once(self: Router, routed: list[Any]) -> None:
        if any(r.inbound.text == "m1" for r in routed) and not failed:
            failed.append("m1")
            raise TimeoutError("the sessions bucket is away")  # m1 gets no number
        await number(self, routed)

    async def losing_once(self: Router, msg: Msg, exc: Exception, *, delay: float | None = None) -> None:
        if b"m1" in msg.data and not lost:
            lost.append("m1")  # the nak never reaches JetStream
            return
        await retry(self, msg, exc, delay=delay)

    monkeypatch.setattr(Router, "_number", failing_once)
    monkeypatch.setattr(Router, "_retry_later", losing_once)
    # the caller is answered at once ("queued"), not when m1 is routed
    config = {**CONFIG, "runtime": {**CONFIG["runtime"], "turnLeaseSeconds": 3, "routeWaitSeconds": 0.1}}
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    body = {"peer": {"kind": "direct", "id": "u9"}}
    try:
        async with (
            run_gateway(nats_url, config, tmp_path, services=("ingress", "router")) as gw,
            gw.client() as http,
        ):
            r = await http.post("/v1/messages", json={**body, "text": "m1", "messageId": "m1"})
            assert r.status_code == 202, r.text
            await wait_until(lambda: lost, timeout=30, message="m1's hand-back lost")
            r = await http.post("/v1/messages", json={**body, "text": "m2", "messageId": "m2"})
            assert r.status_code == 202, r.text
            await wait_until(lambda: _count(js, "CM_TURNS", 2), timeout=30, message="m1 and m2 routed")
            turns = await _first_turns(js, 2)
            assert [(t.inbound.text, t.seq) for t in turns] == [("m1", 1), ("m2", 2)]
    finally:
        await nc.close()
