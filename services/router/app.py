"""router: CM_INBOUND → resolve_route → CM_TURNS, one decision event per message.

Ordering. Turns of one session must run in arrival order, and a session can span channels
(dmScope `main`), so order is decided here, in CM_INBOUND order: the router stamps each turn
with a per-session sequence number that the runners obey. Two routers consuming in parallel
could reorder two messages of one session, so replicas elect a leader through a KV lease and
only the leader consumes (standbys take over when its lease expires); a decision costs a few
microseconds, so one active router is far from a bottleneck.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Any, ClassVar

from nats.aio.msg import Msg

from clawmesh.bus import (
    Lease,
    ServiceContext,
    consumer_span,
    inject,
    producer_span,
    pull_forever,
    wait_for_stop,
)
from clawmesh.config import Config
from clawmesh.errors import ClawmeshError, best_effort
from clawmesh.routing import (
    Route,
    build_agent_session_key,
    normalize_agent_id,
    normalize_chat_type,
    parse_agent_session_key,
    resolve_route,
)
from clawmesh.sessions import TurnStatus
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

from .sequences import Sequences

__all__ = ["Router"]

log = logging.getLogger("clawmesh.router")

LEADER_KEY = "leader.router"
DURABLE = "router"
BATCH = 256


@dataclass
class _Routed:
    msg: Msg
    inbound: InboundMessage
    route: Route
    inbound_seq: int
    seq: int = 0


def route_message(config: Config, msg: InboundMessage) -> Route:
    """The routing decision for one inbound message (bindings, or the explicitly chosen agent)."""
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
        self._leader = False
        self.sequences = Sequences(self.store)
        # runtime.maxDeliveries when the consumer was made: JetStream's bound is set from it
        self.tries = ctx.holder.current.settings.runtime.max_deliveries
        self._failures: dict[int, str] = {}  # stream sequence → why its last try failed here

    # --- lifecycle ----------------------------------------------------------------------
    async def start(self) -> None:
        subjects = self.ctx.subjects
        self._psub = await self.ctx.pull_consumer(
            subjects.inbound_all,
            subjects.stream("INBOUND"),
            DURABLE,
            max_ack_pending=10_000,
            tries=self.tries,
        )
        self._task = asyncio.create_task(self._lead_forever(), name="router-leader")

    async def stop(self, timeout: float) -> None:
        self._stopping.set()
        counters = self.ctx.counters
        if self._task is not None:
            # A leader loop that was cancelled already has ended.
            with contextlib.suppress(asyncio.CancelledError), best_effort(counters, "leader_stop", log=log):
                await asyncio.wait_for(self._task, timeout)
        # A pull subscription can hold fetched-but-unread messages that would block the
        # connection's drain; they are redelivered to the next leader anyway.
        with best_effort(counters, "consumer_unsubscribe", log=log):
            await self._psub.unsubscribe()

    def status(self) -> dict[str, Any]:
        return {"leader": self._leader, "config_version": self.ctx.holder.current.version}

    # --- leadership ---------------------------------------------------------------------
    async def _lead_forever(self) -> None:
        while not self._stopping.is_set():
            try:
                lease = await self.leases.acquire(LEADER_KEY)
            except Exception as exc:
                log.warning("router: leader election failed (%s); retrying", exc)
                await wait_for_stop(self._stopping, 1.0)
                continue
            if lease is None:  # another router leads
                await wait_for_stop(self._stopping, self.lease_seconds / 3)
                continue
            self._leader = True
            self.sequences.forget()  # another leader may have assigned sequences meanwhile
            log.info("router %s is the leader", self.ctx.instance)
            try:
                await self._lead(lease)
            finally:
                self._leader = False

    async def _lead(self, lease: Lease) -> None:
        """Consume while the lease is ours; when stopping, give it up at once, not after the TTL."""
        keeper = asyncio.create_task(self._keep_lease(lease))
        try:
            await pull_forever(
                self._psub,
                self._handle_batch,
                batch=BATCH,
                stop=self._stopping,
                name="router",
                active=lambda: not keeper.done(),
            )
        finally:
            lost = keeper.done()
            keeper.cancel()
            if not lost:
                # hand over at once; without the release a standby takes over after the TTL
                with best_effort(self.ctx.counters, "leader_release", log=log):
                    await lease.release()

    async def _keep_lease(self, lease: Lease) -> None:
        """Renew the leader lease until it is lost (any failure: a standby may lead by now)."""
        while True:
            await asyncio.sleep(self.lease_seconds / 3)
            try:
                await lease.renew()
            except Exception as exc:
                log.error("router: lost the leader lease (%s)", exc)
                return

    async def _handle_batch(self, msgs: list[Msg]) -> bool:
        """Route a fetched batch. Decisions and sequence numbers are made in CM_INBOUND order;
        the writes then go out concurrently (session records first, then turns), and the batch
        is acked only when all of them are stored. False: nothing was acked, all is handed back."""
        ctx = self.ctx
        config = ctx.holder.current
        routed: list[_Routed] = []
        for msg in msgs:
            headers = msg.headers or {}
            seq = msg.metadata.sequence.stream
            if await ctx.give_up(msg, self.tries, self._failures.pop(seq, None)):
                continue
            try:
                inbound = decode(msg.data, InboundMessage, headers)
            except DecodeFailure as exc:
                await ctx.dead_letter(msg.subject, str(exc), msg.data, headers)
                await msg.term()
                continue
            try:
                route = route_message(config, inbound)
            except ClawmeshError as exc:  # AgentSelectionRequired, an unknown agent
                await self._reject(msg, inbound, exc)
                continue
            except Exception as exc:  # a bug or an input nobody foresaw: never the whole router
                log.exception("router: could not route message %s; it is tried again", inbound.id)
                await self._retry_later(msg, exc)
                continue
            routed.append(_Routed(msg, inbound, route, seq))
        if not routed:
            return True
        try:
            seqs, touched = await self.sequences.assign([(r.route, r.inbound, r.inbound_seq) for r in routed])
            for r, seq in zip(routed, seqs, strict=True):
                r.seq = seq
            revisions = await asyncio.gather(
                *(self.store.put_session(rec, rev) for rec, rev in touched.values())
            )
            self.sequences.stored(touched, revisions)
            await asyncio.gather(*(self._publish_turn(r, config.version) for r in routed))
        except Exception as exc:
            log.warning(
                "router: could not store %d routed message(s) (%s); handing them back", len(routed), exc
            )
            self.sequences.forget()
            # Hold the line, then hand the batch back with no delay: a message handed back with
            # a delay would let a later message of its session be routed (and numbered) first.
            # Redelivered messages are served before new ones, in the order they were handed back.
            tries = max((r.msg.metadata.num_delivered or 1) for r in routed)
            await wait_for_stop(self._stopping, min(0.5 * 2 ** (tries - 1), 5.0))
            for r in routed:
                await self._retry_later(r.msg, exc, delay=0)
            return False
        for r in routed:
            decision = RouteDecision(
                turn_id=r.inbound.id,
                channel=r.route.channel,
                account_id=r.route.account_id,
                agent_id=r.route.agent_id,
                session_key=r.route.session_key,
                matched_by=r.route.matched_by,
                seq=r.seq,
            )
            await self._announce(decision, r.inbound)
            await r.msg.ack()
        ctx.counters["routed"] += len(routed)
        return True

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
            msg.subject, f"{exc.code}: {exc.message} {exc.hint}".strip(), msg.data, msg.headers, code=exc.code
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

    async def _announce(self, decision: RouteDecision, inbound: InboundMessage) -> None:
        data, hdrs = encode_json(decision)
        hdrs = inject(hdrs)
        await self.ctx.nc.publish(self.ctx.subjects.route_decided, data, headers=hdrs)
        if inbound.reply_subject:
            await self.ctx.nc.publish(inbound.reply_subject, data, headers=hdrs)
