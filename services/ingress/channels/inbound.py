"""Platform messages into CM_INBOUND, for every adapter: the access policy
(`clawmesh.channels.AccessControl`: dmPolicy, allowFrom, groupPolicy, mention gating, pairing)
is asked here, once per message (the one place it is called), then the message is stored. A
platform message id is the turn id's seed and the JetStream dedupe key, so a platform's
redelivery (a webhook retry, a poller that failed over before saving its offset) is one turn."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import msgspec

from clawmesh.bus import ServiceContext, inject, producer_span
from clawmesh.channels import (
    NOT_AUTHORIZED,
    AccessControl,
    AccessRequest,
    ApproveRefused,
    Command,
    Deny,
    PairingChallenge,
    approve_body,
    is_approver,
    parse_approve,
    parse_command,
)
from clawmesh.channels.accounts import channel_accounts
from clawmesh.errors import best_effort
from clawmesh.execpolicy import ApprovalError, ApprovalStore
from clawmesh.wire import InboundMessage, OutboundMessage, encode_json, encode_msgpack

from ..turns import PendingTurn, TurnClient, Unavailable
from .history import GroupHistory, history_limit
from .media import InboundFile, MediaKeeper

__all__ = ["ChannelInbound", "Submitted"]

log = logging.getLogger("clawmesh.ingress.channels")


@dataclass(frozen=True)
class Submitted:
    """What became of a message: refused by the access policy (`denied`; a pairing challenge
    carries the reply to send), a message JetStream had already (`duplicate`), or stored;
    `turn` follows it when the caller asked to."""

    denied: Deny | PairingChallenge | None = None
    duplicate: bool = False
    turn: PendingTurn | None = None


class ChannelInbound:
    def __init__(self, ctx: ServiceContext, turns: TurnClient) -> None:
        self.ctx = ctx
        self.turns = turns
        self._config = ctx.holder.current
        self.access = AccessControl(
            self._config, kv=ctx.kv.get("pairing"), publish=ctx.nc.publish, subjects=ctx.subjects
        )
        self.media = MediaKeeper(ctx)
        self.history = GroupHistory(ctx.kv.get("channels"))

    async def submit(
        self,
        request: AccessRequest,
        inbound: InboundMessage,
        *,
        follow: bool,
        on_admit: Callable[[InboundMessage, bool], InboundMessage] | None = None,
        files: Sequence[InboundFile] = (),
        media_limit: int = 0,
    ) -> Submitted:
        """Ask the access policy, then store the message. `follow`: the turn's events come back
        to this instance (a streamed reply); else nobody waits and none are sent here.
        `on_admit`: the message to store instead, given whether the policy found the bot
        mentioned (OpenClaw's `WasMentioned`, mention patterns included; Slack seeds a thread's
        session from it). `files`: what the message carries, downloaded (at most `media_limit`
        bytes each) only once the policy admitted it. Raises Unavailable when the message could not be stored (the platform
        must retry)."""
        ctx = self.ctx
        if ctx.holder.current is not self._config:  # reloaded: policies are resolved again
            self._config = ctx.holder.current
            self.access.update_config(self._config)
        decision = await self.access.check(request)
        if isinstance(decision, Deny | PairingChallenge):
            ctx.counters["channel_denied"] += 1
            if isinstance(decision, Deny) and decision.reason == "mention-required":
                with best_effort(ctx.counters, "group_history_keep", log=log):
                    limit = history_limit(self._config, request.channel, request.account)
                    await self.history.keep(request, inbound, limit, [f.mime for f in files])
            return Submitted(denied=decision)
        if isinstance(decision, Command) and decision.name == "approve":
            await self._approve(request, inbound)
            return Submitted()
        if isinstance(decision, Command):
            # marked here, where the bot's own name is known (`/stop@this_bot`); the router
            # and the runner act on the mark like on a command typed into any surface
            parsed = parse_command(request.text, request.bot_username)
            args = parsed[1] if parsed is not None and parsed[0] == decision.name else ""
            inbound = msgspec.structs.replace(
                inbound, metadata={**inbound.metadata, "command": decision.name, "commandArgs": args}
            )
        if on_admit is not None:
            inbound = on_admit(inbound, decision.mentioned)
        # only a mention can follow messages kept for lack of one (where none is required,
        # nothing is kept: no read per message)
        if decision.mentioned and not isinstance(decision, Command):
            with best_effort(ctx.counters, "group_history_take", log=log):
                limit = history_limit(self._config, request.channel, request.account)
                if lines := await self.history.take(request, inbound, limit):
                    inbound = msgspec.structs.replace(inbound, history=lines)
        if files:
            kept, missing = await self.media.keep(inbound.id, files, media_limit)
            inbound = msgspec.structs.replace(
                inbound,
                attachments=[*inbound.attachments, *kept],
                text="\n".join(t for t in (inbound.text, *missing) if t),
            )
        dedupe = f"in:{inbound.channel}:{inbound.account_id}:{inbound.message_id}"
        if follow:
            inbound = msgspec.structs.replace(
                inbound, reply_subject=self.turns.reply_subject, reply_events="all"
            )
            turn = await self.turns.submit(inbound, dedupe)
            if turn.duplicate:
                turn.close()
                return Submitted(duplicate=True)
            return Submitted(turn=turn)
        # nobody here waits for this turn: no reply subject, so nothing is sent back to it
        data, headers = encode_msgpack(inbound)
        headers["Nats-Msg-Id"] = dedupe
        subject = ctx.subjects.inbound_of(inbound)
        with producer_span("cm.in", subject, headers):
            try:
                ack = await ctx.publish(subject, data, headers)
            except Exception as exc:
                ctx.counters["store_failures"] += 1
                raise Unavailable(f"could not store the message ({type(exc).__name__}: {exc})") from exc
        ctx.counters["accepted"] += 1
        return Submitted(duplicate=bool(ack.duplicate))

    # --- /approve ---------------------------------------------------------------------------

    async def _approve(self, request: AccessRequest, inbound: InboundMessage) -> None:
        """An exec approval answered from the chat (OpenClaw's `/approve <id> <decision>`): by a
        sender the access policy admitted and `execApprovals.approvers` lists. It never becomes
        a turn: the request it answers is holding one, and the answer must not queue behind it.
        The answer goes out through CM_OUTBOUND like a reply, once per platform message."""
        body = approve_body(request.text, request.bot_username) or ""
        parsed = parse_approve(body)
        if parsed is None:  # detect_command said /approve: cannot happen, but never act on it
            return
        if isinstance(parsed, ApproveRefused):
            await self._answer(inbound, parsed.answer)
            return
        settings = next(
            (
                a.settings
                for a in channel_accounts(self._config.document.channels, request.channel)
                if a.account_id == request.account
            ),
            None,
        )
        if settings is None or not is_approver(request.channel, settings, request.sender_id):
            self.ctx.counters["chat_approvals_refused"] += 1
            await self._answer(inbound, NOT_AUTHORIZED)
            return
        by = f"{request.channel}:{request.sender_id}"
        try:
            await ApprovalStore(self.ctx.approvals).resolve(parsed.approval_id, parsed.decision, by=by)
        except ApprovalError as exc:
            await self._answer(inbound, f"❌ Failed to submit approval: {exc}")
            return
        self.ctx.counters["chat_approvals"] += 1
        log.info("exec approval %s: %s from %s", parsed.approval_id, parsed.decision, by)
        await self._answer(inbound, f"✅ Approval {parsed.decision} submitted for {parsed.approval_id}.")

    async def _answer(self, inbound: InboundMessage, text: str) -> None:
        ctx = self.ctx
        key = f"approve:{inbound.channel}:{inbound.account_id}:{inbound.message_id}"
        answer = OutboundMessage(
            turn_id=uuid.uuid5(uuid.NAMESPACE_URL, f"clawmesh:{key}").hex,
            agent_id="",
            session_key="",
            channel=str(inbound.channel),
            account_id=str(inbound.account_id),
            text=text,
            peer=inbound.peer,
            thread_id=inbound.thread_id,
            reply_to=inbound.message_id,
        )
        data, headers = encode_json(answer)
        headers["Nats-Msg-Id"] = key
        try:
            await ctx.publish(ctx.subjects.outbound(answer.channel, answer.account_id), data, inject(headers))
        except Exception as exc:
            ctx.counters["store_failures"] += 1
            raise Unavailable(f"could not store the answer ({type(exc).__name__}: {exc})") from exc
