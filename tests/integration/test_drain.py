"""SIGTERM drains a service process: ingress stops accepting connections but answers the
requests it holds; a runner stops taking turns but finishes the one it is running.

The model call of the in-flight turn is held open (`Gate`) until the process is known to be
shutting down, so the turn can only complete if the process waited for it.
"""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest

from clawmesh.wire import TurnEvent, TurnFinal, TurnStarted, decode
from tests.fakes.models import FakeModelServer, Gate, Text
from tests.fixtures.gateway import ServiceProcess, run_gateway, wait_until

pytestmark = pytest.mark.slow


def _config(fake: FakeModelServer) -> dict[str, Any]:
    return {
        "agents": {"defaults": {"model": "openai/fake-model"}, "list": [{"id": "main", "default": True}]},
        "models": {"providers": {"openai": {"baseUrl": fake.base_url + "/v1", "apiKey": "sk-test"}}},
    }


async def _wait_for_service(nc: Any, name: str) -> dict[str, Any]:
    """The $SRV.INFO of the one instance of `name` (waits until it answers)."""

    async def info() -> dict[str, Any] | None:
        try:
            reply = await nc.request(f"$SRV.INFO.clawmesh-{name}", b"", timeout=1)
        except Exception:
            return None
        return json.loads(reply.data) if reply.data else None

    found: dict[str, Any] = await wait_until(info, timeout=60, interval=0.2, message=f"{name} process")
    return found


async def _exit_code(proc: ServiceProcess, timeout: float = 60) -> int:
    return await asyncio.to_thread(proc.proc.wait, timeout)


async def test_sigterm_lets_the_runner_finish_its_turn(nats_url: str, tmp_path: Path) -> None:
    async with FakeModelServer() as fake:
        opened = asyncio.Event()
        fake.script(Gate(opened))
        events: list[Any] = []
        async with run_gateway(nats_url, _config(fake), tmp_path, services=("ingress", "router")) as gw:
            runner = ServiceProcess("runner", gw.config_path, nats_url, gw.env, tmp_path / "runner.log")
            nc = await nats.connect(nats_url)
            try:

                async def on_event(msg: Any) -> None:
                    events.append(decode(msg.data, TurnEvent, msg.headers))

                await nc.subscribe("cm.ev.>", cb=on_event)
                instance = (await _wait_for_service(nc, "runner"))["metadata"]["instance"]
                async with gw.client() as http:
                    r = await http.post("/v1/messages", json={"text": "finish me"})
                assert r.status_code == 202, r.text
                turn_id = r.json()["turnId"]
                await asyncio.wait_for(fake.wait_for_requests(1), 60)

                runner.proc.send_signal(signal.SIGTERM)
                # Shutting down: it no longer asks CM_TURNS for work …
                await _no_pull_requests(nc.jetstream())
                # … but it is still there, waiting for the held model call
                assert runner.proc.poll() is None, "the runner exited with a turn in flight"
                opened.set()
                final = await wait_until(
                    lambda: next(
                        (e for e in events if isinstance(e, TurnFinal) and e.turn_id == turn_id), None
                    ),
                    timeout=60,
                    message="the in-flight turn's final",
                )
                assert final.text == "pong from fake"
                assert await _exit_code(runner) == 0
                starts = [e for e in events if isinstance(e, TurnStarted) and e.turn_id == turn_id]
                assert [s.runner for s in starts] == [instance]  # ran once, not redelivered
            finally:
                opened.set()
                runner.kill()
                await nc.close()


async def _no_pull_requests(js: Any) -> None:
    """Wait until the runner consumer has had no waiting pull request for a while (a running
    runner renews its fetch every half second)."""
    quiet = 0
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60
    while quiet < 8:
        info = await js.consumer_info("CM_TURNS", "runner")
        quiet = quiet + 1 if info.num_waiting == 0 else 0
        assert loop.time() < deadline, "the runner kept fetching after SIGTERM"
        await asyncio.sleep(0.25)


