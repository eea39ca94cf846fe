"""`clawmesh agents list|bindings|add|bind|unbind|delete|set-identity` (OpenClaw's semantics
and `--json` shapes)."""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from ..checks import default_checks
from ..config import Config, backend_where, update_config_file
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


def describe_match(match: Any) -> str:
    """A binding's match as OpenClaw's CLI words it (`telegram accountId=work`,
    `discord peer=group:g1`, `discord guild=G roles=a,b`, `slack team=T`)."""
    if not isinstance(match, dict):
        return str(match)
    parts = [str(match.get("channel", ""))]
    if match.get("accountId") not in (None, ""):
        parts.append(f"accountId={match['accountId']}")
    peer = match.get("peer")
    if isinstance(peer, dict):
        parts.append(f"peer={peer.get('kind')}:{peer.get('id')}")
    if match.get("guildId"):
        parts.append(f"guild={match['guildId']}")
    if match.get("teamId"):
        parts.append(f"team={match['teamId']}")
    roles = match.get("roles")
    if isinstance(roles, list) and roles:
        parts.append("roles=" + ",".join(str(r) for r in roles))
    return " ".join(parts)


def _raw_bindings(config: Config, agent: str | None = None) -> list[dict[str, Any]]:
    """The config's route bindings in file order, each with OpenClaw's description."""
    out = []
    for b in config.raw.get("bindings") or []:
        if not isinstance(b, dict) or (b.get("type") or "route") != "route":
            continue
        aid = normalize_agent_id(str(b.get("agentId", "")))
        if agent is not None and aid != agent:
            continue
        out.append({"agentId": aid, "match": b.get("match"), "description": describe_match(b.get("match"))})
    return out


def _agent_json(config: Config, a: Any, rules: list[RouteBinding], with_bindings: bool) -> dict[str, Any]:
    """OpenClaw's `agents list --json` entry (same keys, same order), then clawmesh's own
    (`models`: the whole chain, `runnerType`, `default`; with --bindings `bindingRules`: the
    bindings in precedence order with their tier)."""
    identity = a.entry.identity
    mine = _raw_bindings(config, a.id)
    out: dict[str, Any] = {"id": a.id}
    if a.entry.name:
        out["name"] = a.entry.name
    if identity is not None and (identity.name or identity.emoji):
        if identity.name:
            out["identityName"] = identity.name
        if identity.emoji:
            out["identityEmoji"] = identity.emoji
        out["identitySource"] = "config"
    out["workspace"] = str(a.workspace)
    out["agentDir"] = str(a.agent_dir)
    if a.models:
        out["model"] = a.models[0]
    out["bindings"] = len(mine)
    out["isDefault"] = a.is_default
    if with_bindings:
        if mine:
            out["bindingDetails"] = [b["description"] for b in mine]
        if a.is_default:
            out["routes"] = ["default (no explicit rules)"]
        out["bindingRules"] = [
            {
                "binding": b.path,
                "tier": TIERS[min(_TIER_ORDER[b.tier], 7)] if b.tier != "peer" else "binding.peer",
                "match": _describe_binding(b),
            }
            for b in rules
        ]
    out["default"] = a.is_default
    out["models"] = list(a.models)
    out["runnerType"] = a.runner_type
    out["runsAt"] = backend_where(a.backend)
    return out


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
    all_gateways: Annotated[
        bool,
        typer.Option("--all-gateways", help="Also list the agents of every other gateway of the federation."),
    ] = False,
    nats_url: Annotated[
        str | None, typer.Option("--nats-url", help="NATS to read the federation catalogue from.")
    ] = None,
) -> None:
    """List agents: id, name, default marker, model chain, runner, workspace, agentDir."""
    config = load(ctx)
    by_agent = _bindings_by_agent(config)
    remote = _remote_catalogues(config, nats_url) if all_gateways else None
    if as_json:
        listed = [_agent_json(config, a, by_agent.get(a.id, []), bindings) for a in config.agents]
        if remote is not None:
            from ._gateways import own_region

            region = own_region(config) or "local"
            listed = [{**r, "gateway": region} for r in listed] + [
                {**agent, "gateway": cat.get("region"), "gatewayGone": cat.get("gone", False)}
                for cat in remote
                for agent in cat.get("agents") or []
            ]
        print_json(listed)
        return
    table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
    for col in ("id", "name", "default", "model", "runner", "workspace", "agentDir"):
        table.add_column(col, overflow="fold")
    for a in config.agents:
        table.add_row(
            a.id,
            a.name,
            "*" if a.is_default else "",
            # a proxy agent's backend answers; its model fallbacks only when that is down
            " → ".join(a.models if a.backend is None else (a.runner_type, *a.fallbacks)),
            a.runner_type,
            str(a.workspace),
            str(a.agent_dir),
        )
    console.print(table)
    for a in config.agents:
        if a.backend is not None:
            console.print(f"{a.id} runs at: {backend_where(a.backend)}", markup=False)
    if config.default_agent_id is None and config.default_agent_problem:
        console.print(f"no default agent: {config.default_agent_problem}", markup=False)
    if remote is not None:
        from ._gateways import print_remote_agents

        console.print("")
        print_remote_agents(config, remote)
    if bindings:
        for a in config.agents:
            rows = by_agent.get(a.id, [])
            console.print(f"\n{a.id}: {len(rows)} binding(s)", markup=False)
            for b in rows:
                console.print(f"  {b.path}  [{b.tier}]  {_describe_binding(b)}", markup=False)


