"""Messages on the bus: msgspec Structs, one tagged union per stream/subject family.

New fields always get defaults (old readers skip unknown fields, new readers fill defaults); a
reader that meets an unknown tag rejects that message to the dead-letter stream instead of
crashing. Field names are camelCase on the wire, like everything users see.
"""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal

import msgspec

from ..config import ExecSettings
from ..ids import Id
from ._errors import ErrorCode

__all__ = [
    "A2AEvent",
    "Attachment",
    "ClientTool",
    "ClientToolCall",
    "DeadLetter",
    "DirectToolInvocation",
    "DirectToolOutcome",
    "DirectToolResult",
    "EventMessage",
    "ExecApprovalNotice",
    "ExecApprovalRequested",
    "ExecApprovalResolved",
    "FailoverEvent",
    "HistoryLine",
    "InboundMessage",
    "OutboundMessage",
    "Peer",
    "ReplyMessage",
    "RouteDecision",
    "RouteInfo",
    "Sender",
    "StopRequest",
    "TextDeltaEvent",
    "ToolCallEvent",
    "ToolInvocation",
    "ToolInvocationResult",
    "ToolOutputChunk",
    "ToolOutputEvent",
    "ToolResultEvent",
    "TurnError",
    "TurnEvent",
    "TurnFinal",
    "TurnOptions",
    "TurnRequest",
    "TurnStarted",
    "inbound_key",
    "now",
]


def now() -> float:
    return time.time()


class _Wire(msgspec.Struct, kw_only=True, rename="camel", omit_defaults=True):
    pass


class Peer(msgspec.Struct, frozen=True, kw_only=True, rename="camel", omit_defaults=True):
    kind: str
    id: Id


class Sender(msgspec.Struct, frozen=True, kw_only=True, rename="camel", omit_defaults=True):
    id: Id = ""
    name: str | None = None
    username: str | None = None


class Attachment(msgspec.Struct, frozen=True, kw_only=True, rename="camel", omit_defaults=True):
    name: str = ""
    mime: str = "application/octet-stream"
    url: str | None = None
    size: int | None = None
    data: bytes | None = None
    # the object in the `media` object store holding the bytes (clawmesh.media): a chat's file
    # travels beside the message, not in it
    ref: str | None = None


class HistoryLine(msgspec.Struct, frozen=True, kw_only=True, rename="camel", omit_defaults=True):
    """A group message the bot was not asked to answer (mention gating), kept as context for
    the next one it answers (OpenClaw's `historyLimit`)."""

    sender: str = ""
    body: str = ""
    message_id: str = ""
    ts: float = 0.0  # seconds since the epoch
    media: list[str] = []  # the types of files it carried


class ClientTool(msgspec.Struct, frozen=True, kw_only=True, rename="camel", omit_defaults=True):
    """A function the caller offers the model and runs itself (OpenAI `tools`)."""

    name: str
    description: str = ""
    parameters: dict[str, Any] = {}


class ClientToolCall(msgspec.Struct, frozen=True, kw_only=True, rename="camel", omit_defaults=True):
    """The model's call of a client tool, returned to the caller instead of being run."""

    id: str
    name: str
    arguments: str  # JSON text, as OpenAI's `function.arguments`


class TurnOptions(msgspec.Struct, frozen=True, kw_only=True, rename="camel", omit_defaults=True):
    """What a caller set for its turn's model calls (the OpenAI-compatible API); validated by
    the ingress, forwarded by the runner to the provider best-effort."""

    model: str | None = None  # `provider/model` instead of the agent's chain
    system: str = ""  # appended to the agent's system prompt
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    stop: list[str] = []
    tools: list[ClientTool] = []
    tool_choice: str | None = None  # auto | none | required | the name of one of `tools`


# An explicit session key (`x-openclaw-session-key`): longer than ids, an agent prefix included
SessionKey = Annotated[str, msgspec.Meta(max_length=512)]


