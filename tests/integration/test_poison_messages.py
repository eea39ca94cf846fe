"""A message that fails every time it is tried is dead-lettered, with the reason, after
`runtime.maxDeliveries` tries — it no longer stops its service for good — and the messages
after it are still processed, before and after a restart."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg

import clawmesh_router.app as router_app
from clawmesh.bus import NatsServer
from clawmesh.wire import DeadLetter, InboundMessage, Peer, RouteDecision, decode, encode_msgpack
from tests.fixtures.gateway import run_gateway, wait_until

pytestmark = pytest.mark.slow

CONFIG: dict[str, Any] = {
    "agents": {"list": [{"id": "main", "default": True, "model": "echo/echo"}]},
    "runtime": {"maxDeliveries": 3},
}


async def _send(nc: Client, message_id: str) -> None:
    inbound = InboundMessage(id=message_id, channel="api", text="hi", peer=Peer(kind="direct", id="pat"))
    data, headers = encode_msgpack(inbound)
    await nc.jetstream().publish("cm.in.api.default", data, headers=headers)


async def test_a_message_that_always_fails_is_dead_lettered_after_max_deliveries(
    nats_server: NatsServer, nc: Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tries: Counter[str] = Counter()
    route = router_app.route_message

    def failing_on_poison(config: Any, inbound: InboundMessage) -> Any:
        tries[inbound.id] += 1
        if inbound.id == "poison":
            raise RuntimeError("cannot route this one")
        return route(config, inbound)

    monkeypatch.setattr(router_app, "route_message", failing_on_poison)
    letters: list[DeadLetter] = []
    decided: list[str] = []

    async def on_letter(msg: Msg) -> None:
        letters.append(decode(msg.data, DeadLetter, msg.headers))

    async def on_decision(msg: Msg) -> None:
        decided.append(decode(msg.data, RouteDecision, msg.headers).turn_id)

    await nc.subscribe("cm.dlq.>", cb=on_letter)
    await nc.subscribe("cm.route.decided", cb=on_decision)
    await nc.flush()

    async with run_gateway(nats_server.url, CONFIG, tmp_path, services=("router",)):
        await _send(nc, "poison")
        await _send(nc, "after")  # same session: the poison message must not hold it up
        await wait_until(lambda: "after" in decided, 60, message="the next message routed")
        await wait_until(lambda: letters, 60, message="the poison message dead-lettered")

    [letter] = letters
    assert letter.service == "router" and letter.code == "DELIVERY_LIMIT"
    assert "RuntimeError: cannot route this one" in letter.reason and "limit is 3" in letter.reason
    assert decode(letter.payload, InboundMessage, letter.headers).id == "poison"
    assert tries["poison"] == 3 and "poison" not in decided

    # after a restart the poison message is not delivered again; new messages are routed
    async with run_gateway(nats_server.url, CONFIG, tmp_path, services=("router",)):
        await _send(nc, "later")
        await wait_until(lambda: "later" in decided, 60, message="a message after the restart routed")
    assert tries["poison"] == 3 and len(letters) == 1
    info = await nc.jetstream().stream_info("CM_DLQ")
    assert info.state.messages == 1
