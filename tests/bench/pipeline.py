"""End-to-end turns through `clawmesh up` (`python -m tests.bench.pipeline`).

HTTP request → ingress → router → runner → reply, against a real `clawmesh up` subprocess with
its embedded nats-server, on 127.0.0.1 only. Two runs:

  echo     agents on the offline `echo/bench` model (the pipeline alone)
  openai   agents on `openai/fake`, served by the local fake model server
           (`python -m tests.fakes.models`, a streamed short fixed reply)
  anthropic  agents on `anthropic/fake`, the same fake server's Messages API

Per run: spawn → ready time (and the process's own `readySeconds`), p50/p90/p99/max latency at
concurrency 1, throughput at concurrency 20 and 100 (one session and one keep-alive HTTP
connection per concurrent worker, workers spread over two agents by account bindings), the CPU the gateway, its nats-server and this load
generator spent per turn, and the peak RSS of the gateway and of its nats-server. Baselines in
the same run, against the same nats-server: nats-py request/reply (sequential, and 20 in
flight) with the responder in this process, JetStream publish (sync, on a bench stream outside
`cm.>`), `GET /healthz` through the same HTTP client (the HTTP floor), and in the model runs
the bare HTTP round trip to the fake model (plain httpx from this process: latency and CPU per
call), so that a provider's gateway CPU per turn can be set against echo's and that floor. Ratios to those
baselines are printed; targets are shown as PASS/MISS for information only. Where a turn's time
goes: a tap process subscribed to `>` timestamps each turn's messages in an extra c=1 phase
(`--no-stages` skips it), and in the loaded phases the router's and runner's JetStream consumer
depth is sampled and turned into a mean time per stage (Little's law).

Exit status: 0, unless the gateway failed to start or more than 1% of the requests failed.

    python -m tests.bench.pipeline [--quick] [--json PATH] [--only echo|openai|anthropic] [--max-concurrent N]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import nats
from nats.aio.client import Client as NatsClient

from clawmesh.natsauth import embedded_admin
from tests.bench._common import LoadPhase, machine, nats_baseline, percentile, print_table, write_json
from tests.bench._fake_rtt import fake_round_trip

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "bench-token"
FAKE_REPLY = "pong from fake"
AGENTS = ("alpha", "beta")
ACCOUNT_OF = {"alpha": "a", "beta": "b"}
MODEL_RUNS = ("openai", "anthropic")  # runs against the fake model server, named for the API

# The targets, and the incumbent gateway measured on this machine with a fake model.
TARGETS = {
    "p50_ms_c1": 5.0,
    "p99_ms_c1": 20.0,
    "turns_per_s_c20": 500.0,
    "rss_mb": 250.0,
    "ready_s": 2.0,
}
INCUMBENT = {
    "p50_ms_c1": "~145",
    "p99_ms_c1": "-",
    "turns_per_s_c20": "5-7",
    "rss_mb": "~2,200",
    "ready_s": "~11",
}


@dataclass(frozen=True)
class Counts:
    warmup: int
    c1: int
    c20: int
    c100: int
    phase_seconds: float
    rr: int
    js: int
    http: int

    stage_c1: int


FULL = Counts(
    warmup=100,
    c1=300,
    c20=2000,
    c100=2000,
    phase_seconds=60.0,
    rr=5000,
    js=2000,
    http=500,
    stage_c1=200,
)
QUICK = Counts(
    warmup=20,
    c1=30,
    c20=200,
    c100=200,
    phase_seconds=20.0,
    rr=500,
    js=200,
    http=50,
    stage_c1=20,
)


# --- processes ---------------------------------------------------------------------------------


def child_pids(pid: int) -> list[int]:
    out: list[int] = []
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError):
                out += [int(x) for x in Path(f"/proc/{pid}/task/{task}/children").read_text().split()]
    return out


def proc_name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def rss_mb(pid: int | None) -> float:
    if pid is None:
        return float("nan")
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU time of a process (all its threads), from /proc/<pid>/stat."""
    if pid is None:
        return float("nan")
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return float("nan")
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def stop_process(proc: asyncio.subprocess.Process, name: str, grace: float = 15.0) -> None:
    """SIGTERM, then SIGKILL after `grace` seconds."""
    if proc.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(proc.wait(), grace)
    except TimeoutError:
        print(f"  {name} (pid {proc.pid}) did not stop within {grace:.0f}s after SIGTERM; killing it")
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()


async def kill_if_alive(pid: int | None, grace: float = 5.0) -> None:
    """The gateway stops its nats-server itself; SIGKILL it only if it outlived the gateway."""
    if pid is None:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not Path(f"/proc/{pid}").exists() or "State:\tZ" in _status(pid):
            return
        await asyncio.sleep(0.1)
    print(f"  nats-server (pid {pid}) outlived the gateway; killing it")
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signal.SIGKILL)


def _status(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return ""


def gateway_env(tmp: Path, extra: dict[str, str]) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("OTEL_", "CLAWMESH_", "OPENAI_", "ANTHROPIC_"))
        and k.lower() not in ("http_proxy", "https_proxy", "all_proxy")
    }
    env.update(
        {
            "HOME": str(tmp),
            "CLAWMESH_STATE_DIR": str(tmp / "state"),
            "NO_PROXY": "127.0.0.1,localhost",
            "PYTHONUNBUFFERED": "1",
            **extra,
        }
    )
    return env


async def read_line_matching(
    stream: asyncio.StreamReader, accept: Callable[[str], bool], timeout: float
) -> tuple[str, list[str]]:
    """The first line `accept`s; raises TimeoutError/EOFError. Also returns the lines skipped."""
    skipped: list[str] = []
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        raw = await asyncio.wait_for(stream.readline(), remaining)
        if not raw:
            raise EOFError("\n".join(skipped))
        line = raw.decode("utf-8", "replace").strip()
        if accept(line):
            return line, skipped
        skipped.append(line)


