"""A message that fails every time it is tried is dead-lettered, with the reason, after
`runtime.maxDeliveries` tries — it no longer stops its service for good — and the messages
after it are still processed, before and after a restart."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import msgspec
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg

import clawmesh_router.app as router_app
from clawmesh.bus import NatsServer
from clawmesh.sessions import SessionStore
from clawmesh.wire import DeadLetter, InboundMessage, Peer, RouteDecision, Subjects, decode, encode_msgpack
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
    refused: list[RouteDecision] = []

    async def on_letter(msg: Msg) -> None:
        letters.append(decode(msg.data, DeadLetter, msg.headers))

    async def on_decision(msg: Msg) -> None:
        decision = decode(msg.data, RouteDecision, msg.headers)
        if decision.ok:
            decided.append(decision.turn_id)
        else:
            refused.append(decision)

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
    # its caller and a poller of its turn are told, not left waiting
    await wait_until(lambda: refused, 30, message="the caller told")
    assert [(d.turn_id, d.error_code) for d in refused] == [("poison", "DELIVERY_LIMIT")]
    status = await SessionStore(
        nc.jetstream(),
        Subjects(),
        await nc.jetstream().key_value("cm_sessions"),
        turns=await nc.jetstream().key_value("cm_turns"),
    ).get_turn_status("poison")
    assert status is not None and status.state == "error" and status.error_code == "DELIVERY_LIMIT"

    # after a restart the poison message is not delivered again; new messages are routed
    async with run_gateway(nats_server.url, CONFIG, tmp_path, services=("router",)):
        await _send(nc, "later")
        await wait_until(lambda: "later" in decided, 60, message="a message after the restart routed")
    assert tries["poison"] == 3 and len(letters) == 1
    info = await nc.jetstream().stream_info("CM_DLQ")
    assert info.state.messages == 1


async def _hand_back(nc: Client, times: int) -> int:
    """Fetch the router's next message from its consumer and hand it back untried, `times`
    times (what routers letting a partition go, or stopping, do); its delivery count."""
    psub = await nc.jetstream().pull_subscribe("cm.in.>", durable="router", stream="CM_INBOUND")
    delivered = 0
    try:
        for _ in range(times):
            [msg] = await psub.fetch(1, timeout=10)
            delivered = msg.metadata.num_delivered or 0
            await msg.nak()
    finally:
        await psub.unsubscribe()
    return delivered


async def test_a_message_handed_back_untried_many_times_is_still_routed(
    nats_server: NatsServer, nc: Client, tmp_path: Path
) -> None:
    """Hand-backs are not tries: JetStream counts them as deliveries, and a consumer bounded
    by deliveries would drop the message without a word (chaos seeds 3 and 18 lost messages
    that way). The router counts what it tried."""
    decided: list[str] = []

    async def on_decision(msg: Msg) -> None:
        decided.append(decode(msg.data, RouteDecision, msg.headers).turn_id)

    await nc.subscribe("cm.route.decided", cb=on_decision)
    async with run_gateway(nats_server.url, CONFIG, tmp_path, services=("router",)):
        await _send(nc, "first")
        await wait_until(lambda: "first" in decided, 60, message="the router up and routing")
    # an earlier version's consumer: deliveries bounded at maxDeliveries + 1
    js = nc.jetstream()
    info = await js.consumer_info("CM_INBOUND", "router")
    info.config.max_deliver = 4
    await js.add_consumer("CM_INBOUND", info.config)
    await _send(nc, "handed")
    assert await _hand_back(nc, 3) == 3  # one delivery short of that bound

    async with run_gateway(nats_server.url, CONFIG, tmp_path, services=("router",)):
        await wait_until(lambda: "handed" in decided, 60, message="the handed-back message routed")
        assert (await js.consumer_info("CM_INBOUND", "router")).config.max_deliver == -1
        await _send(nc, "again")
        await wait_until(lambda: "again" in decided, 60, message="the next message routed")
    await _send(nc, "bounced")
    assert await _hand_back(nc, 3 * 4) == 12  # far past any bound made of maxDeliveries
    async with run_gateway(nats_server.url, CONFIG, tmp_path, services=("router",)):
        await wait_until(lambda: "bounced" in decided, 60, message="the message handed back 12 times routed")
    info = await js.stream_info("CM_DLQ")
    assert info.state.messages == 0


async def test_a_batch_whose_tries_cannot_be_counted_is_handed_back_in_order(
    nats_server: NatsServer, nc: Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Counting a redelivered message's try is a KV write, which can fail (its stream leader
    away) for one message of a batch and not the next: the batch goes back whole, so the
    session's later message is not numbered before the earlier one."""
    from clawmesh.bus import ServiceContext

    count_try = ServiceContext._count_try
    refused: list[str] = []

    async def failing_once(self: ServiceContext, msg: Msg) -> int:
        if b"early" in msg.data and not refused:
            refused.append("early")
            raise TimeoutError("the turns bucket is away")
        return await count_try(self, msg)

    monkeypatch.setattr(ServiceContext, "_count_try", failing_once)
    decided: list[tuple[str, int]] = []

    async def on_decision(msg: Msg) -> None:
        d = decode(msg.data, RouteDecision, msg.headers)
        decided.append((d.turn_id, d.seq))

    await nc.subscribe("cm.route.decided", cb=on_decision)
    async with run_gateway(nats_server.url, CONFIG, tmp_path, services=("router",)):
        await _send(nc, "first")
        await wait_until(lambda: decided, 60, message="the router up and routing")
    await _send(nc, "early")
    await _send(nc, "late")
    # both delivered again (their tries are counted then), in one batch
    psub = await nc.jetstream().pull_subscribe("cm.in.>", durable="router", stream="CM_INBOUND")
    msgs = await psub.fetch(2, timeout=10)
    assert len(msgs) == 2
    for m in msgs:
        await m.nak()
    await psub.unsubscribe()
    async with run_gateway(nats_server.url, CONFIG, tmp_path, services=("router",)):
        await wait_until(lambda: len(decided) == 3, 60, message="both routed")
    assert refused == ["early"]
    assert decided == [("first", 1), ("early", 2), ("late", 3)]


