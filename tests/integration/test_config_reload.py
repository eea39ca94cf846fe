"""`clawmesh config reload` against services that run as separate OS processes.

Each process holds its own config, so every one of them must answer the reload and report the
new version; and the change must show in what each does next. The edits keep the file's
modification time, so the services' file watcher cannot be what reloads them.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest
import pytest_asyncio

from tests.fixtures.files import replace_unseen
from tests.fixtures.gateway import ROOT, ServiceProcess, wait_until, write_config

pytestmark = pytest.mark.slow

SERVICES = ("ingress", "router", "runner")
TOKEN = "reload-token"


def _config(model: str, bindings: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {
        "agents": {"defaults": {"model": model}, "list": [{"id": "home", "default": True}, {"id": "work"}]},
        "bindings": bindings or [],
        "gateway": {"port": 0, "auth": {"token": TOKEN}},
    }


async def _info(nc: Any, service: str) -> list[dict[str, Any]]:
    """$SRV.INFO replies of one service (every instance answers)."""
    inbox = nc.new_inbox()
    found: list[dict[str, Any]] = []

    async def cb(msg: Any) -> None:
        if msg.data:
            found.append(json.loads(msg.data))

    sub = await nc.subscribe(inbox, cb=cb)
    try:
        await nc.publish(f"$SRV.INFO.clawmesh-{service}", b"", reply=inbox)
        await nc.flush()
        await wait_until(lambda: found, timeout=2, interval=0.05, message=f"{service} info")
    except AssertionError:
        pass
    finally:
        await sub.unsubscribe()
    return found


@pytest_asyncio.fixture
async def processes(nats_url: str, tmp_path: Path) -> AsyncIterator[tuple[Path, dict[str, Any], str]]:
    """ingress, router and runner, one OS process each; yields (config path, env, ingress URL)."""
    path = write_config(tmp_path / "clawmesh.json", _config("echo/one"))
    state = tmp_path / "state"
    state.mkdir()
    env = {**os.environ, "CLAWMESH_STATE_DIR": str(state), "HOME": str(tmp_path), "NO_COLOR": "1"}
    procs = [ServiceProcess(name, path, nats_url, env, tmp_path / f"{name}.log") for name in SERVICES]
    nc = await nats.connect(nats_url)
    try:
        for name in SERVICES:
            infos = await wait_until(
                lambda name=name: _info(nc, name), timeout=60, interval=0.2, message=f"{name} process"
            )
            assert len(infos) == 1
        reply = await nc.request("cm.ctl.status.ingress", b"", timeout=10)
        url = json.loads(reply.data)["url"]
        yield path, env, url
    finally:
        await nc.close()
        for p in procs:
            p.kill()


def _cli(env: dict[str, Any], path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "clawmesh_gateway", "--config", str(path), *args],
        env={**env, "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )


async def _send(url: str, channel: str) -> dict[str, Any]:
    async with httpx.AsyncClient(
        base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30
    ) as http:
        r = await http.post("/v1/messages?wait=30", json={"text": "hi", "channel": channel})
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def test_config_reload_command_reloads_every_process(
    processes: tuple[Path, dict[str, Any], str], nats_url: str
) -> None:
    path, env, url = processes
    first = await _send(url, "telegram")
    assert first["agentId"] == "home" and first["model"] == "echo/one"

    # one change for the router (a binding) and one for the runner (the model)
    replace_unseen(
        path,
        json.dumps(_config("echo/two", [{"agentId": "work", "match": {"channel": "telegram"}}])),
    )
    done = await asyncio.to_thread(_cli, env, path, "config", "reload", "--nats-url", nats_url)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = [line.split() for line in done.stdout.splitlines() if line.strip()]
    assert sorted(line[0] for line in lines) == sorted(SERVICES), done.stdout
    # every process read the file itself: each reports a change and they all agree on the version
    assert all(line[2] == "reloaded" for line in lines), done.stdout
    versions = {line[-1].rstrip(")") for line in lines}
    assert len(versions) == 1, done.stdout

    second = await _send(url, "telegram")
    assert second["agentId"] == "work"  # the router process reloaded
    assert second["model"] == "echo/two"  # the runner process reloaded

    # nothing changed: every process says so
    again = await asyncio.to_thread(_cli, env, path, "config", "reload", "--nats-url", nats_url)
    assert again.returncode == 0 and again.stdout.count("unchanged") == 3, again.stdout

    # an invalid file: the command names the problem (it reads the file too) …
    replace_unseen(
        path,
        json.dumps(
            {"agents": {"list": [{"id": "a"}]}, "bindings": [{"agentId": "ghost", "match": {"channel": "x"}}]}
        ),
    )
    refused = await asyncio.to_thread(_cli, env, path, "config", "reload", "--nats-url", nats_url)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "unknown agent 'ghost'" in refused.stderr
    # … and every process asked to reload it refuses, keeping its version and its behaviour
    replies = await _reload_all(nats_url, len(SERVICES))
    assert sorted(r["service"] for r in replies) == sorted(SERVICES)
    assert not any(r["ok"] for r in replies) and {r["version"] for r in replies} == versions
    assert all(any("unknown agent 'ghost'" in e for e in r["errors"]) for r in replies)
    third = await _send(url, "telegram")
    assert (third["agentId"], third["model"]) == ("work", "echo/two")


async def _reload_all(nats_url: str, want: int) -> list[dict[str, Any]]:
    """Ask every instance to reload (what the command sends), collecting `want` replies."""
    nc = await nats.connect(nats_url)
    replies: list[dict[str, Any]] = []
    try:
        inbox = nc.new_inbox()

        async def cb(msg: Any) -> None:
            replies.append(json.loads(msg.data))

        await nc.subscribe(inbox, cb=cb)
        await nc.publish("cm.ctl.config.reload", b"", reply=inbox)
        await wait_until(lambda: len(replies) >= want, timeout=30, message=f"{want} reload replies")
    finally:
        await nc.close()
    return replies


def test_config_reload_without_a_gateway_says_so(tmp_path: Path, nats_url: str) -> None:
    path = write_config(tmp_path / "clawmesh.json", _config("echo/one"))
    done = _cli(dict(os.environ), path, "config", "reload", "--nats-url", nats_url)
    assert done.returncode == 1
    assert "no service answered the reload request" in done.stderr
