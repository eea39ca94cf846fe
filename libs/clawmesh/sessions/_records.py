"""What is stored per session: transcript records (stream) and state records (KV)."""

from __future__ import annotations

from typing import Any

import msgspec

from ..wire import OutboundMessage, Peer, now

__all__ = [
    "CONTEXT_BYTES",
    "CONTEXT_ENTRIES",
    "A2ARecord",
    "DoneRecord",
    "PendingReply",
    "SessionRecord",
    "SpawnRecord",
    "StopRecord",
    "TranscriptEntry",
    "TurnAttempts",
    "TurnStatus",
    "TxAssistant",
    "TxError",
    "TxTool",
    "TxUser",
    "bounded",
]

# Transcript records kept as model context in the completion record (the model sees at most
# runtime.historyLimit messages of them), and the size that record may reach.
CONTEXT_ENTRIES = 200
CONTEXT_BYTES = 512 * 1024


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
    model: str = ""  # `provider/model` that answered
    # What OpenClaw keeps on each assistant message (its exports and `sessions` show them):
    # the provider API (`anthropic`, `openai`, or OpenClaw's name when imported), why the
    # response stopped (the provider's word: end_turn, tool_use, max_tokens, …) and its tokens.
    api: str = ""
    stop_reason: str = ""
    input_tokens: int = 0
    output_tokens: int = 0
    # a proxy runner's turn: {runner, session (the backend's own session/conversation id),
    # costUsd?}; the next turn of the session continues that remote session
    backend: dict[str, Any] = {}
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
    session_id: str  # stable id used for exports (OpenClaw's sessionId); new on /new and /reset
    seq: int = 0  # last sequence number assigned
    # The last sequence number before `session_id` began (`/new`, `/reset`): the messages of
    # the current session are the ones numbered after it.
    started_seq: int = 0
    inbound_seq: int = 0  # CM_INBOUND stream sequence of that message
    # The latest assignments (a mark of the turn id → session sequence): a message delivered
    # again — redelivered after a router crash, or sent again by its platform or caller after
    # CM_INBOUND's duplicate window — gets the number it was given before, even inside a batch,
    # and its runner answers it from what it recorded instead of running it twice.
    recent_turns: dict[str, int] = {}
    # Written by routers before 2026-12-04 (CM_INBOUND sequence → session sequence): still
    # honoured for a message they numbered, never added to.
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
    # the `Nats-Msg-Id` of the turn's transcript batch, which was written together with the
    # record and so may be missing too: appended again (from `context`) before the reply.
    # None in records written before transcripts were batched (appended before the record).
    transcript: str | None = None
    # the turn's sequence in CM_TURNS (0: unknown). The turn is acked only after its reply is
    # stored, and CM_TURNS drops what is acked: once it is gone from there, the reply is stored
    turn_seq: int = 0

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


_encoder = msgspec.json.Encoder()


def bounded(done: DoneRecord) -> tuple[DoneRecord, bytes]:
    """The record with the newest context entries that fit both limits, and its encoding."""
    if len(done.context) > CONTEXT_ENTRIES:
        done = msgspec.structs.replace(done, context=done.context[-CONTEXT_ENTRIES:])
    data = _encoder.encode(done)
    while len(done.context) > 1 and len(data) > CONTEXT_BYTES:
        done = msgspec.structs.replace(done, context=done.context[len(done.context) // 4 or 1 :])
        data = _encoder.encode(done)
    return done, data


class SpawnRecord(_Rec, kw_only=True):
    """A sub-agent run (KV `sessions`, key `k.<child session token>`), written by the runner
    that accepted `sessions_spawn` before the child's turn is published: who asked (the
    requester session and where its replies go), the child, and how its result is announced.
    `status` stays `running` until the run ends; an error outcome is written before the child's
    reply is stored, so whoever announces the reply reads why it failed."""

    child_session_key: str
    child_agent_id: str
    run_id: str  # the child's turn id
    parent_session_key: str
    parent_agent_id: str
    depth: int  # 1: spawned by a main (non-sub-agent) session
    parent_turn_id: str = ""  # the requester's turn that spawned it (empty in older records)
    task: str = ""
    label: str = ""
    mode: str = "run"  # run | session
    cleanup: str = "keep"  # keep | delete
    announce: str = "parent"  # parent | channel | none
    run_timeout: float = 0.0  # seconds; 0: only runtime.turnTimeoutSeconds
    # the requester's route: where an announce turn (or, for announce=channel, the result) goes
    channel: str = ""
    account_id: str = "default"
    peer: Peer | None = None
    thread_id: str | None = None
    status: str = "running"  # running | ok | error | timeout | stopped
    error: str = ""
    created_at: float = msgspec.field(default_factory=now)
    ended_at: float = 0.0


class ChildIndex(_Rec, kw_only=True):
    """The sub-agent runs a session spawned (KV `sessions`, key `c.<session token>`), so that
    limits, cascades and the session tree read a session's children without listing every
    key. Written only by the runner running the parent's turn (one at a time per session)."""

    running: list[str] = []  # child session keys, possibly ended since (their SpawnRecord says)
    ended: list[str] = []  # the most recent ones known to have ended (bounded)


class StopRecord(_Rec, kw_only=True):
    """A stop request for a session (KV `sessions`, key `x.<session token>`): a turn of that
    session routed before `at` that has not started yet ends as stopped instead of running."""

    at: float = msgspec.field(default_factory=now)
    reason: str = ""


class A2ARecord(_Rec, kw_only=True):
    """A `sessions_send` exchange (KV `sessions`, key `q.<run id>`): its ping-pong steps run as
    turns `<run id>-<n>` alternating between the two sessions, then the announce step
    `<run id>-a` in the target session."""

    run_id: str
    requester_session_key: str
    requester_agent_id: str
    requester_channel: str = ""
    target_session_key: str
    target_agent_id: str
    target_channel: str = ""
    original: str = ""
    max_turns: int = 5
    round_one: str = ""
    latest: str = ""
    created_at: float = msgspec.field(default_factory=now)
