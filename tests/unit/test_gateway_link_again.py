"""The serving side of a remote turn asked for again (`RemoteTurn.again`): answered from the turn
status it kept, or, when that is not there or cannot be read, submitted as any request is."""

from __future__ import annotations

import collections
from types import SimpleNamespace
from typing import Any

import msgspec
import pytest

from clawmesh.federation import RemoteError, RemoteFinal
from clawmesh.sessions import TurnStatus
from clawmesh.wire import InboundMessage
from clawmesh_ingress.gateway_link import GatewayLink

pytestmark = pytest.mark.asyncio


class _Sessions:
    def __init__(self, status: TurnStatus | Exception | None) -> None:
        self.status = status

    async def get_turn_status(self, turn_id: str) -> TurnStatus | None:
        if isinstance(self.status, Exception):
            raise self.status
        return self.status


class _Nats:
    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []

    async def publish(self, subject: str, data: bytes) -> None:
        self.sent.append((subject, msgspec.json.decode(data)))


def _link(status: TurnStatus | Exception | None) -> tuple[GatewayLink, _Nats]:
    nc = _Nats()
    ctx: Any = SimpleNamespace(nc=nc, sessions=_Sessions(status), counters=collections.Counter())
    link = GatewayLink(ctx, turns=None)  # type: ignore[arg-type]
    link.region = "sg"
    return link, nc


_INBOUND = InboundMessage(id="t1", channel="gateway", session_key="agent:worker:gw:eu:abc")


async def test_a_finished_turn_is_answered_from_its_status() -> None:
    link, nc = _link(TurnStatus(state="done", text="the answer"))
    assert await link._answer_kept("_INBOX.x", _INBOUND)
    assert nc.sent == [
        (
            "_INBOX.x",
            msgspec.json.decode(
                msgspec.json.encode(
                    RemoteFinal(text="the answer", gateway="sg", session_key="agent:worker:gw:eu:abc")
                )
            ),
        )
    ]
    assert link.ctx.counters["remote_turns_answered_again"] == 1
    link, nc = _link(TurnStatus(state="error", error_code="MODEL_ERROR", error_message="down"))
    assert await link._answer_kept("_INBOX.y", _INBOUND)
    assert nc.sent[0][1] == msgspec.json.decode(
        msgspec.json.encode(RemoteError(code="MODEL_ERROR", message="down"))
    )


async def test_without_a_status_or_when_it_cannot_be_read_the_turn_is_submitted() -> None:
    for status in (None, TurnStatus(state="queued"), ConnectionError("KV unavailable")):
        link, nc = _link(status)
        assert not await link._answer_kept("_INBOX.x", _INBOUND)
        assert nc.sent == [] and link.ctx.counters["remote_turns_answered_again"] == 0
