"""`exec` on the node itself (no sandbox): a child process in its own process group, with a
timeout that kills the whole group, an output cap, and output streamed as it comes."""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from ..errors import best_effort

__all__ = ["ExecResult", "OutputCallback", "host_environment", "run_on_host"]

log = logging.getLogger("clawmesh.tools.exec")

OutputCallback = Callable[[str, str], Awaitable[None]]

_DRAIN_SECONDS: Final = 2.0
_POLL_SECONDS: Final = 0.25  # only while the pipes outlive the process


@dataclass
class ExecResult:
    exit_code: int | None
    stdout: str
    stderr: str
    timed_out: bool = False
    truncated: bool = False
    duration: float = 0.0


def host_environment(extra: Mapping[str, str] | None, workspace: Path) -> dict[str, str]:
    """A small, explicit environment: the node's secrets (API keys, tokens) never leak into
    commands an agent runs."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
        "HOME": str(workspace),
        "LANG": "C.UTF-8",
        "TERM": "dumb",
    }
    env.update(extra or {})
    return env


async def _exit(proc: asyncio.subprocess.Process, exited: asyncio.Future[int], timeout: float | None) -> bool:
    """True once the process has exited, False after `timeout` seconds."""
    loop = asyncio.get_running_loop()
    deadline = None if timeout is None else loop.time() + timeout
    while proc.returncode is None:
        wait = _POLL_SECONDS if deadline is None else min(_POLL_SECONDS, deadline - loop.time())
        if wait <= 0:
            return False
        await asyncio.wait({exited}, timeout=wait)
    return True


async def run_on_host(
    command: str | list[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    timeout: float,
    max_output: int = 200_000,
    on_output: OutputCallback | None = None,
) -> ExecResult:
    argv = ["sh", "-lc", command] if isinstance(command, str) else list(command)
    started = time.monotonic()
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            cwd=str(cwd),
            env=dict(env),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,  # its own process group: a timeout kills children too
        )
    except FileNotFoundError as exc:
        return ExecResult(127, "", f"command not found: {exc.filename}", duration=time.monotonic() - started)
    outputs = {"stdout": [], "stderr": []}  # type: dict[str, list[str]]
    budget = [max_output]
    truncated = [False]

    async def pump(stream: asyncio.StreamReader | None, name: str) -> None:
        if stream is None:
            return
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        while True:
            chunk = await stream.read(4096)
            text = decoder.decode(chunk, final=not chunk)
            if text:
                if budget[0] <= 0:
                    truncated[0] = True
                else:
                    kept = text[: budget[0]]
                    truncated[0] = truncated[0] or len(kept) < len(text)
                    budget[0] -= len(kept)
                    outputs[name].append(kept)
                    if on_output is not None:
                        # followers missing a chunk must not cost the command its output
                        with best_effort(None, "exec_output_callback", log=log):
                            await on_output(name, kept)
            if not chunk:
                return

    pumps = [
        asyncio.create_task(pump(proc.stdout, "stdout")),
        asyncio.create_task(pump(proc.stderr, "stderr")),
    ]
    # `proc.wait()` also waits for the pipes to close, which a process that left the group
    # (setsid) can hold open indefinitely: the exit itself is what counts.
    exited = asyncio.ensure_future(proc.wait())
    try:
        timed_out = not await _exit(proc, exited, timeout)
    finally:
        # Whatever the outcome, nothing the command started may outlive it.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        await _exit(proc, exited, None)
    # Take what has arrived by now and stop reading pipes someone else still holds.
    _, unfinished = await asyncio.wait(pumps, timeout=_DRAIN_SECONDS)
    for task in (*unfinished, exited):
        task.cancel()
    if unfinished:
        # Close our ends of those pipes now (asyncio has no public call for it), not when the
        # escaped process finally exits — possibly after this event loop is gone.
        transport = getattr(proc, "_transport", None)
        if transport is not None:
            transport.close()
    await asyncio.gather(*pumps, return_exceptions=True)
    return ExecResult(
        exit_code=None if timed_out else proc.returncode,
        stdout="".join(outputs["stdout"]),
        stderr="".join(outputs["stderr"]),
        timed_out=timed_out,
        truncated=truncated[0],
        duration=time.monotonic() - started,
    )
