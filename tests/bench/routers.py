"""Routing throughput with 1, 2 and 4 partitioned routers (`python -m tests.bench.routers`).

For each router count R, a fresh nats-server on loopback and R router processes
(`clawmesh service router`, `runtime.routerPartitions` 8); once the partitions are shared out,
this process stores M messages in CM_INBOUND as ingress does (keyed subjects, dedupe ids, 256
in flight, many peers) and times until CM_TURNS holds all M turns. Also shown: the single-router
layout (`routerPartitions` 1, today's leader lease), and the routers' CPU time per message
(from /proc), the input of the projection in docs/architecture.md.

Baseline, same run, same server kind: raw JetStream publishes of the same messages at the same
concurrency (what storing them costs before anyone routes them). Everything shares this
machine's cores, so past the core count more routers cannot add throughput here; the ratios
say how far routing gets towards the publish rate.

    python -m tests.bench.routers [--quick] [--json PATH] [--messages M] [--routers 1,2,4]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import nats

from clawmesh.bus import NatsServer
from clawmesh.wire import InboundMessage, Peer, Subjects, encode_msgpack
from tests.bench._common import fmt_rate, machine, print_table, write_json
from tests.fixtures.gateway import ServiceProcess, wait_until, write_config

PARTITIONS = 8
IN_FLIGHT = 256
PEERS = 500
_TICK = os.sysconf("SC_CLK_TCK")


def _messages(count: int, tag: str) -> list[InboundMessage]:
    return [
        InboundMessage(
            id=f"{tag}-{i}", channel="api", text="hi", peer=Peer(kind="direct", id=f"u{i % PEERS}")
        )
        for i in range(count)
    ]


async def _publish(
    js: Any, subjects: Subjects, msgs: list[InboundMessage], stream_subject: str | None
) -> None:
    """Store `msgs` with IN_FLIGHT publishes outstanding (`stream_subject`: all to one subject)."""
    queue = iter(msgs)

    async def worker() -> None:
        for msg in queue:
            data, headers = encode_msgpack(msg)
            headers["Nats-Msg-Id"] = msg.id
            await js.publish(stream_subject or subjects.inbound_of(msg), data, headers=headers)

    await asyncio.gather(*(worker() for _ in range(IN_FLIGHT)))


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK  # utime + stime


async def _balanced(nc: Any, want: int, partitions: int) -> bool:
    inbox = nc.new_inbox()
    found: dict[str, list[int]] = {}

    async def cb(msg: Any) -> None:
        if msg.data:  # not a "no responders" notice
            body = json.loads(msg.data)
            found[body["instance"]] = body["partitions"]

    sub = await nc.subscribe(inbox, cb=cb)
    await nc.publish("cm.ctl.status.router", b"", reply=inbox)
    await nc.flush()
    with_timeout = asyncio.get_running_loop().time() + 1.0
    while len(found) < want and asyncio.get_running_loop().time() < with_timeout:
        await asyncio.sleep(0.05)
    await sub.unsubscribe()
    sizes = [len(p) for p in found.values()]
    held = sorted(p for parts in found.values() for p in parts)
    return len(found) == want and held == list(range(partitions)) and max(sizes) - min(sizes) <= 1


async def _baseline(count: int) -> float:
    """Raw JetStream publishes per second (a stream on `bench.>`, same messages)."""
    from nats.js.api import StreamConfig

    with tempfile.TemporaryDirectory(prefix="cm-bench-routers-") as tmp:
        async with NatsServer(store_dir=Path(tmp) / "js", work_dir=Path(tmp)) as srv:
            nc = await nats.connect(srv.url)
            js = nc.jetstream()
            await js.add_stream(StreamConfig(name="BENCH", subjects=["bench.>"], duplicate_window=120.0))
            msgs = _messages(count, "b")
            t0 = time.perf_counter()
            await _publish(js, Subjects(), msgs, "bench.in")
            seconds = time.perf_counter() - t0
            await nc.close()
            return count / seconds


async def _routed(count: int, routers: int, partitions: int) -> dict[str, float]:
    """Messages routed per second by `routers` processes, and their CPU per message."""
    with tempfile.TemporaryDirectory(prefix="cm-bench-routers-") as tmp:
        work = Path(tmp)
        async with NatsServer(store_dir=work / "js", work_dir=work) as srv:
            config = write_config(
                work / "clawmesh.json",
                {
                    "agents": {"defaults": {"model": "echo/x"}, "list": [{"id": "main", "default": True}]},
                    "session": {"dmScope": "per-peer"},
                    "runtime": {"routerPartitions": partitions},
                },
            )
            env = {**os.environ, "CLAWMESH_STATE_DIR": str(work / "state"), "HOME": tmp}
            procs = [
                ServiceProcess("router", config, srv.url, env, work / f"router-{i}.log")
                for i in range(routers)
            ]
            nc = await nats.connect(srv.url)
            try:
                await wait_until(
                    lambda: _balanced(nc, routers, partitions), timeout=120, message="routers sharing out"
                )
                js = nc.jetstream()
                subjects = Subjects("cm", keyed_inbound=partitions > 1)
                msgs = _messages(count, f"r{routers}")
                cpu0 = sum(_cpu_seconds(p.proc.pid) for p in procs)
                t0 = time.perf_counter()
                await _publish(js, subjects, msgs, None)
                stored = time.perf_counter() - t0

                async def done() -> bool:
                    return int((await js.stream_info("CM_TURNS")).state.messages) >= count

                await wait_until(done, timeout=600, interval=0.02, message="every message routed")
                seconds = time.perf_counter() - t0
                cpu = sum(_cpu_seconds(p.proc.pid) for p in procs) - cpu0
            finally:
                for p in procs:
                    p.kill()
                await nc.close()
    return {
        "per_s": count / seconds,
        "stored_per_s": count / stored,
        "cpu_us_per_msg": cpu / count * 1e6,
    }


async def run(count: int, router_counts: list[int]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "benchmark": "routers",
        "machine": machine(),
        "messages": count,
        "partitions": PARTITIONS,
    }
    out["baseline_js_publish_per_s"] = await _baseline(count)
    out["single_leader"] = await _routed(count, 1, 1)
    out["routers"] = {str(r): await _routed(count, r, PARTITIONS) for r in router_counts}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="fewer messages")
    parser.add_argument("--messages", type=int, default=0)
    parser.add_argument("--routers", default="1,2,4")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    count = args.messages or (2_000 if args.quick else 8_000)
    counts = [int(x) for x in args.routers.split(",") if x]
    result = asyncio.run(run(count, counts))
    base = result["baseline_js_publish_per_s"]
    one = result["routers"].get("1", result["single_leader"])["per_s"]
    rows = [["raw JetStream publish (baseline)", fmt_rate(base), "1.00", "-", "-"]]
    leader = result["single_leader"]
    rows.append(
        [
            "1 router, unpartitioned (leader)",
            fmt_rate(leader["per_s"]),
            f"{leader['per_s'] / base:.2f}",
            f"{leader['per_s'] / one:.2f}",
            f"{leader['cpu_us_per_msg']:.0f}",
        ]
    )
    for r, figures in result["routers"].items():
        rows.append(
            [
                f"{r} router(s), {PARTITIONS} partitions",
                fmt_rate(figures["per_s"]),
                f"{figures['per_s'] / base:.2f}",
                f"{figures['per_s'] / one:.2f}",
                f"{figures['cpu_us_per_msg']:.0f}",
            ]
        )
    print_table(
        ["", "msg/s", "÷ baseline", "÷ 1 router", "router CPU µs/msg"],
        rows,
        title=f"routers: {count} messages, {PEERS} peers, {IN_FLIGHT} publishes in flight, {os.cpu_count()} cores",
    )
    if args.json:
        write_json(args.json, result)


if __name__ == "__main__":
    main()
