"""OpenClaw's exec modes end to end (real nats-server, node-agent, runner, ingress): `deny` and
allowlist misses come back to the model as tool errors, `ask` waits for an operator who answers
through the HTTP API or `clawmesh approvals`, and the approved command runs exactly once;
allow-always extends the node's exec-approvals.json; a node-agent running as root runs host
commands as an unprivileged user."""

from __future__ import annotations

import asyncio
import functools
import json
import os
import stat
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.models import FakeModelServer, Text, ToolCall
from tests.fixtures.gateway import Gateway, run_gateway, wait_until
from tests.fixtures.sse import sse_events

SERVICES = ("ingress", "router", "runner", "node-agent")
Events = list[tuple[str, dict[str, Any]]]


@pytest.fixture
async def fake() -> AsyncIterator[FakeModelServer]:
    async with FakeModelServer() as server:
        yield server


def _config(fake: FakeModelServer, tmp_path: Path, exec_: dict[str, Any], **extra: Any) -> dict[str, Any]:
    workspace = tmp_path / "ws"
    workspace.mkdir(exist_ok=True)
    workspace.chmod(0o777)  # host commands may run as `nobody` (tests run as root)
    return {
        "agents": {
            "defaults": {"model": "openai/fake-model"},
            "list": [{"id": "main", "default": True, "workspace": str(workspace)}],
        },
        "models": {"providers": {"openai": {"baseUrl": fake.base_url + "/v1", "apiKey": "sk-test"}}},
        "nodes": {"heartbeatSeconds": 0.5},
        "tools": {"exec": exec_},
        **extra,
    }


async def _turn(gw: Gateway, text: str) -> Events:
    async with gw.client(timeout=120) as http:
        r = await http.post(
            "/v1/messages",
            json={"text": text, "peer": {"kind": "direct", "id": "dev"}},
            headers={"Accept": "text/event-stream"},
        )
        assert r.status_code == 200
    return sse_events(r.text)


def _result(events: Events) -> dict[str, Any]:
    return next(d for e, d in events if e == "tool_result")


async def _pending(gw: Gateway) -> dict[str, Any]:
    async def one() -> dict[str, Any] | None:
        async with gw.client() as http:
            r = await http.get("/v1/approvals")
        assert r.status_code == 200
        items = r.json()["approvals"]
        return items[0] if items else None

    found: dict[str, Any] = await wait_until(one, timeout=60, message="a pending approval")
    return found


def _cli(gw: Gateway, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "clawmesh_gateway", "--config", str(gw.config_path), "approvals", *args]
    return subprocess.run(
        [*cmd, "--nats-url", gw.nats_url], capture_output=True, text=True, env=gw.env, timeout=60
    )


async def test_deny_mode_refuses_and_the_model_gets_a_tool_error(
    fake: FakeModelServer, nats_url: str, tmp_path: Path
) -> None:
    fake.script(ToolCall("exec", {"command": "touch made-it"}), Text("could not"))
    async with run_gateway(
        nats_url, _config(fake, tmp_path, {"mode": "deny"}), tmp_path, services=SERVICES
    ) as gw:
        events = await _turn(gw, "try")
    result = _result(events)
    assert (
        result["isError"]
        and result["content"].startswith("EXEC_DENIED:")
        and "security=deny" in result["content"]
    )
    assert not (tmp_path / "ws" / "made-it").exists()
    sent_back = [m for m in fake.requests[-1].messages if m["role"] == "tool"]
    assert "EXEC_DENIED" in sent_back[0]["content"]


