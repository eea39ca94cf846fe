"""Anthropic Messages API (`POST /v1/messages`, streaming), spoken directly over httpx (see `_http`)."""

from __future__ import annotations

import base64
import re
from collections.abc import AsyncIterable, AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import httpx
import msgspec

from ._defaults import DEFAULT_ANTHROPIC_BASE_URL
from ._errors import classify_error
from ._http import POOL_LIMITS, LoopClients, iter_sse, post_stream, stream_error
from ._json import arguments_from_json
from ._types import (
    AssistantMessage,
    ChatMessage,
    Credential,
    ModelRequest,
    ProviderError,
    StreamEvent,
    StreamStop,
    TextDelta,
    ToolCall,
    ToolResultMessage,
    ToolSpec,
    Usage,
    UserMessage,
)

__all__ = [
    "DEFAULT_ANTHROPIC_BASE_URL",
    "AnthropicEvent",
    "AnthropicProvider",
    "parse_anthropic_stream",
    "to_anthropic_messages",
]

# The API version every request names (the one the SDK sent; the stream format is stable).
_API_VERSION: Final = "2023-06-01"
_ID_UNSAFE: Final = re.compile(r"[^A-Za-z0-9_-]")


def _tool_id(raw: str) -> str:
    # Anthropic accepts tool_use ids matching ^[A-Za-z0-9_-]+$; ids made by other providers
    # (after a failover mid-conversation) may not. Same mapping on both sides keeps pairs intact.
    return _ID_UNSAFE.sub("_", raw) or "toolu_empty"


def to_anthropic_messages(messages: Sequence[ChatMessage]) -> list[dict[str, Any]]:
    """Provider-neutral history → Messages API `messages`.

    Tool results go back as `tool_result` blocks in a user turn; consecutive user-side
    messages (several tool results, or results followed by a user text) become one user
    message, as the API requires every result of an assistant turn in the very next message.
    """
    wire: list[dict[str, Any]] = []

    def add_user_block(block: dict[str, Any]) -> None:
        last = wire[-1] if wire else None
        if last is not None and last["role"] == "user":
            last["content"].append(block)
        else:
            wire.append({"role": "user", "content": [block]})

    for message in messages:
        if isinstance(message, UserMessage):
            for image in message.images:
                source = {
                    "type": "base64",
                    "media_type": image.mime,
                    "data": base64.b64encode(image.data).decode(),
                }
                add_user_block({"type": "image", "source": source})
            if message.text:  # the API rejects empty text blocks
                add_user_block({"type": "text", "text": message.text})
        elif isinstance(message, ToolResultMessage):
            block: dict[str, Any] = {
                "type": "tool_result",
                "tool_use_id": _tool_id(message.tool_call_id),
                "content": message.content,
            }
            if message.is_error:
                block["is_error"] = True
            add_user_block(block)
        elif isinstance(message, AssistantMessage):
            content: list[dict[str, Any]] = []
            if message.text:
                content.append({"type": "text", "text": message.text})
            content += [
                {"type": "tool_use", "id": _tool_id(call.id), "name": call.name, "input": call.arguments}
                for call in message.tool_calls
            ]
            if content:  # an empty assistant turn is invalid; dropping it loses nothing
                wire.append({"role": "assistant", "content": content})
    return wire


def _sampling(request: ModelRequest) -> dict[str, Any]:
    """Sampling and tool-choice fields, sent only when asked for (the current Messages API no
    longer lists `temperature`; compatible proxies still take it)."""
    extra: dict[str, Any] = {}
    if request.temperature is not None:
        extra["temperature"] = request.temperature
    if request.top_p is not None:
        extra["top_p"] = request.top_p
    if request.stop:
        extra["stop_sequences"] = list(request.stop)
    if request.tool_choice is not None and request.tools:
        choice = request.tool_choice
        kinds = {"auto": {"type": "auto"}, "none": {"type": "none"}, "required": {"type": "any"}}
        extra["tool_choice"] = kinds.get(choice, {"type": "tool", "name": choice})
    return extra


