"""Providers: streaming, request conversion (system, tools, history) and parsing, over the fake APIs."""

from __future__ import annotations

import json
from collections.abc import AsyncIterable, AsyncIterator
from typing import Any

import msgspec
import pytest

import clawmesh.providers._echo as echo_module
import tests.fakes.models as fm
from clawmesh.checks import default_checks
from clawmesh.config import Config, parse_config
from clawmesh.providers import (
    AssistantMessage,
    ChatMessage,
    Credential,
    EchoProvider,
    ModelRequest,
    OpenAIProvider,
    Provider,
    ProviderError,
    StreamEvent,
    StreamStop,
    TextDelta,
    ToolCall,
    ToolResultMessage,
    ToolSpec,
    UserMessage,
    aclose_providers,
    provider_for,
    resolve_target,
)
from clawmesh.providers._anthropic import parse_anthropic_stream
from clawmesh.providers._openai import OpenAIChunk, parse_openai_stream
from clawmesh.tools.specs import INVALID_ARGUMENTS_KEY

KEY = Credential("test", "k")
NO_KEY = Credential("none:test", None, "none")

EXEC = ToolSpec(
    "exec",
    "Run a shell command",
    {"type": "object", "properties": {"command": {"type": "string"}}, "required": ["command"]},
)


@pytest.fixture
async def fake() -> AsyncIterator[fm.FakeModelServer]:
    async with fm.FakeModelServer(chunks=3) as server:
        yield server
        await aclose_providers()


def config_for(fake: fm.FakeModelServer, **providers: Any) -> Config:
    return parse_config(
        {
            "models": {
                "providers": {
                    "anthropic": {"baseUrl": fake.base_url},
                    "openai": {"baseUrl": fake.base_url + "/v1"},
                    **providers,
                }
            }
        },
        env={},
        checks=default_checks(),
    )


def provider(fake: fm.FakeModelServer, ref: str, **providers: Any) -> Provider:
    return provider_for(resolve_target(config_for(fake, **providers), ref))


async def collect(events: AsyncIterator[StreamEvent]) -> tuple[list[str], StreamStop]:
    deltas: list[str] = []
    stops: list[StreamStop] = []
    async for event in events:
        assert not stops, "nothing may follow the StreamStop"
        if isinstance(event, TextDelta):
            deltas.append(event.text)
        else:
            stops.append(event)
    assert len(stops) == 1
    return deltas, stops[0]


def request(*messages: ChatMessage, model: str = "m-test", **kwargs: Any) -> ModelRequest:
    return ModelRequest(model=model, messages=messages or (UserMessage("hi"),), **kwargs)


# -- plain text --------------------------------------------------------------------------------


@pytest.mark.parametrize("ref", ["anthropic/claude-t", "openai/gpt-t"])
async def test_text_streams_as_deltas_with_usage(fake: fm.FakeModelServer, ref: str) -> None:
    fake.script(fm.Text("the quick brown fox", chunks=4))
    deltas, stop = await collect(
        provider(fake, ref).stream(
            request(model=ref.split("/")[1], system="be brief"), Credential("test", "sk-1")
        )
    )
    assert len(deltas) == 4 and "".join(deltas) == "the quick brown fox"
    assert stop.stop_reason == "end_turn" and stop.tool_calls == ()
    assert stop.usage.input_tokens > 0 and stop.usage.output_tokens > 0
    sent = fake.requests[-1]
    assert sent.stream and sent.api_key == "sk-1" and sent.model == ref.split("/")[1]
    assert sent.system_text == "be brief"
    assert sent.last_user_text == "hi"


@pytest.mark.parametrize("ref", ["anthropic/claude-t", "openai/gpt-t"])
async def test_a_provider_works_again_after_the_providers_were_closed(
    fake: fm.FakeModelServer, ref: str
) -> None:
    # a service stopped in this process (tests run several gateways in one) closes them; one
    # started again must get new connections, not closed ones
    fake.script(fm.Text("before"), fm.Text("after"))
    first = provider(fake, ref)
    assert "".join((await collect(first.stream(request(), KEY)))[0]) == "before"
    await aclose_providers()
    again = provider(fake, ref)
    assert again is not first
    assert "".join((await collect(again.stream(request(), KEY)))[0]) == "after"