async def test_allowlist_runs_matches_and_safe_bins_and_refuses_misses(
    fake: FakeModelServer, nats_url: str, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    state.mkdir()
    doc = {"version": 1, "agents": {"main": {"allowlist": [{"pattern": "printf"}]}}}
    (state / "exec-approvals.json").write_text(json.dumps(doc))
    fake.script(ToolCall("exec", {"command": "printf 'a\\nb\\n' | wc -l"}), Text("counted"))
    fake.script(ToolCall("exec", {"command": "touch made-it"}), Text("refused"))
    async with run_gateway(
        nats_url, _config(fake, tmp_path, {"mode": "allowlist"}), tmp_path, services=SERVICES
    ) as gw:
        allowed = _result(await _turn(gw, "count"))
        refused = _result(await _turn(gw, "touch"))
    assert not allowed.get("isError") and allowed["content"].startswith("2\n")
    assert refused["isError"] and "not on the allowlist" in refused["content"]
    assert not (tmp_path / "ws" / "made-it").exists()


async def test_ask_approved_over_http_runs_the_command_once(
    fake: FakeModelServer, nats_url: str, tmp_path: Path
) -> None:
    fake.script(ToolCall("exec", {"command": "echo ran >> count.txt"}), Text("done"))
    async with run_gateway(
        nats_url, _config(fake, tmp_path, {"mode": "ask"}), tmp_path, services=SERVICES
    ) as gw:
        turn = asyncio.create_task(_turn(gw, "append"))
        pending = await _pending(gw)
        assert pending["agentId"] == "main" and pending["command"] == "echo ran >> count.txt"
        assert pending["status"] == "pending" and pending["node"] == "local"
        assert not (tmp_path / "ws" / "count.txt").exists()  # nothing runs before the decision
        async with gw.client() as http:
            ok = await http.post(f"/v1/approvals/{pending['id']}/approve")
            again = await http.post(f"/v1/approvals/{pending['id']}/deny")
            unknown = await http.post("/v1/approvals/0123456789abcdef/approve")
            bad = await http.post("/v1/approvals/..%2F..%2Fx/approve")
            unauthorized = await http.get("/v1/approvals", headers={"Authorization": "Bearer wrong"})
        events = await turn
    assert ok.status_code == 200 and ok.json()["status"] == "allow-once" and ok.json()["resolvedBy"] == "http"
    assert again.status_code == 409 and again.json()["error"]["code"] == "conflict"
    assert unknown.status_code == 404
    assert bad.status_code in (400, 404)
    assert unauthorized.status_code == 401
    result = _result(events)
    assert not result.get("isError") and "[exit code 0]" in result["content"]
    assert (tmp_path / "ws" / "count.txt").read_text() == "ran\n"  # once
    names = [e for e, _ in events]
    assert (
        names.index("exec.approval.requested")
        < names.index("exec.approval.resolved")
        < names.index("tool_result")
    )
    requested = next(d for e, d in events if e == "exec.approval.requested")
    resolved = next(d for e, d in events if e == "exec.approval.resolved")
    assert requested["approvalId"] == resolved["approvalId"] == pending["id"]
    assert resolved["decision"] == "allow-once"


async def test_cli_approve_always_persists_and_deny_refuses(
    fake: FakeModelServer, nats_url: str, tmp_path: Path
) -> None:
    fake.script(ToolCall("exec", {"command": "id -u"}), Text("first"))
    fake.script(ToolCall("exec", {"command": "id -u"}), Text("second"))
    fake.script(ToolCall("exec", {"command": "touch denied"}), Text("third"))
    config = _config(fake, tmp_path, {"mode": "ask"})
    async with run_gateway(nats_url, config, tmp_path, services=SERVICES) as gw:
        # the first turn through `clawmesh send`: it tells the person at the terminal what to run
        send = [sys.executable, "-m", "clawmesh_gateway", "--config", str(gw.config_path), "send"]
        run = functools.partial(subprocess.run, capture_output=True, text=True, env=gw.env, timeout=120)
        sent = asyncio.create_task(asyncio.to_thread(run, [*send, "--url", gw.url, "who am i"]))
        pending = await _pending(gw)
        approved_id = pending["id"]
        listed = await asyncio.to_thread(_cli, gw, "list", "--json")
        assert listed.returncode == 0, listed.stderr
        assert [a["id"] for a in json.loads(listed.stdout)] == [approved_id]
        approved = await asyncio.to_thread(_cli, gw, "approve", approved_id, "--always")
        assert approved.returncode == 0 and "allow-always" in approved.stdout, approved.stderr
        said = await sent
        # the same command again: on the allowlist now, no approval asked
        second = await _turn(gw, "who am i again")
        turn = asyncio.create_task(_turn(gw, "touch"))
        pending = await _pending(gw)
        denied = await asyncio.to_thread(_cli, gw, "deny", pending["id"])
        assert denied.returncode == 0, denied.stderr
        third = await turn
        twice = await asyncio.to_thread(_cli, gw, "deny", pending["id"])
    assert said.returncode == 0 and said.stdout.strip() == "first", said.stderr
    assert f"waits for approval: clawmesh approvals approve {approved_id}" in said.stderr
    assert f"approval {approved_id}: allow-always" in said.stderr
    # what the model got back from the approved run
    [output] = [m["content"] for m in fake.requests[1].messages if m["role"] == "tool"]
    assert "[exit code 0]" in output
    if os.geteuid() == 0:  # the node-agent runs as root here: the command did not
        assert output.split("\n")[0] != "0"
    assert not _result(second).get("isError") and "exec.approval.requested" not in [e for e, _ in second]
    path = tmp_path / "state" / "exec-approvals.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    entries = json.loads(path.read_text())["agents"]["main"]["allowlist"]
    assert len(entries) == 1 and entries[0]["source"] == "allow-always"
    assert entries[0]["pattern"].endswith("/id")
    result = _result(third)
    assert result["isError"] and result["content"].startswith("APPROVAL_DENIED:")
    assert not (tmp_path / "ws" / "denied").exists()
    assert twice.returncode != 0 and "already deny" in twice.stderr


async def test_no_decision_in_time_refuses_the_command(
    fake: FakeModelServer, nats_url: str, tmp_path: Path
) -> None:
    fake.script(ToolCall("exec", {"command": "touch late"}), Text("gave up"))
    exec_ = {"mode": "ask", "approvalTimeoutSeconds": 1}
    async with run_gateway(nats_url, _config(fake, tmp_path, exec_), tmp_path, services=SERVICES) as gw:
        events = await _turn(gw, "try")
        async with gw.client() as http:
            everything = (await http.get("/v1/approvals?all=1")).json()["approvals"]
    result = _result(events)
    assert result["isError"] and result["content"].startswith("APPROVAL_TIMEOUT:")
    assert [a["status"] for a in everything] == ["expired"]
    assert not (tmp_path / "ws" / "late").exists()
    resolved = next(d for e, d in events if e == "exec.approval.resolved")
    assert resolved["decision"] == "expired"


@pytest.mark.skipif(os.geteuid() != 0, reason="privilege drop needs a node-agent running as root")
@pytest.mark.parametrize(("exec_", "root"), [({}, False), ({"allowRoot": True}, True)])
async def test_a_root_node_agent_runs_host_commands_unprivileged_unless_allowed(
    fake: FakeModelServer, nats_url: str, tmp_path: Path, exec_: dict[str, Any], root: bool
) -> None:
    fake.script(ToolCall("exec", {"argv": ["id", "-u"]}), Text("ok"))
    async with run_gateway(nats_url, _config(fake, tmp_path, exec_), tmp_path, services=SERVICES) as gw:
        result = _result(await _turn(gw, "whoami"))
    uid = int(result["content"].split("\n")[0])
    assert (uid == 0) is root


async def test_status_names_the_agents_that_run_host_commands_unapproved(
    fake: FakeModelServer, nats_url: str, tmp_path: Path
) -> None:
    config = _config(fake, tmp_path, {"mode": "ask"})
    config["agents"]["list"].append({"id": "ops", "tools": {"exec": {"mode": "full"}}})
    async with run_gateway(nats_url, config, tmp_path, services=("ingress",)) as gw:
        cmd = [sys.executable, "-m", "clawmesh_gateway", "--config", str(gw.config_path), "status"]
        as_json = await asyncio.to_thread(
            subprocess.run,
            [*cmd, "--json", "--nats-url", nats_url],
            capture_output=True,
            text=True,
            env=gw.env,
            timeout=60,
        )
        text = await asyncio.to_thread(
            subprocess.run,
            [*cmd, "--nats-url", nats_url],
            capture_output=True,
            text=True,
            env=gw.env,
            timeout=60,
        )
    assert as_json.returncode == 0, as_json.stderr
    unapproved = json.loads(as_json.stdout)["hostExec"]["unapproved"]
    assert [u["agentId"] for u in unapproved] == ["ops"]
    assert text.returncode == 0 and "UNAPPROVED host commands: ops (as " in text.stdout


async def test_an_allowlisted_command_cannot_smuggle_code_through_env_or_the_profile(
    fake: FakeModelServer, nats_url: str, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    state.mkdir()
    doc = {"version": 1, "agents": {"main": {"allowlist": [{"pattern": "printf"}]}}}
    (state / "exec-approvals.json").write_text(json.dumps(doc))
    # root keeps the profile readable (tests' temporary directories are private to root)
    config = _config(fake, tmp_path, {"mode": "allowlist", "allowRoot": True})
    # HOME is the workspace: a login shell would source this before the allowlisted command
    (tmp_path / "ws" / ".profile").write_text("touch pwned\n")
    fake.script(ToolCall("exec", {"command": "printf ok", "env": {"PATH": str(tmp_path / "ws")}}), Text("no"))
    fake.script(ToolCall("exec", {"command": "printf ok", "env": {"LD_PRELOAD": "/x.so"}}), Text("no"))
    fake.script(ToolCall("exec", {"command": "printf ok"}), Text("yes"))
    async with run_gateway(nats_url, config, tmp_path, services=SERVICES) as gw:
        path = _result(await _turn(gw, "path"))
        preload = _result(await _turn(gw, "preload"))
        plain = _result(await _turn(gw, "plain"))
    assert path["isError"] and path["content"].startswith("INVALID_ARGUMENTS:") and "PATH" in path["content"]
    assert preload["isError"] and "LD_PRELOAD" in preload["content"]
    assert not plain.get("isError") and plain["content"].startswith("ok")
    assert not (tmp_path / "ws" / "pwned").exists(), plain
