"""`exec` on the node itself (no sandbox): a child process in its own process group, with a
timeout that kills the whole group, an output cap, and output streamed as it comes. A node-agent
running as root runs it as an unprivileged user (`tools.exec.runAs`, `nobody` by default) unless
the operator opted in to root (`tools.exec.allowRoot`)."""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import logging
import os
import pwd
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from ..errors import best_effort

__all__ = [
    "ExecResult",
    "OutputCallback",
    "RunAs",
    "blocked_env_name",
    "host_environment",
    "resolve_run_as",
    "run_on_host",
]

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


@dataclass(frozen=True)
class RunAs:
    """The unprivileged user (and its primary group, no others) a host command runs as."""

    uid: int
    gid: int
    name: str


def resolve_run_as(user: str, *, allow_root: bool, euid: int) -> RunAs | None:
    """Who host commands run as: None keeps the node-agent's own user (it is not root, or the
    operator allowed root). Raises LookupError when the configured user cannot be used."""
    if euid != 0 or allow_root:
        return None
    try:
        entry = pwd.getpwuid(int(user)) if user.isdigit() else pwd.getpwnam(user)
    except KeyError:
        raise LookupError(
            f"tools.exec.runAs: no user {user!r} on this node; the node-agent runs as root and does not "
            "run host commands as root unless tools.exec.allowRoot is true"
        ) from None
    if entry.pw_uid == 0:
        raise LookupError(
            f"tools.exec.runAs: {user!r} is root; set tools.exec.allowRoot: true to run as root"
        )
    return RunAs(entry.pw_uid, entry.pw_gid, entry.pw_name)


# Drops to the user, then becomes the command. A tiny exec wrapper rather than Popen's
# user/group: event loops such as uvloop do not support those, and preexec_fn is unsafe in a
# threaded process. Root's supplementary groups go too: only the user's primary group stays.
_DROP: Final = """import os, sys
uid, gid, argv = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]
os.setgroups([])
os.setgid(gid)
os.setuid(uid)
try:
    os.execvp(argv[0], argv)
except OSError as exc:
    sys.stderr.write(f"{argv[0]}: {exc.strerror}\\n")
    sys.exit(127 if isinstance(exc, FileNotFoundError) else 126)
"""


_SETPRIV: Final = next((p for p in ("/usr/bin/setpriv", "/bin/setpriv") if os.access(p, os.X_OK)), None)


def _drop_privileges(run_as: RunAs) -> list[str]:
    if _SETPRIV is not None:  # util-linux: no interpreter start-up per command
        return [_SETPRIV, f"--reuid={run_as.uid}", f"--regid={run_as.gid}", "--clear-groups", "--"]
    return [sys.executable, "-I", "-c", _DROP, str(run_as.uid), str(run_as.gid)]


def blocked_env_name(name: str) -> bool:
    """Variables a call may not set for host exec: they choose which binary runs or inject code
    (OpenClaw refuses PATH and loader overrides; the shell start-up ones are clawmesh's)."""
    return name in _BLOCKED_NAMES or name.startswith(("LD_", "DYLD_"))


_BLOCKED_NAMES: Final = frozenset({"PATH", "BASH_ENV", "ENV", "SHELLOPTS", "BASHOPTS", "PS4", "IFS"})


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


class _Output:
    """A command's stdout and stderr as they come, kept up to `max_output` characters in all
    (then marked truncated), each chunk also handed to `on_output`."""

    def __init__(self, max_output: int, on_output: OutputCallback | None) -> None:
        self.chunks: dict[str, list[str]] = {"stdout": [], "stderr": []}
        self.budget = max_output
        self.truncated = False
        self.on_output = on_output

    async def pump(self, stream: asyncio.StreamReader | None, name: str) -> None:
        if stream is None:
            return
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        while True:
            chunk = await stream.read(4096)
            text = decoder.decode(chunk, final=not chunk)
            if text:
                if self.budget <= 0:
                    self.truncated = True
                else:
                    kept = text[: self.budget]
                    self.truncated = self.truncated or len(kept) < len(text)
                    self.budget -= len(kept)
                    self.chunks[name].append(kept)
                    if self.on_output is not None:
                        # followers missing a chunk must not cost the command its output
                        with best_effort(None, "exec_output_callback", log=log):
                            await self.on_output(name, kept)
            if not chunk:
                return


async def _drain(
    proc: asyncio.subprocess.Process, pumps: list[asyncio.Task[None]], exited: asyncio.Future[int]
) -> None:
    """Take what has arrived by now and stop reading pipes someone else still holds."""
    _, unfinished = await asyncio.wait(pumps, timeout=_DRAIN_SECONDS)
    exited.cancel()
    for task in unfinished:
        task.cancel()
    if unfinished:
        # Close our ends of those pipes now (asyncio has no public call for it), not when the
        # escaped process finally exits — possibly after this event loop is gone.
        transport = getattr(proc, "_transport", None)
        if transport is not None:
            transport.close()
    await asyncio.gather(*pumps, return_exceptions=True)


async def run_on_host(
    command: str | list[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    timeout: float,
    max_output: int = 200_000,
    on_output: OutputCallback | None = None,
    run_as: RunAs | None = None,
    login: bool = True,
    on_start: Callable[[asyncio.subprocess.Process], None] | None = None,
) -> ExecResult:
    """`login`: run a command string in a login shell (`sh -lc`, which reads the profile files,
    `$HOME/.profile` included); False for policies that vouch for the command text alone.
    `on_start`: given the process once it runs, with a stdin pipe (a background session writes
    to it); without it stdin is /dev/null. Cancelling the call kills the process group."""
    argv = ["sh", "-lc" if login else "-c", command] if isinstance(command, str) else list(command)
    started = time.monotonic()
    if run_as is not None:
        argv = [*_drop_privileges(run_as), *argv]
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            cwd=str(cwd),
            env=dict(env),
            stdin=asyncio.subprocess.PIPE if on_start is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,  # its own process group: a timeout kills children too
        )
    except FileNotFoundError as exc:
        return ExecResult(127, "", f"command not found: {exc.filename}", duration=time.monotonic() - started)
    except PermissionError as exc:
        who = f" as user {run_as.name}" if run_as is not None else ""
        return ExecResult(
            126,
            "",
            f"cannot start the command{who}: {exc.strerror} ({exc.filename or cwd})",
            duration=time.monotonic() - started,
        )
    if on_start is not None:
        on_start(proc)
    output = _Output(max_output, on_output)
    pumps = [
        asyncio.create_task(output.pump(proc.stdout, "stdout")),
        asyncio.create_task(output.pump(proc.stderr, "stderr")),
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
    await _drain(proc, pumps, exited)
    return ExecResult(
        exit_code=None if timed_out else proc.returncode,
        stdout="".join(output.chunks["stdout"]),
        stderr="".join(output.chunks["stderr"]),
        timed_out=timed_out,
        truncated=output.truncated,
        duration=time.monotonic() - started,
    )
