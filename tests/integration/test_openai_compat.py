"""The OpenAI-compatible endpoint end to end with the real `openai` client: ingress → router →
runner → a fake OpenAI model server, on a real nats-server. Private sessions, client tools
returned to the caller and their results sent back, sampling fields reaching the provider,
images reaching the model, OpenAI-shaped 401/404/405."""

from __future__ import annotations

import base64
import urllib.parse
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import openai
import pytest
import pytest_asyncio

from tests.fakes.models import FakeModelServer, Text, ToolCall
from tests.fixtures.gateway import Gateway, run_gateway

TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


@pytest_asyncio.fixture
async def fake() -> AsyncIterator[FakeModelServer]:
    async with FakeModelServer() as server:
        yield server


@pytest_asyncio.fixture
async def gw(nats_url: str, tmp_path: Path, fake: FakeModelServer) -> AsyncIterator[Gateway]:
    config: dict[str, Any] = {
        "agents": {
            "list": [
                {"id": "home", "default": True, "model": "openai/fake-model"},
                {"id": "echo", "model": "echo/x"},
            ]
        },
        "models": {"providers": {"openai": {"baseUrl": fake.base_url + "/v1", "apiKey": "sk-test"}}},
    }
    async with run_gateway(nats_url, config, tmp_path) as gateway:
        yield gateway


def _client(gw: Gateway, api_key: str | None = None) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=gw.url + "/v1", api_key=api_key or gw.token, max_retries=0)


async def test_sessions_are_private_unless_a_user_is_named(gw: Gateway, fake: FakeModelServer) -> None:
    async with _client(gw) as client:
        for user in (None, None, "alice", "alice", "bob"):
            extra = {"user": user} if user else {}
            raw = await client.chat.completions.with_raw_response.create(
                model="openclaw", messages=[{"role": "user", "content": f"hi from {user}"}], **extra
            )
            assert raw.parse().choices[0].message.content == "pong from fake"
    requests = await fake.wait_for_requests(5)
    # what each model call saw before the current message: only its own session's turns
    seen = [[m["content"] for m in r.messages if m["role"] == "user"] for r in requests]
    assert seen == [
        ["hi from None"],
        ["hi from None"],  # no `user`: a new session, nothing of the first request
        ["hi from alice"],
        ["hi from alice", "hi from alice"],  # alice's session continues
        ["hi from bob"],  # bob's is his own
    ]


async def test_a_user_beyond_ascii_keeps_its_session_and_the_header_is_percent_encoded(
    gw: Gateway, fake: FakeModelServer
) -> None:
    """A header carries visible ASCII only: a key made from `José 😀` went into the response
    header as it was and the answer was a 500 after the turn had run. It is sent
    percent-encoded (UTF-8), streamed or not; a `user` with control characters is refused."""
    user = "José 😀"
    key = "agent:home:openai-user:josé 😀"
    encoded = "agent:home:openai-user:jos%C3%A9 %F0%9F%98%80"
    assert urllib.parse.unquote(encoded) == key
    body = {"model": "openclaw", "messages": [{"role": "user", "content": "hi"}], "user": user}
    async with gw.client() as http:
        r = await http.post("/v1/chat/completions", json=body)
        assert r.status_code == 200 and r.headers["x-openclaw-session-key"] == encoded
        async with http.stream("POST", "/v1/chat/completions", json={**body, "stream": True}) as streamed:
            assert streamed.status_code == 200 and streamed.headers["x-openclaw-session-key"] == encoded
            assert "[DONE]" in (await streamed.aread()).decode()
        r = await http.post("/v1/responses", json={"model": "openclaw", "input": "hi", "user": user})
        assert r.status_code == 200
        assert r.headers["x-openclaw-session-key"] == "agent:home:openresponses-user:jos%C3%A9 %F0%9F%98%80"
        for bad in ("a\nb", "tab\there", "c1\x85"):
            r = await http.post("/v1/chat/completions", json={**body, "user": bad})
            assert r.status_code == 400, r.text
            assert (
                r.json()["error"]["param"] == "user" and "control characters" in r.json()["error"]["message"]
            )
        plain = await http.post("/v1/chat/completions", json={**body, "user": "Alice"})
        assert plain.headers["x-openclaw-session-key"] == "agent:home:openai-user:alice"
        again = await http.post("/v1/chat/completions", json=body)
        assert again.status_code == 200
    # the two turns before, streamed or not, were in the session this one continues
    requests = await fake.wait_for_requests(5)
    assert [m["content"] for m in requests[-1].messages if m["role"] == "user"] == ["hi", "hi", "hi"]


async def test_client_tools_round_trip_through_the_caller(gw: Gateway, fake: FakeModelServer) -> None:
    fake.script(ToolCall("get_weather", {"city": "Oslo"}, id="call_w1"), Text("It is sunny in Oslo."))
    messages: list[Any] = [{"role": "user", "content": "weather in Oslo?"}]
    async with _client(gw) as client:
        first = await client.chat.completions.create(
            model="openclaw/home",
            messages=messages,
            tools=[TOOL],
            tool_choice="auto",
            temperature=0.3,
            top_p=0.5,
            stop=["END"],
            max_tokens=77,
        )
        choice = first.choices[0]
        assert choice.finish_reason == "tool_calls"
        call = choice.message.tool_calls[0]  # type: ignore[index]
        assert (call.id, call.function.name, call.function.arguments) == (
            "call_w1",
            "get_weather",
            '{"city":"Oslo"}',
        )
        messages += [
            choice.message.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": "call_w1", "content": "sunny, 21C"},
        ]
        second = await client.chat.completions.create(model="openclaw/home", messages=messages, tools=[TOOL])
    assert second.choices[0].message.content == "It is sunny in Oslo."
    assert second.choices[0].finish_reason == "stop"
    asked, answered = await fake.wait_for_requests(2)
    assert "get_weather" in asked.tool_names
    assert {k: asked.body.get(k) for k in ("temperature", "top_p", "stop", "tool_choice")} == {
        "temperature": 0.3,
        "top_p": 0.5,
        "stop": ["END"],
        "tool_choice": "auto",
    }
    assert 77 in (asked.body.get("max_tokens"), asked.body.get("max_completion_tokens"))
    # the caller's tool result reached the model in the follow-up
    assert "Tool:call_w1: sunny, 21C" in answered.last_user_text


