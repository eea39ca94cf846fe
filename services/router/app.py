"""router: CM_INBOUND → resolve_route → CM_TURNS, one decision event per message.

Ordering. Turns of one session must run in arrival order, and a session can span channels
(dmScope `main`), so order is decided here, in CM_INBOUND order: the router stamps each turn
with a per-session sequence number that the runners obey. CM_INBOUND is consumed in partitions
(`runtime.routerPartitions`, `partitions.py`), each by one router at a time, in order, under a
KV lease; one session's messages share a partition, and the numbers are written with
compare-and-set, so a session reached through several partitions (a shared session) still gets
each number once. With one partition this is one active router and standbys.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar

import msgspec
from nats.aio.msg import Msg
from nats.js.errors import KeyWrongLastSequenceError, NotFoundError

from clawmesh.bus import (
    Lease,
    ServiceContext,
    await_orphans,
    consumer_span,
    inject,
    producer_span,
    pull_forever,
    wait_for_stop,
)
from clawmesh.channels import CONTROL_COMMANDS, parse_command
from clawmesh.config import Config
from clawmesh.errors import ClawmeshError, best_effort
from clawmesh.routing import (
    Route,
    build_agent_session_key,
    normalize_agent_id,
    normalize_chat_type,
    parse_agent_session_key,
    resolve_route,
    resolve_thread_session_keys,
)
from clawmesh.sessions import TurnStatus, stop_session
from clawmesh.wire import (
    DecodeFailure,
    InboundMessage,
    RouteDecision,
    RouteInfo,
    TurnRequest,
    decode,
    encode_json,
    encode_msgpack,
    now,
)

from .failover import Failover
from .partitions import (
    MEMBER_PREFIX,
    Partition,
    consumer_starts,
    member_key,
    member_value,
    members,
    plan,
    share,
)
from .sequences import Sequences

__all__ = ["Router"]

log = logging.getLogger("clawmesh.router")

BATCH = 256
# a message newer than one handed back and not yet redelivered comes back after this long
_OWED_RETRY = 0.2
# A batch whose session records lost a compare-and-set race (another router numbered one of
# its sessions meanwhile) is numbered again from the stored records this many times, then
# handed back like any failed batch.
_NUMBERING_TRIES = 5


@dataclass
class _Held:
    """A partition this router holds: its lease, its consumer, the loop routing it."""

    partition: Partition
    lease: Lease
    psub: Any
    stop: asyncio.Event
    task: asyncio.Task[None] | None = None
    # stream sequences this router handed back and has not seen again → until when to wait
    owed: dict[int, float] = field(default_factory=dict)
    # taken over with messages still out with the previous holder: nothing delivered after
    # this stream sequence is routed until the consumer's ack floor has passed it (or until
    # `floor_until`); 0 once it has
    floor: int = 0
    floor_until: float = 0.0
    orphans: int = 0  # how many were out then
    orphans_seen: set[int] = field(default_factory=set)  # those delivered to this router since


@dataclass
class _Routed:
    msg: Msg
    inbound: InboundMessage
    route: Route
    inbound_seq: int
    seq: int = 0


def route_message(config: Config, msg: InboundMessage) -> Route:
    """The routing decision for one inbound message (bindings, or the explicitly chosen agent).
    A message of a thread with its own session (`sessionThreadId`) goes to the routed session
    key + `:thread:<id>`, as OpenClaw's Slack plugin applies `resolveThreadSessionKeys` to its
    route: the bindings saw the chat (`peer`), the route keeps its `mainSessionKey` and
    `lastRoutePolicy`. A session the caller chose is taken as it is."""
    route = _route(config, msg)
    if msg.session_thread_id is not None and not msg.session_key:
        key = resolve_thread_session_keys(route.session_key, str(msg.session_thread_id))[0]
        route = route._replace(session_key=key)
    return route


def _route(config: Config, msg: InboundMessage) -> Route:
    # `dm` is folded into `direct` here, as OpenClaw's resolveAgentRoute does before building a key
    peer = (
        {"kind": normalize_chat_type(msg.peer.kind) or msg.peer.kind, "id": msg.peer.id} if msg.peer else None
    )
    if msg.agent_id:
        agent = config.agent(msg.agent_id)
        if agent is None and config.has_roster:
            raise ClawmeshError(
                "UNKNOWN_AGENT",
                f"agent '{msg.agent_id}' is not configured",
                f"configured: {', '.join(config.agent_ids)}",
            )
        # Without a roster any id is accepted, normalised like a configured one: it becomes a
        # subject token, a KV key and a directory name.
        agent_id = agent.id if agent else normalize_agent_id(msg.agent_id)
        session = config.settings.session
        dm, gs = session.dm_scope, session.group_scope
        if msg.session_key:
            # the caller chose the session (the OpenAI API's privacy: a session per request or
            # per `user`); it must be one of this agent's
            key = msg.session_key
            parsed = parse_agent_session_key(key)
            if parsed is None or normalize_agent_id(parsed.agent_id) != agent_id:
                raise ClawmeshError(
                    "ROUTING_ERROR",
                    f"session key {key[:300]!r} is not a session of agent '{agent_id}'",
                    f"use agent:{agent_id}:<key>",
                )
        else:
            key = build_agent_session_key(
                agent_id=agent_id,
                channel=msg.channel,
                account_id=msg.account_id,
                peer=peer,
                dm_scope=dm,
                group_scope=gs,
                identity_links=session.identity_links,
                main_key=session.main_key,
            )
        main = build_agent_session_key(agent_id=agent_id, channel=msg.channel, main_key=session.main_key)
        return Route(
            agent_id,
            msg.channel,
            msg.account_id,
            key,
            main,
            "main" if key == main else "session",
            "explicit",
            dm,
            gs,
        )
    return resolve_route(
        config,
        channel=msg.channel,
        account_id=msg.account_id,
        peer=peer,
        parent_peer={"kind": msg.parent_peer.kind, "id": msg.parent_peer.id} if msg.parent_peer else None,
        guild_id=msg.guild_id,
        team_id=msg.team_id,
        member_role_ids=msg.member_role_ids,
    )


def _mark_command(inbound: InboundMessage) -> InboundMessage:
    """The message with `command` (and `commandArgs`) in its metadata when it is a control
    command (`/new`, `/reset`, `/status`, `/stop`, an abort word), without them otherwise: the
    one place commands are recognised for every surface. A channel adapter that knows its bot's
    name (`/stop@bot`) marks the message itself; that mark is kept."""
    metadata = inbound.metadata
    marked = metadata.get("command")
    if marked in CONTROL_COMMANDS:
        return inbound
    parsed = parse_command(inbound.text)
    if parsed is None:
        if marked is None and "commandArgs" not in metadata:
            return inbound
        rest = {k: v for k, v in metadata.items() if k not in ("command", "commandArgs")}
        return msgspec.structs.replace(inbound, metadata=rest)
    name, args = parsed
    return msgspec.structs.replace(inbound, metadata={**metadata, "command": name, "commandArgs": args})


def _decided(inbound: InboundMessage, route: Route, seq: int = 0) -> RouteDecision:
    """The decision announced for a routed message (`seq`: its number here; 0 when served elsewhere)."""
    return RouteDecision(
        turn_id=inbound.id,
        channel=route.channel,
        account_id=route.account_id,
        agent_id=route.agent_id,
        session_key=route.session_key,
        matched_by=route.matched_by,
        seq=seq,
    )


class Router:
    """Routes every accepted message to its agent, in CM_INBOUND order, stamping each turn with
    its session's next sequence number; only the replica holding the leader lease consumes."""

    name: ClassVar[str] = "router"

    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx
        self.store = ctx.sessions
        self.leases = ctx.leases
        self.lease_seconds = ctx.layout.lease_seconds
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.sequences = Sequences(self.store, partitioned=ctx.layout.router_partitions > 1)
        # runtime.maxDeliveries when the consumer was made: JetStream's bound is set from it
        self.tries = ctx.holder.current.settings.runtime.max_deliveries
        self._failures: dict[int, str] = {}  # stream sequence → why its last try failed here
        # runtime.routerPartitions at start: the stream's mapping and the consumers follow it
        self.partitions = plan(ctx.layout.router_partitions, ctx.subjects)
        self._held: dict[int, _Held] = {}
        self.failover = Failover(ctx)  # turns served by another region while no runner is alive
        self._consumers_ready = False
        self._member = member_key(ctx.instance)

    # --- lifecycle ----------------------------------------------------------------------
    async def start(self) -> None:
        self._stream = self.ctx.subjects.stream("INBOUND")
        self._task = asyncio.create_task(self._own_forever(), name="router-partitions")

    async def stop(self, timeout: float) -> None:
        self._stopping.set()
        if self._task is not None:
            # A loop that was cancelled already has ended.
            with (
                contextlib.suppress(asyncio.CancelledError),
                best_effort(self.ctx.counters, "leader_stop", log=log),
            ):
                await asyncio.wait_for(self._task, timeout)
        await self.failover.stop()

    def status(self) -> dict[str, Any]:
        return {
            "leader": bool(self._held),  # routes something (with one partition: the leader)
            "partitions": sorted(self._held),
            "partitionCount": len(self.partitions),
            "pid": os.getpid(),
            "config_version": self.ctx.holder.current.version,
        }

    # --- partitions ---------------------------------------------------------------------
    async def _own_forever(self) -> None:
        """Announce this router, hold its share of the partitions, route them; on stop, hand
        them over at once rather than after the lease TTL."""
        try:
            while not self._stopping.is_set():
                try:
                    await self._rebalance()
                except Exception as exc:
                    log.warning("router: could not take or hand over partitions (%s); retrying", exc)
                await wait_for_stop(self._stopping, self.lease_seconds / 3)
        finally:
            await asyncio.gather(*(self._release(k) for k in list(self._held)))
            if len(self.partitions) > 1:
                with best_effort(self.ctx.counters, "router_member_delete", log=log):
                    await self.ctx.kv["leases"].delete(self._member)

    async def _rebalance(self) -> None:
        for k, held in list(self._held.items()):
            if held.task is not None and held.task.done():  # its lease was lost
                await self._release(k)
        me = self._member[len(MEMBER_PREFIX) :]
        if len(self.partitions) == 1:
            # one partition: whoever gets the lease leads, the others stand by (as before
            # partitions); no announcements to write or read
            routers, want = {me: len(self._held)}, 1
        else:
            kv = self.ctx.kv["leases"]
            await kv.put(self._member, member_value(len(self._held)))
            routers = await members(kv)
            routers[me] = len(self._held)
            want = share(routers, me, len(self.partitions))
        if len(self._held) > want:
            excess = sorted(self._held, reverse=True)[: len(self._held) - want]
            log.info(
                "router %s hands over partitions %s (%d routers)", self.ctx.instance, excess, len(routers)
            )
            await asyncio.gather(*(self._release(k) for k in excess))
            return
        if len(self._held) == want:
            return
        if not self._consumers_ready:
            await self._ensure_consumers()
        # start at a different partition on every router: fewer collisions when several take
        offset = sorted(routers).index(me) * len(self.partitions) // max(len(routers), 1)
        order = self.partitions[offset:] + self.partitions[:offset]
        for partition in order:
            if len(self._held) >= want or self._stopping.is_set():
                break
            if partition.index not in self._held:
                await self._take(partition)

    async def _ensure_consumers(self) -> None:
        """Create the partitions' consumers (each where the old layout's consumers left off:
        `consumer_starts`) and remove those of another layout, once per start."""
        ctx = self.ctx
        starts, stale = await consumer_starts(ctx.js, self._stream, self.partitions)
        for partition in self.partitions:
            if partition.durable in starts:
                psub = await self._consumer(partition, starts[partition.durable])
                await psub.unsubscribe()
        for name in stale:
            log.warning("router: removing consumer %s of another routerPartitions value", name)
            with contextlib.suppress(NotFoundError):
                await ctx.js.delete_consumer(self._stream, name)
        self._consumers_ready = True

    async def _consumer(self, partition: Partition, start_seq: int | None = None) -> Any:
        return await self.ctx.pull_consumer(
            partition.filters,
            self._stream,
            partition.durable,
            max_ack_pending=10_000,
            start_seq=start_seq,
        )

    async def _take(self, partition: Partition) -> None:
        lease = await self.leases.acquire(partition.lease_key)
        if lease is None:  # another router holds it
            return
        try:
            psub = await self._consumer(partition)
        except BaseException:
            await lease.release()
            raise
        held = _Held(partition, lease, psub, asyncio.Event())
        self._held[partition.index] = held
        # another router may have numbered this partition's sessions meanwhile
        self.sequences.forget()
        if len(self.partitions) == 1:
            log.info("router %s is the leader", self.ctx.instance)
        else:
            log.info("router %s routes partition %d", self.ctx.instance, partition.index)
        held.task = asyncio.create_task(self._route(held), name=f"router-p{partition.index}")

    async def _release(self, index: int) -> None:
        """Stop routing a partition: route the batch in hand and what the open pull request
        still delivers (handed over on purpose; a lost lease or a stop hands it back), give the
        lease up (the next holder takes it at once, not after the TTL)."""
        held = self._held.pop(index, None)
        if held is None:
            return
        held.stop.set()
        if held.task is not None:
            with (
                contextlib.suppress(asyncio.CancelledError),
                best_effort(self.ctx.counters, "partition_stop", log=log),
            ):
                await held.task
        # its messages served by another region go to the next holder too (unacked: it asks
        # that region again), or a long turn there would outlast the next holder's orphan wait
        await self.failover.stop(index)
        if not held.lease.lost:
            with best_effort(self.ctx.counters, "leader_release", log=log):
                await held.lease.release()
        # A pull subscription can hold fetched-but-unread messages that would block the
        # connection's drain; they are redelivered to the next holder anyway.
        with best_effort(self.ctx.counters, "consumer_unsubscribe", log=log):
            await held.psub.unsubscribe()

    async def _route(self, held: _Held) -> None:
        """Consume one partition while its lease is ours."""
        keeper = asyncio.create_task(held.lease.keep(self.lease_seconds, "router"))
        try:
            await await_orphans(
                held.psub,
                within=self.lease_seconds + 0.5,
                stop=held.stop,
                go_on=lambda: not self._stopping.is_set() and not keeper.done(),
                what=f"router: partition {held.partition.index}",
            )
            await self._mark_orphans(held)
            await pull_forever(
                held.psub,
                functools.partial(self._handle_batch, held=held),
                batch=BATCH,
                stop=held.stop,
                name=f"router-p{held.partition.index}",
                active=lambda: (
                    not keeper.done() and not self._stopping.is_set() and held.lease.fresh(self.lease_seconds)
                ),
                # handed over on purpose: route what was fetched, so the next holder finds
                # nothing pending and starts at once
                finish=True,
            )
        finally:
            keeper.cancel()

    async def _handle_batch(self, msgs: list[Msg], held: _Held | None = None) -> bool:
        """Route a fetched batch. Decisions and sequence numbers are made in CM_INBOUND order;
        the writes then go out concurrently (session records first, then turns), and the batch
        is acked only when all of them are stored. False: nothing was acked, all is handed back."""
        ctx = self.ctx
        config = ctx.holder.current
        # redeliveries and new messages can arrive together: stream order is the order
        msgs = sorted(msgs, key=lambda m: m.metadata.sequence.stream)
        if held is not None and held.floor:
            msgs = await self._not_ahead_of_orphans(held, msgs)
            if not msgs:
                return False
        if held is not None and held.owed:
            msgs = await self._not_ahead_of_owed(held, msgs)
            if not msgs:
                return False
        routed: list[_Routed] = []
        # counted concurrently: a batch delivered again after a failover costs one round trip
        exhausted = await asyncio.gather(
            *(ctx.give_up(m, self.tries, self._failures.pop(m.metadata.sequence.stream, None)) for m in msgs),
            return_exceptions=True,
        )
        failed = next((e for e in exhausted if isinstance(e, BaseException)), None)
        if failed is not None:
            if not isinstance(failed, Exception):
                raise failed
            # a try that cannot be counted is not made; handing back only that message would
            # let a later one of its session be numbered first
            log.warning("router: could not count the tries of a batch (%s); handing it back", failed)
            await self._hand_back_batch(
                [m for m, done in zip(msgs, exhausted, strict=True) if done is not True], failed, held
            )
            return False
        for msg, given_up in zip(msgs, exhausted, strict=True):
            headers = msg.headers or {}
            seq = msg.metadata.sequence.stream
            if given_up:
                await self._tell_given_up(msg)
                continue
            try:
                inbound = decode(msg.data, InboundMessage, headers)
            except DecodeFailure as exc:
                await ctx.dead_letter(msg.subject, str(exc), msg.data, headers)
                await msg.term()
                continue
            inbound = _mark_command(inbound)
            try:
                route = route_message(config, inbound)
            except ClawmeshError as exc:  # AgentSelectionRequired, an unknown agent
                await self._reject(msg, inbound, exc)
                continue
            except Exception as exc:  # a bug or an input nobody foresaw: never the whole router
                log.exception("router: could not route message %s; it is tried again", inbound.id)
                await self._retry_later(msg, exc)
                continue
            region = self.failover.region_for(config, route)
            if region is not None:
                where = await self.failover.where(route.session_key, seq)
                if where == "there":  # it acks the message when done, or sends it home
                    await self._announce(_decided(inbound, route), inbound)
                    owe = functools.partial(self._owe_one, held)
                    index = held.partition.index if held is not None else 0
                    self.failover.serve(msg, inbound, route, region, owe=owe, partition=index)
                    continue
                if where == "hold":  # an earlier message of its session was sent home: after it
                    ctx.counters["inbound_held_back"] += 1
                    with best_effort(ctx.counters, "inbound_nak", log=log):
                        await msg.nak(delay=_OWED_RETRY)
                    continue
            routed.append(_Routed(msg, inbound, route, seq))
        if not routed:
            return True
        try:
            await self._number(routed)
            for r in routed:
                if r.inbound.metadata.get("command") == "stop":
                    await self._stop(r)
            await asyncio.gather(*(self._publish_turn(r, config.version) for r in routed))
        except Exception as exc:
            log.warning(
                "router: could not store %d routed message(s) (%s); handing them back", len(routed), exc
            )
            self.sequences.forget()
            await self._hand_back_batch([r.msg for r in routed], exc, held)
            return False
        for r in routed:
            await self._announce(_decided(r.inbound, r.route, r.seq), r.inbound)
            await r.msg.ack()
        ctx.counters["routed"] += len(routed)
        return True

    async def _number(self, routed: list[_Routed]) -> None:
        """Give each routed message its session's next number and store the session records
        (compare-and-set). A record another router (or another partition here) wrote since we
        read it is read again and the batch numbered again; messages already numbered keep
        their numbers (the records remember them)."""
        arrivals = [(r.route, r.inbound, r.inbound_seq) for r in routed]
        for _ in range(_NUMBERING_TRIES):
            seqs, touched = await self.sequences.assign(arrivals)
            results = await asyncio.gather(
                *(self.store.put_session(rec, rev) for rec, rev in touched.values()), return_exceptions=True
            )
            stored: dict[str, int] = {}
            conflicts: list[str] = []
            failure: BaseException | None = None
            for key, result in zip(touched, results, strict=True):
                if isinstance(result, KeyWrongLastSequenceError):
                    conflicts.append(key)
                elif isinstance(result, BaseException):
                    failure = result
                else:
                    stored[key] = result
            self.sequences.stored({k: touched[k] for k in stored}, list(stored.values()))
            if failure is not None:
                raise failure
            if not conflicts:
                for r, seq in zip(routed, seqs, strict=True):
                    r.seq = seq
                return
            self.ctx.counters["sequence_conflicts"] += len(conflicts)
            self.sequences.drop(conflicts)
        raise RuntimeError(f"session records kept changing under this router: {', '.join(conflicts[:3])}")

    async def _stop(self, r: _Routed) -> None:
        """`/stop` (or an abort word): stop the session's running turn and every sub-agent run it
        spawned, before its turn is published; the turn then only says so (the runner answers it
        without a model: `command` in its metadata)."""
        ctx = self.ctx
        stopped = await stop_session(
            ctx.sessions, ctx.nc.publish, ctx.subjects.stop, r.route.session_key, reason="/stop"
        )
        r.inbound = msgspec.structs.replace(
            r.inbound,
            metadata={**r.inbound.metadata, "stoppedSubagents": str(len(stopped) - 1)},
        )
        ctx.counters["stops"] += 1

    async def _hand_back_batch(self, msgs: list[Msg], exc: Exception, held: _Held | None) -> None:
        """Hold the line, then hand the batch back with no delay: a message handed back with a
        delay would let a later message of its session be routed (and numbered) first.
        Redelivered messages are served before new ones, in the order they were handed back;
        until each is back, nothing newer of the partition is routed (`_not_ahead_of_owed`)."""
        tries = max((m.metadata.num_delivered or 1) for m in msgs)
        await wait_for_stop(self._stopping, min(0.5 * 2 ** (tries - 1), 5.0))
        self._owe(held, msgs)
        for m in msgs:
            await self._retry_later(m, exc, delay=0)

    def _owe_one(self, held: _Held | None, msg: Msg) -> None:
        self._owe(held, [msg])

    def _owe(self, held: _Held | None, msgs: list[Msg]) -> None:
        if held is None:
            return
        # by then JetStream has redelivered it even if the hand-back (a plain publish) was lost
        until = time.monotonic() + self.lease_seconds + 1.0
        for m in msgs:
            held.owed[m.metadata.sequence.stream] = until

    async def _mark_orphans(self, held: _Held) -> None:
        """After the orphan wait: messages still out with the previous holder (a holder frozen
        or cut off by a partition keeps them pending, and a consumer leader that moved restarts
        their ack wait, so their redelivery can come after newer messages) must be routed
        before anything delivered after them. Remember the last sequence delivered so far."""
        try:
            info = await held.psub.consumer_info()
        except Exception as exc:  # the server is away: the pull loop's own retries cover it
            log.warning("router: partition %d: could not read the consumer (%s)", held.partition.index, exc)
            return
        if info.num_ack_pending and info.delivered is not None and info.delivered.stream_seq:
            held.floor = info.delivered.stream_seq
            held.orphans = info.num_ack_pending
            held.floor_until = time.monotonic() + 3 * (self.lease_seconds + 1.0)
            log.info(
                "router: partition %d: %d message(s) still out with the previous holder; nothing after "
                "stream sequence %d is routed before them",
                held.partition.index,
                info.num_ack_pending,
                held.floor,
            )

    async def _not_ahead_of_orphans(self, held: _Held, msgs: list[Msg]) -> list[Msg]:
        """The messages of a batch that may be routed while the previous holder's orphans are
        out: all of them once every orphan came to this router (a batch of them that fails is
        owed, below) or the consumer's ack floor has passed `held.floor` (the old holder acked
        them after all), else those up to it; the newer ones are handed back, untried, and owed.
        Bounded: past `floor_until` it goes on, warning."""
        older = {m.metadata.sequence.stream for m in msgs if m.metadata.sequence.stream <= held.floor}
        held.orphans_seen |= older
        if len(older) == len(msgs):
            return msgs
        floor = 0
        if len(held.orphans_seen) < held.orphans:
            with best_effort(self.ctx.counters, "consumer_info", log=log):
                info = await held.psub.consumer_info()
                floor = info.ack_floor.stream_seq if info.ack_floor and info.ack_floor.stream_seq else 0
        if (
            len(held.orphans_seen) >= held.orphans
            or floor >= held.floor
            or time.monotonic() > held.floor_until
        ):
            if floor < held.floor and len(held.orphans_seen) < held.orphans:
                log.warning(
                    "router: partition %d: messages up to %d still not acked; going on",
                    held.partition.index,
                    held.floor,
                )
            held.floor = 0
            held.orphans_seen.clear()
            return msgs
        later = [m for m in msgs if m.metadata.sequence.stream > held.floor]
        self.ctx.counters["inbound_held_back"] += len(later)
        self._owe(held, later)
        for m in later:
            with best_effort(self.ctx.counters, "inbound_nak", log=log):
                await m.nak(delay=_OWED_RETRY)
        return [m for m in msgs if m.metadata.sequence.stream <= held.floor]

    async def _not_ahead_of_owed(self, held: _Held, msgs: list[Msg]) -> list[Msg]:
        """The messages of a batch (in stream order) that may be routed while some this router
        handed back have not come back: those older than the oldest of them. The newer ones are
        handed back again, untried. A hand-back (nak) is a plain publish; one lost while the
        consumer's leader moves leaves its message pending until the ack wait while newer ones
        are delivered, and routing those would number them first (a 240 s chaos run with 8
        partitions did). Waiting is bounded: a message owed past its ack wait is given up on."""
        owed = held.owed
        for m in msgs:
            owed.pop(m.metadata.sequence.stream, None)
        now = time.monotonic()
        for seq, until in list(owed.items()):
            if until < now:
                del owed[seq]
                log.warning(
                    "router: handed-back message %d of partition %d did not come back; going on",
                    seq,
                    held.partition.index,
                )
        if not owed:
            return msgs
        oldest = min(owed)
        later = [m for m in msgs if m.metadata.sequence.stream > oldest]
        if later:
            self.ctx.counters["inbound_held_back"] += len(later)
            self._owe(held, later)
            for m in later:
                with best_effort(self.ctx.counters, "inbound_nak", log=log):
                    await m.nak(delay=_OWED_RETRY)
        return [m for m in msgs if m.metadata.sequence.stream < oldest]

    async def _retry_later(self, msg: Msg, exc: Exception, *, delay: float | None = None) -> None:
        """Hand `msg` back (by default with a growing delay); it is dead-lettered with `exc` as
        the reason once it has been tried `runtime.maxDeliveries` times."""
        if len(self._failures) >= 1000:  # bounded: the oldest reason is the least likely needed
            self._failures.pop(next(iter(self._failures)))
        self._failures[msg.metadata.sequence.stream] = f"{type(exc).__name__}: {exc}"[:500]
        if delay is None:
            delay = min(0.5 * 2 ** ((msg.metadata.num_delivered or 1) - 1), 30.0)
        # without the nak it is redelivered anyway, after the ack wait
        with best_effort(self.ctx.counters, "inbound_nak", log=log):
            await msg.nak(delay=delay)

    async def _publish_turn(self, r: _Routed, config_version: str) -> None:
        route = r.route
        turn = TurnRequest(
            turn_id=r.inbound.id,
            seq=r.seq,
            route=RouteInfo(
                agent_id=route.agent_id,
                session_key=route.session_key,
                main_session_key=route.main_session_key,
                matched_by=route.matched_by,
                channel=route.channel,
                account_id=route.account_id,
                dm_scope=route.dm_scope,
                group_scope=route.group_scope,
                last_route_policy=route.last_route_policy,
            ),
            inbound=r.inbound,
            inbound_seq=r.inbound_seq,
            config_version=config_version,
            routed_at=now(),
        )
        data, hdrs = encode_msgpack(turn)
        hdrs["Nats-Msg-Id"] = f"turn:{r.inbound.id}"
        subject = self.ctx.subjects.turn(route.agent_id)
        # continue the caller's trace: consume the inbound message, produce the turn
        with (
            consumer_span("cm.in", r.msg.subject, r.msg.headers, **{"clawmesh.turn_id": r.inbound.id}),
            producer_span("cm.turn", subject, hdrs),
        ):
            await self.ctx.publish(subject, data, hdrs)

    async def _reject(self, msg: Msg, inbound: InboundMessage, exc: ClawmeshError) -> None:
        """Routing failed: tell the caller, keep the message in the dead-letter stream. Never a
        silent fallback to some other agent."""
        ctx = self.ctx
        ctx.counters["route_errors"] += 1
        await ctx.dead_letter(
            msg.subject, f"{exc.message} {exc.hint}".strip(), msg.data, msg.headers, code=exc.code
        )
        decision = RouteDecision(
            turn_id=inbound.id,
            channel=inbound.channel,
            account_id=inbound.account_id,
            error_code=exc.code,
            error_message=exc.message,
            error_hint=exc.hint,
        )
        await self._announce(decision, inbound)
        # the caller was told; a poller of GET /v1/turns/<id> sees "unknown" without it
        with best_effort(ctx.counters, "turn_status_write", log=log):
            await self.store.put_turn_status(
                inbound.id,
                TurnStatus(
                    state="error", error_code=exc.code, error_message=f"{exc.message} {exc.hint}".strip()
                ),
            )
        await msg.ack()

    async def _tell_given_up(self, msg: Msg) -> None:
        """A message dead-lettered after its last try (`give_up`): its caller and a poller of
        its turn are told, instead of waiting for a turn that will never come."""
        ctx = self.ctx
        with best_effort(ctx.counters, "given_up_notice", log=log):
            inbound = decode(msg.data, InboundMessage, msg.headers)
            message = f"the message could not be routed in {self.tries} tries"
            hint = "send it again, or ask the operator to look at the dead-letter stream"
            decision = RouteDecision(
                turn_id=inbound.id,
                channel=inbound.channel,
                account_id=inbound.account_id,
                error_code="DELIVERY_LIMIT",
                error_message=message,
                error_hint=hint,
            )
            await self._announce(decision, inbound)
            await self.store.put_turn_status(
                inbound.id,
                TurnStatus(state="error", error_code="DELIVERY_LIMIT", error_message=f"{message}; {hint}"),
            )

    async def _announce(self, decision: RouteDecision, inbound: InboundMessage) -> None:
        data, hdrs = encode_json(decision)
        hdrs = inject(hdrs)
        await self.ctx.nc.publish(self.ctx.subjects.route_decided, data, headers=hdrs)
        if inbound.reply_subject:
            await self.ctx.nc.publish(inbound.reply_subject, data, headers=hdrs)
