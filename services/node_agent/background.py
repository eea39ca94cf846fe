"""Background exec on the node: starting a session (exec with `background` or `yieldMs`, after
the exec policy allowed the command) and the `process` tool's actions on sessions."""

from __future__ import annotations

import asyncio
import json
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from clawmesh.tools.host_exec import ExecResult, RunAs, run_on_host
from clawmesh.tools.processes import ProcessRegistry, ProcessSession, ProcessSessionError
from clawmesh.tools.specs import ProcessArgs

__all__ = ["process_action", "start_background"]


async def start_background(
    registry: ProcessRegistry,
    *,
    agent_id: str,
    node_id: str,
    command: str | list[str],
    cwd: Path,
    env: Mapping[str, str],
    timeout: float,
    max_output: int,
    run_as: RunAs | None,
    login: bool,
    yield_ms: int | None,
) -> ExecResult | dict[str, Any]:
    """Start the command as a session. With `yield_ms`, wait that long first: a command that
    ended by then gives its ExecResult (and leaves no session); otherwise the running session's
    summary, with what it printed so far."""
    shown = command if isinstance(command, str) else shlex.join(command)

    async def run(session: ProcessSession) -> ExecResult:
        def started(proc: asyncio.subprocess.Process) -> None:
            session.stdin = proc.stdin
            running.set()

        async def output(_stream: str, text: str) -> None:
            session.append(text)

        return await run_on_host(
            command,
            cwd=cwd,
            env=env,
            timeout=timeout,
            max_output=max_output,
            on_output=output,
            run_as=run_as,
            login=login,
            on_start=started,
        )

    running = asyncio.Event()
    # the node's id in the session id lets a runner send `process` calls to this node
    session = registry.start(agent_id, shown, max_output, run, prefix=f"{node_id}~")
    task = session.task
    if task is not None:
        # the call returns once the command runs (a `write` right after it finds its stdin), or
        # has already failed to start
        ready = asyncio.ensure_future(running.wait())
        await asyncio.wait({ready, task}, return_when=asyncio.FIRST_COMPLETED)
        ready.cancel()
    if yield_ms and task is not None:
        done, _ = await asyncio.wait({task}, timeout=yield_ms / 1000)
        if done and not task.cancelled() and task.exception() is None:
            registry.remove(session.id)
            return task.result()
    info = await registry.poll(session, 0)
    info["status"] = session.status
    return info


async def process_action(registry: ProcessRegistry, agent_id: str, args: ProcessArgs) -> tuple[str, bool]:
    """(content, is_error) of one `process` call; an agent only sees its own sessions."""
    try:
        if args.action == "list":
            sessions = [s.summary() for s in registry.list(agent_id)]
            return json.dumps({"sessions": sessions}), False
        session = registry.get(agent_id, args.session_id or "")
        match args.action:
            case "poll":
                return json.dumps(await registry.poll(session, args.timeout or 0)), False
            case "log":
                return json.dumps(registry.log(session, args.offset, args.limit)), False
            case "write":
                await registry.write(session, args.data or "", args.eof)
                return json.dumps(
                    {"sessionId": session.id, "status": session.status, "written": len(args.data or "")}
                ), False
            case "kill":
                await registry.kill(session)
                return json.dumps(session.summary()), False
    except ProcessSessionError as exc:
        return str(exc), True
    return f"unknown process action {args.action!r}", True
