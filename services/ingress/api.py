"""The HTTP API (Starlette): messages in, events and replies out.

POST /v1/messages            → 202 {turnId, agentId, sessionKey}; SSE with Accept: text/event-stream;
                               ?wait=SECONDS waits for the reply (200 with the text)
GET  /v1/turns/{turnId}      → the turn's state and reply
GET  /v1/sessions/{key}/events  SSE: follow a session
POST /v1/chat/completions    OpenAI-compatible (see openai_api.py); GET /v1/models
GET  /v1/agents, /healthz, /readyz
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, Literal

import msgspec
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from clawmesh.bus import producer_span
from clawmesh.ids import normalize_account_id
from clawmesh.routing import normalize_chat_type, parse_agent_session_key
from clawmesh.sessions import SessionStore
from clawmesh.wire import (
    Attachment,
    DecodeFailure,
    InboundMessage,
    Peer,
    RouteDecision,
    Sender,
    TurnError,
    TurnEvent,
    TurnFinal,
    decode,
    encode_msgpack,
    now,
)

from .security import BodyTooLarge, read_body

if TYPE_CHECKING:
    from .app import Ingress

__all__ = [
    "BadRequest",
    "Submission",
    "TurnClient",
    "build_app",
    "error",
    "guarded",
    "parse_json",
    "turn_id_for",
]

DEFAULT_BODY_LIMIT = 1024 * 1024
_AT_PATH = re.compile(r" - at `(\$[^`]*)`")


# --- request bodies ----------------------------------------------------------------------


class _In(msgspec.Struct, kw_only=True, rename="camel", forbid_unknown_fields=True):
    pass


class PeerIn(_In):
    kind: Literal["direct", "dm", "group", "channel"]
    id: str | int


class SenderIn(_In):
    id: str = ""
    name: str | None = None
    username: str | None = None


class AttachmentIn(_In):
    name: str = ""
    mime: str = "application/octet-stream"
    url: str | None = None
    size: int | None = None


class MessageIn(_In):
    text: str
    channel: str = "api"
    account_id: str | None = None
    peer: PeerIn | None = None
    parent_peer: PeerIn | None = None
    guild_id: str | int | None = None
    team_id: str | int | None = None
    member_role_ids: list[str] = []
    sender: SenderIn | None = None
    message_id: str | None = None
    thread_id: str | None = None
    agent_id: str | None = None
    attachments: list[AttachmentIn] = []
    metadata: dict[str, str] = {}


# --- helpers -------------------------------------------------------------------------------


def error(
    status: int,
    code: str,
    message: str,
    *,
    path: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body: dict[str, Any] = {"code": code, "message": message, **extra}
    if path:
        body["path"] = path
    return JSONResponse({"error": body}, status_code=status, headers=headers)


class Unavailable(Exception):
    """The message could not be stored (NATS or JetStream unavailable): a 503, not a 500."""


class BadRequest(Exception):
    def __init__(self, response: Response) -> None:
        self.response = response


def parse_json(data: bytes, type_: type[Any]) -> Any:
    """Decode and validate a JSON body; a failure is a 400 naming the JSON path."""
    try:
        return msgspec.json.decode(data, type=type_)
    except msgspec.ValidationError as exc:
        text = str(exc)
        m = _AT_PATH.search(text)
        raise BadRequest(
            error(400, "invalid_request", _AT_PATH.sub("", text), path=m.group(1) if m else "$")
        ) from None
    except msgspec.DecodeError as exc:
        raise BadRequest(error(400, "invalid_json", f"body is not valid JSON: {exc}")) from None


def _id(value: str | int | None) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _peer(p: PeerIn | None) -> Peer | None:
    if p is None:
        return None
    return Peer(kind=normalize_chat_type(p.kind) or p.kind, id=str(p.id).strip())


def sse(event: str, data: Any) -> bytes:
    payload = data if isinstance(data, bytes) else json.dumps(data, ensure_ascii=False).encode()
    return b"event: " + event.encode() + b"\ndata: " + payload + b"\n\n"


def event_name(item: Any) -> str:
    return "route" if isinstance(item, RouteDecision) else str(type(item).__struct_config__.tag)


def turn_id_for(channel: str, account: str, message_id: str | None) -> str:
    """Deterministic for a platform message id, so a retried delivery maps to the same turn."""
    if message_id:
        return uuid.uuid5(uuid.NAMESPACE_URL, f"clawmesh:{channel}:{account}:{message_id}").hex
    return uuid.uuid4().hex


# --- the app -------------------------------------------------------------------------------


class Submission:
    def __init__(self, turn_id: str, queue: asyncio.Queue[Any], duplicate: bool) -> None:
        self.turn_id = turn_id
        self.queue = queue
        self.duplicate = duplicate
        self.decision: RouteDecision | None = None
        self.early: list[Any] = []


class TurnClient:
    """Submitting a turn and following it through the reply subject (shared by both APIs)."""

    def __init__(self, ingress: Ingress) -> None:
        self.ingress = ingress
        self.ctx = ingress.ctx

    def _runtime(self) -> Any:
        return self.ctx.holder.current.document.runtime

    def body_limit(self) -> int:
        gw = self.ctx.holder.current.document.gateway
        return gw.max_body_bytes if gw and gw.max_body_bytes else DEFAULT_BODY_LIMIT

    def route_wait(self) -> float:
        runtime = self._runtime()
        return runtime.route_wait_seconds if runtime and runtime.route_wait_seconds else 5.0

    def turn_timeout(self) -> float:
        runtime = self._runtime()
        return (runtime.turn_timeout_seconds if runtime and runtime.turn_timeout_seconds else 600.0) + 30.0

    async def submit(
        self, inbound: InboundMessage, dedupe_key: str, trace_from: Mapping[str, str] | None = None
    ) -> Submission:
        """Register for the turn's replies, then store the message in CM_INBOUND. The caller
        is answered only after JetStream acknowledged it: nothing accepted is lost.
        `trace_from`: the HTTP request headers, to continue the caller's trace."""
        ctx = self.ctx
        queue = self.ingress.waiters.open(inbound.id)
        data, headers = encode_msgpack(inbound)
        headers["Nats-Msg-Id"] = dedupe_key
        subject = ctx.subjects.inbound(inbound.channel, inbound.account_id)
        try:
            with producer_span("cm.in", subject, headers, parent=trace_from):
                ack = await ctx.js.publish(subject, data, headers=headers)
        except Exception as exc:
            self.ingress.waiters.close(inbound.id)
            ctx.counters["store_failures"] += 1
            raise Unavailable(
                f"could not store the message ({type(exc).__name__}: {exc}); nothing was accepted, retry later"
            ) from exc
        ctx.counters["accepted"] += 1
        return Submission(inbound.id, queue, bool(ack.duplicate))

    def close(self, sub: Submission) -> None:
        self.ingress.waiters.close(sub.turn_id)

    async def decision(self, sub: Submission, timeout: float) -> RouteDecision | None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while sub.decision is None:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return None
            try:
                item = await asyncio.wait_for(sub.queue.get(), remaining)
            except TimeoutError:
                return None
            if isinstance(item, RouteDecision):
                sub.decision = item
            else:
                sub.early.append(item)  # the runner can be quicker than the router's notice
        return sub.decision

    async def events(self, sub: Submission, timeout: float | None) -> AsyncIterator[Any]:
        """Every event of the turn, ending with its final or error event."""
        early, sub.early = sub.early, []
        for item in early:
            yield item
            if isinstance(item, TurnFinal | TurnError):
                return
        while True:
            item = await asyncio.wait_for(sub.queue.get(), timeout)
            yield item
            if isinstance(item, TurnFinal | TurnError):
                return


