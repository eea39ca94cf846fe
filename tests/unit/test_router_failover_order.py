"""The failover's order rule for messages sent home (`Failover.where`): a message of a session
is held back while an earlier one sent home has not come back; the earliest one goes here; an
entry that never comes back is waited for only until its deadline."""

from __future__ import annotations

import asyncio
import collections
import time
from types import SimpleNamespace
from typing import Any

import pytest

from clawmesh.sessions import DoneRecord, PendingReply, SessionRecord, TurnStatus
from clawmesh.wire import InboundMessage, OutboundMessage
from clawmesh_router.failover import Failover, Outcome

pytestmark = pytest.mark.asyncio


class _Msg:
    def __init__(self, seq: int) -> None:
        self.metadata = SimpleNamespace(sequence=SimpleNamespace(stream=seq), num_delivered=1)
        self.naks: list[float | None] = []
        self.acked = False

    async def nak(self, delay: float | None = None) -> None:
        self.naks.append(delay)

    async def ack(self) -> None:
        self.acked = True


class _Nats:
    async def publish(self, subject: str, data: bytes, headers: dict[str, str] | None = None) -> None:
        pass


def _failover(alive: bool = True) -> Failover:
    ctx: Any = SimpleNamespace(
        layout=SimpleNamespace(lease_seconds=10.0),
        counters=collections.Counter(),
        nc=_Nats(),
        subjects=SimpleNamespace(route_decided="cm.route.decided"),
    )
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


_ROUTE: Any = SimpleNamespace(
    channel="api", account_id="a", agent_id="main", session_key="s", matched_by="default"
)


async def _served_in_turn(first: Outcome | Exception) -> tuple[list[str], list[_Msg]]:
    """Two messages of one session failed over, the first ending as `first`: which of them
    were tried there, and the messages."""
    failover = _failover(alive=False)
    tried: list[str] = []

    async def served(inbound: InboundMessage, route: Any, region: str, *, again: bool = False) -> Outcome:
        tried.append(inbound.id)
        if inbound.id == "two":
            return "served"
        if isinstance(first, Exception):
            raise first
        return first

    failover._served = served  # type: ignore[method-assign]
    msgs = [_Msg(1), _Msg(2)]
    owed: list[_Msg] = []
    for msg, turn_id in zip(msgs, ["one", "two"], strict=True):
        inbound = InboundMessage(id=turn_id, channel="api")
        failover.serve(msg, inbound, _ROUTE, "sg", owe=owed.append)  # type: ignore[arg-type]
    await asyncio.gather(*failover._serving)
    # the router owes what is not answered there (nothing newer of its partition goes first)
    assert owed == [m for m in msgs if not m.acked]
    return tried, msgs


async def test_a_message_follows_its_sessions_earlier_one_home_or_back_to_the_stream() -> None:
    tried, (m1, m2) = await _served_in_turn("served")
    assert tried == ["one", "two"] and m1.acked and m2.acked

    # the first is sent home: the second follows it, without being tried there
    tried, (m1, m2) = await _served_in_turn("home")
    assert tried == ["one"] and (m1.naks, m2.naks) == ([0], [0]) and not (m1.acked or m2.acked)

    # the first's reply could not be stored: both come back after the ack wait, in order
    tried, (m1, m2) = await _served_in_turn(RuntimeError("CM_OUTBOUND unavailable"))
    assert tried == ["one"] and (m1.naks, m2.naks) == ([], []) and not (m1.acked or m2.acked)


class _Store:
    """A session's records as the router reads them, and which turns CM_TURNS still holds."""

    def __init__(self, numbered: int, done: DoneRecord | None, unacked: set[int], status: bool) -> None:
        self.numbered, self.done, self.unacked, self.status = numbered, done, unacked, status

    async def get_session(self, key: str) -> tuple[SessionRecord, int] | None:
        record = SessionRecord(session_key=key, agent_id="main", session_id="x", seq=self.numbered)
        return (record, 1) if self.numbered else None

    async def get_done(self, key: str) -> tuple[DoneRecord, int] | None:
        return (self.done, 1) if self.done is not None else None

    async def turn_acked(self, turn_seq: int) -> bool:
        return bool(turn_seq) and turn_seq not in self.unacked

    async def get_turn_status(self, turn_id: str) -> TurnStatus | None:
        return TurnStatus(state="done") if self.status else None


def _pending(turn_seq: int) -> PendingReply:
    message = OutboundMessage(
        turn_id="t", agent_id="main", session_key="s", channel="api", account_id="a", text=""
    )
    return PendingReply(subject="cm.out.api.a", msg_id="out:t", message=message, turn_seq=turn_seq)


@pytest.mark.parametrize(
    ("numbered", "done", "unacked", "status", "waiting"),
    [
        (0, None, set(), False, False),  # a new session
        (3, DoneRecord(seq=3), set(), True, False),  # every turn completed
        (4, DoneRecord(seq=3), set(), True, True),  # turn 4 waits for a runner
        (1, None, set(), False, True),  # its first turn waits
        # turn 3 completed, its reply kept pending in the record (cleared only when a runner
        # lets the session go): stored if its turn status was written or its turn acked, both
        # of which follow the reply; else its runner died in between and the next one stores it
        (3, DoneRecord(seq=3, turn_id="t", reply=_pending(7)), set(), False, False),
        (3, DoneRecord(seq=3, turn_id="t", reply=_pending(7)), {7}, True, False),
        (3, DoneRecord(seq=3, turn_id="t", reply=_pending(7)), {7}, False, True),
    ],
)
async def test_a_session_waits_here_while_a_turn_routed_here_is_not_over(
    numbered: int, done: DoneRecord | None, unacked: set[int], status: bool, waiting: bool
) -> None:
    failover = _failover(alive=False)
    failover.ctx.sessions = _Store(numbered, done, unacked, status)
    assert await failover._waiting_here("s") is waiting
    assert await failover.where("s", 1) == ("here" if waiting else "there")


async def test_a_partition_let_go_abandons_only_its_own_messages_served_elsewhere() -> None:
    failover = _failover(alive=False)
    answered = asyncio.Event()

    async def served(inbound: InboundMessage, route: Any, region: str, *, again: bool = False) -> Outcome:
        await answered.wait()  # the other region is running the turn
        return "served"

    failover._served = served  # type: ignore[method-assign]
    kept, let_go = _Msg(1), _Msg(2)
    for msg, partition, session in ((kept, 0, "s"), (let_go, 1, "t")):
        route = SimpleNamespace(**{**vars(_ROUTE), "session_key": session})
        failover.serve(msg, InboundMessage(id=session, channel="api"), route, "sg", partition=partition)  # type: ignore[arg-type]
    await failover.stop(1)
    # unacked and not handed back: JetStream gives it to the partition's next holder
    assert (let_go.acked, let_go.naks) == (False, [])
    assert list(failover._serving.values()) == [0] and failover.busy("s") and not failover.busy("t")
    answered.set()
    await asyncio.gather(*failover._serving)
    assert kept.acked
