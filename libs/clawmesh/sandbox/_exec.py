"""Running one command in a sandbox: streamed output, exit code, a timeout that really kills.

Docker has no exec timeout and no "kill this exec" call. Two mechanisms, belt and braces:

1. Client deadline (the precise one). Every exec carries a unique `CLAWMESH_EXEC_ID=<id>` in its
   environment, which every process it starts inherits, and runs under an anchor shell that is
   the exec's session leader. At the deadline a second exec SIGKILLs every process carrying the
   id and every process in the session of one (`_KILL_SCRIPT`): the whole tree, background jobs,
   double-forked daemons, even a subtree that scrubbed its environment. That ends the output
   stream; if something still holds it open, the socket is shut down after a grace period so the
   caller is never stuck.
2. In-container backstop: the command runs under `timeout -s KILL <ceil(t)+1>`, so it dies even if
   this process crashes or the kill exec cannot run (a fork bomb exhausting pids_limit). One second
   later than (1) so the two do not race and `timed_out` is deterministic.

Docker itself closes an exec's stream about 2 s after its main process exits even when background
children still hold stdout (measured on 20.10), so normal commands never wait for their daemons,
and those daemons keep running (only a timeout or a cancellation kills them).
"""

from __future__ import annotations

import asyncio
import codecs
import logging
import math
import posixpath
import socket
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, Final

import docker
import docker.errors
from docker.utils.socket import frames_iter

from ..config import ExecSettings
from ._docker import Engine, Unreachable
from ._errors import SandboxError

__all__ = ["MARKER_ENV", "ExecResult", "OnOutput", "kill_script", "run_exec", "run_exec_blocking", "wrap"]

log = logging.getLogger(__name__)

OnOutput = Callable[[str, str], Awaitable[None]]

MARKER_ENV: Final = "CLAWMESH_EXEC_ID"
# Seconds to wait for the stream to end after the kill before shutting the socket down.
ABORT_GRACE: Final = 3.0
# How long the exit code may lag behind the end of the stream.
_INSPECT_WAIT: Final = 2.0

# POSIX sh + tr + grep (busybox and Debian both have them). runc makes every exec'd process a
# session leader, and the anchor shell of `wrap` is that process, so the victims are: every
# process carrying the marker, and every process in the session of one — which catches a command
# that scrubbed its environment (`env -i …`). Only a process that both scrubs its environment and
# starts its own session escapes. Sessions 0 and 1 (PID 1's) are never targeted. Repeats while it
# finds victims, for children forked during the scan; `$$` is this script, and its own children
# (tr, grep) carry no marker.
_KILL_SCRIPT: Final = r"""
id="$1"; me=$$
sid_of() {
  read -r line <"/proc/$1/stat" 2>/dev/null || return 1
  set -- ${line##*) }
  echo "$4"
}
round=0
while [ "$round" -lt 5 ]; do
  pids=" "; sids=" "
  for d in /proc/[0-9]*; do
    p="${d#/proc/}"
    [ "$p" = "$me" ] && continue
    if tr '\000' '\n' <"$d/environ" 2>/dev/null | grep -qxF "CLAWMESH_EXEC_ID=$id"; then
      pids="$pids$p "
      s=$(sid_of "$p") && [ "$s" != 0 ] && [ "$s" != 1 ] && sids="$sids$s "
    fi
  done
  [ "$pids" = " " ] && break
  for d in /proc/[0-9]*; do
    p="${d#/proc/}"
    if [ "$p" = "$me" ] || [ "$p" = 1 ]; then continue; fi
    s=$(sid_of "$p") || continue
    case "$pids$sids" in *" $p "*|*" $s "*) kill -9 "$p" 2>/dev/null ;; esac
  done
  round=$((round + 1))
done
"""


@dataclass
class ExecResult:
    """What a command did. `exit_code` is None when it could not be learned (stream aborted)."""

    exit_code: int | None
    stdout: str
    stderr: str
    timed_out: bool
    truncated: bool
    duration: float


def wrap(command: list[str] | str, timeout: float) -> list[str]:
    """argv, or a shell string run as `sh -lc`, under the in-container backstop timeout, under an
    anchor shell. The anchor is the exec's main process, hence its session leader; it runs the
    command as a foreground child (`; exit $?` keeps the shell from exec'ing it) and keeps the
    marker whatever the command does to its own environment, so the kill script can find the
    session (see `_KILL_SCRIPT`)."""
    argv = ["sh", "-lc", command] if isinstance(command, str) else list(command)
    if not argv:
        raise SandboxError("empty command")
    backstop = str(max(1, math.ceil(timeout)) + 1)
    return ["sh", "-c", '"$@"; exit $?', "clawmesh-exec", "timeout", "-s", "KILL", backstop, *argv]


def kill_script(marker: str) -> list[str]:
    return ["sh", "-c", _KILL_SCRIPT, "clawmesh-kill", marker]


