"""CPU per model call of each provider, against the fake model server (`python -m tests.bench.providers`).

The gateway's share of a turn that a provider adds, measured without the pipeline around it: the
fake model runs in its own process (`python -m tests.fakes.models`), and this process times
`provider.stream(...)` to the end for each provider, rounds interleaved so that machine noise
hits them alike. Baselines in the same run: the bare HTTP round trip to the fake (one keep-alive
`httpx.AsyncClient`, reading the SSE body without parsing it) for each wire protocol, and the
offline echo provider (no HTTP at all). The figure that matters is provider CPU per call minus
echo's; the issue's goal is ≤ 2 ms.

    python -m tests.bench.providers [--quick] [--json PATH] [--calls N] [--rounds R]
                                    [--profile openai|anthropic [--profile-out FILE]]

`--profile` runs only that provider under cProfile and prints its top functions (cumulative and
own time).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import pstats
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx

from clawmesh.providers import Credential, ModelRequest, StreamStop, UserMessage
from clawmesh.providers._anthropic import AnthropicProvider
from clawmesh.providers._echo import EchoProvider
from clawmesh.providers._openai import OpenAIProvider
from clawmesh.providers._types import Provider
from tests.bench._common import median, print_table, write_json
from tests.bench._fake_rtt import raw_model_call
from tests.bench.pipeline import FAKE_REPLY, start_fake_model, stop_process

_KEY = Credential("bench:key", "bench-key")
_HISTORY = tuple(UserMessage(f"ping {i}") for i in range(1))


def _request(model: str) -> ModelRequest:
    return ModelRequest(model=model, messages=_HISTORY, system="You are a bench.", max_tokens=256)


async def _provider_call(provider: Provider, model: str) -> None:
    stopped = False
    async for event in provider.stream(_request(model), _KEY):
        stopped = isinstance(event, StreamStop)
    if not stopped:
        raise RuntimeError(f"{provider!r}: the stream ended without StreamStop")


async def _measure(call: Callable[[], Awaitable[None]], n: int) -> tuple[float, float]:
    """(CPU ms per call, wall ms per call) over `n` sequential calls."""
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for _ in range(n):
        await call()
    return (time.process_time() - cpu0) * 1e3 / n, (time.perf_counter() - wall0) * 1e3 / n


async def amain(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="cm-bench-providers-") as tmp:
        fake = await start_fake_model(Path(tmp))
        base = f"http://127.0.0.1:{fake.port}"
        raw = httpx.AsyncClient(base_url=base, trust_env=False, timeout=30)
        openai_p = OpenAIProvider("openai", base_url=f"{base}/v1")
        anthropic_p = AnthropicProvider("anthropic", base_url=base)
        calls: dict[str, Callable[[], Awaitable[None]]] = {
            "raw HTTP (openai wire)": raw_model_call(raw, "openai"),
            "raw HTTP (anthropic wire)": raw_model_call(raw, "anthropic"),
            "echo provider": lambda: _provider_call(EchoProvider(), "bench"),
            "openai provider": lambda: _provider_call(openai_p, "fake"),
            "anthropic provider": lambda: _provider_call(anthropic_p, "fake"),
        }
        try:
            for call in calls.values():  # warm-up: imports, connections, first-call caches
                for _ in range(20):
                    await call()
            if args.profile:
                name = f"{args.profile} provider"
                profiler = cProfile.Profile()
                profiler.enable()
                cpu, wall = await _measure(calls[name], args.calls * args.rounds)
                profiler.disable()
                print(f"{name} under cProfile: {cpu:.3f} ms CPU/call, {wall:.3f} ms wall/call")
                if args.profile_out:
                    profiler.dump_stats(args.profile_out)
                for sort in ("cumulative", "tottime"):
                    out = io.StringIO()
                    pstats.Stats(profiler, stream=out).sort_stats(sort).print_stats(args.top)
                    print(f"--- top {args.top} by {sort} ---")
                    print(out.getvalue().split("\n\n", 1)[-1])
                return 0
            cpu_ms: dict[str, list[float]] = {k: [] for k in calls}
            wall_ms: dict[str, list[float]] = {k: [] for k in calls}
            for _ in range(args.rounds):
                for name, call in calls.items():
                    cpu, wall = await _measure(call, args.calls)
                    cpu_ms[name].append(cpu)
                    wall_ms[name].append(wall)
        finally:
            await raw.aclose()
            await openai_p.aclose()
            await anthropic_p.aclose()
            await stop_process(fake.proc, "fake model server")
    cpu = {k: median(v) for k, v in cpu_ms.items()}
    wall = {k: median(v) for k, v in wall_ms.items()}
    echo = cpu["echo provider"]
    rows = []
    for name in calls:
        wire = "anthropic" if "anthropic" in name else "openai" if "openai" in name else None
        over_raw = cpu[name] - cpu[f"raw HTTP ({wire} wire)"] if wire and "provider" in name else None
        rows.append(
            [
                name,
                f"{cpu[name]:.3f}",
                f"{wall[name]:.3f}",
                f"{cpu[name] - echo:+.3f}" if "provider" in name else "-",
                f"{over_raw:+.3f}" if over_raw is not None else "-",
            ]
        )
    print_table(
        ["call", "CPU ms/call", "wall ms/call", "CPU − echo", "CPU − raw HTTP"],
        rows,
        title=f"Provider CPU per model call (this process only; fake model in its own process; "
        f"median of {args.rounds} interleaved rounds × {args.calls} calls; reply {FAKE_REPLY!r})",
    )
    for name in ("openai provider", "anthropic provider"):
        extra = cpu[name] - echo
        print(
            f"  {name}: {extra:+.2f} ms CPU over echo per call (goal ≤ +2 ms: {'PASS' if extra <= 2 else 'MISS'})"
        )
    if args.json:
        write_json(
            args.json,
            {
                "benchmark": "providers",
                "calls": args.calls,
                "rounds": args.rounds,
                "cpu_ms_per_call": {k: round(v, 4) for k, v in cpu.items()},
                "wall_ms_per_call": {k: round(v, 4) for k, v in wall.items()},
            },
        )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="fewer calls (noisy)")
    parser.add_argument("--json", metavar="PATH", help="write the figures to PATH")
    parser.add_argument("--calls", type=int, default=0, help="calls per provider per round")
    parser.add_argument("--rounds", type=int, default=0, help="interleaved rounds")
    parser.add_argument("--profile", choices=["openai", "anthropic"], help="cProfile one provider only")
    parser.add_argument("--profile-out", metavar="FILE", help="also dump the cProfile stats to FILE")
    parser.add_argument("--top", type=int, default=25, help="functions shown per profile table")
    args = parser.parse_args(argv)
    args.calls = args.calls or (50 if args.quick else 200)
    args.rounds = args.rounds or (3 if args.quick else 5)
    return asyncio.run(amain(args))


if __name__ == "__main__":
    sys.exit(main())
