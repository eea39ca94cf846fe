"""The fetch loop of a durable pull consumer, shared by the services that consume JetStream.

One pull request at a time stays open until JetStream has delivered all it asked for or it
expires (`FETCH_WAIT`), and messages are handed on as they arrive. nats-py's `fetch` ends its
request at the first message instead (a `no_wait` probe that the server answers with the
messages it has and a status), so at a trickle every message cost a request, a delivery and a
status message; here a busy consumer sends one request per `batch` messages and an idle one a
request and an expiry notice per `FETCH_WAIT`, as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Protocol

from nats.aio.msg import Msg
from nats.js import JetStreamContext

__all__ = ["PullSource", "await_orphans", "kept_in_progress", "pull_forever", "wait_for_stop"]

log = logging.getLogger("clawmesh.bus")

FETCH_WAIT = 0.5  # how long one pull request lasts: the loop notices a stop this quickly
BACKOFF = 0.5  # after a failed request or a batch handed back, before fetching again
_GRACE = 0.5  # past its expiry, a request whose end JetStream did not announce counts as ended
# JetStream's status codes on a pull request's inbox: 408 it expired (404: nothing to deliver),
# 100 an idle heartbeat; anything else ended it for a reason worth a pause (409: leadership
# change, consumer deleted, too many requests waiting; 503: no JetStream answered)
_HEARTBEAT = "100"
_ENDED = ("404", "408")


@contextlib.asynccontextmanager
async def kept_in_progress(msg: Msg, interval: float) -> AsyncIterator[None]:
    """Tell JetStream every `interval` seconds that `msg` is still being worked on (a long
    send, a turn on another gateway), so it is not redelivered to another consumer meanwhile.
    A lost notice costs at worst a redelivery, which the work must survive anyway."""

    async def beat() -> None:
        while True:
            await asyncio.sleep(interval)
            with contextlib.suppress(Exception):
                await msg.in_progress()

    task = asyncio.create_task(beat())
    try:
        yield
    finally:
        task.cancel()


async def wait_for_stop(stop: asyncio.Event, seconds: float) -> None:
    """Sleep `seconds`, or less if `stop` is set meanwhile."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


