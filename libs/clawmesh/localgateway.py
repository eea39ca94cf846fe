"""The gateway `clawmesh up` runs on this machine, as recorded in its state dir.

`clawmesh up` holds `<stateDir>/gateway.json` while it runs: its pid (the lock: a second `up`
on the same state dir, and so on the same JetStream store, refuses), the config it runs
(`--demo` writes one), and once ready its HTTP and NATS URLs. Client commands given no
`--config` read the record so they describe and reach the gateway that is actually running,
not the default config. A record whose process is gone is stale and is replaced.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "RECORD_FILE",
    "GatewayRunning",
    "LocalGateway",
    "acquire",
    "mark_ready",
    "release",
    "running",
]

RECORD_FILE = "gateway.json"  # under the state dir


@dataclass(frozen=True)
class LocalGateway:
    pid: int
    config: str | None  # the config file it runs (None: the default path did not exist)
    demo: bool = False
    url: str | None = None  # HTTP API, once ready
    nats_url: str | None = None  # once ready
    # Where the embedded server's credentials live (None with --nats-url: the config's are used).
    nats_auth_dir: str | None = None
    region: str | None = None  # its region in a federation (`up --region`)


class GatewayRunning(RuntimeError):
    """Another live `clawmesh up` holds the state dir."""

    def __init__(self, record: LocalGateway, path: Path) -> None:
        where = f", {record.url}" if record.url else ""
        super().__init__(
            f"a gateway is already running on state dir {path.parent} (pid {record.pid}{where});"
            f" stop it first, or set CLAWMESH_STATE_DIR to another directory"
        )
        self.record = record


def _alive(pid: int) -> bool:
    """Whether `pid` is a live clawmesh process (a reused pid of another program is not)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, but someone else's
        pass
    cmdline = Path(f"/proc/{pid}/cmdline")
    try:
        return b"clawmesh" in cmdline.read_bytes()
    except FileNotFoundError:
        return not Path("/proc/self").exists()  # no procfs: trust the pid
    except OSError:
        return True


def _read(path: Path) -> LocalGateway | None:
    try:
        data: Any = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("pid"), int):
        return None
    fields = LocalGateway.__dataclass_fields__
    return LocalGateway(**{k: v for k, v in data.items() if k in fields})


def _write(path: Path, record: LocalGateway) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(json.dumps(asdict(record), indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def running(sdir: Path) -> LocalGateway | None:
    """The live gateway recorded in state dir `sdir`, else None."""
    record = _read(sdir / RECORD_FILE)
    if record is None or record.pid == os.getpid() or not _alive(record.pid):
        return None
    return record


def acquire(sdir: Path, config: Path | None, *, demo: bool = False) -> LocalGateway:
    """Claim state dir `sdir` for this process, or raise `GatewayRunning`. Creating the file
    exclusively makes two simultaneous starts safe: one of them wins."""
    sdir.mkdir(parents=True, exist_ok=True)
    path = sdir / RECORD_FILE
    record = LocalGateway(pid=os.getpid(), config=str(config) if config else None, demo=demo)
    for _ in range(3):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            held = _read(path)
            if held is not None and held.pid != os.getpid() and _alive(held.pid):
                raise GatewayRunning(held, path) from None
            with contextlib.suppress(FileNotFoundError):  # stale (or unreadable): take it over
                path.unlink()
            continue
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(json.dumps(asdict(record), indent=2) + "\n")
        return record
    raise GatewayRunning(_read(path) or record, path)


def mark_ready(
    sdir: Path,
    record: LocalGateway,
    *,
    url: str,
    nats_url: str | None,
    nats_auth_dir: Path | None,
    region: str | None = None,
) -> LocalGateway:
    """Add the URLs to this process's record once the gateway answers."""
    ready = LocalGateway(
        pid=record.pid,
        config=record.config,
        demo=record.demo,
        url=url,
        nats_url=nats_url,
        nats_auth_dir=str(nats_auth_dir) if nats_auth_dir else None,
        region=region,
    )
    _write(sdir / RECORD_FILE, ready)
    return ready


def release(sdir: Path) -> None:
    """Remove the record if this process holds it."""
    path = sdir / RECORD_FILE
    held = _read(path)
    if held is not None and held.pid == os.getpid():
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
