"""Finishing a turn: persist its transcript, record its completion, reply once and in order;
and answering a turn delivered again from what was recorded (replay).

The completion record (KV `sessions`, `d.<session>`) carries the final text and, as model
context, the session's most recent transcript records: the next turn, on any runner, reads its
context with the one KV read it makes anyway, and an older turn delivered again is answered
from that context.

Replies reach CM_OUTBOUND in session order, whatever is redelivered:
1. the completion record is written with compare-and-set against the revision the turn was
   started from, so a stale runner (stopped, its lease taken over) loses and publishes nothing;
2. it carries the turn's reply as pending (`PendingReply`) until the reply is stored: the
   record is then written again without it;
3. a session's next turn runs only after its predecessor's pending reply was published
   (`deliver`) with the same `Nats-Msg-Id` (`out:<turn id>`), which the stream deduplicates.
So when turn n's reply is published, every earlier turn's reply is in the stream already.
The turn's transcript records go out as one message together with the completion record; the
pending reply names that batch, and whoever publishes a pending reply appends the batch again
first (same `Nats-Msg-Id`), so the transcript is complete and in order before anything newer.
"""

from __future__ import annotations

import asyncio
import logging

import msgspec
from nats.aio.msg import Msg

from clawmesh.bus import ServiceContext, inject
from clawmesh.errors import best_effort
from clawmesh.sessions import (
    CONTEXT_BYTES,
    CONTEXT_ENTRIES,
    CompletionConflict,
    DoneRecord,
    PendingReply,
    SessionStore,
    TranscriptEntry,
    TurnStatus,
    TxAssistant,
    TxError,
    TxUser,
    bounded,
)
from clawmesh.wire import OutboundMessage, TurnError, TurnFinal, TurnRequest, encode_json

from .events import TurnEvents, stamp
from .turn import TurnOutcome, user_text

__all__ = [
    "CONTEXT_BYTES",
    "CONTEXT_ENTRIES",
    "Completion",
    "Finisher",
    "bounded",
    "result_in_context",
]

log = logging.getLogger("clawmesh.runner")


# A session's completion record and its KV revision (0: none stored yet), the condition of the
# next write.
Completion = tuple[DoneRecord, int]


def result_in_context(context: list[TranscriptEntry], turn_id: str) -> DoneRecord | None:
    """An older turn's result, rebuilt from the transcript records kept as context."""
    mine = [e for e in context if e.turn_id == turn_id]
    if not mine:
        return None
    error = next((e for e in reversed(mine) if isinstance(e, TxError)), None)
    if error is not None:
        return DoneRecord(seq=error.seq, turn_id=turn_id, final_text=f"⚠️ {error.message}", is_error=True)
    reply = next((e for e in reversed(mine) if isinstance(e, TxAssistant)), None)
    if reply is None:
        return None
    return DoneRecord(seq=reply.seq, turn_id=turn_id, final_text=reply.text, model=reply.model)


def _stream_seq(msg: Msg) -> int:
    """The message's sequence in its stream; 0 when it has none (not from JetStream)."""
    try:
        return int(msg.metadata.sequence.stream)
    except (AttributeError, TypeError, ValueError):
        return 0


def _outcome_event(turn: TurnRequest, done: DoneRecord, outcome: TurnOutcome | None) -> TurnFinal | TurnError:
    """The `final` or `error` event of a turn recorded as `done` (`outcome`: when it was run
    here now, not answered from a record)."""
    if done.is_error:
        err = outcome.error if outcome is not None and outcome.error is not None else None
        return TurnError(
            **stamp(turn),
            code=err.code if err else "TURN_FAILED",
            message=err.message if err else done.final_text,
            hint=err.hint if err else "",
        )
    usage = outcome.usage if outcome is not None else (0, 0)
    return TurnFinal(
        **stamp(turn),
        text=done.final_text,
        model=done.model,
        input_tokens=usage[0],
        output_tokens=usage[1],
        tool_calls=list(outcome.tool_calls) if outcome is not None else [],
        stop_reason=outcome.stop_reason if outcome is not None else "",
    )


