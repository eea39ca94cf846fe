"""`clawmesh tools explain`: the tools an agent gets, and which config stage removed each other one."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

import typer
from rich.table import Table
from rich.text import Text

from ..config import AgentView, Config
from ..routing import (
    build_agent_main_session_key,
    get_subagent_depth,
    is_subagent_session_key,
    parse_agent_session_key,
    to_agent_store_session_key,
)
from ..tools import ToolPolicyResult, UnknownAgentError, effective_tools, tool_info
from ._common import console, fail, load, print_json

app = typer.Typer(help="Inspect agent tools and the tool policy.", no_args_is_help=True)

SandboxMode = Literal["off", "non-main", "all"]


def sandbox_mode(config: Config, view: AgentView) -> SandboxMode:
    """`agents.list[].sandbox.mode`, else `agents.defaults.sandbox.mode`, else `off`."""
    defaults = config.document.agents.defaults if config.document.agents else None
    for sandbox in (view.entry.sandbox, defaults.sandbox if defaults else None):
        if sandbox is not None and sandbox.mode is not None:
            return sandbox.mode
    return "off"


@dataclass(frozen=True)
class _Session:
    key: str
    is_main: bool
    subagent_depth: int  # 0 = not a sub-agent session


def _session(config: Config, view: AgentView, session: str | None) -> _Session:
    """The session to explain (default: the agent's main session), normalised like the store does."""
    main_key = build_agent_main_session_key(view.id, config.settings.session.main_key)
    if session is None:
        return _Session(main_key, True, 0)
    key = to_agent_store_session_key(view.id, session, config.settings.session.main_key)
    parsed = parse_agent_session_key(key)
    if parsed is None:
        fail(f"malformed session key {session!r}: expected agent:<agentId>:<rest>", 2)
    if parsed.agent_id != view.id:
        fail(f"session key {session!r} belongs to agent '{parsed.agent_id}', not '{view.id}'", 2)
    key = f"agent:{parsed.agent_id}:{parsed.rest}"
    depth = get_subagent_depth(key) if is_subagent_session_key(key) else 0
    return _Session(key, key == main_key, depth)


def _tool_list(names: list[str]) -> str:
    return ", ".join(names) if names else "(none)"


@app.command()
def explain(
    ctx: typer.Context,
    agent: Annotated[str, typer.Option("--agent", metavar="ID", help="Agent id.")],
    session: Annotated[
        str | None,
        typer.Option(
            "--session",
            metavar="KEY",
            help="Session key; decides --sandboxed from the agent's sandbox mode and --subagent "
            "from agent:<id>:subagent:… keys (default: the agent's main session).",
        ),
    ] = None,
    sandboxed: Annotated[
        bool | None,
        typer.Option(
            "--sandboxed/--no-sandboxed",
            help="Apply (or skip) the sandbox stage, whatever the session and sandbox mode say.",
        ),
    ] = None,
    subagent: Annotated[
        bool, typer.Option("--subagent", help="Apply the sub-agent stage (as a depth-1 sub-agent).")
    ] = False,
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            metavar="PROVIDER/MODEL",
            help="Model for tools.byProvider (default: the agent's primary).",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Print the agent's effective tools and, for each removed tool, the stage and rule that removed it."""
    config = load(ctx)
    view = config.agent_view(agent)
    if view is None:
        fail(str(UnknownAgentError(agent, config.agent_ids)))
    sess = _session(config, view, session)
    mode = sandbox_mode(config, view)
    is_sandboxed = (
        (mode == "all" or (mode == "non-main" and not sess.is_main)) if sandboxed is None else sandboxed
    )
    depth = sess.subagent_depth or (1 if subagent else 0)
    model_ref = model or (view.models[0] if view.models else None)
    result = effective_tools(
        config,
        view.id,
        model=model_ref,
        sandboxed=is_sandboxed,
        subagent=depth > 0,
        spawn_depth=max(depth, 1),
    )
    if as_json:
        print_json(
            {
                "agent": view.id,
                "path": view.path,
                "model": model_ref,
                "session": sess.key,
                "mainSession": sess.is_main,
                "sandboxMode": mode,
                "sandboxed": is_sandboxed,
                "subagent": depth > 0,
                "spawnDepth": depth or None,
                "allowed": list(result.allowed),
                "notImplemented": [t for t in result.allowed if not _implemented(t)],
                "removed": [{"tool": r.tool, "stage": r.stage, "rule": r.rule} for r in result.removed],
                "warnings": list(result.warnings),
            }
        )
        return
    _print_text(view, model_ref, sess, mode, is_sandboxed, depth, result)


def _implemented(tool: str) -> bool:
    info = tool_info(tool)
    return info is not None and info.implemented


def _print_text(
    view: AgentView,
    model_ref: str | None,
    sess: _Session,
    mode: SandboxMode,
    is_sandboxed: bool,
    depth: int,
    result: ToolPolicyResult,
) -> None:
    out = console
    where = view.path.removeprefix("$.") if view.path != "$" else "no agents configured; defaults"
    out.print(f"agent {view.id} ({where}) · model {model_ref or '-'}", markup=False)
    out.print(
        f"session {sess.key}{' (main)' if sess.is_main else ''} · sandbox mode {mode} → "
        f"{'sandboxed' if is_sandboxed else 'not sandboxed'} · "
        + (f"sub-agent (depth {depth})" if depth else "not a sub-agent"),
        markup=False,
    )
    runnable = [t for t in result.allowed if _implemented(t)]
    policy_only = [t for t in result.allowed if not _implemented(t)]
    out.print(f"\nallowed ({len(runnable)}): {_tool_list(runnable)}", markup=False)
    if policy_only:
        out.print(
            f"allowed by policy, not implemented by clawmesh yet ({len(policy_only)}): {_tool_list(policy_only)}",
            markup=False,
        )
    if result.removed:
        out.print(f"\nremoved ({len(result.removed)}):", markup=False)
        table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
        for col in ("tool", "stage", "rule"):
            table.add_column(col, overflow="fold")
        for r in result.removed:
            table.add_row(Text(r.tool), Text(r.stage), Text(r.rule))
        out.print(table)
    for warning in result.warnings:
        out.print(f"warning: {warning}", markup=False)


__all__ = ["app", "explain", "sandbox_mode"]
