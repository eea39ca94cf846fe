"""runner: takes turns from CM_TURNS, runs them, streams events, persists, replies.

Guarantees (across any number of replicas):
- One turn of a session at a time, in the router's sequence order. A turn runs only when the
  session's completion record says its predecessor is done, and only while this runner holds
  the session's lease (a KV key that expires unless renewed). Turns that are not next are
  handed back (nak with a delay) or, if this runner is already working on the session, queued
  behind the current one.
- Crash safety: a runner killed mid-turn stops renewing its lease and its JetStream ack
  deadline; the turn is redelivered and completes elsewhere. Transcript records and the reply
  carry the turn id as their dedupe key, and a turn already completed is answered from its
  stored result, so the user gets exactly one final reply.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any, ClassVar

import msgspec
from nats.aio.msg import Msg

from clawmesh.bus import Lease, LeaseLost, Leases, ServiceContext, consumer_span, inject, pull_forever
from clawmesh.config import AgentView, Config
from clawmesh.nodes import NodeDirectory
from clawmesh.providers import aclose_providers
from clawmesh.sessions import (
    DoneRecord,
    SessionStore,
    TranscriptEntry,
    TurnStatus,
    TxAssistant,
    TxError,
    TxUser,
)
from clawmesh.wire import (
    DecodeFailure,
    OutboundMessage,
    TurnError,
    TurnEvent,
    TurnFinal,
    TurnRequest,
    TurnStarted,
    decode,
    encode_json,
    encode_token,
)

from .events import stamp
from .tools import ToolBox
from .turn import TurnFailed, TurnOutcome, execute_turn

__all__ = ["Runner"]

log = logging.getLogger("clawmesh.runner")

DURABLE = "runner"
# Transcript records kept as model context in the completion record (the model sees at most
# runtime.historyLimit messages of them), and the size that record may reach.
CONTEXT_ENTRIES = 200
CONTEXT_BYTES = 512 * 1024
_encoder = msgspec.json.Encoder()


def _result_in_context(context: list[TranscriptEntry], turn_id: str) -> DoneRecord | None:
    """An older turn's result, rebuilt from the transcript records kept as context."""
    mine = [e for e in context if e.turn_id == turn_id]
    if not mine:
        return None
    error = next((e for e in reversed(mine) if isinstance(e, TxError)), None)
    if error is not None:
        return DoneRecord(seq=error.seq, turn_id=turn_id, final_text=f"⚠️ {error.message}", is_error=True)
    reply = next((e for e in reversed(mine) if isinstance(e, TxAssistant)), None)
    if reply is None:
        return None
    return DoneRecord(seq=reply.seq, turn_id=turn_id, final_text=reply.text, model=reply.model)


