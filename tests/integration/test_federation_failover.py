"""Cross-region failover: eu's runner is killed, so the turns of an agent it lets run elsewhere
(`gateway.federation.failover`) are served by sg and the replies come back; when a runner of eu
is up again, eu serves them itself, with no reconfiguration. A hub and two regions as real
nats-servers, each service with its own NATS user."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import httpx
import msgspec
import nats
import pytest

from clawmesh.federation import Catalogue
from clawmesh.sessions import TxUser
from clawmesh.wire import OutboundMessage, decode
from tests.chaos.checker import read_stream
from tests.fakes.models import FakeModelServer, Gate, Text
from tests.fixtures.federation import Federation, federation, linked, remote_asks
from tests.fixtures.gateway import Gateway, ServiceProcess, run_gateway, wait_until
from tests.fixtures.sse import sse_events

pytestmark = pytest.mark.asyncio


def _configs(fake: FakeModelServer, tmp: Path) -> dict[str, dict[str, Any]]:
    models = {"providers": {"openai": {"baseUrl": fake.base_url + "/v1", "apiKey": "sk-test"}}}

    def region(name: str, federation: dict[str, Any]) -> dict[str, Any]:
        main = {
            "id": "main",
            "default": True,
            "model": f"openai/m-{name}",
            "workspace": str(tmp / f"{name}-ws"),
        }
        return {
            "gateway": {"region": name, "federation": federation},
            "agents": {"list": [main]},
            "models": models,
        }

    return {
        "sg": region("sg", {"exposeAgents": ["main"]}),
        "eu": region("eu", {"failover": {"region": "sg", "agents": ["main"]}}),
    }


async def _say(http: httpx.AsyncClient, text: str) -> dict[str, Any]:
    r = await http.post("/v1/messages?wait=30", json={"text": text, "peer": {"kind": "direct", "id": "pat"}})
    assert r.status_code == 200, r.text
    return dict(r.json())


async def test_a_region_whose_runner_is_killed_is_served_by_another_and_takes_its_turns_back(
    tmp_path: Path,
) -> None:
    async with FakeModelServer() as fake:
        fake.script("m-sg", Text("from sg"), Text("from sg, again"))
        fake.script("m-eu", Text("from eu"), Text("from eu, back"))
        configs = _configs(fake, tmp_path)
        async with federation(tmp_path, configs, services={"eu": ("ingress", "router")}) as fed:
            await linked(fed, "main")
            eu = fed.gateways["eu"]
            router = eu.service("router")
            runner_url = fed.url("eu", "runner")
            nc = await nats.connect(fed.url("eu"))
            runner = ServiceProcess("runner", eu.config_path, runner_url, eu.env, tmp_path / "runner.log")
            try:
                async with eu.client(timeout=60) as http:
                    # eu's runner serves eu's turns
                    await wait_until(router.failover.runners_alive, message="eu's runner up")
                    hi = await _say(http, "hi")
                    assert hi["text"] == "from eu"
                    # its runner killed once that turn is over (the turn status follows the
                    # reply; killed before, the session waits for eu's next runner, as the
                    # next test shows): sg's copy of the agent answers, in a session of its
                    # own for this one, which the next message continues
                    await wait_until(lambda: router.store.get_turn_status(hi["turnId"]), message="turn over")
                    runner.kill()
                    await wait_until(
                        lambda: _not(router.failover.runners_alive), message="eu's router missing its runner"
                    )
                    first = await _say(http, "hello")
                    second = await _say(http, "and again")
                    assert (first["text"], second["text"]) == ("from sg", "from sg, again")
                    assert first["sessionKey"] == second["sessionKey"] == "agent:main:main"
                    sg_store = fed.gateways["sg"].service("runner").store
                    sg_sessions = await sg_store.list_sessions()
                    assert [(s.session_key.startswith("agent:main:gw:eu:"), s.seq) for s in sg_sessions] == [
                        (True, 2)
                    ]
                    sg_history = await sg_store.history("main", sg_sessions[0].session_key)
                    assert [e.text for e in sg_history if isinstance(e, TxUser)] == ["hello", "and again"]
                    # the replies are where eu's replies go (its chat channels deliver from there), once
                    replies = [
                        decode(m.data, OutboundMessage) for m in await read_stream(nc.jetstream(), "cm.out.>")
                    ]
                    assert [(r.turn_id, r.text) for r in replies[1:]] == [
                        (first["turnId"], "from sg"),
                        (second["turnId"], "from sg, again"),
                    ]
                    status = await router.store.get_turn_status(first["turnId"])
                    assert status is not None and (status.state, status.text) == ("done", "from sg")

                    # a runner of eu is back: eu serves its turns again, no reconfiguration
                    async with _eu_runner(fed, configs["eu"], tmp_path):
                        await wait_until(
                            router.failover.runners_alive, message="eu's router seeing its runner"
                        )
                        assert (await _say(http, "back home?"))["text"] == "from eu, back"
                        assert sum(r.model == "m-sg" for r in fake.requests) == 2
                        eu_history = await router.store.history("main", "agent:main:main")
                        # the failed-over turns live in sg's session, not in eu's transcript
                        assert [e.text for e in eu_history if isinstance(e, TxUser)] == ["hi", "back home?"]
            finally:
                runner.kill()
                await nc.close()
            assert fake.pending == 0


async def test_a_failed_over_answer_reaches_its_caller_before_this_region_stores_it(tmp_path: Path) -> None:
    """sg recorded the answer and keeps it under the turn's id, so eu's router tells the caller
    without waiting for the reply to be stored in eu's CM_OUTBOUND (held back here). That store
    then fails: the message comes back after the ack wait, sg is asked again and answers from
    what it kept, without running the turn again; the reply is stored once, then the status."""
    async with FakeModelServer() as fake:
        fake.script("m-sg", Text("from sg"))
        configs = _configs(fake, tmp_path)
        configs["eu"] = _eu_config(configs, turnLeaseSeconds=3)
        async with (
            federation(tmp_path, configs, services={"eu": ("ingress", "router")}) as fed,
            remote_asks(fed, "main") as asks,
        ):
            await linked(fed, "main")
            router = fed.gateways["eu"].service("router")
            publish = router.ctx.publish
            held, release = asyncio.Event(), asyncio.Event()

            async def held_back(subject: str, *args: Any, **kwargs: Any) -> Any:
                if subject.startswith("cm.out.") and not held.is_set():
                    held.set()
                    await release.wait()
                    raise ConnectionError("the reply could not be stored (test)")
                return await publish(subject, *args, **kwargs)

            router.ctx.publish = held_back
            async with fed.gateways["eu"].client(timeout=60) as http:
                asking = asyncio.create_task(_say(http, "hello"))
                await wait_until(asking.done, message="the answer while eu's reply is held back")
            answer = asking.result()
            assert answer["text"] == "from sg"
            assert held.is_set() and await router.store.get_turn_status(answer["turnId"]) is None
            release.set()
            status = await wait_until(
                lambda: router.store.get_turn_status(answer["turnId"]), message="the turn status"
            )
            assert (status.state, status.text) == ("done", "from sg")
            nc = await nats.connect(fed.url("eu"))
            replies = [decode(m.data, OutboundMessage) for m in await read_stream(nc.jetstream(), "cm.out.>")]
            assert [(r.turn_id, r.text) for r in replies] == [(answer["turnId"], "from sg")]
            await nc.close()
            assert [a.again for a in asks if a.turn_id == answer["turnId"]] == [False, True]
        assert sum(r.model == "m-sg" for r in fake.requests) == 1  # asked again, not run again
        assert fake.pending == 0


async def test_a_failed_over_answer_is_told_before_it_is_stored_an_error_made_here_after(
    tmp_path: Path,
) -> None:
    """The order eu's router publishes in (one connection: a subscriber sees it in order): sg's
    answer to the caller before the reply in CM_OUTBOUND; sg's refusal (an error made in eu,
    which asked again might not recur) only after it."""
    async with FakeModelServer() as fake:
        fake.script("m-sg", Text("from sg"))
        configs = _configs(fake, tmp_path)
        configs["eu"]["agents"]["list"].append({"id": "hidden", "model": "openai/m-eu"})
        configs["eu"]["gateway"]["federation"]["failover"]["agents"] = ["main", "hidden"]
        configs["sg"]["agents"]["list"].append({"id": "hidden", "model": "openai/m-sg"})  # not exposed
        async with federation(tmp_path, configs, services={"eu": ("ingress", "router")}) as fed:
            await linked(fed, "main")
            tap = await nats.connect(fed.url("eu"))
            order: list[tuple[str, str]] = []  # ("told" | "stored", turn id)

            async def on_msg(msg: Any) -> None:
                item = msgspec.json.decode(msg.data)
                if item.get("type") in ("final", "error", "outbound"):
                    order.append(("stored" if msg.subject.startswith("cm.out.") else "told", item["turnId"]))

            await tap.subscribe("cm.reply.>", cb=on_msg)
            await tap.subscribe("cm.out.>", cb=on_msg)
            await tap.flush()
            async with fed.gateways["eu"].client(timeout=60) as http:
                answered = await _say(http, "hello")
                refused = await http.post("/v1/messages?wait=30", json={"text": "psst", "agentId": "hidden"})
            assert refused.status_code == 502 and "offers no agent 'hidden'" in refused.text, refused.text
            ok, bad = answered["turnId"], refused.json()["error"]["turnId"]
            await wait_until(lambda: len(order) == 4, message="both turns told and stored")
            assert order == [("told", ok), ("stored", ok), ("stored", bad), ("told", bad)], order
            await tap.close()
        assert fake.pending == 0


async def _not(check: Any) -> bool:
    return not await check()


async def test_a_session_served_elsewhere_stays_there_until_its_turn_in_flight_is_answered(
    tmp_path: Path,
) -> None:
    """eu has no runner; sg holds the session's first turn; a runner of eu comes up meanwhile.
    The session's next message still goes to sg, after the first (a runner here would answer it
    before the first's reply); once nothing of the session is in flight, eu serves it again."""
    held = asyncio.Event()
    async with FakeModelServer() as fake:
        fake.script("m-sg", Gate(held), Text("second, from sg"))
        fake.script("m-eu", Text("third, from eu"))
        configs = _configs(fake, tmp_path)
        async with federation(tmp_path, configs, services={"eu": ("ingress", "router")}) as fed:
            await linked(fed, "main")
            eu = fed.gateways["eu"]
            router = eu.service("router")
            async with eu.client(timeout=60) as http:
                first = asyncio.create_task(_say(http, "one"))
                await wait_until(
                    lambda: any(r.model == "m-sg" for r in fake.requests), message="sg holding it"
                )
                async with _eu_runner(fed, configs["eu"], tmp_path):
                    await wait_until(router.failover.runners_alive, message="eu's router seeing its runner")
                    second = asyncio.create_task(_say(http, "two"))
                    await wait_until(lambda: router.failover.busy("agent:main:main"), message="in flight")
                    assert not second.done() and not any(r.model == "m-eu" for r in fake.requests)
                    held.set()
                    assert (await first)["text"] == "pong from fake"
                    assert (await second)["text"] == "second, from sg"
                    await wait_until(
                        lambda: not router.failover.busy("agent:main:main"), message="done there"
                    )
                    assert (await _say(http, "three"))["text"] == "third, from eu"
            assert [r.model for r in fake.requests if r.model in ("m-sg", "m-eu")] == ["m-sg", "m-sg", "m-eu"]
            assert fake.pending == 0


