"""OpenAI Chat Completions (streaming), spoken directly over httpx (see `_http` for why not the SDK).

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

import httpx
import msgspec

from ._defaults import DEFAULT_OPENAI_BASE_URL, MaxTokensField
from ._errors import classify_error
from ._http import POOL_LIMITS, LoopClients, iter_sse, post_stream, stream_error
from ._json import arguments_from_json
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

__all__ = [
    "DEFAULT_OPENAI_BASE_URL",
    "OpenAIChunk",
    "OpenAIProvider",
    "parse_openai_stream",
    "to_openai_messages",
]

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


# The parts of a `chat.completion.chunk` the runner uses. Loosely typed where compatible servers
# are known to differ (an index that is not a number, arguments sent as an object).
class _Function(msgspec.Struct):
    name: str | None = None
    arguments: object = None


class _ToolCallDelta(msgspec.Struct):
    index: object = None
    id: str | None = None
    function: _Function | None = None


class _Delta(msgspec.Struct):
    content: str | None = None
    tool_calls: list[_ToolCallDelta] | None = None


class _Choice(msgspec.Struct):
    index: object = 0
    delta: _Delta | None = None
    finish_reason: str | None = None


class _Usage(msgspec.Struct):
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


class OpenAIChunk(msgspec.Struct):
    """One streamed `chat.completion.chunk` (or, inside a 200 stream, an `{"error": …}` frame)."""

    choices: list[_Choice] | None = None
    usage: _Usage | None = None
    error: object = None


_CHUNK: Final = msgspec.json.Decoder(OpenAIChunk)


@dataclass
class _PendingCall:
    id: str | None = None
    name: str = ""
    parts: list[str] = field(default_factory=list)


async def parse_openai_stream(
    chunks: AsyncIterable[OpenAIChunk], *, provider: str, model: str
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
        self._url = base_url.rstrip("/") + "/chat/completions"
        self._pool = LoopClients(
            lambda: httpx.AsyncClient(
                timeout=timeout,
                limits=POOL_LIMITS,
                headers={"accept": "application/json", **dict(headers or {})},
            )
        )

    async def stream(self, request: ModelRequest, credential: Credential) -> AsyncIterator[StreamEvent]:
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
        # Chat Completions has one way to authenticate: any key or token is the bearer token.
        # Keyless servers (a local Ollama) accept any, but some insist on the header.
        headers = {
            "authorization": f"Bearer {credential.key or 'none'}",
            "content-type": "application/json",
        }
        try:
            async with post_stream(
                self._pool.get(),
                self._url,
                msgspec.json.encode(body),
                headers,
                request.timeout,
                provider=self.name,
                model=request.model,
            ) as (response, whole):
                chunks = _whole(whole) if whole is not None else self._chunks(response, request.model)
                async for event in parse_openai_stream(chunks, provider=self.name, model=request.model):
                    yield event
        except ProviderError:
            raise
        except Exception as exc:
            raise classify_error(exc, provider=self.name, model=request.model) from exc

    async def _chunks(self, response: httpx.Response, model: str) -> AsyncIterator[OpenAIChunk]:
        done = False
        async for _, data in iter_sse(response.aiter_bytes()):
            # Read on after [DONE] to the end of the body: a response closed early takes its
            # connection with it, and the next call would pay for a new one.
            if done or data.startswith(b"[DONE]"):
                done = True
                continue
            chunk = _CHUNK.decode(data)
            if chunk.error is not None:
                raise stream_error(data, provider=self.name, model=model)
            yield chunk

    async def aclose(self) -> None:
        await self._pool.aclose()

    def __repr__(self) -> str:
        return f"<OpenAIProvider {self.name} {self.base_url}>"


class _Message(msgspec.Struct):
    content: str | None = None
    tool_calls: list[_ToolCallDelta] | None = None


class _WholeChoice(msgspec.Struct):
    index: object = 0
    message: _Message | None = None
    finish_reason: str | None = None


class _Completion(msgspec.Struct):
    choices: list[_WholeChoice] | None = None
    usage: _Usage | None = None


async def _whole(raw: bytes) -> AsyncIterator[OpenAIChunk]:
    """A non-streamed `chat.completion` as the one chunk that says the same."""
    completion = msgspec.json.decode(raw, type=_Completion)
    choices = [
        _Choice(
            index=choice.index,
            delta=_Delta(
                content=choice.message.content if choice.message else None,
                tool_calls=[
                    _ToolCallDelta(index=i, id=call.id, function=call.function)
                    for i, call in enumerate((choice.message.tool_calls if choice.message else None) or ())
                ],
            ),
            finish_reason=choice.finish_reason,
        )
        for choice in completion.choices or ()
    ]
    yield OpenAIChunk(choices=choices, usage=completion.usage)
