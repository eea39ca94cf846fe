"""Agents of two gateways working together across a federation (a hub and two regions as real
nats-servers, a whole gateway per region): `sessions_spawn` and `sessions_send` of
`worker@sg`, both gateways' allow-lists, and a region that drops while its child runs."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from pathlib import Path
from typing import Any

import msgspec
import nats
import pytest

from clawmesh.federation import Catalogue, RemoteFinal, RemoteTurn
from clawmesh.sessions import SessionStore, stop_session
from clawmesh.wire import (
    A2AEvent,
    OutboundMessage,
    Subjects,
    ToolResultEvent,
    TurnError,
    TurnEvent,
    TurnFinal,
    decode,
)
from clawmesh_ingress.turns import turn_id_for
from tests.fakes.models import FakeModelServer, Gate, Text, ToolCall
from tests.fixtures.federation import Federation, federation, linked, remote_asks
from tests.fixtures.gateway import ServiceProcess, run_gateway, wait_until

pytestmark = pytest.mark.asyncio

COMPLETION = "[Internal task completion event]"


def _sg(fake: FakeModelServer, tmp: Path) -> dict[str, Any]:
    return {
        "gateway": {
            "region": "sg",
            "federation": {"exposeAgents": ["worker", "slow"], "catalogSeconds": 0.2},
        },
        "agents": {
            "defaults": {"model": "echo/sg"},
            "list": [
                {"id": "worker", "default": True, "name": "Worker", "workspace": str(tmp / "sg-worker")},
                {"id": "slow", "model": "openai/m-slow", "workspace": str(tmp / "sg-slow")},
                {"id": "private", "workspace": str(tmp / "sg-private")},
            ],
        },
        "models": {"providers": {"openai": {"baseUrl": fake.base_url + "/v1", "apiKey": "sk-test"}}},
        # who of another gateway may reach sg's agents: boss of eu, not intruder
        "tools": {"agentToAgent": {"allow": ["worker", "slow", "boss@eu"]}},
    }


def _eu(fake: FakeModelServer, tmp: Path) -> dict[str, Any]:
    def agent(agent_id: str, **extra: Any) -> dict[str, Any]:
        return {
            "id": agent_id,
            "model": f"openai/m-{agent_id}",
            "workspace": str(tmp / f"eu-{agent_id}"),
            **extra,
        }

    return {
        "gateway": {"region": "eu"},
        "agents": {
            "list": [
                agent("boss", default=True, subagents={"allowAgents": ["worker@sg", "slow@sg"]}),
                agent("intruder", subagents={"allowAgents": ["*@sg"]}),
            ]
        },
        "models": {"providers": {"openai": {"baseUrl": fake.base_url + "/v1", "apiKey": "sk-test"}}},
        "tools": {"agentToAgent": {"allow": ["boss", "intruder", "*@sg"]}},
    }


def _has_key(kv: Any, key: str) -> Any:
    async def check() -> bool:
        try:
            return bool((await kv.get(key)).value)
        except Exception:
            return False

    return check


class _Watch:
    """eu's tool results, finished turns and agent-to-agent events, as the admin sees them."""

    def __init__(self) -> None:
        self.results: list[tuple[str, dict[str, Any]]] = []
        self.finished: set[str] = set()  # turn ids
        self.a2a: list[A2AEvent] = []

    async def start(self, url: str) -> nats.NATS:
        nc = await nats.connect(url)

        async def on_event(msg: Any) -> None:
            event = decode(msg.data, TurnEvent, msg.headers)
            if isinstance(event, ToolResultEvent) and event.name.startswith("sessions_"):
                self.results.append((event.name, json.loads(event.content)))
            elif isinstance(event, TurnFinal):
                self.finished.add(event.turn_id)

        async def on_a2a(msg: Any) -> None:
            self.a2a.append(msgspec.json.decode(msg.data, type=A2AEvent))

        await nc.subscribe("cm.ev.>", cb=on_event)
        await nc.subscribe("cm.a2a.>", cb=on_a2a)
        await nc.flush()
        return nc

    async def result(self, n: int) -> tuple[str, dict[str, Any]]:
        """The n-th tool result (1-based): the events reach this connection on their own path,
        possibly after the turn's HTTP answer."""
        await wait_until(lambda: len(self.results) >= n, message=f"tool result {n}")
        return self.results[n - 1]


