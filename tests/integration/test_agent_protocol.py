"""Every agent as a Synadia Agent Protocol agent, checked with Synadia's official Python client
(`synadia-ai-agents`): discovery through `$SRV.INFO.agents`, a prompt streamed back, status and
heartbeats; and with a raw nats client for the wire details the client hides (the leading ack,
the error frame and the header-less terminator of a rejected request)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import nats
import pytest
import pytest_asyncio
from synadia_ai.agents import Agents
from synadia_ai.agents.messages import ResponseChunk, StatusChunk

import clawmesh_ingress.agent_protocol as agent_protocol
from tests.fixtures.gateway import Gateway, run_gateway


@pytest_asyncio.fixture
async def gw(nats_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Gateway]:
    monkeypatch.setattr(agent_protocol, "HEARTBEAT_INTERVAL", 1)  # so a test sees beats after it subscribes
    config: dict[str, Any] = {
        "agents": {
            "list": [
                {"id": "home", "default": True, "model": "echo/x"},
                {"id": "echo", "model": "echo/x"},
                # runnerType synadia: proxied over the protocol (here to this gateway's own agent)
                {
                    "id": "far",
                    "runnerType": "synadia",
                    "synadia": {"agent": "clawmesh", "owner": "cm", "session": "echo"},
                },
                {
                    "id": "nowhere",
                    "runnerType": "synadia",
                    "synadia": {"agent": "clawmesh", "owner": "cm", "session": "nobody"},
                },
            ]
        }
    }
    async with run_gateway(nats_url, config, tmp_path) as gateway:
        yield gateway


@pytest_asyncio.fixture
async def nc(gw: Gateway) -> AsyncIterator[Any]:
    client = await nats.connect(gw.nats_url)
    yield client
    await client.close()


async def test_the_official_client_discovers_and_prompts_every_agent(nc: Any) -> None:
    agents = Agents(nc=nc)
    found = {a.session_name: a for a in await agents.discover()}
    assert set(found) == {"home", "echo", "far", "nowhere"}
    echo = found["echo"]
    assert (echo.agent, echo.owner, echo.protocol_version) == ("clawmesh", "cm", "0.3")
    assert echo.prompt_subject == "agents.prompt.clawmesh.cm.echo"
    messages = [m async for m in echo.prompt("hello over nats")]
    assert isinstance(messages[0], StatusChunk) and messages[0].status == "ack"
    text = "".join(m.text for m in messages if isinstance(m, ResponseChunk))
    assert text == "echo: hello over nats"
    status = await echo.status()
    assert status.instance_id == echo.instance_id
    assert await agents.ping(echo.instance_id)


async def test_heartbeats_name_the_instance(nc: Any) -> None:
    beat: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()

    async def on_beat(msg: Any) -> None:
        if not beat.done():
            beat.set_result(json.loads(msg.data))

    await nc.subscribe("agents.hb.clawmesh.cm.home", cb=on_beat)
    payload = await asyncio.wait_for(beat, 30)
    assert payload["agent"] == "clawmesh" and payload["session"] == "home" and payload["instance_id"]
    assert payload["ts"].endswith("Z")


async def _raw(nc: Any, subject: str, data: bytes) -> list[Any]:
    """Every message of one request's reply stream, up to the terminator."""
    inbox = nc.new_inbox()
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    got: list[Any] = []

    async def on_msg(msg: Any) -> None:
        got.append(msg)
        if not msg.data and not msg.headers and not done.done():
            done.set_result(None)

    await nc.subscribe(inbox, cb=on_msg)
    await nc.publish(subject, data, reply=inbox)
    await asyncio.wait_for(done, 60)
    return got


async def test_the_wire_sequence_of_a_prompt_and_of_a_rejected_one(nc: Any) -> None:
    ok = await _raw(nc, "agents.prompt.clawmesh.cm.home", b'{"prompt": "hi", "extra": 1}')
    assert json.loads(ok[0].data) == {"type": "status", "data": "ack"}
    assert [json.loads(m.data) for m in ok[1:-1]][-1]["type"] == "response"
    assert ok[-1].data == b"" and not ok[-1].headers
    bad = await _raw(nc, "agents.prompt.clawmesh.cm.home", b'  {"prompt": ""}')
    assert len(bad) == 2  # no ack: the error frame, then the terminator
    assert bad[0].headers["Nats-Service-Error-Code"] == "400"
    assert json.loads(bad[0].data)["error"] == "invalid_envelope"
    assert bad[1].data == b"" and not bad[1].headers


async def test_a_synadia_runner_proxies_turns_to_an_agent_on_the_bus(gw: Gateway) -> None:
    async with gw.client(timeout=90) as http:
        r = await http.post(
            "/v1/messages?wait=60",
            json={"text": "relay me", "agentId": "far", "peer": {"kind": "direct", "id": "a"}},
        )
        assert r.status_code == 200, r.text
        # the remote agent (echo) answered; the proxy agent's reply is its text
        assert r.json()["text"] == "echo: relay me"
        missing = await http.post(
            "/v1/messages?wait=60",
            json={"text": "anyone?", "agentId": "nowhere", "peer": {"kind": "direct", "id": "a"}},
        )
    assert "nobody" in missing.text and "answered discovery" in missing.text
