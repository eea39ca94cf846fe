"""Routing decisions per second, by tier and number of bindings (`python -m tests.bench.routing`).

For each N in 10, 100, 1,000, 10,000 and each tier, a config with N bindings is built so that
the binding the query hits is the *last* one of its tier (distinct peer / guild / team / account
ids, as in a real deployment). Measured per (tier, N):

  uncached   `_resolve_uncached(index, …)` called directly with the same arguments: the full
             decision (normalisation, index lookups, session key, Route), never the result cache
  cached     `resolve_route(config, …)` with a repeated input: answered from the per-config cache
  new acct   `resolve_route` with a fresh account id on every call (N-1 account-scoped bindings
             and one channel-wide binding): the cache never hits, so this is the public API's
             cost for a never-seen account, including the cache insert/evict

plus `parse_config` and `route_index` (index build) time per N. Each figure is the median of 5
timed repeats after a warm-up, with the garbage collector paused during a repeat (as `timeit`
does). Baseline, same run: a dict lookup + f-string of a session key (the floor of "one Python
function call that does a lookup and builds a key" on this machine) and an empty function call
with `_resolve_uncached`'s arity. Target: ≤ 3 µs per uncached decision at 10,000 bindings, every
tier; figures above 3 µs are marked with `!`.

    python -m tests.bench.routing [--quick] [--json PATH] [--sizes 10,100]
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from itertools import repeat
from typing import Any

from clawmesh.checks import default_checks
from clawmesh.config import parse_config
from clawmesh.routing import Route, resolve_route, route_index
from clawmesh.routing._resolve import _resolve_uncached
from tests.bench._common import fmt_rate, fmt_us, machine, median, print_table, write_json

TARGET_US = 3.0
SIZES = (10, 100, 1_000, 10_000)
REPEATS = 5
AGENTS = ("main", "sales", "support", "ops")
SESSION = {"dmScope": "per-channel-peer"}  # DMs get their own session key (the common setup)


# --- configs and queries ---------------------------------------------------------------------


@dataclass(frozen=True)
class Query:
    channel: str
    account_id: str | None = None
    peer: dict[str, Any] | None = None
    parent_peer: dict[str, Any] | None = None
    guild_id: str | None = None
    team_id: str | None = None
    roles: tuple[str, ...] = ()

    def kwargs(self) -> dict[str, Any]:
        return {
            "channel": self.channel,
            "account_id": self.account_id,
            "peer": self.peer,
            "parent_peer": self.parent_peer,
            "guild_id": self.guild_id,
            "team_id": self.team_id,
            "member_role_ids": self.roles,
        }

    def positional(self) -> tuple[Any, ...]:
        """`_resolve_uncached`'s arguments after the index (dm/group scope and default agent: None)."""
        return (
            self.channel,
            self.account_id,
            self.peer,
            self.parent_peer,
            self.guild_id,
            self.team_id,
            self.roles,
            None,
            None,
            None,
        )


@dataclass(frozen=True)
class Scenario:
    name: str
    bindings: Callable[[int], list[dict[str, Any]]]
    query: Callable[[int], Query]
    matched_by: str
    last: bool = True  # the decision must come from the last binding (else from no binding)
    note: str = ""


def _bind(i: int, match: dict[str, Any]) -> dict[str, Any]:
    return {"agentId": AGENTS[1 + i % (len(AGENTS) - 1)], "match": match}


def _direct(pid: str) -> dict[str, str]:
    return {"kind": "direct", "id": pid}


def _room(pid: str) -> dict[str, str]:
    return {"kind": "channel", "id": pid}


def _peer_bindings(n: int) -> list[dict[str, Any]]:
    return [_bind(i, {"channel": "discord", "peer": _direct(f"user{i}")}) for i in range(n)]


def _room_bindings(n: int) -> list[dict[str, Any]]:
    return [_bind(i, {"channel": "discord", "peer": _room(f"room{i}")}) for i in range(n)]


def _wildcard_bindings(n: int) -> list[dict[str, Any]]:
    out = _peer_bindings(n - 1)
    out.append(_bind(n - 1, {"channel": "discord", "peer": _direct("*")}))
    return out


