"""Both API surfaces answering from scripted turn replies (no NATS): each way a turn can end
(reply, turn error, routing failure, no decision, no reply in time) as each surface renders it,
waiting or streaming. The happy paths over a real bus are in tests/integration/test_http_api.py."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from clawmesh.checks import default_checks
from clawmesh.config import GatewayRateLimit, load_config
from clawmesh.httpserver import EmbeddedHTTPServer
from clawmesh.sessions import SessionStore
from clawmesh.wire import (
    InboundMessage,
    ReplyMessage,
    RouteDecision,
    Subjects,
    TextDeltaEvent,
    TurnError,
    TurnFinal,
    TurnStarted,
    encode_msgpack,
)
from clawmesh_ingress.api import ClawmeshAPI
from clawmesh_ingress.http import RequestGuard
from clawmesh_ingress.openai_api import OpenAIAPI
from clawmesh_ingress.security import AuthGate
from clawmesh_ingress.turns import PendingTurn, TurnClient
from clawmesh_ingress.waiters import Waiters
from tests.fixtures.gateway import wait_until
from tests.fixtures.sse import sse_frames

PRESENT = 30.0  # never reached: the reply is already there
NEVER = 0.05  # nothing will come

Script = Callable[[str], list[ReplyMessage]]


class Msg(SimpleNamespace):
    data: bytes
    headers: dict[str, str]


class ScriptedTurns(TurnClient):
    """Stores nothing: each submitted turn gets the script's replies, through the real
    reply-subject demultiplexer, as if router and runner had answered."""

    def __init__(self, ctx: Any, script: Script, *, route_wait: float, turn_timeout: float) -> None:
        super().__init__(ctx, Waiters(), "cm.reply.test")
        self.script = script
        self._route_wait = route_wait
        self._turn_timeout = turn_timeout
        self.submitted: list[InboundMessage] = []

    def route_wait(self) -> float:
        return self._route_wait

    def turn_timeout(self) -> float:
        return self._turn_timeout

    async def submit(
        self, inbound: InboundMessage, dedupe_key: str, trace_from: Mapping[str, str] | None = None
    ) -> PendingTurn:
        self.submitted.append(inbound)
        turn = PendingTurn(inbound.id, self.waiters)
        for item in self.script(inbound.id):
            data, headers = encode_msgpack(item)
            await self.waiters.on_message(Msg(data=data, headers=headers))  # type: ignore[arg-type]
        return turn


class RetriedTurns(ScriptedTurns):
    """A message id submitted again is a duplicate (as JetStream says); the script's replies
    come once, after the retry was submitted, on the reply subject both requests wait on."""

    async def submit(
        self, inbound: InboundMessage, dedupe_key: str, trace_from: Mapping[str, str] | None = None
    ) -> PendingTurn:
        duplicate = any(m.id == inbound.id for m in self.submitted)
        self.submitted.append(inbound)
        turn = PendingTurn(inbound.id, self.waiters, duplicate=duplicate)
        if duplicate:
            for item in self.script(inbound.id):
                data, headers = encode_msgpack(item)
                await self.waiters.on_message(Msg(data=data, headers=headers))  # type: ignore[arg-type]
        return turn


class Surfaces:
    def __init__(
        self,
        tmp_path: Path,
        script: Script,
        route_wait: float,
        turn_timeout: float,
        turns: type[ScriptedTurns] = ScriptedTurns,
    ) -> None:
        path = tmp_path / "clawmesh.json"
        path.write_text(json.dumps({"agents": {"list": [{"id": "home", "default": True}, {"id": "work"}]}}))
        config = load_config(path, env={"HOME": str(tmp_path)}, checks=default_checks())
        ctx = SimpleNamespace(
            holder=SimpleNamespace(current=config),
            subjects=Subjects("cm"),
            js=None,
            # no buckets: no turn status is ever stored
            sessions=SessionStore(None, Subjects("cm"), None),  # type: ignore[arg-type]
            approvals=None,  # no exec approvals bucket: these surfaces never reach it
            counters={},
        )
        self.turns = turns(ctx, script, route_wait=route_wait, turn_timeout=turn_timeout)
        guard = RequestGuard(AuthGate(lambda: None, GatewayRateLimit), lambda: 1 << 20)
        app = Starlette(
            routes=[
                *ClawmeshAPI(ctx, self.turns, guard, lambda: True).routes(),  # type: ignore[arg-type]
                *OpenAIAPI(ctx, self.turns, guard).routes(),  # type: ignore[arg-type]
            ]
        )
        self.app = app
        self.http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")

    @contextlib.asynccontextmanager
    async def served(self) -> AsyncIterator[httpx.AsyncClient]:
        """The surfaces on a real HTTP server, with a client that keeps one connection."""
        server = EmbeddedHTTPServer(self.app, "127.0.0.1", 0)
        await server.start()
        try:
            limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}", limits=limits) as http:
                yield http
        finally:
            await server.stop()


@pytest.fixture
def surfaces(tmp_path: Path) -> Callable[..., Surfaces]:
    def make(
        script: Script,
        *,
        route_wait: float = PRESENT,
        turn_timeout: float = PRESENT,
        turns: type[ScriptedTurns] = ScriptedTurns,
    ) -> Surfaces:
        return Surfaces(tmp_path, script, route_wait, turn_timeout, turns)

    return make


def routed(turn_id: str, **kw: Any) -> RouteDecision:
    fields: dict[str, Any] = {"agent_id": "home", "session_key": "agent:home:api:direct:x", **kw}
    if "error_code" in kw:
        fields.update(agent_id=None, session_key=None)
    return RouteDecision(turn_id=turn_id, channel="api", account_id="default", **fields)


def replied(turn_id: str) -> list[ReplyMessage]:
    return [
        routed(turn_id),
        TurnStarted(turn_id=turn_id),
        TextDeltaEvent(turn_id=turn_id, text="echo: "),
        TextDeltaEvent(turn_id=turn_id, text="hi"),
        TurnFinal(turn_id=turn_id, text="echo: hi", model="echo/test", input_tokens=3, output_tokens=2),
    ]


def failed(turn_id: str) -> list[ReplyMessage]:
    return [
        routed(turn_id),
        TurnStarted(turn_id=turn_id),
        TurnError(turn_id=turn_id, code="MODEL_ERROR", message="all models failed", hint="check keys"),
    ]


def unroutable(code: str) -> Script:
    def script(turn_id: str) -> list[ReplyMessage]:
        return [routed(turn_id, error_code=code, error_message="no agent", error_hint="add a binding")]

    return script


def only_routed(turn_id: str) -> list[ReplyMessage]:
    return [routed(turn_id), TurnStarted(turn_id=turn_id)]


def nothing(turn_id: str) -> list[ReplyMessage]:
    return []


MESSAGE = {"text": "hi", "peer": {"kind": "direct", "id": "x"}}
STREAM = {"Accept": "text/event-stream"}
CHAT = {"model": "clawmesh/home", "messages": [{"role": "user", "content": "hi"}]}


# --- the clawmesh API ------------------------------------------------------------------------


async def test_routed_is_202_and_waiting_gets_the_reply(surfaces: Callable[..., Surfaces]) -> None:
    s = surfaces(replied)
    async with s.http as http:
        accepted = await http.post("/v1/messages", json=MESSAGE)
        waited = await http.post("/v1/messages?wait=", json=MESSAGE)
    assert accepted.status_code == 202
    assert set(accepted.json()) == {"turnId", "agentId", "sessionKey"}
    assert waited.status_code == 200
    assert {k: waited.json()[k] for k in ("agentId", "state", "text", "model")} == {
        "agentId": "home",
        "state": "done",
        "text": "echo: hi",
        "model": "echo/test",
    }
    assert [m.reply_events for m in s.turns.submitted] == ["final", "final"]
    assert {m.reply_subject for m in s.turns.submitted} == {"cm.reply.test"}
    assert len(s.turns.waiters) == 0


async def test_a_failed_turn_is_a_502_naming_the_turn(surfaces: Callable[..., Surfaces]) -> None:
    async with surfaces(failed).http as http:
        r = await http.post("/v1/messages?wait=30", json=MESSAGE)
    assert r.status_code == 502
    err = r.json()["error"]
    assert (err["code"], err["message"], err["hint"], err["agentId"]) == (
        "MODEL_ERROR",
        "all models failed",
        "check keys",
        "home",
    )
    assert err["turnId"] and err["sessionKey"] == "agent:home:api:direct:x"


@pytest.mark.parametrize(("code", "status"), [("UNKNOWN_AGENT", 404), ("AGENT_SELECTION_REQUIRED", 422)])
async def test_a_routing_failure_is_answered_with_its_code_and_hint(
    surfaces: Callable[..., Surfaces], code: str, status: int
) -> None:
    async with surfaces(unroutable(code)).http as http:
        r = await http.post("/v1/messages?wait=30", json=MESSAGE)
    assert r.status_code == status
    err = r.json()["error"]
    assert (err["code"], err["message"], err["hint"]) == (code, "no agent", "add a binding")


async def test_not_routed_in_time_is_202_queued(surfaces: Callable[..., Surfaces]) -> None:
    s = surfaces(nothing, route_wait=NEVER)
    async with s.http as http:
        r = await http.post("/v1/messages?wait=30", json=MESSAGE)
    assert r.status_code == 202 and r.json()["state"] == "queued" and r.json()["agentId"] is None
    assert len(s.turns.waiters) == 0


async def test_no_reply_within_wait_is_202_running(surfaces: Callable[..., Surfaces]) -> None:
    async with surfaces(only_routed).http as http:
        r = await http.post(f"/v1/messages?wait={NEVER}", json=MESSAGE)
    assert r.status_code == 202 and r.json()["state"] == "running" and r.json()["agentId"] == "home"


@pytest.mark.parametrize("wait", ["soon", "nan", "inf", "-1"])
async def test_wait_must_be_a_number_of_seconds_and_is_checked_before_anything_is_stored(
    surfaces: Callable[..., Surfaces], wait: str
) -> None:
    s = surfaces(replied)
    async with s.http as http:
        r = await http.post(f"/v1/messages?wait={wait}", json=MESSAGE)
    assert r.status_code == 400
    assert r.json()["error"]["path"] == "?wait" and f"{wait!r}" in r.json()["error"]["message"]
    assert s.turns.submitted == []


def _nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


_CHAT_PREFIX = b'{"model": "clawmesh/home", "messages": [{"role": "user", "content": '


@pytest.mark.parametrize(
    ("path", "body", "code"),
    [
        ("/v1/messages", b'{"text": "caf\xe9"}', "invalid_json"),
        ("/v1/messages?wait=nan", json.dumps(MESSAGE).encode(), "invalid_request"),
        ("/v1/chat/completions", _CHAT_PREFIX + b'"caf\xe9"}]}', None),
        (
            "/v1/chat/completions",
            _CHAT_PREFIX + b'[{"type": "text", "text": ' + _nested(990) + b"}]}]}",
            None,
        ),
        ("/v1/chat/completions", _CHAT_PREFIX + b'[{"type": "image", "x": ' + _nested(5000) + b"}]}]}", None),
    ],
    ids=["utf8", "wait-nan", "openai-utf8", "openai-deep-text", "openai-deeper"],
)
async def test_a_malformed_request_is_a_4xx_and_the_connection_stays_usable(
    surfaces: Callable[..., Surfaces], path: str, body: bytes, code: str | None
) -> None:
    s = surfaces(replied)
    async with s.served() as http:
        bad = await http.post(path, content=body, headers={"Content-Type": "application/json"})
        local = [bad.extensions["network_stream"].get_extra_info("client_addr")]
        good = await http.post("/v1/messages?wait=30", json=MESSAGE)
        local.append(good.extensions["network_stream"].get_extra_info("client_addr"))
    assert bad.status_code == 400, bad.text
    assert bad.headers["content-type"] == "application/json"
    if code is not None:  # the clawmesh API's error codes; OpenAI's errors have none of their own
        assert bad.json()["error"]["code"] == code
    else:
        assert bad.json()["error"]["type"] == "invalid_request_error"
    assert good.status_code == 200 and good.json()["text"] == "echo: hi"
    assert local[0] == local[1]  # the same connection answered both
    assert len(s.turns.submitted) == 1


async def test_a_retried_message_id_waits_for_the_same_reply_as_the_first_request(
    surfaces: Callable[..., Surfaces],
) -> None:
    s = surfaces(replied, turns=RetriedTurns)
    body = {**MESSAGE, "messageId": "m-1"}
    async with s.http as http:
        first = asyncio.create_task(http.post("/v1/messages?wait=30", json=body))
        await wait_until(lambda: len(s.turns.submitted) == 1, message="the first request submitted")
        retry = await http.post("/v1/messages?wait=30", json=body)
        original = await first
    assert original.status_code == 200 and original.json()["text"] == "echo: hi"
    assert "duplicate" not in original.json()
    assert retry.status_code == 200
    assert {k: retry.json()[k] for k in ("turnId", "duplicate", "state", "text", "agentId")} == {
        "turnId": original.json()["turnId"],
        "duplicate": True,
        "state": "done",
        "text": "echo: hi",
        "agentId": "home",
    }
    assert len(s.turns.waiters) == 0


async def test_a_retry_waits_no_longer_than_asked_while_a_streamed_turn_goes_on(
    surfaces: Callable[..., Surfaces],
) -> None:
    s = surfaces(only_routed, turns=RetriedTurns)
    body = {**MESSAGE, "messageId": "m-1"}
    stop = asyncio.Event()

    async def deltas(turn_id: str) -> None:  # the first request's stream, never ending
        while not stop.is_set():
            data, headers = encode_msgpack(TextDeltaEvent(turn_id=turn_id, text="."))
            await s.turns.waiters.on_message(Msg(data=data, headers=headers))  # type: ignore[arg-type]
            await asyncio.sleep(0.01)

    async with s.http as http:
        first = asyncio.create_task(http.post("/v1/messages", json=body, headers=STREAM))
        await wait_until(lambda: len(s.turns.submitted) == 1, message="the first request submitted")
        feed = asyncio.create_task(deltas(s.turns.submitted[0].id))
        try:
            retry = await asyncio.wait_for(http.post("/v1/messages?wait=0.2", json=body), 30)
        finally:
            stop.set()
            await feed
            first.cancel()
    assert retry.status_code == 200 and retry.json()["duplicate"] is True
    assert retry.json()["state"] == "accepted"


async def test_streaming_sends_route_events_and_final(surfaces: Callable[..., Surfaces]) -> None:
    s = surfaces(replied)
    async with s.http as http:
        r = await http.post("/v1/messages", json=MESSAGE, headers=STREAM)
    assert r.headers["content-type"].startswith("text/event-stream")
    assert r.headers["cache-control"] == "no-cache"
    events = sse_frames(r.text)
    assert [e for e, _ in events] == ["route", "started", "delta", "delta", "final"]
    assert events[0][1]["agentId"] == "home" and events[-1][1]["text"] == "echo: hi"
    assert s.turns.submitted[0].reply_events == "all"
    assert len(s.turns.waiters) == 0


async def test_a_stream_ends_at_a_failed_route(surfaces: Callable[..., Surfaces]) -> None:
    async with surfaces(unroutable("UNKNOWN_AGENT")).http as http:
        r = await http.post("/v1/messages", json=MESSAGE, headers=STREAM)
    events = sse_frames(r.text)
    assert [e for e, _ in events] == ["route"] and events[0][1]["errorCode"] == "UNKNOWN_AGENT"


async def test_a_routing_failure_after_route_wait_ends_the_stream(surfaces: Callable[..., Surfaces]) -> None:
    s = surfaces(unroutable("UNKNOWN_AGENT"), route_wait=0)  # every decision comes late
    async with s.http as http:
        r = await http.post("/v1/messages", json=MESSAGE, headers=STREAM)
    events = sse_frames(r.text)
    assert [e for e, _ in events] == ["queued", "route"] and events[1][1]["errorCode"] == "UNKNOWN_AGENT"
    assert len(s.turns.waiters) == 0


async def test_a_stream_says_queued_then_follows_and_times_out_with_an_error_event(
    surfaces: Callable[..., Surfaces],
) -> None:
    def started_only(turn_id: str) -> list[ReplyMessage]:
        return [TurnStarted(turn_id=turn_id)]

    s = surfaces(started_only, route_wait=NEVER, turn_timeout=NEVER)
    async with s.http as http:
        r = await http.post("/v1/messages", json=MESSAGE, headers=STREAM)
    events = sse_frames(r.text)
    assert [e for e, _ in events] == ["queued", "started", "error"]
    turn_id = s.turns.submitted[0].id
    assert events[0][1] == {"turnId": turn_id, "state": "queued"}
    assert events[-1][1] == {"turnId": turn_id, "code": "TIMEOUT", "message": "no reply in time"}
    assert len(s.turns.waiters) == 0


@pytest.mark.parametrize(
    ("path", "body"),
    [("/v1/messages", MESSAGE), ("/v1/chat/completions", {**CHAT, "stream": True})],
    ids=["clawmesh", "openai"],
)
async def test_a_stream_whose_client_left_before_it_started_stops_waiting(
    surfaces: Callable[..., Surfaces], path: str, body: dict[str, Any]
) -> None:
    s = surfaces(nothing)
    sent: list[str] = []
    incoming = [
        {"type": "http.request", "body": json.dumps(body).encode(), "more_body": False},
        {"type": "http.disconnect"},
    ]

    async def receive() -> dict[str, Any]:
        return incoming.pop(0) if incoming else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message["type"])
        if message["type"] == "http.response.start":
            await asyncio.Event().wait()  # the client is gone: this never completes

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"content-type", b"application/json"), (b"accept", b"text/event-stream")],
        "client": ("127.0.0.1", 1),
        "server": ("t", 80),
    }
    await s.app(scope, receive, send)
    assert sent == ["http.response.start"] and len(s.turns.submitted) == 1
    assert len(s.turns.waiters) == 0


# --- the OpenAI-compatible API ---------------------------------------------------------------


async def test_openai_completion(surfaces: Callable[..., Surfaces]) -> None:
    s = surfaces(replied)
    async with s.http as http:
        r = await http.post("/v1/chat/completions", json={**CHAT, "user": "erin"})
    body = r.json()
    assert r.status_code == 200 and body["id"] == f"chatcmpl-{s.turns.submitted[0].id}"
    assert body["choices"][0]["message"] == {"role": "assistant", "content": "echo: hi"}
    assert body["usage"] == {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
    assert s.turns.submitted[0].peer is not None and s.turns.submitted[0].peer.id == "erin"


@pytest.mark.parametrize(
    ("script", "turn_timeout", "status", "error"),
    [
        (
            failed,
            PRESENT,
            502,
            {"message": "MODEL_ERROR: all models failed", "type": "server_error", "code": "MODEL_ERROR"},
        ),
        (
            unroutable("UNKNOWN_AGENT"),
            PRESENT,
            404,
            {"message": "no agent", "type": "invalid_request_error", "code": "UNKNOWN_AGENT"},
        ),
        (
            only_routed,
            NEVER,
            504,
            {"message": "the agent did not answer in time", "type": "server_error", "code": "timeout"},
        ),
    ],
    ids=["turn-error", "routing-error", "timeout"],
)
async def test_openai_errors(
    surfaces: Callable[..., Surfaces], script: Script, turn_timeout: float, status: int, error: dict[str, Any]
) -> None:
    s = surfaces(script, turn_timeout=turn_timeout)
    async with s.http as http:
        r = await http.post("/v1/chat/completions", json=CHAT)
    assert r.status_code == status and r.json() == {"error": {**error, "param": None}}
    assert len(s.turns.waiters) == 0


async def test_openai_bad_requests(surfaces: Callable[..., Surfaces]) -> None:
    s = surfaces(replied)
    async with s.http as http:
        bad = await http.post("/v1/chat/completions", json={"model": "clawmesh/home"})
        ghost = await http.post("/v1/chat/completions", json={**CHAT, "model": "clawmesh/ghost"})
        no_user = await http.post(
            "/v1/chat/completions", json={**CHAT, "messages": [{"role": "system", "content": "x"}]}
        )
    assert bad.status_code == 400 and bad.json()["error"]["message"].startswith("invalid request: ")
    assert "messages" in bad.json()["error"]["message"]
    assert ghost.status_code == 404 and ghost.json()["error"]["code"] == "model_not_found"
    assert "openclaw/home, openclaw/work" in ghost.json()["error"]["message"]
    assert no_user.status_code == 400 and no_user.json()["error"]["param"] == "messages"
    assert s.turns.submitted == []


async def test_openai_routing_failure_after_route_wait_is_an_error_not_a_timeout(
    surfaces: Callable[..., Surfaces],
) -> None:
    s = surfaces(unroutable("UNKNOWN_AGENT"), route_wait=0)  # every decision comes late
    async with s.http as http:
        waited = await http.post("/v1/chat/completions", json=CHAT)
        streamed = await http.post("/v1/chat/completions", json={**CHAT, "stream": True})
    error = {"message": "no agent", "type": "invalid_request_error", "code": "UNKNOWN_AGENT"}
    assert waited.status_code == 404 and waited.json() == {"error": {**error, "param": None}}
    assert [data for _, data in sse_frames(streamed.text)][-2:] == [{"error": error}, "[DONE]"]
    assert len(s.turns.waiters) == 0


async def test_openai_stream(surfaces: Callable[..., Surfaces]) -> None:
    s = surfaces(replied)
    async with s.http as http:
        r = await http.post("/v1/chat/completions", json={**CHAT, "stream": True})
    frames = [data for _, data in sse_frames(r.text)]
    assert frames[-1] == "[DONE]"
    chunks = frames[:-1]
    assert [c["choices"][0]["delta"] for c in chunks] == [
        {"role": "assistant", "content": ""},
        {"content": "echo: "},
        {"content": "hi"},
        {},
    ]
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert s.turns.submitted[0].reply_events == "all"


@pytest.mark.parametrize(
    ("script", "turn_timeout", "error"),
    [
        (
            failed,
            PRESENT,
            {"message": "MODEL_ERROR: all models failed", "type": "server_error", "code": "MODEL_ERROR"},
        ),
        (
            unroutable("AGENT_SELECTION_REQUIRED"),
            PRESENT,
            {"message": "no agent", "type": "invalid_request_error", "code": "AGENT_SELECTION_REQUIRED"},
        ),
        (
            only_routed,
            NEVER,
            {"message": "the agent did not answer in time", "type": "server_error", "code": "timeout"},
        ),
    ],
    ids=["turn-error", "routing-error", "timeout"],
)
async def test_openai_stream_ends_with_one_error_frame(
    surfaces: Callable[..., Surfaces], script: Script, turn_timeout: float, error: dict[str, Any]
) -> None:
    s = surfaces(script, turn_timeout=turn_timeout)
    async with s.http as http:
        r = await http.post("/v1/chat/completions", json={**CHAT, "stream": True})
    assert r.status_code == 200
    frames = [data for _, data in sse_frames(r.text)]
    assert frames[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert frames[-2:] == [{"error": error}, "[DONE]"]  # clients wait for [DONE], a failure too
    assert len(s.turns.waiters) == 0
