"""`clawmesh nodes list|describe` and `clawmesh sandbox explain|list|recreate`."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import msgspec
import typer
from rich.table import Table

from ..config import Config, NodeSelector, backend_where
from ..routing import build_agent_main_session_key
from ..wire import Subjects
from ._common import console, fail, load, print_json
from ._remote import nats_client, scatter_gather

nodes_app = typer.Typer(help="Node-agents: where agents' tools run.", no_args_is_help=True)
sandbox_app = typer.Typer(help="Docker sandboxes of agents.", no_args_is_help=True)

NatsUrl = Annotated[
    str | None,
    typer.Option(
        "--nats-url", help="NATS URL (default: $CLAWMESH_NATS_URL, nats.url, or the embedded server)."
    ),
]


def _plain(value: Any) -> Any:
    """JSON-friendly copy of a sandbox setting (mapping proxies, paths, tuples)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def _gib(n: int) -> str:
    return f"{n / 2**30:.1f} GiB" if n else "?"


async def _statuses(config: Config, url: str | None) -> list[Any]:
    from ..nodes import NodeDirectory

    async with nats_client(config, url) as nc:
        js = nc.jetstream()
        kv = await js.key_value(Subjects(config.subject_prefix).bucket("nodes"))
        directory = NodeDirectory(kv, offline_after_missed=config.settings.nodes.offline_after_missed)
        return await directory.statuses(fresh=True)


def _node_dict(status: Any) -> dict[str, Any]:
    data: dict[str, Any] = msgspec.to_builtins(status.node)
    data["online"] = status.online
    data["lastSeenSecondsAgo"] = round(status.age, 1)
    return data


@nodes_app.command("list")
def nodes_list(
    ctx: typer.Context,
    nats_url: NatsUrl = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    all_gateways: Annotated[
        bool,
        typer.Option("--all-gateways", help="Also list the nodes of every other gateway of the federation."),
    ] = False,
) -> None:
    """Every node that announced itself: labels, location, capabilities, resources, sandboxes, last seen."""
    config = load(ctx)
    statuses = asyncio.run(_statuses(config, nats_url))
    remote = None
    if all_gateways:
        from ._gateways import catalogues, print_remote_nodes

        remote = asyncio.run(catalogues(config, nats_url))
    if as_json:
        rows = [_node_dict(s) for s in statuses]
        if remote is not None:
            from ._gateways import own_region

            region = own_region(config) or "local"
            rows = [{**r, "gateway": region} for r in rows] + [
                {**node, "gateway": cat.get("region"), "gatewayGone": cat.get("gone", False)}
                for cat in remote
                for node in cat.get("nodes") or []
            ]
        print_json(rows)
        return
    if remote is not None:
        print_remote_nodes(config, remote)
        console.print("")
    if not statuses:
        console.print("no node has announced itself (is a node-agent running?)", markup=False)
        return
    table = Table(
        "node",
        "online",
        "labels",
        "location",
        "capabilities",
        "cpus",
        "load",
        "memory free",
        "sandboxes",
        "last seen",
        box=None,
        header_style="bold",
    )
    for s in statuses:
        n = s.node
        labels = ",".join(f"{k}={v}" for k, v in sorted(n.labels.items()) if k != "location")
        table.add_row(
            n.node_id,
            "yes" if s.online else "NO",
            labels,
            n.labels.get("location", ""),
            ",".join(n.capabilities),
            str(n.resources.cpus),
            f"{n.resources.load1:.2f}",
            f"{_gib(n.resources.memory_available)} / {_gib(n.resources.memory_total)}",
            str(len(n.sandboxes)),
            f"{s.age:.0f}s ago",
        )
    console.print(table)


@nodes_app.command("describe")
def nodes_describe(
    ctx: typer.Context, node_id: Annotated[str, typer.Argument(metavar="ID")], nats_url: NatsUrl = None
) -> None:
    """Everything a node announced, as JSON."""
    config = load(ctx)
    statuses = asyncio.run(_statuses(config, nats_url))
    found = next((s for s in statuses if s.node.node_id == node_id), None)
    if found is None:
        fail(
            f"node {node_id!r} is not known (known: {', '.join(s.node.node_id for s in statuses) or 'none'})"
        )
    print_json(_node_dict(found))


# --- sandbox -------------------------------------------------------------------------------


