"""OpenAI-compatible endpoints, so any OpenAI client library can talk to an agent.

`model` names the agent (`clawmesh/<agentId>`, `agent:<agentId>` or the bare id); `user`
becomes the peer id; the last user message is the turn (the agent keeps its own history).
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import msgspec
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from clawmesh.wire import InboundMessage, Peer, TextDeltaEvent, TurnError, TurnFinal, now

from .api import BadRequest, guarded, turn_id_for
from .security import read_body

if TYPE_CHECKING:
    from .app import Ingress

__all__ = ["agent_for_model", "openai_routes"]


class ChatMessageIn(msgspec.Struct):
    role: str
    content: str | list[dict[str, Any]] | None = None


class ChatRequest(msgspec.Struct):
    model: str
    messages: list[ChatMessageIn]
    stream: bool = False
    user: str | None = None


def oa_error(
    status: int,
    message: str,
    *,
    type_: str = "invalid_request_error",
    param: str | None = None,
    code: str | None = None,
) -> JSONResponse:
    return JSONResponse(
        {"error": {"message": message, "type": type_, "param": param, "code": code}}, status_code=status
    )


def agent_for_model(model: str) -> str:
    for prefix in ("clawmesh/", "agent:"):
        if model.startswith(prefix):
            return model[len(prefix) :]
    return model


def _text(content: str | list[dict[str, Any]] | None) -> str:
    if isinstance(content, str):
        return content
    if not content:
        return ""
    return "".join(
        str(part.get("text", "")) for part in content if part.get("type") in ("text", "input_text")
    )


def openai_routes(ingress: Ingress) -> list[Route]:
    turns = ingress.turns

    def parse(data: bytes) -> ChatRequest:
        try:
            return msgspec.json.decode(data, type=ChatRequest)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            raise BadRequest(oa_error(400, f"invalid request: {exc}")) from None

    async def models(request: Request) -> Response:
        config = ingress.ctx.holder.current
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

    async def completions(request: Request) -> Response:
        body = parse(await read_body(request, turns.body_limit()))
        config = ingress.ctx.holder.current
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
        text = _text(users[-1].content)
        peer_id = (body.user or "openai").strip() or "openai"
        turn_id = turn_id_for("api", "default", None)
        inbound = InboundMessage(
            id=turn_id,
            channel="api",
            account_id="default",
            peer=Peer(kind="direct", id=peer_id),
            text=text,
            agent_id=agent.id if agent else agent_id,
            received_at=now(),
            reply_subject=ingress.reply_subject,
            reply_events="all" if body.stream else "final",
            metadata={"api": "openai.chat.completions"},
        )
        sub = await turns.submit(inbound, f"in:{turn_id}", request.headers)
        completion_id = f"chatcmpl-{turn_id}"
        created = int(time.time())
        if body.stream:
            return StreamingResponse(
                _stream(sub, completion_id, created, body.model), media_type="text/event-stream"
            )
        try:
            decision = await turns.decision(sub, turns.route_wait())
            if decision is not None and not decision.ok:
                return oa_error(
                    404 if decision.error_code == "UNKNOWN_AGENT" else 422,
                    decision.error_message or "routing failed",
                    code=decision.error_code,
                )
            final: Any = None
            async for item in turns.events(sub, turns.turn_timeout()):
                final = item
        except TimeoutError:
            return oa_error(504, "the agent did not answer in time", type_="server_error", code="timeout")
        finally:
            turns.close(sub)
        if isinstance(final, TurnError):
            return oa_error(502, f"{final.code}: {final.message}", type_="server_error", code=final.code)
        assert isinstance(final, TurnFinal)
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

    async def _stream(sub: Any, completion_id: str, created: int, model: str) -> AsyncIterator[bytes]:
        def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
            data = {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }
            return b"data: " + json.dumps(data, ensure_ascii=False).encode() + b"\n\n"

        try:
            yield chunk({"role": "assistant", "content": ""})
            decision = await turns.decision(sub, turns.route_wait())
            if decision is not None and not decision.ok:
                err = {
                    "error": {
                        "message": decision.error_message,
                        "type": "invalid_request_error",
                        "code": decision.error_code,
                    }
                }
                yield b"data: " + json.dumps(err).encode() + b"\n\n"
                return
            async for item in turns.events(sub, turns.turn_timeout()):
                if isinstance(item, TextDeltaEvent):
                    yield chunk({"content": item.text})
                elif isinstance(item, TurnError):
                    err = {
                        "error": {
                            "message": f"{item.code}: {item.message}",
                            "type": "server_error",
                            "code": item.code,
                        }
                    }
                    yield b"data: " + json.dumps(err).encode() + b"\n\n"
                    return
                elif isinstance(item, TurnFinal):
                    yield chunk({}, "stop")
            yield b"data: [DONE]\n\n"
        except TimeoutError:
            err = {
                "error": {
                    "message": "the agent did not answer in time",
                    "type": "server_error",
                    "code": "timeout",
                }
            }
            yield b"data: " + json.dumps(err).encode() + b"\n\n"
        finally:
            turns.close(sub)

    return [
        Route("/v1/chat/completions", guarded(ingress, completions), methods=["POST"]),
        Route("/v1/models", guarded(ingress, models), methods=["GET"]),
    ]
