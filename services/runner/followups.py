"""What happens after an internal turn replied: a sub-agent's result is announced to its
requester, and a `sessions_send` exchange takes its next ping-pong or announce step.

Both start from the turn's reply in CM_OUTBOUND (`cm.out.subagent.*`, `cm.out.a2a.*`), which
the runner stores exactly once per turn whatever crashed or was redelivered (`finish.py`). A
durable consumer shared by every runner reads those replies and publishes the next turn (or
the outbound message) with a dedupe id made from the reply's turn id, then acks: a runner
killed in between leaves the reply unacked, another runner handles it again and JetStream
drops the second copy. So each child run is announced once, and each step happens once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from typing import Any

from nats.aio.msg import Msg

from clawmesh.bus import ServiceContext, inject, kept_in_progress, pull_forever
from clawmesh.errors import best_effort
from clawmesh.sessions import A2ARecord, SpawnRecord
from clawmesh.tools.a2a_text import (
    REPLY_SKIP,
    a2a_announce_prompt,
    a2a_reply_prompt,
    announce_block,
    is_announce_skip,
    is_silent,
)
from clawmesh.wire import (
    A2AEvent,
    DecodeFailure,
    InboundMessage,
    OutboundMessage,
    Sender,
    TurnOptions,
    decode,
    encode_json,
)

from .internal_turns import A2A_CHANNEL, SUBAGENT_CHANNEL, a2a_turn_id
from .remote_send import FIRST_STEP_REQUEST, is_remote_target, remote_step
from .session_tools import publish_a2a_event, submit_inbound

__all__ = ["Followups"]

log = logging.getLogger("clawmesh.runner")

_INTERNAL = (SUBAGENT_CHANNEL, A2A_CHANNEL)


def _duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    minutes, secs = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes}m{secs}s" if hours else f"{minutes}m{secs}s" if minutes else f"{secs}s"


class Followups:
    """The announce and ping-pong driver (one durable consumer per family, shared by runners)."""

    def __init__(self, ctx: ServiceContext, stopping: asyncio.Event) -> None:
        self.ctx = ctx
        self.stopping = stopping
        self._tasks: list[asyncio.Task[None]] = []
        self._subs: list[Any] = []

    async def start(self) -> None:
        s = self.ctx.subjects
        stream = s.stream("OUTBOUND")
        for channel, durable, handle, apart in (
            (SUBAGENT_CHANNEL, "runner-announce", self._announce, _all_together),
            (A2A_CHANNEL, "runner-a2a", self._a2a_step, _by_exchange),
        ):
            psub = await self.ctx.pull_consumer(
                f"{s.prefix}.out.{channel}.>", stream, durable, max_ack_pending=1000
            )
            self._subs.append(psub)

            async def batch(msgs: list[Msg], handle: Any = handle, apart: Any = apart) -> None:
                # exchanges apart (a step on another gateway takes as long as its turn there);
                # one exchange's replies, and every announce, in stream order
                await asyncio.gather(*(self._in_order(group, handle) for group in apart(msgs)))

            self._tasks.append(
                asyncio.create_task(
                    pull_forever(psub, batch, batch=32, stop=self.stopping, name=durable), name=durable
                )
            )

    async def stop(self) -> None:
        for task in self._tasks:
            with (
                contextlib.suppress(asyncio.CancelledError),
                best_effort(self.ctx.counters, "followups_stop", log=log),
            ):
                await asyncio.wait_for(task, 5)
        for psub in self._subs:
            with best_effort(self.ctx.counters, "consumer_unsubscribe", log=log):
                await psub.unsubscribe()

    async def _in_order(self, msgs: list[Msg], handle: Any) -> None:
        for msg in msgs:
            await self._one(msg, handle)

    async def _one(self, msg: Msg, handle: Any) -> None:
        try:
            out = decode(msg.data, OutboundMessage, msg.headers)
        except DecodeFailure as exc:
            await self.ctx.dead_letter(msg.subject, str(exc), msg.data, msg.headers)
            await msg.term()
            return
        try:
            # a follow-up may wait on another gateway's turn: not redelivered meanwhile
            async with kept_in_progress(msg, self.ctx.layout.lease_seconds / 3):
                # delivered before: a step asked of another gateway may have been answered there
                await handle(out, (msg.metadata.num_delivered or 1) > 1)
        except Exception:
            log.exception("runner: follow-up of turn %s failed; it is tried again", out.turn_id)
            with best_effort(self.ctx.counters, "followup_nak", log=log):
                await msg.nak(delay=1.0)
            return
        await msg.ack()

    # --- sub-agent announce ------------------------------------------------------------------
    async def _announce(self, out: OutboundMessage, again: bool = False) -> None:
        store = self.ctx.sessions
        # the child session's record (its session id, for the announce's stats) is read
        # alongside the run's: one round trip instead of two on the way to the announce turn
        spawn, found = await asyncio.gather(
            store.get_spawn(out.session_key), store.get_session(out.session_key)
        )
        if spawn is None:
            return  # not a run this gateway spawned: nobody to tell
        session_id = found[0].session_id if found else "unknown"
        status, error = "ok", ""
        if out.is_error:
            status = spawn.status if spawn.status in ("timeout", "stopped", "error") else "error"
            error = spawn.error or out.text.removeprefix("⚠️ ")
        tell = self._tell(spawn, out, status, error, session_id)
        if out.turn_id == spawn.run_id and spawn.status == "running":
            # the run's end is for limits and listings: written alongside the announce
            event, _ = await asyncio.gather(tell, store.put_spawn(_ended(spawn, status, error)))
        else:
            event = await tell
        # the event last, right before the ack (`_one`): both leave in one write, which the
        # announce turn's routing would otherwise wait behind
        await publish_a2a_event(self.ctx, event)

    async def _tell(
        self, spawn: SpawnRecord, out: OutboundMessage, status: str, error: str, session_id: str
    ) -> A2AEvent:
        """Announce one reply of a child session as its spawn asked (a parent turn, the
        parent's chat, or nothing); the `announce` event to emit."""
        skipped = status == "ok" and (is_announce_skip(out.text) or is_silent(out.text))
        event = A2AEvent(
            kind="announce",
            agent_id=spawn.child_agent_id,
            session_key=spawn.child_session_key,
            target_session_key=spawn.parent_session_key,
            target_agent_id=spawn.parent_agent_id,
            run_id=out.turn_id,
            status="skipped" if skipped or spawn.announce == "none" else status,
            detail=spawn.announce,
        )
        dedupe = f"announce:{out.turn_id}"
        if skipped or spawn.announce == "none":
            pass
        elif spawn.announce == "channel":
            if spawn.channel not in _INTERNAL:
                text = out.text if status == "ok" else f"⚠️ {spawn.label or 'sub-agent task'}: {error}"
                await self._deliver(spawn, text, dedupe)
        else:
            await self._announce_turn(spawn, out, status, error, session_id, dedupe)
        return event

    async def _announce_turn(
        self,
        spawn: SpawnRecord,
        out: OutboundMessage,
        status: str,
        error: str,
        session_id: str,
        dedupe: str,
    ) -> None:
        """The result as a new turn of the requester session: OpenClaw's completion block."""
        stats = " • ".join(
            [
                f"runtime {_duration(time.time() - spawn.created_at)}",
                f"sessionKey {spawn.child_session_key}",
                f"sessionId {session_id}",
            ]
        )
        text = announce_block(
            child_session_key=spawn.child_session_key,
            child_session_id=session_id,
            task_label=spawn.label or spawn.task,
            status=status,
            error=error,
            result=out.text if status == "ok" else "",
            stats=stats,
            requester_is_subagent=spawn.channel == SUBAGENT_CHANNEL,
        )
        await submit_inbound(
            self.ctx,
            InboundMessage(
                id=uuid.uuid5(uuid.NAMESPACE_URL, f"clawmesh:{dedupe}").hex,
                channel=spawn.channel or SUBAGENT_CHANNEL,
                account_id=spawn.account_id,
                peer=spawn.peer,
                thread_id=spawn.thread_id,
                agent_id=spawn.parent_agent_id,
                session_key=spawn.parent_session_key,
                sender=Sender(id=spawn.child_agent_id, name="subagent"),
                text=text,
                received_at=time.time(),
                metadata={"announceFor": spawn.child_session_key, "childRunId": out.turn_id},
            ),
            dedupe,
        )

    async def _deliver(self, spawn: SpawnRecord, text: str, dedupe: str) -> None:
        """A result straight to the requester's chat (`announce: "channel"`)."""
        message = OutboundMessage(
            turn_id=uuid.uuid5(uuid.NAMESPACE_URL, f"clawmesh:{dedupe}").hex,
            agent_id=spawn.parent_agent_id,
            session_key=spawn.parent_session_key,
            channel=spawn.channel,
            account_id=spawn.account_id,
            text=text,
            peer=spawn.peer,
            thread_id=spawn.thread_id,
        )
        data, headers = encode_json(message)
        headers["Nats-Msg-Id"] = dedupe
        await self.ctx.publish(
            self.ctx.subjects.outbound(spawn.channel, spawn.account_id), data, inject(headers)
        )

    # --- sessions_send ping-pong ---------------------------------------------------------------
    async def _a2a_step(self, out: OutboundMessage, again: bool = False) -> None:
        run_id, _, step = out.turn_id.rpartition("-")
        if not run_id:
            return
        store = self.ctx.sessions
        record = await store.get_a2a(run_id)
        if record is None:
            return
        text = "" if out.is_error else out.text.strip()
        if step == "a":
            await self._a2a_announce(record, text)
            return
        if step == FIRST_STEP_REQUEST:  # an unwaited send to another gateway: its first step
            await self._remote_step(record, "0", out.text, out.account_id, again=again)
            return
        n = int(step) if step.isdigit() else 0
        stop = not text or text == REPLY_SKIP
        if n == 0 and not stop:
            record = _with(record, round_one=text, latest=text)
            await store.put_a2a(record)
        elif not stop:
            record = _with(record, latest=text)
            await store.put_a2a(record)
        remote = is_remote_target(record.target_agent_id)
        if stop or n >= record.max_turns:
            if remote:
                # the announce step posts to the target session's chat: a session another
                # gateway keeps for this one has none
                return
            await self._a2a_turn(
                record,
                "a",
                record.target_session_key,
                record.target_agent_id,
                "Agent-to-agent announce step.",
                a2a_announce_prompt(
                    record.original,
                    record.round_one,
                    record.latest,
                    requester_channel=record.requester_channel,
                    target_channel=record.target_channel,
                ),
            )
            return
        turn = n + 1
        role = "requester" if turn % 2 == 1 else "target"
        key, agent = (
            (record.requester_session_key, record.requester_agent_id)
            if role == "requester"
            else (record.target_session_key, record.target_agent_id)
        )
        prompt = a2a_reply_prompt(
            "",
            role=role,
            turn=turn,
            max_turns=record.max_turns,
            requester_channel=record.requester_channel,
            target_channel=record.target_channel,
        ).rstrip()
        if remote and role == "target":
            await self._remote_step(record, str(turn), f"{prompt}\n\n{text}", out.account_id, again=again)
            return
        await self._a2a_turn(record, str(turn), key, agent, text, prompt)

    async def _remote_step(
        self, record: A2ARecord, step: str, text: str, account: str, *, again: bool = False
    ) -> None:
        region = self.ctx.holder.current.settings.gateway.region
        if region is None:  # no longer federated: nobody to ask
            log.warning("runner: exchange %s cannot go on: gateway.region is unset", record.run_id)
            return
        await remote_step(self.ctx, region, record, step, text, account, again=again)

    async def _a2a_turn(
        self, record: A2ARecord, step: str, key: str, agent: str, message: str, system: str
    ) -> None:
        turn_id = a2a_turn_id(record.run_id, step)
        await submit_inbound(
            self.ctx,
            InboundMessage(
                id=turn_id,
                channel=A2A_CHANNEL,
                agent_id=agent,
                session_key=key,
                sender=Sender(
                    id=record.requester_agent_id
                    if key == record.target_session_key
                    else record.target_agent_id
                ),
                text=message,
                received_at=time.time(),
                metadata={"a2aRunId": record.run_id, "a2aStep": step},
                options=TurnOptions(system=system),
            ),
            f"a2a:{turn_id}",
        )
        await publish_a2a_event(
            self.ctx,
            A2AEvent(
                kind="send",
                agent_id=record.requester_agent_id,
                session_key=record.requester_session_key,
                target_session_key=key,
                target_agent_id=agent,
                run_id=turn_id,
                status="accepted",
                detail=f"step {step}",
            ),
        )

    async def _a2a_announce(self, record: A2ARecord, text: str) -> None:
        """The target's announce step replied: post it to the target's chat unless it stays silent."""
        if not text or is_announce_skip(text) or is_silent(text):
            return
        found = await self.ctx.sessions.get_session(record.target_session_key)
        if found is None or found[0].channel in _INTERNAL or not found[0].channel:
            return  # no delivery route: the reply is recorded in the target session only
        rec = found[0]
        dedupe = f"a2a-announce:{record.run_id}"
        message = OutboundMessage(
            turn_id=uuid.uuid5(uuid.NAMESPACE_URL, f"clawmesh:{dedupe}").hex,
            agent_id=record.target_agent_id,
            session_key=record.target_session_key,
            channel=rec.channel,
            account_id=rec.account_id or "default",
            text=text,
            peer=rec.peer,
        )
        data, headers = encode_json(message)
        headers["Nats-Msg-Id"] = dedupe
        await self.ctx.publish(
            self.ctx.subjects.outbound(rec.channel, rec.account_id or "default"), data, inject(headers)
        )


def _all_together(msgs: list[Msg]) -> list[list[Msg]]:
    return [msgs]


def _by_exchange(msgs: list[Msg]) -> list[list[Msg]]:
    """A batch of step replies in groups that may be handled at once, one per exchange (the
    run id: the reply's turn id `<run id>-<step>` up to its last `-`), each in stream order."""
    groups: dict[str, list[Msg]] = {}
    for msg in msgs:
        turn_id = (msg.headers or {}).get("Nats-Msg-Id", "").removeprefix("out:")
        groups.setdefault(turn_id.rpartition("-")[0] or str(id(msg)), []).append(msg)
    return list(groups.values())


def _ended(spawn: SpawnRecord, status: str, error: str) -> SpawnRecord:
    import msgspec

    return msgspec.structs.replace(spawn, status=status, error=error, ended_at=time.time())


def _with(record: A2ARecord, **changes: str) -> A2ARecord:
    import msgspec

    return msgspec.structs.replace(record, **changes)
