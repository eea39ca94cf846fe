"""`clawmesh up` (everything in one process, embedded NATS) and `clawmesh service NAME`."""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import sys
import time
from typing import Annotated, Any

import typer

from .. import __version__
from ..checks import default_checks
from ..config import Config, ConfigHolder, load_config, state_dir
from ..gateway import DEFAULT_NATS_PORT, gateway_token
from ._common import console, fail, state

SERVICES = ("ingress", "router", "runner", "node-agent")


_SERVICE_CLASSES = {
    "ingress": ("clawmesh_ingress.app", "Ingress"),
    "router": ("clawmesh_router.app", "Router"),
    "runner": ("clawmesh_runner.app", "Runner"),
    "node-agent": ("clawmesh_node_agent.app", "NodeAgent"),
}


def service_class(name: str) -> Any:
    """The service classes live in their own packages; the CLI is the composition root and
    imports them by name (libs never import services statically)."""
    key = name.replace("_", "-")
    if key not in _SERVICE_CLASSES:
        fail(f"unknown service {name!r} (one of {', '.join(SERVICES)})", 2)
    module, attr = _SERVICE_CLASSES[key]
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError):
        return None


def embedded_nats_port(config: Config, override: int | None) -> int:
    if override is not None:
        return override
    nats_cfg = config.document.nats
    return nats_cfg.port if nats_cfg and nats_cfg.port is not None else DEFAULT_NATS_PORT


def demo_config(env: dict[str, str]) -> dict[str, Any]:
    """Two agents and bindings; a real provider when its key is in the environment, else the
    offline echo provider (labelled as such in every reply)."""
    if env.get("ANTHROPIC_API_KEY"):
        primary = env.get("CLAWMESH_DEMO_MODEL", "anthropic/claude-sonnet-4-6")
    elif env.get("OPENAI_API_KEY"):
        primary = env.get("CLAWMESH_DEMO_MODEL", "openai/gpt-5.4")
    else:
        primary = "echo/demo"
    model: Any = {"primary": primary, "fallbacks": ["echo/demo"]} if primary != "echo/demo" else primary
    return {
        "agents": {
            "defaults": {"model": model},
            "list": [
                {"id": "home", "default": True, "name": "Home", "identity": {"name": "Home assistant"}},
                {"id": "work", "name": "Work", "identity": {"name": "Work assistant"}},
            ],
        },
        "bindings": [
            {"agentId": "work", "match": {"channel": "api", "accountId": "work"}},
            {"agentId": "work", "match": {"channel": "api", "peer": {"kind": "group", "id": "team"}}},
        ],
        "session": {"dmScope": "per-channel-peer"},
    }


def _banner(
    config: Config, url: str, token: str | None, nats_url: str, embedded: bool, ready_in: float
) -> None:
    lines = [
        f"clawmesh {__version__} is up (ready in {ready_in:.2f}s)",
        f"  HTTP API  {url}" + (f"   token: {token}" if token else "   (no auth)"),
        f"  NATS      {nats_url}"
        + (f" (embedded, JetStream in {config.state_dir / 'nats'})" if embedded else ""),
        f"  config    {config.source or 'built-in defaults'} (version {config.version})",
        "  agents    "
        + ", ".join(
            f"{a.id}{' (default)' if a.is_default else ''} [{' → '.join(a.models)}]" for a in config.agents
        ),
        "",
        "Talk to it:",
        '  clawmesh send "hello"                       # default agent, streamed reply',
        '  clawmesh send --agent work "status report"  # a specific agent',
        "  clawmesh chat",
        f"  curl -s {url}/v1/messages?wait=30 -H 'Authorization: Bearer {token or ''}' \\",
        """       -H 'Content-Type: application/json' -d '{"text": "hi", "peer": {"kind": "direct", "id": "me"}}'""",
        "Ctrl-C stops everything (sessions are kept).",
    ]
    console.print("\n".join(lines), markup=False)
    sys.stdout.flush()


