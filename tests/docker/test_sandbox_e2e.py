"""Sandboxed tool calls through the whole pipeline: model → runner → node-agent → Docker."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import docker
import pytest

from tests.fakes.models import FakeModelServer, Text, ToolCall
from tests.fixtures.gateway import Gateway, ServiceProcess, run_gateway, wait_until
from tests.fixtures.sse import sse_events

pytestmark = pytest.mark.docker

IMAGE = "clawmesh-testbox:latest"


def _config(fake: FakeModelServer, tmp_path: Path, prefix: str, **sandbox: Any) -> dict[str, Any]:
    return {
        "agents": {
            "defaults": {
                "model": "openai/fake-model",
                "sandbox": {
                    "mode": "all",
                    "scope": "agent",
                    "workspaceAccess": "rw",
                    **sandbox,
                    "docker": {"image": IMAGE, "containerPrefix": prefix, **sandbox.get("docker", {})},
                },
            },
            "list": [{"id": "main", "default": True, "workspace": str(tmp_path / "ws")}],
        },
        "models": {"providers": {"openai": {"baseUrl": fake.base_url + "/v1", "apiKey": "sk-test"}}},
        "nodes": {"heartbeatSeconds": 0.5},
    }


@pytest.fixture
def prefix(tmp_path: Path) -> Any:
    name = f"cmtest-{tmp_path.name[-12:].lower().replace('_', '-')}-"
    yield name
    client = docker.from_env()
    for c in client.containers.list(all=True, filters={"label": "clawmesh.sandbox=1"}):
        if c.name.startswith(name):
            c.remove(force=True)
    client.close()


@pytest.fixture
async def fake() -> AsyncIterator[FakeModelServer]:
    async with FakeModelServer() as server:
        yield server


async def _turn(gw: Gateway, text: str) -> list[tuple[str, dict[str, Any]]]:
    async with gw.client(timeout=120) as http:
        r = await http.post("/v1/messages", json={"text": text}, headers={"Accept": "text/event-stream"})
        assert r.status_code == 200
    return sse_events(r.text)


async def test_exec_runs_locked_down_inside_the_sandbox(
    fake: FakeModelServer, nats_url: str, tmp_path: Path, prefix: str
) -> None:
    probe = "ls /sys/class/net; grep -E 'CapEff|NoNewPrivs' /proc/self/status; touch /etc/x || echo RO-ROOT; cat note.txt"
    fake.script(
        ToolCall("write", {"path": "note.txt", "content": "from the file tool"}),
        ToolCall("exec", {"command": probe}),
        Text("checked"),
    )
    config = _config(fake, tmp_path, prefix, docker={"pidsLimit": 64, "memory": "128m"})
    async with run_gateway(
        nats_url, config, tmp_path, services=("ingress", "router", "runner", "node-agent")
    ) as gw:
        events = await _turn(gw, "probe the sandbox")
        results = [d for e, d in events if e == "tool_result"]
        assert not results[0].get("isError"), results[0]
        out = results[1]["content"]
        assert out.splitlines()[0] == "lo" and "eth0" not in out
        assert "CapEff:\t0000000000000000" in out and "NoNewPrivs:\t1" in out
        assert "RO-ROOT" in out and "from the file tool" in out
        assert events[-1][1]["text"] == "checked"
        client = docker.from_env()
        containers = [
            c
            for c in client.containers.list(filters={"label": "clawmesh.sandbox=1"})
            if c.name.startswith(prefix)
        ]
        assert len(containers) == 1
        host = containers[0].attrs["HostConfig"]
        assert host["NetworkMode"] == "none" and host["ReadonlyRootfs"] and host["CapDrop"] == ["ALL"]
        assert "no-new-privileges" in " ".join(host["SecurityOpt"]) and host["PidsLimit"] == 64
        client.close()
        # the CLI lists it through the node-agent (in this process: run the CLI off the event
        # loop so the node-agent can answer), and recreate removes it
        cli = [sys.executable, "-m", "clawmesh_gateway", "--config", str(gw.config_path)]
        listed = await asyncio.to_thread(
            subprocess.run,
            [*cli, "sandbox", "list", "--json", "--nats-url", nats_url],
            capture_output=True,
            text=True,
            env=gw.env,
            timeout=60,
        )
        assert listed.returncode == 0, listed.stderr
        rows = json.loads(listed.stdout)
        assert [r["agentId"] for r in rows if r["name"].startswith(prefix)] == ["main"]
        explained = await asyncio.to_thread(
            subprocess.run,
            [*cli, "sandbox", "explain", "--agent", "main", "--json", "--nats-url", nats_url],
            capture_output=True,
            text=True,
            env=gw.env,
            timeout=60,
        )
        assert (
            json.loads(explained.stdout)["sandboxed"] is True
            and json.loads(explained.stdout)["placement"]["node"] == "local"
        )
        removed = await asyncio.to_thread(
            subprocess.run,
            [*cli, "sandbox", "recreate", "--agent", "main", "--nats-url", nats_url],
            capture_output=True,
            text=True,
            env=gw.env,
            timeout=60,
        )
        assert removed.returncode == 0 and "removed 1" in removed.stdout


async def test_docker_unreachable_fails_the_tool_and_nothing_runs_on_the_host(
    fake: FakeModelServer, nats_url: str, tmp_path: Path, prefix: str
) -> None:
    marker = tmp_path / "ran-on-host"
    fake.script(ToolCall("exec", {"command": f"touch {marker}"}), Text("could not"))
    config = _config(fake, tmp_path, prefix)
    async with run_gateway(nats_url, config, tmp_path, services=("ingress", "router", "runner")) as gw:
        env = {**gw.env, "DOCKER_HOST": "unix:///nonexistent/docker.sock"}
        node = ServiceProcess(
            "node-agent", gw.config_path, nats_url, env, tmp_path / "node.log", "--node-id", "local"
        )
        try:
            import nats

            from clawmesh.nodes import NodeDirectory

            nc = await nats.connect(nats_url)
            directory = NodeDirectory(await nc.jetstream().key_value("cm_nodes"), cache_seconds=0)
            online = await wait_until(lambda: directory.statuses(), timeout=30, message="node online")
            assert "sandbox" not in online[0].node.capabilities and "not reachable" in online[0].node.docker
            await nc.close()
            events = await _turn(gw, "try")
        finally:
            node.kill()
    result = next(d for e, d in events if e == "tool_result")
    assert (
        result["isError"]
        and "SANDBOX_UNAVAILABLE" in result["content"]
        and "refusing to run on the host" in result["content"]
    )
    assert not marker.exists()
    assert events[-1][1]["text"] == "could not"


async def test_failing_docker_fails_exec_and_file_tools_and_nothing_runs_on_the_host(
    fake: FakeModelServer, nats_url: str, tmp_path: Path, prefix: str
) -> None:
    """The engine is there (the node offers sandboxes) but cannot make the sandbox (its image
    is missing): a `SandboxError`, never a fallback to the host, for exec and file tools."""
    marker = tmp_path / "ran-on-host"
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "secret.txt").write_text("host only")
    fake.script(
        ToolCall("exec", {"command": f"touch {marker}"}),
        ToolCall("write", {"path": "note.txt", "content": "x"}),
        ToolCall("read", {"path": "secret.txt"}),
        Text("could not"),
    )
    config = _config(fake, tmp_path, prefix, docker={"image": "clawmesh-no-such-image:never"})
    async with run_gateway(
        nats_url, config, tmp_path, services=("ingress", "router", "runner", "node-agent")
    ) as gw:
        events = await _turn(gw, "try")
    results = [d for e, d in events if e == "tool_result"]
    assert [r["name"] for r in results] == ["exec", "write", "read"]
    for result in results:
        assert result["isError"] and "SANDBOX_ERROR" in result["content"], result
        assert "clawmesh-no-such-image:never" in result["content"], result
        assert "host only" not in result["content"], result
    assert not marker.exists() and sorted(p.name for p in ws.iterdir()) == ["secret.txt"]
    assert events[-1][1]["text"] == "could not"


async def test_non_main_mode_sandboxes_only_other_sessions(
    fake: FakeModelServer, nats_url: str, tmp_path: Path, prefix: str
) -> None:
    fake.script(ToolCall("exec", {"command": "ls /sys/class/net | wc -l; hostname"}), Text("main"))
    fake.script(ToolCall("exec", {"command": "ls /sys/class/net | wc -l; hostname"}), Text("group"))
    config = _config(fake, tmp_path, prefix, mode="non-main")
    async with (
        run_gateway(nats_url, config, tmp_path, services=("ingress", "router", "runner", "node-agent")) as gw,
        gw.client(timeout=120) as http,
    ):
        main = await http.post(
            "/v1/messages",
            json={"text": "x", "peer": {"kind": "direct", "id": "me"}},
            headers={"Accept": "text/event-stream"},
        )
        group = await http.post(
            "/v1/messages",
            json={"text": "x", "peer": {"kind": "group", "id": "team"}},
            headers={"Accept": "text/event-stream"},
        )
    main_out = next(d for e, d in sse_events(main.text) if e == "tool_result")["content"]
    group_out = next(d for e, d in sse_events(group.text) if e == "tool_result")["content"]
    import socket

    assert socket.gethostname() in main_out  # the main session ran on the node itself
    assert (
        group_out.splitlines()[0].strip() == "1" and socket.gethostname() not in group_out
    )  # only lo, in a container


async def test_a_chat_file_is_staged_where_the_sandboxed_agent_sees_it(
    fake: FakeModelServer, nats_url: str, tmp_path: Path, prefix: str
) -> None:
    """A document sent on Telegram to an agent whose sessions are sandboxed with a workspace of
    their own (`workspaceAccess: none`) lands in the sandbox's workspace, where its exec finds it
    by the note's path; the agent's own workspace stays untouched."""
    from tests.fakes.telegram import FakeTelegram

    fake.script(
        ToolCall("exec", {"command": "cat media/inbound/openclaw-staged-*/input-notes.txt"}),
        Text("read it"),
    )
    config = _config(fake, tmp_path, prefix, workspaceAccess="none")
    async with FakeTelegram() as tg:
        bot = tg.add_bot("7001:sandbox")
        config["channels"] = {
            "telegram": {
                "botToken": "7001:sandbox",
                "apiRoot": tg.api_root,
                "dmPolicy": "open",
                "allowFrom": ["*"],
            }
        }
        async with run_gateway(
            nats_url, config, tmp_path, services=("ingress", "router", "runner", "node-agent")
        ):
            tg.file_message(
                bot,
                tg.chat(42, "private"),
                user=42,
                field="document",
                data=b"secret plans\n",
                file_name="notes.txt",
            )
            (reply,) = await tg.wait_sent(bot, lambda s: s.chat_id == 42, timeout=120)
    assert reply.text == "read it"
    first = fake.requests[0].last_user_text
    assert first.startswith("[media attached: media/inbound/openclaw-staged-") and '"notes.txt"]' in first
    (result,) = fake.requests[-1].tool_results
    assert "secret plans" in result.content, result.content
    assert not list((tmp_path / "ws").glob("media/inbound/*/input-notes.txt"))
