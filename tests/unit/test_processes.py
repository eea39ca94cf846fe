"""Background exec sessions (exec background/yieldMs and the process tool) on the host: real
`sh` commands, output kept in a bounded buffer, sessions scoped per agent, killed on close."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from clawmesh.tools.host_exec import ExecResult, host_environment
from clawmesh.tools.processes import ProcessRegistry
from clawmesh.tools.specs import ProcessArgs, ToolArgumentError, validate_tool_arguments
from clawmesh_node_agent.background import process_action, start_background
from tests.fixtures.gateway import wait_until


async def _start(
    registry: ProcessRegistry,
    tmp_path: Path,
    command: str,
    *,
    yield_ms: int | None = None,
    max_output: int = 10_000,
) -> ExecResult | dict[str, Any]:
    return await start_background(
        registry,
        agent_id="main",
        node_id="n1",
        command=command,
        cwd=tmp_path,
        env=host_environment(None, tmp_path),
        timeout=60,
        max_output=max_output,
        run_as=None,
        login=False,
        yield_ms=yield_ms,
    )


async def _act(registry: ProcessRegistry, agent: str = "main", **arguments: Any) -> tuple[Any, bool]:
    args = validate_tool_arguments("process", arguments)
    assert isinstance(args, ProcessArgs)
    content, is_error = await process_action(registry, agent, args)
    return (content if is_error else json.loads(content)), is_error


async def test_a_background_session_is_polled_written_to_and_killed(tmp_path: Path) -> None:
    registry = ProcessRegistry()
    started = await _start(registry, tmp_path, "echo ready; cat")
    assert isinstance(started, dict) and started["status"] == "running"
    session_id = started["sessionId"]
    assert session_id.startswith("n1~")
    shown = started["output"]
    if "ready" not in shown:  # not printed yet when exec returned: poll waits for it
        polled, _ = await _act(registry, action="poll", sessionId=session_id, timeout=30_000)
        shown += polled["output"]
    assert "ready" in shown
    _, is_error = await _act(registry, action="write", sessionId=session_id, data="echoed back\n")
    assert not is_error
    session = registry.get("main", session_id)
    await wait_until(lambda: "echoed back" in session.text(), message="cat echoes stdin")
    listed, _ = await _act(registry, action="list")
    assert [s["sessionId"] for s in listed["sessions"]] == [session_id]
    # another agent sees nothing of it
    other, _ = await _act(registry, agent="work", action="list")
    assert other == {"sessions": []}
    refused, is_error = await _act(registry, agent="work", action="kill", sessionId=session_id)
    assert is_error and refused == f"No session found for {session_id}"
    killed, _ = await _act(registry, action="kill", sessionId=session_id)
    assert killed["status"] == "killed" and session.status == "killed"
    refused, is_error = await _act(registry, action="write", sessionId=session_id, data="x")
    assert is_error and "is not running" in refused


async def test_eof_ends_a_command_that_reads_stdin(tmp_path: Path) -> None:
    registry = ProcessRegistry()
    started = await _start(registry, tmp_path, "wc -l")
    assert isinstance(started, dict)
    written, is_error = await _act(
        registry, action="write", sessionId=started["sessionId"], data="a\nb\n", eof=True
    )
    assert not is_error and written["written"] == 4
    session = registry.get("main", started["sessionId"])
    await wait_until(lambda: session.status == "completed", message="wc exits on eof")
    log, _ = await _act(registry, action="log", sessionId=started["sessionId"])
    assert log["output"].strip() == "2" and log["exitCode"] == 0


async def test_yield_ms_returns_the_result_of_a_quick_command(tmp_path: Path) -> None:
    registry = ProcessRegistry()
    result = await _start(registry, tmp_path, "echo quick", yield_ms=30_000)
    assert isinstance(result, ExecResult) and result.stdout == "quick\n" and result.exit_code == 0
    assert registry.list("main") == []  # no session left behind
    running = await _start(registry, tmp_path, "sleep 30", yield_ms=1)
    assert isinstance(running, dict) and running["status"] == "running"
    await registry.close()


async def test_output_is_bounded_and_log_pages_lines(tmp_path: Path) -> None:
    registry = ProcessRegistry()
    started = await _start(registry, tmp_path, "seq 1 100000; cat", max_output=1000)
    assert isinstance(started, dict)
    session = registry.get("main", started["sessionId"])
    await wait_until(lambda: session.size > 0 and session.dropped + session.size >= 1000, message="output")
    assert session.size <= 1000
    page, _ = await _act(registry, action="log", sessionId=session.id, offset=0, limit=3)
    assert len(page["output"].splitlines()) == 3 and page["offset"] == 0
    await registry.close()


async def test_close_kills_every_session(tmp_path: Path) -> None:
    registry = ProcessRegistry()
    pid_file = tmp_path / "pid"
    started = await _start(registry, tmp_path, f"echo $$ > {pid_file}; exec sleep 60")
    assert isinstance(started, dict)
    await wait_until(lambda: pid_file.exists() and pid_file.read_text().strip(), message="the pid")
    pid = int(pid_file.read_text())
    await registry.close()
    assert registry.list("main") == []

    def gone() -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        # a zombie not yet reaped counts as gone
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"

    await wait_until(gone, message="the process group is killed")


def test_arguments_name_what_is_missing() -> None:
    with pytest.raises(ToolArgumentError, match="action 'poll' needs `sessionId`"):
        validate_tool_arguments("process", {"action": "poll"})
    with pytest.raises(ToolArgumentError, match="needs `data`"):
        validate_tool_arguments("process", {"action": "write", "sessionId": "x"})
    with pytest.raises(ToolArgumentError, match="action"):
        validate_tool_arguments("process", {"action": "send-keys", "sessionId": "x"})
    args = validate_tool_arguments("exec", {"command": "x", "background": True, "yieldMs": 5})
    assert args.background is True and args.yield_ms == 5
