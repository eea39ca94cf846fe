"""How many turns run at once: `maxConcurrent` per agent, and turns shared by runner replicas.

Model calls are held open by the fake model server (`Gate`) until the test lets them finish,
so what is asserted is what *can* run while they are held, not what happened to run first.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import nats
import pytest

from clawmesh.wire import TurnEvent, TurnFinal, TurnStarted, decode
from tests.fakes.models import FakeModelServer, Gate, Text
from tests.fixtures.gateway import ServiceProcess, run_gateway, wait_until

pytestmark = pytest.mark.slow


class _Events:
    def __init__(self) -> None:
        self.events: list[Any] = []

    async def on_msg(self, msg: Any) -> None:
        self.events.append(decode(msg.data, TurnEvent, msg.headers))

    def of(self, kind: type, agent: str) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind) and e.agent_id == agent]


def _config(fake: FakeModelServer, **runtime: Any) -> dict[str, Any]:
    return {
        "agents": {
            "list": [
                {"id": "a", "default": True, "model": "openai/fake-model", "maxConcurrent": 2},
                {"id": "b", "model": "echo/x"},
            ]
        },
        "session": {"dmScope": "per-peer"},
        "models": {"providers": {"openai": {"baseUrl": fake.base_url + "/v1", "apiKey": "sk-test"}}},
        **({"runtime": runtime} if runtime else {}),
    }


async def test_max_concurrent_caps_one_agent_and_not_the_others(nats_url: str, tmp_path: Path) -> None:
    async with FakeModelServer() as fake:
        gates = [asyncio.Event() for _ in range(3)]
        # a warm-up call first (the provider SDK is imported then, not while turns are held),
        # then the n-th model call waits for gates[n]
        fake.script(Text("warm"), *(Gate(g) for g in gates))
        log = _Events()
        async with run_gateway(nats_url, _config(fake), tmp_path) as gw, gw.client() as http:
            nc = await nats.connect(nats_url)
            try:
                await nc.subscribe("cm.ev.>", cb=log.on_msg)
                warm = await http.post("/v1/messages?wait=60", json={"text": "warm up"})
                assert warm.status_code == 200, warm.text
                # the waiting caller can be answered before the warm-up's final event reaches
                # this subscriber: clear the log only once it has, or it counts as a 4th final
                await wait_until(lambda: log.of(TurnFinal, "a"), message="the warm-up's final event")
                log.events.clear()
                fake.requests.clear()
                for peer in ("p1", "p2", "p3"):
                    r = await http.post(
                        "/v1/messages",
                        json={"text": f"hi from {peer}", "peer": {"kind": "direct", "id": peer}},
                    )
                    assert r.status_code == 202, r.text
                await asyncio.wait_for(fake.wait_for_requests(2), 60)
                # Agent b is not limited by a's slots: its turn runs to the end meanwhile. By then
                # the runner has had every chance to start a's third turn too.
                other = await http.post(
                    "/v1/messages?wait=60",
                    json={"text": "b meanwhile", "agentId": "b", "peer": {"kind": "direct", "id": "q"}},
                )
                assert other.status_code == 200 and other.json()["text"] == "echo: b meanwhile"
                assert len(fake.requests) == 2, "a third turn of agent a ran beside two others"
                assert len(log.of(TurnStarted, "a")) == 2
                # one slot frees: the waiting turn starts
                gates[0].set()
                await asyncio.wait_for(fake.wait_for_requests(3), 60)
                gates[1].set()
                gates[2].set()
                await wait_until(
                    lambda: len({f.turn_id for f in log.of(TurnFinal, "a")}) >= 3,
                    timeout=60,
                    message="3 finals",
                )
                finals = log.of(TurnFinal, "a")
                assert sorted(f.session_key for f in finals) == [f"agent:a:direct:p{i}" for i in (1, 2, 3)]
                assert {f.text for f in finals} == {"pong from fake"}
            finally:
                for gate in gates:
                    gate.set()
                await nc.close()


async def test_runner_replicas_share_the_turns(nats_url: str, tmp_path: Path) -> None:
    """Two runner processes, each taking one turn at a time (`maxTurnsInFlight: 1`): two held
    model calls can only be running if both replicas took one."""
    async with FakeModelServer() as fake:
        gates = [asyncio.Event() for _ in range(2)]
        fake.script(*(Gate(g) for g in gates))
        log = _Events()
        config = _config(fake, maxTurnsInFlight=1)
        async with run_gateway(nats_url, config, tmp_path, services=("ingress", "router")) as gw:
            runners = [
                ServiceProcess("runner", gw.config_path, nats_url, gw.env, tmp_path / f"runner{i}.log")
                for i in range(2)
            ]
            nc = await nats.connect(nats_url)
            try:
                await nc.subscribe("cm.ev.>", cb=log.on_msg)
                await _wait_for_runners(nc, 2)
                async with gw.client() as http:
                    for peer in ("p1", "p2"):
                        r = await http.post(
                            "/v1/messages", json={"text": "hi", "peer": {"kind": "direct", "id": peer}}
                        )
                        assert r.status_code == 202, r.text
                await asyncio.wait_for(fake.wait_for_requests(2), 60)
                await wait_until(lambda: len(log.of(TurnStarted, "a")) >= 2, message="2 starts")
                assert len({e.runner for e in log.of(TurnStarted, "a")}) == 2
                for gate in gates:
                    gate.set()
                await wait_until(
                    lambda: len({f.turn_id for f in log.of(TurnFinal, "a")}) == 2,
                    timeout=60,
                    message="2 finals",
                )
            finally:
                for gate in gates:
                    gate.set()
                await nc.close()
                for p in runners:
                    p.kill()


async def _wait_for_runners(nc: Any, want: int) -> None:
    inbox = nc.new_inbox()
    found: set[str] = set()

    async def cb(msg: Any) -> None:
        if msg.data:
            info = json.loads(msg.data)
            found.add(info["metadata"]["instance"])

    sub = await nc.subscribe(inbox, cb=cb)
    try:

        async def enough() -> bool:
            await nc.publish("$SRV.INFO.clawmesh-runner", b"", reply=inbox)
            await nc.flush()
            return len(found) >= want

        await wait_until(enough, timeout=60, interval=0.3, message=f"{want} runner processes")
    finally:
        await sub.unsubscribe()
