"""The failover's order rule for messages sent home (`Failover.where`): a message of a session
is held back while an earlier one sent home has not come back; the earliest one goes here; an
entry that never comes back is waited for only until its deadline."""

from __future__ import annotations

import collections
import time
from types import SimpleNamespace
from typing import Any

import pytest

from clawmesh_router.failover import Failover

pytestmark = pytest.mark.asyncio


class _Msg:
    def __init__(self, seq: int) -> None:
        self.metadata = SimpleNamespace(sequence=SimpleNamespace(stream=seq), num_delivered=1)
        self.naks: list[float | None] = []

    async def nak(self, delay: float | None = None) -> None:
        self.naks.append(delay)


def _failover(alive: bool = True) -> Failover:
    ctx: Any = SimpleNamespace(layout=SimpleNamespace(lease_seconds=10.0), counters=collections.Counter())
    failover = Failover(ctx)
    failover._alive = (time.monotonic() + 3600, alive)  # the runners' answer, not asked here
    return failover


async def test_messages_sent_home_come_back_in_their_order_and_hold_later_ones() -> None:
    failover = _failover()
    m5, m7 = _Msg(5), _Msg(7)
    await failover._send_home(m5, "s")
    await failover._send_home(m7, "s")
    assert (m5.naks, m7.naks) == ([0], [0])  # handed back at once
    assert await failover.where("s", 7) == "hold"  # back before 5: waits for it
    assert await failover.where("s", 9) == "hold"  # a new message of the session too
    assert await failover.where("other", 9) == "here"  # other sessions are not held
    assert await failover.where("s", 5) == "here"
    assert await failover.where("s", 9) == "hold"
    assert await failover.where("s", 7) == "here"
    assert await failover.where("s", 9) == "here"
    assert failover.ctx.counters["failover_sent_home"] == 2


async def test_a_message_sent_home_that_never_comes_back_is_waited_for_until_its_deadline() -> None:
    failover = _failover()
    await failover._send_home(_Msg(5), "s")
    assert await failover.where("s", 6) == "hold"
    failover._home["s"][5] = time.monotonic() - 1  # its deadline (the ack wait and a second) passed
    assert await failover.where("s", 6) == "here"


async def test_without_live_runners_a_session_goes_there_unless_a_turn_of_it_waits_here() -> None:
    failover = _failover(alive=False)
    waiting = {"s": True, "t": False}

    async def waiting_here(key: str) -> bool:
        return waiting[key]

    failover._waiting_here = waiting_here  # type: ignore[method-assign]
    assert await failover.where("s", 1) == "here"
    assert await failover.where("t", 2) == "there"
