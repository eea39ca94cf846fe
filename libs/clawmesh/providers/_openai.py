"""OpenAI Chat Completions (streaming) through the official `openai` SDK.

Also the client for every OpenAI-compatible server (Ollama, vLLM, LM Studio, OpenRouter…),
so the stream parser is lenient where those servers differ from api.openai.com: usage may be
missing, tool-call ids may be missing, `arguments` may be empty, `finish_reason` may be absent
or say `stop` although tools were called.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import openai
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from ._defaults import DEFAULT_OPENAI_BASE_URL, MaxTokensField
from ._errors import classify_error
from ._json import arguments_from_json
from ._pool import ClientPool, CredentialKey
from ._types import (
    AssistantMessage,
    ChatMessage,
    Credential,
    Image,
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

__all__ = ["DEFAULT_OPENAI_BASE_URL", "OpenAIProvider", "parse_openai_stream", "to_openai_messages"]

# Passed explicitly so that the SDK never falls back to os.environ["OPENAI_BASE_URL"].
_FINISH: Final[Mapping[str, str]] = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}
# Which request field limits the answer: api.openai.com's reasoning models reject `max_tokens`,
# while older OpenAI-compatible servers only know `max_tokens`.


def to_openai_messages(system: str, messages: Sequence[ChatMessage]) -> list[dict[str, Any]]:
    """Provider-neutral history → Chat Completions `messages` (system prompt first)."""
    wire: list[dict[str, Any]] = [{"role": "system", "content": system}] if system else []
    for message in messages:
        if isinstance(message, UserMessage):
            if message.images:
                parts: list[dict[str, Any]] = [{"type": "text", "text": message.text}] if message.text else []
                parts += [{"type": "image_url", "image_url": {"url": _data_url(i)}} for i in message.images]
                wire.append({"role": "user", "content": parts})
            else:
                wire.append({"role": "user", "content": message.text})
        elif isinstance(message, ToolResultMessage):
            # Chat Completions has no error flag on tool results; say it in the content.
            content = f"Error: {message.content}" if message.is_error else message.content
            wire.append({"role": "tool", "tool_call_id": message.tool_call_id, "content": content})
        elif isinstance(message, AssistantMessage):
            # `content: null` is how the API spells "tool calls only"; text-only turns need a string.
            content_or_none = message.text if message.text or not message.tool_calls else None
            entry: dict[str, Any] = {"role": "assistant", "content": content_or_none}
            if message.tool_calls:
                entry["tool_calls"] = [
                    {
                        "id": call.id,
                        "type": "function",
                        "function": {"name": call.name, "arguments": json.dumps(call.arguments)},
                    }
                    for call in message.tool_calls
                ]
            wire.append(entry)
    return wire


def _data_url(image: Image) -> str:
    return f"data:{image.mime};base64,{base64.b64encode(image.data).decode()}"


def _tool_choice(choice: str) -> str | dict[str, Any]:
    if choice in ("auto", "none", "required"):
        return choice
    return {"type": "function", "function": {"name": choice}}


def to_openai_tools(tools: Sequence[ToolSpec]) -> list[dict[str, Any]]:
    return [
        {
            "type": "function",
            "function": {"name": t.name, "description": t.description, "parameters": t.parameters},
        }
        for t in tools
    ]


@dataclass
class _PendingCall:
    id: str | None = None
    name: str = ""
    parts: list[str] = field(default_factory=list)


async def parse_openai_stream(
    chunks: AsyncIterable[ChatCompletionChunk], *, provider: str, model: str
) -> AsyncIterator[StreamEvent]:
    """Chat Completions chunks → `TextDelta`s and one `StreamStop` (or a `ProviderError`)."""
    seen_any = False
    finish: str | None = None
    usage = Usage()
    calls: list[_PendingCall] = []
    by_index: dict[int, _PendingCall] = {}
    async for chunk in chunks:
        seen_any = True
        if chunk.usage is not None:
            usage = Usage(
                input_tokens=chunk.usage.prompt_tokens or 0, output_tokens=chunk.usage.completion_tokens or 0
            )
        for choice in chunk.choices or ():
            if choice.index not in (0, None):
                continue  # n > 1 is never requested
            delta = choice.delta
            if delta is not None and delta.content:
                yield TextDelta(delta.content)
            for fragment in (delta.tool_calls if delta is not None else None) or ():
                index = fragment.index if isinstance(fragment.index, int) else len(calls)
                pending = by_index.get(index)
                # Some servers (older Ollama) send each parallel call complete, all at index 0:
                # a new id at a known index starts a new call.
                if pending is None or (fragment.id and pending.id and fragment.id != pending.id):
                    pending = by_index[index] = _PendingCall()
                    calls.append(pending)
                if fragment.id:
                    pending.id = fragment.id
                function = fragment.function
                if function is not None:
                    if function.name:
                        pending.name = function.name
                    arguments: object = function.arguments
                    if isinstance(arguments, str):
                        pending.parts.append(arguments)
                    elif isinstance(arguments, dict):  # non-standard, but seen in the wild
                        pending.parts.append(json.dumps(arguments))
            if choice.finish_reason:
                finish = choice.finish_reason
    if not seen_any:
        # OpenClaw's rule: a stream that ends without a single chunk counts as a timeout.
        raise ProviderError("timeout", "stream ended without chunks", provider=provider, model=model)
    tool_calls = tuple(
        ToolCall(
            id=call.id or f"call_{uuid.uuid4().hex[:24]}",
            name=call.name,
            arguments=arguments_from_json("".join(call.parts)),
        )
        for call in calls
    )
    if tool_calls:
        stop_reason = (
            "tool_use"
            if finish in (None, "stop", "tool_calls", "function_call")
            else _FINISH.get(finish, "tool_use")
        )
    else:
        stop_reason = _FINISH.get(finish or "stop", "end_turn")
    yield StreamStop(stop_reason, tool_calls=tool_calls, usage=usage)


class OpenAIProvider:
    """Streams from an OpenAI Chat Completions endpoint (api.openai.com or any compatible server)."""

    def __init__(
        self,
        name: str = "openai",
        *,
        base_url: str = DEFAULT_OPENAI_BASE_URL,
        headers: Mapping[str, str] | None = None,
        timeout: float = 120.0,
        max_tokens_field: MaxTokensField = "max_completion_tokens",
    ) -> None:
        self.name = name
        self.base_url = base_url
        self.max_tokens_field: MaxTokensField = max_tokens_field
        self._pool: ClientPool[openai.AsyncOpenAI] = ClientPool(
            lambda: openai.AsyncOpenAI(
                api_key="unused",  # a placeholder: every call goes through a per-credential copy
                base_url=base_url,
                # No SDK retries: the failover chain is the retry, and it must stay fast.
                max_retries=0,
                timeout=timeout,
                default_headers=dict(headers or {}),
            ),
            _with_credential,
        )

    async def stream(self, request: ModelRequest, credential: Credential) -> AsyncIterator[StreamEvent]:
        # Chat Completions has one way to authenticate: any key or token is the bearer token.
        client = self._pool.get(("api_key", credential.key) if credential.key else ("none", ""))
        body: dict[str, Any] = {
            "model": request.model,
            "messages": to_openai_messages(request.system, request.messages),
            "stream": True,
            "stream_options": {"include_usage": True},
            self.max_tokens_field: request.max_tokens,
        }
        if request.tools:
            body["tools"] = to_openai_tools(request.tools)
        if request.tool_choice is not None and request.tools:
            body["tool_choice"] = _tool_choice(request.tool_choice)
        if request.temperature is not None:
            body["temperature"] = request.temperature
        if request.top_p is not None:
            body["top_p"] = request.top_p
        if request.stop:
            body["stop"] = list(request.stop)
        try:
            # `post` is the SDK's public way to send a body as it is. `chat.completions.create`
            # would first walk every message through its TypedDict transform (several ms of CPU
            # per call with a long history) to produce the very dicts built here; everything
            # else (auth, errors, SSE and chunk parsing) is the same code path.
            chunks = await client.post(
                "/chat/completions",
                body=body,
                cast_to=ChatCompletion,
                stream=True,
                stream_cls=openai.AsyncStream[ChatCompletionChunk],
                options={"timeout": request.timeout, "security": {"bearer_auth": True}},
            )
            async with chunks:  # closes the response even when the caller stops early
                async for event in parse_openai_stream(chunks, provider=self.name, model=request.model):
                    yield event
        except ProviderError:
            raise
        except Exception as exc:
            raise classify_error(exc, provider=self.name, model=request.model) from exc

    async def aclose(self) -> None:
        await self._pool.aclose()

    def __repr__(self) -> str:
        return f"<OpenAIProvider {self.name} {self.base_url}>"


def _with_credential(base: openai.AsyncOpenAI, credential: CredentialKey) -> openai.AsyncOpenAI:
    # Keyless servers (a local Ollama) accept any bearer token, but the SDK insists on one.
    return base.with_options(api_key=credential[1] or "none")