def _guild_roles_bindings(n: int) -> list[dict[str, Any]]:
    return [_bind(i, {"channel": "discord", "guildId": f"g{i}", "roles": [f"r{i}"]}) for i in range(n)]


def _one_guild_roles_bindings(n: int) -> list[dict[str, Any]]:
    return [_bind(i, {"channel": "discord", "guildId": "g0", "roles": [f"r{i}"]}) for i in range(n)]


def _guild_bindings(n: int) -> list[dict[str, Any]]:
    return [_bind(i, {"channel": "discord", "guildId": f"g{i}"}) for i in range(n)]


def _team_bindings(n: int) -> list[dict[str, Any]]:
    return [_bind(i, {"channel": "slack", "teamId": f"T{i}"}) for i in range(n)]


def _account_bindings(n: int) -> list[dict[str, Any]]:
    return [_bind(i, {"channel": "telegram", "accountId": f"bot{i}"}) for i in range(n)]


def _channel_bindings(n: int) -> list[dict[str, Any]]:
    """N-1 account-scoped bindings, then the channel-wide one (`accountId: "*"`)."""
    out = _account_bindings(n - 1)
    out.append(_bind(n - 1, {"channel": "telegram", "accountId": "*"}))
    return out


def _mixed_bindings(n: int) -> list[dict[str, Any]]:
    """Every kind of binding on one channel, none of which the default-tier query matches."""
    out = []
    for i in range(n):
        kind = i % 4
        if kind == 0:
            match: dict[str, Any] = {"channel": "discord", "peer": _direct(f"user{i}")}
        elif kind == 1:
            match = {"channel": "discord", "guildId": f"g{i}", "roles": [f"r{i}"]}
        elif kind == 2:
            match = {"channel": "discord", "guildId": f"g{i}"}
        else:
            match = {"channel": "discord", "accountId": f"acct{i}"}
        out.append(_bind(i, match))
    return out


ROLES = ("member", "booster")  # a member usually has a few roles besides the one that matters

SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        "peer",
        _peer_bindings,
        lambda n: Query("discord", peer=_direct(f"user{n - 1}")),
        "binding.peer",
        note="N direct-peer bindings; DM from the last one",
    ),
    Scenario(
        "parent peer",
        _room_bindings,
        lambda n: Query("discord", peer=_room("thread-42"), parent_peer=_room(f"room{n - 1}")),
        "binding.peer.parent",
        note="N room bindings; thread whose parent is the last room",
    ),
    Scenario(
        "wildcard peer",
        _wildcard_bindings,
        lambda n: Query("discord", peer=_direct("stranger")),
        "binding.peer.wildcard",
        note="N-1 peer bindings + peer '*'; DM from an unbound peer",
    ),
    Scenario(
        "guild+roles",
        _guild_roles_bindings,
        lambda n: Query("discord", peer=_room("c1"), guild_id=f"g{n - 1}", roles=(f"r{n - 1}", *ROLES)),
        "binding.guild+roles",
        note="N guilds with one role each",
    ),
    Scenario(
        "guild+roles 1 guild",
        _one_guild_roles_bindings,
        lambda n: Query("discord", peer=_room("c1"), guild_id="g0", roles=(f"r{n - 1}", *ROLES)),
        "binding.guild+roles",
        note="one guild with N distinct roles",
    ),
    Scenario(
        "guild",
        _guild_bindings,
        lambda n: Query("discord", peer=_room("c1"), guild_id=f"g{n - 1}", roles=ROLES),
        "binding.guild",
        note="N guilds",
    ),
    Scenario(
        "team",
        _team_bindings,
        lambda n: Query("slack", peer=_room("C1"), team_id=f"T{n - 1}"),
        "binding.team",
        note="N Slack teams",
    ),
    Scenario(
        "account",
        _account_bindings,
        lambda n: Query("telegram", account_id=f"bot{n - 1}", peer=_direct("u1")),
        "binding.account",
        note="N accounts",
    ),
    Scenario(
        "channel",
        _channel_bindings,
        lambda n: Query("telegram", account_id="unlisted-bot", peer=_direct("u1")),
        "binding.channel",
        note="N-1 accounts + accountId '*'; an unlisted account",
    ),
    Scenario(
        "default",
        _mixed_bindings,
        lambda n: Query("discord", peer=_direct("nobody"), guild_id="gx", roles=ROLES),
        "default",
        last=False,
        note="N mixed bindings (peer/guild+roles/guild/account), none matches",
    ),
)


