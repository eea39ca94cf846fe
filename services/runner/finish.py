"""Finishing a turn: persist its transcript, record its completion, reply once; and answering a
turn delivered again from what was recorded (replay).

The completion record (KV `sessions`, `d.<session>`) carries the final text and, as model
context, the session's most recent transcript records: the next turn, on any runner, reads its
context with the one KV read it makes anyway, and an older turn delivered again is answered
from that context.
"""

from __future__ import annotations

import asyncio
import logging

import msgspec
from nats.aio.msg import Msg

from clawmesh.bus import ServiceContext, inject
from clawmesh.errors import best_effort
from clawmesh.sessions import (
    DoneRecord,
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

__all__ = ["CONTEXT_BYTES", "CONTEXT_ENTRIES", "Finisher", "bounded", "result_in_context"]

log = logging.getLogger("clawmesh.runner")

# Transcript records kept as model context in the completion record (the model sees at most
# runtime.historyLimit messages of them), and the size that record may reach.
CONTEXT_ENTRIES = 200
CONTEXT_BYTES = 512 * 1024
_encoder = msgspec.json.Encoder()


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
        previous: DoneRecord,
    ) -> DoneRecord:
        """Persist, record completion, reply once, ack; returns the new completion record.
        Order matters for crash safety: the completion record (with the final text) is written
        before replying, so a replay after a crash answers from it instead of running the turn
        again."""
        store = self.store
        inbound = turn.inbound
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
                context=[*previous.context, *records],
                has_context=True,
            )
        )
        await store.put_done(turn.session_key, done, data)
        await self._reply(turn, done, outcome)
        self.ctx.counters["turns_failed" if outcome.error else "turns_completed"] += 1
        await msg.ack()
        return done

    async def replay(self, turn: TurnRequest, done: DoneRecord) -> None:
        """A completed turn delivered again (a runner died between completing and acking it):
        reply from what was stored — the completion record for the last turn, its context for
        an older one. The outbound stream's dedupe keeps the reply to one delivery, and a turn
        whose status is recorded has its reply stored already."""
        self.ctx.counters["turns_replayed"] += 1
        if done.turn_id != turn.turn_id:
            found = result_in_context(done.context, turn.turn_id)
            if found is None:
                log.warning(
                    "runner: turn %s was completed but is no longer in the session context", turn.turn_id
                )
                return
            done = found
        status = await self.store.get_turn_status(turn.turn_id)
        await self._reply(turn, done, None, stored=status is not None)

    async def _reply(
        self, turn: TurnRequest, done: DoneRecord, outcome: TurnOutcome | None, *, stored: bool = False
    ) -> None:
        """Store the reply (CM_OUTBOUND, once per turn id) and emit `final`/`error`; then record
        the turn's status — present only when its reply is surely stored (`stored`: it is)."""
        inbound = turn.inbound
        out = OutboundMessage(
            **stamp(turn),
            channel=turn.route.channel,
            account_id=turn.route.account_id,
            text=done.final_text,
            peer=inbound.peer,
            thread_id=inbound.thread_id,
            reply_to=inbound.message_id,
            is_error=done.is_error,
        )
        data, hdrs = encode_json(out)
        hdrs["Nats-Msg-Id"] = f"out:{turn.turn_id}"
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
        subject = self.ctx.subjects.outbound(turn.route.channel, turn.route.account_id)

        async def store_reply() -> None:
            if not stored:
                await self.ctx.js.publish(subject, data, headers=inject(hdrs))

        # The reply and the event are independent; the completion record is already stored.
        outbound, _ = await asyncio.gather(
            store_reply(), self.events.emit(turn, event), return_exceptions=True
        )
        if isinstance(outbound, BaseException):
            raise outbound  # the reply must be stored: the turn is handed back and replayed
        # The reply is stored and the caller has its event; without the status a poller of
        # GET /v1/turns/<id> sees "unknown" until the turn's reply reaches it some other way.
        with best_effort(self.ctx.counters, "turn_status_write", log=log):
            await self.store.put_turn_status(turn.turn_id, status)
