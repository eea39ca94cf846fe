"""What is stored per session: transcript records (stream) and state records (KV)."""

from __future__ import annotations

from typing import Any

import msgspec

from ..wire import OutboundMessage, Peer, now

__all__ = [
    "DoneRecord",
    "PendingReply",
    "SessionRecord",
    "TranscriptEntry",
    "TurnAttempts",
    "TurnStatus",
    "TxAssistant",
    "TxError",
    "TxTool",
    "TxUser",
]


class _Rec(msgspec.Struct, kw_only=True, rename="camel", omit_defaults=True):
    pass


class TxUser(_Rec, tag="user", tag_field="role", kw_only=True):
    turn_id: str
    seq: int
    text: str
    sender: str | None = None
    channel: str | None = None
    ts: float = msgspec.field(default_factory=now)


class TxAssistant(_Rec, tag="assistant", tag_field="role", kw_only=True):
    turn_id: str
    seq: int
    text: str = ""
    tool_calls: list[dict[str, Any]] = []  # [{id, name, arguments}]
    model: str = ""
    ts: float = msgspec.field(default_factory=now)


class TxTool(_Rec, tag="tool", tag_field="role", kw_only=True):
    turn_id: str
    seq: int
    tool_call_id: str
    name: str
    content: str
    is_error: bool = False
    ts: float = msgspec.field(default_factory=now)


class TxError(_Rec, tag="error", tag_field="role", kw_only=True):
    """A failed turn: shown in history, never fed back to the model."""

    turn_id: str
    seq: int
    # a `wire.ErrorCode` when written; read as any string so stored history always decodes,
    # whichever version wrote it
    code: str
    message: str
    ts: float = msgspec.field(default_factory=now)


TranscriptEntry = TxUser | TxAssistant | TxTool | TxError


class SessionRecord(_Rec, kw_only=True):
    """Written by the router for every routed message (KV `sessions`, key `s.<session token>`)."""

    session_key: str
    agent_id: str
    session_id: str  # stable id used for exports (OpenClaw's sessionId)
    seq: int = 0  # last sequence number assigned
    inbound_seq: int = 0  # CM_INBOUND stream sequence of that message
    # The latest assignments (CM_INBOUND sequence → session sequence): a message redelivered
    # after a router crash gets the number it was given before, even inside a batch.
    recent: dict[int, int] = {}
    channel: str = ""
    account_id: str = ""
    peer: Peer | None = None
    created_at: float = msgspec.field(default_factory=now)
    updated_at: float = msgspec.field(default_factory=now)


class PendingReply(_Rec, kw_only=True):
    """A completed turn's reply until it is surely in CM_OUTBOUND. Whoever next works on the
    session (the same runner, or another after a crash) publishes it before anything newer of
    the session, with the same `Nats-Msg-Id`, so it is stored once and in order."""

    subject: str
    msg_id: str
    message: OutboundMessage  # its `text` is left empty: it is the record's final_text

    def outbound(self, text: str) -> OutboundMessage:
        return msgspec.structs.replace(self.message, text=text)


class TurnAttempts(_Rec, kw_only=True):
    """How often the session's next turn was started after being delivered again (KV
    `sessions`, key `a.<session token>`), so a turn that keeps failing (or crashing its
    runner) ends with an error reply after `runtime.maxDeliveries` such starts."""

    seq: int
    turn_id: str
    attempts: int


class DoneRecord(_Rec, kw_only=True):
    """Written by the runner when a turn completes (KV `sessions`, key `d.<session token>`).

    `context` holds the most recent transcript records (bounded): the next turn, on whichever
    runner, reads its model context from this one KV entry instead of replaying the stream."""

    seq: int = 0
    turn_id: str = ""
    final_text: str = ""
    is_error: bool = False
    model: str = ""
    context: list[TranscriptEntry] = []
    has_context: bool = False  # False for records written before `context` existed
    # this turn's reply while it may not be in CM_OUTBOUND yet; None once it is
    reply: PendingReply | None = None
    updated_at: float = msgspec.field(default_factory=now)


class TurnStatus(_Rec, kw_only=True):
    """For clients that poll (KV `turns`, key = turn id; expires after a day)."""

    state: str  # queued | done | error
    agent_id: str | None = None
    session_key: str | None = None
    text: str = ""
    error_code: str | None = None  # a `wire.ErrorCode`; any string on read, like TxError.code
    error_message: str | None = None
    updated_at: float = msgspec.field(default_factory=now)