def _eu_config(configs: dict[str, dict[str, Any]], **runtime: Any) -> dict[str, Any]:
    return {**configs["eu"], "runtime": runtime} if runtime else configs["eu"]


def _eu_runner(fed: Federation, config: dict[str, Any], tmp: Path) -> AbstractAsyncContextManager[Gateway]:
    """A runner of eu started in this process (the one it had is gone, or it never had one)."""
    home = tmp / "eu-runner"
    home.mkdir()
    urls = {"runner": fed.url("eu", "runner")}
    return run_gateway(fed.gateways["eu"].nats_url, config, home, services=("runner",), urls=urls)


@contextlib.asynccontextmanager
async def _sg_gone(
    tmp: Path, *, known_gone: bool = False, **runtime: Any
) -> AsyncIterator[tuple[dict[str, Any], Federation, Counter[str]]]:
    """eu without a runner, sg without a gateway (a region that is gone); eu's model answers
    "the first", then "the second". Yields eu's config, the federation, eu's router's counters.
    Over a leaf link nobody answers "no responders" for a region that is gone: a try ends when
    it has been quiet for the idle timeout (1 s here), or — `known_gone`: eu's ingress stored
    sg's last catalogue long ago — at eu's first lookup of sg (a second; the idle timeout is a
    minute then, longer than the tests wait)."""
    async with FakeModelServer() as fake:
        fake.script("m-eu", Text("the first"), Text("the second"))
        configs = _configs(fake, tmp)
        idle = 60 if known_gone else 1
        configs["eu"]["gateway"]["federation"].update(keepaliveSeconds=0.2, idleTimeoutSeconds=idle)
        config = _eu_config(configs, **runtime)
        async with federation(tmp, {"sg": None, "eu": config}, services={"eu": ("ingress", "router")}) as fed:
            if known_gone:
                admin = await nats.connect(fed.url("eu"))
                last = Catalogue(region="sg", every=0.2, received=time.time() - 10)
                await (await admin.jetstream().key_value("cm_gateways")).put("sg", msgspec.json.encode(last))
                await admin.close()
            counters = fed.gateways["eu"].service("router").ctx.counters
            yield config, fed, counters
            assert counters["dead_letters"] == 0 and counters["failed_over"] == 0
        assert fake.pending == 0


