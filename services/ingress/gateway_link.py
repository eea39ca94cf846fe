"""This gateway's face to the other regions of its federation (docs/federation.md).

- Remote turns: a request on `<prefix>.gw.<our region>.turn.<agent>` becomes an ordinary
  inbound message for that agent (channel `gateway`, account = the calling region) in a session
  of its own per calling session; its events stream back to the caller's inbox.
  Only agents in `gateway.federation.exposeAgents`, only for regions in `allowGateways`.
- Catalogue: every `catalogSeconds` this gateway broadcasts its agents and nodes on
  `<prefix>.gwcast.<region>.catalog`; what the other regions broadcast is kept in the
  `gateways` KV bucket (`clawmesh agents list --all-gateways` reads it).

Nothing here runs when `gateway.region` is unset.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

import msgspec
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js.kv import KeyValue

from clawmesh.bus import ServiceContext
from clawmesh.federation import (
    FIRST_ALIVE_SECONDS,
    Catalogue,
    CatalogueAgent,
    CatalogueNode,
    RemoteAlive,
    RemoteDelta,
    RemoteError,
    RemoteFinal,
    RemoteStop,
    RemoteTurn,
    broadcast_subject,
    gateway_subject,
    remote_session_key,
)
from clawmesh.nodes import NodeDirectory
from clawmesh.sessions import TurnStatus, stop_session
from clawmesh.tools.a2a import a2a_refusal
from clawmesh.wire import InboundMessage, Peer, TextDeltaEvent, TurnError, TurnFinal, decode_token, now

from .turns import PendingTurn, TurnClient, Unavailable, turn_id_for

__all__ = ["GatewayLink"]

log = logging.getLogger("clawmesh.ingress.gateway")

_MAX_IN_FLIGHT = 256  # remote turns served at once by one ingress instance
_DUPLICATE_POLL_SECONDS = 2.0  # how often a repeated request looks for its turn's outcome


def _allowed(value: str, allow: tuple[str, ...]) -> bool:
    return "*" in allow or value in allow


def _kept_outcome(
    status: TurnStatus | None, region: str, session_key: str
) -> RemoteFinal | RemoteError | None:
    """What a finished turn's status says its caller was answered; None while it has none."""
    if status is None:
        return None
    if status.state == "done":
        return RemoteFinal(text=status.text, gateway=region, session_key=session_key)
    if status.state == "error":
        return RemoteError(code=status.error_code or "TURN_FAILED", message=status.error_message or "")
    return None


