"""Session state in KV and transcripts in JetStream, behind one small API."""

from __future__ import annotations

import contextlib
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any, Final, TypeVar

import msgspec
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError, NotFoundError
from nats.js.kv import KeyValue

from ..errors import best_effort
from ..kvlist import list_keys
from ..wire import Subjects, encode_token
from ._records import (
    A2ARecord,
    ChildIndex,
    DoneRecord,
    SessionRecord,
    SpawnRecord,
    StopRecord,
    TranscriptEntry,
    TurnAttempts,
    TurnStatus,
)

__all__ = ["CompletionConflict", "SessionStore", "Versioned"]

log = logging.getLogger("clawmesh.sessions")

T = TypeVar("T")
_json = msgspec.json.Encoder()
_entry_decoder: Final = msgspec.json.Decoder(TranscriptEntry)
_batch_decoder: Final = msgspec.json.Decoder(list[TranscriptEntry])
_done_decoder: Final = msgspec.json.Decoder(DoneRecord)
DONE_CACHE_BYTES: Final = 64 * 1024 * 1024


class CompletionConflict(Exception):
    """The session's completion record is not the revision the writer read: someone else
    (a runner that took the session over while this one was stopped) has written since."""

    def __init__(self, session_key: str, expected: int) -> None:
        super().__init__(
            f"the completion record of session {session_key!r} changed since revision {expected}"
        )
        self.session_key = session_key
        self.expected = expected


# Store one message in its stream (subject, payload, headers with a Nats-Msg-Id).
Publish = Callable[[str, bytes, dict[str, str]], Awaitable[object]]


@dataclass(frozen=True, slots=True)
class Versioned:
    value: Any
    revision: int


