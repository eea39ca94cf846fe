"""The clawmesh HTTP API (Starlette routes): messages in, events and replies out.

POST /v1/messages            → 202 {turnId, agentId, sessionKey}; SSE with Accept: text/event-stream;
                               ?wait=SECONDS waits for the reply (200 with the text)
GET  /v1/turns/{turnId}      → the turn's state and reply
GET  /v1/sessions/{key}/events  SSE: follow a session
GET  /v1/approvals             → pending exec approval requests (?all=1: decided ones too)
GET  /v1/approvals/{id}
POST /v1/approvals/{id}/approve  body {"always": true} for allow-always; /deny refuses
GET  /v1/agents, /healthz, /readyz
(The OpenAI-compatible endpoints are openai_api.py.)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import AsyncIterator, Callable
from typing import Any, Literal

import msgspec
from nats.aio.msg import Msg
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from clawmesh.bus import ServiceContext
from clawmesh.errors import best_effort
from clawmesh.execpolicy import ApprovalError, ApprovalRecord, ApprovalStore, Decision
from clawmesh.ids import Id, normalize_account_id
from clawmesh.routing import normalize_chat_type, parse_agent_session_key
from clawmesh.wire import (
    Attachment,
    DecodeFailure,
    InboundMessage,
    Peer,
    ReplyMessage,
    RouteDecision,
    Sender,
    TurnError,
    TurnEvent,
    TurnFinal,
    decode,
    now,
)

from .http import (
    NO_CACHE,
    BadRequest,
    RequestGuard,
    decode_body,
    error,
    read_body,
    routing_error_status,
    sse,
    sse_comment,
    sse_response,
)
from .turns import PendingTurn, TurnClient, turn_id_for

__all__ = ["ClawmeshAPI", "MessageIn"]

log = logging.getLogger("clawmesh.ingress")

# How long a session follower may see nothing before a keep-alive comment (proxies drop idle streams).
_KEEP_ALIVE_SECONDS = 15
_FOLLOW_BUFFER = 10_000
# How often a retried message's request looks the turn up in the store while it waits.
_DUPLICATE_POLL_SECONDS = 2.0


# --- request bodies ----------------------------------------------------------------------


class _In(msgspec.Struct, kw_only=True, rename="camel", forbid_unknown_fields=True):
    pass


# Ids are bounded here (`Id`, MAX_ID_LENGTH) so an oversized one is a 400 naming the field,
# before anything is stored.
class PeerIn(_In):
    kind: Literal["direct", "dm", "group", "channel"]
    id: Id | int


class SenderIn(_In):
    id: Id = ""
    name: str | None = None
    username: str | None = None


class AttachmentIn(_In):
    name: str = ""
    mime: str = "application/octet-stream"
    url: str | None = None
    size: int | None = None


class MessageIn(_In):
    text: str
    channel: Id = "api"
    account_id: Id | None = None
    peer: PeerIn | None = None
    parent_peer: PeerIn | None = None
    guild_id: Id | int | None = None
    team_id: Id | int | None = None
    member_role_ids: list[Id] = []
    sender: SenderIn | None = None
    message_id: Id | None = None
    thread_id: Id | None = None
    agent_id: Id | None = None
    attachments: list[AttachmentIn] = []
    metadata: dict[str, str] = {}


class ApproveIn(_In):
    always: bool = False  # allow-always: the command joins the agent's allowlist on its node


# --- the routes ----------------------------------------------------------------------------


def _id(value: str | int | None) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _peer(p: PeerIn | None) -> Peer | None:
    if p is None:
        return None
    return Peer(kind=normalize_chat_type(p.kind) or p.kind, id=str(p.id).strip())


def _inbound(
    body: MessageIn, turn_id: str, channel: str, account: str, reply_subject: str, streaming: bool
) -> InboundMessage:
    return InboundMessage(
        id=turn_id,
        channel=channel,
        account_id=account,
        peer=_peer(body.peer),
        parent_peer=_peer(body.parent_peer),
        guild_id=_id(body.guild_id),
        team_id=_id(body.team_id),
        member_role_ids=body.member_role_ids,
        sender=Sender(id=body.sender.id, name=body.sender.name, username=body.sender.username)
        if body.sender
        else None,
        text=body.text,
        attachments=[Attachment(name=a.name, mime=a.mime, url=a.url, size=a.size) for a in body.attachments],
        message_id=body.message_id,
        thread_id=body.thread_id,
        agent_id=body.agent_id,
        received_at=now(),
        reply_subject=reply_subject,
        reply_events="all" if streaming else "final",
        metadata=body.metadata,
    )


def _event_name(item: ReplyMessage) -> str:
    """The SSE event name of a reply item: its wire tag (`started`, `delta`, `final`, …)."""
    return "route" if isinstance(item, RouteDecision) else str(type(item).__struct_config__.tag)


def _routing_error(decision: RouteDecision) -> JSONResponse:
    return error(
        routing_error_status(decision.error_code),
        decision.error_code or "ROUTING_ERROR",
        decision.error_message or "routing failed",
        hint=decision.error_hint or "",
        turnId=decision.turn_id,
    )


def _approval_error(exc: ApprovalError) -> JSONResponse:
    status = {"not_found": 404, "invalid_request": 400, "conflict": 409}[exc.code]
    return error(status, exc.code, str(exc), path="approvalId")


def _duplicate_answer(turn_id: str, state: str, **fields: Any) -> JSONResponse:
    return JSONResponse({"turnId": turn_id, "duplicate": True, "state": state, **fields}, status_code=200)


class ClawmeshAPI:
    """The clawmesh API's routes. `ready`: whether the service has started (for /readyz)."""

    def __init__(
        self, ctx: ServiceContext, turns: TurnClient, guard: RequestGuard, ready: Callable[[], bool]
    ) -> None:
        self.ctx = ctx
        self.turns = turns
        self.guard = guard
        self.ready = ready
        self.store = ctx.sessions
        self.approvals = ApprovalStore(ctx.approvals)

    def routes(self) -> list[Route]:
        guard = self.guard
        return [
            Route("/v1/messages", guard(self.post_message), methods=["POST"]),
            Route("/v1/turns/{turn_id}", guard(self.get_turn), methods=["GET"]),
            Route("/v1/sessions/{key:path}/events", guard(self.session_events), methods=["GET"]),
            Route("/v1/agents", guard(self.agents), methods=["GET"]),
            Route("/v1/approvals", guard(self.list_approvals), methods=["GET"]),
            Route("/v1/approvals/{approval_id}", guard(self.get_approval), methods=["GET"]),
            Route("/v1/approvals/{approval_id}/approve", guard(self.approve), methods=["POST"]),
            Route("/v1/approvals/{approval_id}/deny", guard(self.deny), methods=["POST"]),
            Route("/healthz", self.healthz, methods=["GET"]),
            Route("/readyz", self.readyz, methods=["GET"]),
        ]

    # --- messages ------------------------------------------------------------------------

    def _wait(self, raw: str | None) -> float | None:
        """?wait as seconds (None: answer once routed); empty waits as long as a turn may run,
        and so does any longer wait."""
        if raw is None:
            return None
        limit = self.turns.turn_timeout()
        if not raw:
            return limit
        try:
            seconds = float(raw)
        except ValueError:
            seconds = math.nan
        if not math.isfinite(seconds) or seconds < 0:
            raise BadRequest(
                error(
                    400,
                    "invalid_request",
                    f"wait must be a number of seconds (0 or more), got {raw!r}",
                    path="?wait",
                )
            )
        return min(seconds, limit)

    async def post_message(self, request: Request) -> Response:
        # the whole request is checked before anything is stored: a bad one leaves no turn behind
        wait = self._wait(request.query_params.get("wait"))
        body = await self.guard.read(request, MessageIn)
        channel = body.channel.strip().lower() or "api"
        account = normalize_account_id(body.account_id)
        turn_id = turn_id_for(channel, account, body.message_id)
        streaming = "text/event-stream" in request.headers.get("accept", "")
        inbound = _inbound(body, turn_id, channel, account, self.turns.reply_subject, streaming)
        dedupe = f"in:{channel}:{account}:{body.message_id}" if body.message_id else f"in:{turn_id}"
        turn = await self.turns.submit(inbound, dedupe, request.headers)
        if turn.duplicate:
            with contextlib.closing(turn):
                return await self._duplicate(turn, None if streaming else wait)
        if streaming:
            return sse_response(self._stream(turn), NO_CACHE, on_close=turn.close)
        with contextlib.closing(turn):
            return await self._answer(turn, wait)

    async def _answer(self, turn: PendingTurn, wait: float | None) -> Response:
        """202 once routed; with ?wait, the reply (200), or 202 "running" if it is not there in time."""
        decision = await turn.decision(self.turns.route_wait())
        if decision is None:
            return JSONResponse(
                {"turnId": turn.turn_id, "agentId": None, "sessionKey": None, "state": "queued"},
                status_code=202,
            )
        if not decision.ok:
            return _routing_error(decision)
        accepted = {"turnId": turn.turn_id, "agentId": decision.agent_id, "sessionKey": decision.session_key}
        if wait is None:
            return JSONResponse(accepted, status_code=202)
        try:
            final = await turn.outcome(wait)
        except TimeoutError:
            return JSONResponse({**accepted, "state": "running"}, status_code=202)
        if isinstance(final, RouteDecision):  # a second decision; not expected after a first one
            return _routing_error(final)
        if isinstance(final, TurnError):
            return error(
                502,
                final.code,
                final.message,
                hint=final.hint,
                turnId=turn.turn_id,
                agentId=decision.agent_id,
                sessionKey=decision.session_key,
            )
        return JSONResponse(
            {**accepted, "state": "done", "text": final.text, "model": final.model}, status_code=200
        )

    async def _duplicate(self, turn: PendingTurn, wait: float | None) -> Response:
        """Another request already submitted this message id: 200 with the turn's state, and
        with ?wait its reply once there. The replies go to the first request's reply subject:
        on this instance they reach this request as well; otherwise (another instance, or sent
        before this retry) the turn store has the outcome, looked up every few seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (wait or 0.0)
        decision: RouteDecision | None = None
        while True:
            status = await self.store.get_turn_status(turn.turn_id)
            if status is not None and status.state in ("done", "error"):
                return _duplicate_answer(
                    turn.turn_id,
                    status.state,
                    agentId=status.agent_id,
                    sessionKey=status.session_key,
                    **(
                        {"text": status.text}
                        if status.state == "done"
                        else {"error": {"code": status.error_code, "message": status.error_message}}
                    ),
                )
            remaining = deadline - loop.time()
            if wait is None or remaining <= 0:
                return _duplicate_answer(turn.turn_id, status.state if status else "accepted")
            try:
                # bounds the whole look, not each event: deltas of a streamed turn keep coming
                async with asyncio.timeout(min(remaining, _DUPLICATE_POLL_SECONDS)):
                    async for item in turn.events(None):
                        if isinstance(item, RouteDecision):
                            decision = item
            except TimeoutError:
                continue
            routed = {
                "agentId": decision.agent_id if decision else None,
                "sessionKey": decision.session_key if decision else None,
            }
            if isinstance(item, TurnFinal):
                return _duplicate_answer(turn.turn_id, "done", **routed, text=item.text, model=item.model)
            code, message = (
                (item.code, item.message)
                if isinstance(item, TurnError)
                else (decision.error_code if decision else None, decision.error_message if decision else None)
            )
            return _duplicate_answer(
                turn.turn_id, "error", **routed, error={"code": code, "message": message}
            )

    async def _stream(self, turn: PendingTurn) -> AsyncIterator[bytes]:
        """`route` (or `queued`), then every event up to `final` or `error`."""
        with contextlib.closing(turn):
            try:
                decision = await turn.decision(self.turns.route_wait())
                if decision is None:
                    yield sse("queued", {"turnId": turn.turn_id, "state": "queued"})
                else:
                    yield sse("route", msgspec.json.encode(decision))
                    if not decision.ok:
                        return
                async for item in turn.events(self.turns.turn_timeout()):
                    yield sse(_event_name(item), msgspec.json.encode(item))
            except TimeoutError:
                yield sse("error", {"turnId": turn.turn_id, "code": "TIMEOUT", "message": "no reply in time"})

    # --- turns and sessions --------------------------------------------------------------

    async def get_turn(self, request: Request) -> Response:
        turn_id = request.path_params["turn_id"]
        status = await self.store.get_turn_status(turn_id)
        if status is None:
            return error(
                404, "not_found", f"no turn {turn_id!r} (unknown, still queued, or older than a day)"
            )
        return JSONResponse({"turnId": turn_id, **msgspec.to_builtins(status)})

    async def session_events(self, request: Request) -> Response:
        """Every event of a session as it happens (its event subject, not the reply subject)."""
        key = request.path_params["key"]
        parsed = parse_agent_session_key(key)
        if parsed is None:
            return error(
                400, "invalid_request", f"not a session key: {key!r} (expected agent:<agentId>:…)", path="key"
            )
        queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=_FOLLOW_BUFFER)

        async def on_event(msg: Msg) -> None:
            try:
                item = decode(msg.data, TurnEvent, msg.headers)
            except DecodeFailure:
                return
            try:
                queue.put_nowait(sse(_event_name(item), msg.data))
            except asyncio.QueueFull:  # a follower too slow to read loses events: counted
                self.ctx.counters["follow_events_dropped"] += 1

        sub = await self.ctx.nc.subscribe(self.ctx.subjects.events(parsed.agent_id, key), cb=on_event)
        await self.ctx.nc.flush()  # interest registered before we tell the client we follow

        async def stream() -> AsyncIterator[bytes]:
            try:
                yield sse_comment("following " + key)
                while True:
                    try:
                        yield await asyncio.wait_for(queue.get(), _KEEP_ALIVE_SECONDS)
                    except TimeoutError:
                        yield sse_comment("keep-alive")
            finally:
                with best_effort(self.ctx.counters, "follow_unsubscribe", log=log):
                    await sub.unsubscribe()

        return sse_response(stream(), NO_CACHE)

    # --- exec approvals ---------------------------------------------------------------------

    async def list_approvals(self, request: Request) -> Response:
        everything = request.query_params.get("all", "") not in ("", "0", "false")
        records = await self.approvals.list(pending_only=not everything)
        return JSONResponse({"approvals": [msgspec.to_builtins(r) for r in records]})

    async def get_approval(self, request: Request) -> Response:
        try:
            record = await self.approvals.get(request.path_params["approval_id"])
        except ApprovalError as exc:
            return _approval_error(exc)
        return JSONResponse(msgspec.to_builtins(record))

    async def approve(self, request: Request) -> Response:
        raw = await read_body(request, self.guard.body_limit(), self.guard.body_timeout)
        body = decode_body(raw, ApproveIn) if raw.strip() else ApproveIn()
        return await self._decide(request, "allow-always" if body.always else "allow-once")

    async def deny(self, request: Request) -> Response:
        return await self._decide(request, "deny")

    async def _decide(self, request: Request, decision: Decision) -> Response:
        try:
            record: ApprovalRecord = await self.approvals.resolve(
                request.path_params["approval_id"], decision, by="http"
            )
        except ApprovalError as exc:
            return _approval_error(exc)
        return JSONResponse(msgspec.to_builtins(record))

    # --- the rest ------------------------------------------------------------------------

    async def agents(self, request: Request) -> Response:
        config = self.ctx.holder.current
        return JSONResponse(
            {
                "agents": [
                    {
                        "id": a.id,
                        "name": a.name,
                        "default": a.is_default,
                        "models": list(a.models),
                        "runnerType": a.runner_type,
                    }
                    for a in config.agents
                ],
                # False: any agent id is accepted (no `agents.list`), so clients cannot reject one
                "roster": config.has_roster,
                "configVersion": config.version,
            }
        )

    async def healthz(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(self, request: Request) -> Response:
        # every service of this process, not only ingress: a dead router behind a green
        # ingress is not ready (hosted alone, e.g. in tests, there is only ingress to ask)
        process = self.ctx.health.report() if self.ctx.health.connections else {"ready": True, "nats": {}}
        ready = self.ctx.nc.is_connected and self.ready() and process["ready"]
        return JSONResponse(
            {"ready": ready, "nats": self.ctx.nc.is_connected, "services": process["nats"]},
            status_code=200 if ready else 503,
        )
