"""A sub-agent round trip beside a plain turn, in the same run (`python -m tests.bench.agents`).

One gateway (ingress, router, runner in one process) on a private nats-server and the fake model
server (`tests.fakes.models`, one-chunk answers, in this process). Interleaved rounds of:

  plain turn   POST /v1/messages?wait=30 to an agent whose model answers at once, until the
               reply (the baseline), each in a new direct chat like the spawn rounds' parents
  spawn        the parent's model calls `sessions_spawn`; measured from the parent's `tool_call`
               event to the `final` event of the announce turn in the parent session: the child's
               whole turn (routing, running, storing its reply), the announce (reading the child's
               reply from CM_OUTBOUND, a new inbound turn) and the parent's announce turn. Also
               split: tool call → child started, → child final, → announce started, → final.
               Each round's parent is a session of its own (a direct chat with a peer of its own,
               `session.dmScope: per-peer`), so a round does not depend on the rounds before it.
               In one shared session every round added six entries (the announce block among
               them) to the context that the parent's model calls and completion records carry
               inside the window, up to the 200-entry bound, while a plain session shared by
               every round gained two short ones a round; both sides now start fresh each round.

Every time is seen by this process (events on `cm.ev.>`), so both sides include the same
NATS hops to the observer. The goal (issue 13): a spawn round trip ≤ 2.5× a plain turn; shown as
PASS/MISS for information, like every figure of `make bench`.

    python -m tests.bench.agents [--quick] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import nats

from clawmesh.bus import NatsServer
from clawmesh.wire import (
    RouteDecision,
    ToolCallEvent,
    ToolResultEvent,
    TurnEvent,
    TurnFinal,
    TurnStarted,
    decode,
)
from tests.bench._common import fmt_us, machine, percentile, print_table, write_json
from tests.fakes.models import FakeModelServer, Text, ToolCall
from tests.fixtures.gateway import run_gateway

GOAL = 2.5


class Observer:
    """Turn events as this process receives them, with the receive time."""

    def __init__(self) -> None:
        self.seen: list[tuple[float, Any]] = []
        self.changed = asyncio.Event()

    async def on_msg(self, msg: Any) -> None:
        self.seen.append((time.perf_counter(), decode(msg.data, TurnEvent, msg.headers)))
        self.changed.set()

    async def on_route(self, msg: Any) -> None:
        self.seen.append((time.perf_counter(), decode(msg.data, RouteDecision, msg.headers)))
        self.changed.set()

    async def first(self, predicate: Any, after: int, timeout: float = 60) -> tuple[float, Any, int]:
        """The first event at index ≥ `after` matching `predicate`: (time, event, index)."""
        deadline = time.perf_counter() + timeout
        i = after
        while True:
            while i < len(self.seen):
                t, event = self.seen[i]
                if predicate(event):
                    return t, event, i
                i += 1
            left = deadline - time.perf_counter()
            if left <= 0:
                raise TimeoutError("no such event")
            self.changed.clear()
            await asyncio.wait_for(self.changed.wait(), left)


async def _plain(http: Any) -> float:
    t = time.perf_counter()
    # a session of its own, as each spawn round's parent has: neither carries earlier rounds
    peer = {"kind": "direct", "id": f"plain-{uuid.uuid4().hex[:12]}"}
    r = await http.post("/v1/messages?wait=30", json={"text": "hi", "agentId": "plain", "peer": peer})
    assert r.status_code == 200, r.text
    return (time.perf_counter() - t) * 1e6


async def _spawn(http: Any, fake: FakeModelServer, seen: Observer) -> dict[str, float]:
    fake.script("m-main", ToolCall("sessions_spawn", {"task": "do it", "agentId": "worker"}), Text("spawned"))
    fake.script("m-main", Text("noted"))
    fake.script("m-worker", Text("done"))
    mark = len(seen.seen)
    peer = {"kind": "direct", "id": f"bench-{uuid.uuid4().hex[:12]}"}
    r = await http.post("/v1/messages", json={"text": "delegate", "agentId": "main", "peer": peer})
    assert r.status_code == 202, r.text
    parent = r.json()["turnId"]
    t0, call, i = await seen.first(
        lambda e: isinstance(e, ToolCallEvent) and e.turn_id == parent and e.name == "sessions_spawn", mark
    )
    requester = call.session_key
    tr, _, _ = await seen.first(
        lambda e: isinstance(e, ToolResultEvent) and e.turn_id == parent and e.name == "sessions_spawn", i
    )
    t1, child, _ = await seen.first(lambda e: isinstance(e, TurnStarted) and e.agent_id == "worker", i)
    tq, _, _ = await seen.first(lambda e: isinstance(e, RouteDecision) and e.turn_id == child.turn_id, i)
    t2, _, _ = await seen.first(lambda e: isinstance(e, TurnFinal) and e.turn_id == child.turn_id, i)
    t3, announce, _ = await seen.first(
        lambda e: isinstance(e, TurnStarted) and e.session_key == requester and e.turn_id != parent, i
    )
    t4, _, _ = await seen.first(lambda e: isinstance(e, TurnFinal) and e.turn_id == announce.turn_id, i)
    return {
        "round_trip": (t4 - t0) * 1e6,
        "spawn_tool": (tr - t0) * 1e6,
        "to_child_routed": (tq - t0) * 1e6,
        "to_child_start": (t1 - t0) * 1e6,
        "child_turn": (t2 - t1) * 1e6,
        "child_final_to_announce_start": (t3 - t2) * 1e6,
        "announce_turn": (t4 - t3) * 1e6,
    }


async def main(quick: bool, json_path: str | None) -> int:
    rounds = 15 if quick else 60
    with tempfile.TemporaryDirectory(prefix="clawmesh-bench-agents-") as tmp:
        root = Path(tmp)
        server = NatsServer(store_dir=root / "js", work_dir=root, log_file=root / "nats.log")
        await server.start()
        try:
            async with FakeModelServer(reply="ok", chunks=1) as fake:
                config = {
                    "agents": {
                        "list": [
                            {
                                "id": "main",
                                "default": True,
                                "model": "openai/m-main",
                                "subagents": {"allowAgents": ["worker"]},
                            },
                            {"id": "worker", "model": "openai/m-worker"},
                            {"id": "plain", "model": "openai/m-plain"},
                        ]
                    },
                    "models": {
                        "providers": {"openai": {"baseUrl": fake.base_url + "/v1", "apiKey": "sk-bench"}}
                    },
                    "session": {"dmScope": "per-peer"},
                }
                nc = await nats.connect(server.url)
                seen = Observer()
                await nc.subscribe("cm.ev.>", cb=seen.on_msg)
                await nc.subscribe("cm.route.decided", cb=seen.on_route)
                async with run_gateway(server.url, config, root) as gw, gw.client() as http:
                    for _ in range(3):  # warm-up: connections, provider clients, consumers
                        await _plain(http)
                        await _spawn(http, fake, seen)
                    plain: list[float] = []
                    spawns: list[dict[str, float]] = []
                    for _ in range(rounds):
                        plain.append(await _plain(http))
                        spawns.append(await _spawn(http, fake, seen))
                await nc.close()
        finally:
            await server.stop()
    plain.sort()
    base = percentile(plain, 50)
    parts = (
        "round_trip",
        "spawn_tool",
        "to_child_routed",
        "to_child_start",
        "child_turn",
        "child_final_to_announce_start",
        "announce_turn",
    )
    figures = {p: sorted(s[p] for s in spawns) for p in parts}
    ratio = percentile(figures["round_trip"], 50) / base
    rows = [["plain turn (HTTP ?wait)", str(len(plain)), fmt_us(base), fmt_us(percentile(plain, 90)), "1.0×"]]
    for p in parts:
        p50 = percentile(figures[p], 50)
        rows.append(
            [
                f"spawn: {p.replace('_', ' ')}",
                str(len(spawns)),
                fmt_us(p50),
                fmt_us(percentile(figures[p], 90)),
                f"{p50 / base:.1f}×",
            ]
        )
    print_table(
        ["", "n", "p50", "p90", "× plain p50"], rows, title="sub-agent round trip vs a plain turn (same run)"
    )
    verdict = "PASS" if ratio <= GOAL else "MISS"
    print(f"\nspawn round trip / plain turn (p50): {ratio:.2f}× (goal ≤ {GOAL}×: {verdict})")
    if json_path:
        write_json(
            json_path,
            {
                "benchmark": "agents",
                "machine": machine(),
                "rounds": rounds,
                "plain_us": {"p50": base, "p90": percentile(plain, 90)},
                "spawn_us": {
                    p: {"p50": percentile(v, 50), "p90": percentile(v, 90)} for p, v in figures.items()
                },
                "ratio_p50": ratio,
                "goal": GOAL,
            },
        )
    return 0


def _cli() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", dest="json_path")
    args = parser.parse_args()
    sys.exit(asyncio.run(main(args.quick, args.json_path)))


if __name__ == "__main__":
    _cli()