async def _up(
    holder: ConfigHolder, nats_url: str | None, port: int | None, nats_port: int | None, json_ready: bool
) -> None:
    from ..bus import NatsServer, open_context, run_services, setup_tracing

    started = time.monotonic()
    config = holder.current
    server: NatsServer | None = None
    if nats_url is None:
        sdir = config.state_dir
        (sdir / "logs").mkdir(parents=True, exist_ok=True)
        server = NatsServer(
            store_dir=sdir / "nats",
            work_dir=sdir,
            port=embedded_nats_port(config, nats_port),
            server_name="clawmesh-embedded",
            log_file=sdir / "logs" / "nats-server.log",
        )
        try:
            await server.start()
        except Exception as exc:
            fail(f"could not start the embedded nats-server: {exc}")
        nats_url = server.url
    setup_tracing("clawmesh")
    try:
        local = config.document.nodes.local if config.document.nodes else None
        options: dict[str, dict[str, Any]] = {
            "ingress": {"port": port},
            # the machine running `clawmesh up` is node `local` unless the config names it
            "node_agent": {"node_id": local.id if local and local.id else "local"},
        }
        classes = [(name, service_class(name)) for name in SERVICES]
        classes = [
            (name, cls)
            for name, cls in classes
            if cls is not None and not (name == "node-agent" and local is not None and local.enabled is False)
        ]
        # The first connection provisions the streams; the others only bind, concurrently.
        first = await open_context(
            classes[0][1].name, holder, url=nats_url, options=options.get(classes[0][1].name)
        )
        rest = await asyncio.gather(
            *(
                open_context(
                    cls.name, holder, url=nats_url, options=options.get(cls.name), provision_streams=False
                )
                for _, cls in classes[1:]
            )
        )
        factories = list(zip([cls for _, cls in classes], [first, *rest], strict=True))

        async def on_started(services: list[Any]) -> None:
            ingress = services[0]
            ready_in = time.monotonic() - started
            if json_ready:
                print(
                    json.dumps(
                        {
                            "ready": True,
                            "url": ingress.url,
                            "nats": nats_url,
                            "readySeconds": ready_in,
                            "pid": os.getpid(),
                        }
                    ),
                    flush=True,
                )
            else:
                _banner(
                    holder.current, ingress.url, ingress.token, nats_url or "", server is not None, ready_in
                )

        await run_services(factories, on_started=on_started)
    finally:
        if server is not None:
            await server.stop()


def up(
    ctx: typer.Context,
    nats_url: Annotated[
        str | None, typer.Option("--nats-url", help="Use this NATS instead of starting an embedded one.")
    ] = None,
    port: Annotated[
        int | None, typer.Option("--port", help="HTTP API port (default: gateway.port or 18789).")
    ] = None,
    nats_port: Annotated[
        int | None,
        typer.Option("--nats-port", help="Embedded nats-server client port (default: nats.port or 18790)."),
    ] = None,
    demo: Annotated[
        bool,
        typer.Option(
            "--demo", help="Use a demo config (two agents; echo provider unless an API key is set)."
        ),
    ] = False,
    json_ready: Annotated[
        bool, typer.Option("--json-ready", help="Print one JSON line when ready instead of the banner.")
    ] = False,
    log_level: Annotated[
        str | None, typer.Option("--log-level", help="DEBUG, INFO, WARNING (default), ERROR.")
    ] = None,
) -> None:
    """Start the gateway in one process: private nats-server + ingress, router, runner, node-agent."""
    from ..bus import configure_logging, run_loop

    configure_logging(log_level or os.environ.get("CLAWMESH_LOG_LEVEL") or "WARNING")
    env = dict(os.environ)
    if demo and state(ctx).config is None:
        path = state_dir(env) / "demo.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(demo_config(env), indent=2) + "\n")
        holder = ConfigHolder(load_config(path, checks=default_checks(), env=env), path, env)
    else:
        holder = ConfigHolder.load(state(ctx).config, env, checks=default_checks())
    for warning in holder.current.warnings:
        console.print(f"warning: {warning}", markup=False, style=None)
    gateway_token(holder.current, create=True)
    try:
        run_loop(_up(holder, nats_url or os.environ.get("CLAWMESH_NATS_URL"), port, nats_port, json_ready))
    except KeyboardInterrupt:
        pass


def service(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="ingress | router | runner | node-agent")],
    nats_url: Annotated[str | None, typer.Option("--nats-url", help="NATS URL(s), comma separated.")] = None,
    port: Annotated[int | None, typer.Option("--port", help="ingress: HTTP port.")] = None,
    node_id: Annotated[str | None, typer.Option("--node-id", help="node-agent: this node's id.")] = None,
    label: Annotated[
        list[str] | None, typer.Option("--label", help="node-agent: key=value label, repeatable.")
    ] = None,
    log_level: Annotated[str | None, typer.Option("--log-level")] = None,
) -> None:
    """Run one service alone (the scaled deployment: one per container)."""
    from ..bus import configure_logging, run_loop, run_one

    cls = service_class(name)
    if cls is None:
        fail(f"service {name!r} is not available in this build", 2)
    configure_logging(log_level)
    holder = ConfigHolder.load(state(ctx).config, checks=default_checks())
    labels = {}
    for item in label or []:
        k, sep, v = item.partition("=")
        if not sep or not k:
            fail(f"--label expects key=value (got {item!r})", 2)
        labels[k] = v
    options = {"port": port, "node_id": node_id, "labels": labels}
    url = nats_url or os.environ.get("CLAWMESH_NATS_URL")
    try:
        run_loop(run_one(cls, holder, url, options))
    except KeyboardInterrupt:
        pass


__all__ = ["demo_config", "embedded_nats_port", "service", "service_class", "up"]
