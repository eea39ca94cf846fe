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


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # an existing file keeps its mode on open
    with os.fdopen(fd, "w") as fh:
        fh.write(text)


def _kept_password(path: Path) -> str | None:
    """The password inside an earlier run's `<region>.leaf` URL, so re-running keeps it."""
    from urllib.parse import unquote, urlsplit

    try:
        url = urlsplit(path.read_text(encoding="utf-8").strip())
    except OSError:
        return None
    return unquote(url.password) if url.password else None


@app.command("federation")
def federation(
    ctx: typer.Context,
    region: Annotated[
        list[str],
        typer.Option(
            "--region", "-r", help="A region (= gateway id) to federate (repeatable; at least one)."
        ),
    ],
    hub_host: Annotated[
        str, typer.Option("--hub-host", help="Host name or address of the hub, as the regions reach it.")
    ],
    leaf_port: Annotated[int, typer.Option("--leaf-port", help="The hub's leaf-node port.")] = 7422,
    leaf_listen: Annotated[
        str, typer.Option("--leaf-listen", help="Address the hub accepts leaf connections on.")
    ] = "0.0.0.0",
    client_port: Annotated[
        int, typer.Option("--client-port", help="The hub's client port (monitoring; on 127.0.0.1 only).")
    ] = 4222,
    out: Annotated[
        Path, typer.Option("--out", help="Directory for hub.conf and one <region>.leaf each.")
    ] = Path("deploy/nats/federation"),
    prefix: Annotated[
        str | None, typer.Option("--prefix", help="Subject prefix (default: nats.subjectPrefix or cm).")
    ] = None,
) -> None:
    """Write the NATS configs of a federation: a hub and N regions joined as leaf nodes.

    OUT/hub.conf is the hub's nats-server config (one account per region; only the gateway
    request subjects and the broadcasts cross). OUT/<region>.leaf holds the leaf URL with that
    region's credentials: start the region with `clawmesh up --region R --federate OUT/R.leaf`.
    All files are mode 0600; re-running keeps the existing regions' passwords.
    """
    from ..federation import FederationError, plan_federation

    for hint, value in (("--leaf-port", leaf_port), ("--client-port", client_port)):
        if not 0 < value < 65536:
            raise typer.BadParameter(f"{value} is not a port number", param_hint=hint)
    passwords = {r: p for r in region if (p := _kept_password(out / f"{r}.leaf")) is not None}
    try:
        plan = plan_federation(
            region,
            hub_host=hub_host,
            leaf_port=leaf_port,
            prefix=prefix or load(ctx).subject_prefix,
            passwords=passwords,
            hub_listen=f"127.0.0.1:{client_port}",
            leaf_listen=f"{leaf_listen}:{leaf_port}",
        )
    except FederationError as exc:
        raise typer.BadParameter(str(exc), param_hint="--region") from None
    out.mkdir(parents=True, exist_ok=True)
    _write_private(out / "hub.conf", plan.hub_conf(store_dir=str(out / "jetstream-hub")))
    console.print(f"wrote {out / 'hub.conf'}  (on the hub: nats-server -c {out / 'hub.conf'})", markup=False)
    for r in plan.regions:
        path = out / f"{r.name}.leaf"
        _write_private(path, plan.leaf_url(r.name) + "\n")
        kept = " (password kept)" if r.name in passwords else ""
        console.print(
            f"wrote {path}{kept}  (in region {r.name}: clawmesh up --region {r.name} --federate {path})",
            markup=False,
        )
