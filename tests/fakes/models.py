"""Fake Anthropic Messages + OpenAI Chat Completions server for offline tests.

Speaks both wire protocols closely enough for the official ``anthropic`` and ``openai`` SDKs
(JSON bodies, named/unnamed SSE streams, provider error shapes, retry headers), and lets a
test script each answer::

    async with FakeModelServer() as fake:
        fake.script("claude-a", HTTPError(529))            # first call to claude-a: overloaded
        fake.script(None, ToolCall("exec", {"command": "echo hi"}), Echo())
        client = anthropic.AsyncAnthropic(base_url=fake.base_url, api_key="k", max_retries=0)
        ...
        assert fake.requests[-1].tool_results[0].content == "hi"

Sync code uses ``with FakeModelServer() as fake:`` (the server then runs in a thread), other
processes ``python -m tests.fakes.models --port 0 [--reply TEXT] [--chunks N]``, which prints
``LISTENING <port>`` once bound and serves until SIGTERM/SIGINT.

Routes (each also without the ``/v1`` prefix): ``POST /v1/messages``,
``POST /v1/messages/count_tokens``, ``POST /v1/chat/completions``, ``GET /v1/models``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import signal
import socket
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal, Self

import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

__all__ = [
    "DEFAULT_REPLY",
    "Api",
    "Disconnect",
    "Echo",
    "FakeModelServer",
    "Gate",
    "HTTPError",
    "Hang",
    "RecordedRequest",
    "Step",
    "StreamError",
    "Text",
    "ToolCall",
    "ToolCalls",
    "ToolResult",
    "main",
]

DEFAULT_REPLY = "pong from fake"
DEFAULT_MODELS = ("fake-model",)

Api = Literal["anthropic", "openai"]

# ---------------------------------------------------------------------------------------------
# Script steps: each one is the complete answer to one request.
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Text:
    """A plain text answer, streamed in ``chunks`` deltas (None: the server's default).

    ``stop_reason`` uses the Anthropic vocabulary (``end_turn``, ``max_tokens``,
    ``stop_sequence``, ``refusal``); OpenAI gets the matching ``finish_reason``.
    """

    text: str
    chunks: int | None = None
    stop_reason: str = "end_turn"


@dataclass(frozen=True)
class Echo:
    """Answer with the text of the last user-side message (see ``RecordedRequest.last_user_text``)."""

    chunks: int | None = None


@dataclass(frozen=True)
class ToolCall:
    """One tool call (Anthropic ``tool_use`` block / OpenAI ``tool_calls`` entry).

    The arguments are streamed as JSON text split over several fragments. ``id`` defaults
    to a fresh ``toolu_…``/``call_…`` id; ``text_before`` is an optional text block first.
    """

    name: str
    arguments: Mapping[str, Any] = field(default_factory=dict)
    id: str | None = None
    text_before: str | None = None


@dataclass(frozen=True)
class ToolCalls:
    """Several tool calls in one answer (parallel tool use)."""

    calls: Sequence[ToolCall]
    text_before: str | None = None

    def __post_init__(self) -> None:
        # Frozen and comparable even when built from a list.
        object.__setattr__(self, "calls", tuple(self.calls))


@dataclass(frozen=True)
class HTTPError:
    """An HTTP error with the provider's exact error JSON.

    ``error_type`` defaults per status (Anthropic: 529 → ``overloaded_error``, 429 →
    ``rate_limit_error`` …; OpenAI: 429 → ``requests``/code ``rate_limit_exceeded`` …);
    ``code`` overrides OpenAI's ``error.code``. ``retry_after`` (seconds) becomes a
    ``retry-after`` header; ``headers`` are added verbatim (e.g. ``x-should-retry``).
    """

    status: int
    error_type: str | None = None
    message: str | None = None
    retry_after: float | None = None
    headers: Mapping[str, str] | None = None
    code: str | None = None


@dataclass(frozen=True)
class StreamError:
    """HTTP 200 stream that sends ``after_chunks`` text deltas, then an error event, then ends.

    A non-streaming request gets the equivalent HTTP error instead (529 for
    ``overloaded_error``…), as the real APIs can only fail that way there.
    """

    error_type: str = "overloaded_error"
    message: str = "Overloaded"
    after_chunks: int = 0


@dataclass(frozen=True)
class Hang:
    """Send nothing for ``seconds`` (to trip client timeouts), then answer the default reply.

    ``after_chunks=None`` hangs before the response headers; an int stalls a stream after
    that many deltas. Server shutdown cuts the hang short by dropping the connection.
    """

    seconds: float
    after_chunks: int | None = None
    # end the hang when set instead of after `seconds` (a test decides when)
    opened: asyncio.Event | None = field(default=None, compare=False)


@dataclass(frozen=True, eq=False)
class Gate:
    """Hold the request (before the response headers) until ``opened`` is set, then answer the
    default reply: a test decides when a model call ends, instead of guessing a duration.
    Async variant only. Server shutdown or the client leaving cuts it short."""

    opened: asyncio.Event


@dataclass(frozen=True)
class Disconnect:
    """Close the TCP connection: before any response (None) or mid-stream after N deltas."""

    after_chunks: int | None = None


Step = Text | Echo | ToolCall | ToolCalls | HTTPError | StreamError | Hang | Gate | Disconnect

# ---------------------------------------------------------------------------------------------
# Request log
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ToolResult:
    """A tool result sent back by the client, normalised over both APIs."""

    tool_use_id: str
    content: str
    is_error: bool = False


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the fake received it, plus the step it was answered with."""

    method: str
    path: str
    api: Api
    model: str | None
    api_key: str | None
    stream: bool
    body: dict[str, Any]
    headers: dict[str, str]  # lower-cased names
    step: Step | None  # None for non-model routes (models list, 404s…)

    @property
    def messages(self) -> list[dict[str, Any]]:
        return _messages(self.body)

    @property
    def system_text(self) -> str | None:
        """Anthropic ``system`` or the OpenAI system/developer messages, as plain text."""
        if self.api == "anthropic":
            system = self.body.get("system")
            return None if system is None else _text_of(system)
        parts = [
            _text_of(m.get("content")) for m in self.messages if m.get("role") in ("system", "developer")
        ]
        return "\n".join(parts) if parts else None

    @property
    def tool_names(self) -> list[str]:
        tools = self.body.get("tools") or []
        names = [
            t.get("name") if self.api == "anthropic" else (t.get("function") or {}).get("name") for t in tools
        ]
        return [n for n in names if isinstance(n, str)]

    @property
    def tool_results(self) -> list[ToolResult]:
        """Tool results in the request: Anthropic ``tool_result`` blocks, OpenAI ``tool`` messages."""
        results: list[ToolResult] = []
        for message in self.messages:
            if self.api == "openai":
                if message.get("role") == "tool":
                    content = _text_of(message.get("content"))
                    results.append(ToolResult(str(message.get("tool_call_id")), content))
                continue
            for block in _blocks(message):
                if block.get("type") == "tool_result":
                    content = _text_of(block.get("content"))
                    results.append(
                        ToolResult(str(block.get("tool_use_id")), content, bool(block.get("is_error")))
                    )
        return results

    @property
    def last_user_text(self) -> str:
        """Text of the last user-side message: its text parts, else its tool results' content.

        For OpenAI a trailing run of ``tool`` messages counts as that message.
        """
        return _last_user_text(self.api, self.messages)


def _messages(body: Mapping[str, Any]) -> list[dict[str, Any]]:
    messages = body.get("messages")
    return [m for m in messages if isinstance(m, dict)] if isinstance(messages, list) else []


def _last_user_text(api: Api, messages: Sequence[Mapping[str, Any]]) -> str:
    if api == "openai":
        tail: list[str] = []
        for message in reversed(messages):
            if message.get("role") == "tool":
                tail.insert(0, _text_of(message.get("content")))
            elif message.get("role") == "user" and not tail:
                return _text_of(message.get("content"))
            else:
                break
        return "\n".join(tail)
    for message in reversed(messages):
        if message.get("role") == "user":
            text = _text_of(message.get("content"))
            results = [_text_of(b.get("content")) for b in _blocks(message) if b.get("type") == "tool_result"]
            return text or "\n".join(results)
    return ""


def _blocks(message: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    content = message.get("content") if message else None
    return [b for b in content if isinstance(b, dict)] if isinstance(content, list) else []


def _text_of(content: object) -> str:
    """Plain text of a content value: a string or a list of ``{"type": "text"}`` parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


# ---------------------------------------------------------------------------------------------
# Provider error vocabularies
# ---------------------------------------------------------------------------------------------

_ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    503: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}
_ANTHROPIC_MESSAGES = {
    "invalid_request_error": "Invalid request",
    "authentication_error": "invalid x-api-key",
    "billing_error": "Your credit balance is too low to access the Anthropic API.",
    "permission_error": "Your API key does not have permission to use the specified resource.",
    "not_found_error": "model: {model}",
    "request_too_large": "Request exceeds the maximum allowed number of bytes.",
    "rate_limit_error": "This request would exceed the rate limit for your organization.",
    "api_error": "Internal server error",
    "timeout_error": "Request timed out",
    "overloaded_error": "Overloaded",
}
# StreamError on a non-streaming request: the status the same failure has as a plain response.
_STATUS_OF_TYPE = {t: s for s, t in _ANTHROPIC_TYPES.items() if s != 503}

# (type, code, message) as the real OpenAI API sends them; rate limits are typed by the limit
# that was hit ("requests"/"tokens"), so classify OpenAI errors by status and code, not type.
_OPENAI_ERRORS: dict[int, tuple[str, str | None, str]] = {
    400: ("invalid_request_error", None, "Invalid request"),
    401: (
        "invalid_request_error",
        "invalid_api_key",
        "Incorrect API key provided: {key}. You can find your API key at "
        "https://platform.openai.com/account/api-keys.",
    ),
    403: ("request_forbidden", None, "Forbidden"),
    404: (
        "invalid_request_error",
        "model_not_found",
        "The model `{model}` does not exist or you do not have access to it.",
    ),
    429: ("requests", "rate_limit_exceeded", "Rate limit reached for {model} on requests per min (RPM)."),
    500: ("server_error", None, "The server had an error while processing your request. Sorry about that!"),
    503: ("server_error", None, "The engine is currently overloaded, please try again later."),
}

_OPENAI_NO_KEY = (
    "You didn't provide an API key. You need to provide your API key in an Authorization header "
    "using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
)
_OPENAI_FINISH = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}


def _masked(key: str | None) -> str:
    return "" if not key else key[:3] + "*" * max(0, len(key) - 7) + key[-4:]


def _anthropic_error_body(error_type: str, message: str, request_id: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": error_type, "message": message}, "request_id": request_id}


def _openai_error_body(error_type: str, message: str, code: str | None) -> dict[str, Any]:
    return {"error": {"message": message, "type": error_type, "param": None, "code": code}}


def _error_response(
    api: Api, error: HTTPError, *, model: str | None, key: str | None, request_id: str
) -> JSONResponse:
    status = error.status
    headers = {"request-id" if api == "anthropic" else "x-request-id": request_id}
    if error.retry_after is not None:
        seconds = error.retry_after
        headers["retry-after"] = str(int(seconds)) if float(seconds).is_integer() else str(seconds)
    headers.update(error.headers or {})
    if api == "anthropic":
        error_type = (
            error.error_type
            or _ANTHROPIC_TYPES.get(status)
            or ("api_error" if status >= 500 else "invalid_request_error")
        )
        message = error.message or _ANTHROPIC_MESSAGES.get(error_type, error_type).format(model=model)
        return JSONResponse(_anthropic_error_body(error_type, message, request_id), status, headers)
    fallback = (
        ("server_error", None, "Server error") if status >= 500 else ("invalid_request_error", None, "Error")
    )
    default_type, default_code, template = _OPENAI_ERRORS.get(status, fallback)
    message = error.message or template.format(model=model, key=_masked(key))
    body = _openai_error_body(error.error_type or default_type, message, error.code or default_code)
    return JSONResponse(body, status, headers)


# ---------------------------------------------------------------------------------------------
# Request validation: what the real APIs reject and a runner can get wrong
# ---------------------------------------------------------------------------------------------


def _anthropic_problem(body: Mapping[str, Any]) -> str | None:
    for name, kind in (("model", str), ("max_tokens", int), ("messages", list)):
        if not isinstance(body.get(name), kind):
            return f"{name}: Field required"
    messages = [m if isinstance(m, dict) else {} for m in body["messages"]]
    if not messages:
        return "messages: at least one message is required"
    # Every tool_use must be answered by a tool_result in the very next (user) message, and
    # every tool_result must answer a tool_use of the previous message.
    for i, message in enumerate(messages):
        previous = messages[i - 1] if i > 0 and messages[i - 1].get("role") == "assistant" else None
        asked = {b.get("id") for b in _blocks(previous) if b.get("type") == "tool_use"}
        for b in _blocks(message) if message.get("role") == "user" else []:
            if b.get("type") == "tool_result" and b.get("tool_use_id") not in asked:
                return (
                    f"messages.{i}.content: unexpected `tool_use_id` found in `tool_result` blocks: "
                    f"{b.get('tool_use_id')}. Each `tool_result` block must have a corresponding "
                    "`tool_use` block in the previous message."
                )
        if message.get("role") != "assistant":
            continue
        following = (
            messages[i + 1] if i + 1 < len(messages) and messages[i + 1].get("role") == "user" else None
        )
        answered = {b.get("tool_use_id") for b in _blocks(following) if b.get("type") == "tool_result"}
        missing = [str(b.get("id")) for b in _blocks(message) if b.get("type") == "tool_use"]
        missing = [x for x in missing if x not in answered]
        if missing:
            return (
                f"messages.{i}: `tool_use` ids were found without `tool_result` blocks immediately after: "
                f"{', '.join(missing)}. Each `tool_use` block must have a corresponding `tool_result` "
                "block in the next message."
            )
    return None


def _openai_problem(body: Mapping[str, Any]) -> str | None:
    for name, kind in (("model", str), ("messages", list)):
        if not isinstance(body.get(name), kind):
            return f"Missing required parameter: '{name}'."
    # Tool calls of an assistant message must each be answered by the `tool` messages right after it.
    pending: list[str] = []
    for message in [m if isinstance(m, dict) else {} for m in body["messages"]] + [{"role": "end"}]:
        role = message.get("role")
        if role == "tool":
            if message.get("tool_call_id") not in pending:
                return (
                    "Invalid parameter: messages with role 'tool' must be a response to a preceeding "
                    "message with 'tool_calls'."
                )
            pending.remove(message["tool_call_id"])
            continue
        if pending:
            return (
                "An assistant message with 'tool_calls' must be followed by tool messages responding to "
                "each 'tool_call_id'. The following tool_call_ids did not have response messages: "
                + ", ".join(pending)
            )
        if role == "assistant":
            pending = [str(c.get("id")) for c in message.get("tool_calls") or [] if isinstance(c, dict)]
    return None


# ---------------------------------------------------------------------------------------------
# Rendering: a step becomes a _Plan, a plan becomes a JSON body or a list of SSE frames
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Call:
    id: str
    name: str
    arguments: str  # JSON text, exactly what the client must reassemble
    fragments: tuple[str, ...]


@dataclass(frozen=True)
class _Plan:
    text: tuple[str, ...]  # the text deltas
    calls: tuple[_Call, ...]
    stop_reason: str  # Anthropic vocabulary
    interrupt: StreamError | Hang | Disconnect | None = None

    @property
    def full_text(self) -> str:
        return "".join(self.text)

    @property
    def output_tokens(self) -> int:
        return max(1, (len(self.full_text) + sum(len(c.arguments) for c in self.calls)) // 4)


@dataclass(frozen=True)
class _Ids:
    """Ids and counters shared by every frame of one response."""

    message: str
    created: int
    model: str
    input_tokens: int


# One SSE frame and whether it carries content (text or tool-argument delta): interruptions
# (`after_chunks`) count content frames only.
_Frame = tuple[bytes, bool]


def _split(text: str, parts: int) -> tuple[str, ...]:
    """Split into at most ``parts`` contiguous, non-empty pieces of near-equal length."""
    if not text:
        return ()
    parts = max(1, min(parts, len(text)))
    size, extra = divmod(len(text), parts)
    bounds = [0]
    for i in range(parts):
        bounds.append(bounds[-1] + size + (1 if i < extra else 0))
    return tuple(text[a:b] for a, b in itertools.pairwise(bounds))


def _dumps(obj: object) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def _anthropic_event(name: str, data: Mapping[str, Any]) -> bytes:
    return f"event: {name}\ndata: {_dumps(data)}\n\n".encode()


def _openai_data(data: Mapping[str, Any] | str) -> bytes:
    return f"data: {data if isinstance(data, str) else _dumps(data)}\n\n".encode()


def _anthropic_usage(ids: _Ids, output_tokens: int) -> dict[str, Any]:
    return {
        "input_tokens": ids.input_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": output_tokens,
    }


def _anthropic_message(plan: _Plan, ids: _Ids) -> dict[str, Any]:
    content: list[dict[str, Any]] = []
    if plan.text or not plan.calls:
        content.append({"type": "text", "text": plan.full_text})
    for call in plan.calls:
        content.append(
            {"type": "tool_use", "id": call.id, "name": call.name, "input": json.loads(call.arguments)}
        )
    return {
        "id": ids.message,
        "type": "message",
        "role": "assistant",
        "model": ids.model,
        "content": content,
        "stop_reason": plan.stop_reason,
        "stop_sequence": None,
        "usage": _anthropic_usage(ids, plan.output_tokens),
    }


def _anthropic_frames(plan: _Plan, ids: _Ids) -> list[_Frame]:
    start = {**_anthropic_message(plan, ids), "content": [], "stop_reason": None}
    start["usage"] = _anthropic_usage(ids, 1)
    blocks: list[list[_Frame]] = []
    if plan.text or not plan.calls:
        index = len(blocks)
        block = {"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}}
        frames = [(_anthropic_event("content_block_start", block), False)]
        for piece in plan.text:
            delta = {
                "type": "content_block_delta",
                "index": index,
                "delta": {"type": "text_delta", "text": piece},
            }
            frames.append((_anthropic_event("content_block_delta", delta), True))
        blocks.append(frames)
    for call in plan.calls:
        index = len(blocks)
        tool_use = {"type": "tool_use", "id": call.id, "name": call.name, "input": {}}
        block = {"type": "content_block_start", "index": index, "content_block": tool_use}
        frames = [(_anthropic_event("content_block_start", block), False)]
        for fragment in call.fragments:
            json_delta = {"type": "input_json_delta", "partial_json": fragment}
            delta = {"type": "content_block_delta", "index": index, "delta": json_delta}
            frames.append((_anthropic_event("content_block_delta", delta), True))
        blocks.append(frames)
    for index, frames in enumerate(blocks):
        stop = {"type": "content_block_stop", "index": index}
        frames.append((_anthropic_event("content_block_stop", stop), False))
    # As the real API does: one ping right after the first content_block_start.
    blocks[0].insert(1, (_anthropic_event("ping", {"type": "ping"}), False))
    message_delta = {
        "type": "message_delta",
        "delta": {"stop_reason": plan.stop_reason, "stop_sequence": None},
        "usage": {"output_tokens": plan.output_tokens},
    }
    return [
        (_anthropic_event("message_start", {"type": "message_start", "message": start}), False),
        *(frame for frames in blocks for frame in frames),
        (_anthropic_event("message_delta", message_delta), False),
        (_anthropic_event("message_stop", {"type": "message_stop"}), False),
    ]


def _openai_usage(plan: _Plan, ids: _Ids) -> dict[str, int]:
    total = ids.input_tokens + plan.output_tokens
    return {"prompt_tokens": ids.input_tokens, "completion_tokens": plan.output_tokens, "total_tokens": total}


def _openai_completion(plan: _Plan, ids: _Ids) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": plan.full_text or None, "refusal": None}
    if plan.calls:
        message["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in plan.calls
        ]
    choice = {
        "index": 0,
        "message": message,
        "logprobs": None,
        "finish_reason": _OPENAI_FINISH[plan.stop_reason],
    }
    return {
        "id": ids.message,
        "object": "chat.completion",
        "created": ids.created,
        "model": ids.model,
        "system_fingerprint": "fp_fake",
        "choices": [choice],
        "usage": _openai_usage(plan, ids),
    }


def _openai_frames(plan: _Plan, ids: _Ids, include_usage: bool) -> list[_Frame]:
    base = {
        "id": ids.message,
        "object": "chat.completion.chunk",
        "created": ids.created,
        "model": ids.model,
        "system_fingerprint": "fp_fake",
    }

    def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        # With include_usage, the real API adds "usage": null to every chunk but the last one.
        return _openai_data({**base, "choices": [choice], **({"usage": None} if include_usage else {})})

    frames: list[_Frame] = [(chunk({"role": "assistant", "content": "", "refusal": None}), False)]
    frames += [(chunk({"content": piece}), True) for piece in plan.text]
    for index, call in enumerate(plan.calls):
        # id, type and name only on the first fragment of each call; then arguments by index.
        first = {
            "index": index,
            "id": call.id,
            "type": "function",
            "function": {"name": call.name, "arguments": ""},
        }
        frames.append((chunk({"tool_calls": [first]}), False))
        for fragment in call.fragments:
            frames.append(
                (chunk({"tool_calls": [{"index": index, "function": {"arguments": fragment}}]}), True)
            )
    frames.append((chunk({}, _OPENAI_FINISH[plan.stop_reason]), False))
    if include_usage:
        frames.append((_openai_data({**base, "choices": [], "usage": _openai_usage(plan, ids)}), False))
    frames.append((_openai_data("[DONE]"), False))
    return frames


def _cut_index(frames: Sequence[_Frame], after_chunks: int) -> int:
    """Where an interruption goes: before the first content frame, or after the N-th one."""
    content = [i for i, (_, is_content) in enumerate(frames) if is_content]
    if not content:
        return 1
    if after_chunks <= 0:
        return content[0]
    return content[min(after_chunks, len(content)) - 1] + 1


# ---------------------------------------------------------------------------------------------
# Connection tricks
# ---------------------------------------------------------------------------------------------


async def _wait_disconnect(request: Request) -> None:
    # Once the body is read, uvicorn's receive() only returns when the client goes away.
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def _drop_connection(request: Request) -> None:
    """Close the TCP connection without (finishing) a response."""
    # ASGI has no "close without answering"; uvicorn's receive() is a method of its
    # per-request cycle object, which holds the transport.
    transport = getattr(getattr(request.receive, "__self__", None), "transport", None)
    if not isinstance(transport, asyncio.BaseTransport):
        raise RuntimeError("Disconnect needs uvicorn's HTTP protocol (no transport found)")
    transport.close()
    # Wait until uvicorn has seen the close, or it would answer "500" on our behalf.
    await _wait_disconnect(request)


class _EmbeddedServer(uvicorn.Server):
    """uvicorn.Server for embedding: its owner handles signals, and stopping is event-driven.

    Stock uvicorn polls for exit every 0.1 s and naps 0.1 s more while shutting down; with a
    fresh server per test that adds up, so ``main_loop``/``shutdown`` wait on events instead.
    """

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.exit_requested = asyncio.Event()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    async def main_loop(self) -> None:
        await self.on_tick(0)  # computes the default response headers once
        await self.exit_requested.wait()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for server in self.servers:
            server.close()  # also closes the listening socket
        for connection in list(self.server_state.connections):
            connection.shutdown()  # idle keep-alive connections close now, busy ones after replying
        if self.server_state.tasks:
            await asyncio.wait(set(self.server_state.tasks), timeout=self.config.timeout_graceful_shutdown)
        for task in self.server_state.tasks:
            task.cancel()
        for server in self.servers:
            await server.wait_closed()


# ---------------------------------------------------------------------------------------------
# The server
# ---------------------------------------------------------------------------------------------


class FakeModelServer:
    """Scriptable fake of the Anthropic and OpenAI model APIs on 127.0.0.1.

    Answer selection for each model request: rejected keys and invalid requests first (as the
    real APIs), then the first scripted step from the queues ``(model, key)``, ``(model,
    any key)``, ``(any model, key)``, ``(any, any)``, else ``Text(reply, chunks)``.
    """

    def __init__(
        self,
        *,
        reply: str = DEFAULT_REPLY,
        chunks: int = 3,
        host: str = "127.0.0.1",
        port: int = 0,
        models: Sequence[str] = DEFAULT_MODELS,
        validate: bool = True,
    ) -> None:
        self.reply = reply
        self.chunks = chunks
        self.host = host
        self.port = port  # the bound port once started
        self.models = tuple(models)
        self.validate = validate
        self.requests: list[RecordedRequest] = []
        self.keys_rejected: set[str] = set()  # → 401
        self.keys_forbidden: set[str] = set()  # → 403
        self._scripts: dict[tuple[str | None, str | None], deque[Step]] = {}
        self._lock = threading.Lock()  # scripts and log are shared with the thread variant
        self._counter = itertools.count(1)
        self._server: _EmbeddedServer | None = None
        self._serve_task: asyncio.Task[None] | None = None
        self._closing = asyncio.Event()
        self._recorded = asyncio.Event()
        self._thread: threading.Thread | None = None
        self._thread_stop: Callable[[], object] | None = None
        self._app = self._build_app()

    # -- scripting ------------------------------------------------------------------------

    def script(self, model: str | Step | None = None, /, *steps: Step, key: str | None = None) -> None:
        """Queue ``steps`` (FIFO), one per request for ``model`` (None: any) and ``key`` (None: any).

        ``fake.script(Text("a"), Text("b"))`` is shorthand for ``fake.script(None, …)``.
        """
        if model is not None and not isinstance(model, str):
            steps, model = (model, *steps), None
        with self._lock:
            self._scripts.setdefault((model, key), deque()).extend(steps)

    @property
    def pending(self) -> int:
        """Scripted steps not consumed yet (assert 0 at the end of a test)."""
        with self._lock:
            return sum(len(q) for q in self._scripts.values())

    def reset(self) -> None:
        """Forget scripts, rejected keys and the request log."""
        with self._lock:
            self._scripts.clear()
            self.requests.clear()
            self.keys_rejected.clear()
            self.keys_forbidden.clear()

    async def wait_for_requests(self, count: int) -> list[RecordedRequest]:
        """Wait until ``count`` requests were logged (async variant only; bound it with a timeout)."""
        while len(self.requests) < count:
            self._recorded.clear()
            await self._recorded.wait()
        return list(self.requests)

    def _take_step(self, model: str | None, key: str | None) -> Step:
        with self._lock:
            for slot in ((model, key), (model, None), (None, key), (None, None)):
                queue = self._scripts.get(slot)
                if queue:
                    return queue.popleft()
        return Text(self.reply, self.chunks)

    # -- lifecycle ------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>``; OpenAI clients append ``/v1``."""
        if self._server is None and self._thread is None:
            raise RuntimeError("FakeModelServer is not running")
        return f"http://{self.host}:{self.port}"

    async def start(self) -> None:
        """Bind and serve in the running loop; returns once connections are accepted."""
        if self._server is not None:
            raise RuntimeError("FakeModelServer already started")
        # Events bind to the loop that first waits on them: make fresh ones for this loop.
        self._closing, self._recorded = asyncio.Event(), asyncio.Event()
        # Bound here, so the port is known. proto=IPPROTO_TCP makes asyncio set TCP_NODELAY on
        # accepted connections (a real API answers without Nagle's ~40 ms delayed-ACK stall).
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        sock.listen(1024)
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self._app,
            lifespan="off",
            log_config=None,  # leave the host's (pytest's) logging configuration alone
            access_log=False,
            ws="none",
            timeout_graceful_shutdown=5,
        )
        self._server = _EmbeddedServer(config)
        self._serve_task = asyncio.create_task(self._server.serve(sockets=[sock]), name="fake-model-server")
        while not self._server.started:
            if self._serve_task.done():
                self._server = None
                await self._serve_task  # re-raise the startup failure
                raise RuntimeError("fake model server exited during startup")
            await asyncio.sleep(0)  # yield to the loop: startup is a few awaits, not a timer

    async def stop(self) -> None:
        if self._server is None or self._serve_task is None:
            return
        self._closing.set()  # release hanging requests so uvicorn's graceful shutdown is quick
        self._server.exit_requested.set()
        try:
            await self._serve_task
        finally:
            self._server = self._serve_task = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    def start_in_thread(self) -> None:
        """Serve from a background thread with its own event loop (for sync callers)."""
        if self._thread is not None:
            raise RuntimeError("FakeModelServer already started")
        ready = threading.Event()
        failure: list[BaseException] = []

        async def run() -> None:
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            self._thread_stop = lambda: loop.call_soon_threadsafe(stop.set)
            try:
                await self.start()
            except BaseException as exc:
                failure.append(exc)
                raise
            finally:
                ready.set()
            await stop.wait()
            await self.stop()

        self._thread = threading.Thread(
            target=asyncio.run, args=(run(),), name="fake-model-server", daemon=True
        )
        self._thread.start()
        ready.wait()
        if failure:
            self._thread.join()
            self._thread = None
            raise failure[0]

    def stop_thread(self) -> None:
        if self._thread is None:
            return
        assert self._thread_stop is not None
        self._thread_stop()
        self._thread.join()
        self._thread = None

    def __enter__(self) -> Self:
        self.start_in_thread()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop_thread()

    # -- HTTP -----------------------------------------------------------------------------

    def _build_app(self) -> Starlette:
        routes: list[Route] = []
        for prefix in ("/v1", ""):
            routes += [
                Route(f"{prefix}/messages", self._anthropic, methods=["POST"]),
                Route(f"{prefix}/messages/count_tokens", self._count_tokens, methods=["POST"]),
                Route(f"{prefix}/chat/completions", self._openai, methods=["POST"]),
                Route(f"{prefix}/models", self._models, methods=["GET"]),
            ]
        handlers = {404: self._no_route, 405: self._no_route}
        return Starlette(routes=routes, exception_handlers=handlers)

    def _next_id(self, prefix: str) -> str:
        return f"{prefix}{next(self._counter):06d}"

    def _record(
        self, request: Request, api: Api, body: dict[str, Any], key: str | None, step: Step | None
    ) -> None:
        model = body.get("model")
        record = RecordedRequest(
            method=request.method,
            path=request.url.path,
            api=api,
            model=model if isinstance(model, str) else None,
            api_key=key,
            stream=body.get("stream") is True,
            body=body,
            headers={k.lower(): v for k, v in request.headers.items()},
            step=step,
        )
        with self._lock:
            self.requests.append(record)
        self._recorded.set()

    async def _anthropic(self, request: Request) -> Response:
        return await self._model_call(request, "anthropic")

    async def _openai(self, request: Request) -> Response:
        return await self._model_call(request, "openai")

    async def _model_call(self, request: Request, api: Api) -> Response:
        body = await _json_object(request)
        key = _api_key(request, api)
        model = body.get("model") if body is not None else None
        model = model if isinstance(model, str) else None
        step = self._gatekeeper(request, api, body, key) or self._take_step(model, key)
        self._record(request, api, body or {}, key, step)
        return await self._respond(request, api, step, body or {}, key)

    def _gatekeeper(
        self, request: Request, api: Api, body: dict[str, Any] | None, key: str | None
    ) -> HTTPError | None:
        """The rejection the real API would answer before looking at the model, if any."""
        if key is None:
            if api == "anthropic":
                return HTTPError(401, message="x-api-key header is required")
            return HTTPError(401, message=_OPENAI_NO_KEY)
        if key in self.keys_rejected:
            return HTTPError(401)
        if key in self.keys_forbidden:
            return HTTPError(403)
        if api == "anthropic" and "anthropic-version" not in request.headers:
            return HTTPError(400, message="anthropic-version: header is required")
        if body is None:
            return HTTPError(400, message="The request body is not valid JSON.")
        if not self.validate:
            return None
        problem = _anthropic_problem(body) if api == "anthropic" else _openai_problem(body)
        return None if problem is None else HTTPError(400, message=problem)

    async def _respond(
        self, request: Request, api: Api, step: Step, body: dict[str, Any], key: str | None
    ) -> Response:
        stream = body.get("stream") is True
        model = body.get("model") if isinstance(body.get("model"), str) else None
        request_id = self._next_id("req_fake_")
        if isinstance(step, StreamError) and not stream:
            step = HTTPError(_STATUS_OF_TYPE.get(step.error_type, 500), step.error_type, step.message)
        if isinstance(step, HTTPError):
            return _error_response(api, step, model=model, key=key, request_id=request_id)
        if isinstance(step, Disconnect) and (step.after_chunks is None or not stream):
            await _drop_connection(request)
            return Response()  # never sent: uvicorn drops writes to a closed connection
        if isinstance(step, Hang) and (step.after_chunks is None or not stream):
            if await self._stall(step.seconds, request, step.opened) != "elapsed":
                await _drop_connection(request)
                return Response()
            step = Text(self.reply, self.chunks)
        if isinstance(step, Gate):
            if await self._stall(None, request, step.opened) != "elapsed":
                await _drop_connection(request)
                return Response()
            step = Text(self.reply, self.chunks)

        plan = self._plan(step, body, api)
        ids = _Ids(
            message=self._next_id("msg_fake_" if api == "anthropic" else "chatcmpl-fake-"),
            created=int(time.time()),
            model=model or "fake-model",
            input_tokens=max(1, len(_dumps(body.get("messages", ""))) // 4),
        )
        headers = {"request-id" if api == "anthropic" else "x-request-id": request_id}
        if not stream:
            payload = _anthropic_message(plan, ids) if api == "anthropic" else _openai_completion(plan, ids)
            return JSONResponse(payload, headers=headers)
        if api == "anthropic":
            frames = _anthropic_frames(plan, ids)
        else:
            options = body.get("stream_options")
            frames = _openai_frames(
                plan, ids, isinstance(options, dict) and options.get("include_usage") is True
            )
        headers["cache-control"] = "no-cache"
        return StreamingResponse(
            self._play(request, api, frames, plan.interrupt), media_type="text/event-stream", headers=headers
        )

    def _plan(self, step: Step, body: dict[str, Any], api: Api) -> _Plan:
        if isinstance(step, Echo):
            step = Text(_last_user_text(api, _messages(body)), step.chunks)
        if isinstance(step, Text):
            return _Plan(_split(step.text, step.chunks or self.chunks), (), step.stop_reason)
        if isinstance(step, ToolCall | ToolCalls):
            calls = (step,) if isinstance(step, ToolCall) else tuple(step.calls)
            text = step.text_before if isinstance(step, ToolCalls) else None
            text = text or "".join(c.text_before or "" for c in calls)
            prefix = "toolu_fake_" if api == "anthropic" else "call_fake_"
            planned = []
            for call in calls:
                arguments = json.dumps(dict(call.arguments))
                # At least two fragments, so clients really have to accumulate them.
                fragments = _split(arguments, max(2, self.chunks))
                planned.append(_Call(call.id or self._next_id(prefix), call.name, arguments, fragments))
            return _Plan(_split(text, self.chunks), tuple(planned), "tool_use")
        # StreamError / Hang / Disconnect inside a stream: the default reply, interrupted.
        assert isinstance(step, StreamError | Hang | Disconnect)
        return _Plan(_split(self.reply, self.chunks), (), "end_turn", interrupt=step)

    async def _play(
        self,
        request: Request,
        api: Api,
        frames: list[_Frame],
        interrupt: StreamError | Hang | Disconnect | None,
    ) -> AsyncIterator[bytes]:
        cut = len(frames) if interrupt is None else _cut_index(frames, interrupt.after_chunks or 0)
        for frame, _ in frames[:cut]:
            yield frame
        if isinstance(interrupt, StreamError):
            if api == "anthropic":
                error = {
                    "type": "error",
                    "error": {"type": interrupt.error_type, "message": interrupt.message},
                }
                yield _anthropic_event("error", error)
            else:
                yield _openai_data(_openai_error_body(interrupt.error_type, interrupt.message, None))
            return
        if isinstance(interrupt, Disconnect):
            await _drop_connection(request)
            return
        if (
            isinstance(interrupt, Hang)
            and await self._stall(interrupt.seconds, None, interrupt.opened) != "elapsed"
        ):
            await _drop_connection(request)
            return
        for frame, _ in frames[cut:]:
            yield frame

    async def _stall(
        self, seconds: float | None, request: Request | None, opened: asyncio.Event | None = None
    ) -> Literal["elapsed", "closing", "gone"]:
        """Wait ``seconds`` (or until ``opened`` is set), cut short by server shutdown or, if
        ``request`` is given, by the client leaving.

        (Mid-stream, Starlette already cancels the response when the client leaves.)
        """
        until = opened.wait() if opened is not None else asyncio.sleep(seconds or 0)
        waiters: dict[asyncio.Future[Any], Literal["elapsed", "closing", "gone"]] = {
            asyncio.ensure_future(until): "elapsed",
            asyncio.ensure_future(self._closing.wait()): "closing",
        }
        if request is not None:
            waiters[asyncio.ensure_future(_wait_disconnect(request))] = "gone"
        try:
            done, _ = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
        return waiters[done.pop()]

    async def _count_tokens(self, request: Request) -> Response:
        body = await _json_object(request) or {}
        self._record(request, "anthropic", body, _api_key(request, "anthropic"), None)
        return JSONResponse({"input_tokens": max(1, len(_dumps(body.get("messages", ""))) // 4)})

    async def _models(self, request: Request) -> Response:
        api = _style(request)
        self._record(request, api, {}, _api_key(request, api), None)
        if api == "anthropic":
            data = [
                {"type": "model", "id": m, "display_name": m, "created_at": "2025-01-01T00:00:00Z"}
                for m in self.models
            ]
            first, last = (self.models[0], self.models[-1]) if self.models else (None, None)
            return JSONResponse({"data": data, "has_more": False, "first_id": first, "last_id": last})
        models: list[dict[str, object]] = [
            {"id": m, "object": "model", "created": 0, "owned_by": "fake"} for m in self.models
        ]
        return JSONResponse({"object": "list", "data": models})

    async def _no_route(self, request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 404
        api = _style(request)
        self._record(request, api, await _json_object(request) or {}, _api_key(request, api), None)
        if api == "anthropic":
            body = _anthropic_error_body("not_found_error", "Not Found", self._next_id("req_fake_"))
            return JSONResponse(body, status)
        message = f"Invalid URL ({request.method} {request.url.path})"
        return JSONResponse(_openai_error_body("invalid_request_error", message, None), status)


async def _json_object(request: Request) -> dict[str, Any] | None:
    """The JSON object body; ``{}`` when empty, None when it is not a JSON object."""
    raw = await request.body()
    if not raw:
        return {}
    try:
        body = json.loads(raw)
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def _api_key(request: Request, api: Api) -> str | None:
    if api == "anthropic" and request.headers.get("x-api-key"):
        return request.headers["x-api-key"]
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return (token.strip() or None) if scheme.lower() == "bearer" else None


def _style(request: Request) -> Api:
    """Which provider a request addresses, for routes both share."""
    anthropic = "anthropic-version" in request.headers or "/messages" in request.url.path
    return "anthropic" if anthropic else "openai"


# ---------------------------------------------------------------------------------------------
# CLI: a separate process, e.g. for benchmarks
# ---------------------------------------------------------------------------------------------


async def _serve_until_signalled(server: FakeModelServer) -> None:
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopped.set)
    async with server:
        print(f"LISTENING {server.port}", flush=True)
        await stopped.wait()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m tests.fakes.models",
        description="Fake Anthropic + OpenAI model server for offline tests.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument(
        "--port", type=int, default=0, help="0 picks a free port (printed as LISTENING <port>)"
    )
    parser.add_argument("--reply", default=DEFAULT_REPLY, help="default reply text")
    parser.add_argument("--chunks", type=int, default=3, help="stream deltas per reply")
    args = parser.parse_args(argv)
    server = FakeModelServer(reply=args.reply, chunks=args.chunks, host=args.host, port=args.port)
    asyncio.run(_serve_until_signalled(server))


if __name__ == "__main__":
    main()
