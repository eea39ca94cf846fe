"""Finishing a turn in the runner: the completion record's context stays bounded, a turn
delivered again is answered from what was recorded, and the record is stored before the reply."""

from __future__ import annotations

import logging
from collections import Counter
from types import SimpleNamespace
from typing import Any, cast

import msgspec
import pytest

from clawmesh.bus import ServiceContext
from clawmesh.errors import ClawmeshError
from clawmesh.sessions import (
    CompletionConflict,
    DoneRecord,
    SessionStore,
    TranscriptEntry,
    TurnStatus,
    TxAssistant,
    TxError,
    TxTool,
    TxUser,
)
from clawmesh.wire import (
    InboundMessage,
    OutboundMessage,
    RouteInfo,
    Subjects,
    TurnError,
    TurnFinal,
    TurnRequest,
)
from clawmesh_runner.events import TurnEvents
from clawmesh_runner.finish import CONTEXT_BYTES, CONTEXT_ENTRIES, Finisher, bounded, result_in_context
from clawmesh_runner.turn import TurnOutcome


def _turn(turn_id: str = "t2", seq: int = 2) -> TurnRequest:
    route = RouteInfo(
        agent_id="main",
        session_key="agent:main:main",
        main_session_key="agent:main:main",
        matched_by="default",
        channel="api",
        account_id="default",
    )
    return TurnRequest(
        turn_id=turn_id, seq=seq, route=route, inbound=InboundMessage(id=turn_id, channel="api", text="hi")
    )


def _exchange(turn_id: str, seq: int, reply: str) -> list[TranscriptEntry]:
    """One turn's records: the user, a tool round trip, the final answer."""
    return [
        TxUser(turn_id=turn_id, seq=seq, text="q"),
        TxAssistant(turn_id=turn_id, seq=seq, text="", tool_calls=[{"id": "c", "name": "exec"}], model="m1"),
        TxTool(turn_id=turn_id, seq=seq, tool_call_id="c", name="exec", content="out"),
        TxAssistant(turn_id=turn_id, seq=seq, text=reply, model="m2"),
    ]


# --- context bounding -----------------------------------------------------------------------


def test_context_keeps_the_newest_entries_up_to_the_entry_limit() -> None:
    entries = [TxUser(turn_id=f"t{i}", seq=i, text=str(i)) for i in range(CONTEXT_ENTRIES + 50)]
    done, data = bounded(DoneRecord(seq=1, context=entries, has_context=True))
    assert done.context == entries[-CONTEXT_ENTRIES:]
    assert msgspec.json.decode(data, type=DoneRecord) == done


