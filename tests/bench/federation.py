"""A cross-region turn beside a local turn (`python -m tests.bench.federation`).

A hub and two regions (sg, eu) on loopback, echo model. By default each region is what a user
runs: `clawmesh deploy federation` writes the hub's and the leaves' configs, the hub is a
nats-server, and each region is its own `clawmesh up --region R --federate R.leaf` process (its
embedded NATS joining the hub as a leaf). `--in-process` runs the three nats-servers with both
gateways inside this process instead (one event loop for both regions and the load generator).
At c=1, interleaved so machine noise hits all alike, it times:

- `leaf rr`: a raw NATS request from eu answered in sg, through the hub (the baseline: one
  leaf round trip each way, hub in between);
- `local rr`: a raw NATS request/reply inside eu;
- `local turn`: an HTTP turn of an eu agent (`POST /v1/messages`, wait for the reply);
- `remote turn`: an HTTP turn of eu's agent `far`, which runs as sg's agent `worker`.

The issue's goal is remote ≤ local + 2 leaf round trips. A remote turn is two turns (eu's proxy
turn and sg's own turn, each through its router and runner), so the printed ratio
`(remote − local) / local` says how much of the extra is sg's turn and how much is the link.

    python -m tests.bench.federation [--quick] [--in-process] [--json PATH] [--turns N]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from subprocess import DEVNULL
from typing import Any

import httpx
import nats
from nats.aio.msg import Msg

from clawmesh.bus import find_nats_server
from clawmesh.natsauth import embedded_admin
from tests.bench._common import machine, median, percentile, print_table, write_json
from tests.fixtures.federation import federation
from tests.fixtures.gateway import ROOT
from tests.fixtures.ports import free_ports

_TOKEN = "bench-token"

SG: dict[str, Any] = {
    "gateway": {"region": "sg", "federation": {"exposeAgents": ["worker"]}},
    "agents": {"defaults": {"model": "echo/sg"}, "list": [{"id": "worker", "default": True}]},
}
EU: dict[str, Any] = {
    "gateway": {"region": "eu"},
    "agents": {
        "defaults": {"model": "echo/eu"},
        "list": [
            {"id": "main", "default": True},
            {"id": "far", "runnerType": "openclawx", "openclawx": {"gateway": "sg", "agentId": "worker"}},
        ],
    },
}


async def _timed(fn: Callable[[], Awaitable[None]]) -> float:
    t0 = time.perf_counter()
    await fn()
    return (time.perf_counter() - t0) * 1e3


@dataclasses.dataclass
class _Regions:
    http: httpx.AsyncClient  # eu's HTTP API
    urls: dict[str, str]  # each region's NATS, as its admin


@contextlib.asynccontextmanager
async def _in_process(tmp: Path) -> AsyncIterator[_Regions]:
    async with federation(tmp, {"sg": SG, "eu": EU}) as fed:
        http = fed.gateways["eu"].client(timeout=60)
        try:
            yield _Regions(http, {r: fed.url(r) for r in ("sg", "eu")})
        finally:
            await http.aclose()


@contextlib.asynccontextmanager
async def _processes(tmp: Path) -> AsyncIterator[_Regions]:
    """`clawmesh deploy federation`, the hub, and a `clawmesh up` per region, as a user runs them."""
    cli = [sys.executable, "-m", "clawmesh_gateway"]
    out = tmp / "fed"
    leaf_port, client_port = free_ports(2)
    subprocess.run(
        [
            *cli,
            *("deploy", "federation", "--region", "sg", "--region", "eu", "--hub-host", "127.0.0.1"),
            *("--leaf-port", str(leaf_port), "--leaf-listen", "127.0.0.1"),
            *("--client-port", str(client_port), "--out", str(out)),
        ],
        check=True,
        capture_output=True,
        cwd=ROOT,
    )
    procs = [
        subprocess.Popen(
            [find_nats_server(), "-c", str(out / "hub.conf")], cwd=tmp, stdout=DEVNULL, stderr=DEVNULL
        )
    ]
    urls: dict[str, str] = {}
    try:
        for region, config in (("sg", SG), ("eu", EU)):
            home = tmp / region
            home.mkdir()
            path = home / "clawmesh.json"
            path.write_text(
                json.dumps({**config, "gateway": {**config["gateway"], "auth": {"token": _TOKEN}}})
            )
            env = {
                **os.environ,
                "HOME": str(home),
                "CLAWMESH_STATE_DIR": str(home / "state"),
                "NO_COLOR": "1",
            }
            up = [*cli, "--config", str(path), "up", "--port", "0", "--nats-port", "0", "--json-ready"]
            log = home / "up.log"
            with log.open("w") as stderr:
                proc = subprocess.Popen(
                    [*up, "--region", region, "--federate", str(out / f"{region}.leaf")],
                    env=env,
                    stdout=subprocess.PIPE,
                    stderr=stderr,
                    text=True,
                    cwd=ROOT,
                )
            procs.append(proc)
            assert proc.stdout is not None
            line = await asyncio.to_thread(proc.stdout.readline)  # until ready, or it exited
            if not line:
                tail = log.read_text()[-2000:]
                raise RuntimeError(f"clawmesh up ({region}) exited with {proc.wait(10)}:\n{tail}")
            ready = json.loads(line)
            admin = embedded_admin(home / "state")
            assert admin is not None, f"clawmesh up ({region}) generated no NATS users"
            host = ready["nats"].removeprefix("nats://")
            urls[region] = f"nats://{admin[0]}:{admin[1]}@{host}"
            if region == "eu":
                base = ready["url"]
        headers = {"Authorization": f"Bearer {_TOKEN}"}
        async with httpx.AsyncClient(base_url=base, headers=headers, timeout=60) as http:
            yield _Regions(http, urls)
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


async def run(turns: int, *, in_process: bool = False) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="cm-bench-fed-") as tmp:
        regions = _in_process(Path(tmp)) if in_process else _processes(Path(tmp))
        async with regions as fed:
            sg_nc = await nats.connect(fed.urls["sg"])
            eu_nc = await nats.connect(fed.urls["eu"])
            eu_nc2 = await nats.connect(fed.urls["eu"])

            async def echo(msg: Msg) -> None:
                await msg.respond(msg.data)

            await sg_nc.subscribe("cm.gw.sg.bench", cb=echo)
            await eu_nc2.subscribe("cm.bench.local", cb=echo)
            await sg_nc.flush()
            await eu_nc2.flush()
            http = fed.http

            async def turn(agent: str) -> None:
                r = await http.post("/v1/messages?wait=60", json={"text": "ping", "agentId": agent})
                body = r.json()
                if r.status_code != 200 or body.get("text") != "echo: ping":
                    raise RuntimeError(f"{agent}: HTTP {r.status_code} {body}")

            async def leaf_rr() -> None:
                await eu_nc.request("cm.gw.sg.bench", b"x", timeout=5)

            async def local_rr() -> None:
                await eu_nc.request("cm.bench.local", b"x", timeout=5)

            # warm up (and wait for the leaf links and the interest to propagate)
            deadline = time.monotonic() + 30
            while True:
                try:
                    await leaf_rr()
                    await turn("far")
                    break
                except Exception:
                    if time.monotonic() > deadline:
                        raise
                    await asyncio.sleep(0.1)
            for _ in range(20):
                await turn("main")
                await turn("far")
            samples: dict[str, list[float]] = {
                "leaf rr": [],
                "local rr": [],
                "local turn": [],
                "remote turn": [],
            }
            for _ in range(turns):
                samples["leaf rr"].append(await _timed(leaf_rr))
                samples["local rr"].append(await _timed(local_rr))
                samples["local turn"].append(await _timed(lambda: turn("main")))
                samples["remote turn"].append(await _timed(lambda: turn("far")))
            for c in (sg_nc, eu_nc, eu_nc2):
                await c.close()
    out: dict[str, Any] = {
        "benchmark": "federation",
        "turns": turns,
        "gateways": "in-process" if in_process else "processes",
    }
    out["machine"] = machine()
    for name, values in samples.items():
        s = sorted(values)
        out[name] = {"p50_ms": median(s), "p90_ms": percentile(s, 90), "p99_ms": percentile(s, 99)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="fewer turns")
    parser.add_argument("--turns", type=int, default=0)
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="both regions' gateways in this process (one event loop), not `clawmesh up` processes",
    )
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    turns = args.turns or (40 if args.quick else 200)
    result = asyncio.run(run(turns, in_process=args.in_process))
    rows = [
        [
            name,
            f"{result[name]['p50_ms']:.2f}",
            f"{result[name]['p90_ms']:.2f}",
            f"{result[name]['p99_ms']:.2f}",
        ]
        for name in ("leaf rr", "local rr", "local turn", "remote turn")
    ]
    print_table(
        ["c=1", "p50 ms", "p90 ms", "p99 ms"],
        rows,
        title=f"federation ({result['gateways']}): {turns} of each, interleaved",
    )
    leaf, local, remote = (result[k]["p50_ms"] for k in ("leaf rr", "local turn", "remote turn"))
    extra = remote - local
    result["remote_minus_local_ms"] = extra
    result["extra_in_leaf_rtts"] = extra / leaf if leaf else float("nan")
    result["remote_over_local"] = remote / local if local else float("nan")
    print(
        f"remote turn − local turn = {extra:.2f} ms = {result['extra_in_leaf_rtts']:.1f} leaf round trips "
        f"(goal ≤ 2); remote / local = {result['remote_over_local']:.2f}×"
    )
    if args.json:
        write_json(args.json, result)


if __name__ == "__main__":
    main()