async def await_orphans(
    psub: JetStreamContext.PullSubscription,
    *,
    within: float,
    stop: asyncio.Event,
    go_on: Callable[[], bool],
    what: str,
) -> None:
    """Start consuming only when no message is out with an earlier holder of the consumer. A
    holder that died (or froze) holding fetched messages leaves them pending until their ack
    wait runs out, and JetStream meanwhile hands out the messages after them: working on those
    first would put a later message before an earlier one. So wait until nothing is pending,
    or at most `within` (about one ack wait: the orphans are then redelivered ahead of new
    messages), while `go_on()` and `stop` unset. A hand-over with nothing in flight costs one
    consumer-info call; messages a releasing holder handed back (nak) count as pending too, so
    a hand-over under load waits up to one ack wait: slower, never out of order."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    waited = False
    while not stop.is_set() and go_on():
        try:
            pending = (await psub.consumer_info()).num_ack_pending or 0
        except Exception as exc:  # the server is away: the caller's own retries cover it
            log.warning("%s: could not read the consumer (%s)", what, exc)
            pending = -1
        if pending == 0 or loop.time() >= deadline:
            break
        if not waited and pending > 0:
            log.info("%s: %d message(s) still out with its previous holder; waiting for them", what, pending)
            waited = True
        await wait_for_stop(stop, 0.1)


class PullSource(Protocol):
    """What the loop needs of a pull subscription (a fake in tests)."""

    async def request(self, size: int, expires: float) -> None:
        """Ask for up to `size` messages, delivered as they come for `expires` seconds."""

    async def next(self, timeout: float) -> Msg:
        """The next message or status on the inbox; TimeoutError when none came in time."""

    def queued(self) -> int:
        """How many have arrived and not been taken yet."""


class _Inbox:
    """A nats-py pull subscription driven with its own requests. nats-py 2.16 has no
    continuous consume for pull consumers, so this uses the subscription's inbox, request
    subject and connection as its `fetch` does."""

    def __init__(self, psub: JetStreamContext.PullSubscription) -> None:
        self._psub = psub

    async def request(self, size: int, expires: float) -> None:
        psub = self._psub
        body = json.dumps({"batch": size, "expires": int(expires * 1e9)}).encode()
        await psub._nc.publish(psub._nms, body, psub._deliver)

    async def next(self, timeout: float) -> Msg:
        try:
            return await self._psub._sub.next_msg(timeout=timeout)
        except TimeoutError as exc:  # nats-py raises its own subclass
            raise TimeoutError from exc

    def queued(self) -> int:
        return self._psub.pending_msgs


def _status(msg: Msg) -> str | None:
    if msg.data or not msg.headers:
        return None
    return msg.headers.get("Status")


async def pull_forever(
    psub: JetStreamContext.PullSubscription | PullSource,
    handle: Callable[[list[Msg]], Awaitable[bool | None]],
    *,
    batch: int | Callable[[], Awaitable[int]],
    stop: asyncio.Event,
    name: str,
    active: Callable[[], bool] = lambda: True,
    finish: bool = False,
) -> None:
    """Pull and hand what arrived to `handle` until `stop` is set or `active()` turns false.

    `batch` is the most messages to ask for at a time, or a coroutine that waits for room and
    says how many (0: nothing now, ask again); a new request is sent once the open one has
    delivered that many or ended. `handle` gets everything that has arrived when it is free,
    in stream order. A failed request is logged and retried after a pause, as is a batch that
    `handle` hands back (returns False); the messages themselves stay with JetStream, which
    redelivers what is not acked.

    When the loop ends, what the open request still delivers is handed back (nak), in order;
    with `finish`, if it ended on `stop` while still `active()`, it is given to `handle` instead
    (a router handing a partition over leaves nothing pending for the next holder to wait for).
    """
    source: PullSource = _Inbox(psub) if isinstance(psub, JetStreamContext.PullSubscription) else psub
    loop = asyncio.get_running_loop()
    left = 0  # messages the open request may still deliver
    until = 0.0  # when it ends at the latest
    while not stop.is_set() and active():
        if left <= 0 or loop.time() >= until:
            size = batch if isinstance(batch, int) else await batch()
            if size <= 0:
                continue
            try:
                await source.request(size, FETCH_WAIT)
            except Exception as exc:
                if not stop.is_set():
                    log.warning("%s: fetch failed: %s", name, exc)
                await wait_for_stop(stop, BACKOFF)
                continue
            left, until = size, loop.time() + FETCH_WAIT + _GRACE
        try:
            # bounded, so a stop is noticed
            first = await source.next(max(min(until - loop.time(), FETCH_WAIT), 0.01))
        except TimeoutError:
            continue
        msgs: list[Msg] = []
        failure: str | None = None
        arrived = [first]
        while source.queued():
            arrived.append(await source.next(FETCH_WAIT))
        for msg in arrived:
            status = _status(msg)
            if status is None:
                msgs.append(msg)
                left -= 1
            elif status == _HEARTBEAT:
                continue
            else:
                left = 0  # this request is over
                if status not in _ENDED:
                    failure = f"{status} {(msg.headers or {}).get('Description', '')}".strip()
        if msgs and await handle(msgs) is False:
            await wait_for_stop(stop, BACKOFF)
        elif failure is not None:
            if not stop.is_set():
                log.warning("%s: fetch failed: %s", name, failure)
            await wait_for_stop(stop, BACKOFF)
    if finish and active():
        left, until = await _finish(source, handle, left, until)
    await _hand_back(source, left, until, name)


async def _finish(
    source: PullSource, handle: Callable[[list[Msg]], Awaitable[bool | None]], left: int, until: float
) -> tuple[int, float]:
    """Give `handle` what the open request still delivers; what is left for `_hand_back`."""
    loop = asyncio.get_running_loop()
    while source.queued() or (left > 0 and loop.time() < until):
        try:
            first = await source.next(max(min(until - loop.time(), FETCH_WAIT), 0.01))
        except TimeoutError:
            break
        arrived = [first]
        while source.queued():
            arrived.append(await source.next(FETCH_WAIT))
        msgs = []
        for msg in arrived:
            status = _status(msg)
            if status is None:
                msgs.append(msg)
                left -= 1
            elif status != _HEARTBEAT:
                left = 0
        if msgs and await handle(msgs) is False:
            break  # handed back by `handle` itself; the rest by `_hand_back`
    return left, until


async def _hand_back(source: PullSource, left: int, until: float, name: str) -> None:
    """Hand back, in order, what the open request still delivers after the loop ended (and
    what arrived unread): left waiting for the ack deadline, a message would reach whoever
    consumes next only after newer ones (for the router: numbered out of order)."""
    loop = asyncio.get_running_loop()
    while source.queued() or (left > 0 and loop.time() < until):
        try:
            msg = await source.next(max(min(until - loop.time(), FETCH_WAIT), 0.01))
        except TimeoutError:
            return
        status = _status(msg)
        if status is None:
            left -= 1
            try:
                await msg.nak()
            except Exception as exc:  # redelivered after its ack deadline anyway
                log.info("%s: could not hand a message back: %s", name, exc)
        elif status != _HEARTBEAT:
            left = 0