@sandbox_app.command("explain")
def sandbox_explain(
    ctx: typer.Context,
    agent: Annotated[str, typer.Option("--agent", help="Agent id.")],
    session: Annotated[
        str | None, typer.Option("--session", help="Session key (decides non-main mode).")
    ] = None,
    nats_url: NatsUrl = None,
    offline: Annotated[
        bool, typer.Option("--offline", help="Do not ask the gateway which node would run it.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """The agent's effective sandbox config (defaults + agent overrides) and where it would run."""
    from ..nodes import pick_node, selector_text
    from ..sandbox import resolve_sandbox

    config = load(ctx)
    view = config.agent_view(agent)
    if view is None:
        fail(f"unknown agent {agent!r} (configured: {', '.join(config.agent_ids)})")
    sandbox = resolve_sandbox(config, view.id)
    main_key = build_agent_main_session_key(view.id, config.settings.session.main_key)
    key = session or main_key
    applies = sandbox.applies_to(key, main_key)
    spec: Any = view.node
    if isinstance(spec, NodeSelector):
        spec = dict(spec.selector)
    placement: dict[str, Any] = {"pinned": selector_text(spec)}
    if not offline:
        try:
            statuses = asyncio.run(_statuses(config, nats_url))
        except typer.Exit:
            raise
        except Exception as exc:
            placement["error"] = str(exc)
        else:
            chosen, why = pick_node(statuses, spec, capability="exec", prefer="local")
            if chosen is None:
                placement["node"] = None
                placement["problem"] = why
            else:
                placement["node"] = chosen.node.node_id
                if applies and "sandbox" not in chosen.node.capabilities:
                    placement["problem"] = (
                        f"node {chosen.node.node_id} has no sandbox capability ({chosen.node.docker or 'no Docker'}): tools would FAIL, never run on the host"
                    )
    effective = {f.name: _plain(getattr(sandbox, f.name)) for f in dataclasses.fields(sandbox)}
    result = {
        "agent": view.id,
        "runnerType": view.runner_type,
        "runsAt": backend_where(view.backend),
        "session": key,
        "mainSession": main_key,
        "sandboxed": applies,
        "effective": effective,
        "placement": placement,
    }
    if as_json:
        print_json(result)
        return
    verdict = "SANDBOXED" if applies else "not sandboxed (runs on the node, confined to the workspace)"
    if view.backend is not None:
        # the backend runs its own tools: clawmesh's sandbox and nodes only serve a fallback turn
        console.print(
            f"agent {view.id} runs at: {backend_where(view.backend)}; the sandbox below applies only to "
            "turns that fail over to the agent's local fallbacks",
            markup=False,
        )
    console.print(f"agent {view.id}, session {key}: {verdict}", markup=False)
    console.print(
        f"  mode {sandbox.mode}, scope {sandbox.scope}, workspaceAccess {sandbox.workspace_access}",
        markup=False,
    )
    console.print(
        f"  image {sandbox.image}, network {sandbox.network}, readOnlyRoot {sandbox.read_only_root}, capDrop {','.join(sandbox.cap_drop)}",
        markup=False,
    )
    console.print(
        f"  limits: pids {sandbox.pids_limit}, memory {sandbox.memory}, cpus {sandbox.cpus}; binds {list(sandbox.binds) or 'none'}",
        markup=False,
    )
    console.print(f"  runs on: {placement.get('node') or '?'} ({placement['pinned']})", markup=False)
    for key_name in ("problem", "error"):
        if placement.get(key_name):
            console.print(f"  {key_name}: {placement[key_name]}", markup=False)
    console.print(json.dumps(effective, indent=2, default=str), markup=False)


async def _ask_nodes(
    config: Config, url: str | None, verb: str, body: dict[str, Any]
) -> list[dict[str, Any]]:
    async with nats_client(config, url) as nc:
        subject = Subjects(config.subject_prefix).control(f"sandbox.{verb}")
        return await scatter_gather(
            nc, subject, json.dumps(body).encode(), wait=2.0 if verb == "recreate" else 1.0
        )


@sandbox_app.command("list")
def sandbox_list(
    ctx: typer.Context, nats_url: NatsUrl = None, as_json: Annotated[bool, typer.Option("--json")] = False
) -> None:
    """Sandbox containers on every node."""
    config = load(ctx)
    replies = asyncio.run(_ask_nodes(config, nats_url, "list", {}))
    rows = [dict(s, node=r["node"]) for r in replies for s in r.get("sandboxes", [])]
    if as_json:
        print_json(rows)
        return
    if not replies:
        fail("no node-agent answered; is the gateway running?")
    table = Table(
        "node",
        "container",
        "agent",
        "scope",
        "session",
        "status",
        "image",
        "hash",
        box=None,
        header_style="bold",
    )
    for r in rows:
        table.add_row(
            r["node"],
            r["name"],
            r["agentId"],
            r["scope"],
            r.get("sessionKey") or "",
            r["status"],
            r["image"],
            r["configHash"][:10],
        )
    console.print(table)
    for r in replies:
        if r.get("error"):
            console.print(f"{r['node']}: {r['error']}", markup=False)


@sandbox_app.command("recreate")
def sandbox_recreate(
    ctx: typer.Context,
    agent: Annotated[str | None, typer.Option("--agent", help="Only this agent's containers.")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Every sandbox container.")] = False,
    nats_url: NatsUrl = None,
) -> None:
    """Remove sandbox containers; the next tool call creates them fresh (e.g. after an image rebuild)."""
    if not agent and not all_:
        fail("give --agent ID or --all", 2)
    config = load(ctx)
    replies = asyncio.run(_ask_nodes(config, nats_url, "recreate", {"agentId": agent, "all": all_}))
    if not replies:
        fail("no node-agent answered; is the gateway running?")
    for r in replies:
        if r.get("error"):
            console.print(f"{r['node']}: {r['error']}", markup=False)
        else:
            console.print(f"{r['node']}: removed {r['removed']} container(s)", markup=False)
