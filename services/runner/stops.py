"""Stopping turns, and the sub-agent lane.

A stop (`clawmesh sessions stop`, a parent's stop cascading, a child past its
`runTimeoutSeconds`) is a `StopRecord` in KV plus a `StopRequest` on `cm.ctl.stop`
(`clawmesh.sessions.stop_session`). Every runner listens: the running turn of that session is
cancelled at its next await (between model chunks and tool steps) and ends with `TURN_STOPPED`;
a sub-agent turn that had not started when the stop was recorded ends the same way when it
starts. A stopped or timed-out child's run is recorded with that status before its reply is
stored, so its announce says so.

Sub-agent turns also take a slot of the runner's sub-agent lane (`subagents.maxConcurrent`,
default 8, per runner like `maxConcurrent` per agent).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Coroutine
from typing import Any, TypeVar

import msgspec
from nats.aio.msg import Msg

from clawmesh.bus import ServiceContext
from clawmesh.config import AgentView, Config
from clawmesh.errors import ClawmeshError, best_effort
from clawmesh.routing import is_subagent_session_key
from clawmesh.sessions import SpawnRecord, StopRecord, stop_session
from clawmesh.tools.a2a import subagent_limits
from clawmesh.wire import A2AEvent, DecodeFailure, StopRequest, TurnRequest, decode

from .session_tools import publish_a2a_event
from .turn import TurnOutcome

__all__ = ["EarlyState", "Stops"]

log = logging.getLogger("clawmesh.runner")
T = TypeVar("T")


class Stops:
    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx
        # session key -> the stop events watched for it, each for one turn id ("": any turn)
        self._waiting: dict[str, set[tuple[asyncio.Event, str]]] = {}
        self._lanes: dict[int, asyncio.Semaphore] = {}
        self._sub: Any = None

    async def start(self) -> None:
        self._sub = await self.ctx.nc.subscribe(self.ctx.subjects.stop, cb=self._on_stop)

    async def stop(self) -> None:
        if self._sub is not None:
            with best_effort(self.ctx.counters, "stop_unsubscribe", log=log):
                await self._sub.unsubscribe()

    async def _on_stop(self, msg: Msg) -> None:
        with contextlib.suppress(DecodeFailure):  # a garbled request stops nothing
            request = decode(msg.data, StopRequest, msg.headers)
            for event, turn_id in self._waiting.get(request.session_key, ()):
                if not request.turn_id or not turn_id or request.turn_id == turn_id:
                    event.set()

    def watch(self, session_key: str, turn_id: str = "") -> asyncio.Event:
        """An event set by the next stop request for `session_key` (until `unwatch`); with
        `turn_id`, not by one that names another turn."""
        stopped = asyncio.Event()
        self._waiting.setdefault(session_key, set()).add((stopped, turn_id))
        return stopped

    def unwatch(self, session_key: str, stopped: asyncio.Event) -> None:
        waiting = self._waiting.get(session_key)
        if waiting is not None:
            for entry in [e for e in waiting if e[0] is stopped]:
                waiting.discard(entry)
            if not waiting:
                del self._waiting[session_key]

    def early(self, turn: TurnRequest) -> EarlyState | None:
        """For a turn of a sub-agent session or an A2A task: its `subagent_state`, read from now
        on (while the runner claims the session), with stop requests watched from before that
        read, so that a stop between the read and the run still stops it. None for other turns."""
        if not _stoppable_before_start(turn):
            return None
        stopped = self.watch(turn.session_key, turn.turn_id)
        # tasks of their own, started before the session's lease is asked for: their requests
        # leave in the same write as the lease's
        spawn, stop = self._reads(turn)
        state = asyncio.ensure_future(_state(turn, spawn, stop))
        return EarlyState(self, turn.session_key, stopped, state, (spawn, stop))

    def _reads(self, turn: TurnRequest) -> tuple[asyncio.Future[Any], asyncio.Future[Any]]:
        store = self.ctx.sessions
        if is_subagent_session_key(turn.session_key):
            return (
                asyncio.ensure_future(store.get_spawn(turn.session_key)),
                asyncio.ensure_future(store.get_stop(turn.session_key)),
            )
        return asyncio.ensure_future(_none()), asyncio.ensure_future(store.get_turn_stop(turn.turn_id))

    async def until_stopped(
        self,
        session_key: str,
        work: Coroutine[Any, Any, T],
        watched: asyncio.Event | None = None,
        turn_id: str = "",
    ) -> T:
        """`work`'s result, unless the session (or the turn `turn_id`) is stopped first (or was
        since `watched` was set up by `watch`): then it is cancelled and ClawmeshError
        TURN_STOPPED is raised."""
        stopped = watched if watched is not None else self.watch(session_key, turn_id)
        task = asyncio.ensure_future(work)
        waiter = asyncio.ensure_future(stopped.wait())
        try:
            await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
            if task.done():
                return task.result()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
            raise self.stopped_error()
        finally:
            waiter.cancel()
            if not task.done():  # we were cancelled ourselves (lease lost, shutting down)
                task.cancel()
            if watched is None:
                self.unwatch(session_key, stopped)

    @staticmethod
    def stopped_error() -> ClawmeshError:
        return ClawmeshError("TURN_STOPPED", "the run was stopped")

    async def subagent_state(self, turn: TurnRequest) -> tuple[SpawnRecord | None, bool]:
        """For a turn of a sub-agent session: its run's record, and whether a stop was recorded
        for the session after the turn was routed (read together: one round trip); for an A2A
        task's turn, whether the task was canceled. Other turns read nothing."""
        if not _stoppable_before_start(turn):
            return None, False
        return await _state(turn, *self._reads(turn))

    async def record_outcome(self, spawn: SpawnRecord, turn: TurnRequest, outcome: TurnOutcome) -> None:
        """A child run that failed: its status (timeout, stopped, error) is stored before its
        reply, so the announce reports it; a child stopped by its timeout stops its own children."""
        error = outcome.error
        if error is None or spawn.run_id != turn.turn_id:
            return
        status = {"TURN_TIMEOUT": "timeout", "TURN_STOPPED": "stopped"}.get(error.code, "error")
        await self.ctx.sessions.put_spawn(
            msgspec.structs.replace(spawn, status=status, error=error.message, ended_at=time.time())
        )
        if status == "timeout":
            await stop_session(
                self.ctx.sessions,
                self.ctx.nc.publish,
                self.ctx.subjects.stop,
                spawn.child_session_key,
                reason="runTimeoutSeconds",
            )
        if status in ("timeout", "stopped"):
            await publish_a2a_event(
                self.ctx,
                A2AEvent(
                    kind="stop",
                    agent_id=spawn.child_agent_id,
                    session_key=spawn.child_session_key,
                    target_session_key=spawn.parent_session_key,
                    run_id=spawn.run_id,
                    status=status,
                    detail=error.message,
                ),
            )

    @contextlib.asynccontextmanager
    async def lane(self, spawn: SpawnRecord | None, config: Config, agent: AgentView) -> AsyncIterator[None]:
        """A slot of the sub-agent lane for a child's turn (nothing for other turns)."""
        if spawn is None:
            yield
            return
        size = subagent_limits(config, agent).max_concurrent
        lane = self._lanes.get(size)
        if lane is None:
            lane = self._lanes[size] = asyncio.Semaphore(size)
        async with lane:
            yield


