"""The OpenAI-compatible endpoint as OpenClaw serves it (its docs/gateway/openai-http-api.md):
private sessions, agent targets in `model`, the x-openclaw-* headers, validated sampling
fields, client tools, images, usage in streams, OpenAI-shaped errors. Scripted turn replies,
no NATS (the bus end to end is in tests/integration/test_openai_compat.py)."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from clawmesh.checks import default_checks
from clawmesh.config import load_config
from clawmesh.wire import ClientTool, ClientToolCall, ReplyMessage, TurnFinal, TurnOptions, TurnStarted
from clawmesh_ingress.openai_prompt import CURRENT_MARKER, HISTORY_MARKER
from tests.fixtures.sse import sse_frames
from tests.unit.test_ingress_surfaces import CHAT, PRESENT, Script, Surfaces, replied, routed

URL = "/v1/chat/completions"
UUID = re.compile(r"^agent:home:openai:[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}$")


@pytest.fixture(name="surfaces")
def _surfaces(tmp_path: Path) -> Callable[[Script], Surfaces]:
    def make(script: Script) -> Surfaces:
        return Surfaces(tmp_path, script, PRESENT, PRESENT)

    return make


async def _post(s: Surfaces, body: dict[str, Any], headers: dict[str, str] | None = None) -> Any:
    return await s.http.post(URL, json=body, headers=headers)


# --- privacy: sessions ----------------------------------------------------------------------


async def test_without_user_every_request_is_a_new_private_session(surfaces: Callable[..., Surfaces]) -> None:
    s = surfaces(replied)
    async with s.http as http:
        first = await http.post(URL, json=CHAT)
        second = await http.post(URL, json=CHAT)
    keys = [m.session_key for m in s.turns.submitted]
    assert first.status_code == second.status_code == 200
    assert all(k is not None and UUID.match(k) for k in keys) and keys[0] != keys[1]
    assert first.headers["x-openclaw-session-key"] == keys[0]


async def test_a_user_keeps_one_session_of_its_own(surfaces: Callable[..., Surfaces]) -> None:
    s = surfaces(replied)
    async with s.http as http:
        for user in ("Alice", "alice", "bob"):
            assert (await http.post(URL, json={**CHAT, "user": user})).status_code == 200
    assert [m.session_key for m in s.turns.submitted] == [
        "agent:home:openai-user:alice",  # OpenClaw lower-cases the key
        "agent:home:openai-user:alice",
        "agent:home:openai-user:bob",
    ]


@pytest.mark.parametrize(
    ("headers", "key"),
    [
        ({"x-openclaw-session-key": "thread-7"}, "agent:home:thread-7"),
        ({"x-clawmesh-session-key": "agent:home:Thread-7"}, "agent:home:Thread-7"),  # kept as sent
        ({"x-openclaw-session-key": "main"}, "agent:home:main"),
        ({"x-openclaw-session-key": "a", "x-clawmesh-session-key": "b"}, "agent:home:a"),
    ],
)
async def test_an_explicit_session_key_is_honoured(
    surfaces: Callable[..., Surfaces], headers: dict[str, str], key: str
) -> None:
    s = surfaces(replied)
    r = await _post(s, {**CHAT, "user": "ignored"}, headers)
    assert r.status_code == 200 and s.turns.submitted[0].session_key == key


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("cron:nightly", "reserved internal session namespaces"),
        ("agent:home:subagent:x", "reserved internal session namespaces"),
        ("ACP:x", "reserved internal session namespaces"),
        ("agent:work:x", "belongs to agent 'work'"),
        ("k" * 600, "at most 512"),
    ],
)
async def test_a_bad_session_key_is_a_clear_400(
    surfaces: Callable[..., Surfaces], value: str, words: str
) -> None:
    s = surfaces(replied)
    r = await _post(s, CHAT, {"x-openclaw-session-key": value})
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
    assert words in r.json()["error"]["message"] and s.turns.submitted == []


# --- agent targets, models ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "agent"),
    [
        ("openclaw", "home"),
        ("OpenClaw/Default", "home"),
        ("openclaw/work", "work"),
        ("openclaw:work", "work"),
        ("agent:work", "work"),
        ("clawmesh/work", "work"),
        ("work", "work"),
    ],
)
async def test_model_names_the_agent(surfaces: Callable[..., Surfaces], model: str, agent: str) -> None:
    s = surfaces(replied)
    r = await _post(s, {**CHAT, "model": model})
    inbound = s.turns.submitted[0]
    assert r.status_code == 200 and r.json()["model"] == model
    assert inbound.agent_id == agent and inbound.session_key is not None
    assert inbound.session_key.startswith(f"agent:{agent}:openai:")


async def test_headers_choose_agent_model_and_channel(surfaces: Callable[..., Surfaces]) -> None:
    s = surfaces(replied)
    headers = {
        "x-openclaw-agent-id": "work",
        "x-openclaw-model": "openai/gpt-5.4",
        "x-clawmesh-message-channel": "Telegram",
    }
    r = await _post(s, {"messages": CHAT["messages"], "user": "u"}, headers)
    inbound = s.turns.submitted[0]
    assert r.status_code == 200
    assert inbound.agent_id == "work" and inbound.session_key == "agent:work:openai-user:u"
    assert inbound.options == TurnOptions(model="openai/gpt-5.4")
    # the channel is context only: replies still go to the caller, never to that channel
    assert inbound.metadata["messageChannel"] == "telegram" and inbound.channel == "api"
    await _post(s, CHAT)
    assert s.turns.submitted[1].metadata["messageChannel"] == "webchat"


@pytest.mark.parametrize(
    ("headers", "status", "words"),
    [
        ({"x-openclaw-agent-id": "no such!"}, 400, "is not an agent id"),
        ({"x-openclaw-agent-id": "ghost"}, 404, "unknown agent 'ghost'"),
        ({"x-openclaw-message-channel": "tele gram"}, 400, "not a channel id"),
        ({"x-openclaw-model": "bad model"}, 400, "Invalid `x-openclaw-model`"),
    ],
)
async def test_bad_headers_are_clear_errors(
    surfaces: Callable[..., Surfaces], headers: dict[str, str], status: int, words: str
) -> None:
    s = surfaces(replied)
    r = await _post(s, CHAT, headers)
    assert r.status_code == status and words in r.json()["error"]["message"]
    assert s.turns.submitted == []


async def test_models_list_and_one_model(surfaces: Callable[..., Surfaces]) -> None:
    s = surfaces(replied)
    async with s.http as http:
        listed = (await http.get("/v1/models")).json()
        one = await http.get("/v1/models/openclaw%2Fdefault")
        ghost = await http.get("/v1/models/openclaw/ghost")
    assert [m["id"] for m in listed["data"]] == [
        "openclaw",
        "openclaw/default",
        "openclaw/home",
        "openclaw/work",
        "clawmesh/home",
        "clawmesh/work",
    ]
    assert one.status_code == 200 and one.json()["id"] == "openclaw/default"
    assert one.json()["object"] == "model"
    assert ghost.status_code == 404 and ghost.json()["error"]["code"] == "model_not_found"


async def test_disabled_endpoint_is_a_404(surfaces: Callable[..., Surfaces], tmp_path: Path) -> None:
    s = surfaces(replied)
    path = tmp_path / "off.json"
    path.write_text(
        json.dumps(
            {
                "agents": {"list": [{"id": "home"}]},
                "gateway": {"http": {"endpoints": {"chatCompletions": {"enabled": False}}}},
            }
        )
    )
    s.turns.ctx.holder.current = load_config(path, env={"HOME": str(tmp_path)}, checks=default_checks())
    async with s.http as http:
        answers = [
            await http.post(URL, json=CHAT),
            await http.get("/v1/models"),
            await http.get("/v1/models/x"),
        ]
    assert [a.status_code for a in answers] == [404, 404, 404]
    assert all("chatCompletions.enabled" in a.json()["error"]["message"] for a in answers)
    assert s.turns.submitted == []


async def test_wrong_method_is_an_openai_error(surfaces: Callable[..., Surfaces]) -> None:
    from clawmesh_ingress.http import EXCEPTION_HANDLERS

    s = surfaces(replied)
    s.app.exception_handlers.update(EXCEPTION_HANDLERS)
    async with s.http as http:
        r = await http.get(URL)
    assert r.status_code == 405 and r.headers["allow"] == "POST"
    assert r.json() == {
        "error": {
            "message": "GET is not allowed on '/v1/chat/completions'",
            "type": "invalid_request_error",
            "param": None,
            "code": "method_not_allowed",
        }
    }


# --- the conversation and model options -------------------------------------------------------


async def test_the_conversation_becomes_the_turn(surfaces: Callable[..., Surfaces]) -> None:
    s = surfaces(replied)
    messages = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "what is 6*7?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "calc", "arguments": '{"x":"6*7"}'}}
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "42"},
    ]
    r = await _post(s, {**CHAT, "messages": messages})
    inbound = s.turns.submitted[0]
    assert r.status_code == 200
    assert inbound.text == "\n".join(
        [
            HISTORY_MARKER,
            "User: what is 6*7?",
            'Assistant: tool_call id=call_1 name=calc arguments={"x":"6*7"}',
            "",
            CURRENT_MARKER,
            "Tool:call_1: 42",
        ]
    )
    assert inbound.options is not None and inbound.options.system == "be brief"


async def test_sampling_fields_and_tools_are_forwarded(surfaces: Callable[..., Surfaces]) -> None:
    s = surfaces(replied)
    tool = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}
    body = {
        **CHAT,
        "temperature": 0.2,
        "top_p": 0.9,
        "stop": "END",
        "max_tokens": 100,
        "max_completion_tokens": 50,
        "tools": [tool],
        "tool_choice": {"type": "function", "function": {"name": "lookup"}},
    }
    assert (await _post(s, body)).status_code == 200
    assert s.turns.submitted[0].options == TurnOptions(
        temperature=0.2,
        top_p=0.9,
        stop=["END"],
        max_tokens=50,  # max_completion_tokens wins, as OpenClaw has it
        tools=[ClientTool(name="lookup", parameters={"type": "object"})],
        tool_choice="lookup",
    )


@pytest.mark.parametrize(
    ("fields", "param", "words"),
    [
        ({"temperature": 2.5}, "temperature", "between 0 and 2"),
        ({"top_p": -0.1}, "top_p", "between 0 and 1"),
        ({"presence_penalty": 3}, "presence_penalty", "between -2.0 and 2.0"),
        ({"seed": 1.5}, "seed", "must be an integer"),
        ({"max_tokens": 0}, "max_tokens", "positive safe integer"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop", "at most 4"),
        ({"stop": [""]}, "stop", "non-empty"),
        ({"tools": [{"type": "retrieval"}]}, "tools", "only function tools"),
        ({"tools": [{"type": "function", "function": {"name": " "}}]}, "tools", "name is required"),
        ({"tool_choice": "allowed_tools"}, "tool_choice", "not supported"),
        (
            {"tools": [], "tool_choice": {"type": "function", "function": {"name": "x"}}},
            "tool_choice",
            "not among the provided tools",
        ),
    ],
)
async def test_out_of_range_fields_are_400(
    surfaces: Callable[..., Surfaces], fields: dict[str, Any], param: str, words: str
) -> None:
    s = surfaces(replied)
    r = await _post(s, {**CHAT, **fields})
    error = r.json()["error"]
    assert r.status_code == 400 and error["type"] == "invalid_request_error"
    assert error["param"] == param and words in error["message"]
    assert s.turns.submitted == []


async def test_images_reach_the_turn_as_attachments(surfaces: Callable[..., Surfaces]) -> None:
    s = surfaces(replied)
    png = b"\x89PNG\r\n\x1a\n-fake"
    url = "data:image/png;base64," + base64.b64encode(png).decode()
    content = [{"type": "text", "text": "what is it?"}, {"type": "image_url", "image_url": {"url": url}}]
    r = await _post(s, {**CHAT, "messages": [{"role": "user", "content": content}]})
    remote = await _post(
        s,
        {
            **CHAT,
            "messages": [
                {"role": "user", "content": [{"type": "image_url", "image_url": "https://x/y.png"}]}
            ],
        },
    )
    inbound = s.turns.submitted[0]
    assert r.status_code == 200 and inbound.text == "what is it?"
    assert [(a.mime, a.data) for a in inbound.attachments] == [("image/png", png)]
    assert remote.status_code == 400 and "only data: URLs" in remote.json()["error"]["message"]


# --- client tool calls and usage in answers -------------------------------------------------


def _called(turn_id: str) -> list[ReplyMessage]:
    call = ClientToolCall(id="call_9", name="lookup", arguments='{"q":"weather"}')
    return [
        routed(turn_id),
        TurnStarted(turn_id=turn_id),
        TurnFinal(
            turn_id=turn_id,
            text="",
            input_tokens=4,
            output_tokens=1,
            tool_calls=[call],
            stop_reason="tool_use",
        ),
    ]


async def test_client_tool_calls_come_back(surfaces: Callable[..., Surfaces]) -> None:
    s = surfaces(_called)
    async with s.http as http:
        waited = (await http.post(URL, json=CHAT)).json()
        streamed = await http.post(
            URL, json={**CHAT, "stream": True, "stream_options": {"include_usage": True}}
        )
    call = {
        "id": "call_9",
        "type": "function",
        "function": {"name": "lookup", "arguments": '{"q":"weather"}'},
    }
    assert waited["choices"][0]["finish_reason"] == "tool_calls"
    assert waited["choices"][0]["message"]["tool_calls"] == [call]
    frames = [data for _, data in sse_frames(streamed.text)]
    assert frames[-1] == "[DONE]"
    assert [f["choices"][0]["delta"] for f in frames[1:-2]] == [{"tool_calls": [{"index": 0, **call}]}, {}]
    assert frames[-3]["choices"][0]["finish_reason"] == "tool_calls"
    assert frames[-2]["choices"] == [] and frames[-2]["usage"] == {
        "prompt_tokens": 4,
        "completion_tokens": 1,
        "total_tokens": 5,
    }


async def test_usage_chunk_only_when_asked_for(surfaces: Callable[..., Surfaces]) -> None:
    s = surfaces(replied)
    r = await _post(s, {**CHAT, "stream": True})
    frames = [data for _, data in sse_frames(r.text)]
    assert frames[-1] == "[DONE]" and all("usage" not in f for f in frames[:-1])
    assert frames[-2]["choices"][0]["finish_reason"] == "stop"
