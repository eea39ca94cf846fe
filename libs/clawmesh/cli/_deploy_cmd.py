"""`clawmesh deploy nats-config`: NATS users and permissions for a scaled deployment."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from ..natsauth import nats_users, render_auth_conf, render_env
from ._common import console, load

app = typer.Typer(help="Deployment helpers.", no_args_is_help=True)


@app.command("nats-config")
def nats_config(
    ctx: typer.Context,
    out: Annotated[Path, typer.Option("--out", help="Directory for auth.conf and credentials.env.")] = Path(
        "deploy/nats/generated"
    ),
    node: Annotated[
        list[str] | None,
        typer.Option("--node", help="A node id that runs a node-agent (repeatable; default: local)."),
    ] = None,
    prefix: Annotated[
        str | None, typer.Option("--prefix", help="Subject prefix (default: nats.subjectPrefix or cm).")
    ] = None,
    no_admin: Annotated[
        bool, typer.Option("--no-admin", help="Do not create the all-powerful admin user.")
    ] = False,
) -> None:
    """Write per-service NATS users with least-privilege subject permissions.

    Passwords come from CLAWMESH_NATS_PASSWORD_<NAME> environment variables when set (e.g. from
    your secret store), else are generated. Writes OUT/auth.conf (include it from nats-server.conf)
    and OUT/credentials.env (for the services), both mode 0600.
    """
    config = load(ctx)
    users_names = ["ingress", "router", "runner", "integration", "admin"]
    passwords = {
        n: os.environ[f"CLAWMESH_NATS_PASSWORD_{n.upper()}"]
        for n in users_names
        if os.environ.get(f"CLAWMESH_NATS_PASSWORD_{n.upper()}")
    }
    users = nats_users(
        prefix or config.subject_prefix, nodes=node or ["local"], passwords=passwords, admin=not no_admin
    )
    out.mkdir(parents=True, exist_ok=True)
    for name, text in (("auth.conf", render_auth_conf(users)), ("credentials.env", render_env(users))):
        path = out / name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        console.print(f"wrote {path}", markup=False)
    for u in users:
        console.print(
            f"  {u.user:<24} pub {len(u.publish)} allow / {len(u.publish_deny)} deny, sub {len(u.subscribe)}",
            markup=False,
        )
