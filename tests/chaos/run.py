"""One chaos run: start the cluster, warm up without faults, apply the seeded schedule under
load, heal, wait for the replies, check what users received.

    python -m tests.chaos --duration 240 --seed 7       # make chaos ARGS="--seed 7"
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import nats
from nats.aio.client import Client

from .checker import Reply, Report, check, read_outbound, read_transcripts
from .cluster import Cluster
from .faults import Fault, FaultLog, apply_schedule, heal, schedule, supervise
from .load import Load
from .trace import consumers, trace, trace_text

__all__ = ["Options", "Result", "main", "run_chaos"]


@dataclass
class Options:
    seed: int
    duration: float = 240.0  # the chaos phase, seconds
    warmup: float = 30.0  # fault-free load before it (the latency baseline)
    sessions: int = 12
    think: float = 1.0
    retry_window: float = 30.0
    mean_gap: float = 4.0  # mean seconds between two faults
    max_down: float = 6.0
    drain: float = 180.0  # how long the replies of accepted messages may take after healing
    router_partitions: int = 1  # runtime.routerPartitions: > 1, both routers route at once
    work: Path | None = None


@dataclass
class Result:
    options: Options
    faults: list[Fault]
    report: Report
    fault_log: list[str] = field(default_factory=list)
    work: Path | None = None
    trail: dict[str, Any] = field(default_factory=dict)  # where lost messages stopped (`trace`)

    def text(self) -> str:
        lines = [
            f"chaos seed={self.options.seed} duration={self.options.duration}s warmup={self.options.warmup}s "
            f"sessions={self.options.sessions} retry_window={self.options.retry_window}s"
            f" router_partitions={self.options.router_partitions}",
            f"faults ({len(self.faults)}):",
            *(f"  {f}" for f in self.faults),
            "summary: " + json.dumps(self.report.summary(), indent=2),
        ]
        if not self.report.ok:
            lines.append("problems: " + json.dumps(self.report.details(), indent=2))
        if self.trail:
            lines.append(trace_text(self.trail))
        lines.append(f"logs: {self.work}")
        lines.append(f"result: {'OK' if self.report.ok else 'FAILED'} (seed {self.options.seed})")
        return "\n".join(lines)


async def _poll(
    predicate: Callable[[], Awaitable[bool]], timeout: float, what: str, interval: float = 0.5
) -> None:
    """Poll `predicate` until true; fail after `timeout` seconds naming `what`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last: BaseException | None = None
    while loop.time() < deadline:
        try:
            if await predicate():
                return
        except Exception as exc:  # the cluster may still be electing leaders: try again
            last = exc
        await asyncio.sleep(interval)
    raise TimeoutError(
        f"timed out after {timeout}s waiting for {what}" + (f" (last error: {last!r})" if last else "")
    )


async def _quiet(exc: Exception) -> None:
    """Connection errors are expected while servers die; nats-py would print each one."""


async def _admin(cluster: Cluster) -> Client:
    admin = cluster.admin()
    return await nats.connect(
        error_cb=_quiet,
        servers=cluster.nats_urls,
        user=admin.user,
        password=admin.password,
        name="chaos-checker",
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.5,
        connect_timeout=2,
    )


async def _wait_instances(nc: Client, service: str, count: int, timeout: float) -> None:
    """Until `count` instances of `service` answer NATS micro discovery."""
    inbox = nc.new_inbox()
    found: set[str] = set()

    async def cb(msg: Any) -> None:
        if msg.data:  # an empty body is a no-responders status
            found.add(json.loads(msg.data)["metadata"]["instance"])

    sub = await nc.subscribe(inbox, cb=cb)
    try:

        async def enough() -> bool:
            await nc.publish(f"$SRV.INFO.clawmesh-{service}", b"", reply=inbox)
            await nc.flush()
            return len(found) >= count

        await _poll(enough, timeout, f"{count} {service} processes")
    finally:
        await sub.unsubscribe()


async def _ready(cluster: Cluster, nc: Client, timeout: float) -> None:
    """Every service instance answers discovery and every ingress answers /readyz."""
    want = {"router": cluster.routers, "runner": cluster.runners, "node-agent": cluster.node_agents}
    for service, count in want.items():
        await _wait_instances(nc, service, count, timeout)
    async with httpx.AsyncClient(timeout=5) as http:
        for url in cluster.ingress_urls:

            async def ready(url: str = url) -> bool:
                return (await http.get(f"{url}/readyz")).status_code == 200

            await _poll(ready, timeout, f"ingress {url}/readyz")


@contextlib.asynccontextmanager
async def _running(cluster: Cluster, start_timeout: float, log: FaultLog) -> AsyncIterator[Client]:
    """The cluster, started and ready. From the services' start on, a process that exits by
    itself is restarted (compose's `restart: unless-stopped`): a service may fail its start-up
    while the new cluster still elects its first leaders."""
    cluster.build()
    supervisor: asyncio.Task[None] | None = None
    try:
        for p in cluster.of("nats"):
            p.start()
        nc = await _poll_connect(cluster, start_timeout)
        try:
            js = nc.jetstream()

            async def js_ready() -> bool:
                await js.account_info()
                return True

            await _poll(js_ready, start_timeout, "the JetStream cluster")
            for p in cluster.procs:
                if p.kind != "nats":
                    p.start()
            supervisor = asyncio.create_task(supervise(cluster.procs, log))
            await _ready(cluster, nc, start_timeout)
            yield nc
        finally:
            await nc.close()
    finally:
        if supervisor is not None:
            supervisor.cancel()
        cluster.stop_all()