@pytest.mark.parametrize(
    ("ref", "credential", "x_api_key", "authorization"),
    [
        # This API version takes API keys as bearer tokens too (as its SDK sends them).
        ("anthropic/c", Credential("anthropic:work", "sk-ant"), None, "Bearer sk-ant"),
        ("anthropic/c", Credential("anthropic:home", "setup-token", "token"), None, "Bearer setup-token"),
        ("openai/g", Credential("openai:work", "sk-oai"), None, "Bearer sk-oai"),
        ("openai/g", Credential("openai:home", "a-token", "token"), None, "Bearer a-token"),
    ],
)
async def test_each_provider_sends_a_credential_its_own_way(
    fake: fm.FakeModelServer,
    ref: str,
    credential: Credential,
    x_api_key: str | None,
    authorization: str | None,
) -> None:
    fake.script(fm.Text("ok"))
    await collect(provider(fake, ref).stream(request(model=ref.split("/")[1]), credential))
    sent = fake.requests[-1].headers
    assert (sent.get("x-api-key"), sent.get("authorization")) == (x_api_key, authorization)


def test_anthropic_tells_tokens_from_api_keys() -> None:
    from clawmesh.providers._anthropic import _client_key

    assert _client_key(Credential("anthropic:home", "t", "token")) == ("token", "t")
    assert _client_key(Credential("anthropic:work", "k")) == ("api_key", "k")
    assert _client_key(Credential("none:proxy", None, "none")) == ("none", "")


async def test_anthropic_request_shape(fake: fm.FakeModelServer) -> None:
    await collect(
        provider(fake, "anthropic/c").stream(
            request(model="c", tools=(EXEC,), max_tokens=77, system="sys"), KEY
        )
    )
    body = fake.requests[-1].body
    assert body["max_tokens"] == 77 and body["system"] == "sys" and body["stream"] is True
    assert body["tools"] == [
        {"name": "exec", "description": EXEC.description, "input_schema": EXEC.parameters}
    ]
    assert body["messages"] == [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]
    assert "temperature" not in body  # only sent when asked for
    assert fake.requests[-1].headers["anthropic-version"]


async def test_openai_request_shape(fake: fm.FakeModelServer) -> None:
    await collect(
        provider(fake, "openai/g").stream(
            request(model="g", tools=(EXEC,), max_tokens=55, system="sys", temperature=0.2), KEY
        )
    )
    body = fake.requests[-1].body
    assert body["messages"] == [{"role": "system", "content": "sys"}, {"role": "user", "content": "hi"}]
    assert body["tools"] == [
        {
            "type": "function",
            "function": {"name": "exec", "description": EXEC.description, "parameters": EXEC.parameters},
        }
    ]
    assert body["stream_options"] == {"include_usage": True} and body["temperature"] == 0.2
    # A compatible server (not api.openai.com) gets the long-standing `max_tokens`.
    assert body["max_tokens"] == 55 and "max_completion_tokens" not in body


def test_api_openai_com_gets_max_completion_tokens() -> None:
    target = resolve_target(parse_config({}, env={}, checks=default_checks()), "openai/gpt-x")
    built = provider_for(target)
    assert isinstance(built, OpenAIProvider) and built.max_tokens_field == "max_completion_tokens"


async def test_configured_headers_are_sent(fake: fm.FakeModelServer) -> None:
    config = parse_config(
        {"models": {"providers": {"anthropic": {"baseUrl": fake.base_url, "headers": {"x-team": "blue"}}}}},
        env={},
        checks=default_checks(),
    )
    await collect(provider_for(resolve_target(config, "anthropic/c")).stream(request(), KEY))
    assert fake.requests[-1].headers["x-team"] == "blue"


# -- tool calls --------------------------------------------------------------------------------


@pytest.mark.parametrize("ref", ["anthropic/claude-t", "openai/gpt-t"])
async def test_tool_calls_are_parsed(fake: fm.FakeModelServer, ref: str) -> None:
    fake.script(
        fm.ToolCalls(
            [
                fm.ToolCall("exec", {"command": "ls -la"}, id="c1"),
                fm.ToolCall("read", {"path": "/x", "n": 3}),
            ],
            text_before="Let me look.",
        )
    )
    deltas, stop = await collect(provider(fake, ref).stream(request(tools=(EXEC,)), KEY))
    assert "".join(deltas) == "Let me look."
    assert stop.stop_reason == "tool_use"
    assert [(c.name, c.arguments) for c in stop.tool_calls] == [
        ("exec", {"command": "ls -la"}),
        ("read", {"path": "/x", "n": 3}),
    ]
    assert stop.tool_calls[0].id == "c1" and stop.tool_calls[1].id


