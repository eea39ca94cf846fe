"""The `clawmesh` command, run as a subprocess like a user would."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import json5
import pytest

CLAWMESH = [sys.executable, "-m", "clawmesh_gateway"]


def run(
    *args: str, home: Path, input_: str | None = None, config: Path | None = None
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HOME": str(home), "NO_COLOR": "1", "COLUMNS": "200"}
    env.pop("CLAWMESH_CONFIG_PATH", None)
    env.pop("CLAWMESH_STATE_DIR", None)
    cmd = [*CLAWMESH, *(["--config", str(config)] if config else []), *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, input=input_, timeout=60)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path


def test_help_for_every_command(home: Path) -> None:
    for args in (
        ["--help"],
        ["config", "--help"],
        ["agents", "--help"],
        ["agents", "add", "--help"],
        ["route", "--help"],
    ):
        res = run(*args, home=home)
        assert res.returncode == 0, res.stderr
        assert "Usage:" in res.stdout


def test_validate_reports_every_error_and_exits_1(home: Path) -> None:
    cfg = home / "bad.json5"
    cfg.write_text('{ bindigs: [], agents: { list: [ {id: "a"}, {id: "A"} ] }, gateway: { port: "x" } }')
    res = run("config", "validate", home=home, config=cfg)
    assert res.returncode == 1
    assert "unknown key 'bindigs' at $ — did you mean 'bindings'?" in res.stderr
    assert "$.gateway.port: expected an integer, got a string" in res.stderr
    assert "Traceback" not in res.stderr


def test_validate_ok_lists_warnings(home: Path) -> None:
    cfg = home / "ok.json"
    cfg.write_text(json.dumps({"meta": {}, "agents": {"list": [{"id": "a", "model": "echo/x"}]}}))
    res = run("config", "validate", home=home, config=cfg)
    assert res.returncode == 0, res.stderr
    assert "config OK" in res.stdout and "warning: $.meta" in res.stdout


def test_validate_prints_warnings_with_errors_and_json_like_openclaw(home: Path) -> None:
    cfg = home / "mixed.json5"
    cfg.write_text('{ meta: {}, gateway: { port: "x" } }')
    res = run("config", "validate", home=home, config=cfg)
    assert res.returncode == 1
    assert "$.gateway.port: expected an integer" in res.stderr
    assert "warning: $.meta: accepted, not implemented by clawmesh" in res.stderr
    res = run("config", "validate", "--json", home=home, config=cfg)
    assert res.returncode == 1
    out = json.loads(res.stdout)
    assert out["valid"] is False and out["path"] == str(cfg)
    assert {
        "path": "gateway.port",
        "message": "expected an integer, got a string",
        "severity": "error",
    } in out["issues"]
    assert {
        "path": "meta",
        "message": "accepted, not implemented by clawmesh; ignored",
        "severity": "warning",
    } in out["issues"]
    cfg.write_text('{ meta: {}, agents: { entries: { a: { model: "echo/x" } } } }')
    out = json.loads(run("config", "validate", "--json", home=home, config=cfg).stdout)
    assert out["valid"] is True
    assert [i["path"] for i in out["issues"]] == ["meta"]


def test_missing_explicit_config_is_an_error(home: Path) -> None:
    res = run("config", "validate", home=home, config=home / "nope.json")
    assert res.returncode == 1 and "config file not found" in res.stderr


def test_show_redacts_secrets(home: Path) -> None:
    cfg = home / "c.json"
    cfg.write_text(
        json.dumps(
            {
                "gateway": {"auth": {"token": "${TOK}"}},
                "models": {"providers": {"x": {"apiKey": "k1", "baseUrl": "http://h"}}},
            }
        )
    )
    env_home = home
    res = subprocess.run(
        [*CLAWMESH, "--config", str(cfg), "config", "show", "--json"],
        env={**os.environ, "HOME": str(env_home), "TOK": "supersecret"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0, res.stderr
    shown = json.loads(res.stdout)
    assert shown["gateway"]["auth"]["token"] == "***"
    assert shown["models"]["providers"]["x"] == {"apiKey": "***", "baseUrl": "http://h"}
    assert "supersecret" not in res.stdout


def test_agents_add_bind_unbind_cycle(home: Path) -> None:
    res = run(
        "agents", "add", "work", "--model", "echo/w", "--bind", "telegram", "--non-interactive", home=home
    )
    assert res.returncode == 0, res.stderr
    path = home / ".clawmesh" / "clawmesh.json"
    data = json.loads(path.read_text())
    assert [a["id"] for a in data["agents"]["list"]] == ["main", "work"]
    assert data["bindings"] == [{"agentId": "work", "match": {"channel": "telegram"}}]
    ws = home / ".clawmesh" / "workspace-work"
    assert {p.name for p in ws.iterdir()} >= {"AGENTS.md", "SOUL.md", "USER.md"}
    assert (home / ".clawmesh" / "agents" / "work" / "agent").is_dir()

    # an explicit account upgrades the channel-only binding in place
    res = run("agents", "bind", "--agent", "work", "--bind", "telegram:biz", home=home)
    assert res.returncode == 0 and "upgraded" in res.stdout
    assert json.loads(path.read_text())["bindings"] == [
        {"agentId": "work", "match": {"channel": "telegram", "accountId": "biz"}}
    ]
    assert (home / ".clawmesh" / "clawmesh.json.bak").exists()

    # conflicts are refused, binding twice is a no-op
    res = run("agents", "bind", "--agent", "main", "--bind", "telegram:biz", home=home)
    assert res.returncode == 1 and "already bound to agent 'work'" in res.stderr
    res = run("agents", "bind", "--agent", "work", "--bind", "telegram:biz", "--bind", "slack:*", home=home)
    assert res.returncode == 0 and "already bound" in res.stdout

    routed = run("route", "--channel", "slack", "--account", "anything", "--json", home=home)
    assert json.loads(routed.stdout)["agentId"] == "work"

    listed = json.loads(run("agents", "list", "--bindings", "--json", home=home).stdout)
    work = next(a for a in listed if a["id"] == "work")
    assert [b["match"] for b in work["bindingRules"]] == ["telegram:biz", "slack:*"]
    assert work["bindings"] == 2  # OpenClaw's count

    res = run("agents", "unbind", "--agent", "work", "--bind", "slack:*", home=home)
    assert res.returncode == 0 and "removed 1" in res.stdout
    res = run("agents", "unbind", "--agent", "work", "--all", home=home)
    assert res.returncode == 0
    assert json.loads(path.read_text())["bindings"] == []


def test_config_edits_keep_the_file_mode(home: Path) -> None:
    """The config holds secrets: a CLI edit must not make a private file world-readable."""
    path = home / ".clawmesh" / "clawmesh.json"
    path.parent.mkdir()
    path.write_text(
        '{ agents: { list: [ {id: "work"} ] }, models: { providers: { x: { apiKey: "s3cret" } } } }'
    )
    for mode in (0o600, 0o640):
        path.chmod(mode)
        res = run("agents", "bind", "--agent", "work", "--bind", f"slack:acct{mode}", home=home)
        assert res.returncode == 0, res.stderr
        assert stat.S_IMODE(path.stat().st_mode) == mode
        assert stat.S_IMODE((home / ".clawmesh" / "clawmesh.json.bak").stat().st_mode) == mode
        assert path.stat().st_uid == os.getuid()
    assert len(json5.loads(path.read_text())["bindings"]) == 2


def test_agents_add_rejects_bad_and_duplicate_ids(home: Path) -> None:
    res = run("agents", "add", "Bad Id!", "--non-interactive", home=home)
    assert res.returncode == 2 and "invalid agent id" in res.stderr
    assert run("agents", "add", "ops", "--non-interactive", home=home).returncode == 0
    res = run("agents", "add", "ops", "--non-interactive", home=home)
    assert res.returncode == 1 and "already exists" in res.stderr


def test_route_explain_and_selection_required(home: Path) -> None:
    cfg = home / "c.json"
    cfg.write_text(
        json.dumps(
            {
                "agents": {"list": [{"id": "a"}, {"id": "b"}]},
                "bindings": [
                    {
                        "agentId": "a",
                        "match": {"channel": "discord", "peer": {"kind": "channel", "id": "ABC"}},
                    }
                ],
            }
        )
    )
    res = run("route", "--channel", "discord", "--peer", "channel:abc", "--explain", home=home, config=cfg)
    assert res.returncode == 1
    assert "ids match case-sensitively" in res.stdout and "AGENT_SELECTION_REQUIRED" in res.stdout
    res = run("route", "--channel", "discord", "--peer", "channel:abc", home=home, config=cfg)
    assert res.returncode == 1 and res.stderr.startswith("error: AGENT_SELECTION_REQUIRED")
    res = run("route", "--channel", "discord", "--peer", "channel:ABC", "--json", home=home, config=cfg)
    assert json.loads(res.stdout)["matchedBy"] == "binding.peer"


def test_bad_arguments_exit_2_without_traceback(home: Path) -> None:
    res = run("route", "--channel", "x", "--peer", "nonsense", home=home)
    assert res.returncode == 2 and "--peer expects kind:id" in res.stderr
    res = run("route", home=home)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    res = run("no-such-command", home=home)
    assert res.returncode == 2
