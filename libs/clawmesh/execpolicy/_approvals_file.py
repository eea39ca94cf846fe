"""The execution host's approvals document, OpenClaw's `exec-approvals.json` shape, kept in the
node-agent's state dir (0600): host-local policy that can only tighten the config's, and each
agent's allowlist, which `allow-always` decisions extend.

    {"version": 1,
     "defaults": {"security": "allowlist", "ask": "on-miss", "askFallback": "deny"},
     "agents": {"main": {"ask": "always", "allowlist": [{"pattern": "rg"}, {"pattern": "/usr/bin/git"}]}}}
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

__all__ = [
    "APPROVALS_FILE",
    "AllowlistEntry",
    "ApprovalsFile",
    "ApprovalsFileError",
    "AskFallback",
    "HostPolicy",
]

APPROVALS_FILE: Final = "exec-approvals.json"

AskFallback = Literal["deny", "allowlist", "full"]
_SECURITY: Final = ("deny", "allowlist", "full")
_ASK: Final = ("off", "on-miss", "always")


class ApprovalsFileError(ValueError):
    """The approvals document cannot be read: host exec that needs it is refused until it is fixed."""


@dataclass(frozen=True)
class AllowlistEntry:
    pattern: str
    arg_pattern: str | None = None
    id: str = ""
    source: str | None = None


@dataclass(frozen=True)
class HostPolicy:
    """What the host document says for one agent (its entry over `defaults`); None: not set."""

    security: str | None = None
    ask: str | None = None
    ask_fallback: AskFallback = "deny"  # OpenClaw: omitted askFallback is deny
    allowlist: tuple[AllowlistEntry, ...] = ()


@dataclass
class _Doc:
    raw: dict[str, Any] = field(default_factory=lambda: {"version": 1})


def _field(obj: dict[str, Any], key: str, allowed: tuple[str, ...], where: str) -> str | None:
    value = obj.get(key)
    if value is None:
        return None
    if value not in allowed:
        raise ApprovalsFileError(f"{where}.{key}: expected one of {'|'.join(allowed)}, got {value!r}")
    return str(value)


def _entries(items: Any, where: str) -> tuple[AllowlistEntry, ...]:
    if items is None:
        return ()
    if not isinstance(items, list):
        raise ApprovalsFileError(f"{where}: expected a list of entries")
    out = []
    for i, item in enumerate(items):
        pattern = item.get("pattern") if isinstance(item, dict) else None
        if not isinstance(pattern, str) or not pattern.strip():
            raise ApprovalsFileError(f"{where}[{i}].pattern: expected a non-empty string")
        arg = item.get("argPattern")
        if arg is not None and not isinstance(arg, str):
            raise ApprovalsFileError(f"{where}[{i}].argPattern: expected a string")
        out.append(AllowlistEntry(pattern.strip(), arg, str(item.get("id") or ""), item.get("source")))
    return tuple(out)


class ApprovalsFile:
    """Reads (cached by modification time) and extends one host's approvals document."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / APPROVALS_FILE
        self._lock = threading.Lock()
        self._cache: tuple[tuple[int, int], dict[str, Any]] | None = None

    def _load(self) -> dict[str, Any]:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return {"version": 1}
        stamp = (st.st_mtime_ns, st.st_size)
        if self._cache is not None and self._cache[0] == stamp:
            return self._cache[1]
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ApprovalsFileError(f"{self.path}: cannot read the exec approvals document ({exc})") from exc
        if not isinstance(data, dict):
            raise ApprovalsFileError(f"{self.path}: expected a JSON object")
        self._cache = (stamp, data)
        return data

    def policy(self, agent_id: str) -> HostPolicy:
        """The host policy of `agent_id`. Raises ApprovalsFileError naming what is wrong."""
        with self._lock:
            data = self._load()
        where = str(self.path)
        defaults = data.get("defaults") or {}
        agents = data.get("agents") or {}
        if not isinstance(defaults, dict) or not isinstance(agents, dict):
            raise ApprovalsFileError(f"{where}: 'defaults' and 'agents' must be objects")
        agent = agents.get(agent_id) or {}
        if not isinstance(agent, dict):
            raise ApprovalsFileError(f"{where}: agents.{agent_id} must be an object")
        layers = ((agent, f"{where}: agents.{agent_id}"), (defaults, f"{where}: defaults"))

        def pick(key: str, allowed: tuple[str, ...]) -> str | None:
            for obj, at in layers:
                value = _field(obj, key, allowed, at)
                if value is not None:
                    return value
            return None

        fallback = pick("askFallback", _SECURITY) or "deny"
        return HostPolicy(
            security=pick("security", _SECURITY),
            ask=pick("ask", _ASK),
            ask_fallback=fallback,  # type: ignore[arg-type]
            allowlist=_entries(agent.get("allowlist"), f"{where}: agents.{agent_id}.allowlist"),
        )

    def add(self, agent_id: str, entries: list[AllowlistEntry]) -> None:
        """Appends `allow-always` entries to the agent's allowlist (skipping ones already there)."""
        with self._lock:
            data = dict(self._load())
            data.setdefault("version", 1)
            agents = dict(data.get("agents") or {})
            agent = dict(agents.get(agent_id) or {})
            current = list(agent.get("allowlist") or [])
            have = {(e.get("pattern"), e.get("argPattern")) for e in current if isinstance(e, dict)}
            for entry in entries:
                if (entry.pattern, entry.arg_pattern) in have:
                    continue
                item: dict[str, Any] = {"id": entry.id or str(uuid.uuid4()).upper(), "pattern": entry.pattern}
                if entry.arg_pattern is not None:
                    item["argPattern"] = entry.arg_pattern
                item["source"] = entry.source or "allow-always"
                item["lastUsedAt"] = int(time.time() * 1000)
                current.append(item)
            agent["allowlist"] = current
            agents[agent_id] = agent
            data["agents"] = agents
            self._write(data)
            self._cache = None

    def _write(self, data: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(data, fh, indent=2)
                fh.write("\n")
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        os.replace(tmp, self.path)
