"""`clawmesh agents list|add|bind|unbind` (OpenClaw's semantics for bind/unbind)."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer
from rich.table import Table

from ..checks import default_checks
from ..config import Config, update_config_file
from ..ids import is_valid_agent_id, normalize_account_id, normalize_agent_id
from ..routing import TIERS, RouteBinding, normalize_bindings
from ..workspace import ensure_agent_dirs
from ._common import config_file, console, fail, load, parse_bind, print_json, state

app = typer.Typer(help="List, add and bind agents.", no_args_is_help=True)

_TIER_ORDER = {"peer": 0, "guild+roles": 3, "guild": 4, "team": 5, "account": 6, "channel": 7}


def _describe_binding(b: RouteBinding) -> str:
    parts = [b.channel + (f":{b.account}" if b.account_given else "")]
    if b.peer_state in ("valid", "wildcard"):
        parts.append(f"peer {b.peer_kind}:{b.peer_id}")
    if b.guild_id:
        parts.append(f"guild {b.guild_id}")
    if b.team_id:
        parts.append(f"team {b.team_id}")
    if b.role_list:
        parts.append("roles " + ",".join(b.role_list))
    return " ".join(parts)


def _bindings_by_agent(config: Config) -> dict[str, list[RouteBinding]]:
    """Each agent's bindings in effective precedence order: tier first, then config order."""
    out: dict[str, list[RouteBinding]] = {}
    for b in sorted(
        normalize_bindings(config.document.bindings), key=lambda b: (_TIER_ORDER[b.tier], b.index)
    ):
        out.setdefault(normalize_agent_id(b.agent_id), []).append(b)
    return out


