"""The federation's NATS topology, on real nats-servers: a hub and regions as leaf nodes, with
the accounts `clawmesh deploy federation` generates. What crosses between regions is only the
gateway request family and the broadcasts; everything else stays in its region."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import nats
import pytest
import pytest_asyncio
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout
from nats.js.errors import NotFoundError, ServiceUnavailableError

from clawmesh.bus import NatsServer
from clawmesh.federation import FederationPlan, plan_federation
from clawmesh.natsauth import nats_users, render_auth_conf
from tests.fixtures.federation import start_hub
from tests.fixtures.gateway import wait_until

pytestmark = pytest.mark.asyncio

REGIONS = ("sg", "eu", "us")


@dataclasses.dataclass
class Fed:
    plan: FederationPlan
    hub: NatsServer
    regions: dict[str, NatsServer]
    admin: dict[str, tuple[str, str]]  # region -> (user, password) of its admin
    tmp: Path

    async def client(self, region: str) -> Client:
        user, password = self.admin[region]
        return await nats.connect(
            self.regions[region].url, user=user, password=password, name=f"test-{region}"
        )


@pytest_asyncio.fixture
async def fed(tmp_path: Path) -> AsyncIterator[Fed]:
    plan = plan_federation(REGIONS, hub_host="127.0.0.1", leaf_port=1)  # the real port once the hub runs
    hub = await start_hub(plan, tmp_path)
    assert hub.leaf_port
    plan = dataclasses.replace(plan, leaf_port=hub.leaf_port)
    regions: dict[str, NatsServer] = {}
    admin: dict[str, tuple[str, str]] = {}
    state = Fed(plan, hub, regions, admin, tmp_path)
    try:
        for name in REGIONS:
            users = nats_users("cm")
            adm = next(u for u in users if u.name == "admin")
            admin[name] = (adm.user, adm.password)
            regions[name] = await NatsServer(
                store_dir=tmp_path / f"{name}-js",
                work_dir=tmp_path / name,
                server_name=f"gw-{name}",
                jetstream_domain=name,
                config=plan.region_conf(name),
                authorization=render_auth_conf(users),
                conf_name=f"{name}.conf",
            ).start()
        yield state
    finally:
        for server in regions.values():
            await server.stop()
        await hub.stop()
        await state.hub.stop()  # a test that restarted the hub left the new one here


async def _eventually(what: str, attempt: Callable[[], Awaitable[Any]], timeout: float = 20.0) -> Any:
    """Retry `attempt` until it returns without NATS saying "nobody listens (yet)": interest
    crosses a leaf link asynchronously after a subscription is made."""

    async def answered() -> tuple[Any] | None:  # in a tuple: the answer itself may be falsy
        try:
            return (await attempt(),)
        except (NoRespondersError, NatsTimeout):
            return None

    return (await wait_until(answered, timeout, message=what))[0]


async def _answer(nc: Client, subject: str, reply: bytes) -> None:
    async def handler(msg: Msg) -> None:
        await msg.respond(reply + b":" + msg.data)

    await nc.subscribe(subject, queue="gw", cb=handler)
    await nc.flush()


async def test_a_request_to_another_region_is_answered_by_that_region(fed: Fed) -> None:
    sg, eu = await fed.client("sg"), await fed.client("eu")
    try:
        await _answer(sg, "cm.gw.sg.turn.worker", b"sg")
        msg = await _eventually(
            "eu → sg request", lambda: eu.request("cm.gw.sg.turn.worker", b"hi", timeout=1)
        )
        assert msg.data == b"sg:hi"
        # and the other way round, through the same hub
        await _answer(eu, "cm.gw.eu.turn.worker", b"eu")
        msg = await _eventually(
            "sg → eu request", lambda: sg.request("cm.gw.eu.turn.worker", b"yo", timeout=1)
        )
        assert msg.data == b"eu:yo"
    finally:
        await sg.close()
        await eu.close()


async def test_a_request_goes_to_the_named_region_only(fed: Fed) -> None:
    """Two regions answer the same gateway-relative subject; the region in the subject decides."""
    sg, eu, us = await fed.client("sg"), await fed.client("eu"), await fed.client("us")
    try:
        await _answer(sg, "cm.gw.sg.ping", b"sg")
        await _answer(eu, "cm.gw.eu.ping", b"eu")
        for _ in range(20):
            a = await _eventually("us → sg", lambda: us.request("cm.gw.sg.ping", b"", timeout=1))
            b = await _eventually("us → eu", lambda: us.request("cm.gw.eu.ping", b"", timeout=1))
            assert (a.data, b.data) == (b"sg:", b"eu:")
    finally:
        for c in (sg, eu, us):
            await c.close()


async def test_broadcasts_reach_every_other_region(fed: Fed) -> None:
    sg, eu, us = await fed.client("sg"), await fed.client("eu"), await fed.client("us")
    try:
        got: dict[str, asyncio.Queue[bytes]] = {"eu": asyncio.Queue(), "us": asyncio.Queue()}
        for name, c in (("eu", eu), ("us", us)):
            q = got[name]

            async def cb(msg: Msg, q: asyncio.Queue[bytes] = q) -> None:
                q.put_nowait(msg.data)

            await c.subscribe("cm.gwcast.*.presence", cb=cb)
            await c.flush()
        # Interest crosses asynchronously: publish until both regions have seen one.
        deadline = asyncio.get_running_loop().time() + 20
        seen: set[str] = set()
        while seen != {"eu", "us"}:
            assert asyncio.get_running_loop().time() < deadline, f"broadcast reached only {seen}"
            await sg.publish("cm.gwcast.sg.presence", b"sg-alive")
            await sg.flush()
            for name, q in got.items():
                try:
                    assert await asyncio.wait_for(q.get(), 0.2) == b"sg-alive"
                    seen.add(name)
                except TimeoutError:
                    pass
    finally:
        for c in (sg, eu, us):
            await c.close()


async def test_private_subjects_never_leave_their_region(fed: Fed) -> None:
    """eu listens to everything (`>`) with its admin credentials; sg publishes its private
    traffic and then a broadcast on the same connection. The broadcast arriving in eu proves
    the link carried everything sg published before it, so anything private missing from eu
    was never sent there."""
    sg, eu = await fed.client("sg"), await fed.client("eu")
    try:
        received: list[str] = []
        sentinel = asyncio.Event()

        async def cb(msg: Msg) -> None:
            received.append(msg.subject)
            if msg.subject == "cm.gwcast.sg.sentinel":
                sentinel.set()

        await eu.subscribe(">", cb=cb)
        await eu.flush()
        private = [
            "cm.in.telegram.default",
            "cm.turn.worker",
            "cm.out.telegram.default",
            "cm.ev.worker.s1",
            "cm.tx.worker.s1",
            "cm.route.decided",
            "$KV.cm_sessions.worker",
            "cm.gwcast.eu.presence",  # sg may not speak for eu
        ]
        deadline = asyncio.get_running_loop().time() + 20
        while not sentinel.is_set():
            assert asyncio.get_running_loop().time() < deadline, "the sentinel broadcast never reached eu"
            for subject in private:
                await sg.publish(subject, b"secret")
            await sg.publish("cm.gwcast.sg.sentinel", b"")
            await sg.flush()
            try:
                await asyncio.wait_for(sentinel.wait(), 0.2)
            except TimeoutError:
                pass
        await eu.flush()
        leaked = [s for s in received if s in private]
        assert leaked == []
        assert set(received) <= {"cm.gwcast.sg.sentinel"} | {s for s in received if s.startswith("_INBOX.")}
    finally:
        await sg.close()
        await eu.close()


async def test_each_region_keeps_its_own_jetstream(fed: Fed) -> None:
    sg, eu = await fed.client("sg"), await fed.client("eu")
    try:
        await sg.jetstream().add_stream(name="CM_INBOUND", subjects=["cm.in.>"])
        await sg.jetstream().publish("cm.in.http.default", b"x")
        with pytest.raises(NotFoundError):
            await eu.jetstream().stream_info("CM_INBOUND")
        # sg's JetStream API is not reachable from eu, even by its domain.
        with pytest.raises((ServiceUnavailableError, NatsTimeout)):
            await eu.jetstream(domain="sg", timeout=1).stream_info("CM_INBOUND")
        info = await sg.jetstream().stream_info("CM_INBOUND")
        assert info.state.messages == 1
    finally:
        await sg.close()
        await eu.close()


async def test_regions_keep_serving_locally_while_the_hub_is_down_and_reconnect(fed: Fed) -> None:
    sg, eu = await fed.client("sg"), await fed.client("eu")
    try:
        await _answer(sg, "cm.gw.sg.ping", b"sg")
        await _answer(sg, "cm.local.ping", b"local")
        await _eventually("eu → sg", lambda: eu.request("cm.gw.sg.ping", b"", timeout=1))
        leaf_port = fed.hub.leaf_port
        assert leaf_port
        await fed.hub.stop()
        # Local traffic does not need the hub.
        assert (await sg.request("cm.local.ping", b"a", timeout=2)).data == b"local:a"
        with pytest.raises((NoRespondersError, NatsTimeout)):
            await _eventually_down(eu)
        fed.hub = await start_hub(fed.plan, fed.tmp, leaf_port=leaf_port)
        msg = await _eventually(
            "eu → sg after the hub restart", lambda: eu.request("cm.gw.sg.ping", b"", timeout=1), 40
        )
        assert msg.data == b"sg:"
    finally:
        await sg.close()
        await eu.close()


async def _eventually_down(eu: Client) -> None:
    """Requests across stop being answered once the leaf link noticed the hub is gone."""
    deadline = asyncio.get_running_loop().time() + 20
    while asyncio.get_running_loop().time() < deadline:
        await eu.request("cm.gw.sg.ping", b"", timeout=0.5)  # raises once nothing answers
        await asyncio.sleep(0.05)
    raise AssertionError("cross-region requests were still answered 20 s after the hub stopped")


async def test_a_leaf_with_a_wrong_password_is_refused(tmp_path: Path) -> None:
    plan = plan_federation(["sg"], hub_host="127.0.0.1", leaf_port=1)
    hub = await start_hub(plan, tmp_path)
    try:
        assert hub.leaf_port
        bad = dataclasses.replace(
            plan, leaf_port=hub.leaf_port, regions=(dataclasses.replace(plan.regions[0], password="wrong"),)
        )
        region = await NatsServer(
            store_dir=tmp_path / "sg-js",
            work_dir=tmp_path / "sg",
            jetstream_domain="sg",
            config=bad.region_conf("sg"),
        ).start()
        try:
            await wait_until(
                lambda: any("authorization" in line.lower() for line in region.log_tail()),
                timeout=20,
                message="the hub refusing the region's credentials",
            )
        finally:
            await region.stop()
    finally:
        await hub.stop()


async def test_a_remote_turn_streams_several_replies_back_across_the_hub(fed: Fed) -> None:
    """The gateway family is a *stream* service export: a turn's deltas and its final reply
    all reach the caller in another region, in order."""
    import msgspec

    from clawmesh.federation import RemoteDelta, RemoteFinal, RemoteTurn, RemoteTurnFailed, remote_turn

    sg, eu = await fed.client("sg"), await fed.client("eu")
    try:

        async def serve(msg: Msg) -> None:
            turn = msgspec.json.decode(msg.data, type=RemoteTurn)
            for word in turn.text.split():
                await sg.publish(msg.reply, msgspec.json.encode(RemoteDelta(text=word)))
            await sg.publish(
                msg.reply, msgspec.json.encode(RemoteFinal(text=turn.text.upper(), gateway="sg"))
            )

        await sg.subscribe("cm.gw.sg.turn.worker", queue="ingress", cb=serve)
        await sg.flush()
        await _answer(sg, "cm.gw.sg.ping", b"sg")
        await _eventually("eu → sg", lambda: eu.request("cm.gw.sg.ping", b"", timeout=1))
        deltas: list[str] = []

        async def on_delta(text: str) -> None:
            deltas.append(text)

        turn = RemoteTurn(
            from_gateway="eu",
            agent_id="worker",
            session="agent:main:main",
            turn_id="t1",
            text="one two three",
        )
        final = await remote_turn(eu, "cm", "sg", turn, on_delta, idle_timeout=10)
        assert (deltas, final.text, final.gateway) == (["one", "two", "three"], "ONE TWO THREE", "sg")
        # a region nobody serves: the caller is told, with failover allowed
        with pytest.raises(RemoteTurnFailed) as info:
            await remote_turn(eu, "cm", "us", turn, on_delta, idle_timeout=1)
        assert info.value.failover and info.value.code == "GATEWAY_UNREACHABLE"
    finally:
        await sg.close()
        await eu.close()


async def test_a_loop_in_the_topology_is_reported(tmp_path: Path) -> None:
    """A region that joins the hub twice (two remotes for the same account) forms a cycle; the
    server says so and `leaf_status` carries it (ingress shows it in `clawmesh status`)."""
    plan = plan_federation(["sg"], hub_host="127.0.0.1", leaf_port=1)
    hub = await start_hub(plan, tmp_path)
    try:
        assert hub.leaf_port
        plan = dataclasses.replace(plan, leaf_port=hub.leaf_port)
        url = plan.leaf_url("sg")
        # the same hub under two names: nats-server refuses the same URL twice in one config
        other = url.replace("@127.0.0.1:", "@localhost:")
        doubled = f'leafnodes {{ remotes: [ {{ urls: ["{url}"] }}, {{ urls: ["{other}"] }} ] }}'
        region = await NatsServer(
            store_dir=tmp_path / "sg-js", work_dir=tmp_path / "sg", jetstream_domain="sg", config=doubled
        ).start()
        try:
            await wait_until(
                lambda: "loop" in region.leaf_status() or "loop" in hub.leaf_status(),
                timeout=20,
                message="the loop reported in the leaf status",
            )
            report = region.leaf_status().get("loop") or hub.leaf_status().get("loop")
            assert "Duplicate Remote LeafNode Connection" in report or "Loop detected" in report
        finally:
            await region.stop()
    finally:
        await hub.stop()


async def test_leaf_status_counts_links_and_says_why_one_closed(fed: Fed) -> None:
    sg = fed.regions["sg"]
    await wait_until(lambda: sg.leaf_status()["links"] == 1, timeout=20, message="sg's leaf link")
    await fed.hub.stop()
    await wait_until(lambda: sg.leaf_status()["links"] == 0, timeout=40, message="sg's link closed")
    assert "closed" in fed.regions["sg"].leaf_status()["lastClose"]