def config_dict(bindings: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "agents": {"list": [{"id": a, "default": a == AGENTS[0]} for a in AGENTS]},
        "bindings": bindings,
        "session": SESSION,
    }


# --- timing ----------------------------------------------------------------------------------


def _timed(loop: Callable[[], None]) -> int:
    gc_was = gc.isenabled()
    gc.disable()
    try:
        t0 = time.perf_counter_ns()
        loop()
        return time.perf_counter_ns() - t0
    finally:
        if gc_was:
            gc.enable()


def per_call_ns(make_loop: Callable[[int], Callable[[], None]], k: int, repeats: int) -> float:
    """Median ns per call of `repeats` timed loops of `k` calls, after one warm-up loop."""
    _timed(make_loop(max(1, k // 5)))
    return median([_timed(make_loop(k)) / k for _ in range(repeats)])


def args_loop(fn: Callable[..., Any], args: tuple[Any, ...]) -> Callable[[int], Callable[[], None]]:
    def make(k: int) -> Callable[[], None]:
        def loop() -> None:
            for _ in repeat(None, k):
                fn(*args)

        return loop

    return make


def kwargs_loop(
    fn: Callable[..., Any], first: Any, kw: dict[str, Any]
) -> Callable[[int], Callable[[], None]]:
    def make(k: int) -> Callable[[], None]:
        def loop() -> None:
            for _ in repeat(None, k):
                fn(first, **kw)

        return loop

    return make


def fresh_account_loop(config: Any, kw: dict[str, Any]) -> Callable[[int], Callable[[], None]]:
    """`resolve_route` with an account id never used before on each call (ids made outside the timing)."""
    counter = iter(range(sys.maxsize))
    base = {k: v for k, v in kw.items() if k != "account_id"}

    def make(k: int) -> Callable[[], None]:
        accounts = [f"new-account-{next(counter)}" for _ in range(k)]

        def loop() -> None:
            for acct in accounts:
                resolve_route(config, account_id=acct, **base)

        return loop

    return make


# --- baselines -------------------------------------------------------------------------------


def _baseline_key(table: dict[str, str], peer_id: str) -> str:
    return f"agent:{table[peer_id]}:discord:direct:{peer_id}"


def _noop(*args: Any) -> None:
    return None


# --- the run ---------------------------------------------------------------------------------


@dataclass
class Results:
    baseline_ns: dict[str, float] = field(default_factory=dict)
    uncached_ns: dict[str, dict[int, float]] = field(default_factory=dict)
    cached_ns: dict[str, dict[int, float]] = field(default_factory=dict)
    new_account_ns: dict[int, float] = field(default_factory=dict)
    min_ns: dict[str, dict[int, float]] = field(default_factory=dict)  # the fastest repeat, for reference
    parse_ms: dict[int, float] = field(default_factory=dict)
    index_ms: dict[int, float] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


def check(scenario: Scenario, n: int, route: Route) -> str | None:
    want_index = n - 1 if scenario.last else None
    if route.matched_by != scenario.matched_by or route.binding_index != want_index:
        return (
            f"{scenario.name} N={n}: expected {scenario.matched_by} from binding {want_index}, "
            f"got {route.matched_by} from binding {route.binding_index}"
        )
    return None


def run(sizes: Iterable[int], k: int, repeats: int) -> Results:
    res = Results()
    table = {f"user{i}": AGENTS[1 + i % 3] for i in range(10_000)}
    res.baseline_ns["dict lookup + f-string key"] = per_call_ns(
        args_loop(_baseline_key, (table, "user9999")), k, repeats
    )
    res.baseline_ns["empty call, 11 args"] = per_call_ns(args_loop(_noop, (None,) * 11), k, repeats)
    for n in sizes:
        print(f"N={n:,} bindings ...", flush=True)
        # (series name, tier, N) -> loop maker; every series gets one warm-up, then the repeats
        # are interleaved across all series, so that a burst of noise from elsewhere on the
        # machine hits one repeat of many figures rather than every repeat of one figure.
        series: list[tuple[str, str, Callable[[int], Callable[[], None]]]] = []  # (kind, tier, loop)
        for sc in SCENARIOS:
            config = parse_config(config_dict(sc.bindings(n)), env={}, checks=default_checks())
            index = route_index(config)
            q = sc.query(n)
            problem = check(sc, n, _resolve_uncached(index, *q.positional()))
            problem = problem or check(sc, n, resolve_route(config, **q.kwargs()))
            if problem:
                res.errors.append(problem)
                print(f"  WRONG DECISION: {problem}", flush=True)
                continue
            series.append(("uncached", sc.name, args_loop(_resolve_uncached, (index, *q.positional()))))
            series.append(("cached", sc.name, kwargs_loop(resolve_route, config, q.kwargs())))
            if sc.name == "channel":
                series.append(("never-seen account", "", fresh_account_loop(config, q.kwargs())))
        for _, _, make in series:
            _timed(make(max(1, k // 5)))
        samples: list[list[float]] = [[] for _ in series]
        for _ in range(repeats):
            for i, (_, _, make) in enumerate(series):
                samples[i].append(_timed(make(k)) / k)
        for (kind, name, _), values in zip(series, samples, strict=True):
            res.min_ns.setdefault(f"{kind}:{name}" if name else kind, {})[n] = min(values)
            if kind == "uncached":
                res.uncached_ns.setdefault(name, {})[n] = median(values)
            elif kind == "cached":
                res.cached_ns.setdefault(name, {})[n] = median(values)
            else:
                res.new_account_ns[n] = median(values)
        # parse_config and the index build, on fresh configs (the index is cached per config)
        raw = config_dict(_mixed_bindings(n))
        parse_ns: list[float] = []
        index_ns: list[float] = []
        for _ in range(repeats + 1):  # the first is the warm-up
            t0 = time.perf_counter_ns()
            config = parse_config(raw, env={}, checks=default_checks())
            t1 = time.perf_counter_ns()
            route_index(config)
            t2 = time.perf_counter_ns()
            parse_ns.append(t1 - t0)
            index_ns.append(t2 - t1)
        res.parse_ms[n] = median(parse_ns[1:]) / 1e6
        res.index_ms[n] = median(index_ns[1:]) / 1e6
    return res


def mark(us: float) -> str:
    return fmt_us(us) + ("!" if us > TARGET_US else " ")


def report(res: Results, sizes: list[int]) -> dict[str, Any]:
    base_ns = res.baseline_ns["dict lookup + f-string key"]
    print_table(
        ["baseline (same run)", "µs/call", "calls/s"],
        [[name, fmt_us(ns / 1e3), fmt_rate(1e9 / ns)] for name, ns in res.baseline_ns.items()],
        title="Baseline",
    )
    header = ["tier", *(f"N={n:,}" for n in sizes), "ratio@max"]
    for title, data in (
        ("Uncached decisions: µs/decision (decisions/s)   [_resolve_uncached, same input]", res.uncached_ns),
        ("Cached decisions: µs/decision (decisions/s)   [resolve_route, repeated input]", res.cached_ns),
    ):
        rows = []
        for sc in SCENARIOS:
            per_n = data.get(sc.name, {})
            cells = [
                f"{mark(per_n[n] / 1e3)} ({fmt_rate(1e9 / per_n[n])})" if n in per_n else "WRONG"
                for n in sizes
            ]
            top = per_n.get(sizes[-1])
            rows.append([sc.name, *cells, f"{top / base_ns:.1f}x" if top else "-"])
        print_table(header, rows, title=title)
    print_table(
        ["case", *(f"N={n:,}" for n in sizes), "ratio@max"],
        [
            [
                "never-seen account",
                *(
                    f"{mark(res.new_account_ns[n] / 1e3)} ({fmt_rate(1e9 / res.new_account_ns[n])})"
                    if n in res.new_account_ns
                    else "-"
                    for n in sizes
                ),
                f"{res.new_account_ns[sizes[-1]] / base_ns:.1f}x" if sizes[-1] in res.new_account_ns else "-",
            ]
        ],
        title="resolve_route with a fresh account id per call (cache never hits; N-1 account bindings + '*')",
    )
    print_table(
        ["N bindings", "parse_config ms", "route_index ms", "index µs/binding"],
        [
            [f"{n:,}", f"{res.parse_ms[n]:.2f}", f"{res.index_ms[n]:.2f}", f"{res.index_ms[n] * 1e3 / n:.2f}"]
            for n in sizes
        ],
        title="Config parse and index build (mixed bindings, fresh config each time)",
    )
    ratio_note = "ratio@max = figure at the largest N / the dict-lookup + f-string baseline"
    print(f"\n{ratio_note}; '!' marks figures above the {TARGET_US:g} µs target.")
    for sc in SCENARIOS:
        print(f"  {sc.name:<20} {sc.note}")
    top = sizes[-1]
    misses = [
        f"{name} {fmt_us(per_n[top] / 1e3)} µs"
        for name, per_n in res.uncached_ns.items()
        if top in per_n and per_n[top] / 1e3 > TARGET_US
    ]
    worst = max((per_n[top] for per_n in res.uncached_ns.values() if top in per_n), default=float("nan"))
    verdict = "PASS" if not misses and not res.errors else "MISS"
    print(
        f"\nTarget ≤ {TARGET_US:g} µs per uncached decision at N={top:,}, every tier: {verdict} "
        f"(worst {fmt_us(worst / 1e3)} µs" + (f"; above target: {', '.join(misses)}" if misses else "") + ")"
    )
    if res.errors:
        print("Decisions that were not the expected ones:\n  " + "\n  ".join(res.errors))

    def us(d: dict[int, float]) -> dict[str, float]:
        return {str(n): round(v / 1e3, 4) for n, v in d.items()}

    return {
        "benchmark": "routing",
        "machine": machine(),
        "unit": "µs per decision (median of repeats)",
        "target_us": TARGET_US,
        "target_met": verdict == "PASS",
        "baseline_us": {k: round(v / 1e3, 4) for k, v in res.baseline_ns.items()},
        "uncached_us": {k: us(v) for k, v in res.uncached_ns.items()},
        "cached_us": {k: us(v) for k, v in res.cached_ns.items()},
        "never_seen_account_us": us(res.new_account_ns),
        "min_of_repeats_us": {k: us(v) for k, v in res.min_ns.items()},
        "parse_config_ms": {str(n): round(v, 3) for n, v in res.parse_ms.items()},
        "route_index_ms": {str(n): round(v, 3) for n, v in res.index_ms.items()},
        "errors": res.errors,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small counts (a smoke check, noisy figures)")
    parser.add_argument("--json", metavar="PATH", help="write the figures to PATH")
    parser.add_argument("--sizes", help="comma-separated binding counts (default 10,100,1000,10000)")
    parser.add_argument("--calls", type=int, help="calls per timed repeat (default 20000; --quick 1000)")
    args = parser.parse_args(argv)
    sizes = sorted(int(s) for s in args.sizes.split(",")) if args.sizes else list(SIZES)
    if any(n < 2 for n in sizes):
        parser.error("--sizes: every size must be at least 2")
    k = args.calls or (1_000 if args.quick else 20_000)
    repeats = 3 if args.quick else REPEATS
    print(
        f"routing benchmark: sizes {sizes}, {k:,} calls x {repeats} repeats per figure (median), "
        f"Python {sys.version.split()[0]}",
        flush=True,
    )
    started = time.perf_counter()
    load_before = machine()["loadavg"]
    res = run(sizes, k, repeats)
    data = report(res, sizes)
    data["loadavg_before_after"] = [load_before, machine()["loadavg"]]
    print(
        f"load average (1/5/15 min) before {load_before}, after {data['loadavg_before_after'][1]} "
        f"on {machine()['cpus']} CPUs: other work on the machine shows up as noise"
    )
    data["seconds"] = round(time.perf_counter() - started, 1)
    data["quick"] = args.quick
    if args.json:
        write_json(args.json, data)
    return 1 if res.errors else 0


if __name__ == "__main__":
    sys.exit(main())
