"""Anthropic Messages API (`POST /v1/messages`, streaming) through the official `anthropic` SDK."""

from __future__ import annotations

import base64
import re
from collections.abc import AsyncIterable, AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import anthropic
from anthropic.types import (
    InputJSONDelta,
    RawContentBlockDeltaEvent,
    RawContentBlockStartEvent,
    RawMessageDeltaEvent,
    RawMessageStartEvent,
    RawMessageStopEvent,
    ToolUseBlock,
)
from anthropic.types import TextDelta as SdkTextDelta

from ._defaults import DEFAULT_ANTHROPIC_BASE_URL
from ._errors import classify_error
from ._json import arguments_from_json
from ._pool import ClientPool, CredentialKey
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
    "AnthropicProvider",
    "parse_anthropic_stream",
    "to_anthropic_messages",
]

# Passed explicitly so that the SDK never falls back to os.environ (clawmesh reads the
# environment from the config, which tests and hot reloads control).

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
    """Sampling and tool-choice fields, sent only when asked for (this SDK's Messages API no
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


@dataclass
class _ToolBlock:
    id: str
    name: str
    initial: Mapping[str, object]
    parts: list[str] = field(default_factory=list)


async def parse_anthropic_stream(
    events: AsyncIterable[object], *, provider: str, model: str
) -> AsyncIterator[StreamEvent]:
    """Raw Messages stream events → `TextDelta`s and one `StreamStop` (or a `ProviderError`)."""
    seen_any = stopped = False
    stop_reason: str | None = None
    input_tokens = output_tokens = 0
    tools: dict[int, _ToolBlock] = {}
    async for event in events:
        seen_any = True
        if isinstance(event, RawMessageStartEvent):
            usage = event.message.usage
            # Cached prompt tokens are input too; `input_tokens` alone excludes them.
            input_tokens = (
                usage.input_tokens
                + (usage.cache_creation_input_tokens or 0)
                + (usage.cache_read_input_tokens or 0)
            )
            output_tokens = usage.output_tokens
        elif isinstance(event, RawContentBlockStartEvent):
            block = event.content_block
            if isinstance(block, ToolUseBlock):
                initial = block.input if isinstance(block.input, Mapping) else {}
                tools[event.index] = _ToolBlock(block.id, block.name, initial)
        elif isinstance(event, RawContentBlockDeltaEvent):
            delta = event.delta
            if isinstance(delta, SdkTextDelta):
                if delta.text:
                    yield TextDelta(delta.text)
            elif isinstance(delta, InputJSONDelta) and event.index in tools:
                tools[event.index].parts.append(delta.partial_json)
            # thinking / signature / citations deltas carry nothing the runner uses.
        elif isinstance(event, RawMessageDeltaEvent):
            stop_reason = event.delta.stop_reason or stop_reason
            output_tokens = event.usage.output_tokens
            if event.usage.input_tokens is not None:
                input_tokens = (
                    event.usage.input_tokens
                    + (event.usage.cache_creation_input_tokens or 0)
                    + (event.usage.cache_read_input_tokens or 0)
                )
        elif isinstance(event, RawMessageStopEvent):
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
        self._pool: ClientPool[anthropic.AsyncAnthropic] = ClientPool(
            lambda: anthropic.AsyncAnthropic(
                # A placeholder: every call goes through a per-credential copy.
                api_key="unused",
                base_url=base_url,
                # No SDK retries: the failover chain is the retry, and it must stay fast.
                max_retries=0,
                timeout=timeout,
                default_headers=dict(headers or {}),
            ),
            _with_credential,
        )

    async def stream(self, request: ModelRequest, credential: Credential) -> AsyncIterator[StreamEvent]:
        client = self._pool.get(_client_key(credential))
        # The SDK wants its TypedDicts; the wire dicts built here have exactly their shape.
        messages: Any = to_anthropic_messages(request.messages)
        tools: Any = to_anthropic_tools(request.tools) if request.tools else anthropic.omit
        try:
            events = await client.messages.create(
                model=request.model,
                max_tokens=request.max_tokens,
                messages=messages,
                system=request.system or anthropic.omit,
                tools=tools,
                extra_body=_sampling(request) or None,
                stream=True,
                timeout=request.timeout,
            )
            async with events:  # closes the response even when the caller stops early
                async for event in parse_anthropic_stream(events, provider=self.name, model=request.model):
                    yield event
        except ProviderError:
            raise
        except Exception as exc:
            raise classify_error(exc, provider=self.name, model=request.model) from exc

    async def aclose(self) -> None:
        await self._pool.aclose()

    def __repr__(self) -> str:
        return f"<AnthropicProvider {self.name} {self.base_url}>"


def _client_key(credential: Credential) -> CredentialKey:
    # Anthropic setup tokens (`token` profiles) go in `Authorization: Bearer`, not `x-api-key`.
    if credential.kind == "token" and credential.key:
        return ("token", credential.key)
    return ("api_key", credential.key) if credential.key else ("none", "")


def _with_credential(base: anthropic.AsyncAnthropic, credential: CredentialKey) -> anthropic.AsyncAnthropic:
    kind, secret = credential
    if kind == "token":
        return base.with_options(auth_token=secret)
    # Keyless (a local proxy that needs none): the SDK insists on a credential; send a dummy.
    return base.with_options(api_key=secret or "none")
