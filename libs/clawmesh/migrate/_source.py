"""Reading an OpenClaw state directory: where it is, its agents and their sessions.

Sessions come from OpenClaw 2026.9's per-agent SQLite store
(`agents/<id>/agent/openclaw-agent.sqlite`: `session_nodes` holds the `sessions.json` entry of
each session key, `transcript_events` the transcript events of each session id, identity JSON
or a Zstd frame, `session_transcript_active_events` the active branch) and, for sessions the
store does not have, from the legacy files (`agents/<id>/sessions/sessions.json` + one JSONL
file per session; `<state>/sessions/` for the default agent of very old installs).
Only the current session id of each key is read (earlier windows of a reset session are not).
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from ..config import resolve_user_path

__all__ = [
    "AGENT_STORE",
    "Problem",
    "SourceSession",
    "active_branch",
    "openclaw_config_path",
    "openclaw_state_dir",
    "read_sessions",
]

AGENT_STORE: Final = "openclaw-agent.sqlite"


@dataclass(frozen=True, slots=True)
class Problem:
    """Something in the source that was not imported: `where` names the file (and row/line)."""

    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


@dataclass(slots=True)
class SourceSession:
    agent_id: str
    session_key: str
    session_id: str
    entry: dict[str, Any]  # the sessions.json entry (model, tokens, channel, …)
    events: list[dict[str, Any]] = field(default_factory=list)  # transcript events, active branch
    origin: str = ""  # the file it was read from


def openclaw_state_dir(explicit: str | None, env: Mapping[str, str]) -> Path:
    """`--from`, else `OPENCLAW_STATE_DIR`, else `~/.openclaw` (`~/.openclaw-<profile>` with
    `OPENCLAW_PROFILE`), as OpenClaw finds its own."""
    raw = explicit or env.get("OPENCLAW_STATE_DIR", "").strip()
    if raw:
        return resolve_user_path(raw, env)
    home = env.get("OPENCLAW_HOME") or env.get("HOME") or os.path.expanduser("~")
    profile = env.get("OPENCLAW_PROFILE", "").strip()
    return Path(home) / (f".openclaw-{profile}" if profile and profile.lower() != "default" else ".openclaw")


def openclaw_config_path(state: Path, env: Mapping[str, str]) -> Path:
    raw = env.get("OPENCLAW_CONFIG_PATH", "").strip()
    return resolve_user_path(raw, env) if raw else state / "openclaw.json"


# --- SQLite store ------------------------------------------------------------------------------


def _decode_event(row: sqlite3.Row, where: str) -> dict[str, Any]:
    if row["event_json"] is not None:
        text = row["event_json"]
    else:
        try:
            import zstandard
        except ImportError:  # pragma: no cover - a dependency; only a broken install lacks it
            raise ValueError("a Zstd-compressed event and no `zstandard` module to read it") from None
        try:
            size = row["event_utf8_bytes"] or 4 * 1024 * 1024
            text = zstandard.ZstdDecompressor().decompress(row["event_zstd"], max_output_size=size).decode()
        except (zstandard.ZstdError, UnicodeDecodeError) as exc:
            raise ValueError(f"compressed event does not decode ({exc})") from None
    try:
        event = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"event is not valid JSON ({exc})") from None
    if not isinstance(event, dict):
        raise ValueError("event is not a JSON object")
    return event


def _sqlite_sessions(db: Path, agent_id: str, problems: list[Problem]) -> Iterator[SourceSession]:
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        conn.row_factory = sqlite3.Row
        nodes = conn.execute(
            "SELECT session_key, current_session_id, entry_json FROM session_nodes ORDER BY session_key"
        ).fetchall()
    except sqlite3.Error as exc:
        problems.append(Problem(str(db), f"not a readable OpenClaw agent store ({exc})"))
        with contextlib.suppress(NameError):
            conn.close()
        return
    try:
        has_active = bool(
            conn.execute(
                "SELECT 1 FROM sqlite_master WHERE name = 'session_transcript_active_events'"
            ).fetchone()
        )
        for node in nodes:
            key, sid = node["session_key"], node["current_session_id"]
            where = f"{db} (session_nodes row {key!r})"
            try:
                entry = json.loads(node["entry_json"])
                if not isinstance(entry, dict):
                    raise ValueError("not a JSON object")
            except ValueError as exc:
                problems.append(Problem(where, f"entry_json is not a session entry ({exc})"))
                continue
            rows = []
            if has_active:
                rows = conn.execute(
                    "SELECT e.seq, e.event_json, e.event_zstd, e.event_utf8_bytes"
                    " FROM session_transcript_active_events a JOIN transcript_events e"
                    " ON e.session_id = a.session_id AND e.seq = a.event_seq"
                    " WHERE a.session_id = ? ORDER BY a.active_position",
                    (sid,),
                ).fetchall()
            active = bool(rows)
            if not rows:
                rows = conn.execute(
                    "SELECT seq, event_json, event_zstd, event_utf8_bytes FROM transcript_events"
                    " WHERE session_id = ? ORDER BY seq",
                    (sid,),
                ).fetchall()
            events = []
            try:
                for row in rows:
                    events.append(_decode_event(row, where))
            except ValueError as exc:
                problems.append(
                    Problem(f"{db} (transcript_events session_id={sid!r} seq={row['seq']})", str(exc))
                )
                continue
            yield SourceSession(
                agent_id, key, sid, entry, events if active else active_branch(events), str(db)
            )
    except sqlite3.Error as exc:
        problems.append(Problem(str(db), f"cannot read the session tables ({exc})"))
    finally:
        conn.close()


# --- legacy JSONL ----------------------------------------------------------------------------


def active_branch(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The events on the path from the newest entry back to the root (a transcript is a tree:
    OpenClaw's branches after an edit or retry); in file order when entries have no ids."""
    entries = [e for e in events if e.get("type") != "session"]
    by_id = {e["id"]: e for e in entries if isinstance(e.get("id"), str)}
    if not entries or len(by_id) != len(entries):
        return entries
    path: list[dict[str, Any]] = []
    node: dict[str, Any] | None = entries[-1]
    seen: set[str] = set()
    while node is not None and node["id"] not in seen:
        seen.add(node["id"])
        path.append(node)
        parent = node.get("parentId")
        node = by_id.get(parent) if isinstance(parent, str) else None
    return path[::-1]


