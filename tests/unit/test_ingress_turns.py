"""Following a turn from the reply subject: the decision / events state machine, fed with
encoded replies as NATS delivers them, and submitting with a JetStream that acks or fails."""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest

from clawmesh.wire import (
    InboundMessage,
    ReplyMessage,
    RouteDecision,
    Subjects,
    TextDeltaEvent,
    TurnError,
    TurnFinal,
    TurnStarted,
    decode,
    encode_json,
    encode_msgpack,
)
from clawmesh_ingress.turns import MessageTooLarge, PendingTurn, TurnClient, Unavailable, turn_id_for
from clawmesh_ingress.waiters import Waiters

# Long enough never to expire in a test where the item is already there; short enough that
# a test where nothing will ever arrive ends quickly.
PRESENT = 30.0
NEVER = 0.05


@dataclass
class Msg:
    data: bytes
    headers: dict[str, str] | None = None


async def deliver(waiters: Waiters, *items: ReplyMessage) -> None:
    """As the reply subject's subscription would: msgpack on the wire, JSON accepted too."""
    for i, item in enumerate(items):
        data, headers = encode_msgpack(item) if i % 2 else encode_json(item)
        await waiters.on_message(Msg(data, headers))  # type: ignore[arg-type]


def decision(turn_id: str, **kw: Any) -> RouteDecision:
    return RouteDecision(
        turn_id=turn_id,
        channel="api",
        account_id="default",
        agent_id="home",
        session_key="agent:home:x",
        **kw,
    )


def started(turn_id: str) -> TurnStarted:
    return TurnStarted(turn_id=turn_id)


def delta(turn_id: str, text: str) -> TextDeltaEvent:
    return TextDeltaEvent(turn_id=turn_id, text=text)


def final(turn_id: str, text: str = "done") -> TurnFinal:
    return TurnFinal(turn_id=turn_id, text=text)


async def collect(turn: PendingTurn, timeout: float | None = PRESENT) -> list[str]:
    return [type(item).__name__ async for item in turn.events(timeout)]


async def test_decision_then_events_up_to_the_final() -> None:
    waiters = Waiters()
    turn = PendingTurn("t1", waiters)
    await deliver(waiters, decision("t1"), started("t1"), delta("t1", "a"), final("t1"), delta("t1", "late"))
    got = await turn.decision(PRESENT)
    assert got is not None and got.ok and got.agent_id == "home"
    assert await turn.decision(0) is got  # asked again: the same decision, nothing consumed
    assert await collect(turn) == ["TurnStarted", "TextDeltaEvent", "TurnFinal"]


async def test_events_before_the_decision_are_kept_for_events() -> None:
    """The runner can be quicker than the router's notice."""
    waiters = Waiters()
    turn = PendingTurn("t1", waiters)
    await deliver(waiters, started("t1"), delta("t1", "a"), decision("t1"), delta("t1", "b"), final("t1"))
    assert (await turn.decision(PRESENT)) is not None
    items = [item async for item in turn.events(PRESENT)]
    assert [getattr(i, "text", None) for i in items] == [None, "a", "b", "done"]


async def test_a_final_before_the_decision_ends_the_events_there() -> None:
    waiters = Waiters()
    turn = PendingTurn("t1", waiters)
    await deliver(waiters, started("t1"), final("t1"), decision("t1"), delta("t1", "stray"))
    assert (await turn.decision(PRESENT)) is not None
    assert await collect(turn) == ["TurnStarted", "TurnFinal"]


async def test_no_decision_in_time_is_none_and_a_late_one_passes_through_events() -> None:
    waiters = Waiters()
    turn = PendingTurn("t1", waiters)
    assert await turn.decision(NEVER) is None
    await deliver(waiters, decision("t1"), final("t1"))
    assert await collect(turn) == ["RouteDecision", "TurnFinal"]


async def test_two_requests_on_one_turn_each_get_every_reply_and_close_only_their_own() -> None:
    waiters = Waiters()
    first, retry = PendingTurn("t1", waiters), PendingTurn("t1", waiters, duplicate=True)
    await deliver(waiters, decision("t1"), started("t1"))
    retry.close()
    await deliver(waiters, final("t1"))
    assert await collect(first) == ["RouteDecision", "TurnStarted", "TurnFinal"]
    assert len(waiters) == 1
    first.close()
    assert len(waiters) == 0


async def test_a_late_failed_decision_ends_the_turn() -> None:
    def refused(turn_id: str) -> RouteDecision:
        return RouteDecision(turn_id=turn_id, channel="api", account_id="default", error_code="UNKNOWN_AGENT")

    waiters = Waiters()
    turn = PendingTurn("t1", waiters)
    assert await turn.decision(NEVER) is None
    await deliver(waiters, refused("t1"), delta("t1", "stray"))
    assert await collect(turn) == ["RouteDecision"]
    late = PendingTurn("t2", waiters)
    await deliver(waiters, refused("t2"))
    outcome = await late.outcome(PRESENT)
    assert isinstance(outcome, RouteDecision) and outcome.error_code == "UNKNOWN_AGENT"


async def test_events_time_out_when_the_next_one_does_not_come() -> None:
    waiters = Waiters()
    turn = PendingTurn("t1", waiters)
    await deliver(waiters, decision("t1"), started("t1"))
    await turn.decision(PRESENT)
    seen: list[str] = []
    with pytest.raises(TimeoutError):
        async for item in turn.events(NEVER):
            seen.append(type(item).__name__)
    assert seen == ["TurnStarted"]