HISTORY: tuple[ChatMessage, ...] = (
    UserMessage("list files"),
    AssistantMessage(
        "Sure.",
        (ToolCall("t1", "exec", {"command": "ls"}), ToolCall("t2", "exec", {"command": "pwd"})),
    ),
    ToolResultMessage("t1", "exec", "a.txt"),
    ToolResultMessage("t2", "exec", "permission denied", is_error=True),
    AssistantMessage("", (ToolCall("t3", "noargs", {}),)),
    ToolResultMessage("t3", "noargs", "done"),
    AssistantMessage("Here they are."),
    UserMessage("thanks"),
)


async def test_anthropic_history_conversion(fake: fm.FakeModelServer) -> None:
    # The fake rejects (400) tool_use blocks not answered in the very next user message.
    await collect(provider(fake, "anthropic/c").stream(request(*HISTORY), KEY))
    assert fake.requests[-1].body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "list files"}]},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Sure."},
                {"type": "tool_use", "id": "t1", "name": "exec", "input": {"command": "ls"}},
                {"type": "tool_use", "id": "t2", "name": "exec", "input": {"command": "pwd"}},
            ],
        },
        {
            "role": "user",  # both results merged into one user turn
            "content": [
                {"type": "tool_result", "tool_use_id": "t1", "content": "a.txt"},
                {
                    "type": "tool_result",
                    "tool_use_id": "t2",
                    "content": "permission denied",
                    "is_error": True,
                },
            ],
        },
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t3", "name": "noargs", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t3", "content": "done"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "Here they are."}]},
        {"role": "user", "content": [{"type": "text", "text": "thanks"}]},
    ]


async def test_openai_history_conversion(fake: fm.FakeModelServer) -> None:
    await collect(provider(fake, "openai/g").stream(request(*HISTORY, system="sys"), KEY))
    messages = fake.requests[-1].body["messages"]
    assert messages[:2] == [{"role": "system", "content": "sys"}, {"role": "user", "content": "list files"}]
    assert messages[2]["role"] == "assistant" and messages[2]["content"] == "Sure."
    calls = messages[2]["tool_calls"]
    assert [(c["id"], c["type"], c["function"]["name"]) for c in calls] == [
        ("t1", "function", "exec"),
        ("t2", "function", "exec"),
    ]
    assert [json.loads(c["function"]["arguments"]) for c in calls] == [{"command": "ls"}, {"command": "pwd"}]
    assert messages[3:5] == [
        {"role": "tool", "tool_call_id": "t1", "content": "a.txt"},
        {"role": "tool", "tool_call_id": "t2", "content": "Error: permission denied"},
    ]
    assert messages[5]["content"] is None and messages[5]["tool_calls"][0]["function"]["arguments"] == "{}"
    assert messages[6:] == [
        {"role": "tool", "tool_call_id": "t3", "content": "done"},
        {"role": "assistant", "content": "Here they are."},
        {"role": "user", "content": "thanks"},
    ]


async def test_foreign_tool_ids_are_made_safe_for_anthropic(fake: fm.FakeModelServer) -> None:
    # After a failover, Anthropic may see ids another provider made; it only takes [A-Za-z0-9_-].
    history = (
        UserMessage("go"),
        AssistantMessage("", (ToolCall("call:0.x", "exec", {}),)),
        ToolResultMessage("call:0.x", "exec", "ok"),
    )
    await collect(provider(fake, "anthropic/c").stream(request(*history), KEY))
    sent = fake.requests[-1]
    assert sent.messages[1]["content"][0]["id"] == "call_0_x"
    assert sent.tool_results[0].tool_use_id == "call_0_x"


async def test_echo_step_round_trips_tool_results(fake: fm.FakeModelServer) -> None:
    fake.script(fm.Echo(), fm.Echo())
    # Chat Completions has no error flag on tool results: the content says it instead.
    for ref, second in (("anthropic/c", "permission denied"), ("openai/g", "Error: permission denied")):
        deltas, _ = await collect(provider(fake, ref).stream(request(*HISTORY[:4]), KEY))
        assert "".join(deltas) == "a.txt\n" + second


# -- lenient parsing (OpenAI-compatible servers) and empty streams -----------------------------


async def _chunks(*raw: dict[str, Any]) -> AsyncIterator[OpenAIChunk]:
    for item in raw:
        yield msgspec.convert(
            {"id": "x", "object": "chat.completion.chunk", "created": 0, "model": "m", **item}, OpenAIChunk
        )