def _jsonl_events(path: Path, problems: list[Problem]) -> list[dict[str, Any]] | None:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(Problem(str(path), f"cannot read ({exc})"))
        return None
    events = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            event = json.loads(line)
            if not isinstance(event, dict):
                raise ValueError("not a JSON object")
        except ValueError as exc:
            problems.append(Problem(f"{path} line {n}", f"not a transcript event ({exc})"))
            return None
        events.append(event)
    return events


def _legacy_sessions(
    folder: Path, agent_id: str, skip: set[str], problems: list[Problem]
) -> Iterator[SourceSession]:
    index_file = folder / "sessions.json"
    if not index_file.is_file():
        return
    try:
        index = json.loads(index_file.read_text(encoding="utf-8"))
        if not isinstance(index, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError) as exc:
        problems.append(Problem(str(index_file), f"not a session index ({exc})"))
        return
    for key, entry in index.items():
        if key in skip:
            continue
        sid = entry.get("sessionId") if isinstance(entry, dict) else None
        if not isinstance(sid, str) or not sid:
            problems.append(Problem(f"{index_file} (key {key!r})", "entry has no sessionId"))
            continue
        named = entry.get("sessionFile")
        path = Path(named) if isinstance(named, str) and named else Path(f"{sid}.jsonl")
        path = path if path.is_absolute() else folder / path
        if not path.is_file():
            problems.append(Problem(f"{index_file} (key {key!r})", f"transcript {path} is missing"))
            continue
        events = _jsonl_events(path, problems)
        if events is not None:
            yield SourceSession(agent_id, key, sid, entry, active_branch(events), str(path))


def read_sessions(
    state: Path, agent_id: str, agent_dir: Path, *, is_default: bool, problems: list[Problem]
) -> list[SourceSession]:
    """An agent's sessions: its SQLite store, then legacy files for keys the store lacks."""
    found: dict[str, SourceSession] = {}
    for db in dict.fromkeys((agent_dir / AGENT_STORE, state / "agents" / agent_id / "agent" / AGENT_STORE)):
        if db.is_file():
            for s in _sqlite_sessions(db, agent_id, problems):
                found.setdefault(s.session_key, s)
    folders = [state / "agents" / agent_id / "sessions"] + ([state / "sessions"] if is_default else [])
    for folder in folders:
        for s in _legacy_sessions(folder, agent_id, set(found), problems):
            found.setdefault(s.session_key, s)
    return list(found.values())
