"""The `message` tool (OpenClaw's group:messaging), run by the runner: `action: "send"` stores an
OutboundMessage in CM_OUTBOUND for the channel, account and peer, and that channel's delivery
sends it like any reply. Only `send` is implemented; the tool policy decides who may call it.

The default target is this turn's own chat; another peer or channel is named explicitly. A turn
that was retried sends once: the message is deduplicated by turn id and tool-call id."""

from __future__ import annotations

import json
import uuid
from typing import Any, Final

from clawmesh.bus import ServiceContext, inject
from clawmesh.config import Config
from clawmesh.tools.specs import MessageArgs, ToolArgumentError, validate_tool_arguments
from clawmesh.wire import OutboundMessage, Peer, TurnRequest, encode_json

from .session_tools import A2A_CHANNEL, SUBAGENT_CHANNEL

__all__ = ["run_message"]

# internal turns have no chat to send to
_INTERNAL: Final = frozenset({SUBAGENT_CHANNEL, A2A_CHANNEL})
_KINDS: Final = {"user": "direct", "dm": "direct", "direct": "direct", "group": "group", "channel": "channel"}


def _error(text: str) -> tuple[str, bool]:
    return json.dumps({"status": "error", "error": text}), True


def _peer(target: str) -> Peer | None:
    kind, sep, ident = target.strip().partition(":")
    if not sep:
        return Peer(kind="direct", id=kind) if kind else None
    mapped = _KINDS.get(kind.lower())
    return Peer(kind=mapped, id=ident) if mapped and ident else None


async def run_message(
    ctx: ServiceContext, config: Config, turn: TurnRequest, call_id: str, arguments: dict[str, Any]
) -> tuple[str, bool]:
    """(content, is_error) of one `message` call."""
    try:
        args = validate_tool_arguments("message", arguments)
    except ToolArgumentError as exc:
        return exc.message, True
    if not isinstance(args, MessageArgs):
        return _error("not a message call")
    if not (args.message or "").strip():
        return _error('action "send" needs a non-empty "message"')
    inbound = turn.inbound
    channel = (args.channel or str(inbound.channel)).strip().lower()
    if channel in _INTERNAL or not channel:
        return _error(
            f"this session has no chat to send to (channel {channel!r}); give channel and target explicitly"
        )
    known = set((config.document.channels or {}).keys()) | {str(inbound.channel)}
    if channel not in known:
        return _error(
            f"unknown channel {channel!r}; configured: {', '.join(sorted(known - _INTERNAL)) or 'none'}"
        )
    same_chat = channel == str(inbound.channel) and args.target is None
    if args.target is not None:
        peer = _peer(args.target)
        if peer is None:
            return _error(
                f"invalid target {args.target!r}: use an id, or kind:id with kind user, group or channel"
            )
    elif channel == str(inbound.channel):
        peer = inbound.peer
    else:
        return _error(f'sending to channel {channel!r} needs a "target"')
    account = args.account_id or (str(inbound.account_id) if channel == str(inbound.channel) else "default")
    thread = args.thread_id or (str(inbound.thread_id) if same_chat and inbound.thread_id else None)
    dedupe = f"message:{turn.turn_id}:{call_id}"
    message_id = uuid.uuid5(uuid.NAMESPACE_URL, f"clawmesh:{dedupe}").hex
    result: dict[str, Any] = {
        "ok": True,
        "action": "send",
        "channel": channel,
        "accountId": account,
        "target": f"{peer.kind}:{peer.id}" if peer is not None else None,
        "messageId": message_id,
    }
    if args.dry_run:
        return json.dumps({**result, "dryRun": True}), False
    outbound = OutboundMessage(
        turn_id=message_id,
        agent_id=turn.agent_id,
        session_key=turn.session_key,
        channel=channel,
        account_id=account,
        text=args.message or "",
        peer=peer,
        thread_id=thread,
        reply_to=args.reply_to,
    )
    data, headers = encode_json(outbound)
    headers["Nats-Msg-Id"] = dedupe
    await ctx.publish(ctx.subjects.outbound(channel, account), data, inject(headers))
    return json.dumps(result), False
