"""`clawmesh deploy federation` + two `clawmesh up --region R --federate R.leaf` gateways and a
hub nats-server: the regions' embedded NATS servers join the hub, gateway requests cross, and
each region keeps its JetStream in its own domain."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import nats
import pytest
from nats.aio.msg import Msg
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout

from clawmesh.bus import find_nats_server
from tests.e2e.test_up import CLI, CONFIG, Up
from tests.fixtures.gateway import ROOT, wait_until
from tests.fixtures.ports import free_ports


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[Path]:
    out = tmp_path / "fed"
    leaf_port, client_port = free_ports(2)
    done = subprocess.run(
        [
            *CLI,
            "deploy",
            "federation",
            "--region",
            "sg",
            "--region",
            "eu",
            "--hub-host",
            "127.0.0.1",
            "--leaf-port",
            str(leaf_port),
            "--leaf-listen",
            "127.0.0.1",
            "--client-port",
            str(client_port),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    assert "hub.conf" in done.stdout and "sg.leaf" in done.stdout
    assert all((out / f).stat().st_mode & 0o777 == 0o600 for f in ("hub.conf", "sg.leaf", "eu.leaf"))
    proc = subprocess.Popen(
        [find_nats_server(), "-c", str(out / "hub.conf")],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield out
    finally:
        proc.terminate()
        proc.wait(10)


def _admin(home: Path) -> tuple[str, str]:
    users = json.loads((home / "state" / "nats-auth" / "users.json").read_text())["users"]
    return users["admin"]["user"], users["admin"]["password"]


SG = {
    **CONFIG,
    "gateway": {**CONFIG["gateway"], "federation": {"exposeAgents": ["work"], "catalogSeconds": 0.5}},
}
EU = {
    **CONFIG,
    "gateway": {**CONFIG["gateway"], "federation": {"catalogSeconds": 0.5}},
    "agents": {
        **CONFIG["agents"],
        "list": [
            *CONFIG["agents"]["list"],
            {"id": "far", "runnerType": "openclawx", "openclawx": {"gateway": "sg", "agentId": "work"}},
        ],
    },
}


def test_two_regions_join_the_hub_and_reach_each_other(tmp_path: Path, hub: Path) -> None:
    gateways = {}
    try:
        for region, config in (("sg", SG), ("eu", EU)):
            home = tmp_path / region
            home.mkdir()
            cfg = home / "clawmesh.json"
            cfg.write_text(json.dumps(config))
            gateways[region] = Up(home, cfg, "--region", region, "--federate", str(hub / f"{region}.leaf"))
        asyncio.run(_cross_region(tmp_path, gateways))
        eu = gateways["eu"]
        # a turn of eu's agent `far` runs on sg's agent `work`, through the CLI as a user sends it
        deadline = time.monotonic() + 60
        while True:
            sent = eu.cli("send", "--agent", "far", "hello from eu")
            if sent.returncode == 0 or time.monotonic() > deadline:
                break
        assert sent.returncode == 0, sent.stdout + sent.stderr
        assert "echo: hello from eu" in sent.stdout
        # eu lists sg's agents once sg's catalogue arrived
        while True:
            listed = eu.cli("agents", "list", "--all-gateways", "--json")
            rows = json.loads(listed.stdout) if listed.returncode == 0 else []
            if any(r.get("gateway") == "sg" for r in rows) or time.monotonic() > deadline:
                break
        assert listed.returncode == 0, listed.stderr
        remote = {r["id"]: r for r in rows if r.get("gateway") == "sg"}
        assert remote["work"]["exposed"] is True and remote["home"].get("exposed", False) is False
        assert remote["work"]["gatewayGone"] is False  # sg was heard from moments ago
        assert {r["id"] for r in rows if r.get("gateway") == "eu"} == {"home", "work", "far"}
        # `status` names the region and the leaf link to the hub
        status = eu.cli("status", "--json")
        assert status.returncode == 0, status.stderr
        fed = json.loads(status.stdout)["federation"]
        assert fed["region"] == "eu" and fed["link"]["links"] >= 1 and "loop" not in fed["link"]
        plain = eu.cli("status")
        assert "federation region eu  link to the hub up" in plain.stdout
    finally:
        for g in gateways.values():
            if g.proc.poll() is None:
                g.proc.kill()
                g.proc.wait(10)


async def _cross_region(tmp_path: Path, gateways: dict[str, Up]) -> None:
    conns = {}
    for region, g in gateways.items():
        user, password = _admin(tmp_path / region)
        conns[region] = await nats.connect(g.ready["nats"], user=user, password=password)
    sg, eu = conns["sg"], conns["eu"]
    try:

        async def answer(msg: Msg) -> None:
            await msg.respond(b"from sg: " + msg.data)

        await sg.subscribe("cm.gw.sg.ping", cb=answer)
        await sg.flush()

        async def reached() -> Msg | None:
            try:
                return await eu.request("cm.gw.sg.ping", b"hello", timeout=1)
            except (NoRespondersError, NatsTimeout):
                return None

        reply = await wait_until(reached, 30, interval=0.1, message="eu reaching sg through the hub")
        assert reply.data == b"from sg: hello"
        # Each region's JetStream answers in its own domain (the region's name).
        info = await sg.jetstream(domain="sg").account_info()
        assert info.streams >= 1
        assert (await eu.jetstream(domain="eu").account_info()).streams >= 1
    finally:
        for c in conns.values():
            await c.close()


def test_federate_needs_a_region_and_a_readable_leaf_file(tmp_path: Path) -> None:
    cfg = tmp_path / "clawmesh.json"
    cfg.write_text(json.dumps(CONFIG))
    env_home = {
        "HOME": str(tmp_path),
        "CLAWMESH_STATE_DIR": str(tmp_path / "state"),
        "NO_COLOR": "1",
        "PATH": "/usr/bin:/bin",
    }
    cases = [
        (["--federate", "nats-leaf://u:p@127.0.0.1:1"], "--federate and --region go together"),
        (["--region", "Bad!", "--federate", "nats-leaf://u:p@127.0.0.1:1"], "not a valid region name"),
        (
            ["--region", "sg", "--federate", str(tmp_path / "missing.leaf")],
            "not a nats-leaf:// URL and not a readable file",
        ),
        (
            [
                "--region",
                "sg",
                "--federate",
                "nats-leaf://u:p@127.0.0.1:1",
                "--nats-url",
                "nats://127.0.0.1:1",
            ],
            "with --nats-url",
        ),
    ]
    for args, expected in cases:
        done = subprocess.run(
            [*CLI, "--config", str(cfg), "up", "--port", "0", "--nats-port", "0", *args],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=ROOT,
            env=env_home,
        )
        assert done.returncode != 0, args
        assert expected in done.stdout + done.stderr, (args, done.stdout, done.stderr)
