"""A message that comes again after CM_INBOUND's duplicate window (two minutes) is one turn.

JetStream forgets a `Nats-Msg-Id` after the window, and platforms retry later than that
(Slack after 1 and 5 minutes, WhatsApp for longer; a calling gateway whose turn was
redelivered asks again): the copy is stored as a new message. The router knows it by its turn
id and gives it the number it gave the first time, so the runner answers it from what it
recorded — no second model call, no second reply. Here the copy is published with another
`Nats-Msg-Id`, which is what JetStream sees once the window has passed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg

from clawmesh.bus import NatsServer
from clawmesh.sessions import SessionStore, TxUser
from clawmesh.wire import (
    InboundMessage,
    OutboundMessage,
    Peer,
    RouteDecision,
    Subjects,
    decode,
    encode_msgpack,
)
from tests.chaos.checker import read_stream
from tests.fakes.models import FakeModelServer
from tests.fixtures.gateway import run_gateway, wait_until

pytestmark = pytest.mark.slow


def _config(fake: FakeModelServer) -> dict[str, Any]:
    return {
        "agents": {"list": [{"id": "main", "default": True, "model": "openai/m"}]},
        "models": {"providers": {"openai": {"baseUrl": fake.base_url + "/v1", "apiKey": "sk-test"}}},
    }


async def _send(nc: Client, turn_id: str, text: str, msg_id: str) -> None:
    inbound = InboundMessage(
        id=turn_id,
        channel="api",
        text=text,
        peer=Peer(kind="direct", id="pat"),
        message_id=turn_id,
    )
    data, headers = encode_msgpack(inbound)
    headers["Nats-Msg-Id"] = msg_id
    ack = await nc.jetstream().publish("cm.in.api.default", data, headers=headers)
    assert not ack.duplicate  # stored again, as after the window


async def test_a_message_sent_again_after_the_duplicate_window_is_answered_once(
    nats_server: NatsServer, nc: Client, tmp_path: Path
) -> None:
    decided: list[tuple[str, int | None]] = []

    async def on_decision(msg: Msg) -> None:
        decision = decode(msg.data, RouteDecision, msg.headers)
        decided.append((decision.turn_id, decision.seq))

    await nc.subscribe("cm.route.decided", cb=on_decision)
    await nc.flush()

    async with FakeModelServer() as fake, run_gateway(nats_server.url, _config(fake), tmp_path):
        store = SessionStore(
            nc.jetstream(),
            Subjects(),
            await nc.jetstream().key_value("cm_sessions"),
            turns=await nc.jetstream().key_value("cm_turns"),
        )

        async def done(turn_id: str) -> bool:
            status = await store.get_turn_status(turn_id)
            return status is not None and status.state == "done"

        await _send(nc, "first", "hello", "in:first")
        await wait_until(lambda: done("first"), 60, message="the first turn answered")
        calls = len(fake.requests)
        # the same message again, stored as new; then the conversation goes on
        await _send(nc, "first", "hello", "in:first:later")
        await _send(nc, "second", "and then", "in:second")
        await wait_until(lambda: done("second"), 60, message="the next turn answered")
        await wait_until(lambda: len(decided) == 3, 30, message="three routing decisions")
        assert len(fake.requests) == calls + 1  # only the next message reached the model

    assert decided == [("first", 1), ("first", 1), ("second", 2)]
    replies = [decode(m.data, OutboundMessage) for m in await read_stream(nc.jetstream(), "cm.out.>")]
    assert [r.turn_id for r in replies] == ["first", "second"]
    [record] = await store.list_sessions()
    assert record.seq == 2
    users = [e for e in await store.history("main", record.session_key) if isinstance(e, TxUser)]
    assert [(e.seq, e.text) for e in users] == [(1, "hello"), (2, "and then")]
