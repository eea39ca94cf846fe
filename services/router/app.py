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
import uuid
from typing import Any, ClassVar

from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeout
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import KeyWrongLastSequenceError

from clawmesh.bus import ServiceContext, consumer_span, inject
from clawmesh.config import Config
from clawmesh.routing import AgentSelectionRequired, Route, build_agent_session_key, resolve_route
from clawmesh.sessions import SessionRecord, SessionStore, TurnStatus
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

__all__ = ["Router"]

log = logging.getLogger("clawmesh.router")

LEADER_KEY = "leader.router"
DURABLE = "router"
BATCH = 64


class RoutingError(Exception):
    def __init__(self, code: str, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.code, self.message, self.hint = code, message, hint


def route_message(config: Config, msg: InboundMessage) -> Route:
    """The routing decision for one inbound message (bindings, or the explicitly chosen agent)."""
    peer = {"kind": msg.peer.kind, "id": msg.peer.id} if msg.peer else None
    if msg.agent_id:
        agent = config.agent(msg.agent_id)
        if agent is None and config.has_roster:
            raise RoutingError(
                "UNKNOWN_AGENT",
                f"agent '{msg.agent_id}' is not configured",
                f"configured: {', '.join(config.agent_ids)}",
            )
        agent_id = agent.id if agent else msg.agent_id
        session = config.session
        dm = session.dm_scope or "main"
        gs = session.group_scope or "per-group"
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
    name: ClassVar[str] = "router"

    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx
        self.store = SessionStore(ctx.js, ctx.subjects, ctx.kv["sessions"], ctx.kv.get("turns"))
        self.leases = ctx.kv["leases"]
        self.lease_seconds = ctx.layout.lease_seconds
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._leader = False
        self._seq_cache: dict[str, tuple[SessionRecord, int]] = {}

    # --- lifecycle ----------------------------------------------------------------------
    async def start(self) -> None:
        js = self.ctx.js
        stream = self.ctx.subjects.stream("INBOUND")
        self._psub = await js.pull_subscribe(
            self.ctx.subjects.inbound_all,
            durable=DURABLE,
            stream=stream,
            config=ConsumerConfig(
                durable_name=DURABLE,
                ack_policy=AckPolicy.EXPLICIT,
                deliver_policy=DeliverPolicy.ALL,
                ack_wait=self.lease_seconds,
                max_deliver=-1,
                max_ack_pending=10_000,
            ),
        )
        self._task = asyncio.create_task(self._lead_forever(), name="router-leader")

    async def stop(self, timeout: float) -> None:
        self._stopping.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(self._task, timeout)
        if self._leader:
            with contextlib.suppress(Exception):
                await self.leases.delete(LEADER_KEY)  # hand over at once, not after the TTL
        # A pull subscription can hold fetched-but-unread messages that would block the
        # connection's drain; they are redelivered to the next leader anyway.
        with contextlib.suppress(Exception):
            await self._psub.unsubscribe()

    def status(self) -> dict[str, Any]:
        return {"leader": self._leader, "config_version": self.ctx.holder.current.version}

    # --- leadership ---------------------------------------------------------------------
    async def _lead_forever(self) -> None:
        while not self._stopping.is_set():
            try:
                revision = await self.leases.create(LEADER_KEY, self.ctx.instance.encode())
            except KeyWrongLastSequenceError:
                await self._wait(self.lease_seconds / 3)
                continue
            except Exception as exc:
                log.warning("router: leader election failed (%s); retrying", exc)
                await self._wait(1.0)
                continue
            self._leader = True
            self._seq_cache.clear()  # another leader may have assigned sequences meanwhile
            log.info("router %s is the leader", self.ctx.instance)
            keeper = asyncio.create_task(self._keep_lease(revision))
            try:
                await self._consume(keeper)
            finally:
                keeper.cancel()
                self._leader = False

    async def _keep_lease(self, revision: int) -> None:
        while True:
            await asyncio.sleep(self.lease_seconds / 3)
            try:
                revision = await self.leases.update(LEADER_KEY, self.ctx.instance.encode(), last=revision)
            except Exception as exc:
                log.error("router: lost the leader lease (%s)", exc)
                return

    async def _wait(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    async def _consume(self, keeper: asyncio.Task[None]) -> None:
        while not self._stopping.is_set() and not keeper.done():
            try:
                msgs = await self._psub.fetch(BATCH, timeout=0.5)
            except (NatsTimeout, TimeoutError):
                continue
            except Exception as exc:
                log.warning("router: fetch failed: %s", exc)
                await self._wait(0.5)
                continue
            for i, msg in enumerate(msgs):
                if not await self._handle(msg):
                    # Publishing failed: keep order by handing this and the rest back.
                    for rest in msgs[i:]:
                        with contextlib.suppress(Exception):
                            await rest.nak(delay=0.5)
                    await self._wait(0.5)
                    break

    # --- one message --------------------------------------------------------------------
    async def _handle(self, msg: Msg) -> bool:
        """Route one message. False means 'could not publish; retry later'."""
        ctx = self.ctx
        headers = msg.headers or {}
        try:
            inbound = decode(msg.data, InboundMessage, headers)
        except DecodeFailure as exc:
            await ctx.dead_letter(msg.subject, str(exc), msg.data, headers)
            await msg.term()
            return True
        with consumer_span("cm.in", msg.subject, headers, **{"clawmesh.turn_id": inbound.id}):
            config = ctx.holder.current
            try:
                route = route_message(config, inbound)
            except AgentSelectionRequired as exc:
                await self._reject(msg, inbound, RoutingError(exc.code, exc.message, exc.hint))
                return True
            except RoutingError as exc:
                await self._reject(msg, inbound, exc)
                return True
            try:
                seq = await self._assign_seq(route, inbound, msg.metadata.sequence.stream)
                turn = TurnRequest(
                    turn_id=inbound.id,
                    seq=seq,
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
                    inbound=inbound,
                    inbound_seq=msg.metadata.sequence.stream,
                    config_version=config.version,
                    routed_at=now(),
                )
                data, hdrs = encode_msgpack(turn)
                hdrs["Nats-Msg-Id"] = f"turn:{inbound.id}"
                await ctx.js.publish(ctx.subjects.turn(route.agent_id), data, headers=inject(hdrs))
            except Exception as exc:
                log.warning("router: could not publish turn %s: %s", inbound.id, exc)
                self._seq_cache.pop(route.session_key, None)
                return False
            decision = RouteDecision(
                turn_id=inbound.id,
                channel=route.channel,
                account_id=route.account_id,
                agent_id=route.agent_id,
                session_key=route.session_key,
                matched_by=route.matched_by,
                seq=seq,
            )
            await self._announce(decision, inbound)
            ctx.counters["routed"] += 1
            await msg.ack()
            return True

    async def _reject(self, msg: Msg, inbound: InboundMessage, exc: RoutingError) -> None:
        """Routing failed: tell the caller, keep the message in the dead-letter stream. Never a
        silent fallback to some other agent."""
        ctx = self.ctx
        ctx.counters["route_errors"] += 1
        await ctx.dead_letter(
            msg.subject, f"{exc.code}: {exc.message} {exc.hint}".strip(), msg.data, msg.headers
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
        with contextlib.suppress(Exception):
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

    async def _assign_seq(self, route: Route, inbound: InboundMessage, inbound_seq: int) -> int:
        """Next per-session sequence number, stored with compare-and-set. A redelivered message
        (same CM_INBOUND sequence) gets the number it was given before."""
        for _ in range(5):
            cached = self._seq_cache.get(route.session_key)
            if cached is None:
                found = await self.store.get_session(route.session_key)
                cached = found if found is not None else None
            if cached is not None:
                record, revision = cached
                if record.inbound_seq == inbound_seq:
                    return record.seq
                if record.inbound_seq > inbound_seq:
                    log.warning(
                        "router: message %s of %s arrived after a newer one", inbound_seq, route.session_key
                    )
                fresh = SessionRecord(
                    session_key=route.session_key,
                    agent_id=route.agent_id,
                    session_id=record.session_id,
                    seq=record.seq + 1,
                    inbound_seq=inbound_seq,
                    channel=route.channel,
                    account_id=route.account_id,
                    peer=inbound.peer,
                    created_at=record.created_at,
                )
                last: int | None = revision
            else:
                fresh = SessionRecord(
                    session_key=route.session_key,
                    agent_id=route.agent_id,
                    session_id=str(uuid.uuid4()),
                    seq=1,
                    inbound_seq=inbound_seq,
                    channel=route.channel,
                    account_id=route.account_id,
                    peer=inbound.peer,
                )
                last = None
            try:
                new_revision = await self.store.put_session(fresh, last)
            except KeyWrongLastSequenceError:
                self._seq_cache.pop(route.session_key, None)
                continue
            self._seq_cache[route.session_key] = (fresh, new_revision)
            if len(self._seq_cache) > 50_000:
                self._seq_cache.pop(next(iter(self._seq_cache)))
            return fresh.seq
        raise RuntimeError(f"could not assign a sequence number for {route.session_key}")
