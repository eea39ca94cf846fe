"""`POST /tools/invoke` end to end (real nats-server, ingress, router, runner, node-agent): the
runner applies the agent's tool policy as for a model's call plus the HTTP list, and runs the
tool on the node; every refusal is JSON in OpenClaw's shape naming what was wrong."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fixtures.gateway import Gateway, run_gateway

SERVICES = ("ingress", "router", "runner", "node-agent")


def _config(tmp_path: Path, **extra: Any) -> dict[str, Any]:
    for agent in ("main", "work"):
        workspace = tmp_path / "ws" / agent
        workspace.mkdir(parents=True, exist_ok=True)
        workspace.chmod(0o777)  # host commands may run as `nobody` (tests run as root)
    (tmp_path / "ws" / "main" / "note.txt").write_text("hello from main\n")
    return {
        "agents": {
            "list": [
                {"id": "main", "default": True, "workspace": str(tmp_path / "ws" / "main")},
                {
                    "id": "work",
                    "workspace": str(tmp_path / "ws" / "work"),
                    "tools": {"deny": ["read"], "exec": {"mode": "deny"}},
                },
            ]
        },
        "tools": {"profile": "coding"},
        "gateway": {"tools": {"allow": ["read", "ls", "exec"]}},
        "nodes": {"heartbeatSeconds": 0.5},
        **extra,
    }


@pytest.fixture
async def gw(nats_url: str, tmp_path: Path) -> AsyncIterator[Gateway]:
    async with run_gateway(nats_url, _config(tmp_path), tmp_path, services=SERVICES) as gateway:
        yield gateway


async def _invoke(gw: Gateway, body: Any, **headers: str) -> httpx.Response:
    async with gw.client() as http:
        return await http.post("/tools/invoke", json=body, headers=headers)


async def test_an_allowed_tool_runs_on_the_agents_node(gw: Gateway) -> None:
    r = await _invoke(gw, {"tool": "read", "args": {"path": "note.txt"}})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["ok"] is True
    [part] = body["result"]["content"]
    assert part["type"] == "text" and "hello from main" in part["text"]
    assert body["result"]["details"]["node"] == "local"
    # `name` wins over `tool`; `sessionKey: "main"` is the default agent's main session
    r = await _invoke(gw, {"tool": "exec", "name": "ls", "args": {}, "sessionKey": "main"})
    assert r.status_code == 200 and "note.txt" in r.json()["result"]["content"][0]["text"]


async def test_exec_runs_when_gateway_tools_allow_lifts_the_http_deny(gw: Gateway) -> None:
    r = await _invoke(gw, {"tool": "exec", "args": {"command": "echo from-http"}})
    assert r.status_code == 200, r.text
    result = r.json()["result"]
    assert "from-http" in result["content"][0]["text"] and result["details"]["exitCode"] == 0


async def test_the_agents_policy_refuses_as_for_a_model(gw: Gateway) -> None:
    # work's tools.deny removes read, in any of its sessions
    for body in (
        {"tool": "read", "agentId": "work", "args": {"path": "x"}},
        {"tool": "read", "sessionKey": "agent:work:main", "args": {"path": "x"}},
    ):
        r = await _invoke(gw, body)
        assert r.status_code == 404, r.text
        assert r.json() == {
            "ok": False,
            "error": {"type": "not_found", "message": "Tool not available: read"},
        }
    # the sessions_* tools run inside a turn; over HTTP they are not available (yet), never a crash
    r = await _invoke(gw, {"tool": "sessions_list", "args": {}})
    assert r.status_code == 404 and r.json()["error"]["message"] == "Tool not available: sessions_list", (
        r.text
    )
    # write is a coding tool the HTTP surface does not offer unless gateway.tools.allow names it
    r = await _invoke(gw, {"tool": "write", "args": {"path": "x", "content": "y"}})
    assert r.status_code == 404 and r.json()["error"]["message"] == "Tool not available: write"
    # work's exec mode is deny: the node refuses, which is a policy block (403)
    r = await _invoke(gw, {"tool": "exec", "agentId": "work", "args": {"command": "id"}})
    assert r.status_code == 403, r.text
    error = r.json()["error"]
    assert error["type"] == "tool_call_blocked" and error["code"] == "EXEC_DENIED"
    assert error["requiresApproval"] is False


async def test_bad_arguments_and_targets_are_400_naming_what_is_wrong(gw: Gateway) -> None:
    r = await _invoke(gw, {"tool": "read", "args": {"path": 5}})
    assert r.status_code == 400
    error = r.json()["error"]
    assert error["type"] == "tool_error" and "path" in error["message"]
    r = await _invoke(gw, {"tool": "read", "args": {"path": "../../etc/passwd"}})
    assert r.status_code == 400 and r.json()["error"]["code"] == "OUTSIDE_WORKSPACE"
    r = await _invoke(gw, {"tool": "read", "sessionKey": "x" * 600})
    assert r.status_code == 400 and "sessionKey" in r.json()["error"]["message"]
    r = await _invoke(gw, {"tool": "read", "agentId": "nosuch"})
    assert r.json() == {
        "ok": False,
        "error": {"type": "invalid_request", "message": 'Unknown agent id "nosuch"'},
    }
    r = await _invoke(gw, {"tool": "read"}, **{"x-openclaw-account-id": "a" * 300})
    assert r.status_code == 400 and "x-openclaw-account-id" in r.json()["error"]["message"]
    async with gw.client() as http:
        r = await http.post("/tools/invoke", content=b"[1, 2")
        assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
        r = await http.post("/tools/invoke", json={"tool": "read"}, headers={"Authorization": "Bearer nope"})
        assert r.status_code == 401
        assert r.json() == {"error": {"message": "Unauthorized", "type": "unauthorized"}}


async def test_without_a_runner_the_caller_is_told_to_retry(nats_url: str, tmp_path: Path) -> None:
    async with run_gateway(nats_url, _config(tmp_path), tmp_path, services=("ingress",)) as gw:
        r = await _invoke(gw, {"tool": "read", "args": {"path": "note.txt"}})
    assert r.status_code == 503 and r.headers["retry-after"]
    assert r.json()["error"]["type"] == "unavailable"
