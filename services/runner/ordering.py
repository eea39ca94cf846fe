"""Per-session ordering: one turn of a session at a time, in the router's sequence order,
across any number of runner replicas, and their replies stored in that order.

A turn runs only while this runner holds the session's lease (a KV key that expires unless
renewed), only when the session's completion record says its predecessor is done, and only
after the predecessor's reply, if the record still has it pending, was published (`Deliver`).
Turns that are not next are handed back (nak with a delay) or, if this runner is already
working on the session, parked behind the current one and run next without another lease
round trip. The record is written with compare-and-set: a runner that finds it changed since
it read it (CompletionConflict) is stale and stops working on the session.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine, Iterator, MutableMapping
from dataclasses import dataclass, field
from typing import Any

from nats.aio.msg import Msg

from clawmesh.bus import Lease, LeaseLost, Leases
from clawmesh.errors import best_effort
from clawmesh.sessions import CompletionConflict, DoneRecord, SessionStore
from clawmesh.wire import TurnRequest, encode_token

__all__ = ["LINGER", "Completion", "Deliver", "Replay", "RunTurn", "SessionOrder", "Settle"]

log = logging.getLogger("clawmesh.runner")


# A session's completion record and its KV revision (0: none yet).
Completion = tuple[DoneRecord, int]
# Run one turn that is next in its session, given the session's completion record; returns the
# new completion record, whose pending reply (if any) is stored by then. Raising means the turn
# could not be finished (it is handed back).
RunTurn = Callable[[TurnRequest, Msg, Completion], Coroutine[Any, Any, Completion]]
# Answer a turn completed before from the completion record (and ack nothing: the caller does).
Replay = Callable[[TurnRequest, Completion], Coroutine[Any, Any, Completion]]
# Publish the record's pending reply, if any (session key, record); the record without it.
Deliver = Callable[[str, Completion], Coroutine[Any, Any, Completion]]
# Write the record without its pending reply, which this runner stored (session key, record).
Settle = Callable[[str, Completion], Coroutine[Any, Any, Completion]]


# How long an idle session stays claimed after its turn (its lease kept, its completion record
# remembered): a session's next turn arriving meanwhile runs at once, without taking the lease
# and reading the record again (2 round trips, 6 NATS messages with the release). A turn of it
# that another runner fetches meanwhile is handed back until the lease is free, so this stays
# short.
LINGER = 1.0
# a turn handed back after the bus failed under it comes again after this long
_RETRY_DELAY = 1.0


@dataclass
class _Session:
    """This runner's claim on a session while it runs (or parks) its turns, and for `LINGER`
    seconds after them."""

    key: str
    lease: Lease | None = None
    current: Msg | None = None
    parked: dict[int, tuple[TurnRequest, Msg]] = field(default_factory=dict)
    task: asyncio.Task[Completion] | None = None
    busy: bool = False  # a turn of it is being submitted or run here
    # the completion record as this runner last wrote or read it: stored as it is for as long
    # as the lease stayed ours (only the lease holder writes it)
    completion: Completion | None = None
    # the msg id of the completion record's pending reply when this runner stored it: the
    # record is settled (written without it) only when the session is let go
    stored_reply: str | None = None
    linger: asyncio.TimerHandle | None = None


class SessionOrder:
    """Runs each session's turns in sequence order under the session's lease."""

    def __init__(
        self,
        leases: Leases,
        store: SessionStore,
        run: RunTurn,
        replay: Replay,
        deliver: Deliver,
        stopping: asyncio.Event,
        *,
        counters: MutableMapping[str, int] | None = None,
        lease_seconds: float = 10.0,
        linger: float = LINGER,
        settle: Settle | None = None,
    ) -> None:
        self.counters = counters  # the service's: failed releases and naks are counted there
        self.leases = leases
        self.store = store
        self.run = run
        self.replay = replay
        self.deliver = deliver
        self.stopping = stopping
        self.lease_seconds = lease_seconds
        self.linger = linger
        self.settle = settle
        self._active: dict[str, _Session] = {}
        self._releasing: set[asyncio.Task[None]] = set()

    def __len__(self) -> int:
        """Sessions this runner is working on (or keeps claimed for a moment after)."""
        return len(self._active)

    def held(self) -> Iterator[Msg]:
        """Turn messages this runner holds (running or parked): keep them from being redelivered."""
        for work in list(self._active.values()):
            if work.current is not None:
                yield work.current
            for _, msg in list(work.parked.values()):
                yield msg

    async def renew(self) -> None:
        """Renew every session lease held, concurrently (one round trip for all of them)."""
        works = [w for w in list(self._active.values()) if w.lease is not None and not w.lease.lost]
        await asyncio.gather(*(self._renew(w) for w in works))

    async def _renew(self, work: _Session) -> None:
        assert work.lease is not None
        try:
            await work.lease.renew()
        except LeaseLost:
            # Someone else holds it now (ours expired): stop; the turn is redelivered.
            log.error("runner: lost the lease of %s; abandoning its turn", work.key)
            if work.task is not None:
                work.task.cancel()
        except Exception as exc:  # a slow or failed round trip: try again at the next beat
            log.warning("runner: could not renew the lease of %s (%s)", work.key, exc)

    async def submit(self, turn: TurnRequest, msg: Msg) -> None:
        """Run `turn` if it is next in its session (and the turns parked behind it), answer it
        again if it was completed before, or hand it back for later."""
        key = turn.session_key
        work = self._active.get(key)
        if work is not None and work.busy:
            # Already working on this session here: park behind the current turn.
            work.parked[turn.seq] = (turn, msg)
            return
        if work is None:
            work = self._active[key] = _Session(key=key)
        elif work.linger is not None:
            work.linger.cancel()
            work.linger = None
        work.busy = True
        keep = False
        try:
            completion = await self._claim(work)
            if completion is None:
                await msg.nak(delay=0.05)  # another runner is on this session right now
                return
            done = completion[0]
            if turn.seq <= done.seq:
                # Completed before (we or another runner died before acking it): answer again
                # from what was stored. It may be an older turn than the last one completed.
                work.completion = await self.replay(turn, completion)
                await msg.ack()
                keep = True
                return
            if turn.seq > done.seq + 1:
                await msg.nak(delay=min(0.02 * (turn.seq - done.seq), 1.0))
                return
            assert work.lease is not None
            work.completion = await self._run_in_order(work, work.lease, (turn, msg), completion)
            keep = work.completion is not None
        except CompletionConflict as exc:
            # another runner moved the session on meanwhile; it (or a redelivery) answers
            log.warning("runner: %s; leaving session %s to its new holder", exc, key)
            with best_effort(self.counters, "turn_nak", log=log):
                await msg.nak(delay=0.05)
        except Exception as exc:
            # the bus failed under us (a JetStream node away, a timeout): hand the turn back
            # rather than let it wait out its ack deadline; the completion record keeps a
            # second try from running anything twice
            log.warning(
                "runner: turn %s of %s handed back (%s: %s)", turn.turn_id, key, type(exc).__name__, exc
            )
            with best_effort(self.counters, "turn_nak", log=log):
                await msg.nak(delay=_RETRY_DELAY)
        finally:
            work.busy = False
            parked = list(work.parked.values())
            work.parked.clear()
            for _, parked_msg in parked:
                with best_effort(self.counters, "turn_nak", log=log):
                    await parked_msg.nak(delay=0.01)
            lease = work.lease
            if (
                keep
                and self.linger > 0
                and lease is not None
                and not lease.lost
                and not self.stopping.is_set()
            ):
                work.linger = asyncio.get_running_loop().call_later(self.linger, self._expire, work)
            else:
                if not keep:
                    work.completion = None  # unknown now: nothing to settle from it
                self._active.pop(key, None)
                await self._release(work)

    async def _claim(self, work: _Session) -> Completion | None:
        """The session's completion record, with its lease held; None when another runner holds
        the lease. A session still claimed here from its last turn is not read again: nobody
        else can have written its record while the lease stayed ours."""
        lease, completion = work.lease, work.completion
        if lease is not None and completion is not None and not lease.lost:
            if time.monotonic() - lease.held_since < self.lease_seconds / 2:
                return completion
            try:  # not renewed for a while (a stalled process?): make sure it is still ours
                await lease.renew()
                return completion
            except Exception as exc:
                log.info("runner: lease of %s not renewed (%s); taking it again", work.key, exc)
        work.lease = work.completion = work.stored_reply = None
        # Lease first, then the completion record: read under the lease, it cannot change
        # until we release it, so "is this turn next?" stays true while we run it.
        work.lease = await self.leases.acquire(f"s.{encode_token(work.key)}")
        if work.lease is None:
            return None
        return await self.store.get_done(work.key) or (DoneRecord(), 0)

    def _expire(self, work: _Session) -> None:
        """The claim after a session's last turn ran out: release its lease."""
        work.linger = None
        if work.busy or self._active.get(work.key) is not work:
            return
        del self._active[work.key]
        task = asyncio.create_task(self._release(work))
        self._releasing.add(task)
        task.add_done_callback(self._releasing.discard)

    async def _release(self, work: _Session) -> None:
        """Settle the record (still ours under the lease), then give the lease up."""
        completion, work.completion = work.completion, None
        reply = completion[0].reply if completion is not None else None
        lease = work.lease
        if (
            self.settle is not None
            and completion is not None
            and reply is not None
            and reply.msg_id == work.stored_reply
            and lease is not None
            and not lease.lost
        ):
            # without it the next holder looks the turn status up (the reply is stored)
            with contextlib.suppress(CompletionConflict), best_effort(self.counters, "reply_settle", log=log):
                await self.settle(work.key, completion)
        # without the release the next runner waits for the lease to expire
        if work.lease is not None:
            with best_effort(self.counters, "lease_release", log=log):
                await work.lease.release()

    async def close(self) -> None:
        """Release the sessions kept claimed after their last turn (when stopping)."""
        for work in list(self._active.values()):
            if work.linger is not None:
                work.linger.cancel()
                self._expire(work)
        if self._releasing:
            await asyncio.wait(set(self._releasing))

    async def _run_in_order(
        self, work: _Session, lease: Lease, first: tuple[TurnRequest, Msg], completion: Completion
    ) -> Completion | None:
        """Run `first`, then each parked turn that is next, while the lease is ours. A turn is
        taken from `parked` only when it will run: whatever is left there is handed back.
        Before a turn runs, its predecessor's reply is published if it is still pending.
        The last completion record, or None when a turn could not be finished here."""
        seq = first[0].seq
        work.parked[seq] = first
        while not lease.lost and not self.stopping.is_set():
            nxt = work.parked.pop(seq, None)
            if nxt is None:
                return completion
            turn, msg = nxt
            work.current = msg
            try:
                reply = completion[0].reply
                if reply is not None and reply.msg_id != work.stored_reply:
                    completion = await self.deliver(work.key, completion)
                work.task = asyncio.create_task(self.run(turn, msg, completion))
                completion = await work.task
                # a run that returns has stored its reply (the record may still say pending)
                reply = completion[0].reply
                work.stored_reply = reply.msg_id if reply is not None else None
            except asyncio.CancelledError:
                if not lease.lost:
                    raise
            except CompletionConflict as exc:
                # stale: the session's new holder has answered this turn or will
                log.warning("runner: %s; leaving session %s to its new holder", exc, work.key)
                with best_effort(self.counters, "turn_nak", log=log):
                    await msg.nak(delay=0.05)
                return None
            except Exception:
                # Persisting or replying failed (e.g. JetStream unavailable): hand the turn
                # back; its completion record decides whether it reruns or only replies.
                log.exception("runner: could not finish turn %s; it will be redelivered", turn.turn_id)
                # without the nak it is redelivered anyway, after the ack wait
                with best_effort(self.counters, "turn_nak", log=log):
                    await msg.nak(delay=1.0)
                return None
            finally:
                work.current = None
            seq = turn.seq + 1
        return None if lease.lost else completion