async def test_a_message_that_cannot_fail_over_either_is_answered_here_in_order_when_a_runner_is_back(
    tmp_path: Path,
) -> None:
    """eu has no runner and sg no gateway: the session's first message is tried on sg, stays in
    progress, its second waits behind it; a runner of eu comes up: both are sent home and
    answered by eu in their order, nothing lost, nothing dead-lettered."""
    async with _sg_gone(tmp_path) as (config, fed, counters), fed.gateways["eu"].client(timeout=60) as http:
        first = asyncio.create_task(_say(http, "one"))
        await wait_until(lambda: counters["failover_unreachable"] >= 1, message="sg tried")
        second = asyncio.create_task(_say(http, "two"))
        await wait_until(lambda: counters["failover_unreachable"] >= 2, message="sg tried again")
        assert not first.done() and not second.done()
        async with _eu_runner(fed, config, tmp_path):
            one, two = await first, await second
        assert (one["text"], two["text"]) == ("the first", "the second")
        assert counters["failover_sent_home"] >= 2
        history = await fed.gateways["eu"].service("router").store.history("main", "agent:main:main")
        assert [e.text for e in history if isinstance(e, TxUser)] == ["one", "two"]


@pytest.mark.parametrize("known_gone", [False, True], ids=["sg never heard of", "sg known to be gone"])
async def test_a_message_sg_never_answers_is_sent_home_after_its_tries_and_waits_for_a_runner(
    tmp_path: Path, known_gone: bool
) -> None:
    """eu has no runner and sg no gateway, for longer than `runtime.maxDeliveries` tries: the
    message is routed in eu (queued for its runners, not dead-lettered); the session's next
    message queues behind it without trying sg; a runner of eu answers both, in order. With sg
    known to be gone, each try ends at the router's first lookup of sg, not after the idle
    timeout (a minute, longer than this test waits)."""
    async with (
        _sg_gone(tmp_path, known_gone=known_gone, maxDeliveries=2) as (config, fed, counters),
        fed.gateways["eu"].client(timeout=60) as http,
    ):
        first = asyncio.create_task(_say(http, "one"))
        await wait_until(lambda: counters["routed"] >= 1, message="the first routed in eu")
        assert (counters["failover_unreachable"], counters["failover_sent_home"]) == (2, 1)
        second = asyncio.create_task(_say(http, "two"))
        await wait_until(lambda: counters["routed"] >= 2, message="the second routed in eu")
        assert counters["failover_unreachable"] == 2  # sg not tried for it
        assert not first.done() and not second.done()
        async with _eu_runner(fed, config, tmp_path):
            one, two = await first, await second
        assert (one["text"], two["text"]) == ("the first", "the second")


