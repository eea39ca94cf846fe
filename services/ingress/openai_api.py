"""OpenAI-compatible endpoints, so any OpenAI client library can talk to an agent, shaped as
OpenClaw serves them (docs/gateway/openai-http-api.md of OpenClaw).

POST /v1/chat/completions (streaming or not), GET /v1/models, GET /v1/models/{id}.
`model` names the agent, the session is private unless `user` or `x-openclaw-session-key`
names one (openai_target.py); the conversation becomes one turn (openai_prompt.py). Client
`tools` are offered to the model, and when it calls one the turn ends with `tool_calls` for
the caller to run. `gateway.http.endpoints.chatCompletions.enabled: false` turns it all off.
Every error is in OpenAI's shape.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import math
import re
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any, Final, Literal

import msgspec
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from clawmesh.bus import ServiceContext
from clawmesh.config import Config
from clawmesh.ids import Id
from clawmesh.wire import (
    Attachment,
    ClientTool,
    ErrorCode,
    InboundMessage,
    Peer,
    RouteDecision,
    TextDeltaEvent,
    TurnError,
    TurnFinal,
    TurnOptions,
    now,
)

from .http import (
    InvalidBody,
    RequestGuard,
    openai_error,
    render_openai_error,
    routing_error_status,
    sse_data,
    sse_response,
)
from .openai_prompt import ChatMessageIn, ContentPart, PromptError, build_prompt
from .openai_target import BadTarget, Target, model_ids, resolve_target, session_key_header
from .turns import PendingTurn, TurnClient, turn_id_for

__all__ = [
    "ChatRequest",
    "ContentPart",
    "FunctionIn",
    "Invalid",
    "OpenAIAPI",
    "ToolChoiceIn",
    "ToolIn",
    "chat_completions_enabled",
    "images_from",
    "oa_error",
    "token_cap",
    "tools_from",
    "turn_options",
]

# OpenClaw's limits on the current message's images
MAX_IMAGE_PARTS: Final = 8
MAX_IMAGE_BYTES: Final = 10 * 1024 * 1024
_DATA_URL: Final = re.compile(r"^data:([^,]*?),(.*)$", re.I | re.S)
_STOP_REASONS: Final = {"max_tokens": "length", "refusal": "content_filter"}

# OpenAI's own error codes, for OpenAI clients; everything else carries ours (wire.ErrorCode)
OpenAICode = Literal["model_not_found", "timeout"]


class StreamOptions(msgspec.Struct):
    include_usage: bool | None = None


class FunctionIn(msgspec.Struct):
    name: Annotated[str, msgspec.Meta(max_length=256)] = ""
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class ToolIn(msgspec.Struct):
    type: str = ""
    function: FunctionIn | None = None


class ToolChoiceFunction(msgspec.Struct):
    name: str = ""


class ToolChoiceIn(msgspec.Struct):
    type: str = ""
    function: ToolChoiceFunction | None = None
    name: str | None = None


class ChatRequest(msgspec.Struct):
    messages: list[ChatMessageIn]
    model: Id = "openclaw"
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    user: Id | None = None  # becomes part of the session key: bounded like every id
    tools: list[ToolIn] | None = None
    tool_choice: str | ToolChoiceIn | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    seed: float | None = None
    stop: str | list[str] | None = None


class Invalid(Exception):
    """A request field out of range or unsupported: a 400 naming `param`."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


def oa_error(
    status: int,
    message: str,
    *,
    type_: str = "invalid_request_error",
    param: str | None = None,
    code: ErrorCode | OpenAICode | str | None = None,
) -> JSONResponse:
    """An error response in OpenAI's shape, which client libraries turn into their exceptions."""
    return openai_error(status, message, type_=type_, param=param, code=code)


def chat_completions_enabled(config: Config) -> bool:
    """`gateway.http.endpoints.chatCompletions.enabled`; served unless it is `false`."""
    gw = config.document.gateway
    endpoint = gw.http.endpoints.chat_completions if gw and gw.http and gw.http.endpoints else None
    return endpoint is None or endpoint.enabled is not False


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
    return oa_error(400, f"invalid request: {exc.detail}", code="invalid_request")