async def _sg_heard_long_ago(eu_admin: nats.NATS) -> None:
    """eu stored sg's last catalogue 10 s ago, at a 0.2 s period: sg is gone as eu sees it."""
    last = Catalogue(region="sg", every=0.2, received=time.time() - 10)
    await (await eu_admin.jetstream().key_value("cm_gateways")).put("sg", msgspec.json.encode(last))


async def _say(fed: Federation, text: str, agent: str = "boss") -> str:
    async with fed.gateways["eu"].client(timeout=60) as http:
        r = await http.post("/v1/messages?wait=60", json={"text": text, "agentId": agent})
    assert r.status_code == 200, r.text
    return str(r.json()["text"])


async def test_spawn_and_send_reach_an_agent_of_another_gateway(tmp_path: Path) -> None:
    async with FakeModelServer() as fake:
        fake.script(
            "m-boss",
            ToolCall("sessions_spawn", {"task": "count the stars", "agentId": "worker@sg", "label": "stars"}),
            Text("spawned"),
            Text("the stars are counted"),  # the announce turn
            ToolCall("sessions_send", {"agentId": "worker@sg", "message": "and the moons?"}),
            Text("sent"),
            Text("and the planets?"),  # boss's first ping-pong step: the exchange goes on
            Text("REPLY_SKIP"),  # boss's second: it ends
            ToolCall("sessions_send", {"agentId": "worker@sg", "message": "no wait", "timeoutSeconds": 0}),
            Text("sent unwaited"),
            Text("REPLY_SKIP"),  # the unwaited send's exchange: boss ends it at once
        )
        async with federation(tmp_path, {"sg": _sg(fake, tmp_path), "eu": _eu(fake, tmp_path)}) as fed:
            await linked(fed)
            watch = _Watch()
            nc = await watch.start(fed.url("eu"))
            assert await _say(fed, "spawn one in sg") == "spawned"
            name, spawned = await watch.result(1)
            assert name == "sessions_spawn" and spawned["status"] == "accepted", spawned
            assert spawned["gateway"] == "sg" and spawned["remoteSessionKey"].startswith(
                "agent:worker:gw:eu:"
            )
            assert spawned["childSessionKey"].startswith("agent:boss:subagent:")

            # the child ran on sg, as sg's worker, in the session the result named
            sg_store = fed.gateways["sg"].service("runner").store
            announced = await wait_until(
                lambda: [r for r in fake.requests if r.model == "m-boss" and COMPLETION in r.last_user_text],
                message="the announce turn of the parent",
            )
            assert "status: completed" in announced[0].last_user_text
            assert (
                "echo: " in announced[0].last_user_text and "count the stars" in announced[0].last_user_text
            )
            sg_sessions = [s for s in await sg_store.list_sessions() if s.agent_id == "worker"]
            assert [s.session_key for s in sg_sessions] == [spawned["remoteSessionKey"]]
            assert sg_sessions[0].seq == 1
            # announced exactly once: the announce event came, and one announce turn ran
            await wait_until(
                lambda: any(e.kind == "announce" for e in watch.a2a), message="the announce event"
            )
            record = await fed.gateways["eu"].service("runner").store.get_spawn(spawned["childSessionKey"])
            assert record is not None and record.status == "ok" and record.child_agent_id == "worker@sg"
            assert [e.status for e in watch.a2a if e.kind == "announce"] == ["ok"]
            assert len([r for r in fake.requests if COMPLETION in r.last_user_text]) == 1

            # sessions_send: the reply is the result; timeoutSeconds 0 returns at once
            assert await _say(fed, "ask sg") == "sent"
            name, sent = await watch.result(2)
            assert name == "sessions_send" and sent["status"] == "ok", sent
            assert sent["reply"] == "echo: and the moons?" and sent["gateway"] == "sg"
            # OpenClaw's ping-pong, across the gateways: boss (here), worker (on sg), boss
            run = sent["runId"]
            await wait_until(lambda: f"{run}-3" in watch.finished, message="the exchange's third step")
            step2 = [r for r in fake.requests if r.model == "m-boss"][-1]
            assert step2.last_user_text.startswith("echo: Agent-to-agent reply step:")
            assert "Turn 2 of 5." in step2.last_user_text and "and the planets?" in step2.last_user_text
            assert "Turn 3 of 5." in (step2.system_text or "")
            sends = [
                s for s in await sg_store.list_sessions() if s.session_key != spawned["remoteSessionKey"]
            ]
            assert [(s.agent_id, s.seq) for s in sends if s.agent_id == "worker"] == [("worker", 2)]

            assert await _say(fed, "tell sg") == "sent unwaited"
            name, unwaited = await watch.result(3)
            assert unwaited["status"] == "accepted", unwaited
            # the unwaited message ran on sg too (in the session of boss's session, after the
            # first exchange), and its reply started an exchange here, which boss ended
            await wait_until(
                lambda: f"{unwaited['runId']}-1" in watch.finished, message="the unwaited send's exchange"
            )
            sends = [
                s for s in await sg_store.list_sessions() if s.session_key != spawned["remoteSessionKey"]
            ]
            assert [(s.agent_id, s.seq) for s in sends if s.agent_id == "worker"] == [("worker", 3)]
            assert fake.pending == 0
            await nc.close()