async def test_a_session_with_a_turn_waiting_here_is_not_failed_over(tmp_path: Path) -> None:
    """eu's runner dies in the middle of a turn, which stays in CM_TURNS for the next runner of
    eu. The session's next message must not be answered by sg before it: it queues behind it
    here, and a new runner of eu answers both, in order. (Other sessions still fail over.)"""
    held = asyncio.Event()
    async with FakeModelServer() as fake:
        fake.script("m-eu", Gate(held), Text("one, from eu"), Text("two, from eu"))
        configs = _configs(fake, tmp_path)
        configs["eu"] = _eu_config(configs, turnLeaseSeconds=3)
        async with federation(tmp_path, configs, services={"eu": ("ingress", "router")}) as fed:
            await linked(fed, "main")
            eu = fed.gateways["eu"]
            router = eu.service("router")
            runner_url = fed.url("eu", "runner")
            runner = ServiceProcess("runner", eu.config_path, runner_url, eu.env, tmp_path / "runner.log")
            try:
                async with eu.client(timeout=60) as http:
                    await wait_until(router.failover.runners_alive, message="eu's runner up")
                    first = asyncio.create_task(_say(http, "one"))
                    await wait_until(lambda: any(r.model == "m-eu" for r in fake.requests), message="held")
                    runner.kill()  # in the middle of the session's turn
                    await wait_until(
                        lambda: _not(router.failover.runners_alive), message="eu's router missing its runner"
                    )
                    second = asyncio.create_task(_say(http, "two"))
                    await wait_until(lambda: router.ctx.counters["routed"] >= 2, message="two routed here")
                    async with _eu_runner(fed, configs["eu"], tmp_path):
                        one, two = await first, await second
                    assert (one["text"], two["text"]) == ("one, from eu", "two, from eu")
                    assert not any(r.model == "m-sg" for r in fake.requests)
                    assert router.ctx.counters["failed_over"] == 0
            finally:
                held.set()
                runner.kill()
            assert fake.pending == 0


