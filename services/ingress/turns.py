"""Turns as a caller sees them: submit an inbound message, then wait for its route decision
and follow its events to the final reply or error. Every surface (the clawmesh API, the
OpenAI-compatible API, and channel adapters next) goes through here."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Mapping

from clawmesh.bus import ServiceContext, producer_span
from clawmesh.wire import InboundMessage, ReplyMessage, RouteDecision, TurnError, TurnFinal, encode_msgpack

from .waiters import Waiters

__all__ = ["MessageTooLarge", "PendingTurn", "TurnClient", "Unavailable", "turn_id_for"]


class Unavailable(Exception):
    """The message could not be stored (NATS or JetStream unavailable): a 503, not a 500."""


class MessageTooLarge(Exception):
    """The message, encoded, is more than NATS carries (its max_payload): a 413, not a 503."""


def _wire_size(data: bytes, headers: Mapping[str, str]) -> int:
    """What NATS counts against max_payload: the payload and the header block with it."""
    block = len(b"NATS/1.0\r\n\r\n") + sum(len(k.encode()) + len(v.encode()) + 4 for k, v in headers.items())
    return len(data) + block


def turn_id_for(channel: str, account: str, message_id: str | None) -> str:
    """Deterministic for a platform message id, so a retried delivery maps to the same turn."""
    if message_id:
        return uuid.uuid5(uuid.NAMESPACE_URL, f"clawmesh:{channel}:{account}:{message_id}").hex
    return uuid.uuid4().hex


class PendingTurn:
    """A submitted turn's replies as they arrive on this instance's reply subject.

    The route decision and the runner's events travel separately, so the runner's first
    events can arrive before the router's notice: `decision` keeps them for `events`."""

    def __init__(self, turn_id: str, waiters: Waiters, *, duplicate: bool = False) -> None:
        self.turn_id = turn_id
        self.duplicate = duplicate  # JetStream already had this message: another request owns the turn
        self._decision: RouteDecision | None = None
        self._waiters = waiters
        self._queue = waiters.open(turn_id)
        self._early: list[ReplyMessage] = []

    def close(self) -> None:
        """Stop receiving this turn's replies."""
        self._waiters.close(self.turn_id, self._queue)

    async def decision(self, timeout: float) -> RouteDecision | None:
        """The route decision, or None when the router has not answered within `timeout`
        (the turn stays queued)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self._decision is None:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return None
            try:
                item = await asyncio.wait_for(self._queue.get(), remaining)
            except TimeoutError:
                return None
            if isinstance(item, RouteDecision):
                self._decision = item
            else:
                self._early.append(item)
        return self._decision

    async def events(self, timeout: float | None) -> AsyncIterator[ReplyMessage]:
        """Every event of the turn, ending with its final or error event. TimeoutError when
        none arrives for `timeout` seconds. (A decision that came after `decision` gave up
        is passed through like an event; a failed one ends the turn: nothing else will come.)"""
        early, self._early = self._early, []
        for item in early:
            yield item
            if _ends_turn(item):
                return
        while True:
            item = await asyncio.wait_for(self._queue.get(), timeout)
            yield item
            if _ends_turn(item):
                return

    async def outcome(self, timeout: float | None) -> TurnFinal | TurnError | RouteDecision:
        """The final reply or error, or the failed route decision that arrived after `decision`
        gave up, for a caller that does not stream (TimeoutError as `events`)."""
        final: ReplyMessage | None = None
        async for item in self.events(timeout):
            final = item
        assert isinstance(final, TurnFinal | TurnError | RouteDecision)  # events() ends with one
        return final


def _ends_turn(item: ReplyMessage) -> bool:
    return isinstance(item, TurnFinal | TurnError) or (isinstance(item, RouteDecision) and not item.ok)


class TurnClient:
    """Submits turns to CM_INBOUND with this instance's reply subject, so their replies
    come back to the request that waits for them."""

    def __init__(self, ctx: ServiceContext, waiters: Waiters, reply_subject: str) -> None:
        self.ctx = ctx
        self.waiters = waiters
        self.reply_subject = reply_subject

    def route_wait(self) -> float:
        """How long a caller waits for the route decision before being told "queued"."""
        return self.ctx.holder.current.settings.runtime.route_wait

    def turn_timeout(self) -> float:
        """How long a caller waits for a turn's next event when it asked for no limit."""
        return self.ctx.holder.current.settings.runtime.reply_wait

    async def submit(
        self, inbound: InboundMessage, dedupe_key: str, trace_from: Mapping[str, str] | None = None
    ) -> PendingTurn:
        """Register for the turn's replies, then store the message in CM_INBOUND. The caller
        is answered only after JetStream acknowledged it: nothing accepted is lost.
        `trace_from`: the HTTP request headers, to continue the caller's trace."""
        ctx = self.ctx
        turn = PendingTurn(inbound.id, self.waiters)
        data, headers = encode_msgpack(inbound)
        headers["Nats-Msg-Id"] = dedupe_key
        subject = ctx.subjects.inbound_of(inbound)
        with producer_span("cm.in", subject, headers, parent=trace_from):
            size, limit = _wire_size(data, headers), ctx.nc.max_payload
            if size > limit:
                # retrying cannot help; and the server would drop our connection for it
                turn.close()
                raise MessageTooLarge(
                    f"the message is {size} bytes once encoded; the bus carries at most {limit}"
                )
            try:
                # retried across a stream leader change; the same Nats-Msg-Id keeps it one turn
                ack = await ctx.publish(subject, data, headers)
            except Exception as exc:
                turn.close()
                ctx.counters["store_failures"] += 1
                raise Unavailable(
                    f"could not store the message in {ctx.publish_window():g}s of trying "
                    f"({type(exc).__name__}: {exc}); nothing was accepted, retry later"
                ) from exc
        ctx.counters["accepted"] += 1
        turn.duplicate = bool(ack.duplicate)
        return turn