@dataclass
class FakeModel:
    proc: asyncio.subprocess.Process
    port: int


async def start_fake_model(tmp: Path) -> FakeModel:
    log = (tmp / "fake-model.log").open("wb")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.fakes.models",
        "--port",
        "0",
        "--reply",
        FAKE_REPLY,
        cwd=ROOT,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=log,
        env=gateway_env(tmp, {}),
    )
    log.close()
    assert proc.stdout is not None
    try:
        line, _ = await read_line_matching(proc.stdout, lambda s: s.startswith("LISTENING "), 30)
    except (TimeoutError, EOFError):
        await stop_process(proc, "fake model server")
        tail = (tmp / "fake-model.log").read_text(errors="replace")[-2000:]
        raise RuntimeError(f"the fake model server did not start:\n{tail}") from None
    return FakeModel(proc, int(line.split()[1]))


@dataclass
class Gateway:
    proc: asyncio.subprocess.Process
    url: str
    nats_url: str
    pid: int
    nats_pid: int | None
    spawn_to_ready_s: float
    ready_seconds: float
    log: Path


def bench_config(model: str, max_concurrent: int, fake_port: int | None) -> dict[str, Any]:
    """The gateway config of a run; `model`'s provider (openai | anthropic) points at the fake."""
    defaults: dict[str, Any] = {"model": model}
    if max_concurrent:
        defaults["maxConcurrent"] = max_concurrent
    config: dict[str, Any] = {
        "agents": {
            "defaults": defaults,
            "list": [{"id": a, "default": a == AGENTS[0], "name": a.title()} for a in AGENTS],
        },
        "bindings": [{"agentId": a, "match": {"channel": "api", "accountId": ACCOUNT_OF[a]}} for a in AGENTS],
        "session": {"dmScope": "per-channel-peer"},
        "gateway": {"auth": {"token": TOKEN}},
    }
    if fake_port is not None:
        root = f"http://127.0.0.1:{fake_port}"
        base = {"openai": f"{root}/v1", "anthropic": root}[model.split("/")[0]]
        config["models"] = {"providers": {model.split("/")[0]: {"baseUrl": base}}}
    return config


async def start_gateway(tmp: Path, config: dict[str, Any], extra_env: dict[str, str]) -> Gateway:
    path = tmp / "clawmesh.json"
    path.write_text(json.dumps(config, indent=2))
    (tmp / "state").mkdir(exist_ok=True)
    log = tmp / "gateway.log"
    with log.open("wb") as sink:
        spawned = time.perf_counter()
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "clawmesh_gateway",
            "--config",
            str(path),
            "up",
            "--port",
            "0",
            "--nats-port",
            "0",
            "--json-ready",
            cwd=tmp,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=sink,
            env=gateway_env(tmp, extra_env),
        )
    assert proc.stdout is not None
    try:
        line, _ = await read_line_matching(proc.stdout, lambda s: s.startswith("{") and '"ready"' in s, 60)
    except (TimeoutError, EOFError) as exc:
        await stop_process(proc, "clawmesh up")
        tail = log.read_text(errors="replace")[-3000:]
        why = "exited" if isinstance(exc, EOFError) else "was not ready within 60s"
        raise RuntimeError(f"clawmesh up {why}; stdout: {exc}\nstderr tail:\n{tail}") from None
    ready_at = time.perf_counter()
    info = json.loads(line)
    # Keep draining stdout so that the gateway never blocks writing to a full pipe.
    asyncio.get_running_loop().create_task(_drain(proc.stdout))
    nats_pid = next((p for p in child_pids(proc.pid) if proc_name(p) == "nats-server"), None)
    # The embedded server requires users: the probe and the tap connect as the generated admin.
    admin = embedded_admin(tmp / "state")
    assert admin is not None, "clawmesh up generated no NATS users"
    return Gateway(
        proc=proc,
        url=info["url"],
        nats_url=info["nats"].replace("nats://", f"nats://{admin[0]}:{admin[1]}@", 1),
        pid=int(info.get("pid", proc.pid)),
        nats_pid=nats_pid,
        spawn_to_ready_s=ready_at - spawned,
        ready_seconds=float(info.get("readySeconds", float("nan"))),
        log=log,
    )


async def _drain(stream: asyncio.StreamReader) -> None:
    with contextlib.suppress(Exception):
        while await stream.read(65536):
            pass


# --- load ----------------------------------------------------------------------------------


@dataclass(kw_only=True)
class Phase(LoadPhase):
    name: str
    concurrency: int
    gateway_cpu_s: float = 0.0
    nats_cpu_s: float = 0.0
    client_cpu_s: float = 0.0
    rss_gateway_mb: float = float("nan")
    rss_nats_mb: float = float("nan")
    samples: list[tuple[float, float, str]] = field(default_factory=list)  # (sent, answered, turn id)

    @property
    def done(self) -> int:
        return self.ok + self.errors

    def per_turn_ms(self, cpu_s: float) -> float:
        return cpu_s * 1e3 / self.ok if self.ok else float("nan")

    def to_dict(self) -> dict[str, Any]:
        return {
            "concurrency": self.concurrency,
            **self.load_dict(),
            "cpu_ms_per_turn": {
                "gateway": round(self.per_turn_ms(self.gateway_cpu_s), 3),
                "nats_server": round(self.per_turn_ms(self.nats_cpu_s), 3),
                "load_generator": round(self.per_turn_ms(self.client_cpu_s), 3),
            },
            "rss_mb": {"gateway": round(self.rss_gateway_mb, 1), "nats_server": round(self.rss_nats_mb, 1)},
        }