async def test_either_gateway_refuses_with_a_clear_error(tmp_path: Path) -> None:
    async with FakeModelServer() as fake:
        fake.script(
            "m-boss",
            ToolCall("sessions_spawn", {"task": "x", "agentId": "private@sg"}),  # eu: not listed
            ToolCall("sessions_spawn", {"task": "x", "agentId": "private@sg", "label": "p"}),
            Text("done"),
        )
        fake.script(
            "m-intruder",
            ToolCall("sessions_spawn", {"task": "x", "agentId": "worker@sg"}),  # sg: not boss
            ToolCall("sessions_send", {"agentId": "worker@sg", "message": "hi"}),
            ToolCall("sessions_send", {"agentId": "worker@sg", "message": "hi", "timeoutSeconds": 0}),
            ToolCall("agents_list", {}),
            Text("done"),
        )
        sg = _sg(fake, tmp_path)
        async with federation(tmp_path, {"sg": sg, "eu": _eu(fake, tmp_path)}) as fed:
            await linked(fed)
            watch = _Watch()
            nc = await watch.start(fed.url("eu"))
            kv = fed.gateways["eu"].service("runner").ctx.kv["gateways"]
            await wait_until(_has_key(kv, "sg"), message="eu learning sg's catalogue")
            assert await _say(fed, "spawn a private one") == "done"
            for n in (1, 2):
                _, result = await watch.result(n)
                assert result == {
                    "status": "forbidden",
                    "error": "agentId is not allowed for sessions_spawn (allowed: worker@sg, slow@sg)",
                }
            assert await _say(fed, "try sg", agent="intruder") == "done"
            for n in (3, 4, 5):
                _, result = await watch.result(n)
                assert result["status"] == "forbidden", result
                assert result["error"] == (
                    "gateway 'sg' refuses intruder@eu → worker: "
                    "Agent-to-agent messaging denied by tools.agentToAgent.allow."
                )
            # what intruder's allowAgents (`*@sg`) lists of sg's catalogue: the agents sg offers
            # (intruder learns them even though sg's own policy refuses it)
            listed = [
                r.tool_results[-1].content
                for r in fake.requests
                if r.model == "m-intruder" and r.tool_results and "agents" in r.tool_results[-1].content
            ]
            agents = {a["id"]: a for a in json.loads(listed[-1])["agents"]}
            assert set(agents) == {"intruder", "worker@sg", "slow@sg"}, agents
            assert agents["worker@sg"] == {
                "id": "worker@sg",
                "configured": True,
                "gateway": "sg",
                "name": "Worker",
            }
            # nothing ran on sg, and no child was recorded in eu
            assert await fed.gateways["sg"].service("runner").store.list_sessions() == []
            assert await fed.gateways["eu"].service("runner").store.list_spawns() == []
            await nc.close()