def to_anthropic_tools(tools: Sequence[ToolSpec]) -> list[dict[str, Any]]:
    return [{"name": t.name, "description": t.description, "input_schema": t.parameters} for t in tools]


# The parts of the stream events the runner uses; other events and fields are ignored.
class _Usage(msgspec.Struct):
    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_creation_input_tokens: int | None = None
    cache_read_input_tokens: int | None = None


class _Message(msgspec.Struct):
    usage: _Usage | None = None
    # Only in a non-streamed response:
    content: list[_Block] | None = None
    stop_reason: str | None = None


class _Block(msgspec.Struct):
    type: str = ""
    id: str = ""
    name: str = ""
    input: object = None
    text: str = ""


class _Delta(msgspec.Struct):
    type: str = ""
    text: str = ""
    partial_json: str = ""
    stop_reason: str | None = None


class AnthropicEvent(msgspec.Struct):
    """One stream event: `type` says which (message_start, content_block_delta, …)."""

    type: str = ""
    index: int = 0
    message: _Message | None = None
    content_block: _Block | None = None
    delta: _Delta | None = None
    usage: _Usage | None = None


_EVENT: Final = msgspec.json.Decoder(AnthropicEvent)


def _input_tokens(usage: _Usage) -> int:
    # Cached prompt tokens are input too; `input_tokens` alone excludes them.
    return (
        (usage.input_tokens or 0)
        + (usage.cache_creation_input_tokens or 0)
        + (usage.cache_read_input_tokens or 0)
    )


@dataclass
class _ToolBlock:
    id: str
    name: str
    initial: Mapping[str, object]
    parts: list[str] = field(default_factory=list)


async def parse_anthropic_stream(
    events: AsyncIterable[AnthropicEvent], *, provider: str, model: str
) -> AsyncIterator[StreamEvent]:
    """Messages stream events → `TextDelta`s and one `StreamStop` (or a `ProviderError`)."""
    seen_any = stopped = False
    stop_reason: str | None = None
    input_tokens = output_tokens = 0
    tools: dict[int, _ToolBlock] = {}
    async for event in events:
        seen_any = True
        kind = event.type
        if kind == "content_block_delta":
            delta = event.delta
            if delta is None:
                continue
            if delta.type == "text_delta":
                if delta.text:
                    yield TextDelta(delta.text)
            elif delta.type == "input_json_delta" and event.index in tools:
                tools[event.index].parts.append(delta.partial_json)
            # thinking / signature / citations deltas carry nothing the runner uses.
        elif kind == "message_start":
            usage = event.message.usage if event.message is not None else None
            if usage is not None:
                input_tokens, output_tokens = _input_tokens(usage), usage.output_tokens or 0
        elif kind == "content_block_start":
            block = event.content_block
            if block is not None and block.type == "tool_use":
                initial = block.input if isinstance(block.input, Mapping) else {}
                tools[event.index] = _ToolBlock(block.id, block.name, initial)
        elif kind == "message_delta":
            if event.delta is not None:
                stop_reason = event.delta.stop_reason or stop_reason
            if event.usage is not None:
                output_tokens = event.usage.output_tokens or 0
                if event.usage.input_tokens is not None:
                    input_tokens = _input_tokens(event.usage)
        elif kind == "message_stop":
            stopped = True
    if not seen_any:
        # OpenClaw's rule: a stream that ends without a single chunk counts as a timeout.
        raise ProviderError("timeout", "stream ended without chunks", provider=provider, model=model)
    if not stopped:
        raise ProviderError("connection", "stream ended before message_stop", provider=provider, model=model)
    calls = tuple(
        ToolCall(
            id=block.id,
            name=block.name,
            arguments=arguments_from_json("".join(block.parts)) if block.parts else dict(block.initial),
        )
        for _, block in sorted(tools.items())
    )
    yield StreamStop(
        stop_reason or ("tool_use" if calls else "end_turn"),
        tool_calls=calls,
        usage=Usage(input_tokens=input_tokens, output_tokens=output_tokens),
    )