def _remote_catalogues(config: Any, nats_url: str | None) -> list[dict[str, Any]]:
    import asyncio

    from ._gateways import catalogues

    try:
        return asyncio.run(catalogues(config, nats_url))
    except (OSError, TimeoutError, PermissionError) as exc:
        fail(f"cannot read the federation catalogue from NATS: {exc}")


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


@app.command("bindings")
def bindings_(
    ctx: typer.Context,
    agent: Annotated[str | None, typer.Option("--agent", help="Only this agent's bindings.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (OpenClaw's shape).")] = False,
) -> None:
    """List routing bindings in config order (as `openclaw agents bindings`)."""
    config = load(ctx)
    aid = _agent_or_fail(ctx, agent) if agent is not None else None
    rows = _raw_bindings(config, aid)
    if as_json:
        print_json(rows)
        return
    if not rows:
        console.print("No routing bindings." if aid is None else f"No routing bindings for {aid}.")
        return
    console.print("Routing bindings:")
    for row in rows:
        console.print(f"- {row['agentId']} <- {row['description']}")


def _find_entry(data: dict[str, Any], aid: str) -> tuple[Any, Any] | None:
    """The container (agents.list or agents.entries) and key/index of agent `aid` in the file."""
    lst, entries = _roster(data)
    if isinstance(lst, list):
        for i, e in enumerate(lst):
            if isinstance(e, dict) and normalize_agent_id(str(e.get("id", ""))) == aid:
                return lst, i
    if isinstance(entries, dict):
        for key in entries:
            if normalize_agent_id(str(key)) == aid:
                return entries, key
    return None


def _related(a: Path, b: Path) -> bool:
    a, b = a.resolve(), b.resolve()
    return a == b or a.is_relative_to(b) or b.is_relative_to(a)


