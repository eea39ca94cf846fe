"""Leases: KV keys that say who works on something, expiring unless renewed (bucket TTL).

Releasing deletes the key, which leaves a delete marker; nats-py's `create` then needs three
round trips (a failed create, a read, an update) the next time the key is taken. A lease is
usually taken again by the process that released it (the next turn of a session), so the
revision of the marker it wrote is remembered and the next acquire is one conditional update,
which succeeds only if nobody touched the key since: exactly the condition `create` checks.
"""

from __future__ import annotations

from nats.js import JetStreamContext
from nats.js.client import KV_PRE_TEMPLATE
from nats.js.errors import BadRequestError, KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

__all__ = ["Leases"]

_MAX_REMEMBERED = 100_000
_WRONG_LAST_SEQUENCE = 10071  # JetStream error code (nats-py maps it only inside KV calls)


class Leases:
    def __init__(self, js: JetStreamContext, kv: KeyValue, bucket: str) -> None:
        self.js = js
        self.kv = kv
        self._prefix = KV_PRE_TEMPLATE.format(bucket=bucket)
        self._markers: dict[str, int] = {}  # key -> revision of the delete marker we wrote

    async def acquire(self, key: str, owner: bytes) -> int | None:
        """Take the lease: its revision, or None when someone else holds it."""
        marker = self._markers.pop(key, None)
        if marker is not None:
            try:
                return await self.kv.update(key, owner, last=marker)
            except KeyWrongLastSequenceError:
                pass  # taken or expired since: fall back to the general case
        try:
            return await self.kv.create(key, owner)
        except KeyWrongLastSequenceError:
            return None

    async def renew(self, key: str, owner: bytes, revision: int) -> int:
        """Extend the lease; raises KeyWrongLastSequenceError when it was lost meanwhile."""
        return await self.kv.update(key, owner, last=revision)

    async def release(self, key: str, owner: bytes, revision: int) -> None:
        """Give the lease up if it is still ours. `revision` is the latest we know of; a renewal
        still in flight may have moved it on, so a mismatch is checked against the holder."""
        for _ in range(3):
            try:
                ack = await self.js.publish(
                    self._prefix + key,
                    b"",
                    headers={"KV-Operation": "DEL", "Nats-Expected-Last-Subject-Sequence": str(revision)},
                )
            except BadRequestError as exc:
                if exc.err_code != _WRONG_LAST_SEQUENCE:
                    raise
                try:
                    entry = await self.kv.get(key)
                except KeyNotFoundError:
                    return  # expired or deleted: nothing to give up
                if entry.value != owner or entry.revision is None:
                    return  # someone else's now: leave it alone
                revision = entry.revision
                continue
            if len(self._markers) >= _MAX_REMEMBERED:
                self._markers.clear()
            self._markers[key] = ack.seq
            return
