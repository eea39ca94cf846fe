"""Partitioned routers (`runtime.routerPartitions`) as real OS processes on a real nats-server:
the partitions are shared out, a router killed under load loses nothing and duplicates
nothing, a router that joins takes partitions over, and a session that several partitions
reach (dmScope `main`) still gets every sequence number exactly once.

Messages are stored in CM_INBOUND as ingress stores them (keyed subjects, dedupe ids); what is
checked is CM_TURNS (every turn, read by sequence) and the route decisions.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections import defaultdict
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import nats
import pytest
import pytest_asyncio

from clawmesh.bus import NatsServer
from clawmesh.wire import InboundMessage, Peer, RouteDecision, Subjects, TurnRequest, decode, encode_msgpack
from tests.fixtures.gateway import ServiceProcess, run_gateway, wait_until, write_config

pytestmark = pytest.mark.slow

PARTITIONS = 4
SUBJECTS = Subjects("cm", keyed_inbound=True)


@pytest_asyncio.fixture
async def server(tmp_path: Path) -> AsyncIterator[NatsServer]:
    srv = NatsServer(store_dir=tmp_path / "js", work_dir=tmp_path)
    await srv.start()
    try:
        yield srv
    finally:
        await srv.stop()


def _config(tmp_path: Path, dm_scope: str) -> Path:
    return write_config(
        tmp_path / "clawmesh.json",
        {
            "agents": {"defaults": {"model": "echo/x"}, "list": [{"id": "main", "default": True}]},
            "session": {"dmScope": dm_scope},
            "runtime": {"turnLeaseSeconds": 2, "routerPartitions": PARTITIONS},
        },
    )


class Routers:
    def __init__(self, server: NatsServer, tmp_path: Path, config: Path) -> None:
        self.url = server.url
        self.tmp_path = tmp_path
        self.config = config
        self.env = {**os.environ, "CLAWMESH_STATE_DIR": str(tmp_path / "state"), "HOME": str(tmp_path)}
        self.procs: list[ServiceProcess] = []

    def start(self) -> ServiceProcess:
        log = self.tmp_path / f"router-{len(self.procs)}.log"
        proc = ServiceProcess("router", self.config, self.url, self.env, log)
        self.procs.append(proc)
        return proc

    def kill_all(self) -> None:
        for proc in self.procs:
            proc.kill()


async def _statuses(nc: Any, want: int) -> dict[int, dict[str, Any]]:
    """pid → status of every router that answers (waiting briefly for `want` of them)."""
    inbox = nc.new_inbox()
    found: dict[int, dict[str, Any]] = {}

    async def cb(msg: Any) -> None:
        if msg.data:
            body = json.loads(msg.data)
            found[int(body["pid"])] = body

    sub = await nc.subscribe(inbox, cb=cb)
    await nc.publish("cm.ctl.status.router", b"", reply=inbox)
    await nc.flush()
    try:
        await wait_until(lambda: len(found) >= want, timeout=2, interval=0.05, message="router status")
    except AssertionError:
        pass
    await sub.unsubscribe()
    return found


async def _shared_out(nc: Any, pids: set[int]) -> dict[int, list[int]] | None:
    """pid → partitions, once exactly `pids` answer and hold every partition once between them,
    evenly (shares differ by one at most)."""
    statuses = await _statuses(nc, len(pids))
    if set(statuses) != pids:
        return None
    held = {pid: list(s["partitions"]) for pid, s in statuses.items()}
    every = sorted(p for parts in held.values() for p in parts)
    sizes = [len(parts) for parts in held.values()]
    return held if every == list(range(PARTITIONS)) and max(sizes) - min(sizes) <= 1 else None


def _messages(peers: int, per_peer: int, tag: str) -> list[InboundMessage]:
    """Round robin over the peers: message i of a peer is `<tag>-<peer>-<i>`."""
    return [
        InboundMessage(id=f"{tag}-{p}-{i}", channel="api", text=str(i), peer=Peer(kind="direct", id=f"u{p}"))
        for i in range(per_peer)
        for p in range(peers)
    ]


async def _publish(js: Any, msgs: list[InboundMessage]) -> None:
    for msg in msgs:
        data, headers = encode_msgpack(msg)
        headers["Nats-Msg-Id"] = msg.id
        await js.publish(SUBJECTS.inbound_of(msg), data, headers=headers)


async def _turns(js: Any) -> list[TurnRequest]:
    """Every turn stored in CM_TURNS (a work queue nobody consumes here: read by sequence)."""
    state = (await js.stream_info("CM_TURNS")).state
    out = []
    for seq in range(state.first_seq, state.last_seq + 1):
        msg = await js.get_msg("CM_TURNS", seq)
        out.append(decode(msg.data, TurnRequest, msg.headers))
    return out


async def _all_routed(js: Any, want: int) -> bool:
    return int((await js.stream_info("CM_TURNS")).state.messages) >= want


def _check_sessions(turns: list[TurnRequest], msgs: list[InboundMessage]) -> None:
    """Every message is one turn; each session's numbers are 1..n, once each, in the order
    its peer sent them (`msgs` is in the order each peer sent its messages)."""
    sent_at = {m.id: i for i, m in enumerate(msgs)}
    assert sorted(t.turn_id for t in turns) == sorted(m.id for m in msgs)  # 0 lost, 0 duplicated
    by_session: dict[str, list[TurnRequest]] = defaultdict(list)
    for turn in turns:
        by_session[turn.session_key].append(turn)
    for key, session in by_session.items():
        seqs = sorted(t.seq for t in session)
        assert seqs == list(range(1, len(session) + 1)), f"{key}: numbers {seqs}"
        by_peer: dict[str, list[tuple[int, int]]] = defaultdict(list)
        for turn in session:
            peer = turn.inbound.peer.id if turn.inbound.peer else ""
            by_peer[peer].append((sent_at[turn.turn_id], turn.seq))
        for peer, sent in by_peer.items():
            in_order = [seq for _, seq in sorted(sent)]
            assert in_order == sorted(in_order), f"{key}: {peer}'s messages numbered out of order: {sent}"


def _check_decisions(decisions: list[RouteDecision]) -> None:
    """A message routed twice (its router died before acking it) kept the number it had."""
    numbers: dict[str, set[int]] = defaultdict(set)
    for d in decisions:
        numbers[d.turn_id].add(d.seq)
    assert {k: v for k, v in numbers.items() if len(v) > 1} == {}


async def test_a_router_killed_under_load_loses_and_duplicates_nothing(
    server: NatsServer, tmp_path: Path
) -> None:
    routers = Routers(server, tmp_path, _config(tmp_path, "per-peer"))
    nc = await nats.connect(server.url)
    decisions: list[RouteDecision] = []

    async def on_decision(msg: Any) -> None:
        decisions.append(decode(msg.data, RouteDecision, msg.headers))

    try:
        await nc.subscribe("cm.route.decided", cb=on_decision)
        procs = [routers.start() for _ in range(3)]
        pids = {p.proc.pid for p in procs}
        held = await wait_until(lambda: _shared_out(nc, pids), timeout=90, message="partitions shared out")
        assert sorted(len(parts) for parts in held.values()) == [1, 1, 2]

        js = nc.jetstream()
        msgs = _messages(peers=24, per_peer=20, tag="k")
        half = len(msgs) // 2
        await _publish(js, msgs[:half])
        victim = next(p for p in procs if held[p.proc.pid])
        load = asyncio.create_task(_publish(js, msgs[half:]))
        # killed while messages are still arriving and being routed
        await wait_until(lambda: len(decisions) >= half // 2, timeout=60, message="routing under way")
        victim.kill()
        await load
        survivors = pids - {victim.proc.pid}
        await wait_until(lambda: _shared_out(nc, survivors), timeout=90, message="partitions taken over")
        await wait_until(lambda: _all_routed(js, len(msgs)), timeout=120, message="every message routed")
        _check_sessions(await _turns(js), msgs)
        _check_decisions(decisions)
    finally:
        routers.kill_all()
        await nc.close()


async def test_a_router_that_joins_takes_partitions_over(server: NatsServer, tmp_path: Path) -> None:
    """Messages keep coming while the second router starts and the first hands it half of the
    partitions: each is routed once, each session in order."""
    routers = Routers(server, tmp_path, _config(tmp_path, "per-peer"))
    nc = await nats.connect(server.url)
    try:
        first = routers.start()
        await wait_until(
            lambda: _shared_out(nc, {first.proc.pid}), timeout=90, message="one router holds all"
        )
        js = nc.jetstream()
        sent: list[InboundMessage] = []
        decided: list[Any] = []

        async def on_decision(msg: Any) -> None:
            decided.append(msg)

        await nc.subscribe("cm.route.decided", cb=on_decision)
        joined = asyncio.Event()

        async def load() -> None:
            # a round of one message per peer at a time, at most two rounds ahead of routing,
            # until the partitions are shared out and for a few rounds after (bounded: the wait
            # below fails first if they never are)
            after = 0
            for round_ in range(2_000):
                await wait_until(lambda: len(decided) >= len(sent) - 24, timeout=60, message="routing")
                batch = _messages(peers=12, per_peer=1, tag=f"j{round_}")
                await _publish(js, batch)
                sent.extend(batch)
                after += joined.is_set()
                if after > 5:
                    return

        publishing = asyncio.create_task(load())
        await wait_until(lambda: len(sent) >= 60, timeout=60, message="load under way")
        second = routers.start()
        held = await wait_until(
            lambda: _shared_out(nc, {first.proc.pid, second.proc.pid}),
            timeout=90,
            message="the newcomer's share",
        )
        joined.set()
        await publishing
        assert [len(held[first.proc.pid]), len(held[second.proc.pid])] == [2, 2]
        await wait_until(lambda: _all_routed(js, len(sent)), timeout=120, message="every message routed")
        _check_sessions(await _turns(js), sent)
    finally:
        routers.kill_all()
        await nc.close()


async def test_a_session_shared_across_partitions_is_numbered_once(
    server: NatsServer, tmp_path: Path
) -> None:
    """dmScope `main`: every peer's DMs go to one session, reached through every partition by
    two routers at once; compare-and-set keeps its numbers unique and gap-free."""
    routers = Routers(server, tmp_path, _config(tmp_path, "main"))
    nc = await nats.connect(server.url)
    try:
        procs = [routers.start() for _ in range(2)]
        await wait_until(
            lambda: _shared_out(nc, {p.proc.pid for p in procs}), timeout=90, message="shared out"
        )
        js = nc.jetstream()
        msgs = _messages(peers=16, per_peer=10, tag="s")
        await asyncio.gather(*(_publish(js, msgs[i::4]) for i in range(4)))
        await wait_until(lambda: _all_routed(js, len(msgs)), timeout=120, message="every message routed")
        turns = await _turns(js)
        assert {t.session_key for t in turns} == {"agent:main:main"}
        _check_sessions(turns, msgs)
    finally:
        routers.kill_all()
        await nc.close()


async def test_turns_go_end_to_end_through_partitioned_routers(nats_url: str, tmp_path: Path) -> None:
    """Ingress stores keyed subjects, the stream maps them, the routers and a runner answer."""
    config = {
        "agents": {"defaults": {"model": "echo/x"}, "list": [{"id": "main", "default": True}]},
        "session": {"dmScope": "per-peer"},
        "runtime": {"routerPartitions": PARTITIONS},
    }
    async with run_gateway(nats_url, config, tmp_path) as gw, gw.client() as http:
        replies = await asyncio.gather(
            *(
                http.post(
                    "/v1/messages?wait=60", json={"text": f"hello {p}", "peer": {"kind": "direct", "id": p}}
                )
                for p in ("ann", "bob", "cyd", "dan")
            )
        )
        assert [r.status_code for r in replies] == [200] * 4
        assert [r.json()["text"] for r in replies] == [
            f"echo: hello {p}" for p in ("ann", "bob", "cyd", "dan")
        ]
        nc = await nats.connect(nats_url)
        try:
            js = nc.jetstream()
            info = await js.stream_info("CM_INBOUND")
            assert info.config.subject_transform is not None
            subjects = {(await js.get_msg("CM_INBOUND", seq)).subject for seq in range(1, 5)}
            assert all(s.startswith("cm.in.p.") and len(s.split(".")) == 7 for s in subjects), subjects
        finally:
            await nc.close()


async def test_partitioning_an_existing_deployment_routes_nothing_twice(
    server: NatsServer, tmp_path: Path
) -> None:
    """One router (the consumer `router`) routed some messages; after the switch to partitions
    the new consumers start where it left off: what it routed is not routed again, what it
    had not (stored unkeyed) is routed by partition 0, and its consumer is removed."""
    config = write_config(
        tmp_path / "clawmesh.json",
        {
            "agents": {"defaults": {"model": "echo/x"}, "list": [{"id": "main", "default": True}]},
            "session": {"dmScope": "per-peer"},
            "runtime": {"turnLeaseSeconds": 2},
        },
    )
    routers = Routers(server, tmp_path, config)
    nc = await nats.connect(server.url)
    decisions: list[RouteDecision] = []

    async def on_decision(msg: Any) -> None:
        decisions.append(decode(msg.data, RouteDecision, msg.headers))

    try:
        await nc.subscribe("cm.route.decided", cb=on_decision)
        js = nc.jetstream()
        before = _messages(peers=4, per_peer=5, tag="old")
        first = routers.start()
        await wait_until(lambda: _leads(nc, first.proc.pid), timeout=90, message="the single router leads")
        await _publish_unkeyed(js, before[:10])
        await wait_until(lambda: _all_routed(js, 10), timeout=90, message="the single router routed")
        assert first.terminate() == 0
        await _publish_unkeyed(js, before[10:])  # stored while no router runs
        write_config(
            config,
            {
                "agents": {"defaults": {"model": "echo/x"}, "list": [{"id": "main", "default": True}]},
                "session": {"dmScope": "per-peer"},
                "runtime": {"turnLeaseSeconds": 2, "routerPartitions": PARTITIONS},
            },
        )
        procs = [routers.start() for _ in range(2)]
        await wait_until(
            lambda: _shared_out(nc, {p.proc.pid for p in procs}), timeout=90, message="shared out"
        )
        after = _messages(peers=4, per_peer=5, tag="new")
        await _publish(js, after)
        await wait_until(lambda: _all_routed(js, 40), timeout=120, message="every message routed")
        _check_sessions(await _turns(js), before + after)
        routed: dict[str, int] = defaultdict(int)
        for d in decisions:
            routed[d.turn_id] += 1
        assert {k: n for k, n in routed.items() if n > 1} == {}
        names = {info.name for info in await js.consumers_info("CM_INBOUND")}
        assert names == {f"router-p{k}" for k in range(PARTITIONS)}
    finally:
        routers.kill_all()
        await nc.close()


async def _leads(nc: Any, pid: int) -> bool:
    statuses = await _statuses(nc, 1)
    return pid in statuses and statuses[pid]["partitions"] == [0] and statuses[pid]["partitionCount"] == 1


async def _publish_unkeyed(js: Any, msgs: list[InboundMessage]) -> None:
    for msg in msgs:
        data, headers = encode_msgpack(msg)
        headers["Nats-Msg-Id"] = msg.id
        await js.publish(Subjects("cm").inbound_of(msg), data, headers=headers)