@app.command("delete")
def delete(
    ctx: typer.Context,
    agent_id: Annotated[str, typer.Argument(metavar="ID", help="The agent to delete.")],
    force: Annotated[bool, typer.Option("--force", help="Skip confirmation.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON summary.")] = False,
) -> None:
    """Delete an agent: its config entry and bindings; its workspace, agentDir and sessions
    directory move to <stateDir>/trash (as `openclaw agents delete`). Transcripts in JetStream
    are kept."""
    config = load(ctx)
    view = config.agent(agent_id)
    if view is None or not config.has_roster:
        fail(f"unknown agent '{agent_id}' (configured: {', '.join(config.agent_ids)})")
    if len(config.agents) == 1:
        fail(f"'{view.id}' is the only configured agent and cannot be deleted")
    if not force:
        if not sys.stdin.isatty():
            fail(f"deleting '{view.id}' needs confirmation; re-run with --force", 2)
        typer.confirm(f"Delete agent '{view.id}' and move its workspace and state to the trash?", abort=True)
    aid = view.id
    removed_bindings = 0

    def mutate(data: dict[str, Any]) -> None:
        nonlocal removed_bindings
        found = _find_entry(data, aid)
        if found is None:
            fail(f"agent '{aid}' is not in {config_file(ctx)} (defined by an $include?)")
        container, key = found
        del container[key]
        bindings = data.get("bindings") or []
        kept = [
            b
            for b in bindings
            if not (isinstance(b, dict) and normalize_agent_id(str(b.get("agentId", ""))) == aid)
        ]
        removed_bindings = len(bindings) - len(kept)
        if "bindings" in data:
            data["bindings"] = kept

    update_config_file(config_file(ctx), mutate, checks=default_checks())
    others = [a for a in config.agents if a.id != aid]
    trash = config.state_dir / "trash" / f"{aid}-{int(time.time())}"
    removed: list[dict[str, str]] = []
    failed: list[dict[str, str]] = []
    retained: list[str] = []
    for what, path in (
        ("workspace", view.workspace),
        ("agentDir", view.agent_dir),
        ("sessions", view.sessions_dir),
    ):
        shared = [a.id for a in others if _related(path, a.workspace) or _related(path, a.agent_dir)]
        if shared:
            retained.extend(shared)
            removed.append({"path": str(path), "method": "retained"})
            continue
        if not path.exists():
            removed.append({"path": str(path), "method": "missing"})
            continue
        try:
            trash.mkdir(parents=True, exist_ok=True)
            shutil.move(str(path), str(trash / what))
            removed.append({"path": str(path), "method": "trash"})
        except OSError as exc:
            failed.append({"path": str(path), "error": str(exc)})
    summary: dict[str, Any] = {
        "agentId": aid,
        "workspace": str(view.workspace),
        "agentDir": str(view.agent_dir),
        "sessionsDir": str(view.sessions_dir),
        "removedBindings": removed_bindings,
        "removedAllow": 0,
        "removed": removed,
        "failed": failed,
    }
    if retained:
        summary["workspaceRetained"] = True
        summary["workspaceSharedWith"] = sorted(set(retained))
    if as_json:
        print_json(summary)
    else:
        console.print(f"deleted agent '{aid}' ({removed_bindings} binding(s) removed)")
        for row in removed:
            if row["method"] == "trash":
                console.print(f"  moved {row['path']} to {trash}")
            elif row["method"] == "retained":
                console.print(f"  kept {row['path']} (shared with {', '.join(sorted(set(retained)))})")
        for row in failed:
            console.print(f"  could not move {row['path']}: {row['error']} (remove it by hand)")
    if failed:
        raise typer.Exit(1)


@app.command("set-identity")
def set_identity(
    ctx: typer.Context,
    agent: Annotated[
        str | None, typer.Option("--agent", help="Agent id (default: the default agent).")
    ] = None,
    name: Annotated[str | None, typer.Option("--name", help="Identity name.")] = None,
    theme: Annotated[str | None, typer.Option("--theme", help="Identity theme.")] = None,
    emoji: Annotated[str | None, typer.Option("--emoji", help="Identity emoji.")] = None,
    avatar: Annotated[
        str | None,
        typer.Option("--avatar", help="Identity avatar (workspace path, http(s) URL or data URI)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON summary.")] = False,
) -> None:
    """Update an agent's identity (name/theme/emoji/avatar), as `openclaw agents set-identity`."""
    values = {k: v for k, v in (("name", name), ("theme", theme), ("emoji", emoji), ("avatar", avatar)) if v}
    if not values:
        fail("give at least one of --name, --theme, --emoji, --avatar", 2)
    config = load(ctx)
    if agent is None:
        if config.default_agent_id is None:
            fail("no default agent; pass --agent")
        aid = config.default_agent_id
    else:
        aid = _agent_or_fail(ctx, agent)
    identity: dict[str, Any] = {}

    def mutate(data: dict[str, Any]) -> None:
        found = _find_entry(data, aid)
        if found is None:
            lst, entries = _roster(data)
            if lst is not None or entries is not None:
                fail(f"agent '{aid}' is not in {config_file(ctx)} (defined by an $include?)")
            # the implicit single agent gets an explicit entry to hold its identity
            data["agents"]["list"] = [{"id": aid, "default": True}]
            found = data["agents"]["list"], 0
        container, key = found
        entry = container[key]
        current = entry.get("identity") if isinstance(entry.get("identity"), dict) else {}
        entry["identity"] = {**current, **values}
        identity.update(entry["identity"])

    update_config_file(config_file(ctx), mutate, checks=default_checks())
    if as_json:
        print_json({"agentId": aid, "identity": identity})
    else:
        console.print(f"updated identity of '{aid}': " + ", ".join(f"{k}={v}" for k, v in identity.items()))


__all__ = ["app", "apply_bind", "describe_match", "state"]
