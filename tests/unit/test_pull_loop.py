"""The shared fetch loop of pull consumers: batches in order, failures retried, stops promptly."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from nats.errors import TimeoutError as NatsTimeout

from clawmesh.bus import _pull, pull_forever


class _Script:
    """A pull subscription that answers fetches from a script, then sets `stop`."""

    def __init__(self, stop: asyncio.Event, *answers: Any) -> None:
        self.stop = stop
        self.answers = list(answers)
        self.sizes: list[int] = []

    async def fetch(self, batch: int, timeout: float) -> list[Any]:
        self.sizes.append(batch)
        if not self.answers:
            self.stop.set()
            raise NatsTimeout
        answer = self.answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return list(answer)


@pytest.fixture(autouse=True)
def _no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_pull, "BACKOFF", 0.0)


async def test_batches_reach_the_handler_in_order_and_timeouts_are_retried() -> None:
    stop = asyncio.Event()
    psub = _Script(stop, ["a", "b"], NatsTimeout(), TimeoutError(), ["c"])
    seen: list[list[str]] = []

    async def handle(msgs: list[str]) -> None:
        seen.append(msgs)

    await pull_forever(psub, handle, batch=7, stop=stop, name="test")  # type: ignore[arg-type]
    assert seen == [["a", "b"], ["c"]]
    assert psub.sizes == [7] * 5


async def test_a_failed_fetch_is_logged_and_retried(caplog: pytest.LogCaptureFixture) -> None:
    stop = asyncio.Event()
    psub = _Script(stop, ConnectionError("gone"), ["a"])
    seen: list[list[str]] = []

    async def handle(msgs: list[str]) -> None:
        seen.append(msgs)

    with caplog.at_level(logging.WARNING, "clawmesh.bus"):
        await pull_forever(psub, handle, batch=1, stop=stop, name="svc")  # type: ignore[arg-type]
    assert seen == [["a"]]
    assert "svc: fetch failed: gone" in caplog.text


async def test_a_batch_handed_back_does_not_stop_the_loop() -> None:
    stop = asyncio.Event()
    psub = _Script(stop, ["a"], ["a"])
    results = [False, True]

    async def handle(msgs: list[str]) -> bool:
        return results.pop(0)

    await pull_forever(psub, handle, batch=1, stop=stop, name="test")  # type: ignore[arg-type]
    assert results == []


async def test_batch_size_comes_from_the_room_callback_and_zero_means_ask_again() -> None:
    stop = asyncio.Event()
    psub = _Script(stop, ["a"], ["b"])
    room = [0, 3, 0, 0, 5, 1]

    async def batch() -> int:
        return room.pop(0)

    async def handle(msgs: list[str]) -> None:
        pass

    await pull_forever(psub, handle, batch=batch, stop=stop, name="test")  # type: ignore[arg-type]
    assert psub.sizes == [3, 5, 1]


async def test_stops_when_no_longer_active() -> None:
    stop = asyncio.Event()
    psub = _Script(stop, ["a"], ["b"], ["c"])
    seen: list[list[str]] = []

    async def handle(msgs: list[str]) -> None:
        seen.append(msgs)

    await pull_forever(psub, handle, batch=1, stop=stop, name="test", active=lambda: len(seen) < 2)  # type: ignore[arg-type]
    assert seen == [["a"], ["b"]]
    assert not stop.is_set()
