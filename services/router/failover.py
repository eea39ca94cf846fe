"""Cross-region failover: a region with no live runner has the turns of the agents it allows to
run elsewhere served by another region of the federation (`gateway.federation.failover`).

The router is the one durable consumer a region keeps when its runners are gone, so it serves
such a message itself, as a remote turn of the same agent on the other region (a session of its
own there per session here: the one `runnerType: openclawx` with `openclawx.gateway` uses), and
keeps the message unacked — in progress — until the reply is stored in this region's
CM_OUTBOUND (`out:<turn id>`, where chat channels deliver it) and the caller and the turn status
are told (the caller first when the other region answered: it keeps that answer). A router
that dies meanwhile leaves the message to the next holder, which asks the other region again
with the same turn id: it answers with the turn it ran. Failover turns are not numbered in this
region's session nor written to its transcript: they live in the other region's session.

What users receive stays in each session's order:
- a session's messages are served there one after the other, and go on being served there
  while any of them is, so a runner that comes back never answers a later message before an
  earlier one's reply;
- a session with a turn still waiting for this region's runners (routed before the last one
  died) is not failed over: its next messages queue behind that turn here;
- when the other region cannot be reached either, the message stays in progress here and is
  tried again, with a growing pause, until it is served there, a runner of this region is back,
  or `runtime.maxDeliveries` tries have failed; then it is sent home: handed back to be routed
  here (queued for this region's runners, like every other turn of the region), and so are
  the session's messages that were waiting behind it, in their order — the router holds back
  any later message of the session until they are back.
"""

from __future__ import annotations

import asyncio
import fnmatch
import logging
import time
from collections.abc import Callable
from typing import Final, Literal, TypedDict

from nats.aio.msg import Msg
from nats.errors import NoRespondersError

from clawmesh.bus import ServiceContext, inject, kept_in_progress
from clawmesh.config import Config
from clawmesh.errors import best_effort
from clawmesh.federation import RemoteTurn, RemoteTurnFailed, region_silence, remote_turn
from clawmesh.routing import Route
from clawmesh.sessions import TurnStatus
from clawmesh.wire import (
    InboundMessage,
    OutboundMessage,
    TextDeltaEvent,
    TurnError,
    TurnEvent,
    TurnFinal,
    encode_json,
)

__all__ = ["Failover"]

log = logging.getLogger("clawmesh.router")


class _Stamp(TypedDict):
    turn_id: str
    agent_id: str
    session_key: str


_RUNNERS: Final = "$SRV.PING.clawmesh-runner"  # every runner answers (NATS micro discovery)
_ALIVE_FOR: Final = 1.0  # seconds an answer about the runners is trusted
_PING_WAIT: Final = 0.5
_HOME_SESSIONS: Final = 1000  # sessions with messages sent home, before expired ones are dropped

# How a served message ended: answered there; handed back to be routed here; left unacked
# (this router stops, or the reply could not be stored: JetStream delivers it again after the
# ack wait, and the other region, asked again with the same turn id, answers with its turn).
Outcome = Literal["served", "home", "gone"]
# Where a message of a failover agent goes: served there, routed here, or held back (a message
# of its session sent home earlier has not come back yet).
Where = Literal["there", "here", "hold"]