def _ranged(value: float | None, name: str, low: float, high: float, text: str) -> float | None:
    if value is None:
        return None
    if not math.isfinite(value):
        raise Invalid(f"`{name}` must be a finite number.", name)
    if not low <= value <= high:
        raise Invalid(f"`{name}` must be between {text}.", name)
    return value


def token_cap(value: int | None, name: str) -> int | None:
    if value is not None and not 0 < value <= 2**53 - 1:
        raise Invalid(f"{name} must be a positive safe integer", name)
    return value


def _stop(value: str | list[str] | None) -> list[str]:
    if value is None:
        return []
    sequences = [value] if isinstance(value, str) else value
    if len(sequences) > 4:
        raise Invalid("Invalid stop: stop supports at most 4 sequences", "stop")
    if any(not s for s in sequences):
        raise Invalid("Invalid stop: stop entries must be non-empty strings", "stop")
    return sequences


def tools_from(
    offered: list[ToolIn] | None, choice: str | ToolChoiceIn | None
) -> tuple[list[ClientTool], str | None]:
    tools: list[ClientTool] = []
    for i, tool in enumerate(offered or ()):
        if tool.type != "function":
            raise Invalid(f"tools[{i}]: only function tools are supported", "tools")
        fn = tool.function
        if fn is None or not fn.name.strip():
            raise Invalid(f"tools[{i}]: tool.function.name is required", "tools")
        tools.append(
            ClientTool(name=fn.name.strip(), description=fn.description or "", parameters=fn.parameters or {})
        )
    if choice is None:
        return tools, None
    if isinstance(choice, str):
        if choice not in ("auto", "none", "required"):
            raise Invalid(f"tool_choice: {choice!r} is not supported (auto, none, required)", "tool_choice")
        if choice == "required" and not tools:
            raise Invalid("tool_choice is 'required' but no tools were provided", "tool_choice")
        return tools, choice
    # Chat Completions nests the name in `function`, Responses has it at the top
    name = (choice.function.name if choice.function is not None else choice.name or "").strip()
    if choice.type != "function" or not name:
        raise Invalid(
            "tool_choice: only 'auto', 'none', 'required' or {type: 'function', function: {name}}",
            "tool_choice",
        )
    if name not in {t.name for t in tools}:
        raise Invalid(f"tool_choice: function {name!r} is not among the provided tools", "tool_choice")
    return tools, name


def _image(url: str, index: int) -> Attachment:
    """A `data:` URL as an attachment. Remote URLs are refused: fetching them for the caller
    would let it reach whatever the gateway can reach (OpenClaw's `images.allowUrl` is off
    by default too)."""
    found = _DATA_URL.match(url)
    if found is None:
        raise Invalid(f"image {index}: only data: URLs are accepted (base64-encoded images)", "messages")
    meta = [p.strip() for p in found.group(1).split(";") if p.strip()]
    if not any(p.lower() == "base64" for p in meta):
        raise Invalid(f"image {index}: image_url data URI must be base64 encoded", "messages")
    mime = next((p.lower() for p in meta if "/" in p), "")
    if not mime.startswith("image/"):
        raise Invalid(f"image {index}: {mime or 'no media type'} is not an image type", "messages")
    try:
        data = base64.b64decode(found.group(2).strip(), validate=True)
    except (binascii.Error, ValueError):
        raise Invalid(f"image {index}: the data is not valid base64", "messages") from None
    if not data:
        raise Invalid(f"image {index}: image_url data URI is missing payload data", "messages")
    if len(data) > MAX_IMAGE_BYTES:
        raise Invalid(f"image {index}: {len(data)} bytes; at most {MAX_IMAGE_BYTES}", "messages")
    return Attachment(name=f"image-{index}", mime=mime, data=data)


def images_from(urls: tuple[str, ...] | list[str]) -> list[Attachment]:
    """The images of a request as attachments (`Invalid` when one is not acceptable)."""
    if len(urls) > MAX_IMAGE_PARTS:
        raise Invalid(f"Too many image_url parts ({len(urls)}; limit {MAX_IMAGE_PARTS})", "messages")
    return [_image(url, i) for i, url in enumerate(urls)]


