"""Replies out to the platforms: ingress consumes CM_OUTBOUND (`cm.out.<channel>.<account>`, one
durable consumer per channel that has adapters, shared by every ingress replica) and hands each
reply to its account's adapter, once per turn id.

Once, as far as it can be: a reply's record (KV `delivered`, key = turn id) is written after it
was sent and before the stream message is acked, and a reply whose record says it was sent is
acked without sending. What is left is at-least-once in one window: a process that dies after
the platform accepted a message and before its record is written (one KV round trip) sends that
message again when the reply is redelivered. Writing the record before sending would make it
at-most-once instead (a crash would lose the reply); a duplicate is the lesser harm. A reply
split into several messages records each part as it goes, so a redelivery sends only the parts
not sent yet.

Transient failures (429 with `retry_after`, 5xx, no connection) are retried here with backoff,
keeping the stream message alive meanwhile; what can never be sent is dead-lettered
(`UNDELIVERABLE`, with the platform's reason) and terminated.

Replies of one chat are sent in stream order; different chats in parallel. One replica sends a
channel's replies at a time, the holder of the lease `delivery.<channel>` (the others stand by
and take over when it lapses): with the consumer shared, two replicas would each fetch some of
a chat's replies and send them side by side, a later one overtaking an earlier one that waits
for a `retry_after`. A new holder starts only when nothing is out with the previous one
(`await_orphans`). NATS trouble under a reply (its record unreadable while a KV leader moves) is
retried in place, holding the chat, for as long as this replica holds the lease; a reply handed
back on a stop or a lost lease takes the chat's queued replies back with it, in order.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Final

import msgspec
from nats.aio.msg import Msg
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue

from clawmesh.bus import Lease, ServiceContext, await_orphans, kept_in_progress, pull_forever, wait_for_stop
from clawmesh.errors import best_effort
from clawmesh.wire import DecodeFailure, OutboundMessage, decode, encode_token

from .base import ChannelAdapter, DeliveryProgress, PermanentSendError, TransientSendError

__all__ = ["OutboundDelivery", "SentRecord"]

log = logging.getLogger("clawmesh.ingress.delivery")

MAX_IN_FLIGHT: Final = 256  # replies being sent at once by one ingress, over all chats
MAX_ATTEMPTS: Final = 8  # transient failures of one reply before it is dead-lettered
BACKOFF_FIRST: Final = 0.5
BACKOFF_MAX: Final = 30.0
NATS_BACKOFF_MAX: Final = 5.0  # NATS trouble under a reply: tried again at least this often
MAX_RETRY_AFTER: Final = 300.0  # a longer `retry_after` is waited in slices of this (kept alive)


class SentRecord(msgspec.Struct, kw_only=True, omit_defaults=True):
    """What was sent of one turn's reply (KV `delivered`, key = turn id)."""

    sent: list[str] = []  # platform ids of the parts sent
    done: bool = False


_record_decoder = msgspec.json.Decoder(SentRecord)


