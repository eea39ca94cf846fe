"""Background exec sessions on a node (OpenClaw's `exec` `background`/`yieldMs` and the `process`
tool): a command keeps running after the call returns, its output kept in a bounded buffer, and
`process` lists, polls, reads, writes to and kills it. Sessions are scoped per agent (an agent
only sees its own) and all are killed when the node-agent stops.

The command itself is `host_exec.run_on_host` (its process group, timeout and output cap), so a
background command is judged by the exec policy exactly as a foreground one before it starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Final

from .host_exec import ExecResult

__all__ = ["MAX_SESSIONS", "ProcessRegistry", "ProcessSession", "ProcessSessionError"]

MAX_SESSIONS: Final = 64  # per node; finished sessions are dropped first when it is reached
_TAIL_CHARS: Final = 4000  # what `poll` shows of output it has not shown yet


class ProcessSessionError(Exception):
    """A `process` call on a session that does not exist (or another agent's)."""


@dataclass
class ProcessSession:
    id: str
    agent_id: str
    command: str
    started_at: float
    max_output: int
    task: asyncio.Task[ExecResult] | None = None
    stdin: asyncio.StreamWriter | None = None
    output: list[str] = field(default_factory=list)
    size: int = 0  # characters kept in `output`
    dropped: int = 0  # characters dropped from the front to stay within max_output
    polled: int = 0  # absolute offset up to which `poll` has shown output
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def append(self, text: str) -> None:
        self.output.append(text)
        self.size += len(text)
        while self.size > self.max_output and self.output:
            excess = self.size - self.max_output
            head = self.output[0]
            if len(head) <= excess:
                self.output.pop(0)
                self.size -= len(head)
                self.dropped += len(head)
            else:
                self.output[0] = head[excess:]
                self.size -= excess
                self.dropped += excess
        self.changed.set()

    def text(self) -> str:
        return "".join(self.output)

    @property
    def result(self) -> ExecResult | None:
        task = self.task
        if task is None or not task.done() or task.cancelled():
            return None
        return task.result() if task.exception() is None else None

    @property
    def status(self) -> str:
        task = self.task
        if task is None or not task.done():
            return "running"
        if task.cancelled():
            return "killed"
        result = self.result
        if result is None:
            return "failed"
        if result.timed_out:
            return "timed_out"
        return "completed" if result.exit_code == 0 else "failed"

    def summary(self) -> dict[str, Any]:
        result = self.result
        info: dict[str, Any] = {
            "sessionId": self.id,
            "status": self.status,
            "command": self.command[:200],
            "startedAt": int(self.started_at * 1000),
            "runtimeMs": int((result.duration if result else time.time() - self.started_at) * 1000),
        }
        if result is not None:
            info["exitCode"] = result.exit_code
        return info


Runner = Callable[[ProcessSession], Coroutine[Any, Any, ExecResult]]


class ProcessRegistry:
    def __init__(self) -> None:
        self._sessions: dict[str, ProcessSession] = {}

    def _make_room(self) -> None:
        if len(self._sessions) < MAX_SESSIONS:
            return
        for key, session in list(self._sessions.items()):
            if session.status != "running":
                del self._sessions[key]
                if len(self._sessions) < MAX_SESSIONS:
                    return
        raise ProcessSessionError(
            f"this node already runs {MAX_SESSIONS} background sessions; kill one with process action kill"
        )

    def start(
        self, agent_id: str, command: str, max_output: int, run: Runner, *, prefix: str = ""
    ) -> ProcessSession:
        """Start `run(session)` as a background session; `run` feeds the session's output."""
        self._make_room()
        session = ProcessSession(
            id=f"{prefix}{secrets.token_hex(6)}",
            agent_id=agent_id,
            command=command,
            started_at=time.time(),
            max_output=max_output,
        )
        session.task = asyncio.create_task(run(session), name=f"process-{session.id}")
        session.task.add_done_callback(lambda _t: session.changed.set())
        self._sessions[session.id] = session
        return session

    def get(self, agent_id: str, session_id: str) -> ProcessSession:
        session = self._sessions.get(session_id)
        if session is None or session.agent_id != agent_id:
            raise ProcessSessionError(f"No session found for {session_id}")
        return session

    def list(self, agent_id: str) -> list[ProcessSession]:
        return [s for s in self._sessions.values() if s.agent_id == agent_id]

    def remove(self, session_id: str) -> None:
        self._sessions.pop(session_id, None)

    async def poll(self, session: ProcessSession, wait_ms: int) -> dict[str, Any]:
        """New output since the last poll (its tail when there is much), and the status; waits
        up to `wait_ms` for output or the end when there is none yet."""
        unseen = session.dropped + session.size - session.polled
        if wait_ms > 0 and unseen == 0 and session.status == "running":
            session.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(session.changed.wait(), wait_ms / 1000)
        end = session.dropped + session.size
        start = max(session.polled, session.dropped)
        new = session.text()[start - session.dropped :]
        session.polled = end
        info = session.summary()
        info["output"] = new[-_TAIL_CHARS:]
        if len(new) > _TAIL_CHARS:
            info["truncated"] = True
        return info

    @staticmethod
    def log(session: ProcessSession, offset: int | None, limit: int | None) -> dict[str, Any]:
        """Lines of the kept output (0-based `offset`; the last 200 lines by default)."""
        lines = session.text().splitlines()
        if offset is None:
            chosen = lines[-(limit or 200) :]
            first = len(lines) - len(chosen)
        else:
            chosen = lines[offset : offset + limit] if limit else lines[offset:]
            first = offset
        info = session.summary()
        info.update({"offset": first, "totalLines": len(lines), "output": "\n".join(chosen)})
        if session.dropped:
            info["droppedChars"] = session.dropped
        return info

    @staticmethod
    async def write(session: ProcessSession, data: str, eof: bool) -> None:
        if session.status != "running" or session.stdin is None:
            raise ProcessSessionError(f"Session {session.id} is not running; cannot write to it")
        session.stdin.write(data.encode("utf-8"))
        with contextlib.suppress(ConnectionError):
            await session.stdin.drain()
            if eof:
                session.stdin.close()

    @staticmethod
    async def kill(session: ProcessSession) -> None:
        """Cancelling the run kills its whole process group (run_on_host's own cleanup)."""
        if session.task is not None and not session.task.done():
            session.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await session.task

    async def close(self) -> None:
        """Kill every session (the node-agent is stopping)."""
        for session in list(self._sessions.values()):
            await self.kill(session)
        self._sessions.clear()
