"""The tools clawmesh implements, written once as msgspec structs: what the model is offered
(the JSON Schema generated from them, with the docstring as the tool's description) and how a
call is validated when it comes back. A bad argument is an error *result* that names the field,
so the model can correct itself; it never breaks the turn.

    offered = [TOOL_SCHEMAS[name] for name in IMPLEMENTED_TOOLS]    # name, description, parameters
    args = validate_tool_arguments("read", {"path": "notes.txt"})    # ReadArgs(path="notes.txt", …)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Annotated, Any, ClassVar, Final, Literal, TypeAlias, get_args

import msgspec

from ..config import ExecSettings
from ..errors import ClawmeshError

__all__ = [
    "IMPLEMENTED_TOOLS",
    "INVALID_ARGUMENTS_KEY",
    "RUNNER_TOOLS",
    "TOOL_SCHEMAS",
    "AgentsListArgs",
    "ApplyPatchArgs",
    "EditArgs",
    "ExecArgs",
    "FileToolArgs",
    "GlobArgs",
    "LsArgs",
    "MessageArgs",
    "NodeCapability",
    "ProcessArgs",
    "ReadArgs",
    "RunnerToolArgs",
    "SessionStatusArgs",
    "SessionToolArgs",
    "SessionsHistoryArgs",
    "SessionsListArgs",
    "SessionsSendArgs",
    "SessionsSpawnArgs",
    "SpawnAttachment",
    "ToolArgs",
    "ToolArgumentError",
    "ToolSchema",
    "WebFetchArgs",
    "WriteArgs",
    "node_capability",
    "validate_tool_arguments",
]

# Small local models sometimes emit arguments that are not a JSON object. Rather than fail the
# whole turn, the provider passes the call on with the raw text under this key: validation
# below rejects it and the model sees the error and can try again.
INVALID_ARGUMENTS_KEY: Final = "__invalid_arguments__"

# What a node must offer to run a tool (it announces these in its heartbeat).
NodeCapability = Literal["exec", "files"]

_Path = Annotated[str, msgspec.Meta(description="Path relative to the workspace (or under /workspace).")]


class _Args(msgspec.Struct, kw_only=True, rename="camel"):
    # The name the model calls the tool by. Docstrings of the subclasses are the descriptions
    # the model reads (whitespace folded), so they are written for the model.
    tool: ClassVar[str]
    capability: ClassVar[NodeCapability] = "files"


class ExecArgs(_Args):
    """Run a shell command in the agent's workspace (inside its sandbox when one applies).
    Returns exit code and output."""

    tool: ClassVar[str] = "exec"
    capability: ClassVar[NodeCapability] = "exec"
    command: Annotated[str | None, msgspec.Meta(description="Shell command line (run with sh -lc).")] = None
    argv: Annotated[
        list[str] | None, msgspec.Meta(description="Program and arguments, instead of command.")
    ] = None
    workdir: Annotated[
        str | None, msgspec.Meta(description="Working directory relative to the workspace.")
    ] = None
    env: dict[str, str] = {}
    timeout: Annotated[
        float | None,
        msgspec.Meta(description=f"Seconds before the command is killed (default {ExecSettings.timeout:g})."),
    ] = None
    background: Annotated[
        bool, msgspec.Meta(description="Run in the background at once; returns a sessionId for process.")
    ] = False
    yield_ms: Annotated[
        Annotated[int, msgspec.Meta(ge=0)] | None,
        msgspec.Meta(description="Background the command if it still runs after this many ms."),
    ] = None

    def __post_init__(self) -> None:
        # msgspec turns this into a ValidationError, so it reads like any other argument error.
        if not self.command and not self.argv:
            raise ValueError("give `command` (a shell command line) or `argv`")


class ReadArgs(_Args):
    """Read a text file from the workspace."""

    tool: ClassVar[str] = "read"
    path: _Path
    offset: Annotated[int | None, msgspec.Meta(description="First line to return (1-based).")] = None
    limit: Annotated[int | None, msgspec.Meta(description="Number of lines to return.")] = None


class WriteArgs(_Args):
    """Create or overwrite a file in the workspace."""

    tool: ClassVar[str] = "write"
    path: _Path
    content: str


class EditArgs(_Args):
    """Replace exact text in a file. oldText must occur exactly once (or set replaceAll)."""

    tool: ClassVar[str] = "edit"
    path: _Path
    old_text: str
    new_text: str
    replace_all: bool = False


class LsArgs(_Args):
    """List a directory of the workspace."""

    tool: ClassVar[str] = "ls"
    path: _Path = "."


class GlobArgs(_Args):
    """Find files in the workspace by glob pattern (e.g. **/*.py)."""

    tool: ClassVar[str] = "glob"
    pattern: str
    path: _Path = "."


class ApplyPatchArgs(_Args):
    """Patch one/many files. Input requires *** Begin Patch and *** End Patch. Operations:
    *** Add File: <path> (lines prefixed +), *** Delete File: <path>, *** Update File: <path>
    (optionally *** Move to: <path>) followed by @@ hunks of ' ' context, '-' removed and '+'
    added lines; *** End of File after a hunk that ends the file."""

    tool: ClassVar[str] = "apply_patch"
    input: Annotated[
        str,
        msgspec.Meta(min_length=1, description="Patch content using the *** Begin Patch/End Patch format."),
    ]


class ProcessArgs(_Args):
    """Manage background exec sessions (started by exec with background or yieldMs): list,
    poll (new output and status; timeout ms to wait), log (offset/limit lines), write (data to
    stdin; eof closes it), kill."""

    tool: ClassVar[str] = "process"
    capability: ClassVar[NodeCapability] = "exec"
    action: Literal["list", "poll", "log", "write", "kill"]
    session_id: str | None = None
    data: str | None = None
    eof: bool = False
    offset: Annotated[
        Annotated[int, msgspec.Meta(ge=0)] | None, msgspec.Meta(description="First log line (0-based).")
    ] = None
    limit: Annotated[
        Annotated[int, msgspec.Meta(ge=1)] | None, msgspec.Meta(description="Log lines to return.")
    ] = None
    timeout: Annotated[
        Annotated[int, msgspec.Meta(ge=0, le=120_000)] | None,
        msgspec.Meta(description="poll: ms to wait for output."),
    ] = None

    def __post_init__(self) -> None:
        if self.action != "list" and not self.session_id:
            raise ValueError(f"action {self.action!r} needs `sessionId`")
        if self.action == "write" and self.data is None and not self.eof:
            raise ValueError("action 'write' needs `data` (or eof: true)")


FileToolArgs: TypeAlias = ReadArgs | WriteArgs | EditArgs | ApplyPatchArgs | LsArgs | GlobArgs


# --- session tools (OpenClaw's group:sessions and agents_list): run by the runner itself -------


_NonNegative = Annotated[int, msgspec.Meta(ge=0)]
_Positive = Annotated[int, msgspec.Meta(ge=1)]


class SpawnAttachment(msgspec.Struct, kw_only=True, rename="camel"):
    """One of `sessions_spawn`'s attachments."""

    name: str
    content: str
    encoding: Literal["utf8", "base64"] = "utf8"
    mime_type: str | None = None


class SessionsSpawnArgs(_Args):
    """Start a sub-agent run in its own session (agent:<agentId>:subagent:<uuid>). It runs in
    the background and its result is announced back to this session automatically: do not
    poll for it."""

    tool: ClassVar[str] = "sessions_spawn"
    task: Annotated[str, msgspec.Meta(min_length=1, description="What the sub-agent should do.")]
    label: Annotated[str | None, msgspec.Meta(description="A short name for the run.")] = None
    agent_id: Annotated[
        str | None, msgspec.Meta(description="The agent to run it (default: this agent).")
    ] = None
    model: Annotated[str | None, msgspec.Meta(description="provider/model for the child.")] = None
    thinking: str | None = None
    run_timeout_seconds: Annotated[
        _NonNegative | None, msgspec.Meta(description="Stop the child after this many seconds (0: no limit).")
    ] = None
    mode: Literal["run", "session"] | None = None
    cleanup: Literal["delete", "keep"] | None = None
    sandbox: Literal["inherit", "require"] | None = None
    announce: Annotated[
        Literal["parent", "channel", "none"] | None,
        msgspec.Meta(
            description="Where the result goes: a follow-up turn here (parent, default), "
            "straight to this session's chat (channel), or nowhere (none)."
        ),
    ] = None
    # checked as SpawnAttachment by the tool (a `$ref` would dangle in the schema the model sees)
    attachments: Annotated[
        list[dict[str, Any]],
        msgspec.Meta(
            max_length=50, description="Files for the child: {name, content, encoding utf8|base64, mimeType}."
        ),
    ] = []


class SessionsSendArgs(_Args):
    """Send a message to another session (by sessionKey, label, or an agent's main session by
    agentId) and wait up to timeoutSeconds for its reply (0: do not wait)."""

    tool: ClassVar[str] = "sessions_send"
    message: Annotated[str, msgspec.Meta(min_length=1)]
    session_key: str | None = None
    label: str | None = None
    agent_id: str | None = None
    timeout_seconds: Annotated[float, msgspec.Meta(ge=0)] = 30


class SessionsListArgs(_Args):
    """List the sessions this session may see."""

    tool: ClassVar[str] = "sessions_list"
    kinds: list[str] | None = None
    limit: _Positive | None = None
    active_minutes: _Positive | None = None
    message_limit: _NonNegative | None = None


class SessionsHistoryArgs(_Args):
    """Read a session's recent messages (sanitised, bounded, credentials redacted)."""

    tool: ClassVar[str] = "sessions_history"
    session_key: str
    limit: _Positive | None = None
    include_tools: bool = False


class SessionStatusArgs(_Args):
    """Show a session's status card (this session by default)."""

    tool: ClassVar[str] = "session_status"
    session_key: str | None = None
    model: str | None = None


class AgentsListArgs(_Args):
    """List the agent ids this agent may target with sessions_spawn."""

    tool: ClassVar[str] = "agents_list"


# --- web_fetch (run by the runner: it reaches the network, not a node's workspace) ------------


class WebFetchArgs(_Args):
    """Fetch URL; extract readable markdown/text. Lightweight; no browser automation."""

    tool: ClassVar[str] = "web_fetch"
    url: Annotated[str, msgspec.Meta(min_length=1, description="HTTP(S) URL.")]
    extract_mode: Annotated[
        Literal["markdown", "text"], msgspec.Meta(description="Extract as markdown/text.")
    ] = "markdown"
    max_chars: Annotated[
        Annotated[int, msgspec.Meta(ge=100)] | None,
        msgspec.Meta(description="Max chars returned; truncates."),
    ] = None


class MessageArgs(_Args):
    """Send a message to a chat through a channel (this conversation by default). action=send
    with message; target is a peer id, or kind:id (user:, group:, channel:)."""

    tool: ClassVar[str] = "message"
    action: Annotated[Literal["send"], msgspec.Meta(description="Select one action (send).")]
    message: Annotated[str | None, msgspec.Meta(description="The text to send.")] = None
    channel: Annotated[str | None, msgspec.Meta(description="Channel id (default: this chat's).")] = None
    target: Annotated[
        str | None, msgspec.Meta(description="Peer: an id, or kind:id (default: this chat).")
    ] = None
    account_id: str | None = None
    reply_to: str | None = None
    thread_id: str | None = None
    dry_run: bool = False


SessionToolArgs: TypeAlias = (
    SessionsSpawnArgs
    | SessionsSendArgs
    | SessionsListArgs
    | SessionsHistoryArgs
    | SessionStatusArgs
    | AgentsListArgs
)
# The tools the runner runs itself (below), never a node.
RunnerToolArgs: TypeAlias = SessionToolArgs | WebFetchArgs | MessageArgs
# Every implemented tool, in the order they are offered to the model.
ToolArgs: TypeAlias = ExecArgs | ProcessArgs | FileToolArgs | SessionToolArgs | WebFetchArgs | MessageArgs

_BY_TOOL: Final[Mapping[str, type[ToolArgs]]] = MappingProxyType(
    {cls.tool: cls for cls in get_args(ToolArgs)}
)
IMPLEMENTED_TOOLS: Final[tuple[str, ...]] = tuple(_BY_TOOL)
# Tools the runner runs itself (they act on sessions on the bus, or on the network, not on a
# node's files).
RUNNER_TOOLS: Final[frozenset[str]] = frozenset(cls.tool for cls in get_args(RunnerToolArgs))


def node_capability(tool: str) -> NodeCapability:
    """The capability a node needs for `tool` (a canonical name); an unknown tool is asked of
    the files capability and then refused by validation."""
    cls = _BY_TOOL.get(tool)
    return cls.capability if cls is not None else "files"


# --- the schemas the model sees ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ToolSchema:
    """One tool as offered to the model: a JSON-Schema object for its arguments."""

    name: str
    description: str
    parameters: dict[str, Any]  # a plain dict, as the provider SDKs serialise it: do not mutate


def _field_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """A property as the model sees it: an optional field is one that is not required, so
    `anyOf: [X, null]` is just X; defaults are the tool's business, not the model's. The
    description comes last, the order the model has always been shown."""
    members = [m for m in schema.get("anyOf", ()) if m != {"type": "null"}]
    body = members[0] if len(members) == 1 else {"anyOf": members} if members else {}
    merged = {**body, **{k: v for k, v in schema.items() if k not in ("anyOf", "default")}}
    description = merged.pop("description", None)
    return merged if description is None else {**merged, "description": description}


def _tool_schema(cls: type[ToolArgs], component: dict[str, Any]) -> ToolSchema:
    parameters: dict[str, Any] = {
        "type": "object",
        "properties": {name: _field_schema(prop) for name, prop in component["properties"].items()},
    }
    if component.get("required"):
        parameters["required"] = component["required"]
    description = " ".join(str(component.get("description", "")).split())
    return ToolSchema(cls.tool, description, parameters)


def _generate_schemas() -> Mapping[str, ToolSchema]:
    classes = get_args(ToolArgs)
    _, components = msgspec.json.schema_components(classes)
    return MappingProxyType({cls.tool: _tool_schema(cls, components[cls.__name__]) for cls in classes})


TOOL_SCHEMAS: Final[Mapping[str, ToolSchema]] = _generate_schemas()


# --- validating a call ---------------------------------------------------------------------------


class ToolArgumentError(ClawmeshError):
    """A tool call whose arguments do not fit the tool's schema; the message names the field."""

    def __init__(self, message: str) -> None:
        super().__init__("INVALID_ARGUMENTS", message)


def validate_tool_arguments(tool: str, arguments: Mapping[str, Any]) -> ToolArgs:
    """A call's arguments as the tool's struct; ToolArgumentError names the field that is wrong."""
    cls = _BY_TOOL.get(tool)
    if cls is None:
        raise ToolArgumentError(f"unknown tool {tool!r}")
    if INVALID_ARGUMENTS_KEY in arguments:
        raise ToolArgumentError(
            f"arguments are not a JSON object: {str(arguments[INVALID_ARGUMENTS_KEY])[:200]}"
        )
    try:
        return msgspec.convert(arguments, cls)
    except msgspec.ValidationError as exc:
        raise ToolArgumentError(f"invalid arguments for {tool}: {exc}") from None