async def _poll_connect(cluster: Cluster, timeout: float) -> Client:
    box: list[Client] = []

    async def connect() -> bool:
        box.append(await _admin(cluster))
        return True

    await _poll(connect, timeout, "a NATS connection")
    return box[0]


async def run_chaos(opts: Options, start_timeout: float = 180.0) -> Result:
    work = opts.work or Path(tempfile.mkdtemp(prefix=f"chaos-{opts.seed}-"))
    cluster = Cluster(work, router_partitions=opts.router_partitions)
    fault_log = FaultLog([])
    async with _running(cluster, start_timeout, fault_log) as nc:
        targets = [(p.name, p.kind) for p in cluster.procs]
        faults = schedule(opts.seed, opts.duration, targets, mean_gap=opts.mean_gap, max_down=opts.max_down)
        load = Load(
            cluster.ingress_urls,
            cluster.token,
            opts.sessions,
            opts.seed,
            think=opts.think,
            retry_window=opts.retry_window,
        )
        stop = asyncio.Event()
        load_task = asyncio.create_task(load.run(stop))
        try:
            # the phases' lengths are the test's input
            await asyncio.sleep(opts.warmup)
            chaos_start = time.time()
            fault_log.add("chaos starts")
            await asyncio.gather(
                apply_schedule(faults, cluster.procs, fault_log), asyncio.sleep(opts.duration)
            )
            stop.set()
            chaos_end = time.time()
            fault_log.add("chaos ends")
            heal(cluster.procs, fault_log)
            await load_task
        finally:
            stop.set()
            if not load_task.done():
                load_task.cancel()
            heal(cluster.procs, fault_log)
        js = nc.jetstream()
        expected = {m.turn_id for m in load.sent if m.accepted and m.turn_id}
        replies: list[Reply] = []

        async def answered() -> bool:
            replies[:] = await read_outbound(js)
            return expected <= {r.turn_id for r in replies}

        # a lost reply shows as a timeout here, then in the report
        with contextlib.suppress(TimeoutError):
            await _poll(answered, opts.drain, "the replies of every accepted message", interval=2.0)
        transcripts: dict[str, Any] = {}

        async def read() -> bool:
            transcripts.update(await read_transcripts(js, load.peers()))
            return True

        await _poll(read, 60, "the transcripts")
        report = check(load.sent, replies, transcripts, chaos_start=chaos_start, chaos_end=chaos_end)
        trail: dict[str, Any] = {}
        if report.lost:  # where each stopped, while the cluster is still up (the report keeps it)
            with contextlib.suppress(Exception):
                trail = {"consumers": await consumers(js), "messages": await trace(js, report.lost)}
    result = Result(opts, faults, report, fault_log.lines, work, trail)
    (work / "chaos-report.json").write_text(
        json.dumps(
            {
                "seed": opts.seed,
                "faults": [str(f) for f in faults],
                "fault_log": fault_log.lines,
                "summary": report.summary(),
                "details": report.details(limit=1000),
                "trail": trail,
                # where the users waited longest, to set beside the fault log
                "slowest_accepts": [
                    {
                        "message": m.message_id,
                        "first_sent": round(m.first_sent, 1),
                        "waited": round(m.waited, 2),
                        "failures": m.failures,
                    }
                    for m in sorted(load.sent, key=lambda m: -m.waited)[:20]
                ],
            },
            indent=2,
        )
    )
    return result


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    return float(raw) if raw else default


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.chaos", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--seed", type=int, default=int(os.environ.get("CHAOS_SEED") or random.randrange(1 << 31))
    )
    parser.add_argument("--duration", type=float, default=_env_float("CHAOS_DURATION", 240))
    parser.add_argument("--warmup", type=float, default=_env_float("CHAOS_WARMUP", 30))
    parser.add_argument("--sessions", type=int, default=int(_env_float("CHAOS_SESSIONS", 12)))
    parser.add_argument("--think", type=float, default=_env_float("CHAOS_THINK", 1.0))
    parser.add_argument("--retry-window", type=float, default=_env_float("CHAOS_RETRY_WINDOW", 30))
    parser.add_argument("--mean-gap", type=float, default=_env_float("CHAOS_MEAN_GAP", 4))
    parser.add_argument("--max-down", type=float, default=_env_float("CHAOS_MAX_DOWN", 6))
    parser.add_argument(
        "--router-partitions", type=int, default=int(_env_float("CHAOS_ROUTER_PARTITIONS", 1))
    )
    parser.add_argument(
        "--work", type=Path, default=None, help="where configs, data and logs go (default: a temp dir)"
    )
    args = parser.parse_args(argv)
    opts = Options(
        seed=args.seed,
        duration=args.duration,
        warmup=args.warmup,
        sessions=args.sessions,
        think=args.think,
        retry_window=args.retry_window,
        mean_gap=args.mean_gap,
        max_down=args.max_down,
        router_partitions=args.router_partitions,
        work=args.work,
    )
    print(f"chaos: seed {opts.seed} (repeat with --seed {opts.seed})", flush=True)
    result = asyncio.run(run_chaos(opts))
    print(result.text())
    return 0 if result.report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
