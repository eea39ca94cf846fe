"""The tool contract: the schemas the model is offered (generated from the argument structs)
and how the arguments of a call that comes back are validated."""

from __future__ import annotations

import json
from typing import Any

import pytest

from clawmesh.tools.specs import (
    IMPLEMENTED_TOOLS,
    INVALID_ARGUMENTS_KEY,
    RUNNER_TOOLS,
    TOOL_SCHEMAS,
    EditArgs,
    ExecArgs,
    GlobArgs,
    LsArgs,
    ReadArgs,
    ToolArgumentError,
    WriteArgs,
    node_capability,
    validate_tool_arguments,
)

# What the model is shown, written out (OpenClaw's tool shapes: camelCase names, optional
# fields simply not required, no defaults or titles). A change to an argument struct that
# changes what the model sees shows up here as a diff, key order included.
_PATH = {"type": "string", "description": "Path relative to the workspace (or under /workspace)."}
EXPECTED: dict[str, tuple[str, dict[str, Any]]] = {
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
                "background": {
                    "type": "boolean",
                    "description": "Run in the background at once; returns a sessionId for process.",
                },
                "yieldMs": {
                    "type": "integer",
                    "minimum": 0,
                    "description": "Background the command if it still runs after this many ms.",
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


def test_every_implemented_tool_is_offered_in_order() -> None:
    assert IMPLEMENTED_TOOLS == (
        "exec",
        "process",
        "read",
        "write",
        "edit",
        "apply_patch",
        "ls",
        "glob",
        "sessions_spawn",
        "sessions_send",
        "sessions_list",
        "sessions_history",
        "session_status",
        "agents_list",
        "web_fetch",
        "message",
    )
    assert tuple(TOOL_SCHEMAS) == IMPLEMENTED_TOOLS
    assert all(schema.name == name for name, schema in TOOL_SCHEMAS.items())


def test_exec_needs_a_node_that_runs_commands_the_rest_one_that_lends_files() -> None:
    on_nodes = [tool for tool in IMPLEMENTED_TOOLS if tool not in RUNNER_TOOLS]
    assert {tool: node_capability(tool) for tool in on_nodes} == {
        "exec": "exec",
        "process": "exec",
        "read": "files",
        "write": "files",
        "edit": "files",
        "apply_patch": "files",
        "ls": "files",
        "glob": "files",
    }
    assert node_capability("nosuch") == "files"  # and then refused as an unknown tool


@pytest.mark.parametrize("tool", list(EXPECTED))
def test_generated_schema_is_what_the_model_is_shown(tool: str) -> None:
    description, parameters = EXPECTED[tool]
    schema = TOOL_SCHEMAS[tool]
    assert schema.description == description
    # As text, so that the key order (what the provider serialises) is compared too.
    assert json.dumps(schema.parameters, indent=2) == json.dumps(parameters, indent=2)


@pytest.mark.parametrize(
    ("tool", "arguments", "expected"),
    [
        ("exec", {"command": "ls"}, ExecArgs(command="ls")),
        (
            "exec",
            {"argv": ["ls", "-l"], "workdir": "sub", "env": {"A": "1"}, "timeout": 5},
            ExecArgs(argv=["ls", "-l"], workdir="sub", env={"A": "1"}, timeout=5.0),
        ),
        ("read", {"path": "a", "offset": 2, "limit": 3}, ReadArgs(path="a", offset=2, limit=3)),
        ("write", {"path": "a", "content": "x"}, WriteArgs(path="a", content="x")),
        (
            "edit",
            {"path": "a", "oldText": "x", "newText": "y", "replaceAll": True},
            EditArgs(path="a", old_text="x", new_text="y", replace_all=True),
        ),
        ("ls", {}, LsArgs(path=".")),
        ("glob", {"pattern": "*.py"}, GlobArgs(pattern="*.py", path=".")),
    ],
)
def test_valid_arguments_become_the_tools_struct(tool: str, arguments: dict[str, Any], expected: Any) -> None:
    assert validate_tool_arguments(tool, arguments) == expected


@pytest.mark.parametrize(
    ("tool", "arguments", "message"),
    [
        ("exec", {}, "invalid arguments for exec: give `command` (a shell command line) or `argv`"),
        (
            "exec",
            {"command": ""},
            "invalid arguments for exec: give `command` (a shell command line) or `argv`",
        ),
        (
            "exec",
            {"command": "ls", "timeout": "soon"},
            "invalid arguments for exec: Expected `float | null`, got `str` - at `$.timeout`",
        ),
        ("read", {"path": 5}, "invalid arguments for read: Expected `str`, got `int` - at `$.path`"),
        (
            "edit",
            {"path": "x", "newText": "y"},
            "invalid arguments for edit: Object missing required field `oldText`",
        ),
        ("read", {INVALID_ARGUMENTS_KEY: "{oops"}, "arguments are not a JSON object: {oops"),
        ("nosuch", {}, "unknown tool 'nosuch'"),
        ("bash", {"command": "ls"}, "unknown tool 'bash'"),  # aliases are resolved before a node sees a call
    ],
)
def test_invalid_arguments_name_the_problem(tool: str, arguments: dict[str, Any], message: str) -> None:
    with pytest.raises(ToolArgumentError) as err:
        validate_tool_arguments(tool, arguments)
    assert str(err.value) == message


def test_broken_argument_text_is_cut_short_in_the_error() -> None:
    with pytest.raises(ToolArgumentError) as err:
        validate_tool_arguments("write", {INVALID_ARGUMENTS_KEY: "x" * 1000})
    assert str(err.value) == "arguments are not a JSON object: " + "x" * 200