def turn_options(
    *,
    system: str,
    model: str | None,
    temperature: float | None,
    top_p: float | None,
    max_tokens: int | None,
    stop: list[str],
    tools: list[ClientTool],
    tool_choice: str | None,
) -> TurnOptions | None:
    """The turn's options, None when the caller set none (validated already)."""
    options = TurnOptions(
        model=model,
        system=system,
        temperature=_ranged(temperature, "temperature", 0, 2, "0 and 2"),
        top_p=_ranged(top_p, "top_p", 0, 1, "0 and 1"),
        max_tokens=max_tokens,
        stop=stop,
        tools=tools,
        tool_choice=tool_choice,
    )
    return None if options == TurnOptions() else options


def _chat_options(body: ChatRequest, system: str, model: str | None) -> TurnOptions | None:
    max_tokens = token_cap(body.max_tokens, "max_tokens")
    max_completion = token_cap(body.max_completion_tokens, "max_completion_tokens")
    _ranged(body.frequency_penalty, "frequency_penalty", -2, 2, "-2.0 and 2.0")
    _ranged(body.presence_penalty, "presence_penalty", -2, 2, "-2.0 and 2.0")
    if body.seed is not None and (not math.isfinite(body.seed) or body.seed != int(body.seed)):
        raise Invalid("`seed` must be an integer.", "seed")
    tools, choice = tools_from(body.tools, body.tool_choice)
    return turn_options(
        system=system,
        model=model,
        temperature=body.temperature,
        top_p=body.top_p,
        max_tokens=max_completion if max_completion is not None else max_tokens,
        stop=_stop(body.stop),
        tools=tools,
        tool_choice=choice,
    )


def _finish_reason(final: TurnFinal) -> str:
    if final.tool_calls:
        return "tool_calls"
    return _STOP_REASONS.get(final.stop_reason, "stop")


