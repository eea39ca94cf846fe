"""Leases: KV keys that say who works on something, expiring unless renewed (bucket TTL).

    lease = await leases.acquire(key)   # None: someone else holds it
    await lease.renew()                 # raises LeaseLost once someone else holds it
    await lease.release()

Releasing deletes the key, which leaves a delete marker; nats-py's `create` then needs three
round trips (a failed create, a read, an update) the next time the key is taken. A lease is
usually taken again by the process that released it (the next turn of a session), so the
revision of the marker it wrote is remembered and the next acquire is one conditional update,
which succeeds only if nobody touched the key since: exactly the condition `create` checks.
"""

from __future__ import annotations

import asyncio
import logging
import time

from nats.js import JetStreamContext
from nats.js.client import KV_PRE_TEMPLATE
from nats.js.errors import BadRequestError, KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

__all__ = ["Lease", "LeaseLost", "Leases"]

log = logging.getLogger("clawmesh.bus")

# A holder asks JetStream for more only while its lease is surely still its own for longer than
# one pull request (0.5 s) lasts, plus slack: a request sent by a holder that stalled past its
# lease would take messages out from under the next holder, who may be working on later ones.
# (Less than the renewal period, lease/3, leaves: a short lease keeps a smaller margin.)
_FRESH_MARGIN = 1.5
_FRESH_MARGIN_MIN = 0.6

_MAX_REMEMBERED = 100_000
# JetStream's "wrong last sequence" codes (nats-py maps them only inside KV calls): 10071 with
# the sequence in the text, 10164 the constant text newer servers send
_WRONG_LAST_SEQUENCE = frozenset({10071, 10164})


class LeaseLost(Exception):
    """Someone else holds the lease now (ours expired without being renewed in time)."""

    def __init__(self, key: str) -> None:
        super().__init__(f"lease {key!r} is held by someone else now")
        self.key = key


class Leases:
    """The leases one process (`owner`) takes in one KV bucket."""

    def __init__(self, js: JetStreamContext, kv: KeyValue, bucket: str, owner: str | bytes) -> None:
        self.js = js
        self.kv = kv
        self.owner = owner.encode() if isinstance(owner, str) else owner
        self._prefix = KV_PRE_TEMPLATE.format(bucket=bucket)
        self._markers: dict[str, int] = {}  # key -> revision of the delete marker we wrote

    async def acquire(self, key: str) -> Lease | None:
        """Take the lease, or None when someone else holds it."""
        marker = self._markers.pop(key, None)
        sent = time.monotonic()
        if marker is not None:
            try:
                return Lease(self, key, await self.kv.update(key, self.owner, last=marker), sent)
            except KeyWrongLastSequenceError:
                pass  # taken or expired since: fall back to the general case
        try:
            return Lease(self, key, await self.kv.create(key, self.owner), sent)
        except KeyWrongLastSequenceError:
            return None

    async def _delete(self, key: str, revision: int) -> None:
        """Delete the key if it is still ours. `revision` is the latest we know of; a renewal
        still in flight may have moved it on, so a mismatch is checked against the holder."""
        for _ in range(3):
            try:
                ack = await self.js.publish(
                    self._prefix + key,
                    b"",
                    headers={"KV-Operation": "DEL", "Nats-Expected-Last-Subject-Sequence": str(revision)},
                )
            except BadRequestError as exc:
                if exc.err_code not in _WRONG_LAST_SEQUENCE:
                    raise
                try:
                    entry = await self.kv.get(key)
                except KeyNotFoundError:
                    return  # expired or deleted: nothing to give up
                if entry.value != self.owner or entry.revision is None:
                    return  # someone else's now: leave it alone
                revision = entry.revision
                continue
            if len(self._markers) >= _MAX_REMEMBERED:
                self._markers.clear()
            self._markers[key] = ack.seq
            return


class Lease:
    """One lease held: renew it well within the bucket's TTL, release it when done."""

    __slots__ = ("_leases", "held_since", "key", "lost", "revision")

    def __init__(self, leases: Leases, key: str, revision: int, sent: float | None = None) -> None:
        self._leases = leases
        self.key = key
        self.revision = revision  # of our latest write: the condition of the next one
        self.lost = False
        # time.monotonic() when our latest successful write was sent: the lease is ours at least
        # until the bucket's TTL has passed since then (unless it was released)
        self.held_since = time.monotonic() if sent is None else sent

    async def renew(self) -> None:
        """Extend the lease. Raises LeaseLost when someone else holds it; any other error (a
        slow or failed round trip) leaves it ours until it expires, so a retry may still work."""
        if self.lost:
            raise LeaseLost(self.key)
        leases = self._leases
        sent = time.monotonic()
        try:
            self.revision = await leases.kv.update(self.key, leases.owner, last=self.revision)
        except KeyWrongLastSequenceError:
            self.lost = True
            raise LeaseLost(self.key) from None
        self.held_since = sent

    def fresh(self, ttl: float) -> bool:
        """Whether the lease is ours for longer than a pull request lasts (`ttl`: the bucket's).
        False after a stall (a paused process, a starved event loop) that `keep` has not noticed
        yet: what it guards is then let go, and taken again if nobody else took it."""
        margin = max(_FRESH_MARGIN_MIN, min(_FRESH_MARGIN, ttl / 4))
        return time.monotonic() + margin < self.held_since + ttl

    async def keep(self, ttl: float, what: str) -> None:
        """Renew every `ttl`/3 until the lease is lost: any failure counts (someone else may
        hold it by now), and sets `lost`. `what` names the holder in the log line."""
        while True:
            await asyncio.sleep(ttl / 3)
            try:
                await self.renew()
            except Exception as exc:
                log.error("%s: lost the lease %s (%s)", what, self.key, exc)
                self.lost = True
                return

    async def release(self) -> None:
        """Give the lease up if it is still ours (never someone else's, even with a stale
        revision); nothing to do once lost."""
        if not self.lost:
            await self._leases._delete(self.key, self.revision)