class InboundMessage(_Wire, tag="inbound", tag_field="type", kw_only=True):
    """A normalised inbound chat message (stream CM_INBOUND, subject cm.in.<channel>.<account>,
    with partitioned routers cm.in.<channel>.<account>.<key>: `inbound_key`)."""

    id: Id  # turn id, assigned by ingress
    channel: Id
    account_id: Id = "default"
    peer: Peer | None = None
    parent_peer: Peer | None = None
    guild_id: Id | None = None
    team_id: Id | None = None
    member_role_ids: list[Id] = []
    sender: Sender | None = None
    text: str = ""
    attachments: list[Attachment] = []
    # group messages since the bot's last answer there, oldest first (`historyLimit`)
    history: list[HistoryLine] = []
    message_id: Id | None = None  # the platform's id: dedupe key
    thread_id: Id | None = None  # the topic or thread of the chat the reply goes to
    # a thread with a session of its own: the routed session key + `:thread:<id>` (OpenClaw's
    # resolveThreadSessionKeys; Slack channel threads). Bindings still see `peer`.
    session_thread_id: Id | None = None
    agent_id: Id | None = None  # explicit agent (e.g. OpenAI `model`): bindings are skipped
    received_at: float = 0.0
    reply_subject: str | None = None  # the accepting ingress instance's inbox
    # what goes to reply_subject: every event (a streaming caller), or only the route decision
    # and the final/error event (a caller waiting for the reply: fewer messages per turn)
    reply_events: Literal["all", "final"] = "all"
    metadata: dict[str, str] = {}
    # the session to use instead of the one routing derives (only with `agent_id`)
    session_key: SessionKey | None = None
    options: TurnOptions | None = None


def inbound_key(msg: InboundMessage) -> str:
    """What decides a message's session besides its channel and account: the session the
    caller chose, else the peer (a DM's sender, a group, a thread), else nothing. Partitioned
    routers hash it with channel and account, so one session's messages stay in one partition
    (a session that several peers share, dmScope `main`, is kept in order by compare-and-set)."""
    if msg.session_key:
        return f"session:{msg.session_key}"
    if msg.peer is not None:
        return f"{msg.peer.kind}:{msg.peer.id}"
    return ""


class RouteInfo(msgspec.Struct, frozen=True, kw_only=True, rename="camel", omit_defaults=True):
    agent_id: str
    session_key: str
    main_session_key: str
    matched_by: str
    channel: str
    account_id: str
    dm_scope: str = "main"
    group_scope: str = "per-group"
    last_route_policy: str = "session"


class TurnRequest(_Wire, tag="turn", tag_field="type", kw_only=True):
    """A routed turn (stream CM_TURNS, work queue, subject cm.turn.<agent>)."""

    turn_id: str
    seq: int  # per-session sequence, gap-free, assigned in arrival order by the router
    route: RouteInfo
    inbound: InboundMessage
    inbound_seq: int = 0
    config_version: str = ""
    routed_at: float = 0.0

    @property
    def agent_id(self) -> str:
        return self.route.agent_id

    @property
    def session_key(self) -> str:
        return self.route.session_key


# --- events (cm.ev.<agent>.<session>, and the caller's reply subject) -----------------------


class _Event(_Wire, tag_field="type", kw_only=True):
    turn_id: str
    agent_id: str = ""
    session_key: str = ""
    ts: float = msgspec.field(default_factory=now)


class TurnStarted(_Event, tag="started", kw_only=True):
    seq: int = 0
    model: str = ""
    runner: str = ""  # instance id of the runner process (see `$SRV.INFO` metadata)


class TextDeltaEvent(_Event, tag="delta", kw_only=True):
    text: str


class ToolCallEvent(_Event, tag="tool_call", kw_only=True):
    call_id: str
    name: str
    arguments: dict[str, Any] = {}
    node: str | None = None


class ToolResultEvent(_Event, tag="tool_result", kw_only=True):
    call_id: str
    name: str
    content: str
    is_error: bool = False


class ToolOutputEvent(_Event, tag="tool_output", kw_only=True):
    """A chunk of a running tool's output (exec stdout/stderr), streamed to followers."""

    call_id: str
    stream: str  # stdout | stderr
    text: str


class ExecApprovalRequested(_Event, tag="exec.approval.requested", kw_only=True):
    """A host command waits for an operator: `clawmesh approvals approve|deny <approvalId>` or
    `POST /v1/approvals/<approvalId>/approve|deny`."""

    call_id: str
    approval_id: str
    command: str
    cwd: str = ""
    node: str = ""
    host: str = "gateway"
    reason: str = ""
    expires_at: float = 0.0


