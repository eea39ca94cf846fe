"""`clawmesh approvals list|approve|deny`: answer exec approval requests over NATS, with the
CLI's own credentials (the HTTP API's `/v1/approvals` does the same with the bearer token)."""

from __future__ import annotations

import asyncio
import getpass
import time
from typing import Annotated, Any

import msgspec
import typer
from rich.table import Table

from ..config import Config
from ..wire import Subjects
from ._common import console, fail, load, print_json
from ._remote import nats_client

app = typer.Typer(help="Exec approval requests: host commands waiting for an operator.", no_args_is_help=True)

NatsUrl = Annotated[
    str | None,
    typer.Option(
        "--nats-url", help="NATS URL (default: $CLAWMESH_NATS_URL, nats.url, or the embedded server)."
    ),
]


async def _with_store(config: Config, url: str | None, action: Any) -> Any:
    from ..execpolicy import ApprovalStore

    async with nats_client(config, url) as nc:
        kv = await nc.jetstream().key_value(Subjects(config.subject_prefix).bucket("approvals"))
        return await action(ApprovalStore(kv))


def _who() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


@app.command("list")
def approvals_list(
    ctx: typer.Context,
    nats_url: NatsUrl = None,
    show_all: Annotated[bool, typer.Option("--all", help="Also decided and expired requests.")] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Pending exec approval requests (oldest first)."""
    config = load(ctx)
    records = asyncio.run(_with_store(config, nats_url, lambda s: s.list(pending_only=not show_all)))
    if as_json:
        print_json([msgspec.to_builtins(r) for r in records])
        return
    if not records:
        console.print("no pending exec approval requests", markup=False)
        return
    table = Table(
        "id", "agent", "node", "status", "expires in", "cwd", "command", box=None, header_style="bold"
    )
    now = time.time()
    for r in records:
        left = f"{max(0, r.expires_at - now):.0f}s" if r.status == "pending" else ""
        table.add_row(r.id, r.agent_id, r.node, r.status, left, r.cwd, r.command)
    console.print(table)


def _decide(ctx: typer.Context, approval_id: str, decision: str, nats_url: str | None) -> None:
    from ..execpolicy import ApprovalError

    config = load(ctx)

    async def run(store: Any) -> Any:
        return await store.resolve(approval_id, decision, by=_who())

    try:
        record = asyncio.run(_with_store(config, nats_url, run))
    except ApprovalError as exc:
        fail(str(exc))
    console.print(
        f"{record.id}: {record.status} ({record.agent_id} on {record.node}: {record.command})", markup=False
    )


@app.command("approve")
def approvals_approve(
    ctx: typer.Context,
    approval_id: Annotated[str, typer.Argument(metavar="ID")],
    always: Annotated[
        bool,
        typer.Option(
            "--always", help="allow-always: also add the command to the agent's allowlist on its node."
        ),
    ] = False,
    nats_url: NatsUrl = None,
) -> None:
    """Let the command run (once, or --always)."""
    _decide(ctx, approval_id, "allow-always" if always else "allow-once", nats_url)


@app.command("deny")
def approvals_deny(
    ctx: typer.Context, approval_id: Annotated[str, typer.Argument(metavar="ID")], nats_url: NatsUrl = None
) -> None:
    """Refuse the command: the agent gets a tool error and the command never runs."""
    _decide(ctx, approval_id, "deny", nats_url)
