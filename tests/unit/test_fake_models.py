"""The fake model server, checked with the official SDKs as clients: if they parse it, so will the runner."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import httpx2  # what the SDKs are built on; the Anthropic SDK lets some of its errors escape raw
import openai
import pytest

from tests.fakes.models import (
    DEFAULT_REPLY,
    Disconnect,
    Echo,
    FakeModelServer,
    Hang,
    HTTPError,
    StreamError,
    Text,
    ToolCall,
    ToolCalls,
)

ROOT = Path(__file__).resolve().parents[2]
USER: list[Any] = [{"role": "user", "content": "hi"}]  # Any: the SDKs want their TypedDicts
CLAUDE = "claude-test"
GPT = "gpt-test"


@pytest.fixture
async def fake() -> AsyncIterator[FakeModelServer]:
    async with FakeModelServer(chunks=3) as server:
        yield server


@pytest.fixture
async def claude(fake: FakeModelServer) -> AsyncIterator[anthropic.AsyncAnthropic]:
    async with anthropic.AsyncAnthropic(
        base_url=fake.base_url, api_key="sk-ant-good", max_retries=0
    ) as client:
        yield client


@pytest.fixture
async def gpt(fake: FakeModelServer) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(base_url=fake.base_url + "/v1", api_key="sk-good", max_retries=0) as client:
        yield client


async def ask_claude(client: anthropic.AsyncAnthropic, **kwargs: Any) -> str:
    message = await client.messages.create(
        model=kwargs.pop("model", CLAUDE), max_tokens=64, messages=kwargs.pop("messages", USER), **kwargs
    )
    return text_of(message)


def text_of(message: anthropic.types.Message) -> str:
    return "".join(block.text for block in message.content if block.type == "text")


async def ask_gpt(client: openai.AsyncOpenAI, **kwargs: Any) -> str:
    completion = await client.chat.completions.create(
        model=kwargs.pop("model", GPT), messages=kwargs.pop("messages", USER), **kwargs
    )
    return completion.choices[0].message.content or ""


def sse_frames(raw: str) -> list[dict[str, str]]:
    """Split an SSE body into frames of {field: value}."""
    frames = []
    for block in raw.split("\n\n"):
        if block:
            frames.append(dict(line.split(": ", 1) for line in block.split("\n")))
    return frames


# -- wire format ------------------------------------------------------------------------------


async def test_anthropic_stream_wire_format(fake: FakeModelServer) -> None:
    fake.script(Text("hello world", chunks=3))
    headers = {"x-api-key": "k", "anthropic-version": "2023-06-01"}
    body = {"model": CLAUDE, "max_tokens": 8, "messages": USER, "stream": True}
    async with httpx.AsyncClient() as client:
        response = await client.post(f"{fake.base_url}/v1/messages", headers=headers, json=body)
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["request-id"].startswith("req_")
    frames = sse_frames(response.text)
    events = [f["event"] for f in frames]
    assert events == [
        "message_start",
        "content_block_start",
        "ping",
        *["content_block_delta"] * 3,
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    data = [json.loads(f["data"]) for f in frames]
    assert all(d["type"] == f["event"] for d, f in zip(data, frames, strict=True))
    assert data[0]["message"]["id"].startswith("msg_")
    assert data[0]["message"]["stop_reason"] is None
    assert "".join(d["delta"]["text"] for d in data[3:6]) == "hello world"
    assert data[-2]["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}
    assert data[-2]["usage"]["output_tokens"] > 0


async def test_openai_stream_wire_format(fake: FakeModelServer) -> None:
    fake.script(ToolCall("exec", {"command": "echo hi"}, id="call_1"))
    body = {"model": GPT, "messages": USER, "stream": True, "stream_options": {"include_usage": True}}
    async with httpx.AsyncClient() as client:
        response = await client.post(
            f"{fake.base_url}/v1/chat/completions", headers={"authorization": "Bearer k"}, json=body
        )
    frames = sse_frames(response.text)
    assert all(list(f) == ["data"] for f in frames)  # unnamed events only
    assert frames[-1]["data"] == "[DONE]"
    chunks = [json.loads(f["data"]) for f in frames[:-1]]
    assert all(c["object"] == "chat.completion.chunk" and c["id"] == chunks[0]["id"] for c in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    calls = [
        c["choices"][0]["delta"]["tool_calls"][0]
        for c in chunks
        if c["choices"][0:1] and c["choices"][0]["delta"].get("tool_calls")
    ]
    assert calls[0] == {
        "index": 0,
        "id": "call_1",
        "type": "function",
        "function": {"name": "exec", "arguments": ""},
    }
    assert len(calls) >= 3 and all(set(c) == {"index", "function"} for c in calls[1:])
    assert "".join(c["function"]["arguments"] for c in calls) == '{"command": "echo hi"}'
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"
    assert all(c["usage"] is None for c in chunks[:-1])  # as the real API, with include_usage
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] > 0


# -- text -------------------------------------------------------------------------------------


async def test_anthropic_text_message(fake: FakeModelServer, claude: anthropic.AsyncAnthropic) -> None:
    message = await claude.messages.create(model="claude-x", max_tokens=8, messages=USER)
    assert message.id.startswith("msg_")
    assert (message.type, message.role, message.model) == ("message", "assistant", "claude-x")
    assert [(b.type, getattr(b, "text", None)) for b in message.content] == [("text", DEFAULT_REPLY)]
    assert (message.stop_reason, message.stop_sequence) == ("end_turn", None)
    assert message.usage.input_tokens > 0 and message.usage.output_tokens > 0


async def test_anthropic_text_stream(fake: FakeModelServer, claude: anthropic.AsyncAnthropic) -> None:
    fake.script(Text("the quick brown fox", chunks=4, stop_reason="max_tokens"))
    async with claude.messages.stream(model=CLAUDE, max_tokens=8, messages=USER) as stream:
        deltas = [text async for text in stream.text_stream]
        final = await stream.get_final_message()
    assert len(deltas) == 4
    assert "".join(deltas) == "the quick brown fox" == text_of(final)
    assert final.stop_reason == "max_tokens"


async def test_openai_text_completion(fake: FakeModelServer, gpt: openai.AsyncOpenAI) -> None:
    completion = await gpt.chat.completions.create(model="gpt-x", messages=USER)
    assert completion.id.startswith("chatcmpl-") and completion.object == "chat.completion"
    assert completion.model == "gpt-x"
    choice = completion.choices[0]
    assert (choice.message.role, choice.message.content, choice.finish_reason) == (
        "assistant",
        DEFAULT_REPLY,
        "stop",
    )
    assert completion.usage is not None and completion.usage.total_tokens > 0


async def test_openai_text_stream_with_usage(fake: FakeModelServer, gpt: openai.AsyncOpenAI) -> None:
    fake.script(Text("lorem ipsum dolor", chunks=5, stop_reason="max_tokens"))
    stream = await gpt.chat.completions.create(
        model=GPT,
        messages=USER,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]
    deltas = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert deltas and len(deltas) == 5 and "".join(deltas) == "lorem ipsum dolor"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0


# -- tool calls -------------------------------------------------------------------------------


async def test_anthropic_tool_calls_stream(fake: FakeModelServer, claude: anthropic.AsyncAnthropic) -> None:
    calls = [
        ToolCall("exec", {"command": "echo hi"}),
        ToolCall("read", {"path": "/tmp/x", "lines": [1, 2]}, id="toolu_X"),
    ]
    fake.script(ToolCalls(calls, text_before="Let me check."))
    fragments: dict[int, int] = {}
    async with claude.messages.stream(model=CLAUDE, max_tokens=8, messages=USER) as stream:
        async for event in stream:
            if event.type == "content_block_delta" and event.delta.type == "input_json_delta":
                fragments[event.index] = fragments.get(event.index, 0) + 1
        final = await stream.get_final_message()
    assert final.stop_reason == "tool_use"
    text, first, second = final.content
    assert text.type == "text" and text.text == "Let me check."
    assert first.type == "tool_use" and first.id.startswith("toolu_") and first.name == "exec"
    assert first.input == {"command": "echo hi"}
    assert second.type == "tool_use" and (second.id, second.name) == ("toolu_X", "read")
    assert second.input == {"path": "/tmp/x", "lines": [1, 2]}
    assert fragments[1] >= 2 and fragments[2] >= 2  # arguments really arrive in pieces


async def test_anthropic_tool_call_message(fake: FakeModelServer, claude: anthropic.AsyncAnthropic) -> None:
    fake.script(ToolCall("exec", {"command": "ls"}, id="toolu_1"))
    message = await claude.messages.create(model=CLAUDE, max_tokens=8, messages=USER)
    assert message.stop_reason == "tool_use"
    assert [(b.type, getattr(b, "id", None), getattr(b, "input", None)) for b in message.content] == [
        ("tool_use", "toolu_1", {"command": "ls"})
    ]


async def test_openai_tool_calls_stream(fake: FakeModelServer, gpt: openai.AsyncOpenAI) -> None:
    fake.script(
        ToolCalls([ToolCall("exec", {"command": "echo hi"}), ToolCall("read", {"path": "/x"}, id="call_B")])
    )
    async with gpt.chat.completions.stream(model=GPT, messages=USER) as stream:
        final = await stream.get_final_completion()
    choice = final.choices[0]
    assert choice.finish_reason == "tool_calls"
    tool_calls = choice.message.tool_calls or []
    assert [(c.function.name, json.loads(c.function.arguments)) for c in tool_calls] == [
        ("exec", {"command": "echo hi"}),
        ("read", {"path": "/x"}),
    ]
    assert tool_calls[0].id.startswith("call_") and tool_calls[1].id == "call_B"


async def test_openai_tool_call_completion(fake: FakeModelServer, gpt: openai.AsyncOpenAI) -> None:
    fake.script(ToolCall("exec", {"command": "ls"}, text_before="running"))
    completion = await gpt.chat.completions.create(model=GPT, messages=USER)
    message = completion.choices[0].message
    assert completion.choices[0].finish_reason == "tool_calls" and message.content == "running"
    assert message.tool_calls is not None
    call = message.tool_calls[0]
    assert call.type == "function" and json.loads(call.function.arguments) == {"command": "ls"}


# -- HTTP errors ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "exception", "error_type"),
    [
        (400, anthropic.BadRequestError, "invalid_request_error"),
        (401, anthropic.AuthenticationError, "authentication_error"),
        (402, anthropic.PaymentRequiredError, "billing_error"),
        (403, anthropic.PermissionDeniedError, "permission_error"),
        (404, anthropic.NotFoundError, "not_found_error"),
        (413, anthropic.ContentTooLargeError, "request_too_large"),
        (429, anthropic.RateLimitError, "rate_limit_error"),
        (500, anthropic.InternalServerError, "api_error"),
        (503, anthropic.ServiceUnavailableError, "api_error"),
        (504, anthropic.GatewayTimeoutError, "timeout_error"),
        (529, anthropic.OverloadedError, "overloaded_error"),
    ],
)
async def test_anthropic_http_errors(
    fake: FakeModelServer,
    claude: anthropic.AsyncAnthropic,
    status: int,
    exception: type[anthropic.APIStatusError],
    error_type: str,
) -> None:
    fake.script(HTTPError(status))
    with pytest.raises(exception) as caught:
        await ask_claude(claude)
    error = caught.value
    assert type(error) is exception and error.status_code == status
    assert error.type == error_type and error.api_message
    assert error.body == {
        "type": "error",
        "error": {"type": error_type, "message": error.api_message},
        "request_id": error.request_id,
    }


@pytest.mark.parametrize(
    ("status", "exception", "error_type", "code"),
    [
        (400, openai.BadRequestError, "invalid_request_error", None),
        (401, openai.AuthenticationError, "invalid_request_error", "invalid_api_key"),
        (403, openai.PermissionDeniedError, "request_forbidden", None),
        (404, openai.NotFoundError, "invalid_request_error", "model_not_found"),
        (429, openai.RateLimitError, "requests", "rate_limit_exceeded"),
        (500, openai.InternalServerError, "server_error", None),
        (503, openai.InternalServerError, "server_error", None),
    ],
)
async def test_openai_http_errors(
    fake: FakeModelServer,
    gpt: openai.AsyncOpenAI,
    status: int,
    exception: type[openai.APIStatusError],
    error_type: str,
    code: str | None,
) -> None:
    fake.script(HTTPError(status))
    with pytest.raises(exception) as caught:
        await ask_gpt(gpt)
    error = caught.value
    assert type(error) is exception and error.status_code == status
    assert (error.type, error.code) == (error_type, code)
    # The SDK unwraps {"error": {...}} into .body; .message is "Error code: <status> - <message>".
    assert isinstance(error.body, dict) and error.message.endswith(f" - {error.body['message']}")
    assert error.body == {"message": error.body["message"], "type": error_type, "param": None, "code": code}
    assert error.request_id and error.request_id.startswith("req_")


async def test_model_not_found_names_the_model(
    fake: FakeModelServer, claude: anthropic.AsyncAnthropic, gpt: openai.AsyncOpenAI
) -> None:
    fake.script("claude-gone", HTTPError(404))
    fake.script("gpt-gone", HTTPError(404))
    with pytest.raises(anthropic.NotFoundError, match="model: claude-gone"):
        await ask_claude(claude, model="claude-gone")
    with pytest.raises(openai.NotFoundError, match="The model `gpt-gone` does not exist"):
        await ask_gpt(gpt, model="gpt-gone")


async def test_error_overrides_and_retry_headers(
    fake: FakeModelServer, claude: anthropic.AsyncAnthropic, gpt: openai.AsyncOpenAI
) -> None:
    fake.script(
        HTTPError(429, "overloaded_error", "Overloaded", retry_after=7, headers={"x-should-retry": "false"})
    )
    fake.script(HTTPError(429, "tokens", "slow down", retry_after=0.25, code="insufficient_quota"))
    with pytest.raises(anthropic.RateLimitError) as claude_error:
        await ask_claude(claude)
    # Some overloads arrive as 429 + overloaded_error: classify by error.type, not only status.
    assert (claude_error.value.type, claude_error.value.api_message) == ("overloaded_error", "Overloaded")
    assert claude_error.value.response.headers["retry-after"] == "7"
    assert claude_error.value.response.headers["x-should-retry"] == "false"
    with pytest.raises(openai.RateLimitError) as gpt_error:
        await ask_gpt(gpt)
    assert (gpt_error.value.type, gpt_error.value.code) == ("tokens", "insufficient_quota")
    assert gpt_error.value.body == {
        "message": "slow down",
        "type": "tokens",
        "param": None,
        "code": "insufficient_quota",
    }
    assert gpt_error.value.response.headers["retry-after"] == "0.25"


async def test_sdk_retries_obey_server_headers(fake: FakeModelServer) -> None:
    # Tiny retry-after values keep the SDK's waits short; without them it backs off ≥ 0.375 s.
    fake.script(
        HTTPError(429, retry_after=0.001), HTTPError(529, headers={"retry-after-ms": "1"}), Text("third try")
    )
    async with anthropic.AsyncAnthropic(base_url=fake.base_url, api_key="k", max_retries=2) as client:
        assert await ask_claude(client) == "third try"
    assert [r.step for r in fake.requests] == [
        HTTPError(429, retry_after=0.001),
        HTTPError(529, headers={"retry-after-ms": "1"}),
        Text("third try"),
    ]

    fake.script(HTTPError(503, headers={"x-should-retry": "false"}))
    async with openai.AsyncOpenAI(base_url=fake.base_url + "/v1", api_key="k", max_retries=2) as client:
        with pytest.raises(openai.InternalServerError):
            await ask_gpt(client)
    assert len(fake.requests) == 4  # no retry: the server said so


# -- failures inside a stream -----------------------------------------------------------------


async def test_anthropic_mid_stream_error(fake: FakeModelServer, claude: anthropic.AsyncAnthropic) -> None:
    fake.script(StreamError(after_chunks=2))
    received: list[str] = []
    with pytest.raises(anthropic.APIStatusError) as caught:
        async with claude.messages.stream(model=CLAUDE, max_tokens=8, messages=USER) as stream:
            async for text in stream.text_stream:
                received.append(text)
    # The SDK builds the error from the HTTP 200 response: base class, status 200, but typed body.
    assert type(caught.value) is anthropic.APIStatusError and caught.value.status_code == 200
    assert caught.value.type == "overloaded_error" and caught.value.api_message == "Overloaded"
    assert len(received) == 2 and DEFAULT_REPLY.startswith("".join(received))


async def test_openai_mid_stream_error(fake: FakeModelServer, gpt: openai.AsyncOpenAI) -> None:
    fake.script(StreamError("server_error", "The server had an error", after_chunks=1))
    stream = await gpt.chat.completions.create(model=GPT, messages=USER, stream=True)
    received: list[str] = []
    with pytest.raises(openai.APIError) as caught:
        async for chunk in stream:
            received.append(chunk.choices[0].delta.content or "")
    # Not an APIStatusError: no status code at all, only the error object.
    assert type(caught.value) is openai.APIError
    assert (caught.value.type, caught.value.message) == ("server_error", "The server had an error")
    assert "".join(received) and DEFAULT_REPLY.startswith("".join(received))


async def test_stream_error_on_plain_request_is_http_error(
    fake: FakeModelServer, claude: anthropic.AsyncAnthropic
) -> None:
    fake.script(StreamError())
    with pytest.raises(anthropic.OverloadedError):
        await ask_claude(claude)


async def test_hang_trips_client_timeouts(fake: FakeModelServer) -> None:
    fake.script(Hang(30), Hang(30))
    async with anthropic.AsyncAnthropic(
        base_url=fake.base_url, api_key="k", max_retries=0, timeout=0.3
    ) as claude:
        with pytest.raises(anthropic.APITimeoutError):
            await ask_claude(claude)
    async with openai.AsyncOpenAI(
        base_url=fake.base_url + "/v1", api_key="k", max_retries=0, timeout=0.3
    ) as gpt:
        with pytest.raises(openai.APITimeoutError):
            await ask_gpt(gpt)
    assert fake.pending == 0


async def test_hang_mid_stream_trips_read_timeouts(fake: FakeModelServer) -> None:
    fake.script(Hang(60, after_chunks=1), Hang(60, after_chunks=1))
    received: list[str] = []
    # The first chunk must arrive within the read timeout, so it cannot be short: a loaded
    # machine would trip it before any progress.
    async with anthropic.AsyncAnthropic(
        base_url=fake.base_url, api_key="k", max_retries=0, timeout=3.0
    ) as claude:
        # The Anthropic SDK does not wrap transport errors raised while iterating a stream.
        with pytest.raises(httpx2.ReadTimeout):
            async with claude.messages.stream(model=CLAUDE, max_tokens=8, messages=USER) as stream:
                async for text in stream.text_stream:
                    received.append(text)
    assert len(received) == 1
    async with openai.AsyncOpenAI(
        base_url=fake.base_url + "/v1", api_key="k", max_retries=0, timeout=3.0
    ) as gpt:
        chunks = await gpt.chat.completions.create(model=GPT, messages=USER, stream=True)
        with pytest.raises(openai.APITimeoutError):
            async for _ in chunks:
                pass


async def test_short_hang_then_default_reply(fake: FakeModelServer, claude: anthropic.AsyncAnthropic) -> None:
    fake.script(Hang(0.05), Hang(0.05, after_chunks=1))
    assert await ask_claude(claude) == DEFAULT_REPLY
    async with claude.messages.stream(model=CLAUDE, max_tokens=8, messages=USER) as stream:
        assert "".join([text async for text in stream.text_stream]) == DEFAULT_REPLY


async def test_disconnect_before_response(
    fake: FakeModelServer, claude: anthropic.AsyncAnthropic, gpt: openai.AsyncOpenAI
) -> None:
    fake.script(Disconnect(), Disconnect())
    with pytest.raises(anthropic.APIConnectionError) as claude_error:
        await ask_claude(claude)
    with pytest.raises(openai.APIConnectionError) as gpt_error:
        await ask_gpt(gpt)
    for error in (claude_error.value, gpt_error.value):
        assert not isinstance(error, anthropic.APITimeoutError | openai.APITimeoutError)
        assert "without sending a response" in str(error.__cause__)


async def test_disconnect_mid_stream(
    fake: FakeModelServer, claude: anthropic.AsyncAnthropic, gpt: openai.AsyncOpenAI
) -> None:
    fake.script(Disconnect(after_chunks=1), Disconnect(after_chunks=2))
    received: list[str] = []
    with pytest.raises(httpx2.RemoteProtocolError, match="incomplete chunked read"):
        async with claude.messages.stream(model=CLAUDE, max_tokens=8, messages=USER) as stream:
            async for text in stream.text_stream:
                received.append(text)
    assert len(received) == 1
    chunks = await gpt.chat.completions.create(model=GPT, messages=USER, stream=True)
    with pytest.raises(openai.APIConnectionError):
        async for chunk in chunks:
            received.append(chunk.choices[0].delta.content or "")
    assert len([r for r in received[1:] if r]) == 2


async def test_stop_cuts_a_hanging_request_short() -> None:
    fake = FakeModelServer()
    await fake.start()
    try:
        fake.script(Hang(600))
        async with anthropic.AsyncAnthropic(base_url=fake.base_url, api_key="k", max_retries=0) as client:
            call = asyncio.create_task(ask_claude(client))
            await asyncio.wait_for(fake.wait_for_requests(1), 30)
            # far less than the hang: stop() did not wait for it (no tighter bound: a loaded
            # machine must not fail this)
            await asyncio.wait_for(fake.stop(), 60)
            with pytest.raises(anthropic.APIConnectionError):
                await call
    finally:
        await fake.stop()


# -- scripting, keys, log ---------------------------------------------------------------------


async def test_script_queues_per_model_then_global_then_default(
    fake: FakeModelServer, claude: anthropic.AsyncAnthropic
) -> None:
    fake.script("claude-a", Text("a1"), Text("a2"))
    fake.script(None, Text("any1"))
    fake.script(Text("any2"))  # model may be omitted
    assert fake.pending == 4
    answers = [
        await ask_claude(claude, model=m)
        for m in ("claude-b", "claude-a", "claude-a", "claude-a", "claude-b")
    ]
    assert answers == ["any1", "a1", "a2", "any2", DEFAULT_REPLY]
    assert fake.pending == 0
    assert [r.model for r in fake.requests] == ["claude-b", "claude-a", "claude-a", "claude-a", "claude-b"]


async def test_keys_rejected_forbidden_and_key_scripts(fake: FakeModelServer) -> None:
    fake.keys_rejected = {"sk-bad"}
    fake.keys_forbidden = {"sk-banned"}
    fake.script(HTTPError(429), key="sk-limited")

    async def ask(api_key: str) -> str:
        async with anthropic.AsyncAnthropic(base_url=fake.base_url, api_key=api_key, max_retries=0) as client:
            return await ask_claude(client)

    with pytest.raises(anthropic.AuthenticationError, match="invalid x-api-key"):
        await ask("sk-bad")
    with pytest.raises(anthropic.PermissionDeniedError):
        await ask("sk-banned")
    with pytest.raises(anthropic.RateLimitError):
        await ask("sk-limited")
    assert await ask("sk-good") == DEFAULT_REPLY  # rotation to a working profile
    assert [r.api_key for r in fake.requests] == ["sk-bad", "sk-banned", "sk-limited", "sk-good"]

    async with openai.AsyncOpenAI(base_url=fake.base_url + "/v1", api_key="sk-bad", max_retries=0) as gpt:
        with pytest.raises(openai.AuthenticationError) as caught:
            await ask_gpt(gpt)
    assert caught.value.code == "invalid_api_key"


async def test_missing_auth_and_version_headers(fake: FakeModelServer) -> None:
    body = {"model": CLAUDE, "max_tokens": 8, "messages": USER}
    async with httpx.AsyncClient(base_url=fake.base_url) as client:
        no_key = await client.post("/v1/messages", json=body, headers={"anthropic-version": "2023-06-01"})
        no_version = await client.post("/messages", json=body, headers={"x-api-key": "k"})
        bearer = await client.post(
            "/v1/messages",
            json=body,
            headers={"authorization": "Bearer tok", "anthropic-version": "2023-06-01"},
        )
        no_bearer = await client.post("/chat/completions", json={"model": GPT, "messages": USER})
    assert no_key.status_code == 401 and no_key.json()["error"]["type"] == "authentication_error"
    assert no_version.status_code == 400
    assert no_version.json()["error"] == {
        "type": "invalid_request_error",
        "message": "anthropic-version: header is required",
    }
    assert bearer.status_code == 200 and fake.requests[2].api_key == "tok"
    assert (
        no_bearer.status_code == 401 and "didn't provide an API key" in no_bearer.json()["error"]["message"]
    )


async def test_request_log_anthropic_tool_round_trip(
    fake: FakeModelServer, claude: anthropic.AsyncAnthropic
) -> None:
    fake.script(ToolCall("exec", {"command": "echo hi"}, id="toolu_1"), Echo())
    tools: list[Any] = [{"name": "exec", "description": "run", "input_schema": {"type": "object"}}]
    first = await claude.messages.create(
        model=CLAUDE,
        max_tokens=8,
        system="be brief",
        tools=tools,
        messages=USER,
    )
    messages: list[Any] = [
        *USER,
        {"role": "assistant", "content": [b.model_dump() for b in first.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "hi\n"}]},
    ]
    second = await claude.messages.create(model=CLAUDE, max_tokens=8, tools=tools, messages=messages)
    assert text_of(second) == "hi\n"  # Echo answers the tool result
    log = fake.requests
    assert [(r.api, r.path, r.model, r.api_key, r.stream) for r in log] == [
        ("anthropic", "/v1/messages", CLAUDE, "sk-ant-good", False)
    ] * 2
    assert log[0].system_text == "be brief" and log[0].tool_names == ["exec"]
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", log[0].headers["anthropic-version"])
    assert [(t.tool_use_id, t.content) for t in log[1].tool_results] == [("toolu_1", "hi\n")]
    assert log[1].body["messages"][1]["content"][0]["input"] == {"command": "echo hi"}
    assert log[0].step == ToolCall("exec", {"command": "echo hi"}, id="toolu_1") and log[1].step == Echo()


async def test_request_log_openai_tool_round_trip(fake: FakeModelServer, gpt: openai.AsyncOpenAI) -> None:
    fake.script(ToolCall("exec", {"command": "pwd"}, id="call_1"), Echo())
    system: Any = {"role": "system", "content": "be brief"}
    first = await gpt.chat.completions.create(model=GPT, messages=[system, *USER], stream=True)
    async for _ in first:
        pass
    assistant = {
        "role": "assistant",
        "content": None,
        "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "exec", "arguments": "{}"}}],
    }
    messages: list[Any] = [
        system,
        *USER,
        assistant,
        {"role": "tool", "tool_call_id": "call_1", "content": "/work"},
    ]
    assert await ask_gpt(gpt, messages=messages) == "/work"
    log = fake.requests
    assert [(r.api, r.path, r.stream) for r in log] == [
        ("openai", "/v1/chat/completions", True),
        ("openai", "/v1/chat/completions", False),
    ]
    assert log[0].system_text == "be brief" and log[0].headers["authorization"] == "Bearer sk-good"
    assert [(t.tool_use_id, t.content) for t in log[1].tool_results] == [("call_1", "/work")]


async def test_echo_replies_with_last_user_text(
    fake: FakeModelServer, claude: anthropic.AsyncAnthropic, gpt: openai.AsyncOpenAI
) -> None:
    fake.script(Echo(), Echo(chunks=1))
    said = [{"role": "user", "content": [{"type": "text", "text": "say "}, {"type": "text", "text": "this"}]}]
    assert await ask_claude(claude, messages=said) == "say this"
    assert await ask_gpt(gpt, messages=[{"role": "user", "content": "and that"}]) == "and that"


async def test_unanswered_tool_calls_are_rejected_like_the_real_apis(
    fake: FakeModelServer, claude: anthropic.AsyncAnthropic, gpt: openai.AsyncOpenAI
) -> None:
    tool_use = {"type": "tool_use", "id": "toolu_9", "name": "exec", "input": {}}
    with pytest.raises(anthropic.BadRequestError, match="`tool_use` ids were found without `tool_result`"):
        await ask_claude(claude, messages=[*USER, {"role": "assistant", "content": [tool_use]}, *USER])
    stray = {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_0", "content": "x"}]}
    with pytest.raises(anthropic.BadRequestError, match="unexpected `tool_use_id`"):
        await ask_claude(claude, messages=[stray])
    call = {"id": "call_9", "type": "function", "function": {"name": "exec", "arguments": "{}"}}
    with pytest.raises(openai.BadRequestError, match="did not have response messages: call_9"):
        await ask_gpt(gpt, messages=[*USER, {"role": "assistant", "tool_calls": [call]}, *USER])
    with pytest.raises(openai.BadRequestError, match="must be a response to a preceeding message"):
        await ask_gpt(gpt, messages=[*USER, {"role": "tool", "tool_call_id": "call_0", "content": "x"}])
    fake.validate = False
    assert await ask_gpt(gpt, messages=[*USER, {"role": "tool", "tool_call_id": "call_0", "content": "x"}])


async def test_models_count_tokens_and_unknown_paths(
    fake: FakeModelServer, claude: anthropic.AsyncAnthropic, gpt: openai.AsyncOpenAI
) -> None:
    assert [m.id async for m in gpt.models.list()] == ["fake-model"]
    assert [m.id async for m in claude.models.list()] == ["fake-model"]
    counted = await claude.messages.count_tokens(model=CLAUDE, messages=USER)
    assert counted.input_tokens > 0
    async with httpx.AsyncClient(base_url=fake.base_url) as client:
        anthropic_404 = await client.get("/v1/nope", headers={"anthropic-version": "2023-06-01"})
        openai_404 = await client.post("/v1/nope", json={})
        wrong_method = await client.get("/v1/chat/completions")
    assert anthropic_404.status_code == 404 and anthropic_404.json()["error"]["type"] == "not_found_error"
    assert openai_404.status_code == 404
    assert openai_404.json()["error"] == {
        "message": "Invalid URL (POST /v1/nope)",
        "type": "invalid_request_error",
        "param": None,
        "code": None,
    }
    assert wrong_method.status_code == 405 and "error" in wrong_method.json()


# -- other ways to run it ---------------------------------------------------------------------


def test_thread_variant_for_sync_callers() -> None:
    with FakeModelServer(reply="from a thread") as fake:
        base_url = fake.base_url
        fake.script(HTTPError(529))
        client = anthropic.Anthropic(base_url=base_url, api_key="k", max_retries=0)
        with pytest.raises(anthropic.OverloadedError):
            client.messages.create(model=CLAUDE, max_tokens=8, messages=USER)
        message = client.messages.create(model=CLAUDE, max_tokens=8, messages=USER)
        client.close()
        assert text_of(message) == "from a thread"
        assert len(fake.requests) == 2
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{base_url}/v1/models")  # stopped for real


def test_subprocess_mode() -> None:
    command = [
        sys.executable,
        "-m",
        "tests.fakes.models",
        "--port",
        "0",
        "--reply",
        "from a process",
        "--chunks",
        "2",
    ]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        word, port = process.stdout.readline().split()
        assert word == "LISTENING" and int(port) > 0
        body = {"model": GPT, "messages": USER, "stream": True}
        response = httpx.post(
            f"http://127.0.0.1:{port}/v1/chat/completions", json=body, headers={"authorization": "Bearer k"}
        )
        chunks = [json.loads(f["data"]) for f in sse_frames(response.text)[:-1]]
        deltas = [c["choices"][0]["delta"].get("content") for c in chunks[1:-1]]
        assert deltas == ["from a ", "process"]
    finally:
        process.terminate()
        assert process.wait(timeout=10) == 0  # SIGTERM is a clean shutdown
