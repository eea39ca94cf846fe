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
import logging
from collections.abc import Callable, Coroutine, Iterator, MutableMapping
from dataclasses import dataclass, field
from typing import Any

from nats.aio.msg import Msg

from clawmesh.bus import Lease, LeaseLost, Leases
from clawmesh.errors import best_effort
from clawmesh.sessions import CompletionConflict, DoneRecord, SessionStore
from clawmesh.wire import TurnRequest, encode_token

__all__ = ["Completion", "Deliver", "Replay", "RunTurn", "SessionOrder"]

log = logging.getLogger("clawmesh.runner")


# A session's completion record and its KV revision (0: none yet).
Completion = tuple[DoneRecord, int]
# Run one turn that is next in its session, given the session's completion record; returns the
# new completion record. Raising means the turn could not be finished (it is handed back).
RunTurn = Callable[[TurnRequest, Msg, Completion], Coroutine[Any, Any, Completion]]
# Answer a turn completed before from the completion record (and ack nothing: the caller does).
Replay = Callable[[TurnRequest, Completion], Coroutine[Any, Any, Completion]]
# Publish the record's pending reply, if any (session key, record); the record without it.
Deliver = Callable[[str, Completion], Coroutine[Any, Any, Completion]]


@dataclass
class _Session:
    """This runner's claim on a session while it runs (or parks) its turns."""

    key: str
    lease: Lease | None = None
    current: Msg | None = None
    parked: dict[int, tuple[TurnRequest, Msg]] = field(default_factory=dict)
    task: asyncio.Task[Completion] | None = None


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
    ) -> None:
        self.counters = counters  # the service's: failed releases and naks are counted there
        self.leases = leases
        self.store = store
        self.run = run
        self.replay = replay
        self.deliver = deliver
        self.stopping = stopping
        self._active: dict[str, _Session] = {}

    def __len__(self) -> int:
        """Sessions this runner is working on."""
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
        if work is not None:
            # Already working on this session here: park behind the current turn.
            work.parked[turn.seq] = (turn, msg)
            return
        work = self._active[key] = _Session(key=key)
        try:
            # Lease first, then the completion record: read under the lease, it cannot change
            # until we release it, so "is this turn next?" stays true while we run it.
            work.lease = lease = await self.leases.acquire(f"s.{encode_token(key)}")
            if lease is None:
                await msg.nak(delay=0.05)  # another runner is on this session right now
                return
            completion: Completion = await self.store.get_done(key) or (DoneRecord(), 0)
            done = completion[0]
            if turn.seq <= done.seq:
                # Completed before (we or another runner died before acking it): answer again
                # from what was stored. It may be an older turn than the last one completed.
                await self.replay(turn, completion)
                await msg.ack()
                return
            if turn.seq > done.seq + 1:
                await msg.nak(delay=min(0.02 * (turn.seq - done.seq), 1.0))
                return
            await self._run_in_order(work, lease, (turn, msg), completion)
        except CompletionConflict as exc:
            # another runner moved the session on meanwhile; it (or a redelivery) answers
            log.warning("runner: %s; leaving session %s to its new holder", exc, key)
            with best_effort(self.counters, "turn_nak", log=log):
                await msg.nak(delay=0.05)
        finally:
            self._active.pop(key, None)
            # without the release the next runner waits for the lease to expire
            if work.lease is not None:
                with best_effort(self.counters, "lease_release", log=log):
                    await work.lease.release()
            parked = list(work.parked.values())
            work.parked.clear()
            for _, parked_msg in parked:
                with best_effort(self.counters, "turn_nak", log=log):
                    await parked_msg.nak(delay=0.01)

    async def _run_in_order(
        self, work: _Session, lease: Lease, first: tuple[TurnRequest, Msg], completion: Completion
    ) -> None:
        """Run `first`, then each parked turn that is next, while the lease is ours. A turn is
        taken from `parked` only when it will run: whatever is left there is handed back.
        Before a turn runs, its predecessor's reply is published if it is still pending."""
        seq = first[0].seq
        work.parked[seq] = first
        while not lease.lost and not self.stopping.is_set():
            nxt = work.parked.pop(seq, None)
            if nxt is None:
                return
            turn, msg = nxt
            work.current = msg
            try:
                if completion[0].reply is not None:
                    completion = await self.deliver(work.key, completion)
                work.task = asyncio.create_task(self.run(turn, msg, completion))
                completion = await work.task
            except asyncio.CancelledError:
                if not lease.lost:
                    raise
            except CompletionConflict as exc:
                # stale: the session's new holder has answered this turn or will
                log.warning("runner: %s; leaving session %s to its new holder", exc, work.key)
                with best_effort(self.counters, "turn_nak", log=log):
                    await msg.nak(delay=0.05)
                return
            except Exception:
                # Persisting or replying failed (e.g. JetStream unavailable): hand the turn
                # back; its completion record decides whether it reruns or only replies.
                log.exception("runner: could not finish turn %s; it will be redelivered", turn.turn_id)
                # without the nak it is redelivered anyway, after the ack wait
                with best_effort(self.counters, "turn_nak", log=log):
                    await msg.nak(delay=1.0)
                return
            finally:
                work.current = None
            seq = turn.seq + 1
