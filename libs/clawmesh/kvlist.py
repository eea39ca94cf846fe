"""Listing the keys of a NATS KV bucket, answered by the server in one request.

nats-py's `KeyValue.keys()` (and `watch(">")`) read the bucket through an ordered consumer and
stop at the first message that reports nothing pending; under load that report can come before
every key was delivered, so a listing could silently miss an entry (a CI run found no pairing
account that way). Here the server lists the bucket stream's subjects instead
(`STREAM.INFO` with `subjects_filter`): one answer, every key that has a message.

A deleted or purged key keeps its marker (and so its subject) until the bucket's history drops
it: callers read each listed key and treat `KeyNotFoundError` (nats-py raises its subclass
`KeyDeletedError` for a marker) as "not there", as they must anyway for a key deleted after
listing. The server answers at most 100 000 subjects per request; clawmesh's buckets stay far
below that (one key per session, node, approval or region).
"""

from __future__ import annotations

from nats.js.errors import NotFoundError
from nats.js.kv import KeyValue

__all__ = ["list_keys"]


async def list_keys(kv: KeyValue, prefix: str = "") -> list[str]:
    """The keys of `kv` that start with `prefix`, sorted. A prefix that ends at a token
    boundary (`"s."`) is filtered by the server; any other prefix is filtered here."""
    # nats-py keeps the bucket's stream name and subject prefix ("$KV.<bucket>.") private
    pre: str = kv._pre
    stream: str = kv._stream
    wildcard = f"{pre}{prefix}>" if prefix == "" or prefix.endswith(".") else f"{pre}>"
    try:
        info = await kv._js.stream_info(stream, subjects_filter=wildcard)
    except NotFoundError:  # the bucket itself is gone
        return []
    keys = (subject[len(pre) :] for subject in (info.state.subjects or {}))
    return sorted(key for key in keys if key.startswith(prefix))