class Clients:
    """One keep-alive `httpx.AsyncClient` (one connection) per load-generator worker, kept across
    phases. A single client shared by 100 workers costs 4-6 ms of CPU per request in httpx's
    connection pool on this machine (~0.6 ms with a client each), which would measure httpx."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._clients: dict[int, httpx.AsyncClient] = {}

    def get(self, worker: int) -> httpx.AsyncClient:
        client = self._clients.get(worker)
        if client is None:
            client = self._clients[worker] = httpx.AsyncClient(
                base_url=self.url,
                headers={"Authorization": f"Bearer {TOKEN}"},
                limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
                timeout=httpx.Timeout(35.0),
                trust_env=False,
            )
        return client

    async def aclose(self) -> None:
        for client in self._clients.values():
            with contextlib.suppress(Exception):
                await client.aclose()
        self._clients.clear()


async def one_turn(
    client: httpx.AsyncClient, account: str, peer: str, text: str, expect: str | None
) -> tuple[str | None, str]:
    """One HTTP turn: (None, turn id) when it succeeded, else (what went wrong, turn id or '')."""
    try:
        resp = await client.post(
            "/v1/messages",
            params={"wait": "30"},
            json={"text": text, "accountId": account, "peer": {"kind": "direct", "id": peer}},
        )
    except httpx.HTTPError as exc:
        return f"{type(exc).__name__}: {exc}", ""
    if resp.status_code != 200:
        return f"HTTP {resp.status_code}: {resp.text[:200]}", ""
    body = resp.json()
    reply = body.get("text")
    turn_id = str(body.get("turnId") or "")
    if not isinstance(reply, str) or (expect is not None and expect not in reply):
        return f"unexpected reply: {json.dumps(body)[:200]}", turn_id
    return None, turn_id


# The JetStream consumers of the pipeline (see services/router and services/runner).
CONSUMERS = {"router": ("CM_INBOUND", "router"), "runner": ("CM_TURNS", "runner")}


class QueueProbe:
    """Samples how many turns wait at (or are being handled by) the router and the runner:
    consumer `num_pending + num_ack_pending`, every `interval` seconds, from the server.

    Stopped with an event, not by cancelling it: on Python 3.11 `asyncio.wait_for` (inside
    nats-py's request) can swallow a cancellation that arrives as the reply does."""

    def __init__(self, nc: NatsClient, interval: float = 0.05) -> None:
        self.js = nc.jetstream()
        self.interval = interval
        self.samples: dict[str, list[int]] = {}
        self.error: str | None = None

    async def sample_until_cancelled(self) -> None:
        """Sample until this task is cancelled (the form tests/bench/compose.py uses)."""
        await self.sample_until(asyncio.Event())

    async def sample_until(self, stop: asyncio.Event) -> None:
        """Sample until `stop` is set or the task is cancelled. A cancellation that
        `asyncio.wait_for` swallowed still shows in `Task.cancelling()`, so it ends the loop."""
        task = asyncio.current_task()
        self.samples = {name: [] for name in CONSUMERS}
        while not stop.is_set():
            if task is not None and task.cancelling():
                raise asyncio.CancelledError
            for name, (stream, durable) in CONSUMERS.items():
                try:
                    info = await self.js.consumer_info(stream, durable, timeout=2)
                except Exception as exc:  # names changed, or the server is too busy to answer
                    self.error = f"{type(exc).__name__}: {exc}"
                    continue
                self.samples[name].append((info.num_pending or 0) + (info.num_ack_pending or 0))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.interval)

    def means(self) -> dict[str, float]:
        return {k: sum(v) / len(v) for k, v in self.samples.items() if v}


async def run_phase(
    gw: Gateway,
    clients: Clients,
    name: str,
    concurrency: int,
    total: int,
    max_seconds: float,
    expect: str | None,
    probe: QueueProbe | None = None,
) -> Phase:
    """`total` turns over `concurrency` workers (one session each), stopping after `max_seconds`;
    with a `probe`, the queue depth at the router and runner consumers is sampled meanwhile."""
    phase = Phase(name=name, concurrency=concurrency, requested=total)
    remaining = [total]
    deadline = time.perf_counter() + max_seconds
    run_tag = f"{name}-{os.urandom(3).hex()}"

    async def worker(w: int) -> None:
        agent = AGENTS[w % len(AGENTS)]
        account, peer = ACCOUNT_OF[agent], f"{run_tag}-w{w}"
        i = 0
        while remaining[0] > 0:
            if time.perf_counter() > deadline:
                phase.stopped_by_time = True
                return
            remaining[0] -= 1
            i += 1
            t0 = time.perf_counter()
            problem, turn_id = await one_turn(clients.get(w), account, peer, f"ping {i} from {peer}", expect)
            t1 = time.perf_counter()
            if problem is None:
                phase.latencies_ms.append((t1 - t0) * 1e3)
                phase.samples.append((t0, t1, turn_id))
            else:
                phase.errors += 1
                if len(phase.error_samples) < 5:
                    phase.error_samples.append(problem)

    cpu_gw, cpu_nats, cpu_me = cpu_seconds(gw.pid), cpu_seconds(gw.nats_pid), time.process_time()
    t0 = time.perf_counter()
    stop = asyncio.Event()
    sampler = asyncio.create_task(probe.sample_until(stop)) if probe else None
    try:
        await asyncio.gather(*(worker(w) for w in range(concurrency)))
    finally:
        phase.wall_s = time.perf_counter() - t0
        phase.gateway_cpu_s = cpu_seconds(gw.pid) - cpu_gw
        phase.nats_cpu_s = cpu_seconds(gw.nats_pid) - cpu_nats
        phase.client_cpu_s = time.process_time() - cpu_me
        phase.rss_gateway_mb = rss_mb(gw.pid)
        phase.rss_nats_mb = rss_mb(gw.nats_pid)
        stop.set()
    if sampler is not None:
        try:
            await asyncio.wait_for(asyncio.shield(sampler), 10)
        except TimeoutError:
            sampler.cancel()
        assert probe is not None
        phase.queue_depth = probe.means()
    return phase


