"""Small helpers shared by the benchmark scripts (statistics, tables, JSON output, machine facts)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "LoadPhase",
    "fmt_rate",
    "fmt_us",
    "machine",
    "median",
    "nats_baseline",
    "percentile",
    "print_table",
    "write_json",
]


@dataclass(kw_only=True)
class LoadPhase:
    """One load phase of HTTP turns: what was asked, what came back, and how long it took."""

    requested: int
    latencies_ms: list[float] = field(default_factory=list)
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    wall_s: float = 0.0
    stopped_by_time: bool = False
    # mean number of turns at each JetStream consumer (pending + fetched-but-unacked), sampled
    queue_depth: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> int:
        return len(self.latencies_ms)

    @property
    def turns_per_s(self) -> float:
        return self.ok / self.wall_s if self.wall_s else float("nan")

    def pct(self, q: float) -> float:
        return percentile(sorted(self.latencies_ms), q)

    def stage_ms(self, stage: str) -> float:
        """Little's law: mean time a turn spends at a stage = mean depth / throughput."""
        depth = self.queue_depth.get(stage)
        return depth / self.turns_per_s * 1e3 if depth is not None and self.turns_per_s else float("nan")

    def load_dict(self) -> dict[str, Any]:
        """The figures every benchmark reports for a phase (JSON output)."""
        return {
            "requested": self.requested,
            "ok": self.ok,
            "errors": self.errors,
            "error_samples": self.error_samples,
            "stopped_by_time": self.stopped_by_time,
            "wall_s": round(self.wall_s, 3),
            "turns_per_s": round(self.turns_per_s, 1),
            "latency_ms": {
                "p50": round(self.pct(50), 3),
                "p90": round(self.pct(90), 3),
                "p99": round(self.pct(99), 3),
                "max": round(max(self.latencies_ms, default=float("nan")), 3),
                "mean": round(sum(self.latencies_ms) / self.ok, 3) if self.ok else None,
            },
            "queue_depth_mean": {k: round(v, 2) for k, v in self.queue_depth.items()},
            "stage_ms_littles_law": {k: round(self.stage_ms(k), 2) for k in self.queue_depth},
        }


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of already sorted values (q in 0..100)."""
    if not sorted_values:
        return float("nan")
    rank = max(1, min(len(sorted_values), math.ceil(q / 100 * len(sorted_values))))
    return sorted_values[rank - 1]


def fmt_us(us: float) -> str:
    if us != us:  # NaN
        return "-"
    if us >= 100:
        return f"{us:,.0f}"
    if us >= 10:
        return f"{us:.1f}"
    return f"{us:.2f}"


def fmt_rate(per_s: float) -> str:
    if per_s != per_s:
        return "-"
    if per_s >= 1e6:
        return f"{per_s / 1e6:.2f}M"
    if per_s >= 1e4:
        return f"{per_s / 1e3:.0f}k"
    if per_s >= 1e3:
        return f"{per_s / 1e3:.1f}k"
    return f"{per_s:.0f}"


def print_table(header: Sequence[str], rows: Sequence[Sequence[str]], title: str | None = None) -> None:
    if title:
        print(f"\n{title}")
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=True)]
    line = "  ".join(
        h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(header, widths, strict=True))
    )
    print(line)
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print(
            "  ".join(
                str(c).ljust(w) if i == 0 else str(c).rjust(w)
                for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )
    sys.stdout.flush()


def machine() -> dict[str, Any]:
    try:
        load = os.getloadavg()
    except OSError:
        load = (float("nan"),) * 3
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "loadavg": [round(x, 2) for x in load],
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def write_json(path: str | os.PathLike[str], data: dict[str, Any]) -> None:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")
    print(f"\nresults written to {target}")


async def nats_baseline(
    url: str,
    *,
    sequential: int,
    concurrent: int,
    in_flight: int,
    js: int,
    auth: dict[str, str] | None = None,
) -> dict[str, float]:
    """Raw nats-py request/reply (echo responder in this process) and JetStream publish on `url`.

    Every benchmark measures these in the same run, so its figures read as ratios to what the
    bare server and client manage on this machine at that moment.  Keys: `rr_p50_ms`, `rr_p99_ms`,
    `rr_seq_per_s`, `rr_c<in_flight>_per_s`, `js_p50_ms`, `js_p99_ms`, `js_seq_per_s`.
    """
    import nats
    from nats.aio.msg import Msg
    from nats.js.api import StorageType, StreamConfig

    out: dict[str, float] = {}
    tag = f"{os.getpid()}_{time.monotonic_ns()}"
    subject = f"bench.req.{tag}"
    responder = await nats.connect(url, name="bench-responder", **(auth or {}))
    client = await nats.connect(url, name="bench-requester", **(auth or {}))
    try:

        async def echo(msg: Msg) -> None:
            await msg.respond(msg.data)

        await responder.subscribe(subject, queue="bench", cb=echo)
        await responder.flush()
        payload = b"x" * 256
        for _ in range(200):
            await client.request(subject, payload, timeout=5)
        lat: list[float] = []
        for _ in range(sequential):
            t0 = time.perf_counter()
            await client.request(subject, payload, timeout=5)
            lat.append((time.perf_counter() - t0) * 1e3)
        lat.sort()
        out["rr_p50_ms"] = percentile(lat, 50)
        out["rr_p99_ms"] = percentile(lat, 99)
        out["rr_seq_per_s"] = len(lat) / (sum(lat) / 1e3)

        per_worker = max(1, concurrent // in_flight)

        async def rr_worker() -> None:
            for _ in range(per_worker):
                await client.request(subject, payload, timeout=10)

        t0 = time.perf_counter()
        await asyncio.gather(*(rr_worker() for _ in range(in_flight)))
        out[f"rr_c{in_flight}_per_s"] = per_worker * in_flight / (time.perf_counter() - t0)

        jsctx = client.jetstream()
        stream = f"BENCH_{tag}"
        js_subject = f"bench.js.{tag}"
        await jsctx.add_stream(StreamConfig(name=stream, subjects=[js_subject], storage=StorageType.FILE))
        try:
            for _ in range(100):
                await jsctx.publish(js_subject, payload)
            lat = []
            t_all = time.perf_counter()
            for _ in range(js):
                t0 = time.perf_counter()
                await jsctx.publish(js_subject, payload)
                lat.append((time.perf_counter() - t0) * 1e3)
            out["js_seq_per_s"] = js / (time.perf_counter() - t_all)
            lat.sort()
            out["js_p50_ms"] = percentile(lat, 50)
            out["js_p99_ms"] = percentile(lat, 99)
        finally:
            with contextlib.suppress(Exception):
                await jsctx.delete_stream(stream)
    finally:
        await client.close()
        await responder.close()
    return out