class AnthropicProvider:
    """Streams from an Anthropic Messages endpoint (api.anthropic.com or a compatible proxy)."""

    def __init__(
        self,
        name: str = "anthropic",
        *,
        base_url: str = DEFAULT_ANTHROPIC_BASE_URL,
        headers: Mapping[str, str] | None = None,
        timeout: float = 120.0,
    ) -> None:
        self.name = name
        self.base_url = base_url
        self._url = base_url.rstrip("/") + "/v1/messages"
        self._pool = LoopClients(
            lambda: httpx.AsyncClient(
                timeout=timeout,
                limits=POOL_LIMITS,
                headers={
                    "accept": "application/json",
                    "anthropic-version": _API_VERSION,
                    **dict(headers or {}),
                },
            )
        )

    async def stream(self, request: ModelRequest, credential: Credential) -> AsyncIterator[StreamEvent]:
        body: dict[str, Any] = {
            "model": request.model,
            "max_tokens": request.max_tokens,
            "messages": to_anthropic_messages(request.messages),
            "stream": True,
        }
        if request.system:
            body["system"] = request.system
        if request.tools:
            body["tools"] = to_anthropic_tools(request.tools)
        body.update(_sampling(request))
        try:
            async with post_stream(
                self._pool.get(),
                self._url,
                msgspec.json.encode(body),
                _auth_headers(credential),
                request.timeout,
                provider=self.name,
                model=request.model,
            ) as (response, whole):
                events = _whole(whole) if whole is not None else self._events(response, request.model)
                async for event in parse_anthropic_stream(events, provider=self.name, model=request.model):
                    yield event
        except ProviderError:
            raise
        except Exception as exc:
            raise classify_error(exc, provider=self.name, model=request.model) from exc

    async def _events(self, response: httpx.Response, model: str) -> AsyncIterator[AnthropicEvent]:
        async for name, data in iter_sse(response.aiter_bytes()):
            if name == "ping":
                continue
            if name == "error":
                raise stream_error(data, provider=self.name, model=model)
            yield _EVENT.decode(data)

    async def aclose(self) -> None:
        await self._pool.aclose()

    def __repr__(self) -> str:
        return f"<AnthropicProvider {self.name} {self.base_url}>"


# (kind, secret): kind is "api_key", "token" or "none".
CredentialKey = tuple[str, str]


def _client_key(credential: Credential) -> CredentialKey:
    # Anthropic setup tokens (`token` profiles) are told apart from API keys; this API version
    # takes both as a bearer token (as the SDK sends them).
    if credential.kind == "token" and credential.key:
        return ("token", credential.key)
    return ("api_key", credential.key) if credential.key else ("none", "")


def _auth_headers(credential: Credential) -> dict[str, str]:
    # Keyless (a local proxy that needs none): a dummy, as the header is required.
    _, secret = _client_key(credential)
    return {"content-type": "application/json", "authorization": f"Bearer {secret or 'none'}"}


async def _whole(raw: bytes) -> AsyncIterator[AnthropicEvent]:
    """A non-streamed `message` as the stream events that say the same."""
    message = msgspec.json.decode(raw, type=_Message)
    yield AnthropicEvent(type="message_start", message=_Message(usage=message.usage))
    for index, block in enumerate(message.content or ()):
        if block.type == "text" and block.text:
            yield AnthropicEvent(
                type="content_block_delta", index=index, delta=_Delta("text_delta", block.text)
            )
        elif block.type == "tool_use":
            yield AnthropicEvent(type="content_block_start", index=index, content_block=block)
    yield AnthropicEvent(type="message_delta", delta=_Delta(stop_reason=message.stop_reason))
    yield AnthropicEvent(type="message_stop")
