"""The tools clawmesh implements, as the model sees them (JSON Schema) and as they are
validated when a call comes back (msgspec): a bad argument is an error *result* that names
the field, so the model can correct itself; it never breaks the turn."""

from __future__ import annotations

from typing import Any, Final

import msgspec

__all__ = [
    "IMPLEMENTED_TOOLS",
    "TOOL_SCHEMAS",
    "EditArgs",
    "ExecArgs",
    "GlobArgs",
    "LsArgs",
    "ReadArgs",
    "ToolArgumentError",
    "WriteArgs",
    "parse_arguments",
]


class _Args(msgspec.Struct, kw_only=True, rename="camel"):
    pass


class ExecArgs(_Args):
    command: str | None = None
    argv: list[str] | None = None
    workdir: str | None = None
    env: dict[str, str] = {}
    timeout: float | None = None


class ReadArgs(_Args):
    path: str
    offset: int | None = None
    limit: int | None = None


class WriteArgs(_Args):
    path: str
    content: str


class EditArgs(_Args):
    path: str
    old_text: str
    new_text: str
    replace_all: bool = False


class LsArgs(_Args):
    path: str = "."


class GlobArgs(_Args):
    pattern: str
    path: str = "."


_ARGS: Final[dict[str, type[_Args]]] = {
    "exec": ExecArgs,
    "read": ReadArgs,
    "write": WriteArgs,
    "edit": EditArgs,
    "ls": LsArgs,
    "glob": GlobArgs,
}
IMPLEMENTED_TOOLS: Final = tuple(_ARGS)

_PATH = {"type": "string", "description": "Path relative to the workspace (or under /workspace)."}
TOOL_SCHEMAS: Final[dict[str, tuple[str, dict[str, Any]]]] = {
    "exec": (
        "Run a shell command in the agent's workspace (inside its sandbox when one applies). "
        "Returns exit code and output.",
        {
            "type": "object",
            "properties": {
                "command": {"type": "string", "description": "Shell command line (run with sh -lc)."},
                "argv": {
                    "type": "array",
                    "items": {"type": "string"},
                    "description": "Program and arguments, instead of command.",
                },
                "workdir": {"type": "string", "description": "Working directory relative to the workspace."},
                "env": {"type": "object", "additionalProperties": {"type": "string"}},
                "timeout": {
                    "type": "number",
                    "description": "Seconds before the command is killed (default 120).",
                },
            },
        },
    ),
    "read": (
        "Read a text file from the workspace.",
        {
            "type": "object",
            "properties": {
                "path": _PATH,
                "offset": {"type": "integer", "description": "First line to return (1-based)."},
                "limit": {"type": "integer", "description": "Number of lines to return."},
            },
            "required": ["path"],
        },
    ),
    "write": (
        "Create or overwrite a file in the workspace.",
        {
            "type": "object",
            "properties": {"path": _PATH, "content": {"type": "string"}},
            "required": ["path", "content"],
        },
    ),
    "edit": (
        "Replace exact text in a file. oldText must occur exactly once (or set replaceAll).",
        {
            "type": "object",
            "properties": {
                "path": _PATH,
                "oldText": {"type": "string"},
                "newText": {"type": "string"},
                "replaceAll": {"type": "boolean"},
            },
            "required": ["path", "oldText", "newText"],
        },
    ),
    "ls": ("List a directory of the workspace.", {"type": "object", "properties": {"path": _PATH}}),
    "glob": (
        "Find files in the workspace by glob pattern (e.g. **/*.py).",
        {
            "type": "object",
            "properties": {"pattern": {"type": "string"}, "path": _PATH},
            "required": ["pattern"],
        },
    ),
}


class ToolArgumentError(ValueError):
    pass


def parse_arguments(tool: str, arguments: dict[str, Any]) -> Any:
    """Validate a tool call's arguments; ToolArgumentError names the field that is wrong."""
    cls = _ARGS.get(tool)
    if cls is None:
        raise ToolArgumentError(f"unknown tool {tool!r}")
    if "__invalid_arguments__" in arguments:
        raise ToolArgumentError(
            f"arguments are not a JSON object: {str(arguments['__invalid_arguments__'])[:200]}"
        )
    try:
        parsed = msgspec.convert(arguments, cls)
    except msgspec.ValidationError as exc:
        raise ToolArgumentError(f"invalid arguments for {tool}: {exc}") from None
    if isinstance(parsed, ExecArgs) and not parsed.command and not parsed.argv:
        raise ToolArgumentError("invalid arguments for exec: give `command` (a shell command line) or `argv`")
    return parsed
