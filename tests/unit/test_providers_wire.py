"""The providers' own HTTP layer: SSE framing, connection reuse, answers the fake server never
gives (a server that ignores `stream: true`, a proxy's HTML error page, a garbled chunk)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

import tests.fakes.models as fm
from clawmesh.providers import (
    Credential,
    ModelRequest,
    ProviderError,
    StreamEvent,
    StreamStop,
    TextDelta,
    UserMessage,
)
from clawmesh.providers._anthropic import AnthropicProvider
from clawmesh.providers._http import LoopClients, iter_sse
from clawmesh.providers._openai import OpenAIProvider

KEY = Credential("test", "k")
REQUEST = ModelRequest(model="m", messages=(UserMessage("hi"),))


async def _bytes(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def _events(*parts: bytes) -> list[tuple[str, bytes]]:
    return [event async for event in iter_sse(_bytes(*parts))]


async def test_sse_frames_split_anywhere_with_crlf_comments_and_multiline_data() -> None:
    stream = (
        b": keep-alive\r\nevent: ping\r\ndata: {}\r\n\r\ndata: a\ndata: b\n\nevent: x\ndata:c\n\nid: 7\n\n"
    )
    whole = await _events(stream)
    assert whole == [("ping", b"{}"), ("", b"a\nb"), ("x", b"c")]
    assert await _events(*(stream[i : i + 1] for i in range(len(stream)))) == whole
    assert await _events(b"data: last") == [("", b"last")]  # closed without the blank line


async def _collect(provider: OpenAIProvider | AnthropicProvider) -> tuple[str, StreamStop]:
    text: list[str] = []
    stop: StreamStop | None = None
    event: StreamEvent
    async for event in provider.stream(REQUEST, KEY):
        if isinstance(event, TextDelta):
            text.append(event.text)
        else:
            stop = event
    assert stop is not None
    return "".join(text), stop


def _mocked(
    provider: OpenAIProvider | AnthropicProvider, handler: Callable[[httpx.Request], httpx.Response]
) -> None:
    provider._pool = LoopClients(lambda: httpx.AsyncClient(transport=httpx.MockTransport(handler)))


OPENAI_COMPLETION = {
    "id": "c",
    "object": "chat.completion",
    "choices": [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": "done",
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "exec", "arguments": '{"a": 1}'},
                    }
                ],
            },
            "finish_reason": "tool_calls",
        }
    ],
    "usage": {"prompt_tokens": 5, "completion_tokens": 2},
}
ANTHROPIC_MESSAGE = {
    "id": "msg",
    "type": "message",
    "role": "assistant",
    "content": [
        {"type": "text", "text": "done"},
        {"type": "tool_use", "id": "toolu_1", "name": "exec", "input": {"a": 1}},
    ],
    "stop_reason": "tool_use",
    "usage": {"input_tokens": 5, "output_tokens": 2, "cache_read_input_tokens": 1},
}


@pytest.mark.parametrize(
    ("make", "payload", "input_tokens"),
    [
        (lambda: OpenAIProvider("o", base_url="http://o/v1"), OPENAI_COMPLETION, 5),
        (lambda: AnthropicProvider("a", base_url="http://a"), ANTHROPIC_MESSAGE, 6),
    ],
)
async def test_a_non_streamed_answer_is_taken_whole(
    make: Callable[[], OpenAIProvider | AnthropicProvider], payload: dict[str, Any], input_tokens: int
) -> None:
    # Some compatible servers and proxies ignore `stream: true` and answer with one JSON body.
    provider = make()
    _mocked(provider, lambda request: httpx.Response(200, json=payload))
    text, stop = await _collect(provider)
    assert text == "done"
    assert stop.stop_reason == "tool_use"
    assert [(c.id, c.name, c.arguments) for c in stop.tool_calls] == [
        ((payload is OPENAI_COMPLETION and "call_1") or "toolu_1", "exec", {"a": 1})
    ]
    assert (stop.usage.input_tokens, stop.usage.output_tokens) == (input_tokens, 2)


@pytest.mark.parametrize(
    "make",
    [
        lambda: OpenAIProvider("o", base_url="http://o/v1"),
        lambda: AnthropicProvider("a", base_url="http://a"),
    ],
)
async def test_a_proxy_error_page_is_classified_by_status_and_quoted(
    make: Callable[[], OpenAIProvider | AnthropicProvider],
) -> None:
    provider = make()
    _mocked(
        provider,
        lambda request: httpx.Response(502, text="<html>Bad Gateway</html>", headers={"retry-after": "3"}),
    )
    with pytest.raises(ProviderError) as caught:
        await _collect(provider)
    error = caught.value
    assert (error.reason, error.status, error.retry_after) == ("server", 502, 3.0)
    assert "Bad Gateway" in error.message


@pytest.mark.parametrize(
    ("make", "body"),
    [
        (lambda: OpenAIProvider("o", base_url="http://o/v1"), b'data: {"choices": [\n\n'),
        (lambda: AnthropicProvider("a", base_url="http://a"), b"event: message_start\ndata: {not json\n\n"),
    ],
)
async def test_a_garbled_stream_chunk_is_a_server_error(
    make: Callable[[], OpenAIProvider | AnthropicProvider], body: bytes
) -> None:
    provider = make()
    _mocked(
        provider,
        lambda request: httpx.Response(200, content=body, headers={"content-type": "text/event-stream"}),
    )
    with pytest.raises(ProviderError) as caught:
        await _collect(provider)
    assert caught.value.reason == "server" and "invalid response" in caught.value.message


@pytest.mark.parametrize("api", ["openai", "anthropic"])
async def test_sequential_calls_reuse_one_connection(api: str) -> None:
    async with fm.FakeModelServer(chunks=3) as fake:
        provider: OpenAIProvider | AnthropicProvider = (
            OpenAIProvider("o", base_url=fake.base_url + "/v1")
            if api == "openai"
            else AnthropicProvider("a", base_url=fake.base_url)
        )
        try:
            for _ in range(3):
                text, _stop = await _collect(provider)
                assert text == fm.DEFAULT_REPLY
            # Every call read its body to the end, so the pool kept the one connection.
            connections = provider._pool.get()._transport._pool.connections  # type: ignore[attr-defined]
            assert len(connections) == 1
        finally:
            await provider.aclose()


async def test_the_request_body_is_the_wire_json() -> None:
    seen: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(json.loads(request.content))
        return httpx.Response(200, json=OPENAI_COMPLETION)

    provider = OpenAIProvider("o", base_url="http://o/v1/", max_tokens_field="max_tokens")
    _mocked(provider, handler)
    await _collect(provider)
    assert seen == [
        {
            "model": "m",
            "messages": [{"role": "user", "content": "hi"}],
            "stream": True,
            "stream_options": {"include_usage": True},
            "max_tokens": 4096,
        }
    ]
