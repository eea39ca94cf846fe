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
    "TOOL_SCHEMAS",
    "EditArgs",
    "ExecArgs",
    "FileToolArgs",
    "GlobArgs",
    "LsArgs",
    "NodeCapability",
    "ReadArgs",
    "ToolArgs",
    "ToolArgumentError",
    "ToolSchema",
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


FileToolArgs: TypeAlias = ReadArgs | WriteArgs | EditArgs | LsArgs | GlobArgs
# Every implemented tool, in the order they are offered to the model.
ToolArgs: TypeAlias = ExecArgs | FileToolArgs

_BY_TOOL: Final[Mapping[str, type[ToolArgs]]] = MappingProxyType(
    {cls.tool: cls for cls in get_args(ToolArgs)}
)
IMPLEMENTED_TOOLS: Final[tuple[str, ...]] = tuple(_BY_TOOL)


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