class Finisher:
    """Writes what a turn leaves behind and replies, in the order crash safety needs."""

    def __init__(self, ctx: ServiceContext, store: SessionStore, events: TurnEvents) -> None:
        self.ctx = ctx
        self.store = store
        self.events = events

    async def history(self, turn: TurnRequest, done: DoneRecord) -> list[TranscriptEntry]:
        """The model context: kept in the completion record, so any runner gets it with the
        one KV read it already made. Only sessions written before that existed read the stream."""
        if done.has_context or done.seq == 0:
            return list(done.context)
        return await self.store.history(turn.agent_id, turn.session_key, limit=CONTEXT_ENTRIES)

    async def finish(
        self,
        turn: TurnRequest,
        msg: Msg,
        outcome: TurnOutcome,
        entries: list[TranscriptEntry],
        previous: Completion,
        *,
        in_context: bool = True,
    ) -> Completion:
        """Persist, record completion, reply once, ack; returns the new completion record.
        `in_context` False (a command answered without the model): the turn's records go to
        the transcript but not into the model context.
        Order matters for crash safety: the completion record (with the final text and the
        pending reply) is written before replying, so a replay after a crash answers from it
        instead of running the turn again. CompletionConflict: a newer record exists (this
        runner is stale); nothing was replied."""
        store = self.store
        inbound = turn.inbound
        before, revision = previous
        records: list[TranscriptEntry] = [
            TxUser(
                turn_id=turn.turn_id,
                seq=turn.seq,
                text=inbound.text,
                sender=inbound.sender.id if inbound.sender else None,
                channel=inbound.channel,
                ts=inbound.received_at or turn.routed_at,
            ),
            *entries,
        ]
        if outcome.error is not None:
            records.append(
                TxError(
                    turn_id=turn.turn_id, seq=turn.seq, code=outcome.error.code, message=outcome.error.message
                )
            )
        is_error = outcome.error is not None
        tx_id = f"{turn.turn_id}:tx"
        record = DoneRecord(
            seq=turn.seq,
            turn_id=turn.turn_id,
            final_text=outcome.text if outcome.error is None else user_text(outcome.error),
            is_error=is_error,
            model=outcome.model,
            context=[*before.context, *records] if in_context else list(before.context),
            has_context=True,
            reply=self._pending(turn, is_error=is_error, transcript=tx_id, turn_seq=_stream_seq(msg)),
        )
        announced = outcome.kept and not is_error
        if announced:
            # Another gateway made and recorded this answer and keeps it under the turn's id:
            # whoever asks again for the turn (this runner's successor after a crash) gets the
            # same. So the caller has it now rather than after this gateway's own record of it
            # (a local answer exists nowhere else until that record, so it waits for it).
            await self.events.emit(turn, _outcome_event(turn, record, outcome))
        done, data = bounded(record)
        # The transcript (one message for the turn's records) and the completion record are
        # written together, one round trip. A batch that was not stored is appended again from
        # the record's context, with the same Nats-Msg-Id, before the reply is published
        # (`deliver`, `replay`): the transcript keeps the session's order either way.
        appended, stored = await asyncio.gather(
            store.append_batch(turn.agent_id, turn.session_key, records, tx_id),
            store.put_done(turn.session_key, done, data, last=revision),
            return_exceptions=True,
        )
        if isinstance(stored, CompletionConflict):
            self.ctx.counters["turns_stale"] += 1
            log.warning("runner: turn %s was completed elsewhere meanwhile; not replying", turn.turn_id)
            raise stored
        if isinstance(stored, BaseException):
            raise stored
        if isinstance(appended, BaseException):
            raise appended  # handed back: the completion record has the reply (and batch) pending
        revision = stored
        # The record keeps the reply marked pending although it is stored now: the session's
        # next turn here replaces the record anyway, and `settle` clears it when this runner lets
        # the session go (one write per claim instead of one per turn).
        completion = await self._reply(turn, (done, revision), outcome, settle=False, announced=announced)
        self.ctx.counters["turns_failed" if outcome.error else "turns_completed"] += 1
        await msg.ack()
        return completion

    async def settle(self, session_key: str, completion: Completion) -> Completion:
        """The record without its pending reply, which this runner stored: written when it lets
        the session go, so that the next holder need not look for that reply again."""
        if completion[0].reply is None:
            return completion
        return await self._settled(session_key, completion)

    async def deliver(self, session_key: str, completion: Completion) -> Completion:
        """Publish the record's pending reply (a runner stopped or failed between recording a
        turn and storing its reply) before anything newer of the session; the record without it."""
        done, _ = completion
        if done.reply is None:
            return completion
        # Its runner may have stored it and stopped before settling the record (it settles
        # when it lets the session go). Its turn is acked only after that, and acked turns are
        # gone from CM_TURNS; otherwise store it again, with the same Nats-Msg-Ids.
        if not await self.store.turn_acked(done.reply.turn_seq):
            self.ctx.counters["replies_delivered_late"] += 1
            await self._restore(done, done.reply)
        return await self._settled(session_key, completion)

    async def replay(self, turn: TurnRequest, completion: Completion) -> Completion:
        """A completed turn delivered again (a runner died between completing and acking it):
        reply from what was stored — the completion record for the last turn, its context for
        an older one. An older turn's reply is stored already (a turn runs only after its
        predecessor's reply is); the last turn's is when its turn status was written (that
        happens only after the reply is stored); else it is stored again, the same dedupe id."""
        self.ctx.counters["turns_replayed"] += 1
        done, _ = completion
        if done.turn_id != turn.turn_id:
            found = result_in_context(done.context, turn.turn_id)
            if found is None:
                log.warning(
                    "runner: turn %s was completed but is no longer in the session context", turn.turn_id
                )
                return completion
            await self._reply(turn, (found, 0), None, stored=True)
            return completion
        stored = await self.store.get_turn_status(turn.turn_id) is not None
        if done.reply is None and not stored:
            # a record written before replies were kept pending in it
            done = msgspec.structs.replace(done, reply=self._pending(turn, is_error=done.is_error))
            completion = (done, completion[1])
        return await self._reply(turn, completion, None, stored=stored, restore=True)

    def _pending(
        self, turn: TurnRequest, *, is_error: bool, transcript: str | None = None, turn_seq: int = 0
    ) -> PendingReply:
        """The turn's reply as it is stored in CM_OUTBOUND (text aside), once per turn id."""
        inbound = turn.inbound
        return PendingReply(
            subject=self.ctx.subjects.outbound(turn.route.channel, turn.route.account_id),
            msg_id=f"out:{turn.turn_id}",
            message=OutboundMessage(
                **stamp(turn),
                channel=turn.route.channel,
                account_id=turn.route.account_id,
                text="",
                peer=inbound.peer,
                thread_id=inbound.thread_id,
                reply_to=inbound.message_id,
                is_error=is_error,
            ),
            transcript=transcript,
            turn_seq=turn_seq,
        )

    async def _publish(self, reply: PendingReply, text: str) -> None:
        data, hdrs = encode_json(reply.outbound(text))
        hdrs["Nats-Msg-Id"] = reply.msg_id
        await self.ctx.publish(reply.subject, data, inject(hdrs))

    async def _restore(self, done: DoneRecord, reply: PendingReply) -> None:
        """Store what a turn recorded as pending, which a crash or failure may have left out: its
        transcript batch (from the record's context) and then its reply. The same Nats-Msg-Ids:
        whatever was stored already is dropped as a duplicate."""
        if reply.transcript is not None:
            mine = [e for e in done.context if e.turn_id == done.turn_id]
            if mine:
                message = reply.message
                await self.store.append_batch(message.agent_id, message.session_key, mine, reply.transcript)
        await self._publish(reply, done.final_text)

    async def _settled(self, session_key: str, completion: Completion) -> Completion:
        """The record again, without its pending reply (which is stored now). A conflict means
        another runner has moved the session on: this one is stale (CompletionConflict)."""
        done, revision = completion
        settled = msgspec.structs.replace(done, reply=None)
        return settled, await self.store.put_done(session_key, settled, last=revision)

    async def _reply(
        self,
        turn: TurnRequest,
        completion: Completion,
        outcome: TurnOutcome | None,
        *,
        stored: bool = False,
        restore: bool = False,
        settle: bool = True,
        announced: bool = False,
    ) -> Completion:
        """Store the record's pending reply in CM_OUTBOUND and emit `final`/`error` (unless it
        was `announced` already); then record that it is stored: the turn's status, and
        (`settle`) the completion record without it."""
        done, _ = completion
        event = _outcome_event(turn, done, outcome)
        status = TurnStatus(
            state="error" if done.is_error else "done",
            agent_id=turn.agent_id,
            session_key=turn.session_key,
            text=done.final_text,
            error_code=event.code if isinstance(event, TurnError) else None,
            error_message=event.message if isinstance(event, TurnError) else None,
        )
        reply = done.reply

        async def store_reply() -> None:
            if reply is not None and not stored:
                if restore:
                    await self._restore(done, reply)
                else:
                    await self._publish(reply, done.final_text)

        async def emit() -> None:
            if not announced:
                await self.events.emit(turn, event)

        # The reply and the event are independent; the completion record is already stored.
        outbound, _ = await asyncio.gather(store_reply(), emit(), return_exceptions=True)
        if isinstance(outbound, BaseException):
            raise outbound  # the reply must be stored: the turn is handed back and replayed

        async def status_written() -> None:
            # without it a poller of GET /v1/turns/<id> sees "unknown" until the reply reaches it
            with best_effort(self.ctx.counters, "turn_status_write", log=log):
                await self.store.put_turn_status(turn.turn_id, status)

        if reply is None or not settle:
            await status_written()
            return completion
        settled, _ = await asyncio.gather(self._settled(turn.session_key, completion), status_written())
        return settled