def _call(index: int | None, id: str | None = None, name: str | None = None, args: str | None = None) -> Any:
    function = {k: v for k, v in (("name", name), ("arguments", args)) if v is not None}
    return {k: v for k, v in (("index", index), ("id", id), ("function", function)) if v is not None}


def _choice(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


async def parse_openai(*raw: dict[str, Any]) -> tuple[list[str], StreamStop]:
    return await collect(parse_openai_stream(_chunks(*raw), provider="p", model="m"))


async def test_openai_parser_tolerates_missing_ids_usage_and_empty_arguments() -> None:
    deltas, stop = await parse_openai(
        _choice({"content": "hm"}),
        _choice({"tool_calls": [_call(0, name="noargs", args="")]}),
        _choice({"tool_calls": [_call(1, name="bad", args="{not json")]}),
        _choice({}, "stop"),  # some servers say "stop" although tools were called
    )
    assert deltas == ["hm"]
    assert stop.stop_reason == "tool_use" and stop.usage.input_tokens == 0
    noargs, bad = stop.tool_calls
    assert (noargs.name, noargs.arguments) == ("noargs", {})
    assert noargs.id.startswith("call_") and bad.id.startswith("call_") and noargs.id != bad.id
    assert bad.arguments == {INVALID_ARGUMENTS_KEY: "{not json"}


async def test_openai_parser_splits_parallel_calls_sent_at_one_index() -> None:
    # Older Ollama: every complete call at index 0, told apart only by id.
    _, stop = await parse_openai(
        _choice({"tool_calls": [_call(0, "a", "exec", '{"command": "ls"}')]}),
        _choice({"tool_calls": [_call(0, "b", "exec", '{"command": "pwd"}')]}),
    )
    assert [(c.id, c.arguments["command"]) for c in stop.tool_calls] == [("a", "ls"), ("b", "pwd")]
    assert stop.stop_reason == "tool_use"  # no finish_reason at all


@pytest.mark.parametrize(
    ("finish", "expected"),
    [("stop", "end_turn"), ("length", "max_tokens"), ("content_filter", "refusal"), (None, "end_turn")],
)
async def test_openai_finish_reasons(finish: str | None, expected: str) -> None:
    _, stop = await parse_openai(_choice({"content": "x"}, finish))
    assert stop.stop_reason == expected


async def _nothing() -> AsyncIterator[Any]:
    empty: tuple[Any, ...] = ()
    for item in empty:
        yield item


@pytest.mark.parametrize("parse", [parse_anthropic_stream, parse_openai_stream])
async def test_stream_without_chunks_is_a_timeout(parse: Any) -> None:
    events: AsyncIterable[Any] = parse(_nothing(), provider="p", model="m")
    with pytest.raises(ProviderError) as caught:
        async for _ in events:
            pass
    assert caught.value.reason == "timeout" and "without chunks" in caught.value.message
    assert (caught.value.provider, caught.value.model) == ("p", "m")


# -- echo --------------------------------------------------------------------------------------


async def test_echo_is_deterministic_and_streams_words() -> None:
    echo = EchoProvider()
    req = request(UserMessage("first"), AssistantMessage("ok"), UserMessage("hello  big world "))
    one = await collect(echo.stream(req, NO_KEY))
    two = await collect(echo.stream(req, NO_KEY))
    assert one == two
    deltas, stop = one
    assert "".join(deltas) == "echo: hello  big world "
    assert deltas == ["echo: ", "hello  ", "big ", "world "]
    assert stop.stop_reason == "end_turn" and stop.tool_calls == ()
    assert (stop.usage.input_tokens, stop.usage.output_tokens) == (
        5,
        4,
    )  # words: first ok hello big world / echo: hello big world


async def test_echo_echoes_the_last_tool_result() -> None:
    req = request(
        UserMessage("run"),
        AssistantMessage("", (ToolCall("t1", "exec", {}),)),
        ToolResultMessage("t1", "exec", "42 files"),
    )
    deltas, _ = await collect(EchoProvider().stream(req, NO_KEY))
    assert "".join(deltas) == "echo: tool exec returned: 42 files"


def test_echo_needs_no_network_or_key() -> None:
    target = resolve_target(parse_config({}, env={}, checks=default_checks()), "echo/anything-goes")
    assert (target.api, target.model, target.base_url) == ("echo", "anything-goes", None)
    assert isinstance(provider_for(target), EchoProvider)
    assert "not a model" in (echo_module.__doc__ or "")