class _DoneCache:
    """Completion records this process read or wrote, by session, with their KV revision.
    A record carries up to a few hundred transcript entries of context; when the stored
    revision is the one we hold, decoding it again would give the same (immutable) record.
    Bounded by the records' encoded size; least recently used go first."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[str, tuple[int, DoneRecord, int]] = OrderedDict()
        self._bytes = 0

    def get(self, key: str, revision: int) -> DoneRecord | None:
        hit = self._items.get(key)
        if hit is None or hit[0] != revision:
            return None
        self._items.move_to_end(key)
        return hit[1]

    def put(self, key: str, revision: int, record: DoneRecord, size: int) -> None:
        old = self._items.pop(key, None)
        if old is not None:
            self._bytes -= old[2]
        if size > self.max_bytes:
            return
        self._items[key] = (revision, record, size)
        self._bytes += size
        while self._bytes > self.max_bytes:
            _, (_, _, dropped) = self._items.popitem(last=False)
            self._bytes -= dropped


class SessionStore:
    """Per-session records (`s.`/`d.` keys in the sessions bucket), turn status, transcripts."""

    def __init__(
        self,
        js: JetStreamContext,
        subjects: Subjects,
        sessions: KeyValue,
        turns: KeyValue | None = None,
        *,
        counters: MutableMapping[str, int] | None = None,
        publish: Publish | None = None,
    ) -> None:
        self.js = js
        # how transcript records are stored: services retry across a leader change (bus)
        self._publish: Publish = publish or self._publish_once
        self.counters = counters  # the service's: failed clean-ups are counted there
        self.subjects = subjects
        self.sessions = sessions
        self._done = _DoneCache(DONE_CACHE_BYTES)
        self.turns = turns
        self.stream = subjects.stream("SESSIONS")

    # --- KV records ------------------------------------------------------------------------
    @staticmethod
    def _session_key(session_key: str) -> str:
        return f"s.{encode_token(session_key)}"

    @staticmethod
    def _done_key(session_key: str) -> str:
        return f"d.{encode_token(session_key)}"

    async def _raw(self, key: str) -> tuple[bytes, int] | None:
        """A key's stored value and revision; None when it is missing or deleted."""
        try:
            entry = await self.sessions.get(key)
        except KeyNotFoundError:
            return None
        return None if entry.value is None else (entry.value, entry.revision or 0)

    async def _get(self, key: str, type_: type[T]) -> tuple[T, int] | None:
        raw = await self._raw(key)
        return None if raw is None else (msgspec.json.decode(raw[0], type=type_), raw[1])

    async def get_session(self, session_key: str) -> tuple[SessionRecord, int] | None:
        return await self._get(self._session_key(session_key), SessionRecord)

    async def put_session(self, record: SessionRecord, last_revision: int | None) -> int:
        """Create (`last_revision=None`) or compare-and-set update; raises on a lost race."""
        key = self._session_key(record.session_key)
        data = _json.encode(record)
        if last_revision is None:
            return await self.sessions.create(key, data)
        return await self.sessions.update(key, data, last=last_revision)

    async def get_done(self, session_key: str) -> tuple[DoneRecord, int] | None:
        """The session's completion record as stored now (always read: another runner may have
        written it); decoded only when it is not the revision this process last saw."""
        raw = await self._raw(self._done_key(session_key))
        if raw is None:
            return None
        data, revision = raw
        record = self._done.get(session_key, revision)
        if record is None:
            record = _done_decoder.decode(data)
            self._done.put(session_key, revision, record, len(data))
        return record, revision

    async def put_done(
        self, session_key: str, record: DoneRecord, data: bytes | None = None, *, last: int
    ) -> int:
        """Store `record` if the stored one is still revision `last` (0: there is none yet);
        CompletionConflict when someone wrote since. `data`: its JSON encoding, when the
        caller has it already. The record must not be changed afterwards: `get_done` keeps it."""
        data = _json.encode(record) if data is None else data
        key = self._done_key(session_key)
        try:
            if last:
                revision = await self.sessions.update(key, data, last=last)
            else:
                revision = await self.sessions.create(key, data)
        except KeyWrongLastSequenceError:
            raise CompletionConflict(session_key, last) from None
        self._done.put(session_key, revision, record, len(data))
        return revision

    async def count_attempt(self, session_key: str, seq: int, turn_id: str) -> int:
        """Count one more start of turn `seq` (delivered again) and return how many have been
        counted. A first delivery is never recorded (the common case costs nothing) and cannot
        be told from a hand-back, so it is not counted."""
        key = f"a.{encode_token(session_key)}"
        found = await self._get(key, TurnAttempts)
        before = found[0].attempts if found is not None and found[0].seq == seq else 0
        record = TurnAttempts(seq=seq, turn_id=turn_id, attempts=before + 1)
        await self.sessions.put(key, _json.encode(record))
        return record.attempts

    async def _list_revisions(self, prefix: str, type_: type[T]) -> list[tuple[T, int]]:
        """Every record under `prefix` with its KV revision (for a compare-and-delete)."""
        out = []
        for key in await list_keys(self.sessions, prefix):
            with contextlib.suppress(KeyNotFoundError):  # deleted since listing
                entry = await self.sessions.get(key)
                if entry.value:
                    out.append((msgspec.json.decode(entry.value, type=type_), entry.revision or 0))
        return out

    async def _list(self, prefix: str, type_: type[T]) -> list[T]:
        return [value for value, _ in await self._list_revisions(prefix, type_)]

    async def list_sessions(self) -> list[SessionRecord]:
        return await self._list("s.", SessionRecord)

    async def list_session_revisions(self) -> list[tuple[SessionRecord, int]]:
        return await self._list_revisions("s.", SessionRecord)

    async def has_transcript(self, agent_id: str, session_key: str) -> bool:
        try:
            await self.js.get_last_msg(self.stream, self.subjects.transcript(agent_id, session_key))
        except NotFoundError:
            return False
        return True

    async def delete_session(self, agent_id: str, session_key: str, *, revision: int) -> bool:
        """Delete a session: its record (only if still at `revision`: a message routed since
        keeps it), then the records kept per session (completion, attempts, stop request,
        sub-agent index) and its transcript. False when the session changed since it was read."""
        key = self._session_key(session_key)
        try:
            await self.sessions.delete(key, last=revision)
        except KeyWrongLastSequenceError:
            return False
        token = encode_token(session_key)
        # purged, not just deleted: no delete markers left behind, the router creates anew
        for k in (key, self._done_key(session_key), f"a.{token}", f"x.{token}", f"c.{token}"):
            await self.sessions.purge(k)
        subject = self.subjects.transcript(agent_id, session_key)
        await self.js.purge_stream(self.stream, subject=subject)
        return True

    # --- sub-agent runs and stop requests ----------------------------------------------------
    async def put_spawn(self, record: SpawnRecord) -> None:
        await self.sessions.put(f"k.{encode_token(record.child_session_key)}", _json.encode(record))

    async def get_spawn(self, child_session_key: str) -> SpawnRecord | None:
        found = await self._get(f"k.{encode_token(child_session_key)}", SpawnRecord)
        return None if found is None else found[0]

    async def list_spawns(self) -> list[SpawnRecord]:
        """Every sub-agent run recorded (running or ended), in no particular order."""
        return await self._list("k.", SpawnRecord)

    async def get_children(self, parent_session_key: str) -> ChildIndex:
        found = await self._get(f"c.{encode_token(parent_session_key)}", ChildIndex)
        return ChildIndex() if found is None else found[0]

    async def put_children(self, parent_session_key: str, index: ChildIndex) -> None:
        await self.sessions.put(f"c.{encode_token(parent_session_key)}", _json.encode(index))

    async def put_a2a(self, record: A2ARecord) -> None:
        await self.sessions.put(f"q.{encode_token(record.run_id)}", _json.encode(record))

    async def get_a2a(self, run_id: str) -> A2ARecord | None:
        found = await self._get(f"q.{encode_token(run_id)}", A2ARecord)
        return None if found is None else found[0]

    async def put_stop(self, session_key: str, record: StopRecord) -> None:
        await self.sessions.put(f"x.{encode_token(session_key)}", _json.encode(record))

    async def get_stop(self, session_key: str) -> StopRecord | None:
        found = await self._get(f"x.{encode_token(session_key)}", StopRecord)
        return None if found is None else found[0]

    async def put_turn_stop(self, turn_id: str, record: StopRecord) -> None:
        """One turn stopped (an A2A task canceled): it ends as stopped when it starts, whenever."""
        await self.sessions.put(f"xt.{encode_token(turn_id)}", _json.encode(record))

    async def get_turn_stop(self, turn_id: str) -> StopRecord | None:
        found = await self._get(f"xt.{encode_token(turn_id)}", StopRecord)
        return None if found is None else found[0]

    async def put_turn_status(self, turn_id: str, status: TurnStatus) -> None:
        if self.turns is not None:
            await self.turns.put(encode_token(turn_id), _json.encode(status))

    async def turn_acked(self, turn_seq: int) -> bool:
        """Whether the turn at this CM_TURNS sequence is gone from there (acked: CM_TURNS is a
        work queue); False when unknown (0, or the stream did not answer)."""
        if not turn_seq:
            return False
        try:
            await self.js.get_msg(self.subjects.stream("TURNS"), seq=turn_seq)
        except NotFoundError:
            return True
        except Exception as exc:  # unknown: the caller takes the safe side
            log.info("sessions: could not look turn %d up in CM_TURNS (%s)", turn_seq, exc)
        return False

    async def get_turn_status(self, turn_id: str) -> TurnStatus | None:
        if self.turns is None:
            return None
        try:
            entry = await self.turns.get(encode_token(turn_id))
        except KeyNotFoundError:
            return None
        return msgspec.json.decode(entry.value, type=TurnStatus) if entry.value else None

    # --- transcripts ------------------------------------------------------------------------
    async def append(self, agent_id: str, session_key: str, entry: TranscriptEntry, msg_id: str) -> None:
        """Append one record; `msg_id` makes a replayed turn write it only once."""
        subject = self.subjects.transcript(agent_id, session_key)
        headers = {"Nats-Msg-Id": msg_id, "Content-Type": "application/json"}
        await self._publish(subject, _json.encode(entry), headers)

    async def append_batch(
        self, agent_id: str, session_key: str, entries: list[TranscriptEntry], msg_id: str
    ) -> None:
        """Append a turn's records as one message (a JSON array): one publish and one ack per
        turn instead of one per record. `msg_id` makes a replayed turn write them only once."""
        subject = self.subjects.transcript(agent_id, session_key)
        headers = {"Nats-Msg-Id": msg_id, "Content-Type": "application/json"}
        await self._publish(subject, _json.encode(entries), headers)

    async def _publish_once(self, subject: str, data: bytes, headers: dict[str, str]) -> object:
        return await self.js.publish(subject, data, headers=headers)

    async def entries(
        self, agent_id: str, session_key: str, *, timeout: float = 5.0
    ) -> AsyncIterator[TranscriptEntry]:
        """Every record of a session, oldest first. Uses one short-lived pull consumer that is
        deleted afterwards (consumers per stream are limited; never leave them behind)."""
        subject = self.subjects.transcript(agent_id, session_key)
        try:
            last = await self.js.get_last_msg(self.stream, subject)
        except NotFoundError:
            return
        last_seq = last.seq or 0
        psub = await self.js.pull_subscribe(
            subject,
            stream=self.stream,
            config=ConsumerConfig(
                deliver_policy=DeliverPolicy.ALL, ack_policy=AckPolicy.NONE, inactive_threshold=30.0
            ),
        )
        try:
            while True:
                batch = await psub.fetch(256, timeout=timeout)
                for msg in batch:
                    # a record we cannot read is left out; the rest of the history still counts
                    with contextlib.suppress(msgspec.ValidationError, msgspec.DecodeError):
                        if msg.data[:1] == b"[":  # a turn's records appended together
                            for entry in _batch_decoder.decode(msg.data):
                                yield entry
                        else:
                            yield _entry_decoder.decode(msg.data)
                    if msg.metadata.sequence.stream >= last_seq:
                        return
        finally:
            # a consumer left behind goes away by itself (inactive_threshold) but counts
            # against the stream's limit until then
            with best_effort(self.counters, "transcript_consumer_delete", log=log):
                name = (await psub.consumer_info()).name
                await self.js.delete_consumer(self.stream, name)
            with best_effort(self.counters, "transcript_unsubscribe", log=log):
                await psub.unsubscribe()

    async def history(
        self, agent_id: str, session_key: str, limit: int | None = None
    ) -> list[TranscriptEntry]:
        out = [e async for e in self.entries(agent_id, session_key)]
        return out[-limit:] if limit else out
