"""The runner's stop handling and sub-agent lane, without a bus."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

from clawmesh.checks import default_checks
from clawmesh.config import parse_config
from clawmesh.errors import ClawmeshError
from clawmesh.sessions import SpawnRecord, StopRecord
from clawmesh.wire import InboundMessage, RouteInfo, StopRequest, TurnRequest, encode_json
from clawmesh_runner.stops import Stops

CONFIG = parse_config(
    {"agents": {"list": [{"id": "main"}], "defaults": {"subagents": {"maxConcurrent": 1}}}},
    checks=default_checks(),
)
SPAWN = SpawnRecord(
    child_session_key="agent:main:subagent:1",
    child_agent_id="main",
    run_id="r",
    parent_session_key="p",
    parent_agent_id="main",
    depth=1,
)


class _Msg:
    def __init__(self, data: bytes, headers: dict[str, str]) -> None:
        self.data, self.headers = data, headers


async def test_the_sub_agent_lane_admits_max_concurrent_children() -> None:
    stops = Stops(Any)  # type: ignore[arg-type]  # the lane needs no bus
    view = CONFIG.agent_view("main")
    assert view is not None
    inside = asyncio.Event()
    release = asyncio.Event()
    order: list[str] = []

    async def child(name: str) -> None:
        async with stops.lane(SPAWN, CONFIG, view):
            order.append(name)
            inside.set()
            await release.wait()

    first = asyncio.create_task(child("a"))
    await inside.wait()
    second = asyncio.create_task(child("b"))
    for _ in range(10):  # let "b" run up to the lane (loop iterations, not time)
        await asyncio.sleep(0)
    assert order == ["a"]
    async with stops.lane(None, CONFIG, view):  # a turn that is no child never waits
        order.append("plain")
    assert order == ["a", "plain"]
    release.set()
    await asyncio.gather(first, second)
    assert order == ["a", "plain", "b"]


async def test_a_stop_request_cancels_the_running_work_of_that_session_only() -> None:
    stops = Stops(Any)  # type: ignore[arg-type]
    started = asyncio.Event()

    async def forever() -> str:
        started.set()
        await asyncio.Event().wait()
        return "never"

    async def quick() -> str:
        return "done"

    task = asyncio.create_task(stops.until_stopped("s1", forever()))
    await started.wait()
    other = await stops.until_stopped("s2", quick())
    data, headers = encode_json(StopRequest(session_key="s2"))
    await stops._on_stop(_Msg(data, headers))  # type: ignore[arg-type]
    assert not task.done() and other == "done"
    data, headers = encode_json(StopRequest(session_key="s1"))
    await stops._on_stop(_Msg(data, headers))  # type: ignore[arg-type]
    with pytest.raises(ClawmeshError) as err:
        await task
    assert err.value.code == "TURN_STOPPED"
    await stops._on_stop(_Msg(b"garbage", {}))  # type: ignore[arg-type]  # ignored


class _Store:
    """The run and stop records a SessionStore would return, counting reads."""

    def __init__(self, stop: StopRecord | None = None) -> None:
        self.stop = stop
        self.reads: list[str] = []

    async def get_spawn(self, key: str) -> SpawnRecord | None:
        self.reads.append(f"k.{key}")
        return SPAWN

    async def get_stop(self, key: str) -> StopRecord | None:
        self.reads.append(f"x.{key}")
        return self.stop


def _turn(session_key: str, routed_at: float = 100.0) -> TurnRequest:
    return TurnRequest(
        turn_id="t",
        seq=1,
        route=RouteInfo(
            agent_id="main",
            session_key=session_key,
            main_session_key="agent:main:main",
            matched_by="session",
            channel="subagent",
            account_id="default",
        ),
        inbound=InboundMessage(id="t", channel="subagent"),
        routed_at=routed_at,
    )


def _stops(store: _Store) -> Stops:
    return Stops(SimpleNamespace(sessions=store))  # type: ignore[arg-type]


async def test_a_child_turn_is_read_ahead_and_a_stop_after_the_read_still_stops_it() -> None:
    store = _Store()
    stops = _stops(store)
    early = stops.early(_turn(SPAWN.child_session_key))
    assert early is not None
    assert await early.state == (SPAWN, False)
    assert sorted(store.reads) == [f"k.{SPAWN.child_session_key}", f"x.{SPAWN.child_session_key}"]
    # the stop request comes after the read, before the turn runs: the watch has it
    data, headers = encode_json(StopRequest(session_key=SPAWN.child_session_key))
    await stops._on_stop(_Msg(data, headers))  # type: ignore[arg-type]

    async def work() -> str:
        return "ran"

    with pytest.raises(ClawmeshError) as err:
        await stops.until_stopped(SPAWN.child_session_key, asyncio.sleep(3600, "never"), early.stopped)
    assert err.value.code == "TURN_STOPPED"
    early.close()
    # closed: the session is no longer watched, a new run of it is not stopped by that request
    assert await stops.until_stopped(SPAWN.child_session_key, work()) == "ran"


async def test_a_stop_recorded_after_routing_is_seen_by_the_read_ahead() -> None:
    stops = _stops(_Store(StopRecord(at=150.0)))
    early = stops.early(_turn(SPAWN.child_session_key, routed_at=100.0))
    assert early is not None and await early.state == (SPAWN, True)
    early.close()
    stops = _stops(_Store(StopRecord(at=50.0)))  # recorded before the turn was routed
    early = stops.early(_turn(SPAWN.child_session_key, routed_at=100.0))
    assert early is not None and await early.state == (SPAWN, False)
    early.close()


async def test_only_a_sub_agent_turn_is_read_ahead_and_a_turn_not_run_stops_reading() -> None:
    store = _Store()
    stops = _stops(store)
    assert stops.early(_turn("agent:main:main")) is None
    early = stops.early(_turn(SPAWN.child_session_key))
    assert early is not None
    early.close()  # handed back before its reads ran: they are cancelled, nothing is left
    await asyncio.sleep(0)
    assert early.state.cancelled() and stops._waiting == {}
