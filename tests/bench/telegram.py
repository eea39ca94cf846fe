"""Telegram message → reply delivered, through `clawmesh up` and the fake Bot API
(`python -m tests.bench.telegram`).

The fake (tests/fakes/telegram.py) runs in this process; `channels.telegram.apiRoot` points
the gateway's Telegram account at it. A message is an update queued in the fake, which the
gateway's long poll (`getUpdates`) takes at once; it is routed and answered by the offline echo
model, and the reply comes back to the fake as `sendMessage`. Latency = the fake receiving that
`sendMessage` − the update being queued, both on this process's clock. DMs use
`session.dmScope: per-channel-peer`, so each sender is a session of its own.

Baselines in the same run: the fake's raw HTTP round trip (a keep-alive httpx `sendMessage`
from this process, p50), and the same turns through the gateway's HTTP API (`POST
/v1/messages?wait`), so what the Telegram path adds shows on a machine of any speed or load. Figures: p50/p90/p99 at c=1 (one sender, one message at a time) and
messages/s at c=20 (20 senders, each sending its next message when the last was answered).
Goals (issue 12): p50 ≤ 10 × the raw round trip; ≥ 200 messages/s at c=20. OpenClaw on the
same kind of fake: p50 1.0 s, 2.2 messages/s at c=20.

Exit status: 0 unless the gateway failed to start or more than 1% of the messages got no reply.

    python -m tests.bench.telegram [--quick] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from tests.bench._common import LoadPhase, machine, percentile, print_table, write_json
from tests.bench.pipeline import Clients, cpu_seconds, one_turn, start_gateway, stop_process
from tests.fakes.telegram import Bot, FakeTelegram, Sent

TOKEN = "8001:bench-token"
RTT_TOKEN = "8002:rtt-token"
GOAL_RATIO = 10.0
GOAL_RATE = 200.0
OPENCLAW = {"p50_ms_c1": 1000.0, "msgs_per_s_c20": 2.2}
FULL = {"warmup": 50, "c1": 300, "c20": 3000, "rtt": 500}
QUICK = {"warmup": 10, "c1": 50, "c20": 400, "rtt": 100}


def bench_config(api_root: str) -> dict[str, Any]:
    return {
        "agents": {"defaults": {"model": "echo/bench"}, "list": [{"id": "main", "default": True}]},
        "session": {"dmScope": "per-channel-peer"},
        "gateway": {"auth": {"token": "bench-token"}},
        "channels": {
            "telegram": {"botToken": TOKEN, "apiRoot": api_root, "dmPolicy": "open", "allowFrom": ["*"]}
        },
    }


class Replies:
    """The next reply to each chat, as the fake receives it."""

    def __init__(self, tg: FakeTelegram) -> None:
        self._waiting: dict[int, asyncio.Future[Sent]] = {}
        tg.listeners.append(self._on_sent)

    def _on_sent(self, sent: Sent) -> None:
        future = self._waiting.pop(sent.chat_id, None)
        if future is not None and not future.done():
            future.set_result(sent)

    def expect(self, chat_id: int) -> asyncio.Future[Sent]:
        future: asyncio.Future[Sent] = asyncio.get_running_loop().create_future()
        self._waiting[chat_id] = future
        return future


async def one_message(
    tg: FakeTelegram, bot: Bot, replies: Replies, user: int, n: int, phase: LoadPhase
) -> None:
    reply = replies.expect(user)
    queued = time.perf_counter()
    tg.private_message(bot, user=user, text=f"m{n}")
    try:
        sent = await asyncio.wait_for(reply, 30)
    except TimeoutError:
        phase.errors += 1
        if len(phase.error_samples) < 5:
            phase.error_samples.append(f"no reply to user {user} message {n} within 30s")
        return
    phase.latencies_ms.append((sent.at - queued) * 1e3)


async def sequential(tg: FakeTelegram, bot: Bot, replies: Replies, count: int, user: int) -> LoadPhase:
    phase = LoadPhase(requested=count)
    start = time.perf_counter()
    for n in range(count):
        await one_message(tg, bot, replies, user, n, phase)
    phase.wall_s = time.perf_counter() - start
    return phase


async def concurrent(tg: FakeTelegram, bot: Bot, replies: Replies, count: int, workers: int) -> LoadPhase:
    phase = LoadPhase(requested=count)
    left = iter(range(count))

    async def worker(w: int) -> None:
        for n in left:
            await one_message(tg, bot, replies, 50_000 + w, n, phase)

    start = time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(workers)))
    phase.wall_s = time.perf_counter() - start
    return phase


async def http_turns(clients: Clients, count: int, workers: int) -> LoadPhase:
    """The same turns through the HTTP API (`POST /v1/messages?wait`): what Telegram adds is
    the difference, on the same gateway in the same run."""
    phase = LoadPhase(requested=count)
    left = iter(range(count))

    async def worker(w: int) -> None:
        client = clients.get(w)
        for n in left:
            t0 = time.perf_counter()
            failed, _ = await one_turn(client, "default", f"http-{w}", f"h{n}", "echo: ")
            if failed:
                phase.errors += 1
                if len(phase.error_samples) < 5:
                    phase.error_samples.append(failed)
            else:
                phase.latencies_ms.append((time.perf_counter() - t0) * 1e3)

    start = time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(workers)))
    phase.wall_s = time.perf_counter() - start
    return phase


async def raw_round_trip(tg: FakeTelegram, n: int) -> float:
    """p50 ms of a bare `sendMessage` to the fake over one keep-alive connection."""
    tg.chat(1, "private")
    url = f"{tg.api_root}/bot{RTT_TOKEN}/sendMessage"
    lat: list[float] = []
    async with httpx.AsyncClient(trust_env=False, timeout=10) as client:
        for i in range(n + 20):
            t0 = time.perf_counter()
            resp = await client.post(url, json={"chat_id": 1, "text": f"ping {i}"})
            if resp.status_code != 200:
                raise RuntimeError(f"raw sendMessage to the fake: HTTP {resp.status_code}")
            if i >= 20:
                lat.append((time.perf_counter() - t0) * 1e3)
    lat.sort()
    return percentile(lat, 50)


async def amain(args: argparse.Namespace) -> int:
    counts = QUICK if args.quick else FULL
    async with FakeTelegram() as tg:
        bot = tg.add_bot(TOKEN)
        tg.add_bot(RTT_TOKEN)
        replies = Replies(tg)
        with tempfile.TemporaryDirectory(prefix="clawmesh-bench-telegram-") as tmp:
            try:
                gw = await start_gateway(Path(tmp), bench_config(tg.api_root), {})
            except RuntimeError as exc:
                print(f"telegram: {exc}", file=sys.stderr)
                return 1
            try:
                deadline = time.perf_counter() + 30
                while not any(m == "getupdates" for m, _ in bot.calls):
                    if time.perf_counter() > deadline:
                        raise RuntimeError("the gateway never polled the fake Bot API")
                    await asyncio.sleep(0.05)
                rtt_before = await raw_round_trip(tg, counts["rtt"] // 2)
                await sequential(tg, bot, replies, counts["warmup"], user=40_000)
                c1 = await sequential(tg, bot, replies, counts["c1"], user=40_001)
                cpu0 = cpu_seconds(gw.pid) + cpu_seconds(gw.nats_pid)
                c20 = await concurrent(tg, bot, replies, counts["c20"], 20)
                cpu_tg = (cpu_seconds(gw.pid) + cpu_seconds(gw.nats_pid) - cpu0) * 1e3 / max(c20.ok, 1)
                clients = Clients(gw.url)
                try:
                    await http_turns(clients, counts["warmup"], 1)
                    http_c1 = await http_turns(clients, counts["c1"], 1)
                    cpu0 = cpu_seconds(gw.pid) + cpu_seconds(gw.nats_pid)
                    http_c20 = await http_turns(clients, counts["c20"], 20)
                    cpu_http = (
                        (cpu_seconds(gw.pid) + cpu_seconds(gw.nats_pid) - cpu0) * 1e3 / max(http_c20.ok, 1)
                    )
                finally:
                    await clients.aclose()
                rtt_after = await raw_round_trip(tg, counts["rtt"] // 2)
            finally:
                await stop_process(gw.proc, "clawmesh up")
    rtt = (rtt_before + rtt_after) / 2
    p50 = c1.pct(50)
    rate = c20.turns_per_s
    ratio = p50 / rtt if rtt else float("nan")
    print_table(
        ["figure", "value", "goal", "OpenClaw (same kind of fake)"],
        [
            ["fake raw HTTP round trip p50", f"{rtt:.3f} ms", "-", "-"],
            ["c=1 p50 message → reply", f"{p50:.2f} ms", f"≤ {GOAL_RATIO * rtt:.2f} ms (10× rtt)", "1.0 s"],
            ["c=1 p90 / p99", f"{c1.pct(90):.2f} / {c1.pct(99):.2f} ms", "-", "-"],
            [
                "c=1 p50 / raw round trip",
                f"{ratio:.1f}×",
                f"≤ {GOAL_RATIO:.0f}× ({'PASS' if ratio <= GOAL_RATIO else 'MISS'})",
                "-",
            ],
            [
                "c=20 messages/s",
                f"{rate:,.0f}",
                f"≥ {GOAL_RATE:.0f} ({'PASS' if rate >= GOAL_RATE else 'MISS'})",
                "2.2",
            ],
            ["c=20 p50 / p99", f"{c20.pct(50):.2f} / {c20.pct(99):.2f} ms", "-", "-"],
            ["messages without a reply", f"{c1.errors + c20.errors}", "0", "-"],
            ["HTTP API, same gateway: c=1 p50", f"{http_c1.pct(50):.2f} ms", "-", "-"],
            ["HTTP API, same gateway: c=20 turns/s", f"{http_c20.turns_per_s:,.0f}", "-", "-"],
            [
                "gateway + nats CPU per message, c=20",
                f"{cpu_tg:.2f} ms (HTTP API: {cpu_http:.2f} ms)",
                "-",
                "-",
            ],
        ],
        title="Telegram: message → reply delivered (fake Bot API, echo model, clawmesh up)",
    )
    if args.json:
        write_json(
            args.json,
            {
                "benchmark": "telegram",
                "machine": machine(),
                "counts": counts,
                "fake_rtt_p50_ms": round(rtt, 4),
                "fake_rtt_p50_ms_before_after": [round(rtt_before, 4), round(rtt_after, 4)],
                "c1": c1.load_dict(),
                "c20": c20.load_dict(),
                "http_c1": http_c1.load_dict(),
                "http_c20": http_c20.load_dict(),
                "cpu_ms_per_message_c20": {"telegram": round(cpu_tg, 3), "http_api": round(cpu_http, 3)},
                "p50_over_rtt": round(ratio, 2),
                "goals": {"p50_over_rtt_max": GOAL_RATIO, "msgs_per_s_c20_min": GOAL_RATE},
                "verdicts": {
                    "p50_over_rtt": "PASS" if ratio <= GOAL_RATIO else "MISS",
                    "msgs_per_s_c20": "PASS" if rate >= GOAL_RATE else "MISS",
                },
                "openclaw": OPENCLAW,
            },
        )
    failed = c1.errors + c20.errors
    return 1 if failed > 0.01 * (c1.requested + c20.requested) else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="fewer messages (a smoke run)")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        return asyncio.run(amain(args))
    return 130


if __name__ == "__main__":
    sys.exit(main())
