"""Throughput of the docker compose deployment with 1, 2 and 3 runner replicas
(`python -m tests.bench.compose [--quick] [--json PATH]`).

One compose project (docker-compose.yml, the shipped deploy/compose/clawmesh.json: echo model,
two agents) on free 127.0.0.1 ports. For each runner count N (`up -d --scale runner=N`, the other
services untouched): wait until N runners are healthy and announced on `$SRV`, warm up, then
HTTP turns at concurrency 100 (one session per worker, workers spread over both agents; each
worker sends its next message when the previous one is answered, `?wait=30`, over its own
keep-alive connection with a minimal HTTP/1.1 client: httpx's pool needs ~9 ms of CPU per
request at 100 connections and would be the bottleneck), at most `--requests` turns or
`--seconds` per phase. Right after each phase, baselines against the same
compose NATS server through its published port: nats-py request/reply with the responder in
this process (100 in flight, and sequential p50/p99), and JetStream publish (sequential, on a
stream outside `cm.>` that is deleted afterwards).

Printed: turns/s per replica count, the ratio to 1 replica, p50/p99 latency, errors, the
baselines, and where turns wait: the router's and the runners' JetStream consumer depth
(pending + unacked, sampled every 0.1 s) turned into a mean time per stage (Little's law), plus
the JetStream API errors during the phase (expected 0 with one NATS server, whose KV reads are
direct gets; on replicated buckets each new session costs two: the router's and the runner's
first KV lookups answer "not found", which JetStream counts as an error) and the peak
number of consumers on CM_SESSIONS (transcript reads open one each; nats-server refuses more
than 1000 per stream). On this project's machines (2 cores) the load generator, NATS and every container
share two CPUs, so added runners mostly add contention: the figures show how far the pipeline
scales on one small machine, not across machines.

The project is always taken down (`down -v --remove-orphans`) and swept by label, also on
errors and Ctrl-C. Exit status: 0 unless the deployment did not come up or > 1% of the turns of
a phase failed. Without a Docker engine (or with CLAWMESH_SKIP_DOCKER=1) it prints why and
exits 0.

    python -m tests.bench.compose [--quick] [--json PATH] [--replicas 1,2,3] [--requests N]
                                  [--seconds S] [--max-concurrent N] [--compose v2|v1]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import json5
import nats
from nats.aio.msg import Msg

from tests.bench._common import LoadPhase, machine, nats_baseline, print_table, write_json
from tests.bench.pipeline import QueueProbe
from tests.fixtures.ports import free_ports

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "bench-token"
CONCURRENCY = 100


@dataclass(frozen=True)
class Counts:
    warmup: int
    requests: int
    seconds: float
    rr: int
    js: int


FULL = Counts(warmup=200, requests=1500, seconds=60.0, rr=5000, js=2000)
QUICK = Counts(warmup=50, requests=300, seconds=20.0, rr=1000, js=300)


# --- compose -----------------------------------------------------------------------------------
def compose_cmd(which: str | None) -> list[str]:
    candidates = {"v2": ["docker", "compose"], "v1": ["docker-compose"]}
    for name in [which] if which else ["v2", "v1"]:
        cmd = candidates[name]
        if shutil.which(cmd[0]) is None:
            continue
        if subprocess.run([*cmd, "version"], capture_output=True).returncode == 0:
            return cmd
    raise SystemExit(
        f"no docker compose {'(' + which + ') ' if which else ''}found: run scripts/ensure-docker.sh"
    )


@dataclass
class Project:
    compose: list[str]
    name: str
    env: dict[str, str]
    http_port: int
    nats_port: int

    def admin(self) -> dict[str, str]:
        """nats.connect arguments of the admin user scripts/compose.sh generated."""
        path = Path(self.env["CLAWMESH_SECRETS_DIR"]) / "credentials.env"
        lines = path.read_text().splitlines()
        creds = dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))
        return {"user": creds["CLAWMESH_NATS_USER_ADMIN"], "password": creds["CLAWMESH_NATS_PASSWORD_ADMIN"]}

    def run(self, *args: str, timeout: float = 300, check: bool = True) -> str:
        # through scripts/compose.sh: it generates the project's NATS users and passes them on
        proc = subprocess.run(
            [str(ROOT / "scripts" / "compose.sh"), "-p", self.name, *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        out = proc.stdout + proc.stderr
        if check and proc.returncode != 0:
            raise RuntimeError(f"compose {' '.join(args)} failed (exit {proc.returncode}):\n{out[-3000:]}")
        return out

    def runner_health(self) -> list[str]:
        out = subprocess.run(
            [
                "docker",
                "ps",
                "--filter",
                f"label=com.docker.compose.project={self.name}",
                "--filter",
                "label=com.docker.compose.service=runner",
                "--format",
                "{{.Status}}",
            ],
            capture_output=True,
            text=True,
            check=False,
        ).stdout
        return [line for line in out.splitlines() if line.strip()]

    def down(self) -> None:
        with contextlib.suppress(Exception):
            self.run("down", "-v", "--remove-orphans", "--timeout", "10", timeout=180, check=False)
        label = f"label=com.docker.compose.project={self.name}"
        for kind, ls in (
            ("container", ["docker", "ps", "-aq", "--filter", label]),
            ("network", ["docker", "network", "ls", "-q", "--filter", label]),
            ("volume", ["docker", "volume", "ls", "-q", "--filter", label]),
        ):
            ids = subprocess.run(ls, capture_output=True, text=True, check=False).stdout.split()
            if ids:
                rm = ["docker", "rm", "-f", "-v"] if kind == "container" else ["docker", kind, "rm"]
                subprocess.run([*rm, *ids], capture_output=True, check=False)


# --- load ----------------------------------------------------------------------------------------
@dataclass(kw_only=True)
class Phase(LoadPhase):
    replicas: int
    baseline: dict[str, float] = field(default_factory=dict)
    js_api_errors: int = 0  # JetStream API requests the server refused during the phase
    sessions_consumers_peak: int = 0  # consumers on CM_SESSIONS (transcript reads), sampled

    def to_dict(self) -> dict[str, Any]:
        return {
            "replicas": self.replicas,
            **self.load_dict(),
            "baseline": {k: round(v, 3) for k, v in self.baseline.items()},
            "js_api_errors": self.js_api_errors,
            "sessions_consumers_peak": self.sessions_consumers_peak,
        }


class KeepAlive:
    """A minimal HTTP/1.1 keep-alive connection, one per load worker. httpx's connection pool
    costs ~9 ms of CPU per request with 100 connections in one process on this machine (the
    load generator saturated a core at ~100 turns/s and added seconds of queueing to p99); this
    costs a small fraction of that, so the deployment, not the load generator, is measured."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(Exception):
                await self.writer.wait_closed()
        self.reader = self.writer = None

    async def post(self, path: str, body: dict[str, Any]) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        assert self.reader is not None
        data = json.dumps(body).encode()
        head = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\nAuthorization: Bearer {TOKEN}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
        )
        self.writer.write(head.encode() + data)
        status = int((await self.reader.readline()).split(b" ", 2)[1])
        length, chunked, close = 0, False, False
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.decode("latin-1").partition(":")
            name, value = name.strip().lower(), value.strip().lower()
            if name == "content-length":
                length = int(value)
            elif name == "transfer-encoding" and "chunked" in value:
                chunked = True
            elif name == "connection" and value == "close":
                close = True
        if chunked:
            parts = []
            while True:
                size = int((await self.reader.readline()).split(b";")[0], 16)
                chunk = await self.reader.readexactly(size + 2)
                if size == 0:
                    break
                parts.append(chunk[:-2])
            payload = b"".join(parts)
        else:
            payload = await self.reader.readexactly(length)
        if close:
            await self.close()
        return status, payload


