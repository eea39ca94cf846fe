"""The agent tool loop end to end: a fake model asks for tools, a node-agent runs them, the
results go back to the model. Node pinning with two node-agents, offline nodes, policy."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import nats
import pytest

from clawmesh.nodes import NodeDirectory
from tests.fakes.models import FakeModelServer, Text, ToolCall
from tests.fixtures.gateway import Gateway, ServiceProcess, run_gateway, wait_until
from tests.fixtures.sse import sse_events


def _config(fake: FakeModelServer, tmp_path: Path, **agent: Any) -> dict[str, Any]:
    return {
        "agents": {
            "defaults": {"model": "openai/fake-model"},
            "list": [{"id": "main", "default": True, "workspace": str(tmp_path / "ws"), **agent}],
        },
        "models": {"providers": {"openai": {"baseUrl": fake.base_url + "/v1", "apiKey": "sk-test"}}},
        "nodes": {"heartbeatSeconds": 0.5},
    }


async def _turn(gw: Gateway, text: str) -> list[tuple[str, dict[str, Any]]]:
    async with gw.client() as http:
        r = await http.post(
            "/v1/messages",
            json={"text": text, "peer": {"kind": "direct", "id": "dev"}},
            headers={"Accept": "text/event-stream"},
        )
        assert r.status_code == 200
    return sse_events(r.text)


@pytest.fixture
async def fake() -> AsyncIterator[FakeModelServer]:
    async with FakeModelServer() as server:
        yield server


async def test_model_runs_exec_and_file_tools_on_the_local_node(
    fake: FakeModelServer, nats_url: str, tmp_path: Path
) -> None:
    fake.script(
        ToolCall("write", {"path": "notes/todo.txt", "content": "buy milk\n"}),
        ToolCall("exec", {"command": "cat notes/todo.txt; echo to-stderr >&2; exit 2"}),
        ToolCall("read", {"path": "../../etc/passwd"}),
        Text("all done"),
    )
    config = _config(fake, tmp_path, tools={"profile": "coding"})
    async with run_gateway(
        nats_url, config, tmp_path, services=("ingress", "router", "runner", "node-agent")
    ) as gw:
        events = await _turn(gw, "do the chores")
    calls = [d for e, d in events if e == "tool_call"]
    results = [d for e, d in events if e == "tool_result"]
    assert [c["name"] for c in calls] == ["write", "exec", "read"]
    assert {c.get("node") for c in calls} == {"local"}
    assert not results[0].get("isError") and "wrote 9 bytes" in results[0]["content"]
    assert (
        "buy milk" in results[1]["content"]
        and "to-stderr" in results[1]["content"]
        and "[exit code 2]" in results[1]["content"]
    )
    assert results[2]["isError"] and "outside the agent workspace" in results[2]["content"]
    assert any(e == "tool_output" and "buy milk" in d["text"] for e, d in events)
    assert events[-1] == ("final", events[-1][1]) and events[-1][1]["text"] == "all done"
    assert (tmp_path / "ws" / "notes" / "todo.txt").read_text() == "buy milk\n"
    # every tool result went back to the model
    sent_back = [m for m in fake.requests[-1].messages if m["role"] == "tool"]
    assert len(sent_back) == 3 and "buy milk" in sent_back[1]["content"]
    names = [t["function"]["name"] for t in fake.requests[0].body["tools"]]
    # the coding profile: group:fs, group:runtime and group:sessions (those clawmesh implements)
    sessions = {"sessions_list", "sessions_history", "sessions_send", "sessions_spawn", "session_status"}
    fs = {"read", "write", "edit", "apply_patch", "ls", "glob"}
    assert set(names) == {*fs, "exec", "process", *sessions}


async def test_denied_tools_are_not_offered_and_return_an_error_if_called(
    fake: FakeModelServer, nats_url: str, tmp_path: Path
) -> None:
    fake.script(ToolCall("exec", {"command": "id"}), Text("ok without it"))
    config = _config(fake, tmp_path, tools={"deny": ["group:runtime"]})
    async with run_gateway(
        nats_url, config, tmp_path, services=("ingress", "router", "runner", "node-agent")
    ) as gw:
        events = await _turn(gw, "try exec")
    offered = [t["function"]["name"] for t in fake.requests[0].body["tools"]]
    assert "exec" not in offered and "read" in offered
    result = next(d for e, d in events if e == "tool_result")
    assert (
        result["isError"]
        and "not available" in result["content"]
        and "agents.list[0].tools.deny" in result["content"]
    )
    assert events[-1][1]["text"] == "ok without it"


async def test_bad_tool_arguments_come_back_as_an_error_result(
    fake: FakeModelServer, nats_url: str, tmp_path: Path
) -> None:
    fake.script(ToolCall("edit", {"path": "x.txt"}), Text("fixed"))
    async with run_gateway(
        nats_url, _config(fake, tmp_path), tmp_path, services=("ingress", "router", "runner", "node-agent")
    ) as gw:
        events = await _turn(gw, "edit")
    result = next(d for e, d in events if e == "tool_result")
    assert result["isError"] and "INVALID_ARGUMENTS" in result["content"] and "oldText" in result["content"]
    assert events[-1][0] == "final"


async def test_agent_pinned_to_a_region_runs_only_there_and_offline_is_a_clear_error(
    fake: FakeModelServer, nats_url: str, tmp_path: Path
) -> None:
    config = _config(fake, tmp_path, node={"selector": {"region": "sg"}})
    async with run_gateway(nats_url, config, tmp_path, services=("ingress", "router", "runner")) as gw:
        procs = [
            ServiceProcess(
                "node-agent",
                gw.config_path,
                nats_url,
                gw.env,
                tmp_path / "sg.log",
                "--node-id",
                "sg-1",
                "--label",
                "region=sg",
            ),
            ServiceProcess(
                "node-agent",
                gw.config_path,
                nats_url,
                gw.env,
                tmp_path / "eu.log",
                "--node-id",
                "eu-1",
                "--label",
                "region=eu",
            ),
        ]
        try:
            nc = await nats.connect(nats_url)
            directory = NodeDirectory(await nc.jetstream().key_value("cm_nodes"), cache_seconds=0)

            async def both_online() -> bool:
                return {s.node.node_id for s in await directory.statuses() if s.online} >= {"sg-1", "eu-1"}

            await wait_until(both_online, timeout=30, message="two node-agents online")
            fake.script(ToolCall("exec", {"command": "echo where am I"}), Text("ran"))
            fake.script(ToolCall("exec", {"command": "echo again"}), Text("ran again"))
            for expected in ("where am I", "again"):
                events = await _turn(gw, "run it")
                call = next(d for e, d in events if e == "tool_call")
                assert call["node"] == "sg-1"
                assert expected in next(d for e, d in events if e == "tool_result")["content"]
            # the sg node goes away: the next call fails clearly, and fast
            procs[0].terminate()

            async def sg_gone() -> bool:
                return not any(s.node.node_id == "sg-1" and s.online for s in await directory.statuses())

            await wait_until(sg_gone, timeout=30, message="sg-1 offline")
            fake.script(ToolCall("exec", {"command": "echo should not run"}), Text("gave up"))
            events = await _turn(gw, "run it again")
            result = next(d for e, d in events if e == "tool_result")
            assert result["isError"] and "region=sg" in result["content"]
            assert "offline" in result["content"] or "no node matches" in result["content"]
            assert events[-1][1]["text"] == "gave up"
            await nc.close()
        finally:
            for p in procs:
                p.kill()


async def test_node_list_and_describe_cli(fake: FakeModelServer, nats_url: str, tmp_path: Path) -> None:
    import subprocess
    import sys

    config = _config(fake, tmp_path)
    async with run_gateway(nats_url, config, tmp_path, services=("node-agent",)) as gw:
        nc = await nats.connect(nats_url)
        directory = NodeDirectory(await nc.jetstream().key_value("cm_nodes"), cache_seconds=0)
        await wait_until(lambda: directory.statuses(), message="a node announced")
        await nc.close()
        cmd = [
            sys.executable,
            "-m",
            "clawmesh_gateway",
            "--config",
            str(gw.config_path),
            "nodes",
            "list",
            "--json",
            "--nats-url",
            nats_url,
        ]
        # In a thread: the node-agent beats on this event loop, and a CLI that starts slowly
        # while the loop is blocked would find it offline.
        out = await asyncio.to_thread(
            subprocess.run, cmd, capture_output=True, text=True, env=gw.env, timeout=60
        )
        assert out.returncode == 0, out.stderr
        nodes = json.loads(out.stdout)
        assert len(nodes) == 1 and nodes[0]["online"] and {"exec", "files"} <= set(nodes[0]["capabilities"])
        assert nodes[0]["resources"]["cpus"] >= 1 and nodes[0]["resources"]["memoryTotal"] > 0


async def test_anthropic_tool_use_loop(fake: FakeModelServer, nats_url: str, tmp_path: Path) -> None:
    fake.script(ToolCall("ls", {"path": "."}, text_before="let me look"), Text("I see the files"))
    config = _config(fake, tmp_path)
    config["agents"]["defaults"]["model"] = "anthropic/fake-claude"
    config["models"]["providers"]["anthropic"] = {"baseUrl": fake.base_url, "apiKey": "sk-ant"}
    (tmp_path / "ws").mkdir()
    (tmp_path / "ws" / "hello.txt").write_text("hi")
    async with run_gateway(
        nats_url, config, tmp_path, services=("ingress", "router", "runner", "node-agent")
    ) as gw:
        events = await _turn(gw, "what is here?")
    assert next(d for e, d in events if e == "tool_result")["content"] == "hello.txt"
    assert events[-1][1]["text"] == "I see the files"
    # the tool result went back as an Anthropic tool_result block in a user turn
    last = fake.requests[-1].body["messages"]
    assert last[-1]["role"] == "user" and last[-1]["content"][0]["type"] == "tool_result"
    assert last[-2]["role"] == "assistant" and any(b["type"] == "tool_use" for b in last[-2]["content"])


async def test_malformed_invocations_get_an_error_reply_and_a_dead_letter(
    fake: FakeModelServer, nats_url: str, tmp_path: Path
) -> None:
    async with run_gateway(nats_url, _config(fake, tmp_path), tmp_path, services=("node-agent",)):
        nc = await nats.connect(nats_url)
        reply = await nc.request("cm.node.local.invoke", b"\x00not json", timeout=5)
        body = json.loads(reply.data)
        assert body["ok"] is False and body["errorCode"] == "INVALID_REQUEST"
        good = await nc.request(
            "cm.node.local.invoke",
            json.dumps(
                {
                    "type": "invoke",
                    "invocationId": "i1",
                    "tool": "ls",
                    "agentId": "main",
                    "sessionKey": "agent:main:main",
                }
            ).encode(),
            timeout=5,
            headers={"Content-Type": "application/json"},
        )
        assert json.loads(good.data)["ok"] is True  # the node is still serving
        letter = await nc.jetstream().get_last_msg("CM_DLQ", "cm.dlq.node-agent")
        assert json.loads(letter.data)["service"] == "node-agent"
        await nc.close()


@pytest.mark.parametrize("where", ["agent", "global"])
async def test_tools_max_iterations_bounds_the_tool_loop(
    fake: FakeModelServer, nats_url: str, tmp_path: Path, where: str
) -> None:
    # the model would ask for a third tool round and then answer; the cap stops it after two
    fake.script(
        ToolCall("ls", {"path": "."}),
        ToolCall("ls", {"path": "."}),
        ToolCall("ls", {"path": "."}),
        Text("done"),
    )
    cap = {"maxIterations": 2}
    config = (
        _config(fake, tmp_path, tools=cap) if where == "agent" else {**_config(fake, tmp_path), "tools": cap}
    )
    config["runtime"] = {"toolIterations": 10}  # tools.maxIterations wins over the deployment default
    (tmp_path / "ws").mkdir()
    async with (
        run_gateway(nats_url, config, tmp_path, services=("ingress", "router", "runner", "node-agent")) as gw,
        gw.client() as http,
    ):
        r = await http.post(
            "/v1/messages?wait=60", json={"text": "loop", "peer": {"kind": "direct", "id": "dev"}}
        )
    assert r.status_code == 502
    err = r.json()["error"]
    assert err["code"] == "TOOL_LOOP_LIMIT" and "after 2 model/tool round trips" in err["message"]
    assert "tools.maxIterations" in err["hint"]
    assert len(fake.requests) == 2
