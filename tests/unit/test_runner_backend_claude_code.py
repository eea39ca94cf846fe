"""The claude_code backend against a fake `claude` CLI (tests/fakes/claude_cli.py, the
stream-json lines of Claude Code 2.1): deltas from partial messages, `--resume` per session in
the agent's working directory, cost and usage, API errors as failover-worthy, a lost session
started again, cancellation killing the CLI."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from clawmesh.config import ClaudeCodeSettings
from clawmesh_runner.backends import BackendError, ProxyResult, ProxyTurn
from clawmesh_runner.backends.claude_code import ClaudeCodeBackend

FAKE = Path(__file__).resolve().parents[1] / "fakes" / "claude_cli.py"


@pytest.fixture
def claude(tmp_path: Path) -> Path:
    """An executable `claude` that runs the fake with this interpreter."""
    exe = tmp_path / "bin" / "claude"
    exe.parent.mkdir()
    exe.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{FAKE}" "$@"\n')
    exe.chmod(0o755)
    return exe


def _turn(
    tmp_path: Path, command: Path | str, text: str, remote: str | None = None, workdir: str = "work"
) -> ProxyTurn:
    settings = ClaudeCodeSettings(
        working_directory=tmp_path / workdir, command=str(command), model=None, permission_mode="acceptEdits"
    )
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "CLAUDE_CONFIG_DIR": str(tmp_path / ".claude"),
        "FAKE_CLAUDE_PIDFILE": str(tmp_path / "claude.pid"),
    }
    return ProxyTurn(
        agent_id="cc",
        session_key="agent:cc:main",
        turn_id="t",
        text=text,
        settings=settings,
        env=env,
        remote_session=remote,
        workspace=tmp_path,
    )


async def _run(turn: ProxyTurn) -> tuple[list[str], ProxyResult]:
    deltas: list[str] = []

    async def on_delta(text: str) -> None:
        deltas.append(text)

    return deltas, await ClaudeCodeBackend().run(turn, on_delta)


async def test_streams_resumes_and_records_cost(tmp_path: Path, claude: Path) -> None:
    deltas, first = await _run(_turn(tmp_path, claude, "hello"))
    assert (
        first.text == "pong from fake claude #1: hello" and "".join(deltas) == first.text and len(deltas) > 1
    )
    assert first.cost_usd == 0.000125 and first.usage == (13, len(first.text.split()))
    assert first.model == "claude-opus-5-5" and first.remote_session
    _, second = await _run(_turn(tmp_path, claude, "again", remote=first.remote_session))
    assert second.text == "pong from fake claude #2: again"  # the CLI resumed the session
    assert second.remote_session == first.remote_session
    assert (tmp_path / "work").is_dir()  # the working directory, created for the CLI


async def test_a_session_the_cli_no_longer_has_is_started_again(tmp_path: Path, claude: Path) -> None:
    _, result = await _run(_turn(tmp_path, claude, "hi", remote="4b0c5c0e-0000-4000-8000-000000000000"))
    assert result.text == "pong from fake claude #1: hi"
    assert result.remote_session != "4b0c5c0e-0000-4000-8000-000000000000"


@pytest.mark.parametrize(
    ("marker", "reason"), [("FAKE_ERR_529", "overloaded"), ("FAKE_ERR_429", "rate_limit")]
)
async def test_api_errors_are_failover_worthy(tmp_path: Path, claude: Path, marker: str, reason: str) -> None:
    deltas: list[str] = []

    async def on_delta(text: str) -> None:
        deltas.append(text)

    with pytest.raises(BackendError) as caught:
        await ClaudeCodeBackend().run(_turn(tmp_path, claude, f"please {marker}"), on_delta)
    assert caught.value.failover and caught.value.reason == reason and "API Error" in caught.value.message
    # the CLI's synthetic error message is not the reply: nothing streamed, so a fallback may answer
    assert deltas == []


async def test_a_missing_cli_is_failover_worthy(tmp_path: Path) -> None:
    with pytest.raises(BackendError) as caught:
        await _run(_turn(tmp_path, tmp_path / "no-such-claude", "hi"))
    assert (
        caught.value.failover
        and caught.value.reason == "unavailable"
        and "claudeCode.command" in caught.value.hint
    )


async def test_cancelling_the_turn_kills_the_cli(tmp_path: Path, claude: Path) -> None:
    task = asyncio.create_task(_run(_turn(tmp_path, claude, "FAKE_HANG")))
    pidfile = tmp_path / "claude.pid"
    deadline = asyncio.get_running_loop().time() + 20
    while not pidfile.exists() and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.02)  # polling the fake's pid file: the CLI is running the turn
    pid = int(pidfile.read_text())
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
