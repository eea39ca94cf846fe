"""Router replicas: a standby takes over when the leader is killed, and a message the dead
leader had routed but not acknowledged keeps the sequence number it was given.

The routers run as real OS processes under a NATS user that may not acknowledge CM_INBOUND
messages: every routed message then stays unacknowledged, as if its router had died just
before acking, and is delivered again — to the standby once the leader is gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nats
import pytest
import pytest_asyncio

from clawmesh.bus import NatsServer
from clawmesh.wire import InboundMessage, Peer, RouteDecision, TurnRequest, decode, encode_msgpack
from tests.fixtures.gateway import ServiceProcess, wait_until, write_config

pytestmark = pytest.mark.slow

_AUTH = """
authorization {
  users = [
    {user: router, password: rpw, permissions: {
      publish: {allow: [">"], deny: ["$JS.ACK.>"]},
      subscribe: {allow: [">"]}
    }},
    {user: test, password: tpw}
  ]
}
"""


@pytest_asyncio.fixture
async def server(tmp_path: Path) -> AsyncIterator[NatsServer]:
    (tmp_path / "auth.conf").write_text(_AUTH)
    srv = NatsServer(store_dir=tmp_path / "js", work_dir=tmp_path, config='include "auth.conf"')
    await srv.start()
    try:
        yield srv
    finally:
        await srv.stop()


async def _statuses(nc: Any, want: int = 1) -> dict[str, dict[str, Any]]:
    """instance → status, from every router that answers (waiting briefly for `want` of them)."""
    inbox = nc.new_inbox()
    found: dict[str, dict[str, Any]] = {}

    async def cb(msg: Any) -> None:
        if msg.data:
            body = json.loads(msg.data)
            found[body["instance"]] = body

    sub = await nc.subscribe(inbox, cb=cb)
    await nc.publish("cm.ctl.status.router", b"", reply=inbox)
    await nc.flush()
    try:
        await wait_until(lambda: len(found) >= want, timeout=2, interval=0.05, message="router status")
    except AssertionError:
        pass
    await sub.unsubscribe()
    return found


async def _leader(nc: Any, among: int) -> str | None:
    statuses = await _statuses(nc, among)
    if len(statuses) < among:
        return None
    leaders = [i for i, s in statuses.items() if s.get("leader")]
    assert len(leaders) <= 1, f"two leaders at once: {statuses}"
    return leaders[0] if leaders else None


async def _held_back(nc: Any) -> bool:
    """Whether the leading router has handed a message back to wait for an earlier one."""
    stats = await nc.request("$SRV.STATS.clawmesh-router", b"", timeout=5)
    return '"inbound_held_back"' in stats.data.decode()


async def _pids(nc: Any) -> dict[str, int]:
    inbox = nc.new_inbox()
    found: dict[str, int] = {}

    async def cb(msg: Any) -> None:
        if msg.data:
            meta = json.loads(msg.data)["metadata"]
            found[meta["instance"]] = int(meta["pid"])

    sub = await nc.subscribe(inbox, cb=cb)
    await nc.publish("$SRV.INFO.clawmesh-router", b"", reply=inbox)
    await nc.flush()
    await wait_until(lambda: len(found) >= 2, timeout=10, message="router pids")
    await sub.unsubscribe()
    return found


async def test_standby_router_takes_over_and_keeps_sequence_numbers(
    server: NatsServer, tmp_path: Path
) -> None:
    config = {
        "agents": {"defaults": {"model": "echo/x"}, "list": [{"id": "main", "default": True}]},
        "session": {"dmScope": "per-peer"},
        "runtime": {"turnLeaseSeconds": 2},
    }
    path = write_config(tmp_path / "clawmesh.json", config)
    router_url = f"nats://router:rpw@127.0.0.1:{server.client_port}"
    env = {**os.environ, "CLAWMESH_STATE_DIR": str(tmp_path / "state"), "HOME": str(tmp_path)}
    nc = await nats.connect(f"nats://test:tpw@127.0.0.1:{server.client_port}")
    decisions: list[tuple[int, RouteDecision]] = []  # (router generation, decision)
    generation = 0

    async def on_decision(msg: Any) -> None:
        decisions.append((generation, decode(msg.data, RouteDecision, msg.headers)))

    first = ServiceProcess("router", path, router_url, env, tmp_path / "router-a.log")
    second: ServiceProcess | None = None
    try:
        leader_a = await wait_until(lambda: _leader(nc, 1), timeout=60, message="router A leads")
        second = ServiceProcess("router", path, router_url, env, tmp_path / "router-b.log")
        await wait_until(lambda: _count(nc, 2), timeout=60, message="router B runs")
        assert await _leader(nc, 2) == leader_a  # B stands by
        pids = await _pids(nc)
        assert pids[leader_a] == first.proc.pid

        await nc.subscribe("cm.route.decided", cb=on_decision)
        await nc.flush()
        js = nc.jetstream()
        peer = Peer(kind="direct", id="pat")
        m1 = InboundMessage(id="m1", channel="api", text="one", peer=peer)
        data, headers = encode_msgpack(m1)
        await js.publish("cm.in.api.default", data, headers=headers)
        await wait_until(lambda: _decided(decisions, "m1"), timeout=60, message="m1 routed by A")
        assert {d.seq for d in _decided(decisions, "m1")} == {1}

        first.kill()  # the leader dies; m1 was never acknowledged
        generation = 1
        leader_b = await wait_until(lambda: _leader(nc, 1), timeout=60, message="B takes over")
        assert leader_b != leader_a
        # B routes m1 again (it was never acked): with the number A gave it, not a new one
        await wait_until(lambda: _decided(decisions, "m1", generation=1), timeout=60, message="m1 by B")
        assert {d.seq for d in _decided(decisions, "m1")} == {1}
        m2 = InboundMessage(id="m2", channel="api", text="two", peer=peer)
        data, headers = encode_msgpack(m2)
        await js.publish("cm.in.api.default", data, headers=headers)
        await wait_until(lambda: _decided(decisions, "m2", generation=1), timeout=60, message="m2 by B")
        assert {d.seq for d in _decided(decisions, "m2")} == {2}
        assert {d.session_key for _, d in decisions} == {"agent:main:direct:pat"}, decisions

        # each turn is in CM_TURNS once, with its one sequence number
        turns = await _turns(js)
        assert sorted((t.turn_id, t.seq) for t in turns) == [("m1", 1), ("m2", 2)]
    finally:
        first.kill()
        if second is not None:
            second.kill()
        await nc.close()


async def _count(nc: Any, want: int) -> bool:
    return len(await _statuses(nc, want)) >= want


def _decided(
    decisions: list[tuple[int, RouteDecision]], turn_id: str, generation: int = 0
) -> list[RouteDecision]:
    return [d for g, d in decisions if d.turn_id == turn_id and g >= generation]


async def _turns(js: Any) -> list[TurnRequest]:
    """Every turn stored in CM_TURNS (a work queue: read by sequence, not consumed)."""
    state = (await js.stream_info("CM_TURNS")).state
    out = []
    for seq in range(state.first_seq, state.last_seq + 1):
        msg = await js.get_msg("CM_TURNS", seq)
        out.append(decode(msg.data, TurnRequest, msg.headers))
    return out


@dataclass
class _HandOver:
    """A leader that fetched m1 of a session and never numbered or acked it (`orphan`), gone;
    the routing decisions seen since (`decided`); `take_over()` starts the next leader."""

    nc: Any
    js: Any
    orphan: Any
    decided: list[RouteDecision]
    take_over: Callable[[], Awaitable[None]]

    async def publish(self, turn_id: str, text: str) -> None:
        inbound = InboundMessage(id=turn_id, channel="api", text=text, peer=Peer(kind="direct", id="pat"))
        data, headers = encode_msgpack(inbound)
        await self.js.publish("cm.in.api.default", data, headers=headers)


@contextlib.asynccontextmanager
async def _hand_over(server: NatsServer, tmp_path: Path, lease: float) -> AsyncIterator[_HandOver]:
    config = {
        "agents": {"defaults": {"model": "echo/x"}, "list": [{"id": "main", "default": True}]},
        "session": {"dmScope": "per-peer"},
        "runtime": {"turnLeaseSeconds": lease},  # also the routers' consumer's ack wait
    }
    path = write_config(tmp_path / "clawmesh.json", config)
    url = f"nats://test:tpw@127.0.0.1:{server.client_port}"
    env = {**os.environ, "CLAWMESH_STATE_DIR": str(tmp_path / "state"), "HOME": str(tmp_path)}
    nc = await nats.connect(url)
    decided: list[RouteDecision] = []

    async def on_decision(msg: Any) -> None:
        decided.append(decode(msg.data, RouteDecision, msg.headers))

    routers = [ServiceProcess("router", path, url, env, tmp_path / "router-a.log")]

    async def take_over() -> None:
        routers.append(ServiceProcess("router", path, url, env, tmp_path / "router-b.log"))
        await wait_until(lambda: _leader(nc, 1), timeout=60, message="router B leads")

    try:
        await wait_until(lambda: _leader(nc, 1), timeout=60, message="router A leads")
        assert routers[0].terminate() == 0  # its lease is released; the shared consumer stays
        await nc.subscribe("cm.route.decided", cb=on_decision)
        await nc.flush()
        js = nc.jetstream()
        scenario = _HandOver(nc, js, None, decided, take_over)
        await scenario.publish("m1", "one")
        # the leader that dies: m1 fetched from the routers' consumer, never numbered or acked
        held = await js.pull_subscribe_bind("router", stream="CM_INBOUND")
        [scenario.orphan] = await held.fetch(1, timeout=10)
        assert decode(scenario.orphan.data, InboundMessage, scenario.orphan.headers).id == "m1"
        yield scenario
        await held.unsubscribe()
    finally:
        for router in routers:
            router.kill()
        await nc.close()


async def test_a_new_leader_routes_what_the_old_one_fetched_before_anything_later(
    server: NatsServer, tmp_path: Path
) -> None:
    """A leader that dies between fetching a message and numbering it leaves that message out
    for one ack wait while JetStream hands out the ones after it; the next leader must not
    number them first (a chaos run numbered a session's message 57 after its 58-64)."""
    async with _hand_over(server, tmp_path, lease=10) as h:
        await h.take_over()
        await h.publish("m2", "two")
        await wait_until(lambda: len(h.decided) >= 2, timeout=60, message="m1 and m2 routed")
        assert [(d.turn_id, d.seq) for d in h.decided] == [("m1", 1), ("m2", 2)]


async def test_an_orphan_kept_out_past_the_wait_is_still_routed_before_anything_later(
    server: NatsServer, tmp_path: Path
) -> None:
    """The previous holder keeps a fetched message out longer than the new leader's orphan wait
    (frozen, cut off by a partition, or its consumer's leader moved and restarted the ack wait:
    a chaos run numbered two sessions' last messages in the wrong order). The new leader must
    still not number a later message first: it holds later ones back until the ack floor has
    passed what was out when it took over."""
    async with _hand_over(server, tmp_path, lease=2) as h:  # the orphan wait is 2.5 s

        async def keep_out() -> None:  # the old holder reports progress on m1, again and again
            while True:
                await h.orphan.in_progress()
                await asyncio.sleep(0.5)  # its own pace of reports, not a wait for an event

        reporter = asyncio.create_task(keep_out())
        await h.take_over()
        await h.publish("m2", "two")
        # well past B's orphan wait (2.5 s from its start): m2 must still wait for m1
        await wait_until(lambda: _held_back(h.nc), timeout=30, message="B holding m2 back while m1 is out")
        assert not h.decided, f"routed while m1 was still out: {h.decided}"
        reporter.cancel()
        await h.orphan.nak()  # it gives m1 back at last
        await wait_until(lambda: len(h.decided) >= 2, timeout=60, message="m1 and m2 routed")
        assert [(d.turn_id, d.seq) for d in h.decided] == [("m1", 1), ("m2", 2)]