async def test_a_dead_letter_too_large_for_json_is_kept_whole_or_its_start_with_the_size(
    nats_server: NatsServer, nc: Client, tmp_path: Path
) -> None:
    """A letter is JSON, whose base64 makes a payload a third larger: one of 800 KB no longer
    fit in the server's 1 MiB and was lost with an error in the log. It is kept as msgpack
    (the bytes as they are); one within a kilobyte of the limit keeps its start and its size."""
    letters: list[DeadLetter] = []
    decided: list[str] = []

    async def on_letter(msg: Msg) -> None:
        letters.append(decode(msg.data, DeadLetter, msg.headers))

    async def on_decision(msg: Msg) -> None:
        decided.append(decode(msg.data, RouteDecision, msg.headers).turn_id)

    await nc.subscribe("cm.dlq.>", cb=on_letter)
    await nc.subscribe("cm.route.decided", cb=on_decision)
    await nc.flush()

    def to_ghost(turn_id: str, size: int) -> bytes:
        """An inbound message of `size` bytes for an agent that does not exist."""
        inbound = InboundMessage(id=turn_id, channel="api", text="x" * size, agent_id="ghost")
        over = len(encode_msgpack(inbound)[0]) - size
        data = encode_msgpack(msgspec.structs.replace(inbound, text="x" * (size - over)))[0]
        assert len(data) == size
        return data

    big = to_ghost("big", 800_000)
    fullest = to_ghost("fullest", nc.max_payload - 200)  # its headers need a little room too
    async with run_gateway(nats_server.url, CONFIG, tmp_path, services=("router",)):
        for data in (big, fullest):
            await nc.jetstream().publish(
                "cm.in.api.default", data, headers={"Content-Type": "application/msgpack"}
            )
        await _send(nc, "after")  # the router goes on
        await wait_until(lambda: len(letters) == 2 and "after" in decided, 60, message="both letters kept")
    whole, cut = sorted(letters, key=lambda letter: letter.payload_size)
    assert whole.code == cut.code == "UNKNOWN_AGENT"
    assert whole.payload == big and whole.payload_size == 0
    assert decode(whole.payload, InboundMessage).id == "big"
    assert cut.payload_size == len(fullest) and fullest.startswith(cut.payload)
    assert 0 < len(fullest) - len(cut.payload) < 4096
