"""Session-store maintenance as `openclaw sessions cleanup` decides it: which sessions go.

A pure decision over what the store says about each session (`SessionFacts`), so a dry run and
the real run choose alike and tests need no NATS. OpenClaw's rules (`session.maintenance`):

- `pruneAfter` (default 30 days): a session whose last activity is older goes (`prune-stale`);
- `maxEntries` (default 5000): past the cap the least recently active go (`cap-overflow`);
- protected from both: `--active-key`, a session with turns still queued, the agent's main
  session, and durable conversation pointers (group and channel sessions, threads);
- `--fix-missing`: a session whose transcript is gone goes whatever its age (`fix-missing`);
- `--fix-dm-scope` with `session.dmScope: "main"`: direct-message sessions keyed per peer,
  left from an earlier per-peer scope, go (`fix-dm-scope`);
- `mode: "warn"` reports without applying unless `--enforce`.

OpenClaw archives durable sessions in place; clawmesh has no archive state, so a session that
goes is deleted (its records and its transcript).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

from ..routing import derive_session_chat_type, parse_agent_session_key

__all__ = [
    "DEFAULT_MAX_ENTRIES",
    "DEFAULT_PRUNE_AFTER",
    "CleanupAction",
    "CleanupPlan",
    "CleanupPolicy",
    "SessionFacts",
    "parse_duration",
    "plan_cleanup",
]

DEFAULT_PRUNE_AFTER: Final = 30 * 86400.0
DEFAULT_MAX_ENTRIES: Final = 5000

Reason = Literal["prune-stale", "cap-overflow", "fix-missing", "fix-dm-scope"]

_UNITS: Final = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_DURATION: Final = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*", re.IGNORECASE)


def parse_duration(value: Any, *, where: str) -> float | None:
    """OpenClaw's durations in seconds: `"30d"`, `"12h"`, `"90m"`, a bare number of days
    (as its `pruneAfter` reads one); `false`/`0` disable (None). ValueError names `where`."""
    if value is False or value == 0 or value == "0":
        return None
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return float(value) * 86400.0
    if isinstance(value, str):
        m = _DURATION.fullmatch(value)
        if m is not None and float(m.group(1)) > 0:
            return float(m.group(1)) * _UNITS[(m.group(2) or "d").lower()]
    raise ValueError(f'{where}: expected a duration such as "30d", "12h" or false, got {value!r}')


@dataclass(frozen=True)
class CleanupPolicy:
    mode: Literal["enforce", "warn"] = "enforce"
    prune_after: float | None = DEFAULT_PRUNE_AFTER  # seconds; None: no age limit
    max_entries: int | None = DEFAULT_MAX_ENTRIES

    @classmethod
    def from_config(cls, maintenance: Any) -> CleanupPolicy:
        """From `session.maintenance` as the file has it (the loader checked the types)."""
        if not isinstance(maintenance, dict):
            return cls()
        where = "session.maintenance"
        prune = maintenance.get("pruneAfter")
        cap = maintenance.get("maxEntries")
        return cls(
            mode="warn" if maintenance.get("mode") == "warn" else "enforce",
            prune_after=DEFAULT_PRUNE_AFTER
            if prune is None
            else parse_duration(prune, where=f"{where}.pruneAfter"),
            max_entries=DEFAULT_MAX_ENTRIES if cap is None else (int(cap) if int(cap) > 0 else None),
        )


@dataclass(frozen=True)
class SessionFacts:
    session_key: str
    agent_id: str
    updated_at: float  # last activity (routing or a completed turn), epoch seconds
    queued: int = 0  # turns routed but not completed
    has_transcript: bool = True


@dataclass(frozen=True)
class CleanupAction:
    session: SessionFacts
    reason: Reason


@dataclass(frozen=True)
class CleanupPlan:
    actions: tuple[CleanupAction, ...]
    kept: int  # sessions that stay
    protected: tuple[str, ...]  # keys kept only because they are protected


def _durable(key: str, main_key: str) -> bool:
    parsed = parse_agent_session_key(key)
    if parsed is not None and parsed.rest == main_key:
        return True
    return ":thread:" in key.lower() or derive_session_chat_type(key) in ("group", "channel")


def _peer_keyed_direct(key: str, main_key: str) -> bool:
    parsed = parse_agent_session_key(key)
    return parsed is not None and parsed.rest != main_key and derive_session_chat_type(key) == "direct"


def plan_cleanup(
    sessions: Iterable[SessionFacts],
    policy: CleanupPolicy,
    *,
    now: float,
    main_key: str = "main",
    dm_scope: str = "main",
    active_keys: Sequence[str] = (),
    fix_missing: bool = False,
    fix_dm_scope: bool = False,
) -> CleanupPlan:
    """Which sessions go and why (each at most once, the first reason that applies)."""
    gone: dict[str, CleanupAction] = {}
    protected: list[str] = []
    candidates: list[SessionFacts] = []
    everyone = sorted(sessions, key=lambda s: (s.updated_at, s.session_key))
    active = set(active_keys)
    for s in everyone:
        busy = s.queued > 0
        if fix_missing and not s.has_transcript and not busy and s.session_key not in active:
            gone[s.session_key] = CleanupAction(s, "fix-missing")
        elif (
            fix_dm_scope
            and dm_scope == "main"
            and not busy
            and s.session_key not in active
            and _peer_keyed_direct(s.session_key, main_key)
        ):
            gone[s.session_key] = CleanupAction(s, "fix-dm-scope")
        elif busy or s.session_key in active or _durable(s.session_key, main_key):
            protected.append(s.session_key)
        else:
            candidates.append(s)
    remaining = []
    for s in candidates:
        if policy.prune_after is not None and now - s.updated_at > policy.prune_after:
            gone[s.session_key] = CleanupAction(s, "prune-stale")
        else:
            remaining.append(s)
    if policy.max_entries is not None:
        # protected sessions count toward the cap but are never the ones removed
        over = len(remaining) + len(protected) - policy.max_entries
        for s in remaining[: max(over, 0)]:  # least recently active first
            gone[s.session_key] = CleanupAction(s, "cap-overflow")
    kept = len(everyone) - len(gone)
    ordered = tuple(a for s in everyone if (a := gone.get(s.session_key)) is not None)
    stays = [k for k in protected if k not in gone]
    return CleanupPlan(ordered, kept, tuple(stays))