async def run_phase(
    port: int,
    replicas: int,
    total: int,
    max_seconds: float,
    tag: str,
    probe: QueueProbe | None = None,
) -> Phase:
    phase = Phase(replicas=replicas, requested=total)
    remaining = [total]
    deadline = time.perf_counter() + max_seconds

    async def worker(w: int) -> None:
        account = "work" if w % 2 else "default"  # both agents (bindings of the shipped config)
        peer = f"{tag}-w{w}"
        conn = KeepAlive(port)
        i = 0
        try:
            while remaining[0] > 0:
                if time.perf_counter() > deadline:
                    phase.stopped_by_time = True
                    return
                remaining[0] -= 1
                i += 1
                text = f"ping {i} from {peer}"
                body = {"text": text, "accountId": account, "peer": {"kind": "direct", "id": peer}}
                t0 = time.perf_counter()
                problem = None
                try:
                    status, payload = await asyncio.wait_for(conn.post("/v1/messages?wait=30", body), 45)
                    if status != 200:
                        problem = f"HTTP {status}: {payload[:200]!r}"
                    elif json.loads(payload).get("text") != f"echo: {text}":
                        problem = f"unexpected reply: {payload[:200]!r}"
                except (OSError, ValueError, IndexError, TimeoutError, asyncio.IncompleteReadError) as exc:
                    problem = f"{type(exc).__name__}: {exc}"
                    await conn.close()
                if problem is None:
                    phase.latencies_ms.append((time.perf_counter() - t0) * 1e3)
                else:
                    phase.errors += 1
                    if len(phase.error_samples) < 5:
                        phase.error_samples.append(problem)
        finally:
            await conn.close()

    t0 = time.perf_counter()
    sampler = asyncio.create_task(probe.sample_until_cancelled()) if probe else None
    try:
        await asyncio.gather(*(worker(w) for w in range(CONCURRENCY)))
    finally:
        phase.wall_s = time.perf_counter() - t0
        if sampler is not None:
            sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sampler
    if probe is not None:
        phase.queue_depth = probe.means()
    return phase


