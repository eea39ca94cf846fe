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
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError, NoKeysError, NotFoundError
from nats.js.kv import KeyValue

from ..errors import best_effort
from ..wire import Subjects, encode_token
from ._records import DoneRecord, SessionRecord, TranscriptEntry, TurnAttempts, TurnStatus

__all__ = ["CompletionConflict", "SessionStore", "Versioned"]

log = logging.getLogger("clawmesh.sessions")

T = TypeVar("T")
_json = msgspec.json.Encoder()
_entry_decoder: Final = msgspec.json.Decoder(TranscriptEntry)
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

    async def list_sessions(self) -> list[SessionRecord]:
        try:
            # nats-py 2.16's key filters find nothing (NoKeysError): filter here instead.
            keys = [k for k in await self.sessions.keys() if k.startswith("s.")]
        except (NotFoundError, NoKeysError):  # raised when the bucket has no keys at all
            return []
        out = []
        for key in keys:
            with contextlib.suppress(KeyNotFoundError):  # deleted since listing
                entry = await self.sessions.get(key)
                if entry.value:
                    out.append(msgspec.json.decode(entry.value, type=SessionRecord))
        return out

    async def put_turn_status(self, turn_id: str, status: TurnStatus) -> None:
        if self.turns is not None:
            await self.turns.put(encode_token(turn_id), _json.encode(status))

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