async def http_floor(client: httpx.AsyncClient, n: int) -> dict[str, float]:
    """GET /healthz through the same client and keep-alive connection: the HTTP layer alone."""
    for _ in range(min(50, n)):
        await client.get("/healthz")
    lat: list[float] = []
    for _ in range(n):
        t0 = time.perf_counter()
        r = await client.get("/healthz")
        lat.append((time.perf_counter() - t0) * 1e3)
        r.raise_for_status()
    lat.sort()
    return {"p50_ms": percentile(lat, 50), "p99_ms": percentile(lat, 99)}


# --- stage breakdown (a tap process on the same nats-server) ----------------------------------

# (label, from point, to point); points are timestamps of one turn's messages seen by the tap,
# plus "send"/"recv", when the load generator sent the HTTP request and had the reply.
STAGES: tuple[tuple[str, str, str], ...] = (
    ("ingress: HTTP request sent → inbound published", "send", "in"),
    ("router: inbound → turn published", "in", "turn"),
    ("runner: turn published → TurnStarted event", "turn", "started"),
    ("runner: TurnStarted → first transcript append", "started", "tx"),
    ("runner: transcript appends + done → outbound", "tx", "out"),
    ("runner: outbound published → final event", "out", "final"),
    ("ingress: final event → HTTP reply received", "final", "recv"),
    ("total", "send", "recv"),
)
SETTLE_S = 1.5  # longer than the runner's LINGER (1 s)
_POINTS = {"cm.in.": "in", "cm.turn.": "turn", "cm.ev.": "ev", "cm.tx.": "tx", "cm.out.": "out"}


def subject_family(subject: str, reply: str = "") -> str:
    """A readable name for a family of subjects (for the NATS messages-per-turn table)."""
    parts = subject.split(".")
    if reply.startswith("$JS.ACK."):
        return f"JetStream consumer delivery ({'.'.join(parts[:2])})"
    if subject.startswith("$KV.") and len(parts) > 2:
        return f"KV put/delete {parts[1]}"
    if subject.startswith("$JS.API.CONSUMER.MSG.NEXT."):
        return "JetStream pull request (fetch)"
    if subject.startswith("$JS.API.DIRECT.GET."):
        return "JetStream direct get (KV/stream read)"
    if subject.startswith("$JS.API."):
        return f"JetStream API {'.'.join(parts[2:4])}"
    if subject.startswith("$JS.ACK."):
        return "JetStream ack/nak/progress"
    if subject.startswith("_INBOX."):
        return "replies to _INBOX (publish acks, KV/API responses, fetch status)"
    names = {
        "in": "cm.in (inbound, JetStream)",
        "turn": "cm.turn (turn, JetStream)",
        "tx": "cm.tx (transcript append, JetStream)",
        "out": "cm.out (outbound, JetStream)",
        "ev": "cm.ev (session events)",
        "reply": "cm.reply (events to the waiting ingress)",
        "route": "cm.route.decided",
    }
    if len(parts) > 1 and parts[0] == "cm" and parts[1] in names:
        return names[parts[1]]
    return ".".join(parts[:2])


@dataclass
class StageReport:
    label: str
    turns: int
    matched: int = 0
    stages_ms: dict[str, list[float]] = field(default_factory=dict)
    msgs_per_turn: dict[str, float] = field(default_factory=dict)
    error: str | None = None

    def pct(self, stage: str, q: float) -> float:
        return percentile(sorted(self.stages_ms.get(stage, [])), q)

    def to_dict(self) -> dict[str, Any]:
        return {
            "turns": self.turns,
            "matched": self.matched,
            "error": self.error,
            "stages_ms": {
                label: {"p50": round(self.pct(label, 50), 3), "p90": round(self.pct(label, 90), 3)}
                for label, _, _ in STAGES
            },
            "nats_msgs_per_turn": {k: round(v, 2) for k, v in self.msgs_per_turn.items()},
        }


def analyse_tap(path: Path, phase: Phase, label: str) -> StageReport:
    report = StageReport(label, phase.ok)
    wanted = {tid for _, _, tid in phase.samples if tid}
    points: dict[str, dict[str, float]] = {}
    counts: dict[str, int] = {}
    # what the previous phase left behind (e.g. its sessions' leases released a moment after
    # their last turn) is not this phase's cost; its own trailing messages are
    began = min((sent for sent, _, _ in phase.samples), default=0.0)
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            t, subject, reply, ids = json.loads(line)
            if t < began:
                continue
            family = subject_family(subject, reply or "")
            counts[family] = counts.get(family, 0) + 1
            point = next((p for prefix, p in _POINTS.items() if subject.startswith(prefix)), None)
            if point is None or (reply or "").startswith("$JS.ACK."):
                continue
            for tid in ids:
                if tid not in wanted:
                    continue
                seen = points.setdefault(tid, {})
                if point == "ev":
                    seen.setdefault("started", t)
                    seen["final"] = t
                else:
                    seen.setdefault(point, t)
    for sent, answered, tid in phase.samples:
        traced = points.get(tid)
        if traced is None:
            continue
        seen = {**traced, "send": sent, "recv": answered}
        if not all(p in seen for _, a, b in STAGES for p in (a, b)):
            continue
        report.matched += 1
        for stage, a, b in STAGES:
            report.stages_ms.setdefault(stage, []).append((seen[b] - seen[a]) * 1e3)
    if phase.ok:
        report.msgs_per_turn = {
            k: v / phase.ok for k, v in sorted(counts.items(), key=lambda kv: -kv[1]) if v / phase.ok >= 0.05
        }
    return report


