"""Carrying an import plan out: files on disk, sessions into KV and JetStream.

A session is written in the order that makes a crashed import safe to run again: transcript
records first (one message per turn, as the runner writes them, with a `Nats-Msg-Id` derived
from OpenClaw's ids, and skipped when the stream has that turn already), then the completion record whose context the next turn reads, then
the session record (`sessions list` shows it; the router numbers the next message after the
imported turns). A session whose record exists with the same session id is imported already;
one with another session id is clawmesh's own conversation and is left alone.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..sessions import (
    DoneRecord,
    SessionRecord,
    SessionStore,
    TranscriptEntry,
    TxAssistant,
    TxError,
    bounded,
)
from ..wire import Peer
from ._plan import FileCopy
from ._source import SourceSession
from ._transcript import ImportedTurn, to_turns

__all__ = ["SessionOutcome", "copy_file", "import_session", "session_summary"]


def copy_file(item: FileCopy) -> None:
    """Write `item.dst` atomically with `item.src`'s bytes (0600 for secrets, from the start)."""
    item.dst.parent.mkdir(parents=True, exist_ok=True, mode=0o700 if item.secret else 0o777)
    fd, tmp = tempfile.mkstemp(dir=item.dst.parent, prefix=f".{item.dst.name}.")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(item.src.read_bytes())
        os.chmod(tmp, 0o600 if item.secret else (item.src.stat().st_mode & 0o777))
        os.replace(tmp, item.dst)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@dataclass(slots=True)
class SessionOutcome:
    state: str  # imported | unchanged | conflict
    turns: int = 0
    records: int = 0  # transcript records written now
    detail: str = ""


@dataclass(slots=True)
class _Summary:
    turns: int
    records: int
    other: int
    batches: list[ImportedTurn] = field(default_factory=list)

    @property
    def entries(self) -> list[TranscriptEntry]:
        return [e for t in self.batches for e in t.entries]


def session_summary(session: SourceSession) -> _Summary:
    turns, other = to_turns(session.session_id, session.events)
    return _Summary(len(turns), sum(len(t.entries) for t in turns), other, turns)


def _channel(entry: dict[str, Any]) -> str:
    """The session's channel: legacy `lastChannel`/`channel`, or 9.6's `delivery.route`/`origin`."""

    def at(*path: str) -> Any:
        node: Any = entry
        for part in path:
            node = node.get(part) if isinstance(node, dict) else None
        return node

    for value in (
        at("lastChannel"),
        at("channel"),
        at("delivery", "route", "channel"),
        at("delivery", "origin", "provider"),
        at("origin", "provider"),
    ):
        if isinstance(value, str) and value:
            return value
    return ""


def _ms(entry: dict[str, Any], key: str) -> float | None:
    value = entry.get(key)
    return float(value) / 1000.0 if isinstance(value, int | float) and value > 0 else None


async def import_session(
    store: SessionStore, session: SourceSession, progress: Callable[[int], None] | None = None
) -> SessionOutcome:
    key = session.session_key
    found = await store.get_session(key)
    if found is not None:
        if found[0].session_id == session.session_id:
            return SessionOutcome("unchanged", found[0].seq)
        return SessionOutcome(
            "conflict",
            detail=f"clawmesh already has session {key} (session id {found[0].session_id}, "
            f"OpenClaw's is {session.session_id}); left as it is",
        )
    summary = session_summary(session)
    # a turn is one stream message (as the runner writes them); an interrupted import
    # stored some already, found by their turn ids (derived from OpenClaw's)
    stored = {e.turn_id for e in await store.history(session.agent_id, key)}
    written = 0
    for n, turn in enumerate(summary.batches, 1):
        if turn.turn_id not in stored and turn.entries:
            await store.append_batch(session.agent_id, key, turn.entries, f"import:{turn.turn_id}:tx")
            written += len(turn.entries)
        if progress is not None and n % 100 == 0:
            progress(n)
    context = summary.entries
    last_reply = next((e for e in reversed(context) if isinstance(e, TxAssistant | TxError)), None)
    done, data = bounded(
        DoneRecord(
            seq=summary.turns,
            turn_id=context[-1].turn_id if context else "",
            final_text=last_reply.text if isinstance(last_reply, TxAssistant) else "",
            is_error=isinstance(last_reply, TxError),
            model=last_reply.model if isinstance(last_reply, TxAssistant) else "",
            context=context,
            has_context=True,
        )
    )
    previous = await store.get_done(key)
    await store.put_done(key, done, data, last=previous[1] if previous else 0)
    meta = session.entry
    first_ts = context[0].ts if context else None
    updated = _ms(meta, "updatedAt") or (context[-1].ts if context else None)
    peer_kind = meta.get("chatType")
    record = SessionRecord(
        session_key=key,
        agent_id=session.agent_id,
        session_id=session.session_id,
        seq=summary.turns,
        channel=_channel(meta),
        account_id=str(meta.get("lastAccountId") or ""),
        peer=None if not isinstance(peer_kind, str) else _peer(key, peer_kind),
    )
    if first_ts:
        record.created_at = first_ts
    if updated:
        record.updated_at = updated
    await store.put_session(record, None)
    return SessionOutcome("imported", summary.turns, written)


def _peer(session_key: str, kind: str) -> Peer | None:
    """The peer a `…:<kind>:<id>` key names (OpenClaw's per-peer keys), else None."""
    parts = session_key.split(":")
    for i, part in enumerate(parts[:-1]):
        if part == kind and kind in ("direct", "group", "channel"):
            return Peer(kind=kind, id=":".join(parts[i + 1 :]))
    return None
