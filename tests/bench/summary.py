"""One line per headline figure from the benchmarks' JSON files (`python -m tests.bench.summary F…`)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def _routing(data: dict[str, Any]) -> list[str]:
    uncached: dict[str, dict[str, float]] = data.get("uncached_us", {})
    sizes = sorted({int(n) for per_n in uncached.values() for n in per_n})
    if not sizes:
        return ["routing: no figures"]
    top = str(sizes[-1])
    worst_tier, worst = max(
        ((tier, per_n[top]) for tier, per_n in uncached.items() if top in per_n), key=lambda kv: kv[1]
    )
    best_tier, best = min(
        ((tier, per_n[top]) for tier, per_n in uncached.items() if top in per_n), key=lambda kv: kv[1]
    )
    base = data.get("baseline_us", {}).get("dict lookup + f-string key")
    lines = [
        f"routing: uncached decision at N={int(top):,}: {best:.2f}-{worst:.2f} µs "
        f"(best {best_tier}, worst {worst_tier}; target ≤ {data.get('target_us', 3)} µs: "
        f"{'PASS' if data.get('target_met') else 'MISS'})"
        + (f"; baseline dict lookup + f-string {base:.3f} µs" if base else ""),
    ]
    new = data.get("never_seen_account_us", {}).get(top)
    if new is not None:
        lines.append(f"routing: never-seen account via resolve_route at N={int(top):,}: {new:.2f} µs")
    parse, index = data.get("parse_config_ms", {}).get(top), data.get("route_index_ms", {}).get(top)
    if parse is not None and index is not None:
        lines.append(f"routing: parse_config {parse:,.1f} ms, route_index {index:,.1f} ms at N={int(top):,}")
    if data.get("errors"):
        lines.append(f"routing: {len(data['errors'])} wrong decisions (see the log)")
    return lines


def _pipeline(data: dict[str, Any]) -> list[str]:
    lines = []
    for name, run in data.get("runs", {}).items():
        if run.get("error"):
            lines.append(f"pipeline/{name}: gateway failed to start")
            continue
        f, v = run.get("figures", {}), run.get("verdicts", {})
        c100 = run.get("phases", {}).get("c100", {}).get("turns_per_s")
        errors = sum(p.get("errors", 0) for p in run.get("phases", {}).values())
        lines.append(
            f"pipeline/{name}: c=1 p50 {f.get('p50_ms_c1', float('nan')):.2f} ms ({v.get('p50_ms_c1')}), "
            f"p99 {f.get('p99_ms_c1', float('nan')):.2f} ms ({v.get('p99_ms_c1')}); "
            f"c=20 {f.get('turns_per_s_c20', float('nan')):,.0f} turns/s ({v.get('turns_per_s_c20')}); "
            f"c=100 {c100 if c100 is not None else '-'} turns/s; "
            f"RSS {f.get('rss_mb', float('nan')):.0f} MB ({v.get('rss_mb')}); "
            f"ready {f.get('ready_s', float('nan')):.2f} s ({v.get('ready_s')}); errors {errors}"
        )
    return lines or ["pipeline: no runs"]


def _providers(data: dict[str, Any]) -> list[str]:
    cpu: dict[str, float] = data.get("cpu_ms_per_call", {})
    echo = cpu.get("echo provider", float("nan"))
    return [
        f"providers: {name} {cpu[name]:.2f} ms CPU/call ({cpu[name] - echo:+.2f} over echo, "
        f"{cpu[name] - cpu.get(f'raw HTTP ({api} wire)', float('nan')):+.2f} over the bare HTTP round trip)"
        for api in ("openai", "anthropic")
        if (name := f"{api} provider") in cpu
    ] or ["providers: no figures"]


def _proxy(data: dict[str, Any]) -> list[str]:
    runners: dict[str, dict[str, Any]] = data.get("runners", {})
    return [
        f"proxy/{name}: {r['added_wall_ms']:+.2f} ms wall, {r['backend_cpu_ms'] - r['direct_cpu_ms']:+.2f} ms CPU "
        f"per turn over a direct call to its fake (goal ≤ {data.get('goal_ms', 5)} ms: {r['verdict']})"
        for name, r in runners.items()
    ] or ["proxy: no figures"]


def _anchor(data: dict[str, Any]) -> list[str]:
    if data.get("skipped"):
        return [f"anchor: skipped: {data['skipped']}"]
    mine, theirs = data.get("clawmesh", {}), data.get("openclaw", {})
    parts = []
    for key, label, lower_is_better in (
        ("p50_ms_c1", "latency c=1", True),
        ("turns_per_s_c20", "throughput c=20", False),
        ("cpu_ms_per_turn_c1", "CPU/turn c=1", True),
        ("rss_mb", "RSS", True),
        ("ready_s", "ready", True),
    ):
        a, b = mine.get(key), theirs.get(key)
        if a and b:
            parts.append(f"{label} {(b / a if lower_is_better else a / b):,.1f}x")
    return ["anchor: clawmesh vs OpenClaw (> 1x: clawmesh better): " + (", ".join(parts) or "no figures")]


def _telegram(data: dict[str, Any]) -> list[str]:
    c1, c20, v = data.get("c1", {}), data.get("c20", {}), data.get("verdicts", {})
    http1, http20 = data.get("http_c1", {}), data.get("http_c20", {})
    return [
        f"telegram: c=1 p50 {c1.get('latency_ms', {}).get('p50', float('nan')):.2f} ms = "
        f"{data.get('p50_over_rtt', float('nan')):.1f}x the fake's round trip "
        f"{data.get('fake_rtt_p50_ms', float('nan')):.3f} ms ({v.get('p50_over_rtt')}); "
        f"c=20 {c20.get('turns_per_s', float('nan')):,.0f} msgs/s ({v.get('msgs_per_s_c20')}); "
        f"HTTP API same run: p50 {http1.get('latency_ms', {}).get('p50', float('nan')):.2f} ms, "
        f"c=20 {http20.get('turns_per_s', float('nan')):,.0f} turns/s; "
        f"no reply: {c1.get('errors', 0) + c20.get('errors', 0)}"
    ]


def _agents(data: dict[str, Any]) -> list[str]:
    plain, spawn = data.get("plain_us", {}), data.get("spawn_us", {}).get("round_trip", {})
    ratio, goal = data.get("ratio_p50", float("nan")), data.get("goal", 2.5)
    return [
        f"agents: spawn round trip p50 {spawn.get('p50', float('nan')) / 1000:.1f} ms = {ratio:.2f}x a plain "
        f"turn {plain.get('p50', float('nan')) / 1000:.1f} ms (goal <= {goal}x: {'PASS' if ratio <= goal else 'MISS'})"
    ]


def _routers(data: dict[str, Any]) -> list[str]:
    base = data.get("baseline_js_publish_per_s", float("nan"))
    parts = [
        f"{r} router(s) {fig['per_s']:,.0f} msg/s ({fig['per_s'] / base:.2f}x)"
        for r, fig in data.get("routers", {}).items()
    ]
    leader = data.get("single_leader", {}).get("per_s", float("nan"))
    return [
        f"routers: {'; '.join(parts)}; unpartitioned leader {leader:,.0f} msg/s; "
        f"baseline raw JetStream publish {base:,.0f} msg/s"
    ]


def _federation(data: dict[str, Any]) -> list[str]:
    def p50(key: str) -> float:
        return float(data.get(key, {}).get("p50_ms", float("nan")))

    extra = data.get("extra_in_leaf_rtts", float("nan"))
    return [
        f"federation ({data.get('gateways', '?')}): remote turn p50 {p50('remote turn'):.2f} ms, "
        f"local turn {p50('local turn'):.2f} ms, leaf round trip {p50('leaf rr'):.2f} ms: "
        f"remote − local = {extra:.1f} leaf round trips (goal ≤ 2: {'PASS' if extra <= 2 else 'MISS'})"
    ]


def main(argv: list[str] | None = None) -> int:
    for arg in argv if argv is not None else sys.argv[1:]:
        path = Path(arg)
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            print(f"{path}: unreadable ({exc})")
            continue
        kind = data.get("benchmark")
        lines = (
            _routing(data)
            if kind == "routing"
            else _pipeline(data)
            if kind == "pipeline"
            else _providers(data)
            if kind == "providers"
            else _anchor(data)
            if kind == "anchor"
            else _proxy(data)
            if kind == "proxy"
            else _telegram(data)
            if kind == "telegram"
            else _agents(data)
            if kind == "agents"
            else _routers(data)
            if kind == "routers"
            else _federation(data)
            if kind == "federation"
            else []
        )
        for line in lines:
            print(f"  {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