def _bounded(done: DoneRecord) -> tuple[DoneRecord, bytes]:
    """The record with the newest context entries that fit both limits, and its encoding."""
    if len(done.context) > CONTEXT_ENTRIES:
        done = msgspec.structs.replace(done, context=done.context[-CONTEXT_ENTRIES:])
    data = _encoder.encode(done)
    while len(done.context) > 1 and len(data) > CONTEXT_BYTES:
        done = msgspec.structs.replace(done, context=done.context[len(done.context) // 4 or 1 :])
        data = _encoder.encode(done)
    return done, data


@dataclass
class _SessionWork:
    """This runner's claim on a session while it runs (or queues) its turns."""

    key: str
    lease: Lease | None = None
    parked: dict[int, tuple[TurnRequest, Msg]] = field(default_factory=dict)
    task: asyncio.Task[Any] | None = None
    done: DoneRecord = field(default_factory=DoneRecord)


class Runner:
    name: ClassVar[str] = "runner"

    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx
        self.store = SessionStore(ctx.js, ctx.subjects, ctx.kv["sessions"], ctx.kv.get("turns"))
        self.leases = Leases.for_context(ctx)
        self.lease_seconds = ctx.layout.lease_seconds
        self.capacity = ctx.holder.current.settings.runtime.max_turns_in_flight
        self._freed = asyncio.Event()
        self._agent_slots: dict[tuple[str, int], asyncio.Semaphore] = {}
        self._active: dict[str, _SessionWork] = {}
        self._held: dict[int, Msg] = {}  # messages we keep alive with in_progress(), by id()
        self._tasks: set[asyncio.Task[Any]] = set()
        self.nodes = NodeDirectory(
            ctx.kv["nodes"], offline_after_missed=ctx.holder.current.settings.nodes.offline_after_missed
        )
        self._stopping = asyncio.Event()
        self._fetcher: asyncio.Task[None] | None = None
        self._heart: asyncio.Task[None] | None = None

    # --- lifecycle ----------------------------------------------------------------------
    async def start(self) -> None:
        subjects = self.ctx.subjects
        self._psub = await self.ctx.pull_consumer(
            subjects.turns_all, subjects.stream("TURNS"), DURABLE, max_ack_pending=20_000
        )
        self._fetcher = asyncio.create_task(self._fetch_forever(), name="runner-fetch")
        self._heart = asyncio.create_task(self._heartbeat_forever(), name="runner-heartbeat")

    async def stop(self, timeout: float) -> None:
        """Stop fetching; let in-flight turns finish (bounded); hand queued ones back."""
        self._stopping.set()
        if self._fetcher is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(self._fetcher, 5)
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=timeout)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=2)
        if self._heart is not None:
            self._heart.cancel()
        with contextlib.suppress(Exception):
            await self._psub.unsubscribe()  # see Router.stop: unread fetched messages block drain
        with contextlib.suppress(Exception):
            await aclose_providers()

    def status(self) -> dict[str, Any]:
        return {"in_flight": len(self._tasks), "sessions": len(self._active), "capacity": self.capacity}

    # --- fetching -----------------------------------------------------------------------
    async def _fetch_forever(self) -> None:
        await pull_forever(self._psub, self._take, batch=self._room, stop=self._stopping, name="runner")

    async def _room(self) -> int:
        """How many turns to fetch: up to 32 while below capacity; 0 after waiting (bounded,
        so a stop is noticed) for a turn to finish."""
        free = self.capacity - len(self._tasks)
        if free > 0:
            return min(free, 32)
        self._freed.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._freed.wait(), 1.0)
        return 0

    async def _take(self, msgs: list[Msg]) -> None:
        for msg in msgs:
            task = asyncio.create_task(self._dispatch(msg))
            self._tasks.add(task)
            task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        self._freed.set()

    async def _heartbeat_forever(self) -> None:
        """Keep held messages from being redelivered and keep session leases alive. Renewals
        run concurrently, so a busy runner with many sessions renews them all in one round trip."""
        interval = max(self.lease_seconds / 3, 0.2)
        while True:
            await asyncio.sleep(interval)
            for msg in list(self._held.values()):
                with contextlib.suppress(Exception):
                    await msg.in_progress()  # a plain publish: no round trip
            works = [w for w in list(self._active.values()) if w.lease is not None and not w.lease.lost]
            await asyncio.gather(*(self._renew(w) for w in works))

    async def _renew(self, work: _SessionWork) -> None:
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

    # --- one message --------------------------------------------------------------------
    async def _dispatch(self, msg: Msg) -> None:
        ctx = self.ctx
        try:
            turn = decode(msg.data, TurnRequest, msg.headers)
        except DecodeFailure as exc:
            await ctx.dead_letter(msg.subject, str(exc), msg.data, msg.headers)
            await msg.term()
            return
        key = turn.session_key
        work = self._active.get(key)
        if work is not None:
            # Already working on this session here: queue behind the current turn.
            work.parked[turn.seq] = (turn, msg)
            self._held[id(msg)] = msg
            return
        work = _SessionWork(key=key)
        self._active[key] = work
        try:
            # Lease first, then the completion record: read under the lease, it cannot change
            # until we release it, so "is this turn next?" stays true while we run it.
            work.lease = lease = await self.leases.acquire(f"s.{encode_token(key)}")
            if lease is None:
                await msg.nak(delay=0.05)  # another runner is on this session right now
                return
            found = await self.store.get_done(key)
            done = found[0] if found else DoneRecord()
            if turn.seq <= done.seq:
                # Completed before (we or another runner died before acking it): answer again
                # from what was stored. It may be an older turn than the last one completed.
                await self._replay(turn, done)
                await msg.ack()
                return
            if turn.seq > done.seq + 1:
                await msg.nak(delay=min(0.02 * (turn.seq - done.seq), 1.0))
                return
            work.done = done
            nxt: tuple[TurnRequest, Msg] | None = (turn, msg)
            while nxt is not None and not lease.lost and not self._stopping.is_set():
                current, current_msg = nxt
                self._held[id(current_msg)] = current_msg
                try:
                    work.task = asyncio.create_task(self._run(current, current_msg, work))
                    await work.task
                except asyncio.CancelledError:
                    if not lease.lost:
                        raise
                except Exception:
                    # Persisting or replying failed (e.g. JetStream unavailable): hand the turn
                    # back; its completion record decides whether it reruns or only replies.
                    log.exception("runner: could not finish turn %s; it will be redelivered", current.turn_id)
                    with contextlib.suppress(Exception):
                        await current_msg.nak(delay=1.0)
                    break
                finally:
                    self._held.pop(id(current_msg), None)
                nxt = work.parked.pop(current.seq + 1, None)
        finally:
            self._active.pop(key, None)
            if work.lease is not None:
                with contextlib.suppress(Exception):
                    await work.lease.release()
            for _, parked_msg in work.parked.values():
                self._held.pop(id(parked_msg), None)
                with contextlib.suppress(Exception):
                    await parked_msg.nak(delay=0.01)

    def _agent_slot(self, agent: AgentView) -> asyncio.Semaphore:
        key = (agent.id, agent.max_concurrent)
        sem = self._agent_slots.get(key)
        if sem is None:
            sem = self._agent_slots[key] = asyncio.Semaphore(agent.max_concurrent)
        return sem

    async def _run(self, turn: TurnRequest, msg: Msg, work: _SessionWork) -> None:
        config = self.ctx.holder.current
        agent = config.agent_view(turn.agent_id)
        with consumer_span(
            "cm.turn",
            msg.subject,
            msg.headers,
            **{"clawmesh.turn_id": turn.turn_id, "clawmesh.agent": turn.agent_id},
        ):
            if agent is None:
                outcome = TurnOutcome.failed(
                    TurnFailed(
                        "UNKNOWN_AGENT",
                        f"agent '{turn.agent_id}' is not configured (config {config.version})",
                    )
                )
                await self._finish(turn, msg, outcome, [], config, work)
                return
            async with self._agent_slot(agent):
                await self._emit(
                    turn,
                    TurnStarted(
                        **stamp(turn),
                        seq=turn.seq,
                        model=agent.models[0],
                        runner=self.ctx.instance,
                    ),
                )
                history = await self._history_of(turn, work.done)
                entries: list[TranscriptEntry] = []
                timeout = config.settings.runtime.turn_timeout
                try:
                    outcome = await asyncio.wait_for(
                        execute_turn(
                            turn,
                            agent,
                            config,
                            history,
                            entries,
                            lambda ev: self._emit(turn, ev),
                            ToolBox(self.ctx, agent, turn, config, self.nodes),
                        ),
                        timeout,
                    )
                except TurnFailed as exc:
                    outcome = TurnOutcome.failed(exc)
                except TimeoutError:
                    outcome = TurnOutcome.failed(
                        TurnFailed("TURN_TIMEOUT", f"the turn took longer than {timeout:.0f}s")
                    )
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    log.exception("runner: turn %s failed unexpectedly", turn.turn_id)
                    outcome = TurnOutcome.failed(TurnFailed("INTERNAL_ERROR", f"{type(exc).__name__}: {exc}"))
            await self._finish(turn, msg, outcome, entries, config, work)

    async def _history_of(self, turn: TurnRequest, done: DoneRecord) -> list[TranscriptEntry]:
        """The model context: kept in the completion record, so any runner gets it with the
        one KV read it already made. Only sessions written before that existed read the stream."""
        if done.has_context or done.seq == 0:
            return list(done.context)
        return await self.store.history(turn.agent_id, turn.session_key, limit=CONTEXT_ENTRIES)

    async def _finish(
        self,
        turn: TurnRequest,
        msg: Msg,
        outcome: TurnOutcome,
        entries: list[TranscriptEntry],
        config: Config,
        work: _SessionWork,
    ) -> None:
        """Persist, record completion, reply once, ack. Order matters for crash safety: the
        completion record (with the final text) is written before replying, so a replay after
        a crash answers from it instead of running the turn again."""
        store = self.store
        inbound = turn.inbound
        records: list[TranscriptEntry] = [
            TxUser(
                turn_id=turn.turn_id,
                seq=turn.seq,
                text=inbound.text,
                sender=inbound.sender.id if inbound.sender else None,
                channel=inbound.channel,
                ts=inbound.received_at or turn.routed_at,
            ),
            *entries,
        ]
        if outcome.error is not None:
            records.append(
                TxError(
                    turn_id=turn.turn_id, seq=turn.seq, code=outcome.error.code, message=outcome.error.message
                )
            )
        # one subject per session, one connection: stored in this order even when sent together
        await asyncio.gather(
            *(
                store.append(turn.agent_id, turn.session_key, r, f"{turn.turn_id}:{i}")
                for i, r in enumerate(records)
            )
        )
        done, data = _bounded(
            DoneRecord(
                seq=turn.seq,
                turn_id=turn.turn_id,
                final_text=outcome.text if outcome.error is None else outcome.error.user_text(),
                is_error=outcome.error is not None,
                model=outcome.model,
                context=[*work.done.context, *records],
                has_context=True,
            )
        )
        await store.put_done(turn.session_key, done, data)
        work.done = done
        await self._reply(turn, done, outcome)
        self.ctx.counters["turns_failed" if outcome.error else "turns_completed"] += 1
        await msg.ack()

    async def _reply(
        self, turn: TurnRequest, done: DoneRecord, outcome: TurnOutcome | None, *, stored: bool = False
    ) -> None:
        """Store the reply (CM_OUTBOUND, once per turn id) and emit `final`/`error`; then record
        the turn's status — present only when its reply is surely stored (`stored`: it is)."""
        inbound = turn.inbound
        out = OutboundMessage(
            **stamp(turn),
            channel=turn.route.channel,
            account_id=turn.route.account_id,
            text=done.final_text,
            peer=inbound.peer,
            thread_id=inbound.thread_id,
            reply_to=inbound.message_id,
            is_error=done.is_error,
        )
        data, hdrs = encode_json(out)
        hdrs["Nats-Msg-Id"] = f"out:{turn.turn_id}"
        event: TurnEvent
        if done.is_error:
            err = outcome.error if outcome is not None and outcome.error is not None else None
            event = TurnError(
                **stamp(turn),
                code=err.code if err else "TURN_FAILED",
                message=err.message if err else done.final_text,
                hint=err.hint if err else "",
            )
        else:
            usage = outcome.usage if outcome is not None else (0, 0)
            event = TurnFinal(
                **stamp(turn),
                text=done.final_text,
                model=done.model,
                input_tokens=usage[0],
                output_tokens=usage[1],
            )
        status = TurnStatus(
            state="error" if done.is_error else "done",
            agent_id=turn.agent_id,
            session_key=turn.session_key,
            text=done.final_text,
            error_code=event.code if isinstance(event, TurnError) else None,
            error_message=event.message if isinstance(event, TurnError) else None,
        )
        subject = self.ctx.subjects.outbound(turn.route.channel, turn.route.account_id)

        async def store_reply() -> None:
            if not stored:
                await self.ctx.js.publish(subject, data, headers=inject(hdrs))

        # The reply and the event are independent; the completion record is already stored.
        outbound, _ = await asyncio.gather(store_reply(), self._emit(turn, event), return_exceptions=True)
        if isinstance(outbound, BaseException):
            raise outbound  # the reply must be stored: the turn is handed back and replayed
        with contextlib.suppress(Exception):
            await self.store.put_turn_status(turn.turn_id, status)

    async def _replay(self, turn: TurnRequest, done: DoneRecord) -> None:
        """A completed turn delivered again (a runner died between completing and acking it):
        reply from what was stored — the completion record for the last turn, its context for
        an older one. The outbound stream's dedupe keeps the reply to one delivery, and a turn
        whose status is recorded has its reply stored already."""
        self.ctx.counters["turns_replayed"] += 1
        if done.turn_id != turn.turn_id:
            found = _result_in_context(done.context, turn.turn_id)
            if found is None:
                log.warning(
                    "runner: turn %s was completed but is no longer in the session context", turn.turn_id
                )
                return
            done = found
        status = await self.store.get_turn_status(turn.turn_id)
        await self._reply(turn, done, None, stored=status is not None)

    async def _emit(self, turn: TurnRequest, event: TurnEvent) -> None:
        data, hdrs = encode_json(event)
        hdrs = inject(hdrs)
        nc = self.ctx.nc
        await nc.publish(self.ctx.subjects.events(turn.agent_id, turn.session_key), data, headers=hdrs)
        inbound = turn.inbound
        if inbound.reply_subject and (
            inbound.reply_events == "all" or isinstance(event, TurnFinal | TurnError)
        ):
            await nc.publish(inbound.reply_subject, data, headers=hdrs)