async def test_a_region_dropping_while_its_child_runs_fails_the_child_clearly(tmp_path: Path) -> None:
    """sg's child turn is in flight (its model held) when the hub goes: eu's parent gets the
    child announced as failed after eu's `idleTimeoutSeconds` without a word from sg, or sooner
    when sg's catalogue falls silent first, instead of waiting for ever (sg's keep-alives, at
    eu's `keepaliveSeconds`, held it while linked)."""
    held = asyncio.Event()
    async with FakeModelServer() as fake:
        fake.script("m-slow", Gate(held))
        fake.script(
            "m-boss",
            ToolCall("sessions_spawn", {"task": "take your time", "agentId": "slow@sg"}),
            Text("spawned"),
            Text("noted the failure"),
        )
        eu = _eu(fake, tmp_path)
        eu["gateway"]["federation"] = {"keepaliveSeconds": 0.2, "idleTimeoutSeconds": 2}
        async with federation(tmp_path, {"sg": _sg(fake, tmp_path), "eu": eu}) as fed:
            await linked(fed)
            assert await _say(fed, "spawn a slow one") == "spawned"
            await wait_until(
                lambda: any(r.model == "m-slow" for r in fake.requests), message="sg's child turn started"
            )
            await fed.hub.stop()
            announced = await wait_until(
                lambda: [r for r in fake.requests if r.model == "m-boss" and COMPLETION in r.last_user_text],
                message="the parent told of the failure",
            )
            text = announced[0].last_user_text
            # sg's first keep-alive came through before the hub went (then the idle timeout ends
            # it), or not (then eu finds sg's catalogue silent for three of its periods first)
            assert "status: failed:" in text, text
            assert "gateway 'sg' did not answer" in text or "gateway 'sg' has not been heard from" in text, (
                text
            )
            held.set()


async def test_a_repeated_remote_turn_gets_the_outcome_of_the_first(tmp_path: Path) -> None:
    """A caller whose runner died mid-turn asks again with the same turn id (the redelivered
    turn): sg runs the turn once, and both requests get its reply — while it runs or after."""
    async with (
        FakeModelServer() as fake,
        federation(tmp_path, {"sg": _sg(fake, tmp_path), "eu": _eu(fake, tmp_path)}) as fed,
    ):
        await linked(fed)
        nc = await nats.connect(fed.url("eu"))
        turn = RemoteTurn(
            from_gateway="eu",
            agent_id="worker",
            session="agent:boss:subagent:1",
            turn_id="t-once",
            text="only once",
            stream=False,
            from_agent="boss",
            kind="spawn",
            keepalive=0.5,
        )

        async def ask() -> str:
            inbox = nc.new_inbox()
            sub = await nc.subscribe(inbox)
            await nc.publish("cm.gw.sg.turn.worker", msgspec.json.encode(turn), reply=inbox)
            while True:
                event = json.loads((await sub.next_msg(timeout=60)).data)
                if event["type"] != "alive":
                    await sub.unsubscribe()
                    return f"{event['type']}: {event.get('text', event.get('message'))}"

        first, second = await asyncio.gather(ask(), ask())  # the second while the first runs
        third = await ask()  # and once it ran
        assert first == second == third == "final: echo: only once"
        sessions = [
            s
            for s in await fed.gateways["sg"].service("runner").store.list_sessions()
            if s.agent_id == "worker"
        ]
        assert len(sessions) == 1 and sessions[0].seq == 1
        await nc.close()


async def test_a_turn_asked_for_again_is_answered_from_what_sg_kept(tmp_path: Path) -> None:
    """A caller whose turn was delivered again (`again`: its runner died, perhaps minutes ago)
    is answered from the outcome sg kept for the turn id (a day) with one read: no second
    inbound message (past the inbound stream's two-minute dedupe a plain repeat is stored again
    and replayed by sg's runner from its record, while the turn is still in it). A turn sg
    never saw, asked with `again`, runs as usual."""
    async with (
        FakeModelServer() as fake,
        federation(tmp_path, {"sg": _sg(fake, tmp_path), "eu": _eu(fake, tmp_path)}) as fed,
    ):
        await linked(fed)
        nc = await nats.connect(fed.url("eu"))
        sg = await nats.connect(fed.url("sg"))
        inbound = Subjects("cm").stream("INBOUND")

        async def ask(turn_id: str, text: str, *, again: bool) -> str:
            turn = RemoteTurn(
                from_gateway="eu",
                agent_id="worker",
                session="agent:boss:main",
                turn_id=turn_id,
                text=text,
                stream=False,
                again=again,
            )
            msg = await nc.request("cm.gw.sg.turn.worker", msgspec.json.encode(turn), timeout=60)
            event = json.loads(msg.data)
            return f"{event['type']}: {event.get('text', event.get('message'))}"

        assert await ask("t-first", "hello", again=True) == "final: echo: hello"  # never seen: run
        stored = (await sg.jetstream().stream_info(inbound)).state.messages
        counters = fed.gateways["sg"].service("ingress").ctx.counters
        assert counters["remote_turns_answered_again"] == 0

        store = fed.gateways["sg"].service("runner").store
        turn_status = turn_id_for("gateway", "eu", "t-first")  # sg's id of the turn

        async def kept() -> bool:  # the turn status follows the reply
            return await store.get_turn_status(turn_status) is not None

        await wait_until(kept, timeout=10, message="sg's turn status")
        assert await ask("t-first", "hello", again=True) == "final: echo: hello"
        assert (await sg.jetstream().stream_info(inbound)).state.messages == stored
        assert counters["remote_turns_answered_again"] == 1
        sessions = [s for s in await store.list_sessions() if s.agent_id == "worker"]
        assert len(sessions) == 1 and sessions[0].seq == 1
        await nc.close()
        await sg.close()


