"""`POST /v1/responses` as OpenClaw serves it (its docs/gateway/openresponses-http-api.md), on
scripted turn replies (no NATS): input items as one turn, sessions, client tools as
`function_call` items, the SSE event sequence, failures, `previous_response_id`, the off switch."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from clawmesh.checks import default_checks
from clawmesh.config import GatewayRateLimit, load_config
from clawmesh.wire import ClientTool, ClientToolCall, ReplyMessage, TurnFinal, TurnOptions, TurnStarted
from clawmesh_ingress.http import RequestGuard
from clawmesh_ingress.openai_api import OpenAIAPI
from clawmesh_ingress.openai_prompt import CURRENT_MARKER, HISTORY_MARKER
from clawmesh_ingress.openresponses_api import ResponsesAPI
from clawmesh_ingress.security import AuthGate
from tests.fixtures.sse import sse_frames
from tests.unit.test_ingress_surfaces import PRESENT, Script, Surfaces, failed, replied, routed

URL = "/v1/responses"


class Api:
    def __init__(self, surfaces: Surfaces) -> None:
        self.turns = surfaces.turns
        guard = RequestGuard(AuthGate(lambda: None, GatewayRateLimit), lambda: 1 << 20)
        chat = OpenAIAPI(self.turns.ctx, self.turns, guard)
        app = Starlette(routes=[*chat.routes(), *ResponsesAPI(chat).routes()])
        self.http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")

    async def post(self, body: dict[str, Any], headers: dict[str, str] | None = None) -> httpx.Response:
        return await self.http.post(URL, json=body, headers=headers)


@pytest.fixture
def api(tmp_path: Path) -> Callable[[Script], Api]:
    return lambda script: Api(Surfaces(tmp_path, script, PRESENT, PRESENT))


def _called(turn_id: str) -> list[ReplyMessage]:
    call = ClientToolCall(id="call_9", name="lookup", arguments='{"q":"x"}')
    return [
        routed(turn_id),
        TurnStarted(turn_id=turn_id),
        TurnFinal(turn_id=turn_id, text="", tool_calls=[call], stop_reason="tool_use"),
    ]


async def test_text_in_text_out(api: Callable[[Script], Api]) -> None:
    a = api(replied)
    r = await a.post({"model": "openclaw", "input": "hi"})
    body = r.json()
    inbound = a.turns.submitted[0]
    assert r.status_code == 200 and body["object"] == "response" and body["status"] == "completed"
    assert body["id"] == f"resp_{inbound.id}" and body["model"] == "openclaw"
    assert body["output"][0]["type"] == "message" and body["output"][0]["role"] == "assistant"
    assert body["output"][0]["content"][0]["type"] == "output_text"
    assert body["output"][0]["content"][0]["text"] == "echo: hi"
    assert body["usage"]["input_tokens"] == 3 and body["usage"]["total_tokens"] == 5
    assert inbound.text == "hi" and inbound.session_key is not None
    assert inbound.session_key.startswith("agent:home:openresponses:")
    await a.post({"input": "hi", "user": "Zoe"})
    assert a.turns.submitted[1].session_key == "agent:home:openresponses-user:zoe"


async def test_items_instructions_and_tools_make_the_turn(api: Callable[[Script], Api]) -> None:
    a = api(replied)
    body = {
        "model": "openclaw/work",
        "instructions": "answer in French",
        "input": [
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "6*7?"}]},
            {"type": "function_call", "call_id": "call_1", "name": "calc", "arguments": '{"e":"6*7"}'},
            {"type": "function_call_output", "call_id": "call_1", "output": "42"},
        ],
        "tools": [{"type": "function", "name": "calc", "parameters": {"type": "object"}}],
        "tool_choice": {"type": "function", "name": "calc"},
        "temperature": 0.1,
        "max_output_tokens": 64,
        "reasoning": {"effort": "low"},
    }
    r = await a.post(body)
    inbound = a.turns.submitted[0]
    assert r.status_code == 200 and inbound.agent_id == "work"
    assert inbound.text == "\n".join(
        [
            HISTORY_MARKER,
            "User: 6*7?",
            'Assistant: tool_call id=call_1 name=calc arguments={"e":"6*7"}',
            "",
            CURRENT_MARKER,
            "Tool:call_1: 42",
        ]
    )
    assert inbound.options == TurnOptions(
        system="answer in French",
        temperature=0.1,
        max_tokens=64,
        tools=[ClientTool(name="calc", parameters={"type": "object"})],
        tool_choice="calc",
    )


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"temperature": 9}, "temperature"),
        ({"max_output_tokens": 0}, "max_output_tokens"),
        ({"tools": [{"type": "web_search"}]}, "tools"),
        ({"input": [{"type": "function_call_output", "output": "x"}]}, "input"),
        ({"input": [{"type": "message", "role": "system", "content": "only system"}]}, "input"),
    ],
)
async def test_bad_requests_are_400(api: Callable[[Script], Api], fields: dict[str, Any], param: str) -> None:
    a = api(replied)
    r = await a.post({"input": "x", **fields})
    assert r.status_code == 400 and r.json()["error"]["param"] == param
    assert a.turns.submitted == []


async def test_client_tool_calls_are_function_call_items(api: Callable[[Script], Api]) -> None:
    a = api(_called)
    body = (await a.post({"input": "look it up", "tools": [{"type": "function", "name": "lookup"}]})).json()
    call = body["output"][1]
    assert (call["type"], call["call_id"], call["name"], call["arguments"]) == (
        "function_call",
        "call_9",
        "lookup",
        '{"q":"x"}',
    )


async def test_stream_events(api: Callable[[Script], Api]) -> None:
    a = api(replied)
    r = await a.post({"input": "hi", "stream": True})
    frames = sse_frames(r.text)
    assert frames[-1] == (None, "[DONE]")
    events = frames[:-1]
    assert [name for name, _ in events] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert all(data["type"] == name for name, data in events)
    assert "".join(d["delta"] for n, d in events if n == "response.output_text.delta") == "echo: hi"
    assert events[-1][1]["response"]["output"][0]["content"][0]["text"] == "echo: hi"


async def test_a_failed_stream_ends_with_response_failed_and_done(api: Callable[[Script], Api]) -> None:
    a = api(failed)
    r = await a.post({"input": "hi", "stream": True})
    frames = sse_frames(r.text)
    assert frames[-1] == (None, "[DONE]")
    name, data = frames[-2]
    assert name == "response.failed" and data["response"]["status"] == "failed"
    assert data["response"]["error"] == {"code": "MODEL_ERROR", "message": "all models failed"}


async def test_previous_response_id_continues_its_session(api: Callable[[Script], Api]) -> None:
    a = api(replied)
    first = (await a.post({"input": "one"})).json()
    await a.post({"input": "two", "previous_response_id": first["id"]})
    await a.post({"input": "three", "previous_response_id": "resp_unknown"})
    keys = [m.session_key for m in a.turns.submitted]
    assert keys[0] == keys[1] and keys[2] != keys[0]


async def test_disabled_is_404(api: Callable[[Script], Api], tmp_path: Path) -> None:
    a = api(replied)
    path = tmp_path / "off.json"
    off = {
        "agents": {"list": [{"id": "home"}]},
        "gateway": {"http": {"endpoints": {"responses": {"enabled": False}}}},
    }
    path.write_text(json.dumps(off))
    a.turns.ctx.holder.current = load_config(path, env={"HOME": str(tmp_path)}, checks=default_checks())
    r = await a.post({"input": "hi"})
    assert r.status_code == 404 and "responses.enabled" in r.json()["error"]["message"]
    assert a.turns.submitted == []
