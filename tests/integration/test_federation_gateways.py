"""Two whole gateways in two regions of a federation (a hub and leaf nodes, real
nats-servers, each service with its own NATS user): an agent of one gateway runs on the other
(`runnerType: openclawx` + `openclawx.gateway`), only what a region exposes is served, and each
region learns the other's catalogue."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import nats
import pytest
import pytest_asyncio

from clawmesh.federation import Catalogue
from clawmesh.wire import (
    ToolInvocation,
    ToolInvocationResult,
    ToolOutputChunk,
    ToolResultEvent,
    TurnEvent,
    TurnFinal,
    decode,
    encode_json,
)
from tests.fakes.models import FakeModelServer, Gate, Text, ToolCall
from tests.fixtures.federation import federation, linked
from tests.fixtures.gateway import Gateway, wait_until
from tests.fixtures.sse import sse_events

pytestmark = pytest.mark.asyncio

SG_CONFIG: dict[str, Any] = {
    "gateway": {"region": "sg", "federation": {"exposeAgents": ["worker"], "catalogSeconds": 0.2}},
    "agents": {
        "defaults": {"model": "echo/sg"},
        "list": [{"id": "worker", "default": True, "name": "Worker in Singapore"}, {"id": "private"}],
    },
}
EU_CONFIG: dict[str, Any] = {
    "gateway": {"region": "eu", "federation": {"catalogSeconds": 0.2}},
    "session": {"dmScope": "per-peer"},  # each eu user a session of their own
    "agents": {
        "defaults": {"model": "echo/eu"},
        "list": [
            {"id": "main", "default": True},
            {"id": "far", "runnerType": "openclawx", "openclawx": {"gateway": "sg", "agentId": "worker"}},
            {"id": "peek", "runnerType": "openclawx", "openclawx": {"gateway": "sg", "agentId": "private"}},
            {"id": "nowhere", "runnerType": "openclawx", "openclawx": {"gateway": "us", "agentId": "worker"}},
        ],
    },
}


@dataclasses.dataclass
class Regions:
    sg: Gateway
    eu: Gateway


@pytest_asyncio.fixture
async def regions(tmp_path: Path) -> AsyncIterator[Regions]:
    async with federation(tmp_path, {"sg": SG_CONFIG, "eu": EU_CONFIG}) as fed:
        yield Regions(sg=fed.gateways["sg"], eu=fed.gateways["eu"])


async def _ask(gw: Gateway, agent: str, text: str, peer: str = "u1") -> list[tuple[str, dict[str, Any]]]:
    async with gw.client(timeout=60) as http:
        r = await http.post(
            "/v1/messages",
            json={"text": text, "agentId": agent, "peer": {"kind": "direct", "id": peer}},
            headers={"Accept": "text/event-stream"},
        )
    assert r.status_code == 200, r.text
    return sse_events(r.text)


async def _ask_until_linked(gw: Gateway, agent: str, text: str) -> list[tuple[str, dict[str, Any]]]:
    """The first turns may find the leaf links still forming: retried until a reply comes."""
    deadline = asyncio.get_running_loop().time() + 30
    while True:
        events = await _ask(gw, agent, text)
        if events[-1][0] == "final" or asyncio.get_running_loop().time() > deadline:
            return events


async def test_an_agent_of_another_region_answers_in_that_region(regions: Regions) -> None:
    first = await _ask_until_linked(regions.eu, "far", "hello from europe")
    assert first[-1][0] == "final", first
    assert first[-1][1]["text"] == "echo: hello from europe"  # sg's echo model answered
    assert "".join(d["text"] for e, d in first if e == "delta") == "echo: hello from europe"
    second = await _ask(regions.eu, "far", "once more")
    assert second[-1][1]["text"] == "echo: once more"
    # sg ran both turns in one session of its agent `worker`, kept for eu's session
    sessions = [s for s in await regions.sg.service("runner").store.list_sessions() if s.agent_id == "worker"]
    assert (
        len(sessions) == 1
        and sessions[0].seq == 2
        and sessions[0].session_key.startswith("agent:worker:gw:eu:")
    )
    # another eu session (another user, per-peer DMs) gets another sg session
    await _ask(regions.eu, "far", "me too", peer="u2")
    sessions = [s for s in await regions.sg.service("runner").store.list_sessions() if s.agent_id == "worker"]
    assert len(sessions) == 2


async def test_only_exposed_agents_are_served_to_other_regions(regions: Regions) -> None:
    await _ask_until_linked(regions.eu, "far", "warm up")
    refused = await _ask(regions.eu, "peek", "let me in")
    assert refused[-1][0] == "error", refused
    assert "offers no agent 'private'" in refused[-1][1]["message"]
    sessions = [
        s for s in await regions.sg.service("runner").store.list_sessions() if s.agent_id == "private"
    ]
    assert sessions == []


async def test_a_region_nobody_serves_fails_the_turn_clearly(regions: Regions) -> None:
    events = await _ask(regions.eu, "nowhere", "anyone?")
    assert events[-1][0] == "error", events
    assert "gateway us" in events[-1][1]["message"]


async def test_each_region_learns_the_others_catalogue(regions: Regions) -> None:
    kv = regions.eu.service("ingress").ctx.kv["gateways"]

    async def stored() -> Any:
        try:
            return await kv.get("sg")
        except Exception:
            return None

    entry = await wait_until(stored, timeout=30, message="eu storing sg's catalogue")
    cat = msgspec.json.decode(entry.value or b"{}")
    assert cat["region"] == "sg"
    agents = {a["id"]: a for a in cat["agents"]}
    assert agents["worker"]["exposed"] is True and agents["worker"]["name"] == "Worker in Singapore"
    assert agents["private"].get("exposed", False) is False


async def test_sessions_send_reaches_an_agent_of_another_region(tmp_path: Path) -> None:
    """`sessions_send` with `agentId: "worker@sg"`: the message runs on sg's agent and its reply
    is the tool result in eu (then the exchange's first step here, which ends it); a pair that
    eu's tools.agentToAgent does not allow is refused."""
    ask = (
        ToolCall("sessions_send", {"agentId": "worker@sg", "message": "what is 6*7?"}),
        Text("sg answered"),
        Text("REPLY_SKIP"),  # asker's ping-pong step after sg's reply
    )
    async with FakeModelServer() as fake:
        fake.script("m-asker", *ask)
        eu = {
            "gateway": {"region": "eu"},
            "agents": {
                "list": [
                    {
                        "id": "asker",
                        "default": True,
                        "model": "openai/m-asker",
                        "workspace": str(tmp_path / "ws"),
                    }
                ]
            },
            "models": {"providers": {"openai": {"baseUrl": fake.base_url + "/v1", "apiKey": "sk-test"}}},
            "tools": {"agentToAgent": {"enabled": True, "allow": ["asker", "worker@sg"]}},
        }
        async with federation(tmp_path, {"sg": SG_CONFIG, "eu": eu}) as fed:
            gw = fed.gateways["eu"]
            nc = await nats.connect(fed.url("eu"))
            results: list[dict[str, Any]] = []
            finished: set[str] = set()

            async def on_event(msg: Any) -> None:
                event = decode(msg.data, TurnEvent, msg.headers)
                if isinstance(event, ToolResultEvent) and event.name == "sessions_send":
                    results.append(json.loads(event.content))
                elif isinstance(event, TurnFinal):
                    finished.add(event.turn_id)

            await nc.subscribe("cm.ev.>", cb=on_event)
            await nc.flush()
            # the leaf links may still be forming: the first send is retried until it is answered
            deadline = asyncio.get_running_loop().time() + 30
            async with gw.client(timeout=60) as http:
                r = await http.post("/v1/messages?wait=60", json={"text": "ask sg"})
                assert r.status_code == 200, r.text
                assert r.json()["text"] == "sg answered"
                await wait_until(lambda: len(results) >= 1, timeout=10, message="the sessions_send result")
                while results[0]["status"] != "ok":
                    assert asyncio.get_running_loop().time() < deadline, results
                    results.clear()
                    fake.reset()  # the failed send started no exchange: its last step is left
                    fake.script("m-asker", *ask)
                    await http.post("/v1/messages?wait=60", json={"text": "ask sg"})
                    await wait_until(
                        lambda: len(results) >= 1, timeout=10, message="the sessions_send result"
                    )
                assert results[0]["reply"] == "echo: what is 6*7?" and results[0]["gateway"] == "sg"
                step = f"{results[0]['runId']}-1"
                await wait_until(lambda: step in finished, timeout=30, message="asker's ping-pong step")
                fake.script(
                    "m-asker",
                    ToolCall("sessions_send", {"agentId": "private@sg", "message": "hello?"}),
                    Text("refused, as expected"),
                )
                r = await http.post("/v1/messages?wait=60", json={"text": "try the private one"})
                assert r.json()["text"] == "refused, as expected"
                await wait_until(lambda: len(results) >= 2, timeout=10, message="the second result")
            assert results[-1]["status"] == "forbidden" and "agentToAgent.allow" in results[-1]["error"]
            sg_sessions = await fed.gateways["sg"].service("runner").store.list_sessions()
            assert [s.agent_id for s in sg_sessions if s.agent_id == "private"] == []
            await nc.close()


async def test_an_agent_runs_its_tools_on_a_node_of_another_region(tmp_path: Path) -> None:
    """eu's agent `builder` is bound to nodes of region sg (`node: {selector: {region: "sg"}}`);
    eu has no such node, sg exposes its node `sg-node`: the tool runs there, in the workspace
    sg's config gives `builder`. A node sg does not expose is never used."""
    sg_ws = tmp_path / "sg-ws-builder"
    async with FakeModelServer() as fake:
        fake.script(
            "m-builder",
            ToolCall("write", {"path": "hello.txt", "content": "written from eu"}),
            ToolCall("exec", {"command": "cat hello.txt; echo; echo on-stderr >&2"}),
            Text("done"),
        )
        fake.script("m-other", ToolCall("write", {"path": "x.txt", "content": "no"}), Text("could not"))
        builder = {
            "id": "builder",
            "default": True,
            "model": "openai/m-builder",
            "node": {"selector": {"region": "sg"}},
            "tools": {"profile": "coding"},
        }
        other = {
            "id": "other",
            "model": "openai/m-other",
            "node": {"selector": {"region": "sg", "gpu": "yes"}},
        }
        eu = {
            "gateway": {"region": "eu"},
            "agents": {"list": [{**builder, "workspace": str(tmp_path / "eu-ws")}, other]},
            "models": {"providers": {"openai": {"baseUrl": fake.base_url + "/v1", "apiKey": "sk-test"}}},
            "nodes": {"local": {"enabled": False}},
        }
        sg = {
            "gateway": {"region": "sg", "federation": {"exposeNodes": ["sg-node"], "catalogSeconds": 0.2}},
            "agents": {
                "list": [{"id": "builder", "default": True, "workspace": str(sg_ws), "model": "echo/x"}]
            },
            "nodes": {"local": {"id": "sg-node"}},
            "tools": {"exec": {"host": "gateway"}},
        }
        async with federation(
            tmp_path, {"sg": sg, "eu": eu}, services={"sg": ("ingress", "router", "runner", "node-agent")}
        ) as fed:
            kv = fed.gateways["eu"].service("ingress").ctx.kv["gateways"]

            async def sg_node_known() -> bool:
                try:
                    cat = msgspec.json.decode((await kv.get("sg")).value or b"{}")
                except Exception:
                    return False
                return any(n.get("id") == "sg-node" and n.get("online") for n in cat.get("nodes", []))

            await wait_until(sg_node_known, timeout=30, message="eu learning sg's node")
            events = await _ask(fed.gateways["eu"], "builder", "build it")
            assert events[-1] == ("final", events[-1][1]) and events[-1][1]["text"] == "done", events
            assert (sg_ws / "hello.txt").read_text() == "written from eu"
            calls = [d for e, d in events if e == "tool_call"]
            assert [c["node"] for c in calls] == ["sg-node@sg", "sg-node@sg"]
            # the exec's live output crossed back (on the request's reply), as a local one does
            live = [d for e, d in events if e == "tool_output"]
            assert any(d["stream"] == "stdout" and "written from eu" in d["text"] for d in live), events
            assert any(d["stream"] == "stderr" and "on-stderr" in d["text"] for d in live), events
            result = [d for e, d in events if e == "tool_result"][1]
            assert "written from eu" in result["content"] and "[exit code 0]" in result["content"]
            async with fed.gateways["eu"].client(timeout=60) as http:
                assert not (tmp_path / "eu-ws" / "hello.txt").exists()
                r = await http.post("/v1/messages?wait=60", json={"text": "try", "agentId": "other"})
                assert r.json()["text"] == "could not"
            refused = [req for req in fake.requests if req.model == "m-other"][-1].last_user_text
            assert "no node matches" in refused and "none is exposed" not in refused
            await _remote_invocation_cannot_name_a_private_subject(fed.url("eu"), fed.url("sg"))


async def _remote_invocation_cannot_name_a_private_subject(eu_url: str, sg_url: str) -> None:
    """An invocation from another region that names an output subject gets its live output
    on its own reply only: a subject of sg's (here one sg's admin watches) is never written."""
    eu, sg = await nats.connect(eu_url), await nats.connect(sg_url)
    leaked: list[bytes] = []

    async def spy(msg: Any) -> None:
        leaked.append(msg.data)

    await sg.subscribe("cm.reply.spy.>", cb=spy)
    await sg.flush()
    for stream_reply in (False, True):
        inv = ToolInvocation(
            invocation_id=f"spy-{stream_reply}",
            tool="exec",
            arguments={"command": "echo secret-output"},
            agent_id="builder",
            session_key="agent:builder:main",
            timeout=30,
            output_subject="cm.reply.spy.tool.x",
            stream_reply=stream_reply,
        )
        data, headers = encode_json(inv)
        inbox = eu.new_inbox()
        sub = await eu.subscribe(inbox)
        await eu.publish("cm.gw.sg.node.sg-node.invoke", data, reply=inbox, headers=headers)
        got = []
        while True:
            msg = await sub.next_msg(timeout=30)
            item = decode(msg.data, ToolOutputChunk | ToolInvocationResult, msg.headers)
            got.append(item)
            if isinstance(item, ToolInvocationResult):
                break
        assert got[-1].ok and "secret-output" in got[-1].content
        chunks = [c for c in got if isinstance(c, ToolOutputChunk)]
        # live output only when asked for, and then on the request's own reply
        assert bool(chunks) == stream_reply and all("secret-output" in c.text for c in chunks)
    # the node published its chunks before the result: had any gone to sg's subject, sg's
    # subscriber (on the server the node publishes to) would hold it once flushed
    await sg.flush()
    assert leaked == []
    # sg's chat files are sg's: staging one is refused over the federation subject
    stage = ToolInvocation(
        invocation_id="spy-stage",
        tool="stage_media",
        arguments={"turnId": "t", "files": [{"ref": "t.0", "name": "x"}]},
        agent_id="builder",
        session_key="agent:builder:main",
        timeout=30,
    )
    data, headers = encode_json(stage)
    reply = await eu.request("cm.gw.sg.node.sg-node.invoke", data, headers=headers, timeout=30)
    refused = decode(reply.data, ToolInvocationResult, reply.headers)
    assert not refused.ok and refused.error_code == "PERMISSION_DENIED", refused
    await eu.close()
    await sg.close()


async def test_a_remote_agents_reply_reaches_its_caller_before_this_region_records_it(tmp_path: Path) -> None:
    """sg made the answer, recorded it and keeps it under the turn's id (asked again, it gives
    the same), so eu's caller gets it without waiting for eu's own record of the turn: here
    eu's completion record is held back, and the caller has its reply meanwhile. The record
    follows, and then the turn status."""
    async with federation(tmp_path, {"sg": SG_CONFIG, "eu": EU_CONFIG}) as fed:
        eu = fed.gateways["eu"]
        await linked(fed)
        store = eu.service("runner").store
        put_done = store.put_done
        held, release = asyncio.Event(), asyncio.Event()

        async def held_back(session_key: str, record: Any, *args: Any, **kwargs: Any) -> int:
            if session_key.startswith("agent:far:"):
                held.set()
                await release.wait()
            return int(await put_done(session_key, record, *args, **kwargs))

        store.put_done = held_back
        asking = asyncio.create_task(_ask(eu, "far", "hello from europe"))
        await wait_until(asking.done, timeout=30, message="the reply while eu's record is held back")
        events = asking.result()
        assert events[-1][0] == "final" and events[-1][1]["text"] == "echo: hello from europe", events
        assert held.is_set() and not release.is_set()
        turn_id = events[-1][1]["turnId"]
        assert await store.get_turn_status(turn_id) is None  # eu has not recorded the turn yet
        release.set()

        async def recorded() -> bool:
            status = await store.get_turn_status(turn_id)
            return status is not None and status.text == "echo: hello from europe"

        await wait_until(recorded, timeout=10, message="eu's record of the turn")
        sessions = {s.agent_id: s for s in await store.list_sessions()}
        assert sessions["far"].seq == 1


async def test_a_local_reply_follows_its_record_and_a_remote_one_precedes_it(tmp_path: Path) -> None:
    """The order eu's runner publishes in (one connection: a subscriber sees it in order): a
    local agent's `final` only after the turn's completion record (the answer exists nowhere
    else until then); a remote agent's before it."""
    async with federation(tmp_path, {"sg": SG_CONFIG, "eu": EU_CONFIG}) as fed:
        eu = fed.gateways["eu"]
        await linked(fed)
        tap = await nats.connect(fed.url("eu"))
        order: list[tuple[str, str]] = []  # ("final" | "record", turn id)

        async def on_msg(msg: Any) -> None:
            if msg.subject.startswith("cm.ev."):
                event = decode(msg.data, TurnEvent, msg.headers)
                if isinstance(event, TurnFinal):
                    order.append(("final", event.turn_id))
            elif msg.subject.startswith("$KV.cm_sessions.d."):
                body = json.loads(msg.data)
                order.append(("record", body.get("turnId") or body.get("turn_id") or ""))

        await tap.subscribe(">", cb=on_msg)
        await tap.flush()
        turns = {}
        for agent in ("main", "far"):
            events = await _ask(eu, agent, f"hello {agent}")
            assert events[-1][0] == "final", events
            turns[agent] = events[-1][1]["turnId"]
        await wait_until(
            lambda: all(("record", t) in order and ("final", t) in order for t in turns.values()),
            timeout=10,
            message="both turns' final events and records",
        )
        await tap.close()
        for agent, before, after in (("main", "record", "final"), ("far", "final", "record")):
            t = turns[agent]
            assert order.index((before, t)) < order.index((after, t)), (agent, order)


def _silent_sg_configs(fake: FakeModelServer | None) -> dict[str, dict[str, Any] | None]:
    """eu's `far` is sg's `worker`, with a model of eu's as its fallback; eu waits a minute for a
    silent region (longer than these tests wait for their answers)."""
    eu = json.loads(json.dumps(EU_CONFIG))
    eu["gateway"]["federation"].update(idleTimeoutSeconds=60, keepaliveSeconds=5)
    far = next(a for a in eu["agents"]["list"] if a["id"] == "far")
    far["model"] = {"primary": "echo/unused", "fallbacks": ["echo/fallback"]}
    if fake is None:
        return {"sg": None, "eu": eu}
    sg = json.loads(json.dumps(SG_CONFIG))
    sg["agents"]["defaults"]["model"] = "openai/m-sg"
    sg["models"] = {"providers": {"openai": {"baseUrl": fake.base_url + "/v1", "apiKey": "sk-test"}}}
    return {"sg": sg, "eu": eu}


async def test_a_turn_for_a_region_gone_silent_fails_over_without_waiting_the_idle_timeout(
    tmp_path: Path,
) -> None:
    """sg was last heard from long ago (its catalogue, stored by eu's ingress, is older than
    three of sg's broadcast periods): a turn of `far` does not wait the minute eu's idle timeout
    allows for sg's first word; a second after asking, eu looks sg up, finds it gone, and the
    agent's fallback answers. (Over a leaf link nobody answers "no responders" for a region
    that is gone: before, the turn waited the whole idle timeout.)"""
    async with federation(tmp_path, _silent_sg_configs(None)) as fed:
        admin = await nats.connect(fed.url("eu"))
        gone = Catalogue(region="sg", every=0.2, received=time.time() - 10)
        await (await admin.jetstream().key_value("cm_gateways")).put("sg", msgspec.json.encode(gone))
        async with fed.gateways["eu"].client(timeout=60) as http:
            r = await http.post("/v1/messages?wait=30", json={"text": "anyone there?", "agentId": "far"})
        assert r.status_code == 200, r.text
        assert r.json()["text"] == "echo: anyone there?"  # eu's fallback model
        await admin.close()


async def test_a_live_region_slow_to_answer_is_waited_for_whatever_its_catalogue_says(tmp_path: Path) -> None:
    """sg takes the turn and its model holds it past two of sg's keep-alives (the first a
    quarter second in, the next 5 s later); eu's lookups would call sg gone (as when eu's ingress
    is down and stores no catalogue): the first keep-alive comes before eu's first lookup (a
    second in), so eu never looks sg up and sg's answer is the reply. (With the first keep-alive
    after 5 s, eu would have looked sg up and given the turn to the fallback.)"""
    held = asyncio.Event()
    async with FakeModelServer() as fake:
        fake.script("m-sg", Gate(held))
        async with federation(tmp_path, _silent_sg_configs(fake)) as fed:
            await linked(fed)
            backend = fed.gateways["eu"].service("runner").gateway
            looked_up: list[str] = []

            async def stale(region: str) -> float | None:
                looked_up.append(region)
                return 99.0

            backend._silence = stale
            tap = await nats.connect(fed.url("eu"))
            alive: list[bytes] = []

            async def on_reply(msg: Any) -> None:
                if b'"alive"' in msg.data:
                    alive.append(msg.data)

            await tap.subscribe("_INBOX.>", cb=on_reply)
            await tap.flush()
            async with fed.gateways["eu"].client(timeout=60) as http:
                asking = asyncio.create_task(
                    http.post("/v1/messages?wait=30", json={"text": "take your time", "agentId": "far"})
                )
                await wait_until(lambda: len(alive) >= 2, timeout=20, message="two of sg's keep-alives")
                held.set()
                r = await asking
            await tap.close()
            assert r.status_code == 200, r.text
            assert r.json()["text"] == "pong from fake"  # sg's model, not eu's fallback
            assert looked_up == []
