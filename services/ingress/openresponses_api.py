"""`POST /v1/responses`: the OpenResponses (OpenAI Responses) endpoint, as OpenClaw serves it
(its docs/gateway/openresponses-http-api.md).

Agent, session and headers as on /v1/chat/completions (sessions `agent:<id>:openresponses:…`);
`input` (a string or items: `message`, `function_call`, `function_call_output`, with
`input_text`/`output_text`/`input_image` parts) becomes one turn the way chat messages do;
`instructions` join the system prompt; client `tools` come back as `function_call` output
items. `previous_response_id` continues that response's session while this ingress instance
remembers it. `gateway.http.endpoints.responses.enabled: false` turns it off.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any, Final

import msgspec
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from clawmesh.config import Config
from clawmesh.ids import Id
from clawmesh.wire import ClientToolCall, RouteDecision, TextDeltaEvent, TurnError, TurnFinal

from .http import InvalidBody, render_openai_error, sse, sse_data, sse_response
from .openai_api import (
    FunctionIn,
    Invalid,
    OpenAIAPI,
    ToolChoiceIn,
    ToolIn,
    images_from,
    oa_error,
    token_cap,
    tools_from,
    turn_options,
)
from .openai_prompt import ChatMessageIn, ContentPart, FunctionCallIn, PromptError, ToolCallIn, build_prompt
from .openai_target import BadTarget, header, resolve_target, session_key_header
from .turns import PendingTurn

__all__ = ["ResponsesAPI", "ResponsesRequest", "responses_enabled"]

# response id → session key, for `previous_response_id`; this instance's most recent only
_REMEMBERED: Final = 10_000


class ImageSource(msgspec.Struct):
    type: str = ""
    url: str | None = None
    media_type: str | None = None
    data: str | None = None


class InputPart(msgspec.Struct):
    type: str = ""
    text: str | None = None
    image_url: str | None = None
    source: ImageSource | None = None


class InputItem(msgspec.Struct):
    type: str = "message"
    role: str | None = None
    content: str | list[InputPart] | None = None
    call_id: str | None = None
    name: str | None = None
    arguments: str | None = None
    output: str | list[InputPart] | None = None


class FunctionToolIn(msgspec.Struct):
    """Responses spell a function tool flat: `{type, name, description, parameters}`."""

    type: str = ""
    name: str = ""
    description: str | None = None
    parameters: dict[str, Any] | None = None


class ResponsesRequest(msgspec.Struct):
    input: str | list[InputItem]
    model: Id = "openclaw"
    instructions: str | None = None
    tools: list[FunctionToolIn] | None = None
    tool_choice: str | ToolChoiceIn | None = None
    stream: bool | None = None
    max_output_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    user: Id | None = None
    previous_response_id: Id | None = None
    # accepted for compatibility, ignored (as OpenClaw does)
    max_tool_calls: int | None = None
    reasoning: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None
    store: bool | None = None
    truncation: str | None = None


def responses_enabled(config: Config) -> bool:
    """`gateway.http.endpoints.responses.enabled`; served unless it is `false`."""
    gw = config.document.gateway
    endpoint = gw.http.endpoints.responses if gw and gw.http and gw.http.endpoints else None
    return endpoint is None or endpoint.enabled is not False


def _part_text(parts: str | list[InputPart] | None) -> str | list[ContentPart]:
    if parts is None:
        return ""
    if isinstance(parts, str):
        return parts
    out: list[ContentPart] = []
    for part in parts:
        if part.type in ("input_text", "output_text", "text"):
            out.append(ContentPart(type="text", text=part.text or ""))
        elif part.type == "input_image":
            out.append(ContentPart(type="image_url", image_url=_image_url(part)))
    return out


def _image_url(part: InputPart) -> str:
    if part.image_url:
        return part.image_url
    source = part.source
    if source is None:
        return ""
    if source.type == "base64" and source.data:
        return f"data:{source.media_type or 'application/octet-stream'};base64,{source.data}"
    return source.url or ""


def _messages(body: ResponsesRequest) -> list[ChatMessageIn]:
    """Responses input items as chat messages (the prompt is built from those)."""
    if isinstance(body.input, str):
        messages = [ChatMessageIn(role="user", content=body.input)]
    else:
        messages = []
        for i, item in enumerate(body.input):
            if item.type == "message":
                if not item.role:
                    raise Invalid(f"input[{i}]: a message item needs a role", "input")
                messages.append(ChatMessageIn(role=item.role, content=_part_text(item.content)))
            elif item.type == "function_call":
                call = ToolCallIn(
                    id=item.call_id or "",
                    function=FunctionCallIn(name=item.name or "", arguments=item.arguments),
                )
                messages.append(ChatMessageIn(role="assistant", tool_calls=[call]))
            elif item.type == "function_call_output":
                if not item.call_id:
                    raise Invalid(f"input[{i}]: function_call_output needs call_id", "input")
                messages.append(
                    ChatMessageIn(role="tool", tool_call_id=item.call_id, content=_part_text(item.output))
                )
            # reasoning, item_reference: accepted, not part of the prompt (as OpenClaw does)
    if body.instructions:
        messages.insert(0, ChatMessageIn(role="system", content=body.instructions))
    return messages


def _usage(final: TurnFinal | None) -> dict[str, Any]:
    tokens_in = final.input_tokens if final else 0
    tokens_out = final.output_tokens if final else 0
    return {
        "input_tokens": tokens_in,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": tokens_out,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": tokens_in + tokens_out,
    }


def _message_item(item_id: str, text: str, status: str) -> dict[str, Any]:
    return {
        "type": "message",
        "id": item_id,
        "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": []}],
        "status": status,
    }


def _call_item(call: ClientToolCall) -> dict[str, Any]:
    return {
        "type": "function_call",
        "id": f"fc_{uuid.uuid4().hex}",
        "call_id": call.id,
        "name": call.name,
        "arguments": call.arguments,
        "status": "completed",
    }


class _Response:
    """One response's identity and its resource at each stage."""

    def __init__(self, turn_id: str, model: str) -> None:
        self.id = f"resp_{turn_id}"
        self.item_id = f"msg_{turn_id}"
        self.created = int(time.time())
        self.model = model

    def resource(
        self,
        status: str,
        output: list[dict[str, Any]],
        final: TurnFinal | None = None,
        error: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": self.id,
            "object": "response",
            "created_at": self.created,
            "status": status,
            "model": self.model,
            "output": output,
            "usage": _usage(final),
            "error": error,
        }
        if status == "incomplete":
            body["incomplete_details"] = {"reason": "max_output_tokens"}
        return body

    def completed(self, final: TurnFinal) -> dict[str, Any]:
        status = "incomplete" if final.stop_reason == "max_tokens" else "completed"
        output = [_message_item(self.item_id, final.text, status)]
        output += [_call_item(c) for c in final.tool_calls]
        return self.resource(status, output, final)