async def test_sigterm_stops_ingress_accepting_but_answers_waiting_requests(
    nats_url: str, tmp_path: Path
) -> None:
    async with FakeModelServer() as fake:
        opened = asyncio.Event()
        fake.script(Gate(opened))
        async with run_gateway(nats_url, _config(fake), tmp_path, services=("router", "runner")) as gw:
            ingress = ServiceProcess("ingress", gw.config_path, nats_url, gw.env, tmp_path / "ingress.log")
            nc = await nats.connect(nats_url)
            try:
                await _wait_for_service(nc, "ingress")
                status = await nc.request("cm.ctl.status.ingress", b"", timeout=10)
                url = json.loads(status.data)["url"]
                headers = {"Authorization": "Bearer test-token"}
                async with httpx.AsyncClient(base_url=url, headers=headers, timeout=120) as http:
                    waiting = asyncio.create_task(
                        http.post("/v1/messages?wait=120", json={"text": "answer me"})
                    )
                    await asyncio.wait_for(fake.wait_for_requests(1), 60)

                    ingress.proc.send_signal(signal.SIGTERM)

                    async def refused() -> bool:
                        try:
                            async with httpx.AsyncClient(base_url=url, headers=headers, timeout=5) as fresh:
                                await fresh.get("/healthz")
                        except httpx.ConnectError:
                            return True
                        except httpx.HTTPError:
                            return False
                        return False

                    await wait_until(refused, timeout=60, interval=0.1, message="new connections refused")
                    assert ingress.proc.poll() is None, "ingress exited with a request in flight"
                    opened.set()
                    r = await asyncio.wait_for(waiting, 60)
                assert r.status_code == 200, r.text
                assert r.json()["text"] == "pong from fake"
                assert await _exit_code(ingress) == 0
            finally:
                opened.set()
                ingress.kill()
                await nc.close()


async def test_a_turn_longer_than_the_grace_period_is_handed_to_another_runner(
    nats_url: str, tmp_path: Path
) -> None:
    """The drain is bounded (30 s): a runner whose turn does not end in time exits anyway,
    without acknowledging it, and another runner answers the turn."""
    async with FakeModelServer() as fake:
        never = asyncio.Event()
        # a warm-up call (the provider SDK is imported on first use), then one that never returns
        fake.script(Text("warm"), Gate(never))
        events: list[Any] = []
        config = {**_config(fake), "runtime": {"turnLeaseSeconds": 5}}
        async with run_gateway(nats_url, config, tmp_path, services=("ingress", "router")) as gw:
            first = ServiceProcess("runner", gw.config_path, nats_url, gw.env, tmp_path / "runner1.log")
            second: ServiceProcess | None = None
            nc = await nats.connect(nats_url)
            try:

                async def on_event(msg: Any) -> None:
                    events.append(decode(msg.data, TurnEvent, msg.headers))

                await nc.subscribe("cm.ev.>", cb=on_event)
                stuck = (await _wait_for_service(nc, "runner"))["metadata"]["instance"]
                async with gw.client(timeout=180) as http:
                    warm = await http.post("/v1/messages?wait=150", json={"text": "warm up"})
                    assert warm.status_code == 200, warm.text
                    r = await http.post("/v1/messages", json={"text": "too slow"})
                assert r.status_code == 202, r.text
                turn_id = r.json()["turnId"]
                await asyncio.wait_for(fake.wait_for_requests(2), 60)
                first.proc.send_signal(signal.SIGTERM)
                assert await _exit_code(first, timeout=120) == 0
                assert not any(isinstance(e, TurnFinal) and e.turn_id == turn_id for e in events)
                second = ServiceProcess("runner", gw.config_path, nats_url, gw.env, tmp_path / "runner2.log")
                final = await wait_until(
                    lambda: next(
                        (e for e in events if isinstance(e, TurnFinal) and e.turn_id == turn_id), None
                    ),
                    timeout=60,
                    message="the handed-over turn's final",
                )
                assert final.text == "pong from fake"
                # (a runner that stalls longer than its lease may lose and retake a turn: only
                # who ran it first and who finished it are certain)
                starts = [e.runner for e in events if isinstance(e, TurnStarted) and e.turn_id == turn_id]
                assert starts[0] == stuck and starts[-1] != stuck, starts
            finally:
                never.set()
                first.kill()
                if second is not None:
                    second.kill()
                await nc.close()
