"""OpenAI-compatible endpoints, so any OpenAI client library can talk to an agent.

POST /v1/chat/completions (streaming or not), GET /v1/models.
`model` names the agent (`clawmesh/<agentId>`, `agent:<agentId>` or the bare id); `user`
becomes the peer id; the last user message is the turn (the agent keeps its own history).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any, Literal

import msgspec
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from clawmesh.bus import ServiceContext
from clawmesh.ids import Id
from clawmesh.wire import (
    ErrorCode,
    InboundMessage,
    Peer,
    RouteDecision,
    TextDeltaEvent,
    TurnError,
    TurnFinal,
    now,
)

from .http import InvalidBody, RequestGuard, routing_error_status, sse_data, sse_response
from .turns import PendingTurn, TurnClient, turn_id_for

__all__ = ["ChatRequest", "ContentPart", "OpenAIAPI", "agent_for_model", "oa_error"]


class ContentPart(msgspec.Struct):
    """One part of a message's content; only text parts are read, the rest (images, …) skipped."""

    type: str = ""
    text: str = ""


# OpenAI's own error codes, for OpenAI clients; everything else carries ours (wire.ErrorCode)
OpenAICode = Literal["model_not_found", "timeout"]


class ChatMessageIn(msgspec.Struct):
    role: str
    content: str | list[ContentPart] | None = None


class ChatRequest(msgspec.Struct):
    model: Id
    messages: list[ChatMessageIn]
    stream: bool = False
    user: Id | None = None  # becomes part of the session key: bounded like every id


def oa_error(
    status: int,
    message: str,
    *,
    type_: str = "invalid_request_error",
    param: str | None = None,
    code: ErrorCode | OpenAICode | None = None,
) -> JSONResponse:
    """An error response in OpenAI's shape, which client libraries turn into their exceptions."""
    return JSONResponse(
        {"error": {"message": message, "type": type_, "param": param, "code": code}}, status_code=status
    )


def _error_frame(message: str | None, type_: str, code: ErrorCode | OpenAICode | None) -> bytes:
    """An error inside a stream that has begun (its 200 status is already sent)."""
    return sse_data({"error": {"message": message, "type": type_, "code": code}})


def _routing_error(decision: RouteDecision) -> JSONResponse:
    return oa_error(
        routing_error_status(decision.error_code),
        decision.error_message or "routing failed",
        code=decision.error_code,
    )


def _invalid_body(exc: InvalidBody) -> Response:
    return oa_error(400, f"invalid request: {exc.detail}")


def agent_for_model(model: str) -> str:
    for prefix in ("clawmesh/", "agent:"):
        if model.startswith(prefix):
            return model[len(prefix) :]
    return model


def _text(content: str | list[ContentPart] | None) -> str:
    if isinstance(content, str):
        return content
    if not content:
        return ""
    return "".join(part.text for part in content if part.type in ("text", "input_text"))


class OpenAIAPI:
    """The OpenAI-compatible routes."""

    def __init__(self, ctx: ServiceContext, turns: TurnClient, guard: RequestGuard) -> None:
        self.ctx = ctx
        self.turns = turns
        self.guard = guard

    def routes(self) -> list[Route]:
        guard = self.guard
        return [
            Route(
                "/v1/chat/completions",
                guard(self.completions, on_invalid=_invalid_body),
                methods=["POST"],
            ),
            Route("/v1/models", guard(self.models), methods=["GET"]),
        ]

    async def models(self, request: Request) -> Response:
        config = self.ctx.holder.current
        created = int(time.time())
        return JSONResponse(
            {
                "object": "list",
                "data": [
                    {"id": f"clawmesh/{a.id}", "object": "model", "created": created, "owned_by": "clawmesh"}
                    for a in config.agents
                ],
            }
        )

    async def completions(self, request: Request) -> Response:
        body = await self.guard.read(request, ChatRequest)
        config = self.ctx.holder.current
        agent_id = agent_for_model(body.model)
        agent = config.agent(agent_id)
        if agent is None and config.has_roster:
            return oa_error(
                404,
                f"The model `{body.model}` does not exist (agents: {', '.join('clawmesh/' + a for a in config.agent_ids)})",
                param="model",
                code="model_not_found",
            )
        users = [m for m in body.messages if m.role == "user"]
        if not users:
            return oa_error(400, "messages must contain a user message", param="messages")
        peer_id = (body.user or "openai").strip() or "openai"
        turn_id = turn_id_for("api", "default", None)
        inbound = InboundMessage(
            id=turn_id,
            channel="api",
            account_id="default",
            peer=Peer(kind="direct", id=peer_id),
            text=_text(users[-1].content),
            agent_id=agent.id if agent else agent_id,
            received_at=now(),
            reply_subject=self.turns.reply_subject,
            reply_events="all" if body.stream else "final",
            metadata={"api": "openai.chat.completions"},
        )
        turn = await self.turns.submit(inbound, f"in:{turn_id}", request.headers)
        completion_id = f"chatcmpl-{turn_id}"
        created = int(time.time())
        if body.stream:
            return sse_response(self._stream(turn, completion_id, created, body.model), on_close=turn.close)
        with contextlib.closing(turn):
            try:
                decision = await turn.decision(self.turns.route_wait())
                if decision is not None and not decision.ok:
                    return _routing_error(decision)
                final = await turn.outcome(self.turns.turn_timeout())
            except TimeoutError:
                return oa_error(504, "the agent did not answer in time", type_="server_error", code="timeout")
        if isinstance(final, RouteDecision):  # routed after route_wait, and refused
            return _routing_error(final)
        if isinstance(final, TurnError):
            return oa_error(502, f"{final.code}: {final.message}", type_="server_error", code=final.code)
        return JSONResponse(
            {
                "id": completion_id,
                "object": "chat.completion",
                "created": created,
                "model": body.model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": final.text},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {
                    "prompt_tokens": final.input_tokens,
                    "completion_tokens": final.output_tokens,
                    "total_tokens": final.input_tokens + final.output_tokens,
                },
            }
        )

    async def _stream(
        self, turn: PendingTurn, completion_id: str, created: int, model: str
    ) -> AsyncIterator[bytes]:
        """`chat.completion.chunk`s: the role, the text deltas, `stop`, then `[DONE]`; an
        error frame instead when routing fails, the turn fails or no event comes in time."""

        def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
            return sse_data(
                {
                    "id": completion_id,
                    "object": "chat.completion.chunk",
                    "created": created,
                    "model": model,
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
                }
            )

        with contextlib.closing(turn):
            try:
                yield chunk({"role": "assistant", "content": ""})
                decision = await turn.decision(self.turns.route_wait())
                if decision is not None and not decision.ok:
                    yield _error_frame(decision.error_message, "invalid_request_error", decision.error_code)
                    return
                async for item in turn.events(self.turns.turn_timeout()):
                    if isinstance(item, RouteDecision) and not item.ok:  # refused after route_wait
                        yield _error_frame(item.error_message, "invalid_request_error", item.error_code)
                        return
                    if isinstance(item, TextDeltaEvent):
                        yield chunk({"content": item.text})
                    elif isinstance(item, TurnError):
                        yield _error_frame(f"{item.code}: {item.message}", "server_error", item.code)
                        return
                    elif isinstance(item, TurnFinal):
                        yield chunk({}, "stop")
                yield sse_data(b"[DONE]")
            except TimeoutError:
                yield _error_frame("the agent did not answer in time", "server_error", "timeout")