class OutboundDelivery:
    """The delivery of one channel's replies to its accounts' adapters."""

    def __init__(self, ctx: ServiceContext, channel: str, adapters: dict[str, ChannelAdapter]) -> None:
        self.ctx = ctx
        self.channel = channel
        self.adapters = adapters
        self.kv: KeyValue = ctx.kv["delivered"]
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._inflight: set[asyncio.Task[None]] = set()
        self._room = asyncio.Event()  # set while fewer than MAX_IN_FLIGHT replies are being sent
        self._room.set()
        self._chat_locks: dict[str, list[Any]] = {}  # chat -> [its lock, replies holding or awaiting it]
        self._lease: Lease | None = None  # `delivery.<channel>`, while this replica sends
        self._keeper: asyncio.Task[None] | None = None

    async def start(self) -> None:
        ctx = self.ctx
        subject = f"{ctx.subjects.prefix}.out.{encode_token(self.channel)}.*"
        self._tries = ctx.holder.current.settings.runtime.max_deliveries
        self._psub = await ctx.pull_consumer(
            subject,
            ctx.subjects.stream("OUTBOUND"),
            f"ingress-out-{encode_token(self.channel)}",
            max_ack_pending=MAX_IN_FLIGHT * 4,
            # the first ingress with this channel must not send the replies the stream already
            # kept for it (a day of them, stored while no adapter existed, e.g. HTTP API turns
            # that named the channel); from then on the durable consumer keeps its place
            from_start=False,
        )
        self._task = asyncio.create_task(self._lead_forever(), name=f"delivery-{self.channel}")

    async def stop(self, timeout: float) -> None:
        self._stop.set()
        self._room.set()
        if self._task is not None:
            await self._task
        if self._inflight:
            # what is not done in time is redelivered (and deduplicated by its record)
            await asyncio.wait(self._inflight, timeout=timeout)
        if self._keeper is not None:
            self._keeper.cancel()
        lease = self._lease
        if lease is not None and not lease.lost:
            # only now: the next holder must not send a chat's later reply beside one of ours
            with best_effort(self.ctx.counters, "delivery_lease_release", log=log):
                await lease.release()
        with best_effort(self.ctx.counters, "unsubscribe", log=log):
            await self._psub.unsubscribe()

    def status(self) -> dict[str, Any]:
        return {"channel": self.channel, "sending": len(self._inflight), "leading": self.leading}

    @property
    def leading(self) -> bool:
        """This replica holds the channel's delivery lease (and has not noticed losing it)."""
        return (
            self._lease is not None
            and not self._lease.lost
            and self._keeper is not None
            and not self._keeper.done()
        )

    async def _lead_forever(self) -> None:
        """Take the channel's delivery lease and send replies while it is ours; stand by while
        another replica holds it."""
        ctx = self.ctx
        ttl = ctx.layout.lease_seconds
        key = f"delivery.{encode_token(self.channel)}"
        what = f"delivery: {self.channel}"
        while not self._stop.is_set():
            try:
                lease = await ctx.leases.acquire(key)
            except Exception as exc:
                log.warning("%s: cannot take the lease (%s)", what, exc)
                lease = None
            if lease is None:  # another replica sends this channel's replies
                await wait_for_stop(self._stop, ttl / 3)
                continue
            if self._keeper is not None:
                self._keeper.cancel()
            self._lease, self._keeper = lease, asyncio.create_task(lease.keep(ttl, what))
            log.info("%s: this replica sends the replies (it holds %s)", what, key)
            await await_orphans(
                self._psub, within=ttl + 0.5, stop=self._stop, go_on=lambda: self.leading, what=what
            )
            await pull_forever(
                self._psub,
                self._take,
                batch=self._capacity,
                stop=self._stop,
                name="delivery",
                active=lambda: self.leading and self._lease is not None and self._lease.fresh(ttl),
            )
            if not self._stop.is_set():
                log.warning("%s: the lease lapsed; standing by", what)
                self._keeper.cancel()
                lease.lost = True  # not ours to release: someone may hold it by now

    async def _capacity(self) -> int:
        """How many replies to fetch: waits while MAX_IN_FLIGHT are being sent."""
        await self._room.wait()
        return MAX_IN_FLIGHT - len(self._inflight)

    async def _take(self, msgs: list[Msg]) -> None:
        for msg in msgs:
            task = asyncio.create_task(self._one(msg))
            self._inflight.add(task)
            task.add_done_callback(self._done)
        if len(self._inflight) >= MAX_IN_FLIGHT:
            self._room.clear()

    def _done(self, task: asyncio.Task[None]) -> None:
        self._inflight.discard(task)
        self._room.set()

    # --- one reply ------------------------------------------------------------------------

    async def _one(self, msg: Msg) -> None:
        ctx = self.ctx
        try:
            try:
                out = decode(msg.data, OutboundMessage, msg.headers)
            except DecodeFailure as exc:
                await ctx.dead_letter(msg.subject, str(exc), msg.data, msg.headers)
                await msg.term()
                return
            chat = f"{out.account_id}:{out.peer.id if out.peer else ''}"
            # one lock per chat while any of its replies is here (the count says how many), taken
            # before anything is awaited: the chat's replies queue for it in stream order
            entry = self._chat_locks.setdefault(chat, [asyncio.Lock(), 0])
            entry[1] += 1
            try:
                async with kept_in_progress(msg, ctx.layout.lease_seconds / 3), entry[0]:
                    if not self.leading:
                        # stopping, or the lease lapsed: handed back in order behind the reply
                        # before it, for the next holder
                        ctx.counters["delivery_handed_back"] += 1
                        await msg.nak()
                        return
                    if await ctx.give_up(msg, self._tries):
                        return
                    await self._deliver_in_place(msg, out)
            finally:
                entry[1] -= 1
                if entry[1] == 0:
                    del self._chat_locks[chat]
        except Exception as exc:  # a bug or NATS trouble: JetStream redelivers, the record dedupes
            ctx.counters["delivery_failures"] += 1
            log.warning(
                "delivery: reply on %s failed (%s: %s); it will be redelivered",
                msg.subject,
                type(exc).__name__,
                exc,
            )
            with best_effort(ctx.counters, "nak", log=log):
                await msg.nak(delay=BACKOFF_FIRST * 4)

    async def _deliver_in_place(self, msg: Msg, out: OutboundMessage) -> None:
        """`_deliver`, tried again here, still holding the chat, when NATS fails under it (the
        reply's record unreadable or unwritable while a stream leader moves), for as long as
        this replica sends the channel's replies: handed back, the reply would let the chat's
        next one be sent before it. Platform errors are retried inside `_deliver`."""
        delay = BACKOFF_FIRST
        while True:
            try:
                await self._deliver(msg, out)
                return
            except Exception as exc:
                if self._stop.is_set() or not self.leading:
                    raise
                self.ctx.counters["delivery_nats_retries"] += 1
                log.info(
                    "delivery: turn %s: %s: %s; retrying in %.1fs",
                    out.turn_id,
                    type(exc).__name__,
                    exc,
                    delay,
                )
                await asyncio.sleep(delay)  # a back-off between tries
                delay = min(delay * 2, NATS_BACKOFF_MAX)

    async def _deliver(self, msg: Msg, out: OutboundMessage) -> None:
        ctx = self.ctx
        record = await self._record(out.turn_id)
        if record.done:
            ctx.counters["replies_already_sent"] += 1
            await msg.ack()
            return
        adapter = self.adapters.get(out.account_id)
        if adapter is None:
            await self._undeliverable(
                msg, f"no enabled {self.channel} account {out.account_id!r} is configured"
            )
            return
        key = out.turn_id

        async def store(sent: list[str]) -> None:
            await self.kv.put(key, msgspec.json.encode(SentRecord(sent=sent)))

        progress = DeliveryProgress(sent=list(record.sent), record=store)
        delay = BACKOFF_FIRST
        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                await adapter.deliver(out, progress)
                break
            except PermanentSendError as exc:
                await self._undeliverable(msg, str(exc))
                return
            except TransientSendError as exc:
                ctx.counters["delivery_retries"] += 1
                if attempt == MAX_ATTEMPTS:
                    await self._undeliverable(msg, f"gave up after {attempt} attempts; last: {exc}")
                    return
                wait = min(exc.retry_after, MAX_RETRY_AFTER) if exc.retry_after is not None else delay
                delay = min(delay * 2, BACKOFF_MAX)
                log.info("delivery: turn %s: %s; retrying in %.1fs", out.turn_id, exc, wait)
                await asyncio.sleep(wait)
        await self.kv.put(key, msgspec.json.encode(SentRecord(sent=progress.sent, done=True)))
        ctx.counters["replies_sent"] += 1
        await msg.ack()

    async def _record(self, turn_id: str) -> SentRecord:
        try:
            entry = await self.kv.get(turn_id)
        except KeyNotFoundError:
            return SentRecord()
        if not entry.value:
            return SentRecord()
        try:
            return _record_decoder.decode(entry.value)
        except msgspec.DecodeError:
            return SentRecord()

    async def _undeliverable(self, msg: Msg, reason: str) -> None:
        self.ctx.counters["replies_undeliverable"] += 1
        await self.ctx.dead_letter(msg.subject, reason, msg.data, msg.headers, code="UNDELIVERABLE")
        await msg.term()
