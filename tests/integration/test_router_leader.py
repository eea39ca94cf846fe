"""Router leadership: one leader at a time, handed over at once when the leader stops cleanly."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nats
from nats.js.errors import KeyNotFoundError

from clawmesh.wire import Subjects
from tests.fixtures.gateway import run_gateway, wait_until

CONFIG: dict[str, Any] = {"agents": {"defaults": {"model": "echo/x"}, "list": [{"id": "main"}]}}


async def _leader_holder(nats_url: str) -> bytes | None:
    nc = await nats.connect(nats_url)
    try:
        kv = await nc.jetstream().key_value(Subjects("cm").bucket("leases"))
        try:
            return (await kv.get("leader.router")).value
        except KeyNotFoundError:
            return None
    finally:
        await nc.close()


async def test_a_stopping_leader_gives_up_its_lease_at_once(nats_url: str, tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    async with run_gateway(nats_url, CONFIG, tmp_path / "a", services=("router",)) as first:
        leader = first.service("router")
        await wait_until(lambda: leader.status()["leader"], message="the first router to lead")
        async with run_gateway(nats_url, CONFIG, tmp_path / "b", services=("router",)) as second:
            standby = second.service("router")
            assert await _leader_holder(nats_url) == leader.ctx.instance.encode()
            assert not standby.status()["leader"]
            await first.stop()
            # released, not left to expire: free, or already taken by the standby
            assert await _leader_holder(nats_url) in (None, standby.ctx.instance.encode())
            await wait_until(lambda: standby.status()["leader"], message="the standby to lead")