async def test_stopping_a_remote_child_stops_its_turn_on_the_other_gateway(tmp_path: Path) -> None:
    """eu stops the child it spawned on sg while sg's turn runs (its model held): sg's turn
    ends stopped too, and eu's parent is told the child was stopped."""
    held = asyncio.Event()
    async with FakeModelServer() as fake:
        fake.script("m-slow", Gate(held))
        fake.script(
            "m-boss",
            ToolCall("sessions_spawn", {"task": "take your time", "agentId": "slow@sg"}),
            Text("spawned"),
            Text("noted the stop"),
        )
        async with federation(tmp_path, {"sg": _sg(fake, tmp_path), "eu": _eu(fake, tmp_path)}) as fed:
            await linked(fed)
            watch = _Watch()
            eu = await watch.start(fed.url("eu"))
            sg = await nats.connect(fed.url("sg"))
            sg_errors: list[TurnError] = []

            async def on_sg_event(msg: Any) -> None:
                event = decode(msg.data, TurnEvent, msg.headers)
                if isinstance(event, TurnError):
                    sg_errors.append(event)

            await sg.subscribe("cm.ev.>", cb=on_sg_event)
            await sg.flush()
            assert await _say(fed, "spawn a slow one") == "spawned"
            _, spawned = await watch.result(1)
            await wait_until(
                lambda: any(r.model == "m-slow" for r in fake.requests), message="sg's child turn started"
            )
            js = eu.jetstream()
            subjects = Subjects()
            store = SessionStore(js, subjects, await js.key_value(subjects.bucket("sessions")))
            await stop_session(store, eu.publish, subjects.stop, spawned["childSessionKey"], reason="test")
            stopped = await wait_until(
                lambda: [e for e in sg_errors if e.code == "TURN_STOPPED"], message="sg's turn stopped"
            )
            assert stopped[0].session_key == spawned["remoteSessionKey"]
            announced = await wait_until(
                lambda: [r for r in fake.requests if r.model == "m-boss" and COMPLETION in r.last_user_text],
                message="the parent told of the stop",
            )
            assert "status: failed: stopped" in announced[0].last_user_text, announced[0].last_user_text
            held.set()
            await eu.close()
            await sg.close()


async def test_a_remote_child_kept_as_a_session_takes_follow_ups_in_its_sg_session(tmp_path: Path) -> None:
    """`mode: "session"`: a later sessions_send to the child (by its label) runs on sg again,
    in the same sg session as the spawned run."""
    async with FakeModelServer() as fake:
        fake.script(
            "m-boss",
            ToolCall(
                "sessions_spawn",
                {"task": "remember 7", "agentId": "worker@sg", "label": "helper", "mode": "session"},
            ),
            Text("spawned"),
            Text("noted"),  # the announce turn
            ToolCall("sessions_send", {"label": "helper", "message": "what did I ask?"}),
            Text("asked"),
            Text("REPLY_SKIP"),  # boss's ping-pong turn: the exchange ends
        )
        async with federation(tmp_path, {"sg": _sg(fake, tmp_path), "eu": _eu(fake, tmp_path)}) as fed:
            await linked(fed)
            watch = _Watch()
            nc = await watch.start(fed.url("eu"))
            assert await _say(fed, "spawn a helper") == "spawned"
            _, spawned = await watch.result(1)
            await wait_until(
                lambda: any(r.model == "m-boss" and COMPLETION in r.last_user_text for r in fake.requests),
                message="the announce turn",
            )
            assert await _say(fed, "follow up") == "asked"
            _, sent = await watch.result(2)
            assert sent["status"] == "ok" and sent["sessionKey"] == spawned["childSessionKey"], sent
            assert sent["reply"].startswith("echo: ") and "what did I ask?" in sent["reply"]
            sg_sessions = [
                s
                for s in await fed.gateways["sg"].service("runner").store.list_sessions()
                if s.agent_id == "worker"
            ]
            assert [s.session_key for s in sg_sessions] == [spawned["remoteSessionKey"]]
            assert sg_sessions[0].seq >= 2
            await nc.close()


