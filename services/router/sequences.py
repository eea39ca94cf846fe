"""Per-session sequence numbers, assigned in CM_INBOUND order: the order the runners obey.

The numbers live in each session's record (KV `sessions`, `s.<session token>`), written with
compare-and-set. A router keeps the records it wrote, with their revisions, so a busy
session costs no read per batch; a stale one (another router wrote since) fails its
compare-and-set and is read again (`drop`), a partition taken over starts from the store.

A record remembers its latest assignments by turn id, so a message that comes again keeps its
number whatever brought it back: JetStream redelivering it after a router crash, or its
platform (Slack retries after 1 and 5 minutes, WhatsApp for longer) or a calling gateway
sending it again after CM_INBOUND's duplicate window. Its turn, numbered as before, is then
answered by the runner from the completion record (a replay), not run a second time.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import uuid
from collections.abc import Sequence

import msgspec

from clawmesh.routing import Route, is_subagent_session_key
from clawmesh.sessions import SessionRecord, SessionStore
from clawmesh.wire import InboundMessage, now

__all__ = ["RECENT_ASSIGNMENTS", "Sequences", "Touched", "turn_mark"]

log = logging.getLogger("clawmesh.router")

RECENT_ASSIGNMENTS = 256  # assignments a record remembers, for messages that come again
_MAX_CACHED = 50_000

# session key → its new record, and the revision it must replace (None: create it)
Touched = dict[str, tuple[SessionRecord, int | None]]


def turn_mark(turn_id: str) -> str:
    """What a session record keeps of a turn id: 64 bits of its hash (ids from outside may be
    long; 256 marks stay ~6 KB, and a collision among one session's latest 256 is ~2^-49)."""
    return hashlib.blake2b(turn_id.encode(), digest_size=8).hexdigest()


class Sequences:
    def __init__(self, store: SessionStore, *, partitioned: bool = False) -> None:
        self.store = store
        # with partitioned routers a session reached through several partitions (dmScope main)
        # sees its messages out of stream order as a matter of course: not worth a warning
        self._late = logging.DEBUG if partitioned else logging.WARNING
        self._cache: dict[str, tuple[SessionRecord, int]] = {}
        self._assumed: set[str] = set()  # sessions the last batch created without reading them
        self._read_first: set[str] = set()  # ... and whose batch failed: read them after all

    def forget(self) -> None:
        """Drop what was cached: another leader may have assigned numbers, or a write failed."""
        self._cache.clear()
        # a session taken for new may exist after all (its task message delivered again after
        # a crash): its create failed, so it is read like any other from now on
        self._read_first |= self._assumed
        self._assumed = set()
        if len(self._read_first) > _MAX_CACHED:
            self._read_first.clear()

    def drop(self, keys: Sequence[str]) -> None:
        """Read these sessions from the store next time: someone else wrote them."""
        for key in keys:
            self._cache.pop(key, None)
        # a session taken for new that exists after all (its create failed): read it from now on
        self._read_first.update(key for key in keys if key in self._assumed)

    def stored(self, touched: Touched, revisions: Sequence[int]) -> None:
        """The records `assign` returned are stored now, at these revisions."""
        for (key, (record, _)), revision in zip(touched.items(), revisions, strict=True):
            self._cache[key] = (record, revision)
        if len(self._cache) > _MAX_CACHED:
            self._cache.clear()

    async def assign(
        self, arrivals: Sequence[tuple[Route, InboundMessage, int]]
    ) -> tuple[list[int], Touched]:
        """Number each (route, message, CM_INBOUND sequence), in the order given: the sequence
        numbers, and the records to store. Nothing cached changes until `stored`: a batch that
        cannot be written leaves no trace."""
        # A sub-agent's task message opens a session whose key the spawn just made up: no
        # record to read (if one exists after all, its create fails and the batch is read again)
        fresh = {r.session_key for r, inbound, _ in arrivals if _opens_session(inbound)} - self._read_first
        self._assumed = fresh
        missing = [
            key
            for key in dict.fromkeys(r.session_key for r, _, _ in arrivals)
            if key not in self._cache and key not in fresh
        ]
        found = await asyncio.gather(*(self.store.get_session(key) for key in missing))
        for key, hit in zip(missing, found, strict=True):
            if hit is not None:
                self._cache[key] = hit
        touched: Touched = {}
        seqs: list[int] = []
        for route, inbound, inbound_seq in arrivals:
            key = route.session_key
            last: int | None
            if key in touched:
                record, last = touched[key]
            elif key in self._cache:
                cached, last = self._cache[key]
                record = msgspec.structs.replace(cached, recent_turns=dict(cached.recent_turns))
            else:
                record = SessionRecord(
                    session_key=key,
                    agent_id=route.agent_id,
                    session_id=str(uuid.uuid4()),
                    channel=route.channel,
                    account_id=route.account_id,
                    peer=inbound.peer,
                )
                last = None
            mark = turn_mark(inbound.id)
            previous = record.recent_turns.get(mark)
            if previous is None:
                previous = record.recent.get(inbound_seq)  # numbered by an older router
            if previous is not None:
                seqs.append(previous)  # delivered again: the number it was given before
            else:
                if inbound_seq <= record.inbound_seq:
                    log.log(
                        self._late, "router: message %s of %s arrived after a newer one", inbound_seq, key
                    )
                record.seq += 1
                seqs.append(record.seq)
                record.inbound_seq = max(record.inbound_seq, inbound_seq)
                record.recent_turns[mark] = record.seq
                if len(record.recent_turns) > RECENT_ASSIGNMENTS:  # oldest first: insertion order
                    for old in list(record.recent_turns)[: len(record.recent_turns) - RECENT_ASSIGNMENTS]:
                        del record.recent_turns[old]
                record.agent_id = route.agent_id
                record.updated_at = now()
                command = inbound.metadata.get("command")
                if command in ("new", "reset"):
                    # OpenClaw's reset: a new session id under the same key; with a text the
                    # command's own turn is the new session's first message
                    record.session_id = str(uuid.uuid4())
                    record.started_seq = record.seq - (1 if inbound.metadata.get("commandArgs") else 0)
            touched[key] = (record, last)
        return seqs, touched


def _opens_session(inbound: InboundMessage) -> bool:
    """The first message of a sub-agent session (`sessions_spawn`'s task, with its depth)."""
    return "spawnDepth" in inbound.metadata and is_subagent_session_key(inbound.session_key or "")
