"""`runnerType: a2a`: the wire mapping (requests in both versions, answers of both shapes, the
reply and its errors, picking a card's JSON-RPC interface), and the backend against a2a-sdk
1.3.0's own server (card discovery, streaming and blocking, v0.3 through its compatibility
layer, a failing task, input required, cancel) and a raw v0.3-only endpoint (downgrade after
-32601, polling a working task), how HTTP and JSON-RPC failures are classified, and the real
OpenClaw's A2A channel replayed (tests/fixtures/oracle/a2a_proxy.json)."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from clawmesh.config import A2ASettings
from clawmesh_runner.backends import BackendError, ProxyTurn
from clawmesh_runner.backends import a2a as wire
from clawmesh_runner.backends.a2a import (
    A2ABackend,
    Reply,
    card_endpoint,
    context_id,
    decode_event,
    send_params,
)
from tests.fakes.a2a_agents import LegacyAgent, SdkAgent
from tests.fakes.serve import serve_app
from tests.fixtures.gateway import wait_until

SESSION = "agent:hop:telegram:direct:42"
TOKEN = "a2a-secret-token"


def _turn(
    url: str,
    text: str = "hello there",
    token: str | None = TOKEN,
    session: str = SESSION,
    *,
    turn_id: str = "t1",
    remote: str | None = None,
) -> ProxyTurn:
    return ProxyTurn(
        agent_id="hop",
        session_key=session,
        turn_id=turn_id,
        remote_session=remote,
        text=text,
        settings=A2ASettings(url=url, token=token, token_path="$.agents.list[0].a2a.token"),
        env={},
        workspace=Path("/tmp"),
        timeout=60.0,
    )


class _Deltas(list[str]):
    async def __call__(self, text: str) -> None:
        self.append(text)


@pytest_asyncio.fixture
async def backend() -> AsyncIterator[A2ABackend]:
    b = A2ABackend()
    try:
        yield b
    finally:
        await b.aclose()


# --- the wire --------------------------------------------------------------------------------


def test_context_ids_are_deterministic_and_within_the_protocols_charset() -> None:
    one, again = context_id(SESSION, "t1"), context_id(SESSION, "t1")  # a redelivered turn
    assert one == again != context_id("agent:hop:main", "t1") != context_id(SESSION, "t9")
    assert re.fullmatch(r"[A-Za-z0-9._:-]{1,128}", one)
    assert "telegram" not in one and "42" not in one.removeprefix("clawmesh-")[:2]  # the peer stays here


def test_send_params_in_each_version() -> None:
    assert send_params("hi", "ctx", "m1", "1.0") == {
        "message": {"messageId": "m1", "role": "ROLE_USER", "parts": [{"text": "hi"}], "contextId": "ctx"}
    }
    old = send_params("hi", "ctx", "m1", "0.3")
    assert old["message"] == {
        "kind": "message",
        "messageId": "m1",
        "role": "user",
        "parts": [{"kind": "text", "text": "hi"}],
        "contextId": "ctx",
    }
    assert old["configuration"]["blocking"] is True


def test_answers_of_both_versions_feed_the_same_reply() -> None:
    v1, old = Reply(), Reply()
    v1_events = [
        b'{"task": {"id": "t", "contextId": "c", "status": {"state": "TASK_STATE_SUBMITTED"}}}',
        b'{"statusUpdate": {"taskId": "t", "status": {"state": "TASK_STATE_WORKING"}}}',
        b'{"artifactUpdate": {"taskId": "t", "artifact": {"artifactId": "a", "parts": [{"text": "he"}]}}}',
        b'{"artifactUpdate": {"taskId": "t", "append": true, "lastChunk": true,'
        b' "artifact": {"artifactId": "a", "parts": [{"text": "llo"}]}}}',
        b'{"statusUpdate": {"taskId": "t", "status": {"state": "TASK_STATE_COMPLETED"}}}',
    ]
    old_events = [
        b'{"kind": "task", "id": "t", "contextId": "c", "status": {"state": "submitted"}}',
        b'{"kind": "status-update", "taskId": "t", "status": {"state": "working"}, "final": false}',
        b'{"kind": "artifact-update", "taskId": "t", "append": false,'
        b' "artifact": {"artifactId": "a", "parts": [{"kind": "text", "text": "he"}]}}',
        b'{"kind": "artifact-update", "taskId": "t", "append": true,'
        b' "artifact": {"artifactId": "a", "parts": [{"kind": "text", "text": "llo"}]}}',
        b'{"kind": "status-update", "taskId": "t", "status": {"state": "completed"}, "final": true}',
    ]
    for reply, events in ((v1, v1_events), (old, old_events)):
        deltas = []
        for raw in events:
            event = decode_event(raw)
            assert event is not None
            reply.feed(event)
            deltas.append(reply.fresh())
        assert [d for d in deltas if d] == ["he", "llo"]
        assert (reply.task_id, reply.state, reply.done, reply.outcome("x")) == (
            "t",
            "completed",
            True,
            "hello",
        )


def test_a_bare_task_a_message_and_parts_other_than_text() -> None:
    task = decode_event(
        b'{"id": "t", "status": {"state": "TASK_STATE_COMPLETED"}, "artifacts": ['
        b'{"artifactId": "a", "parts": [{"text": "one"}, {"text": " two"}, {"data": {"k": 1}}]},'
        b'{"artifactId": "b", "parts": [{"url": "https://x/y.png", "mediaType": "image/png"}]}]}'
    )
    reply = Reply()
    assert task is not None
    reply.feed(task)
    assert reply.outcome("x") == 'one two\n{"k":1}\n\nhttps://x/y.png'
    message = decode_event(
        b'{"message": {"messageId": "m", "role": "ROLE_AGENT", "parts": [{"text": "hi"}]}}'
    )
    only = Reply()
    assert message is not None
    only.feed(message)
    assert only.done and only.outcome("x") == "hi"
    # a completed task whose answer is its status message (no artifacts)
    status = Reply()
    status.feed(
        wire.msgspec.json.decode(
            b'{"id": "t", "status": {"state": "completed", "message": {"parts": [{"kind": "text", "text": "ok"}]}}}',
            type=wire._Task,
        )
    )
    assert status.outcome("x") == "ok"
    assert decode_event(b'{"somethingElse": 1}') is None


@pytest.mark.parametrize(
    ("state", "words", "reason"),
    [
        ("TASK_STATE_FAILED", "failed the task: the tool broke", "remote_error"),
        ("rejected", "rejected the task: the tool broke", "remote_error"),
        ("TASK_STATE_CANCELED", "cancelled the task", "remote_error"),
        (
            "TASK_STATE_INPUT_REQUIRED",
            "asks for more input, which a proxied turn cannot give: the tool",
            "remote_error",
        ),
        ("auth-required", "needs an authorisation", "auth"),
    ],
)
def test_unfinished_or_failed_tasks_are_clear_errors(state: str, words: str, reason: str) -> None:
    reply = Reply()
    reply.feed(
        wire._StatusUpdate(
            task_id="t",
            status=wire._Status(
                state=state, message=wire._Message(parts=[wire._Part(text="the tool broke")])
            ),
        )
    )
    assert reply.done
    with pytest.raises(BackendError) as caught:
        reply.outcome("http://far/rpc")
    assert words in caught.value.message and "http://far/rpc" in caught.value.message
    assert (caught.value.reason, caught.value.failover) == (reason, False)


def test_the_cards_jsonrpc_interface_is_picked() -> None:
    v1 = {
        "supportedInterfaces": [
            {"url": "https://g/grpc", "protocolBinding": "GRPC", "protocolVersion": "1.0"},
            {"url": "https://g/old", "protocolBinding": "JSONRPC", "protocolVersion": "0.3"},
            {"url": "/rpc", "protocolBinding": "JSONRPC", "protocolVersion": "1.0"},
        ],
        "capabilities": {"streaming": True},
        "url": "https://g/legacy",
        "protocolVersion": "0.3.0",
    }
    found = card_endpoint(v1, "https://g/a/.well-known/agent-card.json")
    assert (found.url, found.version, found.streaming) == ("https://g/rpc", "1.0", True)
    only_old = {"supportedInterfaces": [v1["supportedInterfaces"][1]]}  # type: ignore[index]
    assert card_endpoint(only_old, "https://g/c.json").version == "0.3"
    legacy = {"url": "https://l/a2a", "preferredTransport": "JSONRPC", "protocolVersion": "0.3.0"}
    found = card_endpoint(legacy, "https://l/c.json")
    assert (found.url, found.version, found.streaming) == ("https://l/a2a", "0.3", False)
    grpc_first = {
        "url": "https://l/grpc",
        "preferredTransport": "GRPC",
        "additionalInterfaces": [{"url": "https://l/jsonrpc", "transport": "JSONRPC"}],
    }
    assert card_endpoint(grpc_first, "https://l/c.json").url == "https://l/jsonrpc"
    with pytest.raises(BackendError) as caught:
        card_endpoint({"supportedInterfaces": [v1["supportedInterfaces"][0]]}, "https://g/c.json")  # type: ignore[index]
    assert "no JSON-RPC interface" in caught.value.message and not caught.value.failover
    with pytest.raises(BackendError):
        card_endpoint(["not", "a", "card"], "https://g/c.json")


# --- against a2a-sdk's server ------------------------------------------------------------------


async def test_streams_from_the_sdk_server_found_by_its_base_url(backend: A2ABackend) -> None:
    agent = SdkAgent(token=TOKEN)
    async with serve_app(agent.app) as url:
        agent.base = url
        deltas = _Deltas()
        first = await backend.run(_turn(url), deltas)
        # the session's later turn: the context kept in the transcript
        second = await backend.run(_turn(url, "and again", turn_id="t2", remote=first.remote_session), deltas)
        # after /new the transcript has none: a new context
        fresh = await backend.run(_turn(url, "anew", turn_id="t3"), _Deltas())
    assert first.text == "echo: hello there" and second.text == "echo: and again"
    assert "".join(deltas) == "echo: hello thereecho: and again" and len(deltas) == 6
    assert [(c.method, c.version, c.authorization) for c in agent.calls] == [
        ("SendStreamingMessage", "1.0", f"Bearer {TOKEN}")
    ] * 3
    # one remote conversation for the session, a new one after its reset
    contexts = [ctx for _, ctx in agent.prompts]
    assert contexts == [context_id(SESSION, "t1")] * 2 + [context_id(SESSION, "t3")]
    assert [first.remote_session, second.remote_session, fresh.remote_session] == contexts


async def test_blocking_send_when_the_card_does_not_stream(backend: A2ABackend) -> None:
    agent = SdkAgent(streaming=False)
    async with serve_app(agent.app) as url:
        agent.base = url
        deltas = _Deltas()
        result = await backend.run(_turn(f"{url}/.well-known/agent-card.json", token=None), deltas)
    assert result.text == "echo: hello there" and deltas == []
    assert [(c.method, c.version, c.authorization) for c in agent.calls] == [("SendMessage", "1.0", None)]


@pytest.mark.parametrize("streaming", [True, False])
async def test_a_v03_card_is_spoken_to_in_v03(backend: A2ABackend, streaming: bool) -> None:
    agent = SdkAgent(streaming=streaming, legacy_card=True)
    async with serve_app(agent.app) as url:
        agent.base = url
        deltas = _Deltas()
        result = await backend.run(_turn(url), deltas)
    assert result.text == "echo: hello there"
    assert "".join(deltas) == ("echo: hello there" if streaming else "")
    method = "message/stream" if streaming else "message/send"
    assert [(c.method, c.version) for c in agent.calls] == [(method, None)]
    assert agent.calls[0].params["message"]["parts"] == [{"kind": "text", "text": "hello there"}]


@pytest.mark.parametrize("streaming", [True, False])
async def test_a_failed_task_and_a_question_are_told_to_the_user(
    backend: A2ABackend, streaming: bool
) -> None:
    agent = SdkAgent(streaming=streaming)
    async with serve_app(agent.app) as url:
        agent.base = url
        with pytest.raises(BackendError) as failed:
            await backend.run(_turn(url, "fail please"), _Deltas())
        with pytest.raises(BackendError) as asked:
            await backend.run(_turn(url, "ask me"), _Deltas())
    assert "failed the task: the tool broke" in failed.value.message and not failed.value.failover
    assert "asks for more input" in asked.value.message and "which city?" in asked.value.message


async def test_a_cancelled_turn_cancels_the_task_at_the_sdk_server(backend: A2ABackend) -> None:
    agent = SdkAgent()
    async with serve_app(agent.app) as url:
        agent.base = url
        deltas = _Deltas()
        running = asyncio.create_task(backend.run(_turn(url, "hang on"), deltas))
        await wait_until(lambda: deltas == ["working on it"], message="the task's first words")
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await running
    assert [c.method for c in agent.calls] == ["SendStreamingMessage", "CancelTask"]
    assert agent.cancelled == [agent.calls[1].params["id"]]


# --- a v0.3-only endpoint, no card ---------------------------------------------------------------


async def test_a_v03_only_endpoint_is_downgraded_to_and_its_task_polled(
    backend: A2ABackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(wire, "_POLL_FIRST", 0.01)
    agent = LegacyAgent(token=TOKEN)
    async with serve_app(agent.app) as url:
        first = await backend.run(_turn(f"{url}/rpc"), _Deltas())
        second = await backend.run(_turn(f"{url}/rpc", "again", remote=first.remote_session), _Deltas())
    assert first.text == "echo: hello there" and second.text == "echo: again"
    # no card below the endpoint: SendMessage as configured, -32601, then v0.3 (remembered)
    assert [(c.method, c.version) for c in agent.calls] == [
        ("SendMessage", "1.0"),
        ("message/send", None),
        ("tasks/get", None),
        ("tasks/get", None),
        ("message/send", None),
        ("tasks/get", None),
        ("tasks/get", None),
    ]
    assert {agent.calls[i].params["message"]["contextId"] for i in (1, 4)} == {context_id(SESSION, "t1")}


# --- failures, classified ------------------------------------------------------------------------


async def test_wrong_token_is_an_auth_error_that_does_not_show_the_token(backend: A2ABackend) -> None:
    agent = SdkAgent(token=TOKEN)
    async with serve_app(agent.app) as url:
        agent.base = url
        with pytest.raises(BackendError) as caught:
            await backend.run(_turn(url, token="wrong-token-value"), _Deltas())
    assert (caught.value.reason, caught.value.failover) == ("auth", False)
    assert "401" in caught.value.message and "a2a.token" in caught.value.hint
    assert "wrong-token-value" not in caught.value.message + caught.value.hint


async def test_an_unreachable_agent_is_failover_worthy(backend: A2ABackend) -> None:
    with pytest.raises(BackendError) as caught:
        await backend.run(_turn("http://127.0.0.1:9"), _Deltas())
    assert (caught.value.reason, caught.value.failover) == ("connection", True)


def _mock(handler: Any) -> A2ABackend:
    return A2ABackend(transport=httpx.MockTransport(handler))


@pytest.mark.parametrize(
    ("status", "body", "reason", "failover"),
    [
        (429, b"slow down", "rate_limit", True),
        (503, b"down", "server", True),
        (400, b"bad", "remote_error", False),
        (
            200,
            b'{"jsonrpc": "2.0", "id": 1, "error": {"code": -32000, "message": "Peer is rate limited"}}',
            "rate_limit",
            True,
        ),
        (200, b'{"jsonrpc": "2.0", "id": 1, "error": {"code": -32603, "message": "boom"}}', "server", True),
        (
            200,
            b'{"jsonrpc": "2.0", "id": 1, "error": {"code": -32602, "message": "bad params"}}',
            "remote_error",
            False,
        ),
        (200, b"<html>not json</html>", "remote_error", False),
    ],
)
async def test_http_and_jsonrpc_failures_are_classified(
    status: int, body: bytes, reason: str, failover: bool
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            return httpx.Response(404)  # no card: the URL is the endpoint
        return httpx.Response(status, content=body, headers={"content-type": "application/json"})

    backend = _mock(handler)
    try:
        with pytest.raises(BackendError) as caught:
            await backend.run(_turn("http://far/a2a/v1"), _Deltas())
    finally:
        await backend.aclose()
    assert (caught.value.reason, caught.value.failover) == (reason, failover), caught.value.message


async def test_a_missing_card_at_an_explicit_card_url_is_an_error() -> None:
    backend = _mock(lambda request: httpx.Response(404, content=b"no"))
    try:
        with pytest.raises(BackendError) as caught:
            await backend.run(_turn("http://far/agent-card.json"), _Deltas())
    finally:
        await backend.aclose()
    assert "404" in caught.value.message and "http://far/agent-card.json" in caught.value.message


async def test_the_card_is_kept_between_turns() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        query = f"?{request.url.query.decode()}" if request.url.query else ""
        seen.append(f"{request.method} {request.url.path}{query}")
        if request.method == "GET":
            card = {
                "supportedInterfaces": [
                    {"url": "http://far/rpc", "protocolBinding": "JSONRPC", "protocolVersion": "1.0"}
                ]
            }
            return httpx.Response(200, json=card)
        task = {
            "id": "t",
            "status": {"state": "TASK_STATE_COMPLETED"},
            "artifacts": [{"parts": [{"text": "ok"}]}],
        }
        return httpx.Response(200, json={"jsonrpc": "2.0", "id": 1, "result": {"task": task}})

    backend = _mock(handler)
    try:
        for _ in range(2):
            assert (await backend.run(_turn("http://far/a"), _Deltas())).text == "ok"
        # the card below a base URL with a query keeps the query where it belongs
        assert (await backend.run(_turn("http://far/b?tenant=x"), _Deltas())).text == "ok"
    finally:
        await backend.aclose()
    assert seen == [
        "GET /a/.well-known/agent-card.json",
        "POST /rpc",
        "POST /rpc",
        "GET /b/.well-known/agent-card.json?tenant=x",
        "POST /rpc",
    ]


# --- the real OpenClaw ---------------------------------------------------------------------------

ORACLE = Path(__file__).resolve().parents[1] / "fixtures" / "oracle" / "a2a_proxy.json"


def _rpc_shape(body: dict[str, Any] | None) -> Any:
    """A request without its random ids."""
    if body is None:
        return None
    params = json.loads(json.dumps(body["params"]))
    params.get("message", {}).pop("messageId", None)
    return body["method"], params


async def test_replays_the_real_openclaw_a2a_channel(monkeypatch: pytest.MonkeyPatch) -> None:
    """OpenClaw 2026.9.6's A2A channel answering this backend (scripts/oracle/a2a_proxy.py ran
    it against the real gateway): its card (v1, not streaming) → blocking `SendMessage`, a
    working task (past its replyTimeoutMs) polled with `GetTask`; read back through the
    backend, the same requests go out and the same replies come out, and OpenClaw kept one
    session for the local session's three turns (one contextId)."""
    monkeypatch.setattr(wire, "_POLL_FIRST", 0.001)
    recorded = json.loads(ORACLE.read_text())
    answers = iter(recorded["exchanges"])
    sent: list[tuple[str, str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        exchange = next(answers)
        body = json.loads(request.content) if request.content else None
        sent.append((request.method, request.url.path, _rpc_shape(body)))
        return httpx.Response(
            exchange["status"],
            headers={"content-type": exchange["contentType"]},
            content=exchange["body"].encode(),
        )

    backend = _mock(handler)
    card = json.loads(recorded["exchanges"][0]["body"])
    origin = card["supportedInterfaces"][0]["url"].removesuffix("/a2a/v1")
    remote = None
    try:
        for i, (text, expected) in enumerate(zip(recorded["turns"], recorded["results"], strict=True)):
            deltas = _Deltas()
            turn = _turn(origin, text, session=recorded["session"], turn_id=f"t{i + 1}", remote=remote)
            result = await backend.run(turn, deltas)
            remote = result.remote_session
            assert (result.text, result.remote_session, list(deltas)) == (
                expected["text"],
                expected["remoteSession"],
                expected["deltas"],
            )
    finally:
        await backend.aclose()
    assert sent == [
        (e["request"]["method"], e["request"]["path"], _rpc_shape(e["request"]["body"]))
        for e in recorded["exchanges"]
    ]
    methods = [shape[0] for _, _, shape in sent if shape]
    assert methods.count("SendMessage") == 3 and "GetTask" in methods
    assert recorded["modelSaw"] == [recorded["turns"][:1], recorded["turns"][:2], recorded["turns"]]


async def test_a_stream_left_open_after_its_last_event_still_ends_the_turn(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The spec has the server close the stream after the last event; one that keeps it open
    does not hold the turn (the rest is read only briefly, for the connection's sake)."""
    monkeypatch.setattr(wire, "_DRAIN", 0.01)
    never = asyncio.Event()

    class _Open(httpx.AsyncByteStream):
        async def __aiter__(self) -> AsyncIterator[bytes]:
            task = {
                "id": "t",
                "status": {"state": "TASK_STATE_COMPLETED"},
                "artifacts": [{"parts": [{"text": "done"}]}],
            }
            yield (
                b"data: "
                + json.dumps({"jsonrpc": "2.0", "id": 1, "result": {"task": task}}).encode()
                + b"\n\n"
            )
            await never.wait()

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            card = {
                "supportedInterfaces": [{"url": "http://far/rpc", "protocolBinding": "JSONRPC"}],
                "capabilities": {"streaming": True},
            }
            return httpx.Response(200, json=card)
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, stream=_Open())

    backend = _mock(handler)
    deltas = _Deltas()
    try:
        result = await backend.run(_turn("http://far/a"), deltas)
    finally:
        await backend.aclose()
    assert (result.text, list(deltas)) == ("done", ["done"])
