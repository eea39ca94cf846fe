"""`clawmesh tools explain`: in-process through its typer app, and as a subprocess like a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Annotated, Any

import pytest
import typer
from typer.testing import CliRunner

from clawmesh.cli import _app, _tools_cmd
from clawmesh.cli._common import CliError, State

CONFIG: dict[str, Any] = {
    "session": {"mainKey": "home"},
    "agents": {
        "defaults": {"sandbox": {"mode": "non-main"}, "model": "anthropic/claude-x"},
        "list": [
            {"id": "main"},
            {"id": "work", "tools": {"profile": "coding", "deny": ["group:runtime", "nosuch"]}},
            {"id": "open", "sandbox": {"mode": "off"}},
            {"id": "boxed", "sandbox": {"mode": "all"}},
        ],
    },
    "tools": {"byProvider": {"openai": {"deny": ["web_*"]}}},
}


def _root() -> typer.Typer:
    """A stand-in for the real root command (`clawmesh --config F tools …`)."""
    root = typer.Typer()

    @root.callback()
    def _cb(ctx: typer.Context, config: Annotated[str | None, typer.Option("--config")] = None) -> None:
        ctx.obj = State(config=config)

    root.add_typer(_tools_cmd.app, name="tools")
    return root


@pytest.fixture
def cfg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("CLAWMESH_STATE_DIR", raising=False)
    path = tmp_path / "clawmesh.json"
    path.write_text(json.dumps(CONFIG))
    return path


def invoke(cfg: Path, *args: str) -> tuple[int, str, BaseException | None]:
    res = CliRunner().invoke(_root(), ["--config", str(cfg), "tools", "explain", *args])
    return res.exit_code, res.output, res.exception


def explain_json(cfg: Path, *args: str) -> dict[str, Any]:
    code, out, exc = invoke(cfg, *args, "--json")
    assert code == 0, (out, exc)
    data: dict[str, Any] = json.loads(out)
    return data


def test_text_output_lists_allowed_and_why_others_were_removed(cfg: Path) -> None:
    code, out, exc = invoke(cfg, "--agent", "work")
    assert code == 0, (out, exc)
    assert "agent work (agents.list[1]) · model anthropic/claude-x" in out
    assert "session agent:work:home (main) · sandbox mode non-main → not sandboxed · not a sub-agent" in out
    assert (
        "allowed (11): read, write, edit, apply_patch, ls, glob, sessions_list, sessions_history, sessions_send, sessions_spawn, session_status"
        in out
    )
    assert "not implemented by clawmesh yet" in out and "memory_search" in out
    lines = [" ".join(line.split()) for line in out.splitlines()]
    assert "exec agents.list[1].tools.deny group:runtime" in lines
    assert "browser agents.list[1].tools.profile not in profile 'coding'" in lines
    assert "warning: agents.list[1].tools.deny: 'nosuch' matches no known tool" in lines


def test_json_output(cfg: Path) -> None:
    data = explain_json(cfg, "--agent", "work")
    assert data["agent"] == "work" and data["session"] == "agent:work:home" and data["mainSession"]
    assert data["sandboxMode"] == "non-main" and data["sandboxed"] is False and data["subagent"] is False
    assert "exec" not in data["allowed"] and "read" in data["allowed"]
    assert "memory_search" in data["notImplemented"] and "apply_patch" not in data["notImplemented"]
    assert {"tool": "exec", "stage": "agents.list[1].tools.deny", "rule": "group:runtime"} in data["removed"]
    assert data["warnings"] == ["agents.list[1].tools.deny: 'nosuch' matches no known tool"]


@pytest.mark.parametrize(
    ("agent", "session", "sandboxed", "subagent"),
    [
        ("main", None, False, False),  # default: the main session
        ("main", "agent:main:home", False, False),  # session.mainKey is honoured
        ("main", "home", False, False),  # a bare key is the agent's
        ("main", "agent:main:main", True, False),  # not the main key (mainKey is "home")
        ("main", "agent:main:discord:group:42", True, False),
        ("main", "AGENT:Main:Telegram:Direct:7", True, False),  # keys compare lower-cased
        ("main", "agent:main:subagent:abc", True, True),
        ("open", "agent:open:discord:group:42", False, False),  # the agent's mode overrides defaults
        ("open", "agent:open:subagent:abc", False, True),
        ("boxed", None, True, False),  # mode all: even the main session
    ],
)
def test_session_decides_sandboxed_and_subagent(
    cfg: Path, agent: str, session: str | None, sandboxed: bool, subagent: bool
) -> None:
    data = explain_json(cfg, "--agent", agent, *(["--session", session] if session else []))
    assert (data["sandboxed"], data["subagent"]) == (sandboxed, subagent)
    assert ("browser" in data["allowed"]) is not sandboxed
    assert ("sessions_send" in data["allowed"]) is not subagent


def test_subagent_depth_from_key(cfg: Path) -> None:
    data = explain_json(cfg, "--agent", "main", "--session", "agent:main:subagent:a:subagent:b")
    assert data["spawnDepth"] == 2 and "sessions_spawn" in data["allowed"]
    data = explain_json(cfg, "--agent", "main", "--session", "agent:main" + ":subagent:x" * 5)
    assert data["spawnDepth"] == 5 and "sessions_spawn" not in data["allowed"]


def test_flags_override_the_session(cfg: Path) -> None:
    data = explain_json(cfg, "--agent", "main", "--session", "agent:main:discord:group:42", "--no-sandboxed")
    assert data["sandboxed"] is False and "browser" in data["allowed"]
    data = explain_json(cfg, "--agent", "open", "--sandboxed", "--subagent")
    assert data["sandboxed"] is True and data["subagent"] is True and data["spawnDepth"] == 1
    assert {"tool": "browser", "stage": "sandbox defaults (deny)", "rule": "browser"} in data["removed"]
    assert {"tool": "session_status", "stage": "sub-agent defaults (deny)", "rule": "session_status"} in data[
        "removed"
    ]


def test_model_selects_by_provider(cfg: Path) -> None:
    assert "web_search" in explain_json(cfg, "--agent", "main")["allowed"]
    data = explain_json(cfg, "--agent", "main", "--model", "openai/gpt-5")
    assert data["model"] == "openai/gpt-5" and "web_search" not in data["allowed"]
    assert {"tool": "web_fetch", "stage": "tools.byProvider.openai.deny", "rule": "web_*"} in data["removed"]


@pytest.mark.parametrize(
    ("args", "message", "code"),
    [
        (["--agent", "zed"], "unknown agent 'zed' (configured: main, work, open, boxed)", 1),
        (["--agent", "main", "--session", "agent:work:home"], "belongs to agent 'work', not 'main'", 2),
        (["--agent", "main", "--session", "agent:main:"], "malformed session key", 2),
    ],
)
def test_errors(cfg: Path, args: list[str], message: str, code: int) -> None:
    rc, _, exc = invoke(cfg, *args)
    assert rc == 1 and isinstance(exc, CliError)  # main() turns CliError into one line + exc.code
    assert message in str(exc) and exc.code == code


# --- as a subprocess (needs `tools` registered in clawmesh/cli/_app.py) ---------------------

REGISTERED = "tools" in _app.COMMANDS
needs_registration = pytest.mark.skipif(
    not REGISTERED, reason="`clawmesh tools` is not registered in clawmesh/cli/_app.py yet"
)


def run(cfg: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HOME": str(cfg.parent), "NO_COLOR": "1", "COLUMNS": "200"}
    env.pop("CLAWMESH_CONFIG_PATH", None)
    env.pop("CLAWMESH_STATE_DIR", None)
    cmd = [sys.executable, "-m", "clawmesh_gateway", "--config", str(cfg), "tools", "explain", *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)


@needs_registration
def test_subprocess_explain(cfg: Path) -> None:
    res = run(cfg, "--agent", "work", "--session", "agent:work:discord:group:1")
    assert res.returncode == 0, res.stderr
    assert (
        "sandboxed" in res.stdout
        and "allowed (11): read, write, edit, apply_patch, ls, glob, sessions_list, sessions_history, sessions_send, sessions_spawn, session_status"
        in res.stdout
    )
    lines = [" ".join(line.split()) for line in res.stdout.splitlines()]
    assert "exec agents.list[1].tools.deny group:runtime" in lines
    res = run(cfg, "--agent", "main", "--session", "agent:main:subagent:x", "--json")
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout)
    assert data["sandboxed"] and data["subagent"] and "sessions_send" not in data["allowed"]


@needs_registration
def test_subprocess_errors_are_one_line(cfg: Path) -> None:
    res = run(cfg, "--agent", "zed")
    assert res.returncode == 1
    assert res.stderr.strip() == "error: unknown agent 'zed' (configured: main, work, open, boxed)"
    res = run(cfg, "--agent", "main", "--session", "agent:work:home")
    assert res.returncode == 2 and "Traceback" not in res.stderr
    res = run(cfg)  # --agent is required
    assert res.returncode == 2 and "Traceback" not in res.stderr
