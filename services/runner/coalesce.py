"""Coalescing a turn's text deltas: a long reply becomes a few hundred events, not one per token.

Every event is published to the session's subject and often to the caller's reply subject too;
one message per streamed token made a 100 KB reply ~50,000 NATS messages and slowed every other
session on the server. The first delta of a stretch of text still goes out at once (the user
sees the reply start as soon as the model does); the rest wait until `FLUSH_CHARS` of text are
buffered or `FLUSH_AFTER` seconds have passed since the first of them was buffered.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Final, Protocol

import msgspec

from clawmesh.wire import TextDeltaEvent, TurnEvent

__all__ = ["FLUSH_AFTER", "FLUSH_CHARS", "DeltaCoalescer"]

FLUSH_CHARS: Final = 1024  # characters of buffered text that are sent without waiting
FLUSH_AFTER: Final = 0.02  # seconds the first buffered delta may wait: ≤ 50 events/s when slow

Emit = Callable[[TurnEvent], Awaitable[None]]


class _Timer(Protocol):
    def cancel(self) -> None: ...


# (delay, callback) → a cancellable timer; `loop.call_later` by default, a fake clock in tests.
Schedule = Callable[[float, Callable[[], None]], _Timer]


class DeltaCoalescer:
    """Wraps a turn's `emit`: text deltas are merged, every other event goes out as it comes,
    after whatever text was buffered before it, so the order clients see is unchanged and the
    concatenated delta texts are exactly the streamed text. `aclose()` sends what is left."""

    def __init__(
        self,
        emit: Emit,
        *,
        flush_chars: int = FLUSH_CHARS,
        flush_after: float = FLUSH_AFTER,
        schedule: Schedule | None = None,
    ) -> None:
        self._emit = emit
        self._flush_chars = flush_chars
        self._flush_after = flush_after
        self._schedule = schedule
        self._parts: list[str] = []
        self._size = 0
        self._first: TextDeltaEvent | None = None  # its stamp (turn, agent, session, ts) is kept
        self._immediate = True  # the next delta starts a stretch of text: no wait
        self._timer: _Timer | None = None
        self._timed: asyncio.Task[None] | None = None
        self._failure: BaseException | None = None
        # one sender at a time: a timed flush and the next event must not overtake each other
        self._sending = asyncio.Lock()

    async def emit(self, event: TurnEvent) -> None:
        self._raise_failure()
        if not isinstance(event, TextDeltaEvent):
            await self.flush()
            self._immediate = True
            async with self._sending:
                await self._emit(event)
            return
        if not event.text:
            return
        if self._immediate and not self._parts:
            self._immediate = False
            async with self._sending:
                await self._emit(event)
            return
        if self._first is None:
            self._first = event
        self._parts.append(event.text)
        self._size += len(event.text)
        if self._size >= self._flush_chars:
            await self.flush()
        elif self._timer is None:
            self._timer = self._start_timer()

    async def flush(self) -> None:
        """Send the buffered text now (one delta event), if there is any."""
        async with self._sending:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            if self._first is None:
                return
            event = msgspec.structs.replace(self._first, text="".join(self._parts))
            self._first, self._parts, self._size = None, [], 0
            await self._emit(event)

    async def aclose(self) -> None:
        """Send what is buffered; raises a failure of a timed send that nobody saw yet."""
        if self._timed is not None:
            await asyncio.gather(self._timed, return_exceptions=True)
        self._raise_failure()
        await self.flush()

    def _start_timer(self) -> _Timer:
        if self._schedule is not None:
            return self._schedule(self._flush_after, self._on_timer)
        return asyncio.get_running_loop().call_later(self._flush_after, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timed = asyncio.get_running_loop().create_task(self._timed_flush())

    async def _timed_flush(self) -> None:
        try:
            await self.flush()
        except Exception as exc:  # handed to the turn at its next event (or aclose)
            self._failure = exc

    def _raise_failure(self) -> None:
        if self._failure is not None:
            failure, self._failure = self._failure, None
            raise failure