async def tapped_phase(
    gw: Gateway,
    clients: Clients,
    tmp: Path,
    label: str,
    concurrency: int,
    total: int,
    expect: str | None,
) -> StageReport:
    """A load phase with a tap process subscribed to `>`, for the per-stage breakdown."""
    out = tmp / f"tap-{label}.jsonl"
    with (tmp / "tap.log").open("ab") as log:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.bench._tap",
            gw.nats_url,
            str(out),
            cwd=ROOT,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=log,
        )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        try:
            await read_line_matching(proc.stdout, lambda line: line == "TAPPING", 30)
        except (TimeoutError, EOFError):
            return StageReport(label, 0, error="the tap process did not start (see tap.log)")
        # The runner keeps a session claimed for a moment after its turn (LINGER in
        # services/runner/ordering.py) and then releases its lease: wait that out, so that the
        # previous phase's releases are not counted here and this phase's own are.
        await asyncio.sleep(SETTLE_S)
        phase = await run_phase(gw, clients, f"tap{label}", concurrency, total, 60, expect)
        await asyncio.sleep(SETTLE_S)
        proc.stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), 120)
        except TimeoutError:
            return StageReport(label, phase.ok, error="the tap process did not finish")
    finally:
        await stop_process(proc, "tap", grace=5)
    if proc.returncode != 0 or not out.exists():
        return StageReport(label, phase.ok, error=f"the tap process failed (exit {proc.returncode})")
    return analyse_tap(out, phase, label)


# --- one run -------------------------------------------------------------------------------


@dataclass
class RunResult:
    name: str
    model: str
    gateway: dict[str, Any] = field(default_factory=dict)
    baselines: dict[str, float] = field(default_factory=dict)
    phases: dict[str, Phase] = field(default_factory=dict)
    peak_rss_gateway_mb: float = float("nan")
    peak_rss_nats_mb: float = float("nan")
    stages: list[StageReport] = field(default_factory=list)
    error: str | None = None

    def total_requests(self) -> tuple[int, int]:
        done = sum(p.done for p in self.phases.values())
        errors = sum(p.errors for p in self.phases.values())
        return done, errors


