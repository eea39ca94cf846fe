"""OpenClaw's core tools beyond the file tools and exec (issue 13 §2), through a real runner with
the scripted fake model: web_fetch runs on the runner itself (no node-agent is started),
apply_patch on the agent's node like the other file tools, message through CM_OUTBOUND, and
background exec with the process tool on the node."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import nats
import pytest

from clawmesh.wire import OutboundMessage, ToolResultEvent, TurnEvent, TurnFinal, decode
from tests.fakes.models import FakeModelServer, Text, ToolCall, ToolCalls
from tests.fixtures.gateway import run_gateway, wait_until

pytestmark = pytest.mark.slow


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"<html><head><title>Docs</title></head><body><h2>Install</h2><p>run it</p></body></html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def site() -> Iterator[int]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd.server_address[1]
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
async def fake() -> AsyncIterator[FakeModelServer]:
    async with FakeModelServer() as server:
        yield server


async def test_web_fetch_through_a_runner(
    fake: FakeModelServer, site: int, nats_url: str, tmp_path: Path
) -> None:
    # the local site is on 127.0.0.1: private networks are allowed explicitly, and `localhost`
    # is on the blocklist, which wins over the allowance (the refusal is a tool error)
    fake.script(
        "m-main",
        ToolCalls(
            [
                ToolCall("web_fetch", {"url": f"http://127.0.0.1:{site}/docs", "extractMode": "markdown"}),
                ToolCall("web_fetch", {"url": f"http://localhost:{site}/docs"}),
                ToolCall("web_fetch", {"url": f"http://127.0.0.1:{site}/docs", "maxChars": 5}),
            ]
        ),
    )
    fake.script("m-main", Text("fetched"))
    config = {
        "agents": {"list": [{"id": "main", "model": "openai/m-main", "workspace": str(tmp_path / "ws")}]},
        "models": {"providers": {"openai": {"baseUrl": fake.base_url + "/v1", "apiKey": "sk-test"}}},
        "tools": {
            "web": {
                "fetch": {
                    "ssrfPolicy": {"dangerouslyAllowPrivateNetwork": True, "blockedHostnames": ["localhost"]}
                }
            }
        },
    }
    events: list[TurnEvent] = []
    nc = await nats.connect(nats_url)

    async def on_event(msg: Any) -> None:
        events.append(decode(msg.data, TurnEvent, msg.headers))

    await nc.subscribe("cm.ev.>", cb=on_event)
    try:
        async with run_gateway(nats_url, config, tmp_path) as gw, gw.client() as http:
            r = await http.post(
                "/v1/messages", json={"text": "read the docs", "peer": {"kind": "direct", "id": "me"}}
            )
            assert r.status_code == 202, r.text
            final = await wait_until(
                lambda: next((e for e in events if isinstance(e, TurnFinal)), None), message="the turn's end"
            )
    finally:
        await nc.close()
    assert final.text == "fetched"
    results = [e for e in events if isinstance(e, ToolResultEvent) and e.name == "web_fetch"]
    assert len(results) == 3
    fetched = json.loads(results[0].content)
    assert not results[0].is_error
    assert fetched["status"] == 200 and fetched["title"] == "Docs" and "## Install" in fetched["text"]
    assert results[1].is_error and "configured blocklist): localhost" in results[1].content
    assert results[2].is_error and "maxChars" in results[2].content
    # the model saw the same results
    tool_messages = fake.requests[-1].body["messages"]
    assert any("## Install" in str(m.get("content")) for m in tool_messages if m.get("role") == "tool")


async def _turn(
    nats_url: str, config: dict[str, Any], tmp_path: Path, services: tuple[str, ...]
) -> list[TurnEvent]:
    events: list[TurnEvent] = []
    nc = await nats.connect(nats_url)

    async def on_event(msg: Any) -> None:
        events.append(decode(msg.data, TurnEvent, msg.headers))

    await nc.subscribe("cm.ev.>", cb=on_event)
    try:
        async with run_gateway(nats_url, config, tmp_path, services=services) as gw, gw.client() as http:
            r = await http.post("/v1/messages", json={"text": "go", "peer": {"kind": "direct", "id": "me"}})
            assert r.status_code == 202, r.text
            await wait_until(lambda: any(isinstance(e, TurnFinal) for e in events), message="the turn's end")
    finally:
        await nc.close()
    return events


async def test_apply_patch_through_a_runner_on_the_agents_node(
    fake: FakeModelServer, nats_url: str, tmp_path: Path
) -> None:
    workspace = tmp_path / "ws"
    workspace.mkdir()
    (workspace / "app.py").write_text("def main():\n    return 1\n")
    good = "\n".join(
        [
            "*** Begin Patch",
            "*** Add File: README.md",
            "+# App",
            "*** Update File: app.py",
            "@@ def main():",
            "-    return 1",
            "+    return 2",
            "*** End Patch",
        ]
    )
    bad = "*** Begin Patch\n*** Update File: app.py\n@@\n-    return 7\n+    return 8\n*** End Patch"
    fake.script(
        "m-main",
        ToolCalls([ToolCall("apply_patch", {"input": good}), ToolCall("apply_patch", {"input": bad})]),
    )
    fake.script("m-main", Text("patched"))
    config = {
        "agents": {"list": [{"id": "main", "model": "openai/m-main", "workspace": str(workspace)}]},
        "models": {"providers": {"openai": {"baseUrl": fake.base_url + "/v1", "apiKey": "sk-test"}}},
        "nodes": {"heartbeatSeconds": 0.5},
    }
    events = await _turn(nats_url, config, tmp_path, ("ingress", "router", "runner", "node-agent"))
    results = [e for e in events if isinstance(e, ToolResultEvent) and e.name == "apply_patch"]
    assert [r.is_error for r in results] == [False, True]
    assert results[0].content == "Success. Updated the following files:\nA README.md\nM app.py"
    assert "hunk 1 (@@) of app.py: Failed to find expected lines in app.py" in results[1].content
    assert (workspace / "app.py").read_text() == "def main():\n    return 2\n"
    assert (workspace / "README.md").read_text() == "# App\n"


async def test_message_sends_through_the_outbound_path(
    fake: FakeModelServer, nats_url: str, tmp_path: Path
) -> None:
    fake.script(
        "m-main",
        ToolCalls(
            [
                ToolCall("message", {"action": "send", "message": "to this chat"}),
                ToolCall("message", {"action": "send", "message": "to another peer", "target": "user:42"}),
                ToolCall(
                    "message", {"action": "send", "message": "nowhere", "channel": "fax", "target": "1"}
                ),
                ToolCall("message", {"action": "send", "message": "dry", "dryRun": True}),
                ToolCall("message", {"action": "react", "message": "x"}),
            ]
        ),
    )
    fake.script("m-main", Text("sent"))
    config = {
        "agents": {"list": [{"id": "main", "model": "openai/m-main", "workspace": str(tmp_path / "ws")}]},
        "models": {"providers": {"openai": {"baseUrl": fake.base_url + "/v1", "apiKey": "sk-test"}}},
    }
    outbound: list[OutboundMessage] = []
    nc = await nats.connect(nats_url)

    async def on_out(msg: Any) -> None:
        outbound.append(decode(msg.data, OutboundMessage, msg.headers))

    await nc.subscribe("cm.out.>", cb=on_out)
    try:
        events = await _turn(nats_url, config, tmp_path, ("ingress", "router", "runner"))
        await wait_until(lambda: any(o.text == "sent" for o in outbound), message="the turn's reply")
    finally:
        await nc.close()
    results = [e for e in events if isinstance(e, ToolResultEvent) and e.name == "message"]
    assert [r.is_error for r in results] == [False, False, True, False, True]
    first = json.loads(results[0].content)
    assert first["ok"] is True and first["channel"] == "api" and first["target"] == "direct:me"
    assert json.loads(results[1].content)["target"] == "direct:42"
    assert "unknown channel 'fax'" in results[2].content
    assert json.loads(results[3].content)["dryRun"] is True
    assert "action" in results[4].content
    sent = {o.text: o for o in outbound}
    assert set(sent) == {"to this chat", "to another peer", "sent"}  # no dry run, no refused send
    assert sent["to this chat"].peer is not None and sent["to this chat"].peer.id == "me"
    assert sent["to another peer"].peer is not None and sent["to another peer"].peer.id == "42"
    assert sent["to this chat"].turn_id == first["messageId"] and sent["to this chat"].channel == "api"


async def test_background_exec_and_process_through_a_runner(
    fake: FakeModelServer, nats_url: str, tmp_path: Path
) -> None:
    workspace = tmp_path / "ws"
    workspace.mkdir()
    workspace.chmod(0o777)  # host commands may run as `nobody` (tests run as root)
    pid_file = workspace / "pid"
    fake.script(
        "m-main",
        ToolCalls(
            [
                ToolCall("exec", {"command": "echo $$ > pid; exec sleep 120", "background": True}),
                ToolCall("process", {"action": "list"}),
                ToolCall("process", {"action": "poll", "sessionId": "nosuch~abc"}),
            ]
        ),
    )
    fake.script("m-main", Text("started"))
    config = {
        "agents": {"list": [{"id": "main", "model": "openai/m-main", "workspace": str(workspace)}]},
        "models": {"providers": {"openai": {"baseUrl": fake.base_url + "/v1", "apiKey": "sk-test"}}},
        "nodes": {"heartbeatSeconds": 0.5},
    }
    events = await _turn(nats_url, config, tmp_path, ("ingress", "router", "runner", "node-agent"))
    by_name = {}
    for e in events:
        if isinstance(e, ToolResultEvent):
            by_name.setdefault(e.name, []).append(e)
    started = json.loads(by_name["exec"][0].content)
    assert started["status"] == "running" and "~" in started["sessionId"]
    listed = json.loads(by_name["process"][0].content)
    assert [s["sessionId"] for s in listed["sessions"]] == [started["sessionId"]]
    assert listed["sessions"][0]["status"] == "running"
    assert by_name["process"][1].is_error  # a session id naming no node
    # the gateway (and its node-agent) stopped when _turn returned: the session was killed
    pid = int(pid_file.read_text())

    def gone() -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"

    await wait_until(gone, message="the background command is killed when the node-agent stops")