class ExecApprovalResolved(_Event, tag="exec.approval.resolved", kw_only=True):
    call_id: str
    approval_id: str
    decision: str  # allow-once | allow-always | deny | expired
    resolved_by: str = ""


class FailoverEvent(_Event, tag="failover", kw_only=True):
    from_model: str
    to_model: str
    reason: str
    message: str = ""

    def describe(self) -> str:
        return f"failed over from {self.from_model} to {self.to_model}: {self.reason}" + (
            f" ({self.message})" if self.message else ""
        )


class TurnFinal(_Event, tag="final", kw_only=True):
    text: str
    model: str = ""
    input_tokens: int = 0
    output_tokens: int = 0
    # the model called client tools (TurnOptions.tools): the caller runs them
    tool_calls: list[ClientToolCall] = []
    stop_reason: str = ""  # the model's last stop: end_turn | max_tokens | tool_use | …


class TurnError(_Event, tag="error", kw_only=True):
    code: ErrorCode
    message: str
    hint: str = ""


TurnEvent = (
    TurnStarted
    | TextDeltaEvent
    | ToolCallEvent
    | ToolResultEvent
    | ToolOutputEvent
    | ExecApprovalRequested
    | ExecApprovalResolved
    | FailoverEvent
    | TurnFinal
    | TurnError
)


class RouteDecision(_Wire, tag="route", tag_field="type", kw_only=True):
    """One routing decision (cm.route.decided); also sent to the caller's reply subject."""

    turn_id: str
    channel: str
    account_id: str
    agent_id: str | None = None
    session_key: str | None = None
    matched_by: str | None = None
    seq: int = 0
    error_code: ErrorCode | None = None
    error_message: str | None = None
    error_hint: str | None = None
    ts: float = msgspec.field(default_factory=now)

    @property
    def ok(self) -> bool:
        return self.error_code is None


# Everything a caller's reply subject can receive.
ReplyMessage = (
    RouteDecision
    | TurnStarted
    | TextDeltaEvent
    | ToolCallEvent
    | ToolResultEvent
    | ToolOutputEvent
    | ExecApprovalRequested
    | ExecApprovalResolved
    | FailoverEvent
    | TurnFinal
    | TurnError
)
EventMessage = TurnEvent


class OutboundMessage(_Wire, tag="outbound", tag_field="type", kw_only=True):
    """A reply to deliver (stream CM_OUTBOUND, subject cm.out.<channel>.<account>, dedupe by turn id)."""

    turn_id: str
    agent_id: str
    session_key: str
    channel: str
    account_id: str
    text: str
    peer: Peer | None = None
    thread_id: str | None = None
    reply_to: str | None = None  # the platform message id being answered
    is_error: bool = False
    ts: float = msgspec.field(default_factory=now)


# --- node invocations (cm.node.<node>.invoke, request/reply) -------------------------------


class ToolInvocation(_Wire, tag="invoke", tag_field="type", kw_only=True):
    """Run one tool on a node for an agent. The node resolves the agent's workspace and
    sandbox from its own config; the runner has already applied the tool policy."""

    invocation_id: Id
    tool: str  # exec | read | write | edit | ls | glob
    arguments: dict[str, Any] = {}
    agent_id: Id
    session_key: str
    main_session_key: str = ""
    turn_id: Id = ""
    timeout: float = ExecSettings.timeout  # the runner always sets it
    output_subject: str | None = None  # where to stream ToolOutputChunk messages (exec)
    # from another region of the federation: stream them to the request's reply subject (the
    # only subject that crosses back through the hub), before the result; output_subject is
    # then ignored
    stream_reply: bool = False


class ToolOutputChunk(_Wire, tag="output", tag_field="type", kw_only=True):
    invocation_id: str
    stream: str
    text: str


class ExecApprovalNotice(_Wire, tag="approval", tag_field="type", kw_only=True):
    """Node-agent → runner, on the invocation's output subject: an exec waits for approval
    (`phase` requested) or was decided (`phase` resolved). The runner turns it into events."""

    invocation_id: str
    phase: Literal["requested", "resolved"]
    approval_id: str
    command: str = ""
    cwd: str = ""
    host: str = "gateway"
    reason: str = ""
    expires_at: float = 0.0
    ask: str = ""  # the node's exec ask mode: "always" offers no allow-always
    decision: str = ""
    resolved_by: str = ""


