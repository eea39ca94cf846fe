"""Approval requests, kept in the JetStream KV bucket `cm_approvals` under `<node>.<id>`: the
node-agent that would run the command creates the request and waits for it to change; operators
(`clawmesh approvals`, the HTTP API) resolve it with a compare-and-set, so exactly one decision
wins, and a request that nobody answered in time is marked `expired` the same way."""

from __future__ import annotations

import asyncio
import re
import secrets
import time
from typing import Final, Literal

import msgspec
from nats.errors import TimeoutError as NatsTimeout
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from ..kvlist import list_keys
from ..wire import encode_token

__all__ = ["ApprovalError", "ApprovalRecord", "ApprovalStore", "Decision", "new_approval_id"]

Decision = Literal["allow-once", "allow-always", "deny"]
Status = Literal["pending", "allow-once", "allow-always", "deny", "expired"]
_ID: Final = re.compile(r"[0-9a-f]{8,64}\Z")


def new_approval_id() -> str:
    return secrets.token_hex(8)


class ApprovalError(Exception):
    def __init__(self, code: Literal["not_found", "invalid_request", "conflict"], message: str) -> None:
        super().__init__(message)
        self.code = code


class ApprovalRecord(msgspec.Struct, kw_only=True, rename="camel"):
    id: str
    node: str
    agent_id: str
    session_key: str
    turn_id: str = ""
    command: str
    cwd: str
    host: str = "gateway"
    security: str
    ask: str
    reason: str
    status: Status = "pending"
    created_at: float
    expires_at: float
    resolved_at: float | None = None
    resolved_by: str = ""

    @property
    def key(self) -> str:
        return f"{encode_token(self.node)}.{self.id}"


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(ApprovalRecord)


class ApprovalStore:
    def __init__(self, kv: KeyValue) -> None:
        self.kv = kv

    async def create(self, record: ApprovalRecord) -> int:
        return await self.kv.create(record.key, _encoder.encode(record))

    async def wait(self, record: ApprovalRecord, timeout: float) -> ApprovalRecord:
        """The request once decided; after `timeout` seconds it is marked `expired` (unless a
        decision lands first, which then wins)."""
        watcher = await self.kv.watch(record.key)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            while True:
                left = deadline - loop.time()
                if left <= 0:
                    break
                try:
                    entry = await watcher.updates(timeout=left)  # type: ignore[no-untyped-call]
                except NatsTimeout:
                    break
                if entry is None or not entry.value:
                    continue
                current = _decode(entry.value)
                if current is not None and current.status != "pending":
                    return current
        finally:
            await watcher.stop()  # type: ignore[no-untyped-call]
        return await self._expire(record)

    async def _expire(self, record: ApprovalRecord) -> ApprovalRecord:
        while True:
            entry = await self.kv.get(record.key)
            current = _decode(entry.value or b"")
            if current is None or current.status != "pending":
                return current or record
            expired = msgspec.structs.replace(current, status="expired", resolved_at=time.time())
            try:
                await self.kv.update(record.key, _encoder.encode(expired), last=entry.revision)
                return expired
            except KeyWrongLastSequenceError:
                continue  # decided at the last moment: read that decision

    async def list(self, *, pending_only: bool = True) -> list[ApprovalRecord]:
        records: list[ApprovalRecord] = []
        for key in await list_keys(self.kv):
            try:
                entry = await self.kv.get(key)
            except KeyNotFoundError:  # deleted (or expired) since listing
                continue
            record = _decode(entry.value or b"")
            if record is None:
                continue
            if pending_only and (record.status != "pending" or record.expires_at < time.time()):
                continue
            records.append(record)
        return sorted(records, key=lambda r: r.created_at)

    async def _find(self, approval_id: str) -> str:
        if not _ID.match(approval_id):
            raise ApprovalError("invalid_request", f"not an approval id: {approval_id[:80]!r} (expected hex)")
        for key in await list_keys(self.kv):
            if key.rsplit(".", 1)[-1] == approval_id:
                return key
        raise ApprovalError("not_found", f"no approval request {approval_id} (unknown, or older than a day)")

    async def get(self, approval_id: str) -> ApprovalRecord:
        key = await self._find(approval_id)
        try:
            entry = await self.kv.get(key)
        except KeyNotFoundError as exc:
            raise ApprovalError("not_found", f"no approval request {approval_id}") from exc
        record = _decode(entry.value or b"")
        if record is None:
            raise ApprovalError("not_found", f"approval request {approval_id} is unreadable")
        return record

    async def resolve(self, approval_id: str, decision: Decision, *, by: str) -> ApprovalRecord:
        """Records the decision; a request that is no longer pending (decided, expired) is a conflict."""
        key = await self._find(approval_id)
        while True:
            entry = await self.kv.get(key)
            current = _decode(entry.value or b"")
            if current is None:
                raise ApprovalError("not_found", f"approval request {approval_id} is unreadable")
            if current.status != "pending":
                raise ApprovalError("conflict", f"approval request {approval_id} is already {current.status}")
            if current.expires_at < time.time():
                raise ApprovalError("conflict", f"approval request {approval_id} has expired")
            decided = msgspec.structs.replace(
                current, status=decision, resolved_at=time.time(), resolved_by=by
            )
            try:
                await self.kv.update(key, _encoder.encode(decided), last=entry.revision)
                return decided
            except KeyWrongLastSequenceError:
                continue


def _decode(data: bytes) -> ApprovalRecord | None:
    try:
        return _decoder.decode(data)
    except (msgspec.ValidationError, msgspec.DecodeError):
        return None
