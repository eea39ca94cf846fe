"""A cross-region turn beside a local turn (`python -m tests.bench.federation`).

A hub and two regions (sg, eu) as nats-servers on loopback, a whole gateway per region in this
process (echo model). At c=1, interleaved so machine noise hits all alike, it times:

- `leaf rr`: a raw NATS request from eu answered in sg, through the hub (the baseline: one
  leaf round trip each way, hub in between);
- `local rr`: a raw NATS request/reply inside eu;
- `local turn`: an HTTP turn of an eu agent (`POST /v1/messages`, wait for the reply);
- `remote turn`: an HTTP turn of eu's agent `far`, which runs as sg's agent `worker`.

The issue's goal is remote ≤ local + 2 leaf round trips. A remote turn is two turns (eu's proxy
turn and sg's own turn, each through its router and runner), so the printed ratio
`(remote − local) / local` says how much of the extra is sg's turn and how much is the link.

    python -m tests.bench.federation [--quick] [--json PATH] [--turns N]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import nats
from nats.aio.msg import Msg

from tests.bench._common import machine, median, percentile, print_table, write_json
from tests.fixtures.federation import federation

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


async def run(turns: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="cm-bench-fed-") as tmp:
        async with federation(Path(tmp), {"sg": SG, "eu": EU}) as fed:
            eu_gw = fed.gateways["eu"]
            sg_nc = await nats.connect(fed.url("sg"))
            eu_nc = await nats.connect(fed.url("eu"))
            eu_nc2 = await nats.connect(fed.url("eu"))

            async def echo(msg: Msg) -> None:
                await msg.respond(msg.data)

            await sg_nc.subscribe("cm.gw.sg.bench", cb=echo)
            await eu_nc2.subscribe("cm.bench.local", cb=echo)
            await sg_nc.flush()
            await eu_nc2.flush()
            http = eu_gw.client(timeout=60)

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
            await http.aclose()
            for c in (sg_nc, eu_nc, eu_nc2):
                await c.close()
    out: dict[str, Any] = {"turns": turns, "machine": machine()}
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
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    turns = args.turns or (40 if args.quick else 200)
    result = asyncio.run(run(turns))
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
        ["c=1", "p50 ms", "p90 ms", "p99 ms"], rows, title=f"federation: {turns} of each, interleaved"
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