def test_context_is_cut_to_the_byte_limit_from_the_oldest_end() -> None:
    big = "x" * (CONTEXT_BYTES // 8)
    entries = [TxUser(turn_id=f"t{i}", seq=i, text=big) for i in range(20)]
    done, data = bounded(DoneRecord(seq=1, context=entries, has_context=True))
    assert len(data) <= CONTEXT_BYTES
    assert 0 < len(done.context) < 20
    assert done.context == entries[-len(done.context) :]
    assert msgspec.json.decode(data, type=DoneRecord) == done


def test_a_record_within_both_limits_is_kept_whole() -> None:
    entries = _exchange("t1", 1, "a")
    done, _ = bounded(DoneRecord(seq=1, context=entries, has_context=True))
    assert done.context == entries


def test_the_newest_entry_is_kept_even_when_it_alone_is_too_big() -> None:
    entries = [
        TxUser(turn_id="t1", seq=1, text="old"),
        TxUser(turn_id="t2", seq=2, text="x" * (CONTEXT_BYTES + 1)),
    ]
    done, _ = bounded(DoneRecord(seq=2, context=entries, has_context=True))
    assert done.context == entries[-1:]


# --- results rebuilt from context -----------------------------------------------------------


def test_an_older_turns_result_is_its_last_assistant_message() -> None:
    context = [*_exchange("t1", 1, "first answer"), *_exchange("t2", 2, "second answer")]
    found = result_in_context(context, "t1")
    assert found == DoneRecord(
        seq=1,
        turn_id="t1",
        final_text="first answer",
        model="m2",
        updated_at=found.updated_at if found else 0,
    )
    assert found is not None and not found.is_error


def test_an_older_turn_that_failed_is_answered_with_its_error() -> None:
    context = [
        TxUser(turn_id="t1", seq=1, text="q"),
        TxError(turn_id="t1", seq=1, code="MODEL_ERROR", message="overloaded"),
        *_exchange("t2", 2, "b"),
    ]
    found = result_in_context(context, "t1")
    assert found is not None and found.is_error
    assert (found.seq, found.turn_id, found.final_text) == (1, "t1", "⚠️ overloaded")


def test_a_turn_not_in_context_or_without_an_answer_has_no_result() -> None:
    context = [*_exchange("t2", 2, "b"), TxUser(turn_id="t3", seq=3, text="unanswered")]
    assert result_in_context(context, "t1") is None
    assert result_in_context(context, "t3") is None


# --- finishing and replay -------------------------------------------------------------------


class _World:
    """What a Finisher talks to, recording every call in one timeline."""

    def __init__(
        self, status: TurnStatus | None = None, fail_publish: bool = False, stored_revision: int = 0
    ) -> None:
        self.timeline: list[str] = []
        self.revision = stored_revision  # of the completion record in the (fake) KV
        self.published: list[tuple[str, bytes, dict[str, str]]] = []
        self.events: list[Any] = []
        self.appended: list[tuple[TranscriptEntry, str]] = []
        self.statuses: dict[str, TurnStatus] = {}
        self.done: DoneRecord | None = None
        self.status = status
        self.fail_publish = fail_publish
        self.fail_append = False
        self.turns_stream: set[int] = set()  # CM_TURNS sequences still there (not acked)
        self.turn_lookups: list[int] = []
        self.history_reads: list[int | None] = []
        self.acked = False
        self.counters: Counter[str] = Counter()

    def finisher(self) -> Finisher:
        world = self

        async def publish(subject: str, data: bytes, headers: dict[str, str]) -> None:
            world.timeline.append("reply")
            if world.fail_publish:
                raise ConnectionError("JetStream unavailable")
            world.published.append((subject, data, headers))

        class Store:
            async def append_batch(
                self, agent_id: str, session_key: str, entries: list[TranscriptEntry], msg_id: str
            ) -> None:
                world.timeline.append("append")
                if world.fail_append:
                    raise ConnectionError("JetStream unavailable")
                world.appended.extend((entry, msg_id) for entry in entries)

            async def put_done(
                self, session_key: str, record: DoneRecord, data: bytes | None = None, *, last: int
            ) -> int:
                if last != world.revision:
                    raise CompletionConflict(session_key, last)
                world.timeline.append("done" if record.reply is not None else "settled")
                assert data is None or msgspec.json.decode(data, type=DoneRecord) == record
                world.done = record
                world.revision += 1
                return world.revision

            async def get_turn_status(self, turn_id: str) -> TurnStatus | None:
                return world.status

            async def put_turn_status(self, turn_id: str, status: TurnStatus) -> None:
                world.timeline.append("status")
                world.statuses[turn_id] = status

            async def history(self, agent_id: str, session_key: str, limit: int | None = None) -> list[Any]:
                world.history_reads.append(limit)
                return ["from the stream"]

            async def turn_acked(self, turn_seq: int) -> bool:
                world.turn_lookups.append(turn_seq)
                return bool(turn_seq) and turn_seq not in world.turns_stream

        class Events:
            async def emit(self, turn: TurnRequest, event: Any) -> None:
                world.timeline.append("event")
                world.events.append(event)

        ctx = SimpleNamespace(publish=publish, subjects=Subjects(), counters=self.counters)
        return Finisher(cast(ServiceContext, ctx), cast(SessionStore, Store()), cast(TurnEvents, Events()))

    def msg(self, seq: int = 0) -> Any:
        world = self

        class Msg:
            metadata = SimpleNamespace(sequence=SimpleNamespace(stream=seq))

            async def ack(self) -> None:
                world.timeline.append("ack")
                world.acked = True

        return Msg()

    def outbound(self) -> list[OutboundMessage]:
        return [msgspec.json.decode(data, type=OutboundMessage) for _, data, _ in self.published]


async def test_finish_stores_records_then_completion_then_replies_then_acks() -> None:
    world = _World(stored_revision=7)
    previous = DoneRecord(seq=1, turn_id="t1", context=_exchange("t1", 1, "a"), has_context=True)
    answer = TxAssistant(turn_id="t2", seq=2, text="the answer", model="m")
    done, revision = await world.finisher().finish(
        _turn(), world.msg(), TurnOutcome(text="the answer", model="m", usage=(3, 4)), [answer], (previous, 7)
    )
    # the transcript batch and the completion record are written together, before the reply
    assert sorted(world.timeline[:2]) == ["append", "done"]
    timeline = world.timeline
    assert timeline.index("reply") < timeline.index("status") < timeline.index("ack")
    assert "settled" not in timeline  # the session's next turn here replaces the record anyway
    assert [msg_id for _, msg_id in world.appended] == ["t2:tx", "t2:tx"]  # one message
    # the record as it is stored now: the reply still marked pending, though it is stored
    assert world.done == done and done.reply is not None and revision == world.revision == 8
    # when the runner lets the session go, the record is written without it
    settled, settled_revision = await world.finisher().settle("agent:main:main", (done, revision))
    assert settled.reply is None and world.done == settled and settled_revision == world.revision == 9
    assert (settled.seq, settled.turn_id, settled.final_text, settled.model, settled.has_context) == (
        2,
        "t2",
        "the answer",
        "m",
        True,
    )
    assert settled.context == [*previous.context, *(entry for entry, _ in world.appended)]
    ((subject, _, headers),) = world.published
    assert subject == Subjects().outbound("api", "default") and headers["Nats-Msg-Id"] == "out:t2"
    (final,) = world.events
    assert isinstance(final, TurnFinal) and (final.text, final.input_tokens, final.output_tokens) == (
        "the answer",
        3,
        4,
    )
    assert world.statuses["t2"].state == "done"
    assert world.counters["turns_completed"] == 1


async def test_a_failed_turn_is_recorded_with_its_error_and_answered_with_it() -> None:
    world = _World()
    outcome = TurnOutcome.failed(ClawmeshError("MODEL_ERROR", "overloaded", "add fallbacks"))
    done, _ = await world.finisher().finish(_turn(), world.msg(), outcome, [], (DoneRecord(), 0))
    assert isinstance(done.context[-1], TxError) and done.context[-1].code == "MODEL_ERROR"
    assert done.is_error and done.final_text == "⚠️ overloaded — add fallbacks"
    (error,) = world.events
    assert isinstance(error, TurnError) and (error.code, error.hint) == ("MODEL_ERROR", "add fallbacks")
    assert world.outbound()[0].is_error
    assert world.statuses["t2"].error_code == "MODEL_ERROR"
    assert world.counters["turns_failed"] == 1


async def test_a_reply_that_cannot_be_stored_fails_the_finish_after_the_completion_record() -> None:
    world = _World(fail_publish=True)
    with pytest.raises(ConnectionError):
        await world.finisher().finish(_turn(), world.msg(), TurnOutcome(text="a"), [], (DoneRecord(), 0))
    # a redelivery (or the session's next turn) publishes the reply from it instead of running again
    assert world.done is not None and world.done.reply is not None
    assert world.done.reply.msg_id == "out:t2"
    assert not world.acked and "status" not in world.timeline


async def test_a_transcript_batch_that_failed_is_appended_again_before_the_reply() -> None:
    world = _World()
    finisher = world.finisher()
    world.fail_append = True
    answer = TxAssistant(turn_id="t2", seq=2, text="kept", model="m")
    with pytest.raises(ConnectionError):
        await finisher.finish(_turn(), world.msg(), TurnOutcome(text="kept"), [answer], (DoneRecord(), 0))
    # the completion record was stored with the reply and the batch pending; nothing replied
    assert world.done is not None and world.done.reply is not None
    assert world.done.reply.transcript == "t2:tx" and world.published == [] and not world.acked
    world.fail_append = False
    world.timeline.clear()
    await finisher.deliver("agent:main:main", (world.done, world.revision))
    assert world.timeline[:2] == ["append", "reply"]  # the transcript first, with the same id
    assert [(type(e).__name__, msg_id) for e, msg_id in world.appended] == [
        ("TxUser", "t2:tx"),
        ("TxAssistant", "t2:tx"),
    ]
    assert [o.text for o in world.outbound()] == ["kept"]


async def test_a_stale_runner_loses_the_completion_record_and_replies_nothing() -> None:
    world = _World(stored_revision=5)  # another runner wrote revisions 4 and 5 meanwhile
    with pytest.raises(CompletionConflict):
        await world.finisher().finish(_turn(), world.msg(), TurnOutcome(text="late"), [], (DoneRecord(), 3))
    assert world.published == [] and world.events == [] and world.done is None
    assert not world.acked and world.counters["turns_stale"] == 1


async def test_a_pending_reply_is_delivered_and_settled() -> None:
    world = _World()
    finisher = world.finisher()
    with pytest.raises(ConnectionError):
        world.fail_publish = True
        await finisher.finish(_turn(), world.msg(), TurnOutcome(text="kept"), [], (DoneRecord(), 0))
    world.fail_publish = False
    assert world.done is not None
    done, revision = await finisher.deliver("agent:main:main", (world.done, world.revision))
    assert [o.text for o in world.outbound()] == ["kept"]
    assert world.published[0][2]["Nats-Msg-Id"] == "out:t2"
    assert done.reply is None and revision == world.revision
    # nothing pending: nothing to publish, no write
    assert await finisher.deliver("agent:main:main", (done, revision)) == (done, revision)
    assert len(world.published) == 1


async def test_a_pending_reply_whose_turn_was_acked_is_only_settled() -> None:
    # its runner stored it, acked the turn (CM_TURNS dropped it) and stopped before settling
    world = _World()
    finisher = world.finisher()
    done, _ = await finisher.finish(
        _turn(), world.msg(seq=41), TurnOutcome(text="once"), [], (DoneRecord(), 0)
    )
    assert len(world.published) == 1 and done.reply is not None and done.reply.turn_seq == 41
    world.turns_stream.clear()
    settled, _ = await finisher.deliver("agent:main:main", (done, world.revision))
    assert len(world.published) == 1 and settled.reply is None and world.done == settled
    assert world.turn_lookups == [41]


async def test_a_pending_reply_whose_turn_is_still_queued_is_stored_again() -> None:
    world = _World()
    finisher = world.finisher()
    done, _ = await finisher.finish(
        _turn(), world.msg(seq=41), TurnOutcome(text="once"), [], (DoneRecord(), 0)
    )
    world.turns_stream.add(41)  # not acked: the ack may not have been sent
    await finisher.deliver("agent:main:main", (done, world.revision))
    assert [h["Nats-Msg-Id"] for _, _, h in world.published] == ["out:t2", "out:t2"]  # deduplicated


async def test_the_last_turn_delivered_again_with_its_reply_pending_publishes_it() -> None:
    world = _World()
    finisher = world.finisher()
    world.fail_publish = True
    with pytest.raises(ConnectionError):
        await finisher.finish(_turn(), world.msg(), TurnOutcome(text="stored answer"), [], (DoneRecord(), 0))
    world.fail_publish = False
    world.events.clear()
    assert world.done is not None
    await finisher.replay(_turn(), (world.done, world.revision))
    assert [o.text for o in world.outbound()] == ["stored answer"]
    assert world.published[0][2]["Nats-Msg-Id"] == "out:t2"  # the outbound stream drops a second copy
    assert [e.text for e in world.events] == ["stored answer"]
    assert world.done.reply is None
    assert world.counters["turns_replayed"] == 1


async def test_a_record_from_before_pending_replies_without_a_status_is_answered_again() -> None:
    world = _World(stored_revision=1)
    done = DoneRecord(seq=2, turn_id="t2", final_text="stored answer", model="m", has_context=True)
    await world.finisher().replay(_turn(), (done, 1))
    assert [o.text for o in world.outbound()] == ["stored answer"]
    assert [e.text for e in world.events] == ["stored answer"]


async def test_an_older_turn_delivered_again_is_answered_from_the_context() -> None:
    world = _World()
    done = DoneRecord(
        seq=2, turn_id="t2", final_text="b", context=[*_exchange("t1", 1, "a"), *_exchange("t2", 2, "b")]
    )
    await world.finisher().replay(_turn("t1", 1), (done, 1))
    # its reply is in CM_OUTBOUND already (t2 ran only after it was): not published again, after t2's
    assert world.published == []
    assert [(e.turn_id, e.text, e.model) for e in world.events] == [("t1", "a", "m2")]


async def test_a_replayed_turn_whose_status_is_recorded_is_not_stored_again() -> None:
    world = _World(status=TurnStatus(state="done"))
    await world.finisher().replay(_turn(), (DoneRecord(seq=2, turn_id="t2", final_text="b"), 1))
    assert world.published == []  # its reply is stored already
    assert [e.text for e in world.events] == ["b"]  # a waiting caller still hears it


async def test_a_turn_no_longer_in_the_context_is_not_answered(caplog: pytest.LogCaptureFixture) -> None:
    world = _World()
    done = DoneRecord(seq=9, turn_id="t9", final_text="z", context=_exchange("t9", 9, "z"))
    with caplog.at_level(logging.WARNING, "clawmesh.runner"):
        await world.finisher().replay(_turn("t1", 1), (done, 1))
    assert world.published == [] and world.events == []
    assert "no longer in the session context" in caplog.text


async def test_model_context_comes_from_the_completion_record() -> None:
    world = _World()
    finisher = world.finisher()
    context = _exchange("t1", 1, "a")
    assert await finisher.history(_turn(), DoneRecord(seq=1, context=context, has_context=True)) == context
    assert await finisher.history(_turn(), DoneRecord()) == []  # a new session
    assert world.history_reads == []
    # a record written before context was kept: read the transcript stream, bounded
    assert await finisher.history(_turn(), DoneRecord(seq=4)) == ["from the stream"]
    assert world.history_reads == [CONTEXT_ENTRIES]