async def bench_run(name: str, counts: Counts, max_concurrent: int, keep: bool, stages: bool) -> RunResult:
    tmp = Path(tempfile.mkdtemp(prefix=f"clawmesh-bench-{name}-"))
    fake: FakeModel | None = None
    gw: Gateway | None = None
    model = "echo/bench" if name == "echo" else f"{name}/fake"
    result = RunResult(name, model)
    expect = "echo" if name == "echo" else FAKE_REPLY
    print(f"\n=== run '{name}': model {model}, state in {tmp}", flush=True)
    try:
        extra_env: dict[str, str] = {}
        if name in MODEL_RUNS:
            fake = await start_fake_model(tmp)
            extra_env[f"{name.upper()}_API_KEY"] = "sk-fake"
            print(f"fake model server on 127.0.0.1:{fake.port} (pid {fake.proc.pid})", flush=True)
        config = bench_config(model, max_concurrent, fake.port if fake else None)
        try:
            gw = await start_gateway(tmp, config, extra_env)
        except RuntimeError as exc:
            result.error = str(exc)
            print(f"GATEWAY FAILED TO START: {exc}", flush=True)
            return result
        result.gateway = {
            "spawn_to_ready_s": round(gw.spawn_to_ready_s, 3),
            "ready_seconds_reported": round(gw.ready_seconds, 3),
            "rss_at_ready_mb": round(rss_mb(gw.pid), 1),
            "nats_rss_at_ready_mb": round(rss_mb(gw.nats_pid), 1),
            "url": gw.url,
            "nats": "nats://" + gw.nats_url.split("@", 1)[-1],  # without the admin password
        }
        print(
            f"ready: {gw.spawn_to_ready_s:.2f}s from spawn (process says {gw.ready_seconds:.2f}s); "
            f"RSS gateway {rss_mb(gw.pid):.0f} MB, nats-server {rss_mb(gw.nats_pid):.0f} MB "
            f"(pids {gw.pid}, {gw.nats_pid})",
            flush=True,
        )
        clients = Clients(gw.url)
        try:
            # warm up: connections, sessions, code paths, the fake server
            await run_phase(gw, clients, "warmup", 1, counts.warmup // 2, 30, expect)
            warm = await run_phase(gw, clients, "warmup20", 20, counts.warmup, 30, expect)
            await run_phase(gw, clients, "warmup100", 100, 100, 30, expect)  # every worker's connection
            if warm.errors:
                print(f"warm-up errors: {warm.errors} (e.g. {warm.error_samples[:1]})", flush=True)
            probe_nc: NatsClient = await nats.connect(gw.nats_url, name="bench-probe")
            probe = QueueProbe(probe_nc)
            try:
                for label, conc, total in (
                    ("c1", 1, counts.c1),
                    ("c20", 20, counts.c20),
                    ("c100", 100, counts.c100),
                ):
                    # no sampling at c=1: its own requests would be a noticeable share of the load
                    phase = await run_phase(
                        gw,
                        clients,
                        label,
                        conc,
                        total,
                        counts.phase_seconds,
                        expect,
                        probe if conc > 1 else None,
                    )
                    result.phases[label] = phase
                    print(
                        f"{label:>5}: {phase.ok} ok, {phase.errors} errors in {phase.wall_s:.1f}s"
                        f"{' (time limit)' if phase.stopped_by_time else ''}: {phase.turns_per_s:,.0f} turns/s, "
                        f"p50 {phase.pct(50):.2f} ms, p99 {phase.pct(99):.2f} ms; CPU/turn gateway "
                        f"{phase.per_turn_ms(phase.gateway_cpu_s):.2f} ms, nats "
                        f"{phase.per_turn_ms(phase.nats_cpu_s):.2f} ms, load generator "
                        f"{phase.per_turn_ms(phase.client_cpu_s):.2f} ms; RSS {phase.rss_gateway_mb:.0f} MB",
                        flush=True,
                    )
                    if phase.queue_depth:
                        print(
                            "       time at a stage (Little's law from sampled consumer queue depth): "
                            + ", ".join(
                                f"{k} {phase.stage_ms(k):.1f} ms (mean depth {d:.1f})"
                                for k, d in phase.queue_depth.items()
                            ),
                            flush=True,
                        )
                    for sample in phase.error_samples[:3]:
                        print(f"       error: {sample}", flush=True)
            finally:
                await probe_nc.close()
            if probe.error:
                print(f"queue probe: {probe.error}", flush=True)
            if stages:
                # c=1 only: under load the tap process is starved of CPU on a small machine and
                # its timestamps come in bursts; loaded phases use the queue probe instead.
                rep = await tapped_phase(gw, clients, tmp, "c1", 1, counts.stage_c1, expect)
                result.stages.append(rep)
                print(
                    f"stage breakdown c1: {rep.matched}/{rep.turns} turns traced"
                    + (f" ({rep.error})" if rep.error else ""),
                    flush=True,
                )
            floor = await http_floor(clients.get(0), counts.http)
        finally:
            await clients.aclose()
        result.baselines = {f"http_healthz_{k}": v for k, v in floor.items()}
        result.baselines.update(
            await nats_baseline(
                gw.nats_url, sequential=counts.rr, concurrent=counts.rr, in_flight=20, js=counts.js
            )
        )
        if fake is not None:
            result.baselines.update(await fake_round_trip(fake.port, name, counts.http))
            print(
                f"baseline: bare HTTP round trip to the fake model ({name} wire, plain httpx) p50 "
                f"{result.baselines['fake_rtt_p50_ms'] * 1e3:.0f} µs, "
                f"{result.baselines['fake_rtt_cpu_ms']:.2f} ms CPU per call in the load generator",
                flush=True,
            )
        b = result.baselines
        print(
            f"baselines: request/reply p50 {b['rr_p50_ms'] * 1e3:.0f} µs p99 {b['rr_p99_ms'] * 1e3:.0f} µs, "
            f"20 in flight {b['rr_c20_per_s']:,.0f} req/s; JetStream publish p50 "
            f"{b['js_p50_ms'] * 1e3:.0f} µs, {b['js_seq_per_s']:,.0f} msgs/s; GET /healthz p50 "
            f"{b['http_healthz_p50_ms'] * 1e3:.0f} µs",
            flush=True,
        )
        rss = [p.rss_gateway_mb for p in result.phases.values()] + [rss_mb(gw.pid)]
        result.peak_rss_gateway_mb = max(rss)
        result.peak_rss_nats_mb = max([p.rss_nats_mb for p in result.phases.values()] + [rss_mb(gw.nats_pid)])
    finally:
        if gw is not None:
            await stop_process(gw.proc, "clawmesh up")
            await kill_if_alive(gw.nats_pid)
        if fake is not None:
            await stop_process(fake.proc, "fake model server")
        if keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return result


# --- report --------------------------------------------------------------------------------


def figures(r: RunResult) -> dict[str, float]:
    c1, c20 = r.phases.get("c1"), r.phases.get("c20")
    nan = float("nan")
    return {
        "p50_ms_c1": c1.pct(50) if c1 else nan,
        "p99_ms_c1": c1.pct(99) if c1 else nan,
        "turns_per_s_c20": c20.turns_per_s if c20 else nan,
        "rss_mb": r.peak_rss_gateway_mb,
        "ready_s": r.gateway.get("spawn_to_ready_s", nan),
    }


def verdict(key: str, value: float) -> str:
    if value != value:
        return "-"
    ok = value >= TARGETS[key] if key == "turns_per_s_c20" else value <= TARGETS[key]
    return "PASS" if ok else "MISS"


def report(results: list[RunResult]) -> None:
    for r in results:
        if r.error or not r.phases:
            continue
        rows = []
        for p in r.phases.values():
            rows.append(
                [
                    f"c={p.concurrency}",
                    f"{p.ok}/{p.requested}" + ("*" if p.stopped_by_time else ""),
                    str(p.errors),
                    f"{p.turns_per_s:,.0f}",
                    f"{p.pct(50):.2f}",
                    f"{p.pct(90):.2f}",
                    f"{p.pct(99):.2f}",
                    f"{max(p.latencies_ms, default=float('nan')):.1f}",
                    f"{p.per_turn_ms(p.gateway_cpu_s):.2f}",
                    f"{p.per_turn_ms(p.nats_cpu_s):.2f}",
                    f"{p.per_turn_ms(p.client_cpu_s):.2f}",
                    f"{p.rss_gateway_mb:.0f}/{p.rss_nats_mb:.0f}",
                    f"{p.stage_ms('router'):.1f}" if "router" in p.queue_depth else "-",
                    f"{p.stage_ms('runner'):.1f}" if "runner" in p.queue_depth else "-",
                ]
            )
        print_table(
            [
                "phase",
                "ok/req",
                "err",
                "turns/s",
                "p50 ms",
                "p90 ms",
                "p99 ms",
                "max ms",
                "gw CPU ms/turn",
                "nats CPU",
                "client CPU",
                "RSS MB gw/nats",
                "at router ms",
                "at runner ms",
            ],
            rows,
            title=f"Run '{r.name}' ({r.model}): HTTP turns through clawmesh up "
            "(CPU: per completed turn; 'at router/runner': mean time a turn spends queued or in "
            "progress at that JetStream consumer, Little's law on sampled queue depth)",
        )
        b = r.baselines
        c1, c20 = r.phases.get("c1"), r.phases.get("c20")
        if b and c1 and c20:
            rows = [
                [
                    "nats-py request/reply p50",
                    f"{b['rr_p50_ms'] * 1e3:.0f} µs",
                    f"{c1.pct(50) / b['rr_p50_ms']:.1f}x",
                ],
                [
                    "nats-py request/reply p99",
                    f"{b['rr_p99_ms'] * 1e3:.0f} µs",
                    f"{c1.pct(99) / b['rr_p99_ms']:.1f}x",
                ],
                [
                    "JetStream publish p50",
                    f"{b['js_p50_ms'] * 1e3:.0f} µs",
                    f"{c1.pct(50) / b['js_p50_ms']:.1f}x",
                ],
                [
                    "GET /healthz p50 (HTTP floor)",
                    f"{b['http_healthz_p50_ms'] * 1e3:.0f} µs",
                    f"{c1.pct(50) / b['http_healthz_p50_ms']:.1f}x",
                ],
                [
                    "request/reply, 20 in flight",
                    f"{b['rr_c20_per_s']:,.0f}/s",
                    f"{c20.turns_per_s / b['rr_c20_per_s']:.3f}x",
                ],
                [
                    "JetStream publish, sequential",
                    f"{b['js_seq_per_s']:,.0f}/s",
                    f"{c20.turns_per_s / b['js_seq_per_s']:.3f}x",
                ],
            ]
            print_table(
                ["baseline (same nats-server, same run)", "figure", "turn / baseline"],
                rows,
                title=f"Run '{r.name}': ratios (latency rows: turn p50/p99 at c=1 ÷ baseline; rate rows: turns/s at c=20 ÷ baseline)",
            )
        report_stages(r)
        report_bus_goals(r)
    ok_runs = [r for r in results if not r.error and r.phases]
    if not ok_runs:
        return
    report_provider_cost(ok_runs)
    header = ["target", "goal", *(r.name for r in ok_runs), "incumbent"]
    labels = {
        "p50_ms_c1": ("p50 latency, c=1 (ms)", "≤ 5"),
        "p99_ms_c1": ("p99 latency, c=1 (ms)", "≤ 20"),
        "turns_per_s_c20": ("throughput, c=20 (turns/s)", "≥ 500"),
        "rss_mb": ("gateway RSS, peak (MB)", "≤ 250"),
        "ready_s": ("spawn → ready (s)", "≤ 2"),
    }
    figs = {r.name: figures(r) for r in ok_runs}
    rows = []
    for key, (label, goal) in labels.items():
        cells = []
        for r in ok_runs:
            v = figs[r.name][key]
            shown = f"{v:,.0f}" if key == "turns_per_s_c20" else f"{v:.2f}" if key != "rss_mb" else f"{v:.0f}"
            cells.append(f"{shown} {verdict(key, v)}")
        rows.append([label, goal, *cells, INCUMBENT[key]])
    extra = []
    for r in ok_runs:
        c100 = r.phases.get("c100")
        extra.append(f"{c100.turns_per_s:,.0f}" if c100 else "-")
    rows.append(["throughput, c=100 (turns/s)", "-", *extra, "-"])
    rows.append(["nats-server RSS, peak (MB)", "-", *(f"{r.peak_rss_nats_mb:.0f}" for r in ok_runs), "-"])
    print_table(header, rows, title="Summary (targets are informational; PASS/MISS per run)")


def report_provider_cost(runs: list[RunResult]) -> None:
    """Gateway CPU per turn of each model run over the echo run's (the issue's goal: ≤ +2 ms),
    next to the bare HTTP round trip to the fake model that a provider cannot avoid."""
    echo = next((r for r in runs if r.name == "echo"), None)
    if echo is None:
        return
    rows = []
    for r in runs:
        if r is echo:
            continue
        cells = [r.name]
        for label in ("c1", "c20"):
            mine, base = r.phases.get(label), echo.phases.get(label)
            if mine and base:
                extra = mine.per_turn_ms(mine.gateway_cpu_s) - base.per_turn_ms(base.gateway_cpu_s)
                cells.append(f"{mine.per_turn_ms(mine.gateway_cpu_s):.2f} ({extra:+.2f})")
            else:
                cells.append("-")
        rtt = r.baselines.get("fake_rtt_cpu_ms")
        cells.append(f"{rtt:.2f}" if rtt is not None else "-")
        p50 = r.baselines.get("fake_rtt_p50_ms")
        cells.append(f"{p50 * 1e3:.0f}" if p50 is not None else "-")
        rows.append(cells)
    if rows:
        print_table(
            [
                "run",
                "gw CPU ms/turn c=1 (− echo)",
                "gw CPU ms/turn c=20 (− echo)",
                "bare HTTP call CPU ms",
                "bare HTTP p50 µs",
            ],
            rows,
            title="Provider cost: gateway CPU per turn against the echo run's (goal ≤ +2 ms), and the bare "
            "HTTP round trip to the fake model (plain httpx in the load generator, same run)",
        )


# Issue 16's goals for the bus cost of a turn, and its figures when it was filed.
BUS_GOALS = {"msgs_per_turn": 20.0, "p50_c1_over_rr": 15.0}
BUS_BEFORE = {"msgs_per_turn": "38", "p50_c1_over_rr": "25.6x", "c20_over_rr20": "-"}


def report_bus_goals(r: RunResult) -> None:
    """NATS messages per turn (tap, c=1), c=1 p50 over raw request/reply and c=20 turns/s over
    20-in-flight request/reply, all from this run, against the issue's goals."""
    b, c1, c20 = r.baselines, r.phases.get("c1"), r.phases.get("c20")
    traced = [s for s in r.stages if s.msgs_per_turn]
    if not (b and c1 and c20):
        return
    msgs = sum(traced[-1].msgs_per_turn.values()) if traced else float("nan")
    over_rr = c1.pct(50) / b["rr_p50_ms"]
    over_rr20 = c20.turns_per_s / b["rr_c20_per_s"]
    rows = [
        [
            "NATS messages per turn (c=1)",
            f"{msgs:.1f}",
            f"≤ {BUS_GOALS['msgs_per_turn']:.0f}",
            "-" if msgs != msgs else ("PASS" if msgs <= BUS_GOALS["msgs_per_turn"] else "MISS"),
            BUS_BEFORE["msgs_per_turn"],
        ],
        [
            "c=1 p50 / request-reply p50",
            f"{over_rr:.1f}x",
            f"≤ {BUS_GOALS['p50_c1_over_rr']:.0f}x",
            "PASS" if over_rr <= BUS_GOALS["p50_c1_over_rr"] else "MISS",
            BUS_BEFORE["p50_c1_over_rr"],
        ],
        [
            "c=20 turns/s / request-reply 20 in flight",
            f"{over_rr20:.4f}x",
            "2x before",
            "-",
            BUS_BEFORE["c20_over_rr20"],
        ],
    ]
    print_table(
        ["bus cost (issue 16)", "this run", "goal", "", "when filed"],
        rows,
        title=f"Run '{r.name}': a turn's cost on the bus, as ratios to baselines of this run",
    )


def report_stages(r: RunResult) -> None:
    reps = [s for s in r.stages if s.matched]
    if not reps:
        return
    header = ["stage (times seen by a NATS tap)"]
    for s in reps:
        header += [f"{s.label} p50 ms", f"{s.label} p90 ms"]
    rows = []
    for label, _, _ in STAGES:
        row = [label]
        for s in reps:
            row += [f"{s.pct(label, 50):.2f}", f"{s.pct(label, 90):.2f}"]
        rows.append(row)
    print_table(
        header,
        rows,
        title=f"Run '{r.name}': where a turn's time goes (separate traced phases: "
        + ", ".join(f"{s.label} {s.matched} turns" for s in reps)
        + ")",
    )
    last = reps[-1]
    print_table(
        ["NATS messages per turn, by subject family", last.label],
        [[k, f"{v:.2f}"] for k, v in last.msgs_per_turn.items()]
        + [["total", f"{sum(last.msgs_per_turn.values()):.1f}"]],
        title=f"Run '{r.name}': NATS messages per turn (every message the server delivered to the tap, "
        "including idle polling, divided by turns)",
    )


def to_json(results: list[RunResult], counts: Counts, args: argparse.Namespace) -> dict[str, Any]:
    return {
        "benchmark": "pipeline",
        "machine": machine(),
        "quick": args.quick,
        "counts": counts.__dict__,
        "max_concurrent_per_agent": args.max_concurrent or "clawmesh default",
        "targets": TARGETS,
        "incumbent": INCUMBENT,
        "runs": {
            r.name: {
                "model": r.model,
                "error": r.error,
                "gateway": r.gateway,
                "baselines_ms": {k: round(v, 4) for k, v in r.baselines.items()},
                "phases": {k: p.to_dict() for k, p in r.phases.items()},
                "peak_rss_mb": {
                    "gateway": round(r.peak_rss_gateway_mb, 1),
                    "nats_server": round(r.peak_rss_nats_mb, 1),
                },
                "figures": {k: round(v, 3) for k, v in figures(r).items()},
                "verdicts": {k: verdict(k, v) for k, v in figures(r).items()},
                "stages": {s.label: s.to_dict() for s in r.stages},
            }
            for r in results
        },
    }


async def amain(args: argparse.Namespace) -> int:
    counts = QUICK if args.quick else FULL
    names = [args.only] if args.only else ["echo", *MODEL_RUNS]
    print(
        f"pipeline benchmark: runs {names}; c=1 {counts.c1}, c=20 {counts.c20}, c=100 {counts.c100} turns "
        f"(≤ {counts.phase_seconds:.0f}s per phase); agents.defaults.maxConcurrent = "
        f"{args.max_concurrent or 'clawmesh default'}; Python {sys.version.split()[0]}, {os.cpu_count()} CPUs",
        flush=True,
    )
    # SIGTERM (e.g. from a CI timeout) cancels the run, so that the `finally` blocks stop the
    # gateway and the fake server; SIGINT does the same through asyncio.run.
    main_task = asyncio.current_task()
    assert main_task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main_task.cancel)
    results: list[RunResult] = []
    for name in names:
        results.append(await bench_run(name, counts, args.max_concurrent, args.keep, args.stages))
    report(results)
    if args.json:
        write_json(args.json, to_json(results, counts, args))
    status = 0
    for r in results:
        if r.error:
            print(f"FAILED: run '{r.name}': the gateway did not start")
            status = 1
            continue
        done, errors = r.total_requests()
        if done and errors / done > 0.01:
            print(f"FAILED: run '{r.name}': {errors} of {done} requests failed (> 1%)")
            status = 1
    return status


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small counts (a smoke check, noisy figures)")
    parser.add_argument("--json", metavar="PATH", help="write the figures to PATH")
    parser.add_argument("--only", choices=["echo", *MODEL_RUNS], help="one run only")
    parser.add_argument(
        "--max-concurrent",
        type=int,
        default=128,
        metavar="N",
        help="agents.defaults.maxConcurrent in the bench config (default 128; 0 = clawmesh's default of 4)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (config, logs, state)")
    parser.add_argument(
        "--no-stages",
        dest="stages",
        action="store_false",
        help="skip the extra phases traced by a NATS tap (per-stage latency, NATS messages per turn)",
    )
    args = parser.parse_args(argv)
    try:
        return asyncio.run(amain(args))
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