async def test_streamed_tool_calls_and_usage(gw: Gateway, fake: FakeModelServer) -> None:
    fake.script(ToolCall("get_weather", {"city": "Rome"}, id="call_r"))
    async with _client(gw) as client:
        stream = await client.chat.completions.create(
            model="openclaw",
            messages=[{"role": "user", "content": "weather in Rome?"}],
            tools=[TOOL],
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = [c async for c in stream]
    calls = [t for c in chunks if c.choices for t in c.choices[0].delta.tool_calls or ()]
    assert [(t.id, t.function.name, t.function.arguments) for t in calls] == [  # type: ignore[union-attr]
        ("call_r", "get_weather", '{"city":"Rome"}')
    ]
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None


async def test_images_reach_the_model_and_bad_values_are_400(gw: Gateway, fake: FakeModelServer) -> None:
    url = "data:image/png;base64," + base64.b64encode(b"\x89PNG-not-really").decode()
    async with _client(gw) as client:
        echoed = await client.chat.completions.create(
            model="openclaw/echo",
            messages=[
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "look"},
                        {"type": "image_url", "image_url": {"url": url}},
                    ],
                }
            ],
        )
        await client.chat.completions.create(
            model="openclaw/home",
            messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]}],
        )
        with pytest.raises(openai.BadRequestError) as bad:
            await client.chat.completions.create(
                model="openclaw", messages=[{"role": "user", "content": "x"}], temperature=2.5
            )
    assert echoed.choices[0].message.content == "echo: look [1 image(s): image/png]"
    (request,) = await fake.wait_for_requests(1)
    parts = request.messages[-1]["content"]
    assert {"type": "image_url", "image_url": {"url": url}} in parts
    assert bad.value.param == "temperature" and "between 0 and 2" in bad.value.message


async def test_errors_are_openai_shaped(gw: Gateway) -> None:
    async with _client(gw, api_key="wrong") as client:
        with pytest.raises(openai.AuthenticationError) as denied:
            await client.models.list()
    assert denied.value.status_code == 401
    body = denied.value.body
    assert (
        isinstance(body, dict) and body["type"] == "authentication_error" and body["code"] == "unauthorized"
    )
    async with _client(gw) as client:
        one = await client.models.retrieve("openclaw/default")
        with pytest.raises(openai.NotFoundError) as missing:
            await client.models.retrieve("openclaw/ghost")
    assert one.id == "openclaw/default"
    assert missing.value.code == "model_not_found"
    async with gw.client() as http:
        wrong = await http.get("/v1/chat/completions")
    assert wrong.status_code == 405 and wrong.json()["error"]["type"] == "invalid_request_error"


async def test_responses_with_the_openai_client(gw: Gateway, fake: FakeModelServer) -> None:
    fake.script(ToolCall("get_weather", {"city": "Lima"}, id="call_l"), Text("Lima: fog."))
    tool = {"type": "function", "name": "get_weather", "parameters": TOOL["function"]["parameters"]}  # type: ignore[index]
    async with _client(gw) as client:
        text = await client.responses.create(model="openclaw/echo", input="hello there")
        streamed = await client.responses.create(model="openclaw/echo", input="streamed", stream=True)
        events = [e async for e in streamed]
        asked = await client.responses.create(model="openclaw", input="weather in Lima?", tools=[tool])  # type: ignore[list-item]
        answered = await client.responses.create(
            model="openclaw",
            input=[{"type": "function_call_output", "call_id": "call_l", "output": "fog"}],
            previous_response_id=asked.id,
            tools=[tool],  # type: ignore[list-item]
        )
    assert text.output_text == "echo: hello there" and text.status == "completed"
    assert [e.type for e in events][-1] == "response.completed"
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == "echo: streamed"  # type: ignore[union-attr]
    calls = [o for o in asked.output if o.type == "function_call"]
    assert [(c.call_id, c.name, c.arguments) for c in calls] == [("call_l", "get_weather", '{"city":"Lima"}')]  # type: ignore[union-attr]
    assert answered.output_text == "Lima: fog."
    _, second = await fake.wait_for_requests(2)
    assert "Tool:call_l: fog" in second.last_user_text
    # previous_response_id continued the session: the model saw the first turn again
    assert any("weather in Lima?" in str(m.get("content")) for m in second.messages)


async def test_a_required_tool_that_is_not_called_fails_the_turn(gw: Gateway, fake: FakeModelServer) -> None:
    fake.script(Text("I would rather not."))
    async with _client(gw) as client:
        with pytest.raises(openai.InternalServerError) as failed:
            await client.chat.completions.create(
                model="openclaw",
                messages=[{"role": "user", "content": "weather?"}],
                tools=[TOOL],  # type: ignore[list-item]
                tool_choice="required",
            )
    assert failed.value.status_code == 502 and "requires a call of a client tool" in failed.value.message
    (request,) = await fake.wait_for_requests(1)
    assert request.body["tool_choice"] == "required"
