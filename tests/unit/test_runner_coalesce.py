"""Coalescing a turn's text deltas: the first goes out at once, the rest by size or after a
short wait (driven here by a fake timer), everything before a non-delta event, text exact."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from clawmesh.wire import TextDeltaEvent, ToolCallEvent, TurnEvent
from clawmesh_runner.coalesce import FLUSH_AFTER, FLUSH_CHARS, DeltaCoalescer


class _FakeTimers:
    """Stands in for `loop.call_later`: timers fire only when the test says so."""

    def __init__(self) -> None:
        self.pending: list[_FakeTimer] = []

    def __call__(self, delay: float, callback: Callable[[], None]) -> _FakeTimer:
        timer = _FakeTimer(delay, callback)
        self.pending.append(timer)
        return timer

    def live(self) -> list[_FakeTimer]:
        return [t for t in self.pending if not t.cancelled and not t.fired]

    async def fire(self) -> None:
        (timer,) = self.live()
        timer.fired = True
        timer.callback()
        for _ in range(5):  # let the flush task it started run to completion
            await asyncio.sleep(0)


class _FakeTimer:
    def __init__(self, delay: float, callback: Callable[[], None]) -> None:
        self.delay, self.callback = delay, callback
        self.cancelled = self.fired = False

    def cancel(self) -> None:
        self.cancelled = True


def _delta(text: str) -> TextDeltaEvent:
    return TextDeltaEvent(turn_id="t1", agent_id="a", session_key="s", text=text)


def _setup(flush_chars: int = FLUSH_CHARS) -> tuple[DeltaCoalescer, list[TurnEvent], _FakeTimers]:
    sent: list[TurnEvent] = []

    async def emit(event: TurnEvent) -> None:
        sent.append(event)

    timers = _FakeTimers()
    return DeltaCoalescer(emit, flush_chars=flush_chars, schedule=timers), sent, timers


def _texts(sent: list[TurnEvent]) -> list[str]:
    return [e.text if isinstance(e, TextDeltaEvent) else f"<{e.__struct_config__.tag}>" for e in sent]


async def test_the_first_delta_goes_out_at_once_then_deltas_wait_for_the_timer() -> None:
    co, sent, timers = _setup()
    await co.emit(_delta("Hel"))
    assert _texts(sent) == ["Hel"]
    await co.emit(_delta("lo"))
    await co.emit(_delta(", wor"))
    assert _texts(sent) == ["Hel"]
    assert [t.delay for t in timers.live()] == [FLUSH_AFTER]  # one timer for the whole batch
    await timers.fire()
    assert _texts(sent) == ["Hel", "lo, wor"]
    assert sent[1].turn_id == "t1" and sent[1].session_key == "s"  # the stamp is kept
    await co.emit(_delta("ld"))
    assert len(timers.live()) == 1  # a new batch, a new timer
    await co.aclose()
    assert _texts(sent) == ["Hel", "lo, wor", "ld"]
    assert timers.live() == []


async def test_a_full_buffer_is_sent_without_waiting() -> None:
    co, sent, timers = _setup(flush_chars=10)
    await co.emit(_delta("first"))
    for piece in ["abcd", "efgh", "ijkl", "mn"]:
        await co.emit(_delta(piece))
    assert _texts(sent) == ["first", "abcdefghijkl"]
    assert len(timers.live()) == 1 and timers.pending[0].cancelled  # the size flush cancelled it
    await co.aclose()
    assert _texts(sent) == ["first", "abcdefghijkl", "mn"]


async def test_buffered_text_goes_out_before_any_other_event_and_text_restarts_promptly() -> None:
    co, sent, _ = _setup()
    await co.emit(_delta("Let me "))
    await co.emit(_delta("check"))
    await co.emit(_delta("."))
    await co.emit(ToolCallEvent(turn_id="t1", call_id="c1", name="exec"))
    await co.emit(_delta("Done"))  # after a tool call the text resumes without waiting
    await co.emit(_delta("!"))
    await co.aclose()
    assert _texts(sent) == ["Let me ", "check.", "<tool_call>", "Done", "!"]


async def test_many_tiny_deltas_arrive_as_few_events_with_the_exact_text() -> None:
    co, sent, timers = _setup()
    words = [f"w{i} " if i % 7 else "é\n" for i in range(20_000)]
    for i, word in enumerate(words):
        await co.emit(_delta(word))
        if i % 5_000 == 4_999 and timers.live():
            await timers.fire()
    await co.aclose()
    text = "".join(words)
    assert "".join(_texts(sent)) == text
    assert len(sent) <= len(text) // FLUSH_CHARS + 1 + 4 + 1  # size flushes, first, timers, last
    assert all(len(t) < FLUSH_CHARS + 10 for t in _texts(sent))


async def test_empty_deltas_are_dropped() -> None:
    co, sent, timers = _setup()
    await co.emit(_delta(""))
    await co.emit(_delta("x"))
    await co.emit(_delta(""))
    await co.aclose()
    assert _texts(sent) == ["x"] and timers.pending == []


async def test_a_failed_timed_send_surfaces_at_the_next_event() -> None:
    calls = 0

    async def emit(event: TurnEvent) -> None:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise ConnectionError("nats closed")

    timers = _FakeTimers()
    co = DeltaCoalescer(emit, schedule=timers)
    await co.emit(_delta("a"))
    await co.emit(_delta("b"))
    await timers.fire()
    with pytest.raises(ConnectionError, match="nats closed"):
        await co.emit(_delta("c"))


async def test_the_real_timer_flushes_without_further_events() -> None:
    sent: list[TurnEvent] = []
    flushed = asyncio.Event()

    async def emit(event: TurnEvent) -> None:
        sent.append(event)
        if len(sent) == 2:
            flushed.set()

    co = DeltaCoalescer(emit)
    await co.emit(_delta("a"))
    await co.emit(_delta("b"))
    await asyncio.wait_for(flushed.wait(), 10)
    assert _texts(sent) == ["a", "b"]