class ToolInvocationResult(_Wire, tag="result", tag_field="type", kw_only=True):
    invocation_id: str
    ok: bool
    content: str = ""
    error_code: ErrorCode | None = None
    exit_code: int | None = None
    truncated: bool = False
    timed_out: bool = False
    sandboxed: bool = False
    node: str = ""
    duration: float = 0.0


# --- direct tool calls (cm.tools.<agent>.invoke, request/reply: POST /tools/invoke) ---------


class DirectToolInvocation(_Wire, tag="tools_invoke", tag_field="type", kw_only=True):
    """One tool call for an agent's session from outside a turn (`POST /tools/invoke`). The
    ingress resolved agent and session; the runner that takes it applies the agent's tool
    policy exactly as for a model's call, plus the HTTP surface's deny list."""

    request_id: Id
    agent_id: Id
    session_key: SessionKey
    main_session_key: SessionKey = ""
    tool: Annotated[str, msgspec.Meta(max_length=128)]
    action: Annotated[str, msgspec.Meta(max_length=128)] | None = None
    arguments: dict[str, Any] = {}
    message_channel: Id | None = None  # x-openclaw-message-channel etc.: recorded, not yet used
    account_id: Id | None = None
    message_to: Id | None = None
    thread_id: Id | None = None


DirectToolOutcome = Literal["ok", "invalid", "not_found", "blocked", "failed"]


class DirectToolResult(_Wire, tag="tools_invoke_result", tag_field="type", kw_only=True):
    """The runner's answer: `ok` with the tool's output, or why not (`invalid`: 400 bad
    arguments, `not_found`: 404 not available to this agent over HTTP, `blocked`: 403, `failed`:
    500 the tool ran and failed, or could not run)."""

    request_id: str
    outcome: DirectToolOutcome
    content: str = ""
    message: str = ""
    error_code: ErrorCode | None = None
    node: str = ""
    sandboxed: bool = False
    exit_code: int | None = None
    truncated: bool = False
    timed_out: bool = False


class DeadLetter(_Wire, tag="dead_letter", tag_field="type", kw_only=True):
    """A message a service could not process, with the reason (stream CM_DLQ, cm.dlq.<service>)."""

    service: str
    subject: str
    reason: str
    code: ErrorCode | None = None  # None only in letters written before codes existed
    payload: bytes = b""
    headers: dict[str, str] = {}
    ts: float = msgspec.field(default_factory=now)
    # the message's size when `payload` is only its start (it did not fit in a letter); 0: whole
    payload_size: int = 0


# --- agent-to-agent (cm.a2a.<agent>.<kind>, cm.ctl.stop) -------------------------------------


class A2AEvent(_Wire, tag="a2a", tag_field="type", kw_only=True):
    """What agents did to each other, on `cm.a2a.<agent>.<kind>` (the acting agent): `spawn`
    (a sub-agent run accepted), `announce` (a child's result went back to its requester),
    `send` (a sessions_send message or ping-pong step), `stop` (a session was stopped).
    Core NATS, at least once, like turn events."""

    kind: Literal["spawn", "announce", "send", "stop"]
    agent_id: str
    session_key: str  # the acting session (the requester; the child for an announce)
    target_session_key: str = ""
    target_agent_id: str = ""
    run_id: str = ""  # the turn id of the child run / the sent message
    status: str = ""  # accepted | ok | error | timeout | stopped | skipped | forbidden
    detail: str = ""
    ts: float = msgspec.field(default_factory=now)


class StopRequest(_Wire, tag="stop", tag_field="type", kw_only=True):
    """`cm.ctl.stop`: every runner cancels the running turn of `sessionKey`, if it has one (and,
    with `turnId`, only if it is that turn: an A2A task canceled while another runs)."""

    session_key: SessionKey
    turn_id: Annotated[str, msgspec.Meta(max_length=128)] = ""
    reason: str = ""
    ts: float = msgspec.field(default_factory=now)
