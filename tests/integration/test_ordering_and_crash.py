"""Per-session order and exclusivity across runner replicas, and crash safety (SIGKILL).

Runners run as real OS processes here, so one can be killed mid-turn like in production.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
from collections import defaultdict
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import nats
import pytest

from clawmesh.sessions import SessionStore, TxUser
from clawmesh.wire import OutboundMessage, Subjects, TurnEvent, TurnFinal, TurnStarted, decode
from tests.fakes.models import FakeModelServer, Gate, Hang
from tests.fixtures.gateway import Gateway, ServiceProcess, run_gateway, wait_until

pytestmark = pytest.mark.slow


async def _runner_instances(nc: Any, want: int) -> dict[str, int]:
    """instance id → pid of the runner processes answering $SRV.INFO."""
    inbox = nc.new_inbox()
    found: dict[str, int] = {}

    async def cb(msg: Any) -> None:
        if not msg.data:  # a no-responders status while the processes are still starting
            return
        info = json.loads(msg.data)
        if info.get("name") == "clawmesh-runner":
            found[info["metadata"]["instance"]] = int(info["metadata"]["pid"])

    sub = await nc.subscribe(inbox, cb=cb)
    try:

        async def enough() -> bool:
            await nc.publish("$SRV.INFO.clawmesh-runner", b"", reply=inbox)
            await nc.flush()
            return len(found) >= want

        await wait_until(enough, timeout=30, interval=0.3, message=f"{want} runner processes")
    finally:
        await sub.unsubscribe()
    return found


class EventLog:
    """Every turn event on cm.ev.>, recorded by a test-side subscriber."""

    def __init__(self) -> None:
        self.events: list[Any] = []
        self.by_session: dict[str, list[Any]] = defaultdict(list)

    async def on_msg(self, msg: Any) -> None:
        event = decode(msg.data, TurnEvent, msg.headers)
        self.events.append(event)
        self.by_session[event.session_key].append(event)

    def finals(self, session: str | None = None) -> list[TurnFinal]:
        source = self.by_session[session] if session else self.events
        return [e for e in source if isinstance(e, TurnFinal)]


async def _runners(gw: Gateway, tmp_path: Path, count: int) -> AsyncIterator[list[ServiceProcess]]:
    procs = [
        ServiceProcess("runner", gw.config_path, gw.nats_url, gw.env, tmp_path / f"runner{i}.log")
        for i in range(count)
    ]
    try:
        yield procs
    finally:
        for p in procs:
            p.kill()


async def test_three_runners_keep_each_session_in_order_without_overlap(
    nats_url: str, tmp_path: Path
) -> None:
    config = {
        "agents": {"defaults": {"model": "echo/order"}, "list": [{"id": "main", "default": True}]},
        "session": {"dmScope": "per-peer"},
        "runtime": {"turnLeaseSeconds": 3},
    }
    log = EventLog()
    async with run_gateway(nats_url, config, tmp_path, services=("ingress", "router")) as gw:
        nc = await nats.connect(nats_url)
        await nc.subscribe("cm.ev.>", cb=log.on_msg)
        gen = _runners(gw, tmp_path, 3)
        await anext(gen)
        try:
            instances = await _runner_instances(nc, 3)
            assert len(instances) == 3
            sent: dict[str, list[str]] = defaultdict(list)
            async with gw.client() as http:
                for i in range(200):
                    batch = [("alice", f"a-{i}")]
                    if i % 2 == 0:
                        batch.append(("bob", f"b-{i}"))
                    if i % 3 == 0:
                        batch.append(("carol", f"c-{i}"))
                    for peer, text in batch:
                        r = await http.post(
                            "/v1/messages", json={"text": text, "peer": {"kind": "direct", "id": peer}}
                        )
                        assert r.status_code == 202, r.text
                        sent[f"agent:main:direct:{peer}"].append(text)
            total = sum(len(v) for v in sent.values())
            await wait_until(
                lambda: len(log.finals()) >= total,
                timeout=120,
                interval=0.2,
                message=f"{total} final replies",
            )
            js = nc.jetstream()
            store = SessionStore(js, Subjects(), await js.key_value("cm_sessions"))
            for session, texts in sent.items():
                history = await store.history("main", session)
                assert [e.text for e in history if isinstance(e, TxUser)] == texts, (
                    f"transcript order of {session}"
                )
                events = log.by_session[session]
                finals = [e for e in events if isinstance(e, TurnFinal)]
                assert [f.text for f in finals] == [f"echo: {t}" for t in texts], f"reply order of {session}"
                assert len({f.turn_id for f in finals}) == len(texts), "exactly one final per turn"
                # no two turns of one session overlap: each start comes after the previous final
                timeline = [
                    (e.ts, "start" if isinstance(e, TurnStarted) else "end")
                    for e in events
                    if isinstance(e, TurnStarted | TurnFinal)
                ]
                depth = 0
                for _, kind in sorted(timeline, key=lambda t: (t[0], t[1] == "start")):
                    depth += 1 if kind == "start" else -1
                    assert 0 <= depth <= 1, f"overlapping turns in {session}"
            # model context travels in the completion record: no consumer is left on transcripts
            assert (await js.stream_info("CM_SESSIONS")).state.consumer_count == 0
            # Which replica ran how many turns is up to scheduling; that they share the work is
            # tested deterministically in test_concurrency.py.
            workers = {e.runner for e in log.events if isinstance(e, TurnStarted)}
            assert workers <= set(instances)
        finally:
            await gen.aclose()
            await nc.close()


async def test_sigkill_mid_turn_gives_exactly_one_final_reply(nats_url: str, tmp_path: Path) -> None:
    async with FakeModelServer(reply="recovered", chunks=2) as fake:
        # the first model call stalls after one chunk; the redelivered turn gets the default reply
        fake.script(Hang(30, after_chunks=1))
        config = {
            "agents": {"defaults": {"model": "openai/fake-model"}, "list": [{"id": "main", "default": True}]},
            "models": {"providers": {"openai": {"baseUrl": fake.base_url + "/v1", "apiKey": "sk-test"}}},
            "runtime": {"turnLeaseSeconds": 2},
        }
        log = EventLog()
        async with run_gateway(nats_url, config, tmp_path, services=("ingress", "router")) as gw:
            nc = await nats.connect(nats_url)
            await nc.subscribe("cm.ev.>", cb=log.on_msg)
            gen = _runners(gw, tmp_path, 3)
            procs = await anext(gen)
            try:
                instances = await _runner_instances(nc, 3)
                async with httpx.AsyncClient(base_url=gw.url, headers=gw.headers(), timeout=60) as http:
                    r = await http.post(
                        "/v1/messages", json={"text": "survive this", "peer": {"kind": "direct", "id": "zed"}}
                    )
                    assert r.status_code == 202
                    turn_id = r.json()["turnId"]
                    started = await wait_until(
                        lambda: next(
                            (e for e in log.events if isinstance(e, TurnStarted) and e.turn_id == turn_id),
                            None,
                        ),
                        message="turn started",
                    )
                    await wait_until(lambda: len(fake.requests) >= 1, message="model called")
                    victim = instances[started.runner]
                    next(p for p in procs if p.proc.pid == victim).kill()
                    # meanwhile another message arrives; nothing may be lost
                    r2 = await http.post(
                        "/v1/messages", json={"text": "and this", "peer": {"kind": "direct", "id": "yan"}}
                    )
                    assert r2.status_code == 202
                    await wait_until(lambda: len(log.finals()) >= 2, timeout=60, message="both replies")
                finals = [f for f in log.finals() if f.turn_id == turn_id]
                assert len(finals) == 1 and finals[0].text == "recovered"
                starts = [e for e in log.events if isinstance(e, TurnStarted) and e.turn_id == turn_id]
                # Killed first, finished elsewhere. (A runner stalled past its lease on a loaded
                # machine, e.g. importing a provider SDK, may retake a turn: more starts are
                # possible, and harmless; the single final above is the guarantee.)
                assert starts[0].runner == started.runner and starts[-1].runner != started.runner
                # the outbound stream holds exactly one reply for the turn
                js = nc.jetstream()
                sub = await js.subscribe("cm.out.>", ordered_consumer=True)
                info = await js.stream_info("CM_OUTBOUND")
                outs = [
                    decode((await sub.next_msg(5)).data, OutboundMessage) for _ in range(info.state.messages)
                ]
                await sub.unsubscribe()
                assert [o.turn_id for o in outs].count(turn_id) == 1
                assert len(outs) == 2
            finally:
                await gen.aclose()
                await nc.close()


async def _outbound(js: Any) -> list[OutboundMessage]:
    """Every reply stored in CM_OUTBOUND, in stream order."""
    info = await js.stream_info("CM_OUTBOUND")
    first, last = info.state.first_seq, info.state.last_seq
    if not info.state.messages:
        return []
    return [
        decode((await js.get_msg("CM_OUTBOUND", seq)).data, OutboundMessage) for seq in range(first, last + 1)
    ]


def _turns_empty(js: Any) -> Any:
    async def empty() -> bool:
        return (await js.stream_info("CM_TURNS")).state.messages == 0

    return empty


async def test_a_reply_left_pending_by_a_crashed_runner_is_stored_once_before_the_next_turns(
    nats_url: str, tmp_path: Path
) -> None:
    """A runner died after recording turn 1 as complete but before storing its reply (the
    completion record still has the reply pending). Turn 2 arrives: turn 1's reply is stored
    first, then turn 2's. Then turn 1 comes back (it was never acked): its caller hears the
    answer again, but it is not stored a second time."""
    from clawmesh.sessions import DoneRecord, PendingReply, TxAssistant
    from clawmesh.wire import InboundMessage, Peer, RouteInfo, TurnRequest, encode_msgpack, encode_token

    config = {"agents": {"defaults": {"model": "echo/x"}, "list": [{"id": "main", "default": True}]}}
    key = "agent:main:main"
    log = EventLog()
    async with run_gateway(nats_url, config, tmp_path, services=("runner",)):
        nc = await nats.connect(nats_url)
        await nc.subscribe("cm.ev.>", cb=log.on_msg)
        js = nc.jetstream()
        kv = await js.key_value("cm_sessions")
        route = RouteInfo(
            agent_id="main",
            session_key=key,
            main_session_key=key,
            matched_by="default",
            channel="api",
            account_id="default",
        )
        peer = Peer(kind="direct", id="u")
        pending = PendingReply(
            subject="cm.out.api.default",
            msg_id="out:t1",
            message=OutboundMessage(
                turn_id="t1", agent_id="main", session_key=key, channel="api", account_id="default", text=""
            ),
        )
        context = [
            TxUser(turn_id="t1", seq=1, text="one"),
            TxAssistant(turn_id="t1", seq=1, text="answer one", model="echo/x"),
        ]
        done = DoneRecord(
            seq=1, turn_id="t1", final_text="answer one", context=context, has_context=True, reply=pending
        )
        await kv.put(f"d.{encode_token(key)}", msgspec.json.encode(done))

        def turn(seq: int, text: str) -> tuple[bytes, dict[str, str]]:
            inbound = InboundMessage(id=f"t{seq}", channel="api", text=text, peer=peer)
            return encode_msgpack(TurnRequest(turn_id=f"t{seq}", seq=seq, route=route, inbound=inbound))

        data2, headers2 = turn(2, "two")
        await js.publish("cm.turn.main", data2, headers=headers2)

        async def stored_two() -> list[OutboundMessage] | None:
            replies = await _outbound(js)
            return replies if len(replies) >= 2 else None

        replies = await wait_until(stored_two, message="two replies in CM_OUTBOUND")
        assert [(o.turn_id, o.text) for o in replies] == [("t1", "answer one"), ("t2", replies[1].text)]

        async def settled() -> bool:
            # the record drops the stored reply when the runner lets the session go
            record = await kv.get(f"d.{encode_token(key)}")
            assert record.value is not None
            return msgspec.json.decode(record.value, type=DoneRecord).reply is None

        await wait_until(settled, message="the completion record without a pending reply")

        # turn 1 delivered again: answered from the context, not stored again (nor after turn 2)
        data1, headers1 = turn(1, "one")
        await js.publish("cm.turn.main", data1, headers=headers1)
        # (its ack by the runner follows the replay: once it is gone from CM_TURNS, all is done)
        await wait_until(lambda: any(f.turn_id == "t1" for f in log.finals(key)), message="the replay")
        await wait_until(_turns_empty(js), message="the replayed turn acked")
        assert [f.text for f in log.finals(key) if f.turn_id == "t1"] == ["answer one"]
        assert [o.turn_id for o in await _outbound(js)] == ["t1", "t2"]
        await nc.close()


async def test_a_turn_that_keeps_failing_ends_with_an_error_reply_and_the_next_turn_follows(
    nats_url: str, tmp_path: Path
) -> None:
    """Turn 1's answer can never be recorded (the echo of a ~600 KB message makes a completion
    record larger than NATS carries): finishing it fails on every delivery. After
    runtime.maxDeliveries starts it ends with an error reply and a dead letter; turn 2, waiting
    behind it, then runs. Both replies are stored, in order."""
    from clawmesh.wire import DeadLetter, InboundMessage, Peer, RouteInfo, TurnRequest, encode_msgpack

    config = {
        "agents": {"defaults": {"model": "echo/x"}, "list": [{"id": "main", "default": True}]},
        "runtime": {"maxDeliveries": 2},
    }
    key = "agent:main:main"
    route = RouteInfo(
        agent_id="main",
        session_key=key,
        main_session_key=key,
        matched_by="default",
        channel="api",
        account_id="default",
    )
    async with run_gateway(nats_url, config, tmp_path, services=("runner",)):
        nc = await nats.connect(nats_url)
        js = nc.jetstream()
        for seq, text in ((1, "x" * 600_000), (2, "two")):
            inbound = InboundMessage(id=f"t{seq}", channel="api", text=text, peer=Peer(kind="direct", id="u"))
            data, headers = encode_msgpack(
                TurnRequest(turn_id=f"t{seq}", seq=seq, route=route, inbound=inbound)
            )
            await js.publish("cm.turn.main", data, headers={**headers, "Nats-Msg-Id": f"turn:t{seq}"})

        async def stored_two() -> list[OutboundMessage] | None:
            replies = await _outbound(js)
            return replies if len(replies) >= 2 else None

        replies = await wait_until(stored_two, timeout=60, message="both replies in CM_OUTBOUND")
        assert [(o.turn_id, o.is_error) for o in replies] == [("t1", True), ("t2", False)]
        assert "could not be processed in 2 tries" in replies[0].text
        assert replies[1].text == "echo: two"
        letter = await js.get_last_msg("CM_DLQ", "cm.dlq.runner")
        dead = decode(letter.data, DeadLetter, letter.headers)
        assert dead.code == "DELIVERY_LIMIT" and "t1" in dead.reason
        await wait_until(_turns_empty(js), message="both turns acked")
        assert len(await _outbound(js)) == 2
        await nc.close()


async def test_a_stale_runner_loses_the_completion_record_and_stores_no_reply(
    nats_url: str, tmp_path: Path
) -> None:
    """A runner read the session's record (revision r), was stopped (SIGSTOP) past its lease,
    and another runner completed the turn and the next one meanwhile. When the stale runner
    finishes with revision r, its write loses: the newer record stays and nothing is replied."""
    from clawmesh.errors import ClawmeshError
    from clawmesh.sessions import CompletionConflict, DoneRecord
    from clawmesh.wire import InboundMessage, RouteInfo, TurnRequest
    from clawmesh_runner.turn import TurnOutcome

    config = {"agents": {"defaults": {"model": "echo/x"}, "list": [{"id": "main", "default": True}]}}
    key = "agent:main:main"
    async with run_gateway(nats_url, config, tmp_path, services=("runner",)) as gw:
        runner = gw.service("runner")
        store: SessionStore = runner.store
        nc = await nats.connect(nats_url)
        js = nc.jetstream()
        events = EventLog()
        await nc.subscribe("cm.ev.>", cb=events.on_msg)
        first = await store.put_done(key, DoneRecord(seq=1, turn_id="t1", final_text="one"), last=0)
        read_by_stale = (DoneRecord(seq=1, turn_id="t1", final_text="one"), first)
        # the new holder of the session completes turns 2 and 3
        newer = await store.put_done(key, DoneRecord(seq=2, turn_id="t2", final_text="two"), last=first)
        newest = await store.put_done(key, DoneRecord(seq=3, turn_id="t3", final_text="three"), last=newer)

        route = RouteInfo(
            agent_id="main",
            session_key=key,
            main_session_key=key,
            matched_by="default",
            channel="api",
            account_id="default",
        )
        turn = TurnRequest(turn_id="t2", seq=2, route=route, inbound=InboundMessage(id="t2", channel="api"))

        class Msg:
            acked = False

            async def ack(self) -> None:
                self.acked = True

        msg = Msg()
        for outcome in (TurnOutcome(text="stale two"), TurnOutcome.failed(ClawmeshError("MODEL_ERROR", "x"))):
            with pytest.raises(CompletionConflict):
                await runner.finisher.finish(turn, msg, outcome, [], read_by_stale)
        assert not msg.acked
        found = await store.get_done(key)
        assert found is not None and (found[0].final_text, found[1]) == ("three", newest)
        assert (await js.stream_info("CM_OUTBOUND")).state.messages == 0
        await nc.flush()
        assert events.finals(key) == [] and runner.ctx.counters["turns_stale"] == 2
        await nc.close()


async def test_a_runner_resumed_after_sigstop_past_its_lease_stores_nothing(
    nats_url: str, tmp_path: Path
) -> None:
    """A runner is stopped (SIGSTOP) in the middle of turn 1; its lease expires and another
    runner answers turn 1, then turn 2 of the same session. When the stopped runner resumes
    and its model call returns, it finds the lease or the completion record taken over and
    stores nothing: the session's replies stay one per turn, in order."""
    opened = asyncio.Event()
    async with FakeModelServer(reply="fresh", chunks=1) as fake:
        fake.script(Gate(opened))  # the first model call ends when the test says so
        config = {
            "agents": {"defaults": {"model": "openai/fake-model"}, "list": [{"id": "main", "default": True}]},
            "models": {"providers": {"openai": {"baseUrl": fake.base_url + "/v1", "apiKey": "sk-test"}}},
            "runtime": {"turnLeaseSeconds": 2},
        }
        log = EventLog()
        async with run_gateway(nats_url, config, tmp_path, services=("ingress", "router")) as gw:
            nc = await nats.connect(nats_url)
            js = nc.jetstream()
            await nc.subscribe("cm.ev.>", cb=log.on_msg)
            gen = _runners(gw, tmp_path, 2)
            procs = await anext(gen)
            victim: ServiceProcess | None = None
            try:
                instances = await _runner_instances(nc, 2)
                peer = {"kind": "direct", "id": "sleeper"}
                async with httpx.AsyncClient(base_url=gw.url, headers=gw.headers(), timeout=60) as http:
                    r1 = await http.post("/v1/messages", json={"text": "one", "peer": peer})
                    assert r1.status_code == 202
                    t1 = r1.json()["turnId"]
                    started = await wait_until(
                        lambda: next((e for e in log.events if isinstance(e, TurnStarted)), None),
                        message="turn 1 started",
                    )
                    await wait_until(lambda: len(fake.requests) >= 1, message="the gated model call")
                    victim = next(p for p in procs if p.proc.pid == instances[started.runner])
                    os.kill(victim.proc.pid, signal.SIGSTOP)
                    await wait_until(
                        lambda: any(f.turn_id == t1 for f in log.finals()),
                        timeout=60,
                        message="turn 1 elsewhere",
                    )
                    r2 = await http.post("/v1/messages", json={"text": "two", "peer": peer})
                    assert r2.status_code == 202
                    t2 = r2.json()["turnId"]
                    await wait_until(
                        lambda: any(f.turn_id == t2 for f in log.finals()), timeout=60, message="turn 2"
                    )
                opened.set()  # the stale runner's model call returns when it resumes
                os.kill(victim.proc.pid, signal.SIGCONT)
                stale_log = victim.log

                def gave_up() -> bool:
                    text = stale_log.read_text(errors="replace")
                    return (
                        "lost the lease" in text or "completed elsewhere" in text or "changed since" in text
                    )

                await wait_until(gave_up, timeout=60, message="the resumed runner giving the session up")
                assert [(f.turn_id, f.text) for f in log.finals()] == [(t1, "fresh"), (t2, "fresh")]
                replies = await _outbound(js)
                assert [o.turn_id for o in replies] == [t1, t2]
                # and the session's completion record is still turn 2's, not overwritten
                store = SessionStore(js, Subjects(), await js.key_value("cm_sessions"))
                found = await store.get_done("agent:main:main")
                assert found is not None and (found[0].seq, found[0].turn_id) == (2, t2)
            finally:
                if victim is not None and victim.proc.poll() is None:
                    os.kill(victim.proc.pid, signal.SIGCONT)
                await gen.aclose()
                await nc.close()
