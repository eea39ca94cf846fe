"""runner: takes turns from CM_TURNS, runs them, streams events, persists, replies.

Guarantees (across any number of replicas):
- One turn of a session at a time, in the router's sequence order (`ordering.py`: the
  session's lease and completion record decide which turn runs where).
- Crash safety: a runner killed mid-turn stops renewing its lease and its JetStream ack
  deadline; the turn is redelivered and completes elsewhere. Transcript records and the reply
  carry the turn id as their dedupe key, and a turn already completed is answered from its
  stored result (`finish.py`), so the user gets exactly one final reply, in session order.
- A turn that keeps failing (or crashing its runner) is started at most `runtime.maxDeliveries`
  times; then it ends with an error reply and a dead letter, and the session moves on.

This module is the service around them: lifecycle, fetching turns within capacity, the
heartbeat that keeps held turns and leases alive, and running one turn (agent slot, timeout).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, ClassVar

from nats.aio.msg import Msg

from clawmesh.bus import ServiceContext, consumer_span, pull_forever
from clawmesh.config import AgentView, Config
from clawmesh.errors import ClawmeshError, best_effort
from clawmesh.federation import region_silence
from clawmesh.nodes import NodeDirectory
from clawmesh.providers import aclose_providers, preload_sdks
from clawmesh.sessions import SpawnRecord, TranscriptEntry
from clawmesh.wire import DecodeFailure, TurnRequest, TurnStarted, decode

from .backends import aclose_backends
from .backends.gateway import GatewayBackend
from .backends.synadia import SynadiaBackend
from .coalesce import DeltaCoalescer
from .commands import answer_command
from .direct_tools import DirectTools
from .events import TurnEvents, stamp
from .finish import Completion, Finisher
from .followups import Followups
from .media import take_media
from .ordering import SessionOrder
from .remote_send import is_remote_target
from .remote_spawn import remote_child_view
from .stops import EarlyState, Stops
from .tools import ToolBox
from .turn import TurnOutcome, execute_turn

__all__ = ["Runner"]

log = logging.getLogger("clawmesh.runner")

DURABLE = "runner"
FETCH_MAX = 32  # turns fetched at a time (fewer when close to capacity)


class Runner:
    """Runs turns: one at a time per session in sequence order (session lease + completion
    record), model calls with failover, the tool loop on nodes, transcripts, events, replies."""

    name: ClassVar[str] = "runner"

    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx
        self.store = ctx.sessions
        self.lease_seconds = ctx.layout.lease_seconds
        self.capacity = ctx.holder.current.settings.runtime.max_turns_in_flight
        self.nodes = NodeDirectory(
            ctx.presence, offline_after_missed=ctx.holder.current.settings.nodes.offline_after_missed
        )
        self.events = TurnEvents(ctx.nc, ctx.subjects)
        # agents on other gateways of the federation: over this runner's own NATS connection
        self.gateway = GatewayBackend(
            ctx.nc,
            ctx.subjects.prefix,
            lambda: ctx.holder.current.settings.gateway,
            lambda region: region_silence(ctx.kv["gateways"], region),
        )
        self.synadia = SynadiaBackend(ctx.nc)  # agents on the bus (Synadia Agent Protocol)
        self.finisher = Finisher(ctx, self.store, self.events)
        self.direct_tools = DirectTools(ctx, self.nodes)  # POST /tools/invoke
        self._stopping = asyncio.Event()
        self.sessions = SessionOrder(
            ctx.leases,
            self.store,
            self._run,
            self.finisher.replay,
            self.finisher.deliver,
            self._stopping,
            counters=ctx.counters,
            lease_seconds=self.lease_seconds,
            settle=self.finisher.settle,
        )
        self._freed = asyncio.Event()
        self._agent_slots: dict[tuple[str, int], asyncio.Semaphore] = {}
        self.followups = Followups(ctx, self._stopping)
        self.stops = Stops(ctx)
        self._early: dict[int, EarlyState] = {}  # by id() of the turn's message, while submitted
        self._tasks: set[asyncio.Task[Any]] = set()
        self._fetcher: asyncio.Task[None] | None = None
        self._heart: asyncio.Task[None] | None = None
        self._preload: asyncio.Task[tuple[str, ...]] | None = None

    # --- lifecycle ----------------------------------------------------------------------
    async def start(self) -> None:
        subjects = self.ctx.subjects
        # No JetStream bound on deliveries: a turn waiting for an earlier turn of its session is
        # handed back (a delivery) every 0.05-1 s for as long as that one runs, which is no
        # failure. Real failures are counted per turn (`_exhausted`).
        self._psub = await self.ctx.pull_consumer(
            subjects.turns_all, subjects.stream("TURNS"), DURABLE, max_ack_pending=20_000
        )
        self._fetcher = asyncio.create_task(
            pull_forever(self._psub, self._take, batch=self._room, stop=self._stopping, name="runner"),
            name="runner-fetch",
        )
        self._heart = asyncio.create_task(self._heartbeat_forever(), name="runner-heartbeat")
        await self.stops.start()
        await self.followups.start()
        await self.direct_tools.start()
        # In the background: readiness does not wait for the SDKs, the first turn does not import them.
        self._preload = asyncio.create_task(
            asyncio.to_thread(preload_sdks, self.ctx.holder.current), name="runner-preload"
        )

    async def stop(self, timeout: float) -> None:
        """Stop fetching; let in-flight turns finish (bounded); hand queued ones back."""
        counters = self.ctx.counters
        self._stopping.set()
        await self.direct_tools.stop(min(timeout, 5.0))
        if self._fetcher is not None:
            # It ends once _stopping is set. A fetcher that was cancelled already has ended too.
            with contextlib.suppress(asyncio.CancelledError), best_effort(counters, "fetcher_stop", log=log):
                await asyncio.wait_for(self._fetcher, 5)
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=timeout)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=2)
        with best_effort(counters, "sessions_close", log=log):
            await self.sessions.close()  # the leases of sessions kept claimed after their turn
        if self._heart is not None:
            self._heart.cancel()
        await self.followups.stop()
        await self.stops.stop()
        with best_effort(counters, "consumer_unsubscribe", log=log):
            await self._psub.unsubscribe()  # see Router.stop: unread fetched messages block drain
        with best_effort(counters, "providers_close", log=log):
            await aclose_providers()
        with best_effort(counters, "backends_close", log=log):
            await aclose_backends()

    def status(self) -> dict[str, Any]:
        return {"in_flight": len(self._tasks), "sessions": len(self.sessions), "capacity": self.capacity}

    # --- fetching -----------------------------------------------------------------------
    async def _room(self) -> int:
        """How many turns to fetch: up to FETCH_MAX while below capacity; 0 after waiting
        (bounded, so a stop is noticed) for a turn to finish."""
        free = self.capacity - len(self._tasks)
        if free > 0:
            return min(free, FETCH_MAX)
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

    async def _dispatch(self, msg: Msg) -> None:
        try:
            turn = decode(msg.data, TurnRequest, msg.headers)
        except DecodeFailure as exc:
            await self.ctx.dead_letter(msg.subject, str(exc), msg.data, msg.headers)
            await msg.term()
            return
        # A child's run and stop records are read while its session is claimed (lease and
        # completion record): one round trip less before the turn starts.
        early = self.stops.early(turn)
        if early is not None:
            self._early[id(msg)] = early
        try:
            await self.sessions.submit(turn, msg)
        finally:
            if early is not None:
                del self._early[id(msg)]
                early.close()

    async def _heartbeat_forever(self) -> None:
        """Keep held messages from being redelivered and keep session leases alive. Renewals
        run concurrently, so a busy runner with many sessions renews them all in one round trip."""
        interval = max(self.lease_seconds / 3, 0.2)
        while True:
            await asyncio.sleep(interval)
            for msg in list(self.sessions.held()):
                with best_effort(self.ctx.counters, "turn_in_progress", log=log):
                    await msg.in_progress()  # a plain publish: no round trip
            await self.sessions.renew()

    # --- one turn -----------------------------------------------------------------------
    def _agent_slot(self, agent: AgentView) -> asyncio.Semaphore:
        key = (agent.id, agent.max_concurrent)
        sem = self._agent_slots.get(key)
        if sem is None:
            sem = self._agent_slots[key] = asyncio.Semaphore(agent.max_concurrent)
        return sem

    async def _exhausted(self, turn: TurnRequest, msg: Msg) -> int | None:
        """`runtime.maxDeliveries` when the turn has been started more often than that (it
        failed, or crashed its runner, every time); None: run it. Only a turn delivered again
        is counted (one KV write), so a first delivery costs nothing; a first delivery that
        failed is therefore not counted either (one try more, never one less: a turn that was
        only handed back while it waited is never given up before it ran)."""
        if (msg.metadata.num_delivered or 1) <= 1:
            return None
        limit = self.ctx.holder.current.settings.runtime.max_deliveries
        started = await self.store.count_attempt(turn.session_key, turn.seq, turn.turn_id)
        return limit if started > limit else None

    async def _give_up(self, turn: TurnRequest, msg: Msg, tries: int, previous: Completion) -> Completion:
        """End a turn that failed every time with an error reply (so the session moves on, with
        no gap in its sequence) and keep it in the dead-letter stream."""
        self.ctx.counters["delivery_limit"] += 1
        error = ClawmeshError(
            "DELIVERY_LIMIT",
            f"the message could not be processed in {tries} tries",
            "send it again, or ask the operator to look at the dead-letter stream",
        )
        completion = await self.finisher.finish(turn, msg, TurnOutcome.failed(error), [], previous)
        reason = f"turn {turn.turn_id} (seq {turn.seq}) failed {tries} times (runtime.maxDeliveries)"
        await self.ctx.dead_letter(msg.subject, reason, msg.data, msg.headers, code="DELIVERY_LIMIT")
        return completion

    async def _run(self, turn: TurnRequest, msg: Msg, previous: Completion) -> Completion:
        """Run a turn that is next in its session and finish it; the new completion record."""
        tries = await self._exhausted(turn, msg)
        if tries is not None:
            return await self._give_up(turn, msg, tries, previous)
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
                    ClawmeshError(
                        "UNKNOWN_AGENT",
                        f"agent '{turn.agent_id}' is not configured (config {config.version})",
                    )
                )
                return await self.finisher.finish(turn, msg, outcome, [], previous)
            entries: list[TranscriptEntry] = []
            command = await answer_command(self.store, turn, agent, previous)
            if command is not None:
                turn, previous = command.turn, command.previous
                if command.outcome is not None:
                    return await self.finisher.finish(
                        turn, msg, command.outcome, [], previous, in_context=False
                    )
            # read ahead for a turn run by its own submission (not for one parked behind another)
            early = self._early.get(id(msg))
            spawn, stopped = await (early.state if early is not None else self.stops.subagent_state(turn))
            if stopped:  # a sub-agent run stopped with its parent, or an A2A task canceled
                outcome = TurnOutcome.failed(self.stops.stopped_error())
                if spawn is not None:
                    await self.stops.record_outcome(spawn, turn, outcome)
                return await self.finisher.finish(turn, msg, outcome, [], previous)
            caller = ""
            if spawn is not None and is_remote_target(spawn.child_agent_id):
                # a child spawned on another gateway: this session is its local record, each of
                # its turns a proxy turn to that gateway on behalf of the parent's agent
                agent, caller = remote_child_view(agent, spawn.child_agent_id), spawn.parent_agent_id
            async with self._agent_slot(agent), self.stops.lane(spawn, config, agent):
                await self.events.emit(
                    turn,
                    TurnStarted(
                        **stamp(turn),
                        seq=turn.seq,
                        model=agent.models[0] if agent.backend is None else agent.runner_type,
                        runner=self.ctx.instance,
                    ),
                )
                # files a chat message brought: staged into the workspace, noted in the text
                turn = await take_media(self.ctx, turn, agent, self.nodes)
                history = await self.finisher.history(turn, previous[0])
                watched = early.stopped if early is not None else None
                outcome = await self._execute(
                    turn,
                    agent,
                    config,
                    history,
                    entries,
                    spawn,
                    caller,
                    watched=watched,
                    again=(msg.metadata.num_delivered or 1) > 1,
                )
            if spawn is not None:
                await self.stops.record_outcome(spawn, turn, outcome)
            return await self.finisher.finish(turn, msg, outcome, entries, previous)

    async def _execute(
        self,
        turn: TurnRequest,
        agent: AgentView,
        config: Config,
        history: list[TranscriptEntry],
        entries: list[TranscriptEntry],
        spawn: SpawnRecord | None = None,
        caller: str = "",
        *,
        watched: asyncio.Event | None = None,
        again: bool = False,
    ) -> TurnOutcome:
        """The model/tool loop within the turn timeout (a sub-agent run's `runTimeoutSeconds`
        when shorter), until stopped (`stops.py`); any failure becomes the turn's error."""
        timeout = config.settings.runtime.turn_timeout
        run_timeout = spawn.run_timeout if spawn is not None and spawn.run_id == turn.turn_id else 0.0
        if run_timeout > 0:
            timeout = min(timeout, run_timeout)
        deltas = DeltaCoalescer(lambda ev: self.events.emit(turn, ev))

        async def run() -> TurnOutcome:
            try:
                return await execute_turn(
                    turn,
                    agent,
                    config,
                    history,
                    entries,
                    deltas.emit,
                    ToolBox(self.ctx, agent, turn, config, self.nodes, spawn),
                    gateway=self.gateway,
                    synadia=self.synadia,
                    caller=caller,
                    again=again,
                )
            finally:
                # before the final/error event the finisher sends: clients see all the text first
                await deltas.aclose()

        try:
            return await self.stops.until_stopped(
                turn.session_key, asyncio.wait_for(run(), timeout), watched, turn.turn_id
            )
        except ClawmeshError as exc:
            return TurnOutcome.failed(exc)
        except TimeoutError:
            if run_timeout > 0 and timeout == run_timeout:
                return TurnOutcome.failed(
                    ClawmeshError(
                        "TURN_TIMEOUT",
                        f"the sub-agent run took longer than runTimeoutSeconds ({run_timeout:g}s)",
                    )
                )
            return TurnOutcome.failed(
                ClawmeshError("TURN_TIMEOUT", f"the turn took longer than {timeout:.0f}s")
            )
        except Exception as exc:  # a cancellation (lease lost, stopping) is no Exception: it passes
            log.exception("runner: turn %s failed unexpectedly", turn.turn_id)
            return TurnOutcome.failed(ClawmeshError("INTERNAL_ERROR", f"{type(exc).__name__}: {exc}"))
