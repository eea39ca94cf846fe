"""The A2A endpoint end to end: a2a-sdk's own client (v1.0, card discovery, streaming and not)
against a running gateway with the echo model, and raw JSON-RPC for the v0.3 shapes, the
method aliases, the errors and auth; `CancelTask` stopping a turn the fake model keeps running
(a `Gate`), streamed (v1) and not (v0.3)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest_asyncio
from a2a.client import ClientConfig, ClientFactory
from a2a.helpers import new_text_message
from a2a.types.a2a_pb2 import GetTaskRequest, Role, SendMessageRequest, TaskState
from nats.aio.client import Client

from clawmesh.wire import TurnError, TurnEvent, decode
from tests.fakes.models import FakeModelServer, Gate
from tests.fixtures.gateway import Gateway, run_gateway, wait_until


@pytest_asyncio.fixture
async def model() -> AsyncIterator[FakeModelServer]:
    async with FakeModelServer() as fake:
        yield fake


@pytest_asyncio.fixture
async def gw(nats_url: str, tmp_path: Path, model: FakeModelServer) -> AsyncIterator[Gateway]:
    config: dict[str, Any] = {
        "agents": {
            "list": [
                {"id": "home", "default": True, "model": "echo/x", "identity": {"name": "Home"}},
                {"id": "echo", "model": "echo/x"},
                {"id": "slow", "model": "openai/m-slow"},  # the fake model: a test scripts it
            ]
        },
        "models": {"providers": {"openai": {"baseUrl": model.base_url + "/v1", "apiKey": "sk-test"}}},
    }
    async with run_gateway(nats_url, config, tmp_path) as gateway:
        yield gateway


@pytest_asyncio.fixture
async def errors(nc: Client) -> list[TurnError]:
    """Every turn that ended in an error, as the runners published it."""
    seen: list[TurnError] = []

    async def on(msg: Any) -> None:
        event = decode(msg.data, TurnEvent, msg.headers)
        if isinstance(event, TurnError):
            seen.append(event)

    await nc.subscribe("cm.ev.>", cb=on)
    await nc.flush()
    return seen


def _auth(gw: Gateway) -> dict[str, str]:
    return {"Authorization": f"Bearer {gw.token}"}


@contextlib.asynccontextmanager
async def _client(gw: Gateway, agent: str, *, streaming: bool) -> AsyncIterator[Any]:
    """a2a-sdk's client for `agent`, from its card at the agent's base URL."""
    async with httpx.AsyncClient(headers=_auth(gw), timeout=60) as http:
        factory = ClientFactory(ClientConfig(streaming=streaming, httpx_client=http))
        yield await factory.create_from_url(f"{gw.url}/a2a/{agent}")


async def test_the_sdk_client_discovers_an_agent_and_gets_its_reply(gw: Gateway) -> None:
    async with _client(gw, "echo", streaming=False) as client:
        request = SendMessageRequest(message=new_text_message("hello there", role=Role.ROLE_USER))
        results = [r async for r in client.send_message(request)]
        assert len(results) == 1
        task = results[0].task
        assert task.status.state == TaskState.TASK_STATE_COMPLETED
        assert [p.text for p in task.artifacts[0].parts] == ["echo: hello there"]
        # the task is remembered for GetTask
        again = await client.get_task(GetTaskRequest(id=task.id))
        assert again.status.state == TaskState.TASK_STATE_COMPLETED


async def test_the_sdk_client_streams_artifact_updates_then_completion(gw: Gateway) -> None:
    async with _client(gw, "home", streaming=True) as client:
        request = SendMessageRequest(
            message=new_text_message("stream me", role=Role.ROLE_USER, context_id="ctx-stream")
        )
        events = [r async for r in client.send_message(request)]
    kinds = [e.WhichOneof("payload") for e in events]
    assert kinds[0] == "task" and kinds[-1] == "status_update"
    assert events[-1].status_update.status.state == TaskState.TASK_STATE_COMPLETED
    updates = [e.artifact_update for e in events if e.WhichOneof("payload") == "artifact_update"]
    assert "".join(p.text for u in updates for p in u.artifact.parts) == "echo: stream me"
    assert updates[-1].last_chunk and not updates[0].append
    assert {e.task.context_id for e in events[:1]} == {"ctx-stream"}


async def test_cards_describe_each_agent_and_the_gateway(gw: Gateway) -> None:
    async with httpx.AsyncClient() as http:  # cards are public: no token
        root = (await http.get(f"{gw.url}/.well-known/agent-card.json")).json()
        legacy = (await http.get(f"{gw.url}/.well-known/agent.json")).json()
        home = await http.get(f"{gw.url}/a2a/home/.well-known/agent-card.json")
        missing = await http.get(f"{gw.url}/a2a/nobody/.well-known/agent-card.json")
    assert root == legacy
    assert [s["id"] for s in root["skills"]] == ["home", "echo", "slow"]
    assert root["supportedInterfaces"][0] == {
        "url": f"{gw.url}/a2a/v1",
        "protocolBinding": "JSONRPC",
        "protocolVersion": "1.0",
    }
    card = home.json()
    assert card["name"] == "clawmesh: Home" and card["capabilities"]["streaming"] is True
    assert card["url"] == f"{gw.url}/a2a/home/v1" and card["preferredTransport"] == "JSONRPC"
    assert card["securitySchemes"]["gatewayToken"]["httpAuthSecurityScheme"]["scheme"] == "Bearer"
    assert home.headers["etag"]
    assert missing.status_code == 404


async def _rpc(
    gw: Gateway, body: Any, *, path: str = "/a2a/v1", headers: dict[str, str] | None = None
) -> httpx.Response:
    async with httpx.AsyncClient(timeout=60) as http:
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        return await http.post(
            gw.url + path,
            content=content,
            headers={**_auth(gw), "Content-Type": "application/json", **(headers or {})},
        )


def _send(method: str, text: str, **message: Any) -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "id": 7,
        "method": method,
        "params": {
            "message": {
                "messageId": "m1",
                "role": "user",
                "parts": [{"kind": "text", "text": text}],
                **message,
            }
        },
    }


async def test_v03_names_get_v03_shapes_and_v1_names_v1_shapes(gw: Gateway) -> None:
    first = (await _rpc(gw, _send("message/send", "one", contextId="ctx-a"))).json()
    assert first["id"] == 7
    task = first["result"]
    assert task["kind"] == "task" and task["status"]["state"] == "completed"
    assert task["contextId"] == "ctx-a"
    assert task["artifacts"][0]["parts"] == [{"kind": "text", "text": "echo: one"}]
    got = (
        await _rpc(gw, {"jsonrpc": "2.0", "id": 8, "method": "tasks/get", "params": {"id": task["id"]}})
    ).json()
    assert got["result"]["id"] == task["id"] and got["result"]["status"]["state"] == "completed"
    # a v1 name without the A2A-Version header is answered in v1 shapes (as OpenClaw does)
    v1 = (await _rpc(gw, _send("SendMessage", "two", contextId="ctx-a"))).json()
    assert v1["result"]["task"]["status"]["state"] == "TASK_STATE_COMPLETED"
    assert task["id"] != v1["result"]["task"]["id"]


async def test_v03_streaming_ends_with_a_final_status_update(gw: Gateway) -> None:
    async with (
        httpx.AsyncClient(timeout=60) as http,
        http.stream(
            "POST", gw.url + "/a2a/echo/v1", json=_send("message/stream", "hi"), headers=_auth(gw)
        ) as response,
    ):
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [json.loads(line[6:]) async for line in response.aiter_lines() if line.startswith("data: ")]
    kinds = [e["result"]["kind"] for e in events]
    assert kinds[0] == "task" and kinds[-1] == "status-update"
    assert events[-1]["result"]["final"] is True and events[-1]["result"]["status"]["state"] == "completed"
    text = "".join(
        e["result"]["artifact"]["parts"][0]["text"]
        for e in events
        if e["result"]["kind"] == "artifact-update"
    )
    assert text == "echo: hi"


async def test_bad_requests_get_json_rpc_errors_naming_the_problem(gw: Gateway) -> None:
    parse = (await _rpc(gw, b"{not json")).json()
    assert parse["error"]["code"] == -32700
    unknown = (await _rpc(gw, {"jsonrpc": "2.0", "id": 1, "method": "tasks/explode"})).json()
    assert unknown["error"]["code"] == -32601 and unknown["id"] == 1
    bad = _send("SendMessage", "x")
    del bad["params"]["message"]["messageId"]
    invalid = (await _rpc(gw, bad)).json()["error"]
    assert invalid["code"] == -32602 and "messageId" in invalid["message"]
    assert invalid["data"][0]["fieldViolations"][0]["field"] == "message"
    empty = (await _rpc(gw, _send("SendMessage", ""))).json()["error"]
    assert empty["code"] == -32602 and "message.parts" in empty["message"]
    version = (await _rpc(gw, _send("SendMessage", "x"), headers={"A2A-Version": "9.9"})).json()["error"]
    assert version["code"] == -32009
    cancel = (
        await _rpc(gw, {"jsonrpc": "2.0", "id": 2, "method": "CancelTask", "params": {"id": "t"}})
    ).json()
    assert cancel["error"]["code"] == -32001 and "'t'" in cancel["error"]["message"]
    no_id = (await _rpc(gw, {"jsonrpc": "2.0", "id": 2, "method": "tasks/cancel", "params": {}})).json()
    assert no_id["error"]["code"] == -32602 and "id" in no_id["error"]["message"]
    missing = (
        await _rpc(gw, {"jsonrpc": "2.0", "id": 3, "method": "GetTask", "params": {"id": "nope"}})
    ).json()
    assert missing["error"]["code"] == -32001
    no_agent = await _rpc(gw, _send("SendMessage", "x"), path="/a2a/nobody/v1")
    assert no_agent.status_code == 404


async def test_the_endpoint_needs_the_gateway_token(gw: Gateway) -> None:
    async with httpx.AsyncClient(timeout=60) as http:
        response = await http.post(gw.url + "/a2a/v1", json=_send("SendMessage", "x"))
    assert response.status_code == 401
    assert response.json()["error"]["code"] == -32600
    assert response.headers["www-authenticate"].startswith("Bearer")


def _call(method: str, task_id: str, rpc_id: int = 9) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": rpc_id, "method": method, "params": {"id": task_id}}


async def test_cancel_task_stops_a_streamed_running_turn_v1(
    gw: Gateway, model: FakeModelServer, errors: list[TurnError]
) -> None:
    never = asyncio.Event()  # the model call would never end by itself
    model.script("m-slow", Gate(never))
    events: list[dict[str, Any]] = []
    first = asyncio.Event()

    async def stream() -> None:
        body = _send("SendStreamingMessage", "take your time", contextId="ctx-cancel")
        async with (
            httpx.AsyncClient(timeout=60) as http,
            http.stream("POST", gw.url + "/a2a/slow/v1", json=body, headers=_auth(gw)) as response,
        ):
            async for line in response.aiter_lines():
                if line.startswith("data: "):
                    events.append(json.loads(line[6:])["result"])
                    first.set()

    streaming = asyncio.create_task(stream())
    await asyncio.wait_for(first.wait(), 60)
    task_id = events[0]["task"]["id"]
    await wait_until(lambda: model.requests, timeout=60, message="the turn's model call")
    # only at the task's agent's endpoint: elsewhere it is not found, and the turn runs on
    elsewhere = (await _rpc(gw, _call("CancelTask", task_id), path="/a2a/echo/v1")).json()
    assert elsewhere["error"]["code"] == -32001
    canceled = (await _rpc(gw, _call("CancelTask", task_id), path="/a2a/slow/v1")).json()
    assert canceled["id"] == 9
    assert canceled["result"]["id"] == task_id and canceled["result"]["contextId"] == "ctx-cancel"
    assert canceled["result"]["status"]["state"] == "TASK_STATE_CANCELED"
    # the turn was stopped as /stop stops it
    stopped = await wait_until(
        lambda: [e for e in errors if e.turn_id == task_id], timeout=60, message="the turn ended"
    )
    assert [e.code for e in stopped] == ["TURN_STOPPED"]
    assert stopped[0].session_key == "agent:slow:a2a:ctx-cancel"
    # the streaming client got the final canceled status update
    await asyncio.wait_for(streaming, 60)
    assert events[-1]["statusUpdate"]["status"]["state"] == "TASK_STATE_CANCELED"
    assert not any("artifactUpdate" in e for e in events)
    got = (await _rpc(gw, _call("GetTask", task_id), path="/a2a/slow/v1")).json()
    assert got["result"]["status"]["state"] == "TASK_STATE_CANCELED"
    again = (await _rpc(gw, _call("CancelTask", task_id), path="/a2a/slow/v1")).json()
    assert again["error"]["code"] == -32002 and "canceled" in again["error"]["message"]


async def test_tasks_cancel_stops_a_turn_sent_without_blocking_v03(
    gw: Gateway, model: FakeModelServer, errors: list[TurnError]
) -> None:
    never = asyncio.Event()
    model.script("m-slow", Gate(never))
    body = _send("message/send", "in the background")
    body["params"]["configuration"] = {"blocking": False}
    working = (await _rpc(gw, body, path="/a2a/slow/v1")).json()["result"]
    assert working["kind"] == "task" and working["status"]["state"] == "working"
    await wait_until(lambda: model.requests, timeout=60, message="the turn's model call")
    canceled = (await _rpc(gw, _call("tasks/cancel", working["id"]), path="/a2a/slow/v1")).json()
    result = canceled["result"]
    assert result["kind"] == "task" and result["id"] == working["id"]
    assert result["status"]["state"] == "canceled" and "artifacts" not in result
    stopped = await wait_until(
        lambda: [e for e in errors if e.turn_id == working["id"]], timeout=60, message="the turn ended"
    )
    assert [e.code for e in stopped] == ["TURN_STOPPED"]
    # the stopped turn's own end does not turn the canceled task into a failed one
    got = (await _rpc(gw, _call("tasks/get", working["id"]), path="/a2a/slow/v1")).json()
    assert got["result"]["status"]["state"] == "canceled"


async def test_canceling_a_queued_task_stops_it_and_only_it(
    gw: Gateway, model: FakeModelServer, errors: list[TurnError]
) -> None:
    """Two tasks of one context are two turns of one session, run one after the other: the
    second, canceled while it waits behind the first, never runs; the first runs on."""
    release = asyncio.Event()
    model.script("m-slow", Gate(release))

    async def send(text: str) -> dict[str, Any]:
        body = _send("message/send", text, contextId="ctx-queue", messageId=f"m-{text}")
        body["params"]["configuration"] = {"blocking": False}
        result: dict[str, Any] = (await _rpc(gw, body, path="/a2a/slow/v1")).json()["result"]
        return result

    running = await send("first")
    await wait_until(lambda: model.requests, timeout=60, message="the first task's model call")
    queued = await send("second")
    canceled = (await _rpc(gw, _call("tasks/cancel", queued["id"]), path="/a2a/slow/v1")).json()
    assert canceled["result"]["status"]["state"] == "canceled"
    release.set()

    async def state(task_id: str) -> str:
        got = (await _rpc(gw, _call("tasks/get", task_id), path="/a2a/slow/v1")).json()
        return str(got["result"]["status"]["state"])

    async def first_done() -> bool:
        return await state(running["id"]) == "completed"

    await wait_until(first_done, timeout=60, message="the first task completed")
    stopped = await wait_until(
        lambda: [e for e in errors if e.turn_id == queued["id"]], timeout=60, message="the second turn ended"
    )
    assert [e.code for e in stopped] == ["TURN_STOPPED"]
    assert not [e for e in errors if e.turn_id == running["id"]]
    assert await state(queued["id"]) == "canceled"
    assert len(model.requests) == 1  # the canceled task never reached the model


async def test_a_completed_task_is_not_cancelable_by_either_name(gw: Gateway) -> None:
    done = (await _rpc(gw, _send("message/send", "quick", contextId="ctx-done"))).json()["result"]
    assert done["status"]["state"] == "completed"
    for method in ("CancelTask", "tasks/cancel"):
        refused = (await _rpc(gw, _call(method, done["id"]))).json()
        assert refused["error"]["code"] == -32002, (method, refused)
        assert "completed" in refused["error"]["message"]
    for method in ("CancelTask", "tasks/cancel"):
        unknown = (await _rpc(gw, _call(method, "no-such-task"))).json()
        assert unknown["error"]["code"] == -32001, (method, unknown)
    got = (await _rpc(gw, _call("GetTask", done["id"]))).json()
    assert got["result"]["status"]["state"] == "TASK_STATE_COMPLETED"
