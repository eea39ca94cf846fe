"""Per-session ordering in the runner: a turn runs only when it is next and the session's lease
is held; turns behind it wait their turn; anything not run is handed back, never held."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace
from typing import Any, cast

from clawmesh.bus import LeaseLost, Leases
from clawmesh.sessions import CompletionConflict, DoneRecord, PendingReply, SessionStore
from clawmesh.wire import InboundMessage, OutboundMessage, RouteInfo, TurnRequest
from clawmesh_runner.ordering import Completion, SessionOrder

SESSION = "agent:main:main"


def _turn(seq: int) -> TurnRequest:
    route = RouteInfo(
        agent_id="main",
        session_key=SESSION,
        main_session_key=SESSION,
        matched_by="default",
        channel="api",
        account_id="default",
    )
    return TurnRequest(
        turn_id=f"t{seq}", seq=seq, route=route, inbound=InboundMessage(id=f"t{seq}", channel="api")
    )


class _Msg:
    def __init__(self, name: str, delivered: int = 1) -> None:
        self.name = name
        self.outcome: tuple[str, float | None] | None = None
        self.metadata = SimpleNamespace(num_delivered=delivered)

    async def ack(self) -> None:
        self.outcome = ("ack", None)

    async def nak(self, delay: float | None = None) -> None:
        self.outcome = ("nak", delay)


class _Lease:
    def __init__(self) -> None:
        self.lost = False
        self.released = False
        self.taken_over = False
        self.held_since = time.monotonic()
        self.renewals = 0

    async def renew(self) -> None:
        self.renewals += 1
        if self.taken_over:
            self.lost = True
            raise LeaseLost("s")
        self.held_since = time.monotonic()

    async def release(self) -> None:
        if not self.lost:
            self.released = True


class _Leases:
    def __init__(self, free: bool = True) -> None:
        self.free = free
        self.taken: list[_Lease] = []

    async def acquire(self, key: str) -> _Lease | None:
        if not self.free:
            return None
        self.taken.append(_Lease())
        return self.taken[-1]


def _pending(seq: int) -> PendingReply:
    message = OutboundMessage(
        turn_id=f"t{seq}", agent_id="main", session_key=SESSION, channel="api", account_id="default", text=""
    )
    return PendingReply(subject="cm.out.api.default", msg_id=f"out:t{seq}", message=message)


class _Store:
    def __init__(self, done_seq: int = 0, pending: bool = False) -> None:
        reply = _pending(done_seq) if pending else None
        self.done = DoneRecord(seq=done_seq, turn_id=f"t{done_seq}", reply=reply) if done_seq else None
        self.reads = 0

    async def get_done(self, key: str) -> tuple[DoneRecord, int] | None:
        self.reads += 1
        return (self.done, 1) if self.done else None


class _Runs:
    """The turns run and replayed; a run can be held open until released."""

    def __init__(self) -> None:
        self.ran: list[tuple[int, int]] = []  # (turn seq, seq of the completion record it was given)
        self.replayed: list[int] = []
        self.timeline: list[str] = []  # "run <seq>", "deliver <seq>"
        self.gate: asyncio.Event | None = None
        self.started = asyncio.Event()
        self.fail: set[int] = set()
        self.stale: set[int] = set()  # turns whose completion record another runner wrote first
        self.leave_pending: set[int] = set()  # turns whose record still says their reply is pending
        self.stored: set[str] = set()  # replies stored by a run
        self.settled: list[int] = []

    async def run(self, turn: TurnRequest, msg: Any, previous: Completion) -> Completion:
        self.started.set()
        if self.gate is not None:
            await self.gate.wait()
        if turn.seq in self.fail:
            raise ConnectionError("JetStream unavailable")
        if turn.seq in self.stale:
            raise CompletionConflict(SESSION, previous[1])
        done, revision = previous
        assert done.reply is None or done.reply.msg_id in self.stored, (
            "a turn ran before its predecessor's reply was stored"
        )
        self.ran.append((turn.seq, done.seq))
        self.timeline.append(f"run {turn.seq}")
        await msg.ack()
        # a run that returns has stored its reply; the record may still say pending
        reply = _pending(turn.seq) if turn.seq in self.leave_pending else None
        if reply is not None:
            self.stored.add(reply.msg_id)
        return DoneRecord(seq=turn.seq, turn_id=turn.turn_id, reply=reply), revision + 1

    async def replay(self, turn: TurnRequest, completion: Completion) -> Completion:
        self.replayed.append(turn.seq)
        return completion

    async def settle(self, key: str, completion: Completion) -> Completion:
        done, revision = completion
        self.settled.append(done.seq)
        self.timeline.append(f"settle {done.seq}")
        return DoneRecord(seq=done.seq, turn_id=done.turn_id), revision + 1

    async def deliver(self, key: str, completion: Completion) -> Completion:
        done, revision = completion
        self.timeline.append(f"deliver {done.seq}")
        return DoneRecord(seq=done.seq, turn_id=done.turn_id), revision + 1


def _order(
    runs: _Runs, leases: _Leases | None = None, store: _Store | None = None, *, linger: float = 0
) -> SessionOrder:
    # linger 0: the session is released as soon as its turns are done (see the linger tests)
    return SessionOrder(
        cast(Leases, leases or _Leases()),
        cast(SessionStore, store or _Store()),
        runs.run,
        runs.replay,
        runs.deliver,
        asyncio.Event(),
        linger=linger,
        settle=runs.settle,
    )


async def test_the_next_turn_runs_under_the_lease_which_is_then_released() -> None:
    runs, leases, store = _Runs(), _Leases(), _Store(done_seq=4)
    msg = _Msg("5")
    await _order(runs, leases, store).submit(_turn(5), msg)  # type: ignore[arg-type]
    assert runs.ran == [(5, 4)] and msg.outcome == ("ack", None)
    assert leases.taken[0].released


async def test_a_turn_that_is_not_next_is_handed_back_with_a_delay() -> None:
    runs, leases = _Runs(), _Leases()
    msg = _Msg("3")
    await _order(runs, leases, _Store(done_seq=1)).submit(_turn(3), msg)  # type: ignore[arg-type]
    assert runs.ran == [] and msg.outcome is not None
    kind, delay = msg.outcome
    assert kind == "nak" and delay is not None and delay > 0
    assert leases.taken[0].released


async def test_a_turn_completed_before_is_answered_again_not_run() -> None:
    runs = _Runs()
    msg = _Msg("2")
    await _order(runs, store=_Store(done_seq=3)).submit(_turn(2), msg)  # type: ignore[arg-type]
    assert runs.ran == [] and runs.replayed == [2] and msg.outcome == ("ack", None)


async def test_a_session_leased_elsewhere_is_handed_back_without_reading_its_record() -> None:
    runs, store = _Runs(), _Store()
    msg = _Msg("1")
    await _order(runs, _Leases(free=False), store).submit(_turn(1), msg)  # type: ignore[arg-type]
    assert runs.ran == [] and store.reads == 0 and msg.outcome == ("nak", 0.05)


async def test_turns_arriving_meanwhile_run_next_in_sequence_order_under_one_lease() -> None:
    runs, leases = _Runs(), _Leases()
    runs.gate = asyncio.Event()
    order = _order(runs, leases)
    msgs = {seq: _Msg(str(seq)) for seq in (1, 2, 3, 5)}
    first = asyncio.create_task(order.submit(_turn(1), msgs[1]))  # type: ignore[arg-type]
    await runs.started.wait()
    for seq in (3, 5, 2):  # out of order; 5 is not next after 3
        await order.submit(_turn(seq), msgs[seq])  # type: ignore[arg-type]
    assert {m.name for m in order.held()} == {"1", "2", "3", "5"}  # all kept from redelivery
    runs.gate.set()
    await first
    assert runs.ran == [(1, 0), (2, 1), (3, 2)]
    assert len(leases.taken) == 1 and leases.taken[0].released
    assert msgs[5].outcome == ("nak", 0.01)  # handed back, not held
    assert list(order.held()) == [] and len(order) == 0


async def test_a_turn_that_cannot_be_finished_is_handed_back_with_those_behind_it() -> None:
    runs, leases = _Runs(), _Leases()
    runs.gate, runs.fail = asyncio.Event(), {1}
    order = _order(runs, leases)
    msg1, msg2 = _Msg("1"), _Msg("2")
    first = asyncio.create_task(order.submit(_turn(1), msg1))  # type: ignore[arg-type]
    await runs.started.wait()
    await order.submit(_turn(2), msg2)  # type: ignore[arg-type]
    runs.gate.set()
    await first
    assert runs.ran == []
    assert msg1.outcome == ("nak", 1.0) and msg2.outcome == ("nak", 0.01)
    assert leases.taken[0].released


async def test_a_lost_lease_abandons_the_turn_and_hands_back_the_next_one() -> None:
    runs, leases = _Runs(), _Leases()
    runs.gate = asyncio.Event()
    order = _order(runs, leases)
    msg1, msg2 = _Msg("1"), _Msg("2")
    first = asyncio.create_task(order.submit(_turn(1), msg1))  # type: ignore[arg-type]
    await runs.started.wait()
    await order.submit(_turn(2), msg2)  # type: ignore[arg-type]
    leases.taken[0].taken_over = True
    await order.renew()  # finds the lease taken over: the running turn is cancelled
    await first
    assert runs.ran == []
    assert msg1.outcome is None  # left to JetStream: redelivered to whoever holds the session now
    assert msg2.outcome == ("nak", 0.01)  # not run here, and not held either
    assert not leases.taken[0].released  # it is someone else's
    assert list(order.held()) == []


async def test_renewal_failures_other_than_a_takeover_keep_the_turn_running() -> None:
    runs, leases = _Runs(), _Leases()
    runs.gate = asyncio.Event()
    order = _order(runs, leases)
    first = asyncio.create_task(order.submit(_turn(1), _Msg("1")))  # type: ignore[arg-type]
    await runs.started.wait()

    async def slow_renewal() -> None:
        raise TimeoutError

    leases.taken[0].renew = slow_renewal  # type: ignore[method-assign]
    await order.renew()
    runs.gate.set()
    await first
    assert runs.ran == [(1, 0)]


async def test_a_predecessors_pending_reply_is_published_before_the_next_turn_runs() -> None:
    # the runner of turn 4 stopped after recording it and before its reply was stored
    runs = _Runs()
    msg = _Msg("5")
    await _order(runs, store=_Store(done_seq=4, pending=True)).submit(_turn(5), msg)  # type: ignore[arg-type]
    assert runs.timeline == ["deliver 4", "run 5"] and msg.outcome == ("ack", None)


async def test_a_reply_a_run_stored_is_not_published_again_and_settled_when_let_go() -> None:
    runs = _Runs()
    runs.gate, runs.leave_pending = asyncio.Event(), {1, 2}
    order = _order(runs)
    first = asyncio.create_task(order.submit(_turn(1), _Msg("1")))  # type: ignore[arg-type]
    await runs.started.wait()
    await order.submit(_turn(2), _Msg("2"))  # type: ignore[arg-type]
    runs.gate.set()
    await first
    # 2 replaces the record 1 left; only the last one is written again, before the release
    assert runs.timeline == ["run 1", "run 2", "settle 2"]


async def test_a_kept_session_is_settled_before_its_lease_is_released() -> None:
    runs, leases = _Runs(), _Leases()
    runs.leave_pending = {1}
    order = _order(runs, leases, linger=60)
    await order.submit(_turn(1), _Msg("1"))  # type: ignore[arg-type]
    assert runs.settled == [] and not leases.taken[0].released
    await order.close()
    assert runs.settled == [1] and leases.taken[0].released


async def test_a_stale_runner_stops_working_on_the_session_and_hands_its_turns_back() -> None:
    runs, leases = _Runs(), _Leases()
    runs.gate, runs.stale = asyncio.Event(), {1}
    order = _order(runs, leases)
    msg1, msg2 = _Msg("1"), _Msg("2")
    first = asyncio.create_task(order.submit(_turn(1), msg1))  # type: ignore[arg-type]
    await runs.started.wait()
    await order.submit(_turn(2), msg2)  # type: ignore[arg-type]
    runs.gate.set()
    await first
    assert runs.ran == []
    assert msg1.outcome == ("nak", 0.05) and msg2.outcome == ("nak", 0.01)
    assert list(order.held()) == [] and len(order) == 0


# --- a session kept claimed for a moment after its turn ------------------------------------


async def test_the_next_turn_arriving_while_the_session_is_kept_runs_without_lease_or_read() -> None:
    runs, leases, store = _Runs(), _Leases(), _Store(done_seq=4)
    order = _order(runs, leases, store, linger=60)
    msg5, msg6 = _Msg("5"), _Msg("6")
    await order.submit(_turn(5), msg5)  # type: ignore[arg-type]
    assert not leases.taken[0].released and len(order) == 1 and list(order.held()) == []
    await order.submit(_turn(6), msg6)  # type: ignore[arg-type]
    assert runs.ran == [(5, 4), (6, 5)]  # 6 was given the record 5 wrote
    assert len(leases.taken) == 1 and store.reads == 1 and leases.taken[0].renewals == 0
    await order.close()  # stopping: the claim is given up at once
    assert leases.taken[0].released and len(order) == 0


async def test_a_kept_session_is_released_when_its_moment_has_passed() -> None:
    runs, leases = _Runs(), _Leases()
    order = _order(runs, leases, linger=0.01)
    await order.submit(_turn(1), _Msg("1"))  # type: ignore[arg-type]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while not leases.taken[0].released and loop.time() < deadline:
        await asyncio.sleep(0.005)  # polling with a deadline, not synchronising on a delay
    assert leases.taken[0].released and len(order) == 0


async def test_a_kept_session_whose_lease_was_lost_is_taken_and_read_again() -> None:
    runs, leases, store = _Runs(), _Leases(), _Store(done_seq=4)
    order = _order(runs, leases, store, linger=60)
    await order.submit(_turn(5), _Msg("5"))  # type: ignore[arg-type]
    leases.taken[0].taken_over = True
    await order.renew()  # the heartbeat finds it taken over
    msg6 = _Msg("6")
    await order.submit(_turn(6), msg6)  # type: ignore[arg-type]
    assert len(leases.taken) == 2 and store.reads == 2  # taken again, and the record read under it
    await order.close()


async def test_a_kept_lease_not_renewed_for_long_is_checked_before_the_next_turn() -> None:
    runs, leases = _Runs(), _Leases()
    order = _order(runs, leases, linger=60)
    await order.submit(_turn(1), _Msg("1"))  # type: ignore[arg-type]
    leases.taken[0].held_since -= 3600  # as if the process had been stopped for an hour
    await order.submit(_turn(2), _Msg("2"))  # type: ignore[arg-type]
    assert leases.taken[0].renewals == 1 and runs.ran == [(1, 0), (2, 1)]
    await order.close()


async def test_a_session_whose_turn_could_not_be_finished_is_not_kept() -> None:
    runs, leases = _Runs(), _Leases()
    runs.fail = {1}
    order = _order(runs, leases, linger=60)
    await order.submit(_turn(1), _Msg("1"))  # type: ignore[arg-type]
    assert leases.taken[0].released and len(order) == 0


async def test_a_turn_whose_session_cannot_be_claimed_is_handed_back_not_raised() -> None:
    """The lease or the completion record cannot be read (a JetStream node away): the turn is
    handed back at once instead of escaping as an unhandled task error and waiting out its
    ack deadline."""

    class _Away(_Leases):
        async def acquire(self, key: str) -> _Lease | None:
            raise ConnectionError("JetStream system temporarily unavailable")

    runs = _Runs()
    order = _order(runs, _Away())
    msg = _Msg("1")
    await order.submit(_turn(1), msg)  # type: ignore[arg-type]
    assert runs.ran == [] and msg.outcome == ("nak", 1.0)
    assert list(order.held()) == [] and len(order) == 0
