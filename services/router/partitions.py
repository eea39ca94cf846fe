"""Which router routes which part of CM_INBOUND.

With `runtime.routerPartitions` N > 1, CM_INBOUND stores each message under
`cm.in.p.<partition>.…`: NATS's `partition(N, …)` mapping of channel, account and the message's
session key or peer (`wire.inbound_key`), so one session's messages share a partition. Each
partition has its own durable consumer and lease (KV `leases`, `router.p.<k>`); only the holder
of a partition's lease consumes it, in stream order, which is what keeps a session's messages in
order. With N = 1 there is one partition, the whole stream: the consumer `router` and the lease
`leader.router`, one active router as before.

With N > 1, routers announce themselves in the same bucket (`router.m.<instance>`, with how many partitions
each holds) and share the partitions out: `share` gives every live router N // R of them and the
N % R routers holding the most one more, so a partition moves only when the routers change. A
router over its share hands partitions back (after routing what it fetched); one under it takes
free ones. A router that dies stops renewing its leases and its announcement: both expire after
`runtime.turnLeaseSeconds` and the others take its partitions.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from nats.js import JetStreamContext
from nats.js.api import ConsumerInfo
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue

from clawmesh.kvlist import list_keys
from clawmesh.wire import Subjects, encode_token

__all__ = [
    "LEADER_KEY",
    "MEMBER_PREFIX",
    "Partition",
    "consumer_starts",
    "done_up_to",
    "member_key",
    "member_value",
    "members",
    "plan",
    "share",
]

LEADER_KEY = "leader.router"  # the one partition's lease when unpartitioned
DURABLE = "router"
MEMBER_PREFIX = "router.m."


@dataclass(frozen=True)
class Partition:
    index: int
    lease_key: str
    durable: str
    filters: list[str]


def plan(partitions: int, subjects: Subjects) -> list[Partition]:
    """The partitions of CM_INBOUND and how each is consumed."""
    if partitions <= 1:
        return [Partition(0, LEADER_KEY, DURABLE, [subjects.inbound_all])]
    return [
        Partition(k, f"router.p.{k}", f"{DURABLE}-p{k}", subjects.inbound_partition(k))
        for k in range(partitions)
    ]


def share(held: Mapping[str, int], me: str, partitions: int) -> int:
    """How many partitions `me` should hold, given every live router and how many it holds
    now: N // R each, one more for the N % R routers that hold the most (ties by name), so
    the shares add up to N and a router keeps what it has when nobody joined or left."""
    routers = dict(held)
    routers.setdefault(me, 0)
    base, extra = divmod(partitions, len(routers))
    ranked = sorted(routers, key=lambda r: (-routers[r], r))
    return base + (1 if ranked.index(me) < extra else 0)


def member_key(instance: str) -> str:
    return MEMBER_PREFIX + encode_token(instance)


def member_value(held: int) -> bytes:
    return json.dumps({"held": held}).encode()


async def members(kv: KeyValue) -> dict[str, int]:
    """The routers announced now (their key token → how many partitions each said it holds)."""
    found: dict[str, int] = {}
    for key in await list_keys(kv, MEMBER_PREFIX):
        try:
            entry = await kv.get(key)
        except KeyNotFoundError:  # left (or expired) since listing
            continue
        try:
            held = int(json.loads(entry.value or b"{}").get("held", 0))
        except (ValueError, TypeError, AttributeError):
            held = 0  # an unreadable announcement still counts as a router
        found[key[len(MEMBER_PREFIX) :]] = held
    return found


def done_up_to(info: ConsumerInfo, last_seq: int) -> int:
    """A stream sequence up to which every message this consumer reads is acknowledged."""
    if not info.num_ack_pending:
        if not info.num_pending:
            return last_seq  # all it will ever see up to now was delivered and acked
        return info.delivered.stream_seq if info.delivered and info.delivered.stream_seq else 0
    return info.ack_floor.stream_seq if info.ack_floor and info.ack_floor.stream_seq else 0


async def consumer_starts(
    js: JetStreamContext, stream: str, wanted: Sequence[Partition]
) -> tuple[dict[str, int | None], list[str]]:
    """Where each missing consumer of `wanted` starts, and the router consumers of another
    layout (a changed `routerPartitions`) to remove. A new consumer must neither route again
    what the old ones routed (CM_INBOUND keeps a week) nor skip what they had not: it starts
    after the point up to which every old consumer has acknowledged everything (None: from
    the stream's start, when there are no old consumers)."""
    last_seq = (await js.stream_info(stream)).state.last_seq
    infos = [
        info
        for info in await js.consumers_info(stream)
        if info.name == DURABLE or info.name.startswith(f"{DURABLE}-p")
    ]
    names = {p.durable for p in wanted}
    existing = {info.name for info in infos}
    start = min((done_up_to(info, last_seq) for info in infos), default=None)
    first = None if not start else start + 1
    starts = {p.durable: first for p in wanted if p.durable not in existing}
    stale = sorted(existing - names)
    return starts, stale
