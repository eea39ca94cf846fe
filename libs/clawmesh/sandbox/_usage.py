"""Last-use times (and "setupCommand done") per container, kept in memory and in a small JSON file
(`<state_dir>/sandboxes/.usage.json`) so idle pruning and run-setup-once survive a restart.

Records are keyed by container name and remember the container id: a recreated container (new
id) starts fresh. Writes are atomic (temp file + rename) and throttled: prune works in hours, so
losing the last few seconds of use times in a crash is harmless. Thread-safe: the event loop
and the docker worker threads both use it.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final

__all__ = ["UsageStore"]

log = logging.getLogger(__name__)

_FLUSH_EVERY: Final = 10.0  # seconds (monotonic) between throttled writes


@dataclass
class _Record:
    id: str
    last_used: float
    setup_done: bool = False


class UsageStore:
    def __init__(self, path: Path, clock: Callable[[], float]) -> None:
        self.path = path
        self._clock = clock
        self._records: dict[str, _Record] = {}
        self._dirty = False
        self._last_flush = float("-inf")
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._load()

    def _load(self) -> None:
        try:
            data: Any = json.loads(self.path.read_text())
            for name, raw in data.get("containers", {}).items():
                self._records[name] = _Record(
                    str(raw["id"]), float(raw["last_used"]), bool(raw.get("setup_done"))
                )
        except FileNotFoundError:
            pass
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            # unreadable usage data only costs an early prune or a recreate; never refuse to start
            log.warning("ignoring unreadable sandbox usage file %s: %s", self.path, exc)

    def _record(self, name: str, container_id: str) -> _Record | None:
        rec = self._records.get(name)
        return rec if rec is not None and rec.id == container_id else None

    def touch(self, name: str, container_id: str) -> float:
        now = self._clock()
        with self._lock:
            rec = self._record(name, container_id)
            if rec is None:
                self._records[name] = _Record(container_id, now)
            else:
                rec.last_used = now
            self._dirty = True
        return now

    def last_used(self, name: str, container_id: str) -> float | None:
        rec = self._record(name, container_id)
        return rec.last_used if rec else None

    def setup_done(self, name: str, container_id: str) -> bool:
        rec = self._record(name, container_id)
        return bool(rec and rec.setup_done)

    def mark_setup_done(self, name: str, container_id: str) -> None:
        with self._lock:
            rec = self._record(name, container_id) or _Record(container_id, self._clock())
            rec.setup_done = True
            self._records[name] = rec
            self._dirty = True
        self.flush(force=True)  # "exactly once" must survive a restart

    def forget(self, name: str) -> None:
        with self._lock:
            if self._records.pop(name, None) is not None:
                self._dirty = True

    def flush(self, *, force: bool = False) -> None:
        # one writer at a time, so an older snapshot never replaces a newer one
        with self._write_lock:
            self._flush(force)

    def _flush(self, force: bool) -> None:
        with self._lock:
            if not self._dirty or (not force and time.monotonic() - self._last_flush < _FLUSH_EVERY):
                return
            payload = {"version": 1, "containers": {n: asdict(r) for n, r in sorted(self._records.items())}}
            self._dirty = False
            self._last_flush = time.monotonic()
        tmp = ""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".usage.", suffix=".tmp")
            with os.fdopen(fd, "w") as f:
                json.dump(payload, f, indent=1)
            os.replace(tmp, self.path)
        except OSError as exc:
            if tmp:
                Path(tmp).unlink(missing_ok=True)
            log.warning("cannot write sandbox usage file %s: %s", self.path, exc)
            with self._lock:
                self._dirty = True
