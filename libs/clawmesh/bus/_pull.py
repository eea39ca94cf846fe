"""The fetch loop of a durable pull consumer, shared by the services that consume JetStream."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeout
from nats.js import JetStreamContext

__all__ = ["pull_forever", "wait_for_stop"]

log = logging.getLogger("clawmesh.bus")

FETCH_WAIT = 0.5  # how long one fetch waits for messages: the loop notices a stop this quickly
BACKOFF = 0.5  # after a failed fetch or a batch handed back, before fetching again


async def wait_for_stop(stop: asyncio.Event, seconds: float) -> None:
    """Sleep `seconds`, or less if `stop` is set meanwhile."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


async def pull_forever(
    psub: JetStreamContext.PullSubscription,
    handle: Callable[[list[Msg]], Awaitable[bool | None]],
    *,
    batch: int | Callable[[], Awaitable[int]],
    stop: asyncio.Event,
    name: str,
    active: Callable[[], bool] = lambda: True,
) -> None:
    """Fetch and hand each batch to `handle` until `stop` is set or `active()` turns false.

    `batch` is the most messages to fetch at a time, or a coroutine that waits for room and says
    how many (0: nothing now, ask again). A failed fetch is logged and retried after a pause, as
    is a batch that `handle` hands back (returns False); the messages themselves stay with
    JetStream, which redelivers what is not acked.
    """
    while not stop.is_set() and active():
        size = batch if isinstance(batch, int) else await batch()
        if size <= 0:
            continue
        try:
            msgs = await psub.fetch(size, timeout=FETCH_WAIT)
        except (NatsTimeout, TimeoutError):
            continue
        except Exception as exc:
            if not stop.is_set():
                log.warning("%s: fetch failed: %s", name, exc)
            await wait_for_stop(stop, BACKOFF)
            continue
        if await handle(msgs) is False:
            await wait_for_stop(stop, BACKOFF)