async def runners_on_srv(url: str, auth: dict[str, str]) -> int:
    """How many runner instances answer `$SRV.PING.clawmesh-runner` within half a second."""
    nc = await nats.connect(url, **auth)
    try:
        inbox = nc.new_inbox()
        seen: set[str] = set()

        async def cb(msg: Msg) -> None:
            with contextlib.suppress(ValueError, KeyError):
                seen.add(json.loads(msg.data)["id"])

        sub = await nc.subscribe(inbox, cb=cb)
        await nc.publish("$SRV.PING.clawmesh-runner", b"", reply=inbox)
        await nc.flush()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.Event().wait(), 0.5)
        await sub.unsubscribe()
        return len(seen)
    finally:
        await nc.close()


async def wait_for(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = predicate()
            if asyncio.iscoroutine(result):
                result = await result
        except Exception:
            result = False
        if result:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f}s waiting for {what}")
        await asyncio.sleep(0.25)


# --- main ------------------------------------------------------------------------------------------
async def bench(args: argparse.Namespace, project: Project, counts: Counts) -> list[Phase]:
    replicas = [int(x) for x in args.replicas.split(",")]
    phases: list[Phase] = []
    t0 = time.monotonic()
    project.run("up", "-d", "--scale", f"runner={replicas[0]}")
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{project.http_port}",
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=httpx.Timeout(45.0),
        limits=httpx.Limits(max_connections=CONCURRENCY + 10, max_keepalive_connections=CONCURRENCY + 10),
    ) as client:
        await wait_for(lambda: _ready(client), 120, "the ingress to be ready")
        print(f"deployment up and ready in {time.monotonic() - t0:.1f}s", flush=True)
        nats_url = f"nats://127.0.0.1:{project.nats_port}"
        for n in replicas:
            t1 = time.monotonic()
            project.run("up", "-d", "--no-recreate", "--scale", f"runner={n}")
            await wait_for(
                lambda n=n: (
                    len(project.runner_health()) == n
                    and all("(healthy)" in s for s in project.runner_health())
                ),
                120,
                f"{n} healthy runner(s)",
            )
            await wait_for(
                lambda n=n: _count_is(runners_on_srv(nats_url, project.admin()), n),
                60,
                f"{n} runner(s) on $SRV",
            )
            print(f"\n{n} runner(s): scaled in {time.monotonic() - t1:.1f}s; warming up", flush=True)
            port = project.http_port
            await run_phase(port, n, counts.warmup, counts.seconds, f"warm{n}-{uuid.uuid4().hex[:4]}")
            probe_nc = await nats.connect(nats_url, **project.admin())
            api_errors = (await probe_nc.jetstream().account_info()).api.errors
            peak = [0]

            async def count_consumers(nc: Any = probe_nc, peak: list[int] = peak) -> None:
                while True:
                    with contextlib.suppress(Exception):
                        info = await nc.jetstream().stream_info("CM_SESSIONS")
                        peak[0] = max(peak[0], info.state.consumer_count)
                    await asyncio.sleep(0.2)

            counter = asyncio.create_task(count_consumers())
            try:
                phase = await run_phase(
                    port,
                    n,
                    counts.requests,
                    counts.seconds,
                    f"r{n}-{uuid.uuid4().hex[:4]}",
                    QueueProbe(probe_nc, interval=0.1),
                )
                phase.js_api_errors = (await probe_nc.jetstream().account_info()).api.errors - api_errors
            finally:
                counter.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await counter
                await probe_nc.close()
            phase.sessions_consumers_peak = peak[0]
            phase.baseline = await nats_baseline(
                nats_url,
                sequential=max(200, counts.rr // 5),
                concurrent=counts.rr,
                in_flight=CONCURRENCY,
                js=counts.js,
                auth=project.admin(),
            )
            phases.append(phase)
            print(
                f"  c={CONCURRENCY}: {phase.turns_per_s:,.0f} turns/s ({phase.ok} ok, {phase.errors} errors"
                f"{', stopped by the time cap' if phase.stopped_by_time else ''}), p50 {phase.pct(50):.1f} ms, "
                f"p99 {phase.pct(99):.1f} ms; baseline rr c=100 {phase.baseline['rr_c100_per_s']:,.0f}/s, "
                f"JetStream publish {phase.baseline['js_seq_per_s']:,.0f}/s; "
                f"JetStream API errors during the phase: {phase.js_api_errors}, "
                f"peak consumers on CM_SESSIONS: {phase.sessions_consumers_peak}",
                flush=True,
            )
            if phase.queue_depth:
                print(
                    "  time at a stage (Little's law from sampled consumer depth): "
                    + ", ".join(
                        f"{k} {phase.stage_ms(k):.0f} ms (mean depth {v:.1f})"
                        for k, v in phase.queue_depth.items()
                    ),
                    flush=True,
                )
    return phases


async def _ready(client: httpx.AsyncClient) -> bool:
    return (await client.get("/readyz")).status_code == 200


async def _count_is(coro: Any, n: int) -> bool:
    return bool(await coro == n)


def report(phases: list[Phase]) -> None:
    base = phases[0].turns_per_s if phases else float("nan")
    rows = []
    for p in phases:
        b = p.baseline
        rows.append(
            [
                str(p.replicas),
                f"{p.turns_per_s:,.0f}",
                f"{p.turns_per_s / base:.2f}x" if base == base and base else "-",
                f"{p.pct(50):.1f}",
                f"{p.pct(99):.1f}",
                f"{p.errors}",
                f"{b.get('rr_c100_per_s', float('nan')):,.0f}",
                f"{b.get('rr_p50_ms', float('nan')):.2f}",
                f"{b.get('js_seq_per_s', float('nan')):,.0f}",
                f"{p.turns_per_s / b['rr_c100_per_s'] * 100:.1f}%" if b.get("rr_c100_per_s") else "-",
                f"{p.stage_ms('router'):.0f}",
                f"{p.stage_ms('runner'):.0f}",
                str(p.js_api_errors),
                str(p.sessions_consumers_peak),
            ]
        )
    print_table(
        [
            "runners",
            "turns/s",
            "vs 1",
            "p50 ms",
            "p99 ms",
            "errors",
            "NATS rr/s c100",
            "rr p50 ms",
            "JS pub/s",
            "turns/rr",
            "router ms",
            "runner ms",
            "JS API errors",
            "CM_SESSIONS consumers",
        ],
        rows,
        title=f"compose deployment, HTTP turns at concurrency {CONCURRENCY} (echo model), baselines on the same NATS",
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small counts (a smoke check, noisy figures)")
    parser.add_argument("--json", metavar="PATH", help="write the figures to PATH")
    parser.add_argument("--replicas", default="1,2,3", help="runner counts to measure, in order (1,2,3)")
    parser.add_argument("--requests", type=int, help="turns per phase (1500; quick: 300)")
    parser.add_argument("--seconds", type=float, help="time cap per phase (60; quick: 20)")
    parser.add_argument(
        "--max-concurrent",
        type=int,
        default=0,
        metavar="N",
        help="agents.defaults.maxConcurrent (turns per agent per runner); 0 = the shipped config (clawmesh's default, 4)",
    )
    parser.add_argument(
        "--compose", choices=["v2", "v1"], help="compose implementation (default: v2 if present)"
    )
    parser.add_argument(
        "--keep", action="store_true", help="leave the deployment running (prints how to remove it)"
    )
    args = parser.parse_args(argv)
    counts = QUICK if args.quick else FULL
    counts = Counts(
        counts.warmup, args.requests or counts.requests, args.seconds or counts.seconds, counts.rr, counts.js
    )

    if (
        os.environ.get("CLAWMESH_SKIP_DOCKER") == "1"
        or shutil.which("docker") is None
        or (subprocess.run(["docker", "info"], capture_output=True).returncode != 0)
    ):
        print("compose benchmark skipped: no Docker engine (or CLAWMESH_SKIP_DOCKER=1)")
        return 0
    compose = compose_cmd(args.compose)
    print(
        f"compose benchmark: runners {args.replicas}, {counts.requests} turns per phase at c={CONCURRENCY} "
        f"(≤ {counts.seconds:.0f}s), {' '.join(compose)}, {os.cpu_count()} CPUs",
        flush=True,
    )
    images = subprocess.run([str(ROOT / "scripts" / "images.sh"), "nats", "services"], cwd=ROOT)
    if images.returncode != 0:
        print("FAILED: scripts/images.sh nats services")
        return 1

    tmp = Path(tempfile.mkdtemp(prefix="cmbench-"))
    config = dict(json5.loads((ROOT / "deploy" / "compose" / "clawmesh.json").read_text()))
    if args.max_concurrent:
        config["agents"]["defaults"]["maxConcurrent"] = args.max_concurrent
    (tmp / "clawmesh.json").write_text(json.dumps(config, indent=2))
    (tmp / "clawmesh.json").chmod(0o644)
    project = Project(
        compose,
        f"cmbench{uuid.uuid4().hex[:6]}",
        {},
        *free_ports(2),
    )
    project.env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("COMPOSE_", "CLAWMESH_"))},
        "CLAWMESH_HTTP_PORT": str(project.http_port),
        "CLAWMESH_NATS_PORT": str(project.nats_port),
        "CLAWMESH_GATEWAY_TOKEN": TOKEN,
        "CLAWMESH_CONFIG_FILE": str(tmp / "clawmesh.json"),
        "CLAWMESH_SECRETS_DIR": str(tmp / "secrets"),
        "CLAWMESH_COMPOSE": " ".join(compose),
        "CLAWMESH_COMPOSE_SKIP_IMAGES": "1",  # built above
        "CLAWMESH_LOG_LEVEL": "WARNING",
    }

    def on_signal(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    phases: list[Phase] = []
    failure = ""
    started = time.monotonic()
    try:
        phases = asyncio.run(bench(args, project, counts))
    except KeyboardInterrupt:
        failure = "interrupted"
    except Exception as exc:
        failure = f"{type(exc).__name__}: {exc}"
    finally:
        if args.keep and not failure:
            print(f"\nkept: {' '.join(compose)} -p {project.name} down -v   (config in {tmp})")
        else:
            t = time.monotonic()
            logs = ROOT / ".ci-logs" / "bench" / "compose-containers.log"
            with contextlib.suppress(Exception):
                logs.parent.mkdir(parents=True, exist_ok=True)
                logs.write_text(project.run("logs", "--no-color", timeout=60, check=False))
            project.down()
            shutil.rmtree(tmp, ignore_errors=True)
            print(f"\ncleaned up project {project.name} in {time.monotonic() - t:.1f}s")

    report(phases)
    if args.json:
        write_json(
            args.json,
            {
                "benchmark": "compose",
                "machine": machine(),
                "compose": " ".join(compose),
                "concurrency": CONCURRENCY,
                "counts": counts.__dict__,
                "max_concurrent": args.max_concurrent or "default",
                "total_s": round(time.monotonic() - started, 1),
                "error": failure or None,
                "phases": {str(p.replicas): p.to_dict() for p in phases},
                "scaling_vs_1": {
                    str(p.replicas): round(p.turns_per_s / phases[0].turns_per_s, 3) for p in phases
                }
                if phases and phases[0].turns_per_s
                else {},
            },
        )
    if failure:
        print(f"FAILED: {failure}")
        return 1
    status = 0
    for p in phases:
        done = p.ok + p.errors
        if done and p.errors / done > 0.01:
            print(f"FAILED: {p.replicas} runner(s): {p.errors} of {done} turns failed: {p.error_samples}")
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