class GatewayLink:
    def __init__(
        self,
        ctx: ServiceContext,
        turns: TurnClient,
        *,
        leaf_status: Callable[[], dict[str, Any]] | None = None,
    ) -> None:
        self.ctx = ctx
        self._leaf_status = leaf_status
        self.turns = turns
        self._subs: list[Subscription] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(_MAX_IN_FLIGHT)
        self._catalogue_task: asyncio.Task[None] | None = None
        self._kv: KeyValue | None = None
        self.region: str | None = None

    async def start(self) -> None:
        region = self.ctx.holder.current.settings.gateway.region
        if region is None:
            return
        self.region = region
        nc, prefix = self.ctx.nc, self.ctx.subjects.prefix
        self._subs.append(
            await nc.subscribe(gateway_subject(prefix, region, "turn.*"), queue="ingress", cb=self._on_turn)
        )
        self._subs.append(
            await nc.subscribe(gateway_subject(prefix, region, "stop.*"), queue="ingress", cb=self._on_stop)
        )
        self._subs.append(
            await nc.subscribe(broadcast_subject(prefix, "*", "catalog"), cb=self._on_catalogue)
        )
        self._kv = self.ctx.kv["gateways"]
        self._catalogue_task = asyncio.create_task(self._broadcast_forever(region))

    async def stop(self) -> None:
        for sub in self._subs:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        self._subs.clear()
        if self._catalogue_task:
            self._catalogue_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._catalogue_task
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=10)

    def status(self) -> dict[str, Any]:
        if not self.region:
            return {}
        out: dict[str, Any] = {"region": self.region, "remoteTurns": len(self._tasks)}
        if self._leaf_status is not None:
            out["link"] = self._leaf_status()
        return out

    # remote turns -----------------------------------------------------------------------------
    async def _on_turn(self, msg: Msg) -> None:
        # one callback at a time per subscription: serve each turn in a task of its own
        if not msg.reply:
            self.ctx.counters["remote_without_reply"] += 1
            return
        await self._slots.acquire()
        task = asyncio.create_task(self._serve(msg))
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._slots.release()
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.warning("remote turn failed: %s: %s", type(exc).__name__, exc)

    async def _send(self, reply: str, event: RemoteDelta | RemoteFinal | RemoteError | RemoteAlive) -> None:
        await self.ctx.nc.publish(reply, msgspec.json.encode(event))

    async def _refuse(
        self, reply: str, code: str, message: str, *, hint: str = "", failover: bool = False
    ) -> None:
        self.ctx.counters["remote_refused"] += 1
        await self._send(reply, RemoteError(code=code, message=message, hint=hint, failover=failover))

    async def _serve(self, msg: Msg) -> None:
        reply = msg.reply
        try:
            req = msgspec.json.decode(msg.data, type=RemoteTurn)
        except msgspec.DecodeError as exc:
            return await self._refuse(reply, "BAD_REQUEST", f"remote turn: {exc}")
        try:
            subject_agent = decode_token(msg.subject.rsplit(".", 1)[-1])
        except ValueError:
            subject_agent = None
        if subject_agent != req.agent_id:
            return await self._refuse(reply, "BAD_REQUEST", "remote turn: agentId does not match the subject")
        config = self.ctx.holder.current
        gw = config.settings.gateway
        if not _allowed(req.from_gateway, gw.allow_gateways):
            return await self._refuse(
                reply,
                "GATEWAY_NOT_ALLOWED",
                f"gateway {self.region!r} does not serve region {req.from_gateway!r}",
                hint=f"add it to gateway.federation.allowGateways on {self.region}",
            )
        if config.agent(req.agent_id) is None or not _allowed(req.agent_id, gw.expose_agents):
            # the same answer for "unknown" and "not exposed": nothing is disclosed
            return await self._refuse(
                reply,
                "AGENT_NOT_EXPOSED",
                f"gateway {self.region!r} offers no agent {req.agent_id!r} to other regions",
                hint=f"list it in gateway.federation.exposeAgents on {self.region}",
            )
        session_key = remote_session_key(req.agent_id, req.from_gateway, req.session)
        if req.from_agent:
            # agent-to-agent: this gateway's tools.agentToAgent decides who of another gateway
            # may reach its agents, the caller named `<agent>@<its gateway>` (as `*@eu` matches)
            caller = f"{req.from_agent}@{req.from_gateway}"
            why = a2a_refusal(config, caller, req.agent_id)
            if why is not None:
                return await self._refuse(
                    reply,
                    "A2A_FORBIDDEN",
                    f"gateway {self.region!r} refuses {caller} → {req.agent_id}: {why}",
                    hint=f"allow {caller} (or *@{req.from_gateway}) in tools.agentToAgent.allow on {self.region}",
                )
        if req.probe:
            return await self._send(
                reply, RemoteFinal(text="", gateway=self.region or "", session_key=session_key)
            )
        self.ctx.counters["remote_turns"] += 1
        metadata = {"gateway": req.from_gateway}
        if req.from_agent:
            metadata.update(fromAgent=req.from_agent, kind=req.kind)
        inbound = InboundMessage(
            id=turn_id_for("gateway", req.from_gateway, req.turn_id),
            channel="gateway",
            account_id=req.from_gateway,
            peer=Peer(kind="direct", id=req.from_gateway),
            text=req.text,
            agent_id=req.agent_id,
            session_key=session_key,
            received_at=now(),
            reply_subject=self.turns.reply_subject,
            reply_events="all" if req.stream else "final",
            metadata=metadata,
        )
        alive = asyncio.create_task(self._keep_alive(reply, req.keepalive)) if req.keepalive else None
        try:
            await self._run(reply, inbound, again=req.again)
        finally:
            if alive is not None:
                alive.cancel()

    async def _keep_alive(self, reply: str, every: float) -> None:
        # the first one soon (a turn answered sooner needs none): the caller hears that this
        # region took the turn before it would look up this region's catalogue, which may lag
        # (the caller's ingress down, a lost broadcast)
        pause = min(every, FIRST_ALIVE_SECONDS)
        while True:
            await asyncio.sleep(pause)
            with contextlib.suppress(Exception):  # the caller's idle timeout covers a lost one
                await self._send(reply, RemoteAlive())
            pause = every

    async def _run(self, reply: str, inbound: InboundMessage, *, again: bool = False) -> None:
        if again and await self._answer_kept(reply, inbound):
            return
        try:
            pending = await self.turns.submit(inbound, f"in:{inbound.id}")
        except Unavailable as exc:
            return await self._refuse(reply, "UNAVAILABLE", str(exc), failover=True)
        with contextlib.closing(pending):
            if pending.duplicate:
                # the caller asked again (its runner died mid-turn and the turn was redelivered):
                # the turn runs or ran once already; its outcome is what this caller gets
                return await self._outcome_of(reply, pending, inbound)
            decision = await pending.decision(self.turns.route_wait())
            if decision is not None and not decision.ok:
                return await self._refuse(
                    reply,
                    decision.error_code or "ROUTE_FAILED",
                    decision.error_message or "",
                    hint=decision.error_hint or "",
                )
            try:
                async for event in pending.events(self.turns.turn_timeout()):
                    if isinstance(event, TextDeltaEvent):
                        await self._send(reply, RemoteDelta(text=event.text))
                    elif isinstance(event, TurnFinal):
                        await self._send(
                            reply,
                            RemoteFinal(
                                text=event.text,
                                gateway=self.region or "",
                                session_key=inbound.session_key or "",
                                model=event.model,
                            ),
                        )
                    elif isinstance(event, TurnError):
                        await self._send(
                            reply, RemoteError(code=event.code, message=event.message, hint=event.hint)
                        )
            except TimeoutError:
                await self._refuse(
                    reply, "TIMEOUT", f"the turn on {self.region!r} went quiet", failover=False
                )

    async def _answer_kept(self, reply: str, inbound: InboundMessage) -> bool:
        """A turn asked for again: answer with the outcome this gateway kept for it, if it has
        one. Its turn status lives a day: one read, where a repeat submitted past the inbound
        stream's dedupe window (two minutes) is stored again and goes through router and runner
        to be answered from the session's record (only while the turn is among the record's
        context and the router's recent turn ids)."""
        try:
            status = await self.ctx.sessions.get_turn_status(inbound.id)
        except Exception as exc:  # not known: submitted again, which answers it as well
            log.warning("remote turn %s: its status could not be read: %r", inbound.id, exc)
            return False
        outcome = _kept_outcome(status, self.region or "", inbound.session_key or "")
        if outcome is None:
            return False
        self.ctx.counters["remote_turns_answered_again"] += 1
        await self._send(reply, outcome)
        return True

    async def _outcome_of(self, reply: str, pending: PendingTurn, inbound: InboundMessage) -> None:
        """A turn submitted before: its final text (or error) once the turn store has it, or
        from its events when they reach this instance; polled every few seconds until then."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.turns.turn_timeout()
        while loop.time() < deadline:
            status = await self.ctx.sessions.get_turn_status(inbound.id)
            outcome = _kept_outcome(status, self.region or "", inbound.session_key or "")
            if outcome is None:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(_DUPLICATE_POLL_SECONDS):
                        async for event in pending.events(None):
                            if isinstance(event, TurnFinal):
                                outcome = RemoteFinal(text=event.text, model=event.model)
                            elif isinstance(event, TurnError):
                                outcome = RemoteError(code=event.code, message=event.message)
            if isinstance(outcome, RemoteFinal):
                outcome.gateway, outcome.session_key = self.region or "", inbound.session_key or ""
            if outcome is not None:
                return await self._send(reply, outcome)
        await self._refuse(reply, "TIMEOUT", f"the turn on {self.region!r} went quiet", failover=False)

    async def _on_stop(self, msg: Msg) -> None:
        """The caller stopped its side of a remote turn: stop the session's running turn here,
        as `/stop` would (a sub-agent run it spawned too). Only what the caller may reach."""
        try:
            req = msgspec.json.decode(msg.data, type=RemoteStop)
            subject_agent = decode_token(msg.subject.rsplit(".", 1)[-1])
        except (msgspec.DecodeError, ValueError):
            self.ctx.counters["bad_remote_stop"] += 1
            return
        gw = self.ctx.holder.current.settings.gateway
        if subject_agent != req.agent_id or not _allowed(req.from_gateway, gw.allow_gateways):
            return
        if not _allowed(req.agent_id, gw.expose_agents):
            return
        key = remote_session_key(req.agent_id, req.from_gateway, req.session)
        self.ctx.counters["remote_stops"] += 1
        with contextlib.suppress(Exception):  # a lost stop leaves the turn to finish on its own
            await stop_session(
                self.ctx.sessions,
                self.ctx.nc.publish,
                self.ctx.subjects.stop,
                key,
                reason=req.reason or f"stopped by gateway {req.from_gateway}",
            )

    # catalogue --------------------------------------------------------------------------------
    async def catalogue(self) -> Catalogue:
        config = self.ctx.holder.current
        expose = config.settings.gateway.expose_agents
        expose_nodes = config.settings.gateway.expose_nodes
        agents = [
            CatalogueAgent(
                id=a.id, name=a.name or "", runner_type=a.runner_type, exposed=_allowed(a.id, expose)
            )
            for a in config.agents
        ]
        nodes: list[CatalogueNode] = []
        with contextlib.suppress(Exception):  # presence is best effort: the agents still go out
            directory = NodeDirectory(
                self.ctx.presence, offline_after_missed=config.settings.nodes.offline_after_missed
            )
            for st in await directory.statuses(fresh=True):
                nodes.append(
                    CatalogueNode(
                        id=st.node.node_id,
                        online=st.online,
                        labels=dict(st.node.labels),
                        capabilities=list(st.node.capabilities),
                        exposed=_allowed(st.node.node_id, expose_nodes),
                    )
                )
        return Catalogue(
            region=self.region or "",
            agents=agents,
            nodes=nodes,
            ts=time.time(),
            every=config.settings.gateway.catalog_seconds,
        )

    async def _broadcast_forever(self, region: str) -> None:
        subject = broadcast_subject(self.ctx.subjects.prefix, region, "catalog")
        while True:
            try:
                await self.ctx.nc.publish(subject, msgspec.json.encode(await self.catalogue()))
            except Exception as exc:  # a broken link must not end the loop
                log.warning("catalogue broadcast failed: %s", exc)
            await asyncio.sleep(self.ctx.holder.current.settings.gateway.catalog_seconds)

    async def _on_catalogue(self, msg: Msg) -> None:
        try:
            cat = msgspec.json.decode(msg.data, type=Catalogue)
        except msgspec.DecodeError:
            self.ctx.counters["bad_catalogue"] += 1
            return
        sender = msg.subject.split(".")[-2]
        if cat.region != sender or sender == self.region or self._kv is None:
            return  # a region speaks only for itself (the hub's permissions say so too)
        # stamped with this region's clock: how long a region has been silent is judged by it
        stamped = msgspec.structs.replace(cat, received=time.time())
        with contextlib.suppress(Exception):
            await self._kv.put(sender, msgspec.json.encode(stamped))