async def test_a_router_killed_while_sg_serves_a_turn_leaves_it_to_the_next_one_which_gets_it_once(
    tmp_path: Path,
) -> None:
    """eu's router (a real process) is SIGKILLed while sg holds the turn it failed over; the
    next router takes the unacked message and asks sg again with the same turn id: sg's model
    runs once, the caller gets the reply, eu's CM_OUTBOUND holds it once."""
    held = asyncio.Event()
    async with FakeModelServer() as fake:
        fake.script("m-sg", Gate(held))
        configs = _configs(fake, tmp_path)
        configs["eu"] = _eu_config(configs, turnLeaseSeconds=3)
        async with (
            federation(tmp_path, configs, services={"eu": ("ingress",)}) as fed,
            contextlib.AsyncExitStack() as stack,
        ):
            await linked(fed, "main")
            eu = fed.gateways["eu"]
            url = fed.url("eu", "router")
            first = ServiceProcess("router", eu.config_path, url, eu.env, tmp_path / "router-1.log")
            second: ServiceProcess | None = None
            nc = await nats.connect(fed.url("eu"))
            js = nc.jetstream()
            # what sg is asked: the next router's request says it asks again
            asks = await stack.enter_async_context(remote_asks(fed, "main"))
            try:
                async with eu.client(timeout=60) as http:
                    asked = asyncio.create_task(_say(http, "hello"))
                    await wait_until(
                        lambda: any(r.model == "m-sg" for r in fake.requests), message="sg holding it"
                    )
                    first.kill()
                    second = ServiceProcess("router", eu.config_path, url, eu.env, tmp_path / "router-2.log")

                    async def redelivered() -> bool:
                        info = await js.consumer_info("CM_INBOUND", "router")
                        return bool(info.num_redelivered)

                    await wait_until(redelivered, timeout=30, message="the message given to the next router")
                    held.set()
                    answer = await asked
                assert answer["text"] == "pong from fake"
                assert sum(r.model == "m-sg" for r in fake.requests) == 1
                replies = [decode(m.data, OutboundMessage) for m in await read_stream(js, "cm.out.>")]
                assert [(r.turn_id, r.text) for r in replies] == [(answer["turnId"], "pong from fake")]
                assert [(a.turn_id, a.again) for a in asks if a.turn_id != "probe"] == [
                    (answer["turnId"], False),
                    (answer["turnId"], True),
                ]
            finally:
                held.set()
                first.kill()
                if second is not None:
                    second.kill()
                await nc.close()
            assert fake.pending == 0


async def test_a_failed_over_turn_streams_its_deltas_to_the_caller(tmp_path: Path) -> None:
    async with FakeModelServer() as fake:
        fake.script("m-sg", Text("streamed from sg, in parts", chunks=5))
        configs = _configs(fake, tmp_path)
        async with federation(tmp_path, configs, services={"eu": ("ingress", "router")}) as fed:
            await linked(fed, "main")
            async with fed.gateways["eu"].client(timeout=60) as http:
                r = await http.post(
                    "/v1/messages",
                    json={"text": "stream it", "peer": {"kind": "direct", "id": "pat"}},
                    headers={"Accept": "text/event-stream"},
                )
            assert r.status_code == 200
            events = sse_events(r.text)
            names = [name for name, _ in events]
            assert names[0] == "route" and names[-1] == "final" and "delta" in names, names
            streamed = "".join(data["text"] for name, data in events if name == "delta")
            assert streamed == events[-1][1]["text"] == "streamed from sg, in parts"
            assert fake.pending == 0
