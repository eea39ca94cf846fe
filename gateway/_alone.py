"""One service alone in this process (the scaled deployment: one per container).

`clawmesh service NAME …` and the console scripts `clawmesh-NAME …` (see `scripts`) are the
same typer commands, defined once here, so both take the same options: --config, --nats-url,
--log-level and the service's own (`--port`; `--node-id`, `--label`).
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Annotated

import typer

from clawmesh.checks import default_checks
from clawmesh.cli import fail, state
from clawmesh.config import ConfigHolder

from ._load import cannot_load

if TYPE_CHECKING:  # clawmesh.bus is imported when a command runs: the other commands start faster
    from clawmesh.bus import ServiceFactory

__all__ = ["ingress", "node_agent", "router", "runner", "service_app"]

ConfigPath = Annotated[
    str | None,
    typer.Option(
        "--config",
        "-c",
        metavar="PATH",
        help="Config file (default: $CLAWMESH_CONFIG_PATH, else ~/.clawmesh/clawmesh.json).",
    ),
]
NatsUrl = Annotated[
    str | None,
    typer.Option(
        "--nats-url",
        envvar="CLAWMESH_NATS_URL",
        help="NATS URL(s), comma separated (default: nats.url, else nats://127.0.0.1:4222).",
    ),
]
LogLevel = Annotated[str | None, typer.Option("--log-level", help="DEBUG, INFO (default), WARNING, ERROR.")]


def _run(
    ctx: typer.Context,
    name: str,
    factory: ServiceFactory,
    config: str | None,
    nats_url: str | None,
    log_level: str | None,
) -> None:
    from clawmesh.bus import ConnectionClosedForGood, configure_logging, run_loop, run_one

    configure_logging(log_level)
    # `clawmesh --config C service NAME` and `clawmesh-NAME --config C` both work
    holder = ConfigHolder.load(config or state(ctx).config, checks=default_checks())
    try:
        run_loop(run_one(name, factory, holder, nats_url))
    except KeyboardInterrupt:
        pass
    except ConnectionClosedForGood as exc:
        # exit 1: the supervisor (compose: restart: unless-stopped) starts a fresh process
        fail(str(exc), 1)


def ingress(
    ctx: typer.Context,
    config: ConfigPath = None,
    nats_url: NatsUrl = None,
    port: Annotated[
        int | None, typer.Option("--port", help="HTTP API port (default: gateway.port or 18789).")
    ] = None,
    log_level: LogLevel = None,
) -> None:
    """Run the ingress service alone: the HTTP API."""
    try:
        from .registry import Ingress, IngressOptions
    except ImportError as exc:
        cannot_load(exc)
    _run(ctx, Ingress.name, partial(Ingress, options=IngressOptions(port=port)), config, nats_url, log_level)


def router(
    ctx: typer.Context, config: ConfigPath = None, nats_url: NatsUrl = None, log_level: LogLevel = None
) -> None:
    """Run the router service alone: CM_INBOUND → routing → CM_TURNS."""
    try:
        from .registry import Router
    except ImportError as exc:
        cannot_load(exc)
    _run(ctx, Router.name, Router, config, nats_url, log_level)


def runner(
    ctx: typer.Context, config: ConfigPath = None, nats_url: NatsUrl = None, log_level: LogLevel = None
) -> None:
    """Run the runner service alone: turns, model calls, tools, transcripts, replies."""
    try:
        from .registry import Runner
    except ImportError as exc:
        cannot_load(exc)
    _run(ctx, Runner.name, Runner, config, nats_url, log_level)


def node_agent(
    ctx: typer.Context,
    config: ConfigPath = None,
    nats_url: NatsUrl = None,
    node_id: Annotated[
        str | None,
        typer.Option(
            "--node-id",
            envvar="CLAWMESH_NODE_ID",
            help="This node's id (default: nodes.local.id, else the hostname).",
        ),
    ] = None,
    label: Annotated[
        list[str] | None,
        typer.Option("--label", metavar="KEY=VALUE", help="A label (region=sg, …), repeatable."),
    ] = None,
    log_level: LogLevel = None,
) -> None:
    """Run the node-agent service alone: this machine's tools and sandboxes."""
    try:
        from .registry import NodeAgent, NodeAgentOptions
    except ImportError as exc:
        cannot_load(exc)
    labels = {}
    for item in label or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            fail(f"--label expects key=value (got {item!r})", 2)
        labels[key] = value
    options = NodeAgentOptions(node_id=node_id, labels=labels)
    _run(ctx, NodeAgent.name, partial(NodeAgent, options=options), config, nats_url, log_level)


service_app = typer.Typer(
    help="Run one service alone (the scaled deployment: one per container).", no_args_is_help=True
)
service_app.command("ingress")(ingress)
service_app.command("router")(router)
service_app.command("runner")(runner)
service_app.command("node-agent")(node_agent)