class _Run:
    """One exec: the blocking parts, for worker threads."""

    def __init__(
        self,
        container: str,
        argv: list[str],
        *,
        env: Mapping[str, str],
        workdir: str | None,
        max_output: int,
        emit: Callable[[str, str], None] | None,
    ) -> None:
        self.container = container
        self.argv = argv
        self.marker = uuid.uuid4().hex
        self.env = {**env, MARKER_ENV: self.marker}
        self.workdir = workdir
        self.max_output = max_output
        self.emit = emit
        self.exec_id = ""
        self.out: dict[str, list[str]] = {"stdout": [], "stderr": []}
        self.kept = 0
        self.truncated = False
        self.aborted = False
        self.error: BaseException | None = None
        self.pumping = False
        self.started = threading.Event()  # start() returned, successfully or not
        self._sock: Any = None

    def start(self, client: docker.DockerClient) -> None:
        try:
            self._start(client)
        finally:
            self.started.set()

    def _start(self, client: docker.DockerClient) -> None:
        try:
            created = client.api.exec_create(
                self.container,
                self.argv,
                stdout=True,
                stderr=True,
                stdin=False,
                tty=False,
                environment=self.env,
                workdir=self.workdir,
            )
            self.exec_id = str(created["Id"])
            self._sock = client.api.exec_start(self.exec_id, socket=True)
        except docker.errors.NotFound as exc:
            raise SandboxError(
                f"sandbox container {self.container} does not exist (ensure() it first)"
            ) from exc
        except docker.errors.APIError as exc:
            raise SandboxError(f"cannot run in sandbox {self.container}: {exc.explanation or exc}") from exc
        raw = getattr(self._sock, "_sock", None)
        if raw is not None:
            # the client's 60 s HTTP timeout must not cut off a command that is quiet for a minute
            raw.settimeout(None)

    def _keep(self, stream: str, text: str) -> None:
        if not text:
            return
        room = self.max_output - self.kept
        if len(text) > room:
            text = text[: max(room, 0)]
            self.truncated = True
        if not text:
            return
        self.kept += len(text)
        self.out[stream].append(text)
        if self.emit is not None:
            self.emit(stream, text)

    def pump(self) -> None:
        """Read the multiplexed stream to its end (blocking)."""
        decoders = {s: codecs.getincrementaldecoder("utf-8")(errors="replace") for s in self.out}
        self.pumping = True
        try:
            frames: Iterator[tuple[int, bytes]] = frames_iter(self._sock, tty=False)  # type: ignore[no-untyped-call]
            for stream_id, data in frames:
                stream = "stdout" if stream_id == 1 else "stderr" if stream_id == 2 else None
                if stream is not None:
                    self._keep(stream, decoders[stream].decode(data))
        except (OSError, ValueError) as exc:
            # ValueError: reading a socket that abort() closed under us
            if not self.aborted:
                self.error = exc
        finally:
            for stream, decoder in decoders.items():
                self._keep(stream, decoder.decode(b"", final=True))
            self.close()

    def abort(self) -> None:
        """Unblock pump(): shut the socket down (safe from any thread)."""
        self.aborted = True
        raw = getattr(self._sock, "_sock", self._sock)
        try:
            raw.shutdown(socket.SHUT_RDWR)
        except (OSError, AttributeError):
            pass

    def close(self) -> None:
        try:
            self._sock.close()
        except (OSError, AttributeError):
            pass

    def kill(self, client: docker.DockerClient) -> None:
        """SIGKILL every process carrying this exec's marker."""
        try:
            ex = client.api.exec_create(self.container, kill_script(self.marker), stdout=True, stderr=True)
            output = client.api.exec_start(ex["Id"])
            code = client.api.exec_inspect(ex["Id"]).get("ExitCode")
            if code not in (0, None):
                log.warning("kill exec in %s exited %s: %r", self.container, code, output[:200])
        except docker.errors.APIError as exc:
            log.warning("cannot kill timed-out exec in %s: %s", self.container, exc)

    def exit_code(self, client: docker.DockerClient) -> int | None:
        deadline = time.monotonic() + _INSPECT_WAIT
        delay = 0.005
        while True:
            info = client.api.exec_inspect(self.exec_id)
            if not info.get("Running"):
                code = info.get("ExitCode")
                return int(code) if code is not None else None
            if time.monotonic() >= deadline:
                return None
            time.sleep(delay)  # the exit code lags the end of the stream by a few ms
            delay = min(delay * 2, 0.1)

    def result(self, *, exit_code: int | None, timed_out: bool, duration: float) -> ExecResult:
        return ExecResult(
            exit_code=exit_code,
            stdout="".join(self.out["stdout"]),
            stderr="".join(self.out["stderr"]),
            timed_out=timed_out,
            truncated=self.truncated,
            duration=duration,
        )


