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
"""

from __future__ import annotations

import asyncio
import logging

import msgspec
from nats.aio.msg import Msg

from clawmesh.bus import ServiceContext, inject
from clawmesh.errors import best_effort
from clawmesh.sessions import (
    CompletionConflict,
    DoneRecord,
    PendingReply,
    SessionStore,
    TranscriptEntry,
    TurnStatus,
    TxAssistant,
    TxError,
    TxUser,
)
from clawmesh.wire import OutboundMessage, TurnError, TurnEvent, TurnFinal, TurnRequest, encode_json

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

# Transcript records kept as model context in the completion record (the model sees at most
# runtime.historyLimit messages of them), and the size that record may reach.
CONTEXT_ENTRIES = 200
CONTEXT_BYTES = 512 * 1024
_encoder = msgspec.json.Encoder()

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


def bounded(done: DoneRecord) -> tuple[DoneRecord, bytes]:
    """The record with the newest context entries that fit both limits, and its encoding."""
    if len(done.context) > CONTEXT_ENTRIES:
        done = msgspec.structs.replace(done, context=done.context[-CONTEXT_ENTRIES:])
    data = _encoder.encode(done)
    while len(done.context) > 1 and len(data) > CONTEXT_BYTES:
        done = msgspec.structs.replace(done, context=done.context[len(done.context) // 4 or 1 :])
        data = _encoder.encode(done)
    return done, data


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
    ) -> Completion:
        """Persist, record completion, reply once, ack; returns the new completion record.
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
        # one subject per session, one connection: stored in this order even when sent together
        await asyncio.gather(
            *(
                store.append(turn.agent_id, turn.session_key, r, f"{turn.turn_id}:{i}")
                for i, r in enumerate(records)
            )
        )
        done, data = bounded(
            DoneRecord(
                seq=turn.seq,
                turn_id=turn.turn_id,
                final_text=outcome.text if outcome.error is None else user_text(outcome.error),
                is_error=outcome.error is not None,
                model=outcome.model,
                context=[*before.context, *records],
                has_context=True,
                reply=self._pending(turn, is_error=outcome.error is not None),
            )
        )
        try:
            revision = await store.put_done(turn.session_key, done, data, last=revision)
        except CompletionConflict:
            self.ctx.counters["turns_stale"] += 1
            log.warning("runner: turn %s was completed elsewhere meanwhile; not replying", turn.turn_id)
            raise
        completion = await self._reply(turn, (done, revision), outcome)
        self.ctx.counters["turns_failed" if outcome.error else "turns_completed"] += 1
        await msg.ack()
        return completion

    async def deliver(self, session_key: str, completion: Completion) -> Completion:
        """Publish the record's pending reply (a runner stopped or failed between recording a
        turn and storing its reply) before anything newer of the session; the record without it."""
        done, _ = completion
        if done.reply is None:
            return completion
        self.ctx.counters["replies_delivered_late"] += 1
        await self._publish(done.reply, done.final_text)
        return await self._settled(session_key, completion)

    async def replay(self, turn: TurnRequest, completion: Completion) -> Completion:
        """A completed turn delivered again (a runner died between completing and acking it):
        reply from what was stored — the completion record for the last turn, its context for
        an older one. An older turn's reply is stored already (a turn runs only after its
        predecessor's reply is); the last turn's is, unless the record still has it pending
        (or, for records written before replies were tracked there, no turn status says so)."""
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
        stored = done.reply is None and await self.store.get_turn_status(turn.turn_id) is not None
        if done.reply is None and not stored:
            # a record written before replies were kept pending in it
            done = msgspec.structs.replace(done, reply=self._pending(turn, is_error=done.is_error))
            completion = (done, completion[1])
        return await self._reply(turn, completion, None, stored=stored)

    def _pending(self, turn: TurnRequest, *, is_error: bool) -> PendingReply:
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
        )

    async def _publish(self, reply: PendingReply, text: str) -> None:
        data, hdrs = encode_json(reply.outbound(text))
        hdrs["Nats-Msg-Id"] = reply.msg_id
        await self.ctx.publish(reply.subject, data, inject(hdrs))

    async def _settled(self, session_key: str, completion: Completion) -> Completion:
        """The record again, without its pending reply (which is stored now). A conflict means
        another runner has moved the session on: this one is stale (CompletionConflict)."""
        done, revision = completion
        settled = msgspec.structs.replace(done, reply=None)
        return settled, await self.store.put_done(session_key, settled, last=revision)

    async def _reply(
        self, turn: TurnRequest, completion: Completion, outcome: TurnOutcome | None, *, stored: bool = False
    ) -> Completion:
        """Store the record's pending reply in CM_OUTBOUND and emit `final`/`error`; then record
        that it is stored (the completion record without it, and the turn's status)."""
        done, _ = completion
        event: TurnEvent
        if done.is_error:
            err = outcome.error if outcome is not None and outcome.error is not None else None
            event = TurnError(
                **stamp(turn),
                code=err.code if err else "TURN_FAILED",
                message=err.message if err else done.final_text,
                hint=err.hint if err else "",
            )
        else:
            usage = outcome.usage if outcome is not None else (0, 0)
            event = TurnFinal(
                **stamp(turn),
                text=done.final_text,
                model=done.model,
                input_tokens=usage[0],
                output_tokens=usage[1],
                tool_calls=list(outcome.tool_calls) if outcome is not None else [],
                stop_reason=outcome.stop_reason if outcome is not None else "",
            )
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
                await self._publish(reply, done.final_text)

        # The reply and the event are independent; the completion record is already stored.
        outbound, _ = await asyncio.gather(
            store_reply(), self.events.emit(turn, event), return_exceptions=True
        )
        if isinstance(outbound, BaseException):
            raise outbound  # the reply must be stored: the turn is handed back and replayed

        async def status_written() -> None:
            # without it a poller of GET /v1/turns/<id> sees "unknown" until the reply reaches it
            with best_effort(self.ctx.counters, "turn_status_write", log=log):
                await self.store.put_turn_status(turn.turn_id, status)

        if reply is None:
            await status_written()
            return completion
        settled, _ = await asyncio.gather(self._settled(turn.session_key, completion), status_written())
        return settled