class Failover:
    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx
        self._chains: dict[str, asyncio.Task[Outcome]] = {}  # session key → its latest message
        self._serving: dict[asyncio.Task[Outcome], int] = {}  # → the partition of its message
        self._alive: tuple[float, bool] = (0.0, True)
        # session key → the CM_INBOUND sequences of its messages sent home, each with the time
        # after which it is no longer waited for (JetStream has redelivered it by then anyway)
        self._home: dict[str, dict[int, float]] = {}

    def region_for(self, config: Config, route: Route) -> str | None:
        """The region this route's turns fail over to, when its agent may run there."""
        gw = config.settings.gateway
        if gw.failover_region is None or gw.region is None:
            return None
        if not any(fnmatch.fnmatchcase(route.agent_id, p) for p in gw.failover_agents):
            return None
        return gw.failover_region

    def busy(self, session_key: str) -> bool:
        """Some message of this session is being served elsewhere: the next ones follow it."""
        return session_key in self._chains

    async def where(self, session_key: str, seq: int) -> Where:
        """Where the message at CM_INBOUND sequence `seq` of a failover agent's session goes."""
        home = self._home.get(session_key)
        if home:
            now = time.monotonic()
            for s, until in list(home.items()):
                if until < now:
                    del home[s]
                    log.warning("router: message %d sent home did not come back; going on", s)
            if any(s < seq for s in home):
                return "hold"
            home.pop(seq, None)
            if not home:
                del self._home[session_key]
            return "here"
        if self.busy(session_key):
            return "there"
        if await self.runners_alive() or await self._waiting_here(session_key):
            return "here"
        return "there"

    async def _waiting_here(self, session_key: str) -> bool:
        """Whether a turn of the session routed here is not over: numbered (its session record)
        beyond what its runners completed (its completion record), or completed with its reply
        perhaps not stored: pending in the record (a runner clears that only when it lets the
        session go), its turn status not written (that follows the reply) and its turn not
        acked (that follows the status) — its runner died in between; the next one stores it."""
        store = self.ctx.sessions
        numbered, completed = await asyncio.gather(
            store.get_session(session_key), store.get_done(session_key)
        )
        last = numbered[0].seq if numbered is not None else 0
        done = completed[0] if completed is not None else None
        if last > (done.seq if done is not None else 0):
            return True
        if done is None or done.reply is None:
            return False
        status, acked = await asyncio.gather(
            store.get_turn_status(done.turn_id), store.turn_acked(done.reply.turn_seq)
        )
        return status is None and not acked

    async def runners_alive(self) -> bool:
        """Whether any runner of this region answers (asked at most once a second)."""
        at, alive = self._alive
        if time.monotonic() - at < _ALIVE_FOR:
            return alive
        try:
            await self.ctx.nc.request(_RUNNERS, b"", timeout=_PING_WAIT)
            alive = True
        except NoRespondersError:
            alive = False
        except Exception as exc:  # no answer in time: a runner may be busy; not a failover
            log.info("router: the runners did not answer a ping (%s)", exc)
            alive = True
        if alive != self._alive[1]:
            log.warning("router: %s", "runners are back" if alive else "no live runner in this region")
        self._alive = (time.monotonic(), alive)
        return alive

    def serve(
        self,
        msg: Msg,
        inbound: InboundMessage,
        route: Route,
        region: str,
        owe: Callable[[Msg], None] = lambda msg: None,
        partition: int = 0,
    ) -> None:
        """Take the message over: served on `region` after the session's earlier ones and acked
        when done; or sent home, or left to come back after the ack wait, and then `owe(msg)`
        first: the router routes nothing newer of its partition before it is back."""
        key = route.session_key
        previous = self._chains.get(key)
        task = asyncio.create_task(self._serve(msg, inbound, route, region, previous, owe))
        self._chains[key] = task
        self._serving[task] = partition

        def done(t: asyncio.Task[Outcome]) -> None:
            self._serving.pop(t, None)
            if self._chains.get(key) is t:
                del self._chains[key]
            if not t.cancelled() and (exc := t.exception()) is not None:
                log.error("router: failover of %s failed: %r", inbound.id, exc)

        task.add_done_callback(done)

    async def stop(self, partition: int | None = None) -> None:
        """Abandon what is being served (of one partition: this router lets it go): those
        messages go to the next holder, unacked, after the ack wait, which it waits for before
        routing anything newer of the partition (its orphans); asked again with the same turn
        ids, the other region answers with the turns it ran or runs."""
        tasks = [t for t, p in self._serving.items() if partition is None or p == partition]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _serve(
        self,
        msg: Msg,
        inbound: InboundMessage,
        route: Route,
        region: str,
        previous: asyncio.Task[Outcome] | None,
        owe: Callable[[Msg], None],
    ) -> Outcome:
        ctx = self.ctx
        async with kept_in_progress(msg, ctx.layout.lease_seconds / 3):
            # the session's earlier message first; where it went, this one follows
            went = "served" if previous is None else await _outcome(previous)
            if went == "served":
                try:
                    went = await self._served(
                        inbound, route, region, again=(msg.metadata.num_delivered or 1) > 1
                    )
                except Exception:  # sg answered, but its reply could not be stored here
                    log.exception("router: failed-over turn %s is tried again after the ack wait", inbound.id)
                    went = "gone"
            if went != "served":
                owe(msg)
                if went == "home":
                    await self._send_home(msg, route.session_key)
                # gone: neither acked nor handed back, it comes back after the ack wait and sg
                # is asked again (the session's later ones come back with it)
                return went
        ctx.counters["failed_over"] += 1
        await msg.ack()
        return "served"

    async def _served(
        self, inbound: InboundMessage, route: Route, region: str, *, again: bool = False
    ) -> Outcome:
        """`served` there (its reply stored, everyone told), or to be sent `home`: this region's
        runners are back, or the other region could not be reached in `runtime.maxDeliveries`
        tries."""
        tries = self.ctx.holder.current.settings.runtime.max_deliveries
        for attempt in range(1, tries + 1):
            try:
                # a try after one that went quiet (or a message delivered before) may find the
                # turn run there already
                event = await self._remote(inbound, route, region, again=again or attempt > 1)
            except Exception as exc:  # the request could not even be sent: a failed try too
                log.warning("router: turn %s could not be sent to %r: %r", inbound.id, region, exc)
                event = None
            if event is not None:
                await self._finish(inbound, route, event)
                return "served"
            self.ctx.counters["failover_unreachable"] += 1
            if attempt == tries:
                break
            await asyncio.sleep(min(0.5 * 2 ** (attempt - 1), 30.0))  # a pause, not a sync point
            if await self.runners_alive():
                break
        return "home"

    async def _send_home(self, msg: Msg, session_key: str) -> None:
        """Hand the message back to be routed here; until it is, nothing later of its session is."""
        seq = msg.metadata.sequence.stream
        # by then JetStream has redelivered it even if the hand-back (a plain publish) was lost
        now = time.monotonic()
        if len(self._home) > _HOME_SESSIONS:  # sessions no longer looked at (config changed)
            self._home = {k: v for k, v in self._home.items() if max(v.values(), default=0) > now}
        self._home.setdefault(session_key, {})[seq] = now + self.ctx.layout.lease_seconds + 1.0
        self.ctx.counters["failover_sent_home"] += 1
        with best_effort(self.ctx.counters, "inbound_nak", log=log):
            await msg.nak(delay=0)

    async def _remote(
        self, inbound: InboundMessage, route: Route, region: str, *, again: bool = False
    ) -> TurnEvent | None:
        ctx = self.ctx
        gw = ctx.holder.current.settings.gateway
        assert gw.region is not None
        stamp = _Stamp(turn_id=inbound.id, agent_id=route.agent_id, session_key=route.session_key)

        async def delta(text: str) -> None:
            if inbound.reply_subject and inbound.reply_events == "all":
                await self._tell(inbound, TextDeltaEvent(**stamp, text=text))

        request = RemoteTurn(
            from_gateway=gw.region,
            agent_id=route.agent_id,
            session=route.session_key,
            turn_id=inbound.id,
            text=inbound.text,
            stream=inbound.reply_events == "all",
            keepalive=gw.keepalive_seconds,
            again=again,
        )
        try:
            final = await remote_turn(
                ctx.nc,
                ctx.subjects.prefix,
                region,
                request,
                delta,
                idle_timeout=gw.idle_timeout_seconds,
                silence=lambda: region_silence(ctx.kv["gateways"], region),
            )
        except RemoteTurnFailed as exc:
            if exc.failover:
                log.warning("router: turn %s could not fail over to %r: %s", inbound.id, region, exc.message)
                return None
            return TurnError(
                **stamp, code="TURN_FAILED", message=f"gateway {region}: {exc.message}", hint=exc.hint
            )
        return TurnFinal(**stamp, text=final.text, model=final.model or "")

    async def _finish(self, inbound: InboundMessage, route: Route, event: TurnEvent) -> None:
        """The reply where this region's replies go: CM_OUTBOUND (once per turn id), the caller,
        then the turn status. (Not `cm.ev`: a router may not publish a session's events; the
        other region's session has them.) An answer goes to the caller first: the other region
        recorded it and keeps it under the turn's id, so if it is not stored here (this router
        dies, the publish fails) the message comes back, is asked again and gets the same. An
        error made here is told only once it is stored: asked again, it might not recur."""
        ctx = self.ctx
        failed = isinstance(event, TurnError)
        early = isinstance(event, TurnFinal)
        if early:
            await self._tell(inbound, event)
        text = f"⚠️ {event.message}" if isinstance(event, TurnError) else getattr(event, "text", "")
        reply = OutboundMessage(
            turn_id=inbound.id,
            agent_id=route.agent_id,
            session_key=route.session_key,
            channel=route.channel,
            account_id=route.account_id,
            text=text,
            peer=inbound.peer,
            thread_id=inbound.thread_id,
            reply_to=inbound.message_id,
            is_error=failed,
        )
        data, headers = encode_json(reply)
        headers["Nats-Msg-Id"] = f"out:{inbound.id}"
        await ctx.publish(ctx.subjects.outbound(route.channel, route.account_id), data, inject(headers))
        if not early:
            await self._tell(inbound, event)
        with best_effort(ctx.counters, "turn_status_write", log=log):
            await ctx.sessions.put_turn_status(
                inbound.id,
                TurnStatus(
                    state="error" if failed else "done",
                    agent_id=route.agent_id,
                    session_key=route.session_key,
                    text=text,
                    error_code=event.code if isinstance(event, TurnError) else None,
                    error_message=event.message if isinstance(event, TurnError) else None,
                ),
            )

    async def _tell(self, inbound: InboundMessage, item: TurnEvent) -> None:
        if inbound.reply_subject:
            data, headers = encode_json(item)
            await self.ctx.nc.publish(inbound.reply_subject, data, headers=inject(headers))


async def _outcome(previous: asyncio.Task[Outcome]) -> Outcome:
    """How the session's earlier message ended (waited for without being cancelled with it)."""
    try:
        return await asyncio.shield(previous)
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise  # this router stops
        return "gone"
    except Exception:
        return "gone"