async def test_outcome_is_the_final_or_the_error() -> None:
    waiters = Waiters()
    done, failed, silent = PendingTurn("a", waiters), PendingTurn("b", waiters), PendingTurn("c", waiters)
    await deliver(waiters, delta("a", "x"), final("a", "hello"))
    await deliver(waiters, started("b"), TurnError(turn_id="b", code="MODEL_ERROR", message="boom"))
    ok = await done.outcome(PRESENT)
    assert isinstance(ok, TurnFinal) and ok.text == "hello"
    err = await failed.outcome(PRESENT)
    assert isinstance(err, TurnError) and err.code == "MODEL_ERROR"
    with pytest.raises(TimeoutError):
        await silent.outcome(NEVER)


async def test_replies_reach_only_their_own_turn_and_stop_after_close(caplog: Any) -> None:
    waiters = Waiters()
    one, two = PendingTurn("one", waiters), PendingTurn("two", waiters)
    assert len(waiters) == 2
    with caplog.at_level(logging.WARNING, "clawmesh.ingress"):
        await waiters.on_message(Msg(b"junk"))  # type: ignore[arg-type]
    assert "undecodable reply" in caplog.text
    await deliver(waiters, final("two", "for two"), final("nobody"))
    one.close()
    await deliver(waiters, final("one", "too late"))
    assert len(waiters) == 1
    assert await one.decision(NEVER) is None
    with pytest.raises(TimeoutError):
        await one.outcome(NEVER)
    got = await two.outcome(PRESENT)
    assert isinstance(got, TurnFinal) and got.text == "for two"


def test_turn_ids_are_stable_for_a_platform_message_id_only() -> None:
    assert turn_id_for("telegram", "bot", "m1") == turn_id_for("telegram", "bot", "m1")
    assert turn_id_for("telegram", "bot", "m1") != turn_id_for("telegram", "other", "m1")
    assert turn_id_for("api", "default", None) != turn_id_for("api", "default", None)


# --- submitting ------------------------------------------------------------------------------


@dataclass
class FakeJetStream:
    duplicate: bool = False
    fail: Exception | None = None
    published: list[tuple[str, bytes, dict[str, str]]] = field(default_factory=list)

    async def publish(self, subject: str, data: bytes, headers: dict[str, str]) -> Any:
        if self.fail is not None:
            raise self.fail
        self.published.append((subject, data, headers))
        return SimpleNamespace(duplicate=self.duplicate)


def client(js: FakeJetStream, max_payload: int = 1 << 20) -> TurnClient:
    nc = SimpleNamespace(max_payload=max_payload)
    # ServiceContext.publish (retried across a leader change) stands for the stream here
    ctx = SimpleNamespace(
        js=js,
        publish=js.publish,
        publish_window=lambda: 10.0,
        nc=nc,
        subjects=Subjects("cm"),
        counters=Counter(),
    )
    return TurnClient(ctx, Waiters(), "cm.reply.test")  # type: ignore[arg-type]


def inbound(turn_id: str = "t1") -> InboundMessage:
    return InboundMessage(
        id=turn_id, channel="telegram", account_id="bot1", text="hi", reply_subject="cm.reply.test"
    )


async def test_submit_stores_the_message_with_its_dedupe_key_and_follows_the_turn() -> None:
    js = FakeJetStream()
    turns = client(js)
    turn = await turns.submit(inbound(), "in:telegram:bot1:m1")
    subject, data, headers = js.published[0]
    assert subject == "cm.in.telegram.bot1" and headers["Nats-Msg-Id"] == "in:telegram:bot1:m1"
    assert decode(data, InboundMessage, headers).text == "hi"
    assert not turn.duplicate and turns.ctx.counters["accepted"] == 1
    await deliver(turns.waiters, final("t1"))
    assert isinstance(await turn.outcome(PRESENT), TurnFinal)


async def test_submit_reports_a_duplicate() -> None:
    turn = await client(FakeJetStream(duplicate=True)).submit(inbound(), "in:t1")
    assert turn.duplicate


async def test_a_store_failure_is_unavailable_and_leaves_no_waiter() -> None:
    turns = client(FakeJetStream(fail=ConnectionError("no JetStream")))
    with pytest.raises(Unavailable, match=r"ConnectionError: no JetStream\); nothing was accepted"):
        await turns.submit(inbound(), "in:t1")
    assert len(turns.waiters) == 0 and turns.ctx.counters["store_failures"] == 1


async def test_a_message_larger_than_the_bus_carries_is_refused_before_publishing() -> None:
    js = FakeJetStream()
    await client(js).submit(inbound(), "in:t1")
    _, data, headers = js.published.pop()  # as published (with trace headers, if a tracer is set)
    exact = len(data) + len("NATS/1.0\r\n\r\n") + sum(len(k) + len(v) + 4 for k, v in headers.items())
    turns = client(js, max_payload=exact - 1)
    with pytest.raises(
        MessageTooLarge, match=rf"the message is {exact} bytes once encoded; .* at most {exact - 1}"
    ):
        await turns.submit(inbound(), "in:t1")
    assert js.published == [] and len(turns.waiters) == 0
    await client(js, max_payload=exact).submit(inbound(), "in:t1")
    assert len(js.published) == 1