_WAITED = (  # boss: send and wait, then ping-pong steps 1 and 3; sg: step 0, then step 2 held
    (ToolCall("sessions_send", {"agentId": "slow@sg", "message": "and the moons?"}), Text("sent")),
    (Text("and the planets?"), Text("REPLY_SKIP")),
    2,
)
_UNWAITED = (  # boss: send without waiting, then ping-pong step 1; sg: step 0 held
    (
        ToolCall("sessions_send", {"agentId": "slow@sg", "message": "and the moons?", "timeoutSeconds": 0}),
        Text("sent"),
    ),
    (Text("REPLY_SKIP"),),
    0,
)


@pytest.mark.parametrize("case", [_WAITED, _UNWAITED], ids=["waited, step 2", "unwaited, step 0"])
async def test_a_runner_killed_while_sg_answers_a_step_leaves_it_to_another_runner(
    tmp_path: Path, case: tuple[tuple[Any, ...], tuple[Any, ...], int]
) -> None:
    """A step of a send to `slow@sg` is held on sg when the eu runner asking for it is
    SIGKILLed: its follow-up was not acked (or, unwaited, its first step was stored as a request),
    another eu runner takes it and asks sg again with the same turn id, sg answers that request
    with the one turn it runs, and the exchange goes on to its end."""
    turn, steps, held_step = case
    held = asyncio.Event()
    async with FakeModelServer() as fake:
        fake.script("m-slow", *([Text("slow: the moons")] if held_step else []), Gate(held))
        fake.script("m-boss", *turn, *steps)
        eu = {**_eu(fake, tmp_path), "runtime": {"turnLeaseSeconds": 2}}
        regions = {"sg": _sg(fake, tmp_path), "eu": eu}
        async with (
            federation(tmp_path, regions, services={"eu": ("ingress", "router")}) as fed,
            contextlib.AsyncExitStack() as stack,
        ):
            gw_eu = fed.gateways["eu"]
            runner_url = fed.url("eu", "runner")
            sg_link = fed.gateways["sg"].service("ingress").ctx.counters
            await linked(fed)
            watch = _Watch()
            nc = await watch.start(fed.url("eu"))
            # what sg is asked for `slow`: the second runner's request says it asks again
            asks = await stack.enter_async_context(remote_asks(fed, "slow"))
            first = ServiceProcess(
                "runner", gw_eu.config_path, runner_url, gw_eu.env, tmp_path / "runner.log"
            )
            asked = 1 + held_step // 2  # requests sg served before the held one: step 0 (and 2)
            try:
                assert await _say(fed, "ask the slow one") == "sent"
                _, sent = await watch.result(1)
                assert sent["status"] == ("ok" if held_step else "accepted"), sent
                await wait_until(lambda: sg_link["remote_turns"] == asked, message="the held step asked")
                await wait_until(lambda: any(isinstance(r.step, Gate) for r in fake.requests), message="held")
                (tmp_path / "second").mkdir()
                async with run_gateway(
                    gw_eu.nats_url, eu, tmp_path / "second", services=("runner",), urls={"runner": runner_url}
                ):
                    first.kill()  # its follow-up is left unacked
                    await wait_until(
                        lambda: sg_link["remote_turns"] == asked + 1, message="the second runner asking sg"
                    )
                    held.set()
                    last = f"{sent['runId']}-{len(steps) * 2 - 1}"
                    await wait_until(lambda: last in watch.finished, message="the exchange's last step")
            finally:
                first.kill()
            slow = [
                s
                for s in await fed.gateways["sg"].service("runner").store.list_sessions()
                if s.agent_id == "slow"
            ]
            assert [s.seq for s in slow] == [held_step // 2 + 1]  # each step sg was asked, run once
            assert sum(r.model == "m-slow" for r in fake.requests) == held_step // 2 + 1
            held_text = [r for r in fake.requests if r.model == "m-slow"][-1].last_user_text
            if held_step:
                assert "Turn 2 of 5." in held_text and "and the planets?" in held_text
            else:
                assert held_text == "and the moons?"
            after = [r for r in fake.requests if r.model == "m-boss"][-1]
            assert after.last_user_text == "pong from fake"  # the held step's reply, once
            assert f"Turn {held_step + 1} of 5." in (after.system_text or "")
            assert fake.pending == 0
            assert [a.again for a in asks[-2:]] == [False, True], asks
            assert asks[-1].turn_id == asks[-2].turn_id
            await nc.close()


async def test_a_spawn_on_a_region_known_to_be_gone_is_refused_at_once(tmp_path: Path) -> None:
    """sg's last catalogue reached eu long ago (three of its periods): asking sg whether it would
    take the child ends at eu's first lookup of sg, and the tool says sg is gone, instead of the
    probe waiting its 10 s for an answer that cannot come."""
    async with FakeModelServer() as fake:
        fake.script(
            "m-boss", ToolCall("sessions_spawn", {"task": "hello?", "agentId": "worker@sg"}), Text("noted")
        )
        async with federation(tmp_path, {"sg": None, "eu": _eu(fake, tmp_path)}) as fed:
            admin = await nats.connect(fed.url("eu"))
            await _sg_heard_long_ago(admin)
            watch = _Watch()
            nc = await watch.start(fed.url("eu"))
            assert await _say(fed, "spawn one on sg") == "noted"
            name, result = await watch.result(1)
            assert name == "sessions_spawn" and result["status"] == "error", result
            assert "gateway 'sg' has not been heard from" in result["error"], result
            await nc.close()
            await admin.close()


async def test_a_send_whose_region_goes_silent_after_the_probe_ends_within_seconds(tmp_path: Path) -> None:
    """An unwaited `sessions_send` of `worker@sg`: sg answers the probe, then nothing (it is gone
    by the time the exchange's first step asks; its last catalogue reached eu long ago). The step
    ends at eu's first lookup of sg, its reply the failure, instead of after eu's minute of
    `idleTimeoutSeconds`."""
    async with FakeModelServer() as fake:
        fake.script(
            "m-boss",
            ToolCall(
                "sessions_send", {"agentId": "worker@sg", "message": "still there?", "timeoutSeconds": 0}
            ),
            Text("sent"),
        )
        eu = _eu(fake, tmp_path)
        eu["gateway"]["federation"] = {"idleTimeoutSeconds": 60, "keepaliveSeconds": 5}
        async with federation(tmp_path, {"sg": None, "eu": eu}) as fed:
            asked: list[RemoteTurn] = []
            sg = await nats.connect(fed.url("sg"))

            async def sg_link(msg: Any) -> None:  # answers the probe only
                ask = msgspec.json.decode(msg.data, type=RemoteTurn)
                asked.append(ask)
                if ask.probe:
                    await msg.respond(msgspec.json.encode(RemoteFinal(text="", gateway="sg")))

            await sg.subscribe("cm.gw.sg.turn.*", cb=sg_link)
            await sg.flush()
            admin = await nats.connect(fed.url("eu"))
            steps: list[OutboundMessage] = []

            async def on_step(msg: Any) -> None:
                steps.append(decode(msg.data, OutboundMessage, msg.headers))

            await admin.subscribe("cm.out.a2a.>", cb=on_step)
            await admin.flush()
            await linked(fed)  # the fake answers the probe once sg's interest crossed the hub
            asked.clear()
            await _sg_heard_long_ago(admin)
            watch = _Watch()
            nc = await watch.start(fed.url("eu"))
            assert await _say(fed, "tell sg") == "sent"
            _, sent = await watch.result(1)
            assert sent["status"] == "accepted", sent
            # within eu's first lookups of sg, well inside its 60 s idle timeout
            failed = await wait_until(
                lambda: [s for s in steps if s.turn_id == f"{sent['runId']}-0"],
                timeout=20,
                message="the first step's reply",
            )
            assert failed[0].is_error and "gateway 'sg' has not been heard from" in failed[0].text, failed
            assert [a.probe for a in asked] == [True, False]  # the probe, then the step sg never answered
            for c in (sg, admin, nc):
                await c.close()
