"""The coze backend against the fake Coze API (tests/fakes/coze.py): streamed answer deltas,
one conversation per session, both sites, errors that come as HTTP 200 + `code`, failover
classification, cancellation reaching Coze."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio

from clawmesh.config import COZE_BASE_URLS, CozeSettings
from clawmesh_runner.backends import BackendError, ProxyTurn
from clawmesh_runner.backends.coze import CozeBackend
from tests.fakes.coze import (
    CozeError,
    CozeErrorEvent,
    CozeFail,
    CozeHang,
    CozeReply,
    CozeRequiresAction,
    FakeCoze,
)
from tests.fakes.serve import serve_app

TOKEN = "pat_test"


@pytest_asyncio.fixture
async def coze() -> AsyncIterator[tuple[FakeCoze, str]]:
    fake = FakeCoze(token=TOKEN)
    async with serve_app(fake.app) as url:
        yield fake, url


def _turn(base_url: str, text: str = "hi", remote: str | None = None, key: str = TOKEN) -> ProxyTurn:
    settings = CozeSettings(
        region="com", base_url=base_url, bot_id="7348293334", api_key=key, api_key_path="$.k"
    )
    return ProxyTurn(
        agent_id="bot",
        session_key="agent:bot:main",
        turn_id="t1",
        text=text,
        settings=settings,
        env={},
        remote_session=remote,
        workspace=Path("/tmp"),
    )


async def _run(backend: CozeBackend, turn: ProxyTurn) -> tuple[list[str], object]:
    deltas: list[str] = []

    async def on_delta(text: str) -> None:
        deltas.append(text)

    result = await backend.run(turn, on_delta)
    return deltas, result


async def test_streams_the_answer_and_keeps_one_conversation(coze: tuple[FakeCoze, str]) -> None:
    fake, url = coze
    fake.script(CozeReply("2024 年 10 月 1 日是星期三。", chunks=3), CozeReply("second", chunks=1))
    backend = CozeBackend()
    try:
        deltas, first = await _run(backend, _turn(url, "what day?"))
        assert "".join(deltas) == "2024 年 10 月 1 日是星期三。" and len(deltas) == 3
        # the completed message repeats the deltas; verbose and follow_up messages are no reply
        assert first.text == "2024 年 10 月 1 日是星期三。"  # type: ignore[attr-defined]
        assert first.usage == (len("what day?"), len(first.text))  # type: ignore[attr-defined]
        conversation = first.remote_session  # type: ignore[attr-defined]
        assert conversation
        _, second = await _run(backend, _turn(url, "again", remote=conversation))
        assert second.text == "second" and second.remote_session == conversation  # type: ignore[attr-defined]
    finally:
        await backend.aclose()
    chats = [r for r in fake.requests if r.path == "/v3/chat"]
    assert "conversation_id" not in chats[0].query
    assert chats[1].query["conversation_id"] == conversation
    body = chats[0].body
    assert body is not None
    assert body["bot_id"] == "7348293334" and body["user_id"] == "agent:bot:main" and body["stream"] is True
    assert body["additional_messages"] == [
        {"role": "user", "type": "question", "content": "what day?", "content_type": "text"}
    ]
    assert chats[0].headers["authorization"] == f"Bearer {TOKEN}"


@pytest.mark.parametrize("region", ["cn", "com"])
async def test_each_region_calls_its_own_site(region: str) -> None:
    fake = FakeCoze(token=TOKEN)
    backend = CozeBackend(transport=httpx.ASGITransport(app=fake.app))
    turn = _turn(COZE_BASE_URLS[region])
    try:
        _, result = await _run(backend, turn)
    finally:
        await backend.aclose()
    assert result.text == "pong from coze"  # type: ignore[attr-defined]
    assert fake.requests[0].host == f"api.coze.{region}"


@pytest.mark.parametrize(
    ("step", "reason", "failover"),
    [
        (CozeError(4000, "json fail"), "coze_error", False),
        (CozeError(4013, "request rate exceeded"), "rate_limit", True),
        (CozeFail(5000, "event interval error"), "server", True),
        (CozeErrorEvent({}), "server", True),
        (CozeRequiresAction(), "coze_error", False),
    ],
)
async def test_errors_are_classified(
    coze: tuple[FakeCoze, str], step: object, reason: str, failover: bool
) -> None:
    fake, url = coze
    fake.script(step)  # type: ignore[arg-type]
    backend = CozeBackend()
    try:
        with pytest.raises(BackendError) as caught:
            await _run(backend, _turn(url))
    finally:
        await backend.aclose()
    assert (caught.value.reason, caught.value.failover) == (reason, failover)


async def test_a_wrong_token_is_an_auth_error_not_a_failover(coze: tuple[FakeCoze, str]) -> None:
    _, url = coze
    backend = CozeBackend()
    try:
        with pytest.raises(BackendError) as caught:
            await _run(backend, _turn(url, key="wrong"))
    finally:
        await backend.aclose()
    assert caught.value.reason == "auth" and not caught.value.failover
    assert "4100" in caught.value.message and "apiKey" in caught.value.hint


async def test_coze_down_is_failover_worthy() -> None:
    backend = CozeBackend()
    try:
        with pytest.raises(BackendError) as caught:
            await _run(backend, _turn("http://127.0.0.1:9"))
    finally:
        await backend.aclose()
    assert caught.value.failover and caught.value.reason == "connection"


async def test_cancelling_the_turn_cancels_the_chat_at_coze(coze: tuple[FakeCoze, str]) -> None:
    fake, url = coze
    fake.script(CozeHang())
    backend = CozeBackend()
    first = asyncio.Event()

    async def on_delta(text: str) -> None:
        first.set()

    task = asyncio.create_task(backend.run(_turn(url), on_delta))
    await asyncio.wait_for(first.wait(), 10)  # the chat is under way at Coze
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await backend.aclose()
    chat_events = [r for r in fake.requests if r.path == "/v3/chat/cancel"]
    assert len(chat_events) == 1 and fake.cancelled
    conversation, chat = fake.cancelled[0]
    assert chat_events[0].body == {"conversation_id": conversation, "chat_id": chat}
