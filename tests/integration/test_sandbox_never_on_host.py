"""A session that must be sandboxed never runs a tool on the host, whatever Docker does: no
engine at all, or an engine that answers but fails. For exec and for the file tools alike.

No real Docker is needed: "no engine" is a socket nobody listens on, and "an engine that
fails" is a fake Docker API that answers pings and listings but knows no image.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import nats
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from clawmesh.httpserver import EmbeddedHTTPServer
from tests.fakes.models import FakeModelServer, Text, ToolCall
from tests.fixtures.gateway import run_gateway
from tests.fixtures.sse import sse_events

SECRET = "host-only secret"


def _fake_engine() -> Starlette:
    """Just enough of the Docker Engine API to look healthy: ping, version, an empty container
    list. Every container and image is missing and every other call fails."""

    async def ping(_: Request) -> Response:
        return PlainTextResponse("OK", headers={"Api-Version": "1.44"})

    async def version(_: Request) -> Response:
        return JSONResponse({"ApiVersion": "1.44", "MinAPIVersion": "1.24", "Version": "27.0.0-fake"})

    async def containers(_: Request) -> Response:
        return JSONResponse([])

    async def container(request: Request) -> Response:
        return JSONResponse({"message": f"No such container: {request.path_params['name']}"}, status_code=404)

    async def image(request: Request) -> Response:
        return JSONResponse({"message": f"No such image: {request.path_params['name']}"}, status_code=404)

    async def other(request: Request) -> Response:
        return JSONResponse({"message": f"fake engine cannot {request.url.path}"}, status_code=500)

    routes = []
    for prefix in ("", "/v{api}"):
        routes += [
            Route(prefix + "/_ping", ping, methods=["GET", "HEAD"]),
            Route(prefix + "/version", version),
            Route(prefix + "/containers/json", containers),
            Route(prefix + "/containers/{name}/json", container),
            Route(prefix + "/images/{name:path}/json", image),
        ]
    routes.append(Route("/{rest:path}", other, methods=["GET", "POST", "PUT", "DELETE", "HEAD"]))
    return Starlette(routes=routes)


@pytest.fixture
async def fake() -> AsyncIterator[FakeModelServer]:
    async with FakeModelServer() as server:
        yield server


def _config(fake: FakeModelServer, tmp_path: Path) -> dict[str, Any]:
    return {
        "agents": {
            "defaults": {
                "model": "openai/fake-model",
                "sandbox": {
                    "mode": "all",
                    "workspaceAccess": "rw",
                    "docker": {"image": "clawmesh-test-no-such-image:never"},
                },
            },
            "list": [{"id": "main", "default": True, "workspace": str(tmp_path / "ws")}],
        },
        "models": {"providers": {"openai": {"baseUrl": fake.base_url + "/v1", "apiKey": "sk-test"}}},
        "nodes": {"heartbeatSeconds": 0.5},
    }


async def _every_tool_refused(
    fake: FakeModelServer, nats_url: str, tmp_path: Path, code: str
) -> list[dict[str, Any]]:
    """Ask for exec, write, edit, read and ls; return the tool results (after checking that
    nothing reached the host)."""
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "secret.txt").write_text(SECRET)
    marker = tmp_path / "ran-on-host"
    fake.script(
        ToolCall("exec", {"command": f"touch {marker}"}),
        ToolCall("write", {"path": "note.txt", "content": "written on the host?"}),
        ToolCall("edit", {"path": "secret.txt", "oldText": "secret", "newText": "leaked"}),
        ToolCall("read", {"path": "secret.txt"}),
        ToolCall("ls", {"path": "."}),
        Text("could not"),
    )
    services = ("ingress", "router", "runner", "node-agent")
    async with run_gateway(nats_url, _config(fake, tmp_path), tmp_path, services=services) as gw:
        async with gw.client(timeout=120) as http:
            r = await http.post("/v1/messages", json={"text": "try"}, headers={"Accept": "text/event-stream"})
        assert r.status_code == 200
    events = sse_events(r.text)
    results = [d for e, d in events if e == "tool_result"]
    assert [d["name"] for d in results] == ["exec", "write", "edit", "read", "ls"]
    for result in results:
        assert result["isError"] is True, result
        assert code in result["content"], result
        assert SECRET not in result["content"] and "secret.txt" not in result["content"], result
    assert not marker.exists()
    assert sorted(p.name for p in ws.iterdir()) == ["secret.txt"]
    assert (ws / "secret.txt").read_text() == SECRET
    assert events[-1][1]["text"] == "could not"
    return results


async def test_no_docker_engine_no_tool_on_the_host(
    fake: FakeModelServer, nats_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-docker.sock")
    results = await _every_tool_refused(fake, nats_url, tmp_path, "SANDBOX_UNAVAILABLE")
    assert all("refusing to run on the host" in r["content"] for r in results)


@pytest.fixture
async def failing_engine(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[None]:
    """`_fake_engine` running, as this process's Docker engine."""
    engine = EmbeddedHTTPServer(_fake_engine(), "127.0.0.1", 0)
    await engine.start()
    try:
        monkeypatch.setenv("DOCKER_HOST", f"tcp://127.0.0.1:{engine.port}")
        for var in ("DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH", "DOCKER_CONTEXT"):
            monkeypatch.delenv(var, raising=False)
        yield
    finally:
        await engine.stop()


async def test_failing_docker_engine_no_tool_on_the_host(
    fake: FakeModelServer, nats_url: str, tmp_path: Path, failing_engine: None
) -> None:
    results = await _every_tool_refused(fake, nats_url, tmp_path, "SANDBOX_ERROR")
    assert all("clawmesh-test-no-such-image:never" in r["content"] for r in results), [
        r["content"] for r in results
    ]


async def test_sandbox_recreate_reads_its_request_strictly(
    fake: FakeModelServer, nats_url: str, tmp_path: Path, failing_engine: None
) -> None:
    """`clawmesh sandbox recreate`'s request was read with `bool(ask.get("all"))`: `"all":
    "false"` meant every sandbox of the node. It is decoded as a struct; a wrong type is an
    error naming the field, and nothing is removed."""
    async with run_gateway(nats_url, _config(fake, tmp_path), tmp_path, services=("node-agent",)):
        nc = await nats.connect(nats_url)
        try:

            async def ask(body: bytes) -> dict[str, Any]:
                reply = await nc.request("cm.ctl.sandbox.recreate", body, timeout=10)
                return dict(json.loads(reply.data))

            refused = await ask(b'{"all": "false"}')
            assert refused["removed"] == 0
            assert refused["error"] == "sandbox recreate: Expected `bool`, got `str` - at `$.all`"
            assert "Expected `str | null`, got `int`" in (await ask(b'{"agentId": 7}'))["error"]
            assert "error" not in await ask(b'{"agentId": "main"}')  # the fake engine has none
            assert "error" not in await ask(b'{"all": true}')
            assert "needs agent_id" in (await ask(b"{}"))["error"]  # neither: nothing removed
        finally:
            await nc.close()
