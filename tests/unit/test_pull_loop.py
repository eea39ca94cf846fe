"""The shared fetch loop of pull consumers: one request stays open while messages arrive, they
reach the handler in order as they come, failures are retried, and it stops promptly."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from clawmesh.bus import _pull, pull_forever


class _Msg:
    def __init__(self, data: bytes, status: str | None = None, description: str = "") -> None:
        self.data = data
        self.headers = {"Status": status, "Description": description} if status else None
        self.naked = False

    async def nak(self) -> None:
        self.naked = True

    def __repr__(self) -> str:
        return self.data.decode() or f"<{self.headers}>"


def _status(code: str, description: str = "") -> _Msg:
    return _Msg(b"", code, description)


class _Source:
    """A pull subscription that answers requests from a script: each entry is what JetStream
    delivers after one request (messages, statuses, or an exception raised by the request).
    Runs out: sets `stop`."""

    def __init__(self, stop: asyncio.Event, *script: Any) -> None:
        self.stop = stop
        self.script = list(script)
        self.requests: list[int] = []
        self.inbox: asyncio.Queue[_Msg] = asyncio.Queue()

    async def request(self, size: int, expires: float) -> None:
        self.requests.append(size)
        if not self.script:
            self.stop.set()
            return
        answer = self.script.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        for item in answer:
            self.inbox.put_nowait(item if isinstance(item, _Msg) else _Msg(item.encode()))

    async def next(self, timeout: float) -> Any:
        try:
            return await asyncio.wait_for(self.inbox.get(), timeout)
        except TimeoutError:
            raise TimeoutError from None

    def queued(self) -> int:
        return self.inbox.qsize()


@pytest.fixture(autouse=True)
def _no_waiting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_pull, "BACKOFF", 0.0)
    monkeypatch.setattr(_pull, "FETCH_WAIT", 0.05)
    monkeypatch.setattr(_pull, "_GRACE", 0.0)


def _texts(batches: list[list[Any]]) -> list[list[str]]:
    return [[m.data.decode() for m in b] for b in batches]


async def test_one_request_delivers_many_batches_until_it_has_delivered_its_size() -> None:
    stop = asyncio.Event()
    # 3 asked for; 3 arrive, then a new request is sent
    source = _Source(stop, ["a", "b", "c"], ["d", _status("408", "Request Timeout")])
    seen: list[list[Any]] = []

    async def handle(msgs: list[Any]) -> None:
        seen.append(msgs)

    await pull_forever(source, handle, batch=3, stop=stop, name="test")
    assert [m for batch in _texts(seen) for m in batch] == ["a", "b", "c", "d"]
    assert source.requests == [3, 3, 3]  # the third finds the script ended


async def test_messages_that_arrived_together_are_handed_on_together_in_order() -> None:
    stop = asyncio.Event()
    source = _Source(stop, ["a", "b", "c", _status("408")])
    seen: list[list[Any]] = []

    async def handle(msgs: list[Any]) -> None:
        seen.append(msgs)

    await pull_forever(source, handle, batch=10, stop=stop, name="test")
    assert _texts(seen) == [["a", "b", "c"]]


async def test_an_open_request_keeps_delivering_without_a_new_request() -> None:
    stop = asyncio.Event()
    source = _Source(stop, ["a"], [])
    seen: list[list[Any]] = []

    async def handle(msgs: list[Any]) -> None:
        seen.append(msgs)
        if len(seen) == 1:
            source.inbox.put_nowait(_Msg(b"b"))  # arrives later on the same request
        elif len(seen) == 2:
            source.inbox.put_nowait(_status("408"))

    await pull_forever(source, handle, batch=10, stop=stop, name="test")
    assert _texts(seen) == [["a"], ["b"]]
    assert source.requests[:2] == [10, 10]  # the second only after the first expired


async def test_a_failed_request_is_logged_and_retried(caplog: pytest.LogCaptureFixture) -> None:
    stop = asyncio.Event()
    source = _Source(stop, ConnectionError("gone"), ["a", _status("408")])
    seen: list[list[Any]] = []

    async def handle(msgs: list[Any]) -> None:
        seen.append(msgs)

    with caplog.at_level(logging.WARNING, "clawmesh.bus"):
        await pull_forever(source, handle, batch=1, stop=stop, name="svc")
    assert _texts(seen) == [["a"]]
    assert "svc: fetch failed: gone" in caplog.text


async def test_a_request_ended_by_jetstream_is_logged_and_asked_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    stop = asyncio.Event()
    source = _Source(stop, [_status("409", "Leadership Change")], ["a", _status("408")])
    seen: list[list[Any]] = []

    async def handle(msgs: list[Any]) -> None:
        seen.append(msgs)

    with caplog.at_level(logging.WARNING, "clawmesh.bus"):
        await pull_forever(source, handle, batch=5, stop=stop, name="svc")
    assert _texts(seen) == [["a"]]
    assert "svc: fetch failed: 409 Leadership Change" in caplog.text


async def test_a_batch_handed_back_does_not_stop_the_loop() -> None:
    stop = asyncio.Event()
    source = _Source(stop, ["a"], ["a"])
    results = [False, True]

    async def handle(msgs: list[Any]) -> bool:
        return results.pop(0)

    await pull_forever(source, handle, batch=1, stop=stop, name="test")
    assert results == []


async def test_request_size_comes_from_the_room_callback_and_zero_means_ask_again() -> None:
    stop = asyncio.Event()
    source = _Source(stop, ["a"], ["b", "c"])
    room = [0, 1, 0, 0, 2, 1]

    async def batch() -> int:
        return room.pop(0)

    async def handle(msgs: list[Any]) -> None:
        pass

    await pull_forever(source, handle, batch=batch, stop=stop, name="test")
    assert source.requests == [1, 2, 1]


async def test_stops_when_no_longer_active() -> None:
    stop = asyncio.Event()
    source = _Source(stop, ["a"], ["b"], ["c"])
    seen: list[list[Any]] = []

    async def handle(msgs: list[Any]) -> None:
        seen.append(msgs)

    await pull_forever(source, handle, batch=1, stop=stop, name="test", active=lambda: len(seen) < 2)
    assert _texts(seen) == [["a"], ["b"]]
    assert not stop.is_set()


async def test_what_arrives_after_the_loop_ended_is_handed_back_in_order() -> None:
    stop = asyncio.Event()
    source = _Source(stop, ["a"])
    late = [_Msg(b"b"), _Msg(b"c")]
    seen: list[list[Any]] = []

    async def handle(msgs: list[Any]) -> None:
        seen.append(msgs)
        for msg in late:  # delivered on the open request while the loop is ending
            source.inbox.put_nowait(msg)
        source.inbox.put_nowait(_status("408"))

    await pull_forever(source, handle, batch=10, stop=stop, name="test", active=lambda: not seen)
    assert _texts(seen) == [["a"]]
    assert [m.naked for m in late] == [True, True] and source.queued() == 0


async def test_finish_hands_what_arrives_after_a_stop_to_the_handler_not_back() -> None:
    stop = asyncio.Event()
    source = _Source(stop, ["a"])
    late = [_Msg(b"b"), _Msg(b"c")]
    seen: list[list[Any]] = []

    async def handle(msgs: list[Any]) -> None:
        seen.append(msgs)
        if len(seen) == 1:  # stopped (a partition handed over) while the request is open
            stop.set()
            for msg in late:
                source.inbox.put_nowait(msg)
            source.inbox.put_nowait(_status("408"))

    await pull_forever(source, handle, batch=10, stop=stop, name="test", finish=True)
    assert [m for batch in _texts(seen) for m in batch] == ["a", "b", "c"]
    assert [m.naked for m in late] == [False, False] and source.queued() == 0


async def test_finish_still_hands_back_when_no_longer_active() -> None:
    """No longer active (a router that lost its lease): nothing more is routed, even with finish."""
    stop = asyncio.Event()
    source = _Source(stop, ["a"])
    late = [_Msg(b"b"), _Msg(b"c")]
    seen: list[list[Any]] = []

    async def handle(msgs: list[Any]) -> None:
        seen.append(msgs)
        for msg in late:
            source.inbox.put_nowait(msg)
        source.inbox.put_nowait(_status("408"))

    await pull_forever(source, handle, batch=10, stop=stop, name="test", active=lambda: not seen, finish=True)
    assert _texts(seen) == [["a"]]
    assert [m.naked for m in late] == [True, True]