def _event(data: dict[str, Any]) -> bytes:
    return sse(data["type"], data)


class ResponsesAPI:
    """`POST /v1/responses`, on the chat surface's turn submission."""

    def __init__(self, chat: OpenAIAPI) -> None:
        self.chat = chat
        self._sessions: OrderedDict[str, tuple[str, str]] = OrderedDict()  # id → (agent, session key)

    def routes(self) -> list[Route]:
        guard = self.chat.guard
        handler = guard(self.create, on_invalid=_invalid_body, render=render_openai_error)
        return [Route("/v1/responses", handler, methods=["POST"])]

    def _remember(self, response_id: str, agent_id: str, session_key: str) -> None:
        self._sessions[response_id] = (agent_id, session_key)
        if len(self._sessions) > _REMEMBERED:
            self._sessions.popitem(last=False)

    async def create(self, request: Request) -> Response:
        config = self.chat.ctx.holder.current
        if not responses_enabled(config):
            return oa_error(
                404,
                "the Responses API is disabled (gateway.http.endpoints.responses.enabled)",
                code="not_found",
            )
        body = await self.chat.guard.read(request, ResponsesRequest)
        try:
            target = resolve_target(config, body.model, body.user, request.headers, prefix="openresponses")
        except BadTarget as exc:
            return oa_error(exc.status, exc.message, param=exc.param, code=exc.code)
        previous = self._sessions.get(body.previous_response_id or "")
        # the earlier response's session, when the request is for the same agent and names none
        if (
            previous is not None
            and previous[0] == target.agent_id
            and header(request.headers, "session-key") is None
        ):
            target = replace(target, session_key=previous[1])
        try:
            prompt = build_prompt(_messages(body))
            tools, choice = tools_from(
                [_as_chat_tool(t) for t in body.tools or ()] if body.tools is not None else None,
                body.tool_choice,
            )
            options = turn_options(
                system=prompt.system,
                model=target.model_override,
                temperature=body.temperature,
                top_p=body.top_p,
                max_tokens=token_cap(body.max_output_tokens, "max_output_tokens"),
                stop=[],
                tools=tools,
                tool_choice=choice,
            )
            images = images_from(prompt.image_urls)
        except PromptError as exc:
            return oa_error(400, str(exc).replace("messages", "input"), param="input")
        except Invalid as exc:
            return oa_error(400, exc.message, param=exc.param)
        stream = bool(body.stream)
        turn = await self.chat.submit(
            request,
            target=target,
            text=prompt.text,
            images=images,
            options=options,
            user=body.user,
            stream=stream,
            api="openresponses",
        )
        response = _Response(turn.turn_id, body.model)
        self._remember(response.id, target.agent_id, target.session_key)
        headers = session_key_header(target.session_key)
        if stream:
            return sse_response(self._stream(turn, response), headers, on_close=turn.close)
        final = await self.chat.final(turn)
        if not isinstance(final, TurnFinal):
            return final
        return JSONResponse(response.completed(final), headers=headers)

    async def _stream(self, turn: PendingTurn, response: _Response) -> AsyncIterator[bytes]:
        async for frame in self._events(turn, response):
            yield frame
        yield sse_data(b"[DONE]")

    async def _events(self, turn: PendingTurn, response: _Response) -> AsyncIterator[bytes]:
        """response.created … output_text.delta … response.completed (or .incomplete), or
        response.failed when routing or the turn fails or nothing comes in time."""
        item = response.item_id
        where = {"item_id": item, "output_index": 0, "content_index": 0}

        def failed(code: str, message: str) -> bytes:
            error = {"code": code, "message": message}
            return _event(
                {"type": "response.failed", "response": response.resource("failed", [], error=error)}
            )

        turns = self.chat.turns
        with contextlib.closing(turn):
            start = response.resource("in_progress", [])
            yield _event({"type": "response.created", "response": start})
            yield _event({"type": "response.in_progress", "response": start})
            empty = {**_message_item(item, "", "in_progress"), "content": []}
            yield _event({"type": "response.output_item.added", "output_index": 0, "item": empty})
            part = {"type": "output_text", "text": "", "annotations": []}
            yield _event({"type": "response.content_part.added", **where, "part": part})
            try:
                decision = await turn.decision(turns.route_wait())
                if decision is not None and not decision.ok:
                    yield failed(
                        decision.error_code or "ROUTING_ERROR", decision.error_message or "routing failed"
                    )
                    return
                async for event in turn.events(turns.turn_timeout()):
                    if isinstance(event, RouteDecision) and not event.ok:
                        yield failed(
                            event.error_code or "ROUTING_ERROR", event.error_message or "routing failed"
                        )
                        return
                    if isinstance(event, TextDeltaEvent):
                        yield _event({"type": "response.output_text.delta", **where, "delta": event.text})
                    elif isinstance(event, TurnError):
                        yield failed(event.code, event.message)
                        return
                    elif isinstance(event, TurnFinal):
                        done = response.completed(event)
                        message = done["output"][0]
                        yield _event({"type": "response.output_text.done", **where, "text": event.text})
                        yield _event(
                            {"type": "response.content_part.done", **where, "part": message["content"][0]}
                        )
                        yield _event(
                            {"type": "response.output_item.done", "output_index": 0, "item": message}
                        )
                        for index, call in enumerate(done["output"][1:], start=1):
                            yield _event(
                                {"type": "response.output_item.added", "output_index": index, "item": call}
                            )
                            yield _event(
                                {"type": "response.output_item.done", "output_index": index, "item": call}
                            )
                        yield _event({"type": f"response.{done['status']}", "response": done})
            except TimeoutError:
                yield failed("timeout", "the agent did not answer in time")


def _as_chat_tool(tool: FunctionToolIn) -> ToolIn:
    function = None
    if tool.type == "function":
        function = FunctionIn(name=tool.name, description=tool.description, parameters=tool.parameters)
    return ToolIn(type=tool.type, function=function)


def _invalid_body(exc: InvalidBody) -> Response:
    return oa_error(400, f"invalid request: {exc.detail}", code="invalid_request")