def guarded(
    ingress: Ingress, handler: Callable[[Request], Awaitable[Response]]
) -> Callable[[Request], Awaitable[Response]]:
    """Auth + rate limit, and the common error responses (413, 400 with a JSON path)."""

    async def wrapper(request: Request) -> Response:
        denied = ingress.auth.check(request)
        if denied is not None:
            status, message, retry = denied
            if status == 401:
                headers = {"WWW-Authenticate": 'Bearer realm="clawmesh"'}
            else:
                headers = {"Retry-After": str(max(1, round(retry or 1)))}
            return error(
                status, "unauthorized" if status == 401 else "rate_limited", message, headers=headers
            )
        try:
            return await handler(request)
        except Unavailable as exc:
            return error(503, "unavailable", str(exc), headers={"Retry-After": "5"})
        except BodyTooLarge:
            return error(413, "payload_too_large", f"request body exceeds {ingress.turns.body_limit()} bytes")
        except BadRequest as exc:
            return exc.response

    return wrapper


def build_app(ingress: Ingress) -> Starlette:
    ctx = ingress.ctx
    turns = ingress.turns
    store = SessionStore(ctx.js, ctx.subjects, ctx.kv["sessions"], ctx.kv.get("turns"))

    def decision_error(decision: RouteDecision) -> JSONResponse:
        status = 404 if decision.error_code == "UNKNOWN_AGENT" else 422
        return error(
            status,
            decision.error_code or "ROUTING_ERROR",
            decision.error_message or "routing failed",
            hint=decision.error_hint or "",
            turnId=decision.turn_id,
        )

    async def post_message(request: Request) -> Response:
        body = parse_json(await read_body(request, turns.body_limit()), MessageIn)
        channel = body.channel.strip().lower() or "api"
        account = normalize_account_id(body.account_id)
        turn_id = turn_id_for(channel, account, body.message_id)
        streaming = "text/event-stream" in request.headers.get("accept", "")
        inbound = InboundMessage(
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
            attachments=[
                Attachment(name=a.name, mime=a.mime, url=a.url, size=a.size) for a in body.attachments
            ],
            message_id=body.message_id,
            thread_id=body.thread_id,
            agent_id=body.agent_id,
            received_at=now(),
            reply_subject=ingress.reply_subject,
            reply_events="all" if streaming else "final",
            metadata=body.metadata,
        )
        dedupe = f"in:{channel}:{account}:{body.message_id}" if body.message_id else f"in:{turn_id}"
        sub = await turns.submit(inbound, dedupe, request.headers)
        wait = request.query_params.get("wait")
        if sub.duplicate:
            turns.close(sub)
            status = await store.get_turn_status(turn_id)
            return JSONResponse(
                {"turnId": turn_id, "duplicate": True, "state": status.state if status else "accepted"},
                status_code=200,
            )
        if streaming:
            return StreamingResponse(
                _stream_turn(sub), media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
            )
        try:
            decision = await turns.decision(sub, turns.route_wait())
            if decision is None:
                return JSONResponse(
                    {"turnId": turn_id, "agentId": None, "sessionKey": None, "state": "queued"},
                    status_code=202,
                )
            if not decision.ok:
                return decision_error(decision)
            accepted = {"turnId": turn_id, "agentId": decision.agent_id, "sessionKey": decision.session_key}
            if wait is None:
                return JSONResponse(accepted, status_code=202)
            try:
                seconds = float(wait) if wait else turns.turn_timeout()
            except ValueError:
                return error(
                    400, "invalid_request", f"wait must be a number of seconds, got {wait!r}", path="?wait"
                )
            final: Any = None
            try:
                async for item in turns.events(sub, seconds):
                    final = item
            except TimeoutError:
                return JSONResponse({**accepted, "state": "running"}, status_code=202)
            if isinstance(final, TurnError):
                return error(
                    502,
                    final.code,
                    final.message,
                    hint=final.hint,
                    turnId=turn_id,
                    agentId=decision.agent_id,
                    sessionKey=decision.session_key,
                )
            assert isinstance(final, TurnFinal)
            return JSONResponse(
                {**accepted, "state": "done", "text": final.text, "model": final.model}, status_code=200
            )
        finally:
            turns.close(sub)

    async def _stream_turn(sub: Submission) -> AsyncIterator[bytes]:
        try:
            decision = await turns.decision(sub, turns.route_wait())
            if decision is None:
                yield sse("queued", {"turnId": sub.turn_id, "state": "queued"})
            else:
                yield sse("route", msgspec.json.encode(decision))
                if not decision.ok:
                    return
            async for item in turns.events(sub, turns.turn_timeout()):
                yield sse(event_name(item), msgspec.json.encode(item))
        except TimeoutError:
            yield sse("error", {"turnId": sub.turn_id, "code": "TIMEOUT", "message": "no reply in time"})
        finally:
            turns.close(sub)

    async def get_turn(request: Request) -> Response:
        turn_id = request.path_params["turn_id"]
        status = await store.get_turn_status(turn_id)
        if status is None:
            return error(
                404, "not_found", f"no turn {turn_id!r} (unknown, still queued, or older than a day)"
            )
        return JSONResponse({"turnId": turn_id, **msgspec.to_builtins(status)})

    async def session_events(request: Request) -> Response:
        key = request.path_params["key"]
        parsed = parse_agent_session_key(key)
        if parsed is None:
            return error(
                400, "invalid_request", f"not a session key: {key!r} (expected agent:<agentId>:…)", path="key"
            )
        subject = ctx.subjects.events(parsed.agent_id, key)
        queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=10_000)

        async def on_event(msg: Any) -> None:
            try:
                item = decode(msg.data, TurnEvent, msg.headers)
            except DecodeFailure:
                return
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(sse(event_name(item), msg.data))

        sub = await ctx.nc.subscribe(subject, cb=on_event)
        await ctx.nc.flush()  # interest registered before we tell the client we follow

        async def stream() -> AsyncIterator[bytes]:
            try:
                yield b": following " + key.encode() + b"\n\n"
                while True:
                    try:
                        yield await asyncio.wait_for(queue.get(), 15)
                    except TimeoutError:
                        yield b": keep-alive\n\n"
            finally:
                with contextlib.suppress(Exception):
                    await sub.unsubscribe()

        return StreamingResponse(
            stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
        )

    async def agents(request: Request) -> Response:
        config = ctx.holder.current
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
                "configVersion": config.version,
            }
        )

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        ready = ctx.nc.is_connected and ingress.ready
        return JSONResponse({"ready": ready, "nats": ctx.nc.is_connected}, status_code=200 if ready else 503)

    from .openai_api import openai_routes

    routes = [
        Route("/v1/messages", guarded(ingress, post_message), methods=["POST"]),
        Route("/v1/turns/{turn_id}", guarded(ingress, get_turn), methods=["GET"]),
        Route("/v1/sessions/{key:path}/events", guarded(ingress, session_events), methods=["GET"]),
        Route("/v1/agents", guarded(ingress, agents), methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        *openai_routes(ingress),
    ]
    return Starlette(routes=routes)