def _prepare(
    container: str,
    command: list[str] | str,
    *,
    workdir: str | None,
    cwd: str | None,
    env: Mapping[str, str] | None,
    timeout: float,
    max_output: int,
    emit: Callable[[str, str], None] | None,
) -> _Run:
    if timeout <= 0:
        raise SandboxError("timeout must be positive")
    where = cwd
    if cwd is not None and not cwd.startswith("/") and workdir:
        where = posixpath.normpath(posixpath.join(workdir, cwd))
    return _Run(
        container, wrap(command, timeout), env=env or {}, workdir=where, max_output=max_output, emit=emit
    )


def _timed_out(*, deadline_hit: bool, code: int | None, elapsed: float, timeout: float) -> bool:
    # 137 = SIGKILL: the in-container backstop fired (e.g. the event loop was too busy to kill first)
    return deadline_hit or (code == 137 and elapsed >= timeout)


async def run_exec(
    engine: Engine,
    pool: Executor,
    container: str,
    command: list[str] | str,
    *,
    workdir: str | None = None,
    cwd: str | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = ExecSettings.timeout,
    max_output: int = ExecSettings.max_output_bytes,
    on_output: OnOutput | None = None,
) -> ExecResult:
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[str, str] | None] = asyncio.Queue()

    def post(item: tuple[str, str] | None) -> None:
        try:
            loop.call_soon_threadsafe(queue.put_nowait, item)
        except RuntimeError:  # the loop is gone (shutdown); nobody is listening any more
            pass

    run = _prepare(
        container,
        command,
        workdir=workdir,
        cwd=cwd,
        env=env,
        timeout=timeout,
        max_output=max_output,
        emit=(lambda s, t: post((s, t))) if on_output is not None else None,
    )
    started = time.monotonic()

    def pump() -> None:
        try:
            run.pump()
        finally:
            post(None)

    finished = False
    deadline_hit = False
    phase_end = loop.time() + timeout
    try:
        await loop.run_in_executor(pool, engine.call, run.start)
        # a thread of its own: a long command must not hold one of the pool's few workers
        threading.Thread(target=pump, name=f"sandbox-exec-{run.marker[:8]}", daemon=True).start()
        while True:
            try:
                item = await asyncio.wait_for(queue.get(), timeout=max(0.0, phase_end - loop.time()))
            except TimeoutError:
                if not deadline_hit:
                    deadline_hit = True
                    await loop.run_in_executor(pool, engine.call, run.kill)
                    phase_end = loop.time() + ABORT_GRACE
                else:
                    run.abort()
                    phase_end = math.inf
                continue
            if item is None:
                break
            if on_output is not None:
                await on_output(*item)
        finished = True
    finally:
        if not finished:
            # cancelled, engine gone or on_output failed: do not leave the command running unseen
            try:
                pool.submit(_abandon, engine, run)
            except RuntimeError:  # pool shut down
                run.abort()
    if run.error is not None:
        raise Unreachable(f"{type(run.error).__name__}: {run.error}")
    code = await loop.run_in_executor(pool, engine.call, run.exit_code)
    elapsed = time.monotonic() - started
    timed_out = _timed_out(deadline_hit=deadline_hit, code=code, elapsed=elapsed, timeout=timeout)
    return run.result(exit_code=code, timed_out=timed_out, duration=elapsed)


def _abandon(engine: Engine, run: _Run) -> None:
    # cancelled while start() was still running in another worker: let it finish first, or the
    # command would start after the kill and run on unseen
    run.started.wait(30)
    try:
        engine.call(run.kill)
    except Exception as exc:
        log.warning("cannot kill abandoned exec in %s: %s", run.container, exc)
    finally:
        run.abort()  # unblocks the reader thread, which then closes the socket
        if run.exec_id and not run.pumping:
            run.close()


def run_exec_blocking(
    client: docker.DockerClient,
    container: str,
    command: list[str] | str,
    *,
    workdir: str | None = None,
    timeout: float = 600,
    max_output: int = ExecSettings.max_output_bytes,
) -> ExecResult:
    """The same, blocking and without streaming (setupCommand, inside a worker thread)."""
    run = _prepare(
        container,
        command,
        workdir=workdir,
        cwd=None,
        env=None,
        timeout=timeout,
        max_output=max_output,
        emit=None,
    )
    started = time.monotonic()
    run.start(client)
    hit = threading.Event()

    def on_deadline() -> None:
        hit.set()
        run.kill(client)
        abort = threading.Timer(ABORT_GRACE, run.abort)
        abort.daemon = True
        abort.start()

    timer = threading.Timer(timeout, on_deadline)
    timer.daemon = True
    timer.start()
    try:
        run.pump()
    finally:
        timer.cancel()
    if run.error is not None:
        raise Unreachable(f"{type(run.error).__name__}: {run.error}")
    code = run.exit_code(client)
    elapsed = time.monotonic() - started
    timed_out = _timed_out(deadline_hit=hit.is_set(), code=code, elapsed=elapsed, timeout=timeout)
    return run.result(exit_code=code, timed_out=timed_out, duration=elapsed)