def _stoppable_before_start(turn: TurnRequest) -> bool:
    """Turns a stop can reach before they start (the others pay no read for it): a sub-agent
    session's (a stopped parent stops its queued children) and an A2A task's (CancelTask)."""
    return is_subagent_session_key(turn.session_key) or turn.inbound.metadata.get("api") == "a2a"


async def _none() -> None:
    return None


async def _state(
    turn: TurnRequest,
    spawn: Awaitable[SpawnRecord | None],
    stop: Awaitable[StopRecord | None],
) -> tuple[SpawnRecord | None, bool]:
    """The run's record, and whether a stop was recorded after the turn was routed (a turn's
    own stop, which names it, whenever it was recorded)."""
    record, stopped = await asyncio.gather(spawn, stop)
    if record is None and not is_subagent_session_key(turn.session_key):
        return None, stopped is not None
    return record, stopped is not None and stopped.at >= turn.routed_at


class EarlyState:
    """A sub-agent turn's run and stop records read ahead (`Stops.early`), and its stop watch."""

    def __init__(
        self,
        stops: Stops,
        session_key: str,
        stopped: asyncio.Event,
        state: asyncio.Future[tuple[SpawnRecord | None, bool]],
        reads: tuple[asyncio.Future[Any], ...],
    ) -> None:
        self._stops, self._key = stops, session_key
        self.stopped = stopped
        self.state = state
        self._futures = (state, *reads)

    def close(self) -> None:
        """The turn ran or was handed back: stop watching (and reading, if still under way)."""
        self._stops.unwatch(self._key, self.stopped)
        for future in self._futures:
            if not future.done():
                future.cancel()
            elif not future.cancelled():
                future.exception()  # read, so that a failed read is not logged as never retrieved