def _tool_calls(final: TurnFinal) -> list[dict[str, Any]]:
    return [
        {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
        for c in final.tool_calls
    ]


def _usage(final: TurnFinal) -> dict[str, int]:
    return {
        "prompt_tokens": final.input_tokens,
        "completion_tokens": final.output_tokens,
        "total_tokens": final.input_tokens + final.output_tokens,
    }


class OpenAIAPI:
    """The OpenAI-compatible routes."""

    def __init__(self, ctx: ServiceContext, turns: TurnClient, guard: RequestGuard) -> None:
        self.ctx = ctx
        self.turns = turns
        self.guard = guard

    def routes(self) -> list[Route]:
        guard = self.guard
        openai = render_openai_error
        return [
            Route(
                "/v1/chat/completions",
                guard(self.completions, on_invalid=_invalid_body, render=openai),
                methods=["POST"],
            ),
            Route("/v1/models", guard(self.models, render=openai), methods=["GET"]),
            Route("/v1/models/{model_id:path}", guard(self.model, render=openai), methods=["GET"]),
        ]

    def _disabled(self) -> Response | None:
        if chat_completions_enabled(self.ctx.holder.current):
            return None
        return oa_error(
            404,
            "the OpenAI-compatible API is disabled (gateway.http.endpoints.chatCompletions.enabled)",
            code="not_found",
        )

    async def models(self, request: Request) -> Response:
        if (disabled := self._disabled()) is not None:
            return disabled
        created = int(time.time())
        return JSONResponse(
            {
                "object": "list",
                "data": [
                    {"id": m, "object": "model", "created": created, "owned_by": "clawmesh"}
                    for m in model_ids(self.ctx.holder.current)
                ],
            }
        )

    async def model(self, request: Request) -> Response:
        if (disabled := self._disabled()) is not None:
            return disabled
        model_id = request.path_params["model_id"]
        if model_id not in model_ids(self.ctx.holder.current):
            return oa_error(
                404, f"The model `{model_id[:300]}` does not exist", param="model", code="model_not_found"
            )
        return JSONResponse(
            {"id": model_id, "object": "model", "created": int(time.time()), "owned_by": "clawmesh"}
        )

    async def submit(
        self,
        request: Request,
        *,
        target: Target,
        text: str,
        images: list[Attachment],
        options: TurnOptions | None,
        user: str | None,
        stream: bool,
        api: str,
    ) -> PendingTurn:
        """Store the turn for `target`, to be followed by this instance (a surface's request)."""
        turn_id = turn_id_for("api", "default", None)
        inbound = InboundMessage(
            id=turn_id,
            channel="api",
            account_id="default",
            peer=Peer(kind="direct", id=(user or "openai").strip() or "openai"),
            text=text,
            attachments=images,
            agent_id=target.agent_id,
            session_key=target.session_key,
            options=options,
            received_at=now(),
            reply_subject=self.turns.reply_subject,
            reply_events="all" if stream else "final",
            metadata={"api": api, "messageChannel": target.message_channel},
        )
        return await self.turns.submit(inbound, f"in:{turn_id}", request.headers)

    async def final(self, turn: PendingTurn) -> TurnFinal | Response:
        """The turn's final reply, or the OpenAI-shaped error that ends it (and closes it)."""
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
        return final

    async def completions(self, request: Request) -> Response:
        if (disabled := self._disabled()) is not None:
            return disabled
        body = await self.guard.read(request, ChatRequest)
        config = self.ctx.holder.current
        try:
            target = resolve_target(config, body.model, body.user, request.headers)
        except BadTarget as exc:
            return oa_error(exc.status, exc.message, param=exc.param, code=exc.code)
        try:
            prompt = build_prompt(body.messages)
            options = _chat_options(body, prompt.system, target.model_override)
            images = images_from(prompt.image_urls)
        except PromptError as exc:
            return oa_error(400, str(exc), param=exc.param)
        except Invalid as exc:
            return oa_error(400, exc.message, param=exc.param)
        stream = bool(body.stream)
        turn = await self.submit(
            request,
            target=target,
            text=prompt.text,
            images=images,
            options=options,
            user=body.user,
            stream=stream,
            api="openai.chat.completions",
        )
        completion_id = f"chatcmpl-{turn.turn_id}"
        created = int(time.time())
        if stream:
            usage = bool(body.stream_options and body.stream_options.include_usage)
            return sse_response(
                self._stream(turn, completion_id, created, body.model, usage),
                session_key_header(target.session_key),
                on_close=turn.close,
            )
        final = await self.final(turn)
        if not isinstance(final, TurnFinal):
            return final
        message: dict[str, Any] = {"role": "assistant", "content": final.text}
        if final.tool_calls:
            message["tool_calls"] = _tool_calls(final)
        return JSONResponse(
            {
                "id": completion_id,
                "object": "chat.completion",
                "created": created,
                "model": body.model,
                "choices": [{"index": 0, "message": message, "finish_reason": _finish_reason(final)}],
                "usage": _usage(final),
            },
            headers=session_key_header(target.session_key),
        )

    async def _stream(
        self, turn: PendingTurn, completion_id: str, created: int, model: str, include_usage: bool
    ) -> AsyncIterator[bytes]:
        # OpenClaw ends every stream, a failed one too, with [DONE]
        async for frame in self._frames(turn, completion_id, created, model, include_usage):
            yield frame
        yield sse_data(b"[DONE]")

    async def _frames(
        self, turn: PendingTurn, completion_id: str, created: int, model: str, include_usage: bool
    ) -> AsyncIterator[bytes]:
        """`chat.completion.chunk`s: the role, the text deltas, the tool calls, the finish
        reason, the usage when asked for, then `[DONE]`; an error frame and `[DONE]` instead
        when routing fails, the turn fails or no event comes in time."""

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
                        for index, call in enumerate(item.tool_calls):
                            yield chunk(
                                {
                                    "tool_calls": [
                                        {
                                            "index": index,
                                            "id": call.id,
                                            "type": "function",
                                            "function": {"name": call.name, "arguments": call.arguments},
                                        }
                                    ]
                                }
                            )
                        yield chunk({}, _finish_reason(item))
                        if include_usage:
                            yield sse_data(
                                {
                                    "id": completion_id,
                                    "object": "chat.completion.chunk",
                                    "created": created,
                                    "model": model,
                                    "choices": [],
                                    "usage": _usage(item),
                                }
                            )
            except TimeoutError:
                yield _error_frame("the agent did not answer in time", "server_error", "timeout")
