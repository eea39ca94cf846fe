"""`clawmesh up`: the whole gateway in one process, with a private nats-server."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
import os
import shlex
import shutil
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from clawmesh import __version__
from clawmesh.checks import default_checks
from clawmesh.cli import console, err_console, fail, state
from clawmesh.config import Config, ConfigHolder, config_env, config_path, load_config, state_dir
from clawmesh.execpolicy import ApprovalsFile, exposure_line
from clawmesh.gateway import DEFAULT_NATS_PORT, gateway_token, token_source
from clawmesh.localgateway import GatewayRunning, LocalGateway, acquire, mark_ready, release
from clawmesh.natsauth import (
    EMBEDDED_AUTH_DIR,
    NatsAuthError,
    NatsUser,
    embedded_users,
    render_auth_conf,
    service_user,
)

from ._load import cannot_load

if TYPE_CHECKING:  # clawmesh.bus is imported when a command runs: the other commands start faster
    from clawmesh.bus import Service, ServiceFactory

__all__ = ["demo_config", "embedded_nats_port", "up"]


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


def cli_command(path_env: str | None = None) -> str:
    """How to run this `clawmesh` from a new shell: the bare name when PATH finds this very
    script, else its full path (after `make run` it lives in the checkout's .venv/bin)."""
    here = Path(sys.executable).parent / "clawmesh"
    found = shutil.which("clawmesh", path=path_env if path_env is not None else os.environ.get("PATH"))
    if found is not None and (not here.exists() or Path(found).resolve() == here.resolve()):
        return "clawmesh"
    return shlex.quote(str(here)) if here.exists() else "clawmesh"


def banner_lines(
    config: Config, url: str, nats_url: str, embedded: bool, ready_in: float, cli: str = "clawmesh"
) -> list[str]:
    """What `clawmesh up` prints when ready. It says where the token lives, never the token:
    terminals are scrolled back, shared and recorded. `cli` is how to run clawmesh from a new shell."""
    source = token_source(config)
    pad = " " * max(0, len("clawmesh") - len(cli))
    auth_header = f"Authorization: Bearer {source[1]}" if source else ""
    return [
        f"clawmesh {__version__} is up (ready in {ready_in:.2f}s)",
        f"  HTTP API  {url}" + (f"   token in {source[0]}" if source else "   (no auth)"),
        f"  NATS      {nats_url}"
        + (f" (embedded, JetStream in {config.state_dir / 'nats'})" if embedded else ""),
        f"  config    {config.source or 'built-in defaults'} (version {config.version})",
        "  agents    "
        + ", ".join(
            f"{a.id}{' (default)' if a.is_default else ''} [{' → '.join(a.models)}]" for a in config.agents
        ),
        f"  host exec {exposure_line(config, ApprovalsFile(config.state_dir), euid=os.geteuid())}",
        "",
        "Talk to it:",
        f'  {cli} send "hello"                       {pad}# default agent, streamed reply',
        f'  {cli} send --agent work "status report"  {pad}# a specific agent',
        f"  {cli} chat",
        *(
            [
                f"  (to type just `clawmesh` in a new shell: export PATH={shlex.quote(str(Path(shlex.split(cli)[0]).parent))}:$PATH)"
            ]
            if cli != "clawmesh"
            else []
        ),
        f"  curl -s '{url}/v1/messages?wait=30'" + (f' -H "{auth_header}"' if source else "") + " \\",
        """       -H 'Content-Type: application/json' -d '{"text": "hi", "peer": {"kind": "direct", "id": "me"}}'""",
        "Ctrl-C stops everything (sessions are kept).",
    ]


def _banner(config: Config, url: str, nats_url: str, embedded: bool, ready_in: float) -> None:
    lines = banner_lines(config, url, nats_url, embedded, ready_in, cli_command())
    console.print("\n".join(lines), markup=False)
    sys.stdout.flush()


async def _embedded_server(
    config: Config, nats_port: int | None, node_id: str, federate: tuple[str, str] | None
) -> tuple[Any, list[NatsUser]]:
    """The embedded nats-server, started, and its users: every service connects as its own
    (`natsauth`), generated on the first start and kept in the state dir."""
    from clawmesh.bus import NatsServer
    from clawmesh.federation import region_config

    sdir = config.state_dir
    (sdir / "logs").mkdir(parents=True, exist_ok=True)
    try:
        users = embedded_users(sdir, config.settings.nats.subject_prefix, nodes=[node_id])
    except NatsAuthError as exc:
        fail(str(exc))
    for leftover in sdir.glob("nats-server-*.conf"):  # from a killed start of an older version
        leftover.unlink(missing_ok=True)
    server = NatsServer(
        store_dir=sdir / "nats",
        work_dir=sdir,
        conf_name="nats-server.conf",  # one server per state dir (the lock): reused, not accumulated
        port=embedded_nats_port(config, nats_port),
        server_name="clawmesh-embedded",
        log_file=sdir / "logs" / "nats-server.log",
        authorization=render_auth_conf(users),
        # A federated region keeps its JetStream in a domain of its own (named after the
        # region) and joins the hub as a leaf node: see docs/federation.md.
        jetstream_domain=federate[1] if federate else None,
        config=region_config(federate[0]) if federate else "",
    )
    try:
        await server.start()
    except Exception as exc:
        fail(f"could not start the embedded nats-server: {exc}")
    return server, users


def _say_ready(
    holder: ConfigHolder,
    record: LocalGateway,
    *,
    url: str,
    nats_url: str,
    embedded: bool,
    ready_in: float,
    json_ready: bool,
) -> None:
    """The ready record (for `clawmesh status` and the CLI), then the banner or one JSON line."""
    config = holder.current
    mark_ready(
        config.state_dir,
        record,
        url=url,
        nats_url=nats_url,
        nats_auth_dir=config.state_dir / EMBEDDED_AUTH_DIR if embedded else None,
        region=config.settings.gateway.region,
    )
    if json_ready:
        line = {"ready": True, "url": url, "nats": nats_url, "readySeconds": ready_in, "pid": os.getpid()}
        print(json.dumps(line), flush=True)
    else:
        _banner(config, url, nats_url, embedded, ready_in)


async def _up(
    holder: ConfigHolder,
    planned: list[tuple[str, ServiceFactory]],
    nats_url: str | None,
    nats_port: int | None,
    json_ready: bool,
    record: LocalGateway,
    federate: tuple[str, str] | None = None,
) -> None:
    from clawmesh.bus import open_context, run_services, setup_tracing

    from .registry import Ingress, local_node_id

    started = time.monotonic()
    config = holder.current
    node_id = local_node_id(config)
    server = None
    # On the embedded server every service connects as its own user; with --nats-url the
    # config's credentials are used, as for `clawmesh service`.
    users: list[NatsUser] | None = None
    if nats_url is None:
        server, users = await _embedded_server(config, nats_port, node_id, federate)
        nats_url = server.url
        if federate:  # ingress reports the leaf link (and a loop in the topology) in its status
            planned = [(name, _with_leaf_status(factory, server)) for name, factory in planned]
    url_of_nats: str = nats_url
    setup_tracing("clawmesh")
    try:
        # The first connection provisions the streams; the others only bind, concurrently.

        def credentials(service: str) -> tuple[str, str] | None:
            if users is None:
                return None
            user = service_user(users, service, node_id=node_id)
            return user.user, user.password

        first = await open_context(
            planned[0][0], holder, url=url_of_nats, credentials=credentials(planned[0][0])
        )
        rest = await asyncio.gather(
            *(
                open_context(
                    name, holder, url=url_of_nats, provision_streams=False, credentials=credentials(name)
                )
                for name, _ in planned[1:]
            )
        )
        factories = [(factory, ctx) for (_, factory), ctx in zip(planned, [first, *rest], strict=True)]

        async def on_started(services: list[Service]) -> None:
            ingress = next((s for s in services if isinstance(s, Ingress)), None)
            if ingress is None:
                raise RuntimeError("clawmesh up started without an ingress")
            _say_ready(
                holder,
                record,
                url=ingress.url,
                nats_url=url_of_nats,
                embedded=users is not None,
                ready_in=time.monotonic() - started,
                json_ready=json_ready,
            )

        await run_services(factories, on_started=on_started)
    finally:
        if server is not None:
            await server.stop()


def _with_leaf_status(factory: Any, server: Any) -> Any:
    from .registry import Ingress

    if isinstance(factory, functools.partial) and factory.func is Ingress:
        options = factory.keywords.get("options")
        if options is not None:
            return functools.partial(
                Ingress, options=dataclasses.replace(options, leaf_status=server.leaf_status)
            )
    return factory


_LEAF_SCHEMES = ("nats-leaf://", "tls://", "ws://", "wss://", "nats://")


def _federation(federate: str | None, region: str | None, nats_url: str | None) -> tuple[str, str] | None:
    """(leaf URL, region) for `--federate/--region`, or a one-line refusal."""
    from clawmesh.federation import FederationError, validate_region

    if federate is None and region is None:
        return None
    if federate is None or region is None:
        fail("--federate and --region go together: `clawmesh up --region sg --federate sg.leaf`")
    if nats_url is not None:
        fail(
            "--federate joins the embedded nats-server to a hub; with --nats-url, federate that NATS instead"
        )
    try:
        validate_region(region, "--region")
    except FederationError as exc:
        fail(str(exc))
    url = federate
    if not federate.startswith(_LEAF_SCHEMES):
        try:
            url = Path(federate).read_text(encoding="utf-8").strip()
        except OSError as exc:
            fail(f"--federate {federate}: not a nats-leaf:// URL and not a readable file ({exc.strerror})")
        if not url.startswith(_LEAF_SCHEMES):
            fail(f"--federate {federate}: the file does not hold a nats-leaf:// URL")
    return url, region


def up(
    ctx: typer.Context,
    config: Annotated[
        str | None,
        typer.Option(
            "--config",
            "-c",
            metavar="PATH",
            help="Config file (as `clawmesh --config PATH up`; default: $CLAWMESH_CONFIG_PATH, else ~/.clawmesh/clawmesh.json).",
        ),
    ] = None,
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
    federate: Annotated[
        str | None,
        typer.Option(
            "--federate",
            metavar="URL|FILE",
            help="Join a federation hub as a leaf node: nats-leaf://USER:PASSWORD@HUB:7422, or the "
            "<region>.leaf file `clawmesh deploy federation` wrote (keeps the password off the command line).",
        ),
    ] = None,
    region: Annotated[
        str | None,
        typer.Option("--region", help="This gateway's region in the federation (with --federate)."),
    ] = None,
) -> None:
    """Start the gateway in one process: private nats-server + ingress, router, runner, node-agent."""
    from clawmesh.bus import configure_logging

    configure_logging(log_level or os.environ.get("CLAWMESH_LOG_LEVEL") or "WARNING")
    env = dict(os.environ)
    explicit = config or state(ctx).config
    sdir = state_dir(env)
    use_demo = demo and explicit is None
    fed = _federation(federate, region, nats_url)
    if fed is not None:  # the gateway's region, for every service (and config reloads)
        env["CLAWMESH_GATEWAY_REGION"] = fed[1]
    path = sdir / "demo.json" if use_demo else config_path(explicit, env)
    # The record tells the CLI which config this gateway runs. On built-in defaults (nothing
    # named, no file at the default path) it names none: the CLI then finds the default path
    # itself, where an absent file is an empty config, not "config file not found".
    named = use_demo or explicit is not None or bool(config_env(env)) or path.exists()
    # Claimed before anything is written or started: a second `up` on this state dir (and
    # its JetStream store) refuses in one line instead of starting a second nats-server.
    try:
        record = acquire(sdir, path if named else None, demo=use_demo)
    except GatewayRunning as exc:
        fail(str(exc))
    try:
        _run_up(env, path, use_demo, explicit, port, nats_url, nats_port, json_ready, record, fed)
    finally:
        release(sdir)


def _run_up(
    env: dict[str, str],
    path: Path,
    use_demo: bool,
    explicit: str | None,
    port: int | None,
    nats_url: str | None,
    nats_port: int | None,
    json_ready: bool,
    record: LocalGateway,
    federate: tuple[str, str] | None = None,
) -> None:
    from clawmesh.bus import run_loop

    try:
        from .registry import in_process
    except ImportError as exc:
        cannot_load(exc)
    if use_demo:
        path.write_text(json.dumps(demo_config(env), indent=2) + "\n")
        holder = ConfigHolder(load_config(path, checks=default_checks(), env=env), path, env)
    else:
        holder = ConfigHolder.load(explicit, env, checks=default_checks())
    for warning in holder.current.warnings:
        # on stderr: stdout is the banner, or with --json-ready the one line a script reads
        err_console.print(f"warning: {warning}", markup=False, style=None)
    gateway_token(holder.current, create=True)
    planned = in_process(holder.current, port=port)
    try:
        run_loop(
            _up(
                holder,
                planned,
                nats_url or os.environ.get("CLAWMESH_NATS_URL"),
                nats_port,
                json_ready,
                record,
                federate,
            )
        )
    except KeyboardInterrupt:
        pass
