"""The opencode backend against the fake OpenCode server (tests/fakes/opencode.py): Basic auth,
one OpenCode session per clawmesh session, replies streamed from the event stream, the working
directory and default model, slash commands, a model that keeps failing (aborted, failover),
cancellation reaching the server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from clawmesh.config import OpenCodeSettings
from clawmesh_runner.backends import BackendError, ProxyResult, ProxyTurn
from clawmesh_runner.backends.opencode import HELP_TEXT, OpenCodeBackend
from tests.fakes.opencode import FakeOpenCode, OcHang, OcModelError, OcPermission, OcReply, OcRetry
from tests.fakes.serve import serve_app

PASSWORD = "s3cret"


@pytest_asyncio.fixture
async def oc() -> AsyncIterator[tuple[FakeOpenCode, str]]:
    fake = FakeOpenCode(password=PASSWORD)
    async with serve_app(fake.app) as url:
        yield fake, url


def _turn(url: str, text: str, remote: str | None = None, password: str = PASSWORD) -> ProxyTurn:
    settings = OpenCodeSettings(
        mode="remote",
        base_url=url,
        port=4096,
        password=password,
        password_path="$.agents.list[0].opencode.password",
        working_directory=Path("/srv/project"),
        model="fake/fake-model",
        command="opencode",
    )
    return ProxyTurn(
        agent_id="oc",
        session_key="agent:oc:main",
        turn_id="t",
        text=text,
        settings=settings,
        env={},
        remote_session=remote,
        workspace=Path("/tmp"),
    )


async def _run(backend: OpenCodeBackend, turn: ProxyTurn) -> tuple[list[str], ProxyResult]:
    deltas: list[str] = []

    async def on_delta(text: str) -> None:
        deltas.append(text)

    return deltas, await backend.run(turn, on_delta)


async def test_one_session_per_clawmesh_session_replies_streamed(oc: tuple[FakeOpenCode, str]) -> None:
    fake, url = oc
    fake.script(OcReply("pong from fake model", chunks=4), OcReply("second", chunks=1))
    backend = OpenCodeBackend()
    try:
        deltas, first = await _run(backend, _turn(url, "say hello"))
        _, second = await _run(backend, _turn(url, "again", remote=first.remote_session))
    finally:
        await backend.aclose()
    assert "".join(deltas) == "pong from fake model" and len(deltas) == 4  # repeated events not doubled
    assert first.text == "pong from fake model" and second.text == "second"
    assert first.remote_session == second.remote_session and len(fake.sessions) == 1
    assert first.usage == (len("say hello"), len("pong from fake model")) and first.cost_usd == 0.0025
    assert first.model == "fake/fake-model"
    assert fake.prompts[0] == {
        "parts": [{"type": "text", "text": "say hello"}],
        "model": {"providerID": "fake", "modelID": "fake-model"},
    }
    assert all(
        query.get("directory") == "/srv/project"
        for _, path, query, _ in fake.requests
        if path != "/global/health"
    )


async def test_a_wrong_password_is_refused_clearly(oc: tuple[FakeOpenCode, str]) -> None:
    _, url = oc
    backend = OpenCodeBackend()
    try:
        with pytest.raises(BackendError) as caught:
            await _run(backend, _turn(url, "hi", password="wrong"))
    finally:
        await backend.aclose()
    assert caught.value.reason == "auth" and not caught.value.failover and "password" in caught.value.hint


async def test_slash_commands(oc: tuple[FakeOpenCode, str]) -> None:
    fake, url = oc
    backend = OpenCodeBackend()
    try:
        _, helped = await _run(backend, _turn(url, "/help"))
        assert helped.text == HELP_TEXT and not fake.requests  # answered here
        _, first = await _run(backend, _turn(url, "first prompt"))
        sid = first.remote_session
        _, init = await _run(backend, _turn(url, "/init", remote=sid))
        assert init.text == "Created AGENTS.md"
        assert fake.commands == [{"command": "init", "arguments": "", "model": "fake/fake-model"}]
        _, shared = await _run(backend, _turn(url, "/share", remote=sid))
        assert shared.text == f"Shared: https://opncd.ai/s/{sid[-6:]}"  # type: ignore[index]
        _, undone = await _run(backend, _turn(url, "/undo", remote=sid))
        user_id = fake.sessions[sid].messages[0]["info"]["id"]  # type: ignore[index]
        assert undone.text == "Undone: first prompt" and fake.sessions[sid].revert["messageID"] == user_id  # type: ignore[index]
        _, redone = await _run(backend, _turn(url, "/redo", remote=sid))
        assert redone.text == "Redone." and fake.sessions[sid].revert is None  # type: ignore[index]
        _, nothing = await _run(backend, _turn(url, "/redo", remote=sid))
        assert nothing.text == "Nothing to redo."
    finally:
        await backend.aclose()


async def test_a_model_that_keeps_failing_is_aborted_and_fails_over(oc: tuple[FakeOpenCode, str]) -> None:
    fake, url = oc
    fake.script(OcRetry("fake 529"))
    backend = OpenCodeBackend()
    try:
        with pytest.raises(BackendError) as caught:
            await _run(backend, _turn(url, "hi"))
    finally:
        await backend.aclose()
    assert caught.value.failover and caught.value.reason == "overloaded"
    assert fake.aborts == list(fake.sessions)


async def test_a_model_error_is_reported_not_failed_over(oc: tuple[FakeOpenCode, str]) -> None:
    fake, url = oc
    fake.script(OcModelError("bad request"))
    backend = OpenCodeBackend()
    try:
        with pytest.raises(BackendError) as caught:
            await _run(backend, _turn(url, "hi"))
    finally:
        await backend.aclose()
    assert not caught.value.failover and "bad request" in caught.value.message


async def test_cancelling_the_turn_aborts_it_at_opencode(oc: tuple[FakeOpenCode, str]) -> None:
    fake, url = oc
    fake.script(OcHang())
    backend = OpenCodeBackend()
    task = asyncio.create_task(_run(backend, _turn(url, "hi")))
    deadline = asyncio.get_running_loop().time() + 10
    while not fake.prompts and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.01)  # polling the fake's record: the prompt has reached the server
    assert fake.prompts
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await backend.aclose()
    assert fake.aborts == list(fake.sessions)


async def test_a_server_that_is_down_is_failover_worthy() -> None:
    backend = OpenCodeBackend()
    try:
        with pytest.raises(BackendError) as caught:
            await _run(backend, _turn("http://127.0.0.1:9", "hi"))
    finally:
        await backend.aclose()
    assert caught.value.failover and caught.value.reason == "connection"


async def test_a_session_the_server_no_longer_has_is_started_again(oc: tuple[FakeOpenCode, str]) -> None:
    fake, url = oc
    backend = OpenCodeBackend()
    try:
        _, result = await _run(backend, _turn(url, "hi", remote="ses_from_an_old_server"))
    finally:
        await backend.aclose()
    assert result.text == "pong from opencode"
    assert result.remote_session in fake.sessions and result.remote_session != "ses_from_an_old_server"


async def test_a_permission_prompt_ends_the_turn_clearly(oc: tuple[FakeOpenCode, str]) -> None:
    fake, url = oc
    fake.script(OcPermission("bash"))
    backend = OpenCodeBackend()
    try:
        with pytest.raises(BackendError) as caught:
            await _run(backend, _turn(url, "clean the build"))
    finally:
        await backend.aclose()
    assert caught.value.reason == "permission" and not caught.value.failover
    assert "bash" in caught.value.message and "permission" in caught.value.hint
    assert fake.aborts == list(fake.sessions)  # OpenCode is not left waiting for an answer
