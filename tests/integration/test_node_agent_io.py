"""The node-agent runs file operations off its event loop: a slow file never stalls the node."""

from __future__ import annotations

import asyncio
import json
import os
import threading
from pathlib import Path
from typing import Any

import nats
import pytest

from clawmesh.tools.files import Workspace
from tests.fixtures.gateway import run_gateway, wait_until


def _invoke(tool: str, invocation: str, **arguments: Any) -> bytes:
    return json.dumps(
        {
            "type": "invoke",
            "invocationId": invocation,
            "tool": tool,
            "agentId": "main",
            "sessionKey": "agent:main:main",
            "arguments": arguments,
        }
    ).encode()


async def test_a_blocked_file_tool_does_not_stall_the_node(
    nats_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    entered, released = threading.Event(), threading.Event()
    waited: list[bool] = []
    real_read = Workspace.read

    def slow_read(self: Workspace, path: str, offset: int | None = None, limit: int | None = None) -> str:
        if path == "slow.txt":
            entered.set()
            # Released by the test once another invocation was answered; on the event loop this
            # would block that answer, and the wait would end by its timeout instead.
            waited.append(released.wait(15))
        return real_read(self, path, offset, limit)

    monkeypatch.setattr(Workspace, "read", slow_read)
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "slow.txt").write_text("slow")
    os.mkfifo(ws / "pipe")
    config = {"agents": {"list": [{"id": "main", "workspace": str(ws)}]}}
    headers = {"Content-Type": "application/json"}
    async with run_gateway(nats_url, config, tmp_path, services=("node-agent",)):
        nc = await nats.connect(nats_url)
        try:
            slow = asyncio.create_task(
                nc.request(
                    "cm.node.local.invoke", _invoke("read", "i1", path="slow.txt"), 30, headers=headers
                )
            )
            await wait_until(entered.is_set, timeout=15, message="the slow read to start")
            fifo = await nc.request(
                "cm.node.local.invoke", _invoke("read", "i2", path="pipe"), 15, headers=headers
            )
            assert json.loads(fifo.data)["errorCode"] == "NOT_REGULAR"
            listed = await nc.request("cm.node.local.invoke", _invoke("ls", "i3"), 15, headers=headers)
            assert json.loads(listed.data)["ok"] is True
            released.set()
            assert json.loads((await slow).data)["content"] == "slow"
            assert waited == [True]
        finally:
            released.set()
            await nc.close()