@app.command("list")
def list_(
    ctx: typer.Context,
    bindings: Annotated[
        bool, typer.Option("--bindings", help="Also show each agent's bindings, in precedence order.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List agents: id, name, default marker, model chain, runner, workspace, agentDir."""
    config = load(ctx)
    by_agent = _bindings_by_agent(config)
    if as_json:
        print_json(
            [
                {
                    "id": a.id,
                    "name": a.name,
                    "default": a.is_default,
                    "models": list(a.models),
                    "runnerType": a.runner_type,
                    "workspace": str(a.workspace),
                    "agentDir": str(a.agent_dir),
                    "bindings": [
                        {
                            "binding": b.path,
                            "tier": TIERS[min(_TIER_ORDER[b.tier], 7)]
                            if b.tier != "peer"
                            else "binding.peer",
                            "match": _describe_binding(b),
                        }
                        for b in by_agent.get(a.id, [])
                    ],
                }
                for a in config.agents
            ]
        )
        return
    table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
    for col in ("id", "name", "default", "model", "runner", "workspace", "agentDir"):
        table.add_column(col, overflow="fold")
    for a in config.agents:
        table.add_row(
            a.id,
            a.name,
            "*" if a.is_default else "",
            " → ".join(a.models),
            a.runner_type,
            str(a.workspace),
            str(a.agent_dir),
        )
    console.print(table)
    if config.default_agent_id is None and config.default_agent_problem:
        console.print(f"no default agent: {config.default_agent_problem}", markup=False)
    if bindings:
        for a in config.agents:
            rows = by_agent.get(a.id, [])
            console.print(f"\n{a.id}: {len(rows)} binding(s)", markup=False)
            for b in rows:
                console.print(f"  {b.path}  [{b.tier}]  {_describe_binding(b)}", markup=False)


def _roster(data: dict[str, Any]) -> tuple[list[dict[str, Any]] | None, dict[str, Any] | None]:
    agents = data.setdefault("agents", {})
    if not isinstance(agents, dict):
        fail("$.agents is not an object; fix the config first")
    return agents.get("list"), agents.get("entries")


def _simple(binding: Any) -> bool:
    if not isinstance(binding, dict) or (binding.get("type") or "route") != "route":
        return False
    match = binding.get("match")
    return isinstance(match, dict) and not any(k in match for k in ("peer", "guildId", "teamId", "roles"))


def _account_key(account: Any) -> str:
    text = account.strip() if isinstance(account, str) else ""
    return "*" if text == "*" else normalize_account_id(text or None)


def apply_bind(data: dict[str, Any], agent_id: str, channel: str, account: str | None) -> str:
    """Add `channel[:account]` for an agent; an explicit account upgrades a channel-only binding."""
    bindings = data.setdefault("bindings", [])
    wanted = _account_key(account)
    for b in bindings:
        if not _simple(b) or str(b["match"].get("channel", "")).strip().lower() != channel:
            continue
        same_agent = normalize_agent_id(str(b.get("agentId", ""))) == agent_id
        key = _account_key(b["match"].get("accountId"))
        if key == wanted:
            if same_agent:
                return f"{agent_id} is already bound to {channel}:{wanted}"
            fail(f"{channel}:{wanted} is already bound to agent '{b.get('agentId')}'; unbind it first")
    if account is not None:
        for b in bindings:
            if (
                _simple(b)
                and normalize_agent_id(str(b.get("agentId", ""))) == agent_id
                and str(b["match"].get("channel", "")).strip().lower() == channel
                and not str(b["match"].get("accountId") or "").strip()
            ):
                b["match"]["accountId"] = account
                return f"upgraded {agent_id}'s {channel} binding to {channel}:{account}"
    match: dict[str, Any] = {"channel": channel}
    if account is not None:
        match["accountId"] = account
    bindings.append({"agentId": agent_id, "match": match})
    return f"bound {agent_id} to {channel}" + (f":{account}" if account is not None else " (default account)")


def _bind_all(data: dict[str, Any], agent_id: str, binds: list[str]) -> list[str]:
    return [apply_bind(data, agent_id, *parse_bind(spec)) for spec in binds]


@app.command()
def add(
    ctx: typer.Context,
    agent_id: Annotated[str, typer.Argument(metavar="ID", help="Agent id: [a-z0-9][a-z0-9_-]{0,63}.")],
    name: Annotated[str | None, typer.Option(help="Display name.")] = None,
    workspace: Annotated[
        str | None, typer.Option(help="Workspace directory (default: <stateDir>/workspace-<id>).")
    ] = None,
    model: Annotated[
        str | None, typer.Option(help="Model, provider/model (e.g. anthropic/claude-sonnet-4-6, echo/demo).")
    ] = None,
    agent_dir: Annotated[
        str | None, typer.Option("--agent-dir", help="agentDir (default: <stateDir>/agents/<id>/agent).")
    ] = None,
    bind: Annotated[
        list[str] | None,
        typer.Option("--bind", help="channel[:accountId], repeatable; ch:* = every account."),
    ] = None,
    non_interactive: Annotated[bool, typer.Option("--non-interactive", help="Never prompt.")] = False,
) -> None:
    """Add an agent: create its workspace (AGENTS.md, SOUL.md, USER.md) and agentDir, write the config."""
    if not is_valid_agent_id(agent_id):
        fail(f"invalid agent id {agent_id!r}: ids must match [a-z0-9][a-z0-9_-]{{0,63}}", 2)
    aid = normalize_agent_id(agent_id)
    current = load(ctx)
    if current.has_roster and current.agent(aid) is not None:
        fail(f"agent '{aid}' already exists ({current.agent(aid).path})")  # type: ignore[union-attr]
    if not non_interactive and sys.stdin.isatty():
        name = name or typer.prompt("Display name", default=aid)
        model = model or typer.prompt("Model (provider/model)", default="echo/default")
    notes: list[str] = []

    def mutate(data: dict[str, Any]) -> None:
        lst, entries = _roster(data)
        entry: dict[str, Any] = {}
        for key, value in (
            ("name", name),
            ("workspace", workspace),
            ("model", model),
            ("agentDir", agent_dir),
        ):
            if value:
                entry[key] = value
        if entries is not None and lst is None:
            entries[aid] = entry
        else:
            if lst is None:
                # Adding to an implicit single-agent setup: keep `main` as the owner so routing
                # of unbound messages does not silently move to the new agent.
                lst = data["agents"]["list"] = [{"id": "main", "default": True}]
                notes.append(
                    "created agents.list with 'main' (default) so unbound messages keep going to main"
                )
            lst.append({"id": aid, **entry})
        notes.extend(_bind_all(data, aid, bind or []))

    path = config_file(ctx)
    config = update_config_file(path, mutate, checks=default_checks())
    view = config.agent(aid)
    assert view is not None
    created = ensure_agent_dirs(view.workspace, view.agent_dir, aid, view.name)
    console.print(f"added agent '{aid}' to {path}", markup=False)
    console.print(
        f"  workspace {view.workspace}\n  agentDir  {view.agent_dir}\n  model     {' → '.join(view.models)}",
        markup=False,
    )
    for note in notes:
        console.print(f"  {note}", markup=False)
    if created:
        console.print(f"  created {len(created)} workspace file(s)/dir(s)", markup=False)
    if path.with_name(path.name + ".bak").exists():
        console.print(f"  previous config kept as {path.name}.bak", markup=False)


def _agent_or_fail(ctx: typer.Context, agent: str) -> str:
    aid = normalize_agent_id(agent)
    config = load(ctx)
    if config.has_roster and config.agent(aid) is None and aid != "main":
        fail(f"unknown agent '{agent}' (configured: {', '.join(config.agent_ids)})")
    return aid


@app.command("bind")
def bind_(
    ctx: typer.Context,
    agent: Annotated[str, typer.Option("--agent", help="Agent id.")],
    bind: Annotated[
        list[str], typer.Option("--bind", help="channel[:accountId], repeatable; ch:* = every account.")
    ],
) -> None:
    """Bind an agent to channel accounts. A binding without account matches only the `default` account."""
    aid = _agent_or_fail(ctx, agent)
    notes: list[str] = []
    update_config_file(
        config_file(ctx), lambda data: notes.extend(_bind_all(data, aid, bind)), checks=default_checks()
    )
    for note in notes:
        console.print(note, markup=False)


@app.command()
def unbind(
    ctx: typer.Context,
    agent: Annotated[str, typer.Option("--agent", help="Agent id.")],
    bind: Annotated[
        list[str] | None, typer.Option("--bind", help="channel[:accountId] to remove, repeatable.")
    ] = None,
    all_: Annotated[bool, typer.Option("--all", help="Remove every binding of the agent.")] = False,
) -> None:
    """Remove an agent's channel bindings."""
    if not bind and not all_:
        fail("give --bind channel[:accountId] or --all", 2)
    aid = _agent_or_fail(ctx, agent)
    removed: list[str] = []

    def mutate(data: dict[str, Any]) -> None:
        kept = []
        targets = [(ch, _account_key(acct)) for ch, acct in (parse_bind(s) for s in bind or [])]
        for b in data.get("bindings") or []:
            mine = isinstance(b, dict) and normalize_agent_id(str(b.get("agentId", ""))) == aid
            if mine and all_:
                removed.append(str(b.get("match")))
                continue
            if mine and _simple(b):
                key = (
                    str(b["match"].get("channel", "")).strip().lower(),
                    _account_key(b["match"].get("accountId")),
                )
                if key in targets:
                    removed.append(f"{key[0]}:{key[1]}")
                    continue
            kept.append(b)
        if not removed:
            fail(f"agent '{aid}' has no such binding")
        data["bindings"] = kept

    update_config_file(config_file(ctx), mutate, checks=default_checks())
    console.print(f"removed {len(removed)} binding(s) of {aid}: {', '.join(removed)}", markup=False)


__all__ = ["app", "apply_bind", "state"]
