"""Root command: global options, sub-commands, and errors as one clear line (never a traceback).

The commands that run services (`up`, `service`) are added by the composition root,
clawmesh_gateway, whose `main` is the `clawmesh` console script: nothing here imports a service.
"""

from __future__ import annotations

import os
import sys
from typing import Annotated, NoReturn

import typer
from typer.exceptions import TyperException

from .. import __version__
from . import _coerce
from ._common import CliError, State, err_console
from ._lazy import LazyCommand, lazy_group

__all__ = ["COMMANDS", "app", "run"]


def _cmd(target: str, help: str) -> LazyCommand:
    return LazyCommand(f"clawmesh.cli.{target}", help)


# `clawmesh --help` in this order; each module is imported only when its command runs.
COMMANDS: dict[str, LazyCommand] = {
    "route": _cmd("_route_cmd:route", "Resolve a route exactly as the router would."),
    "send": _cmd("_client_cmds:send", "Send one message and print the streamed reply."),
    "chat": _cmd("_client_cmds:chat", "Interactive chat (one line per message; /exit or Ctrl-D to leave)."),
    "status": _cmd(
        "_client_cmds:status",
        "Services found through $SRV (versions, request counts), NATS and stream health.",
    ),
    "doctor": _cmd(
        "_doctor_cmd:doctor",
        "Check the config, state dir, the running gateway and NATS, Docker and model credentials;"
        " say how to fix what is wrong.",
    ),
    "config": _cmd("_config_cmd:app", "Check and inspect the configuration."),
    "agents": _cmd("_agents_cmd:app", "List, add and bind agents."),
    "sessions": _cmd(
        "_client_cmds:sessions_app", "List, show and export sessions (transcripts live in JetStream)."
    ),
    "tools": _cmd("_tools_cmd:app", "Inspect agent tools and the tool policy."),
    "nodes": _cmd("_nodes_cmd:nodes_app", "Node-agents: where agents' tools run."),
    "approvals": _cmd("_approvals_cmd:app", "Exec approval requests: host commands waiting for an operator."),
    "channels": _cmd(
        "_channels_cmd:app", "Chat channel accounts: list, status (with live probes), add, remove."
    ),
    "pairing": _cmd("_pairing_cmd:app", "Secure DM pairing: approve senders who asked for access."),
    "sandbox": _cmd("_nodes_cmd:sandbox_app", "Docker sandboxes of agents."),
    "deploy": _cmd("_deploy_cmd:app", "Deployment helpers."),
    "import": _cmd(
        "_import_cmd:app", "Bring an OpenClaw install over: config, workspaces, agent dirs, sessions."
    ),
}

_coerce.install()

app = typer.Typer(
    name="clawmesh",
    help="clawmesh: a self-hosted multi-agent AI gateway on NATS (OpenClaw config-compatible).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    cls=lazy_group(COMMANDS),
)


def _version(value: bool) -> None:
    if value:
        print(f"clawmesh {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    config: Annotated[
        str | None,
        typer.Option(
            "--config",
            "-c",
            metavar="PATH",
            help="Config file (default: $CLAWMESH_CONFIG_PATH, else ~/.clawmesh/clawmesh.json). openclaw.json works as is.",
            envvar=None,
        ),
    ] = None,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    ctx.obj = State(config=config)


def run(command: typer.Typer) -> NoReturn:
    """Run `command` (this app, or a one-command app such as `clawmesh-router`) and exit; every
    error is one line on stderr with a meaningful exit code."""
    try:
        # standalone_mode=False returns the exit code of `typer.Exit` instead of raising it.
        rc = command(standalone_mode=False)
        sys.exit(rc if isinstance(rc, int) else 0)
    except CliError as exc:
        err_console.print(f"error: {exc}", markup=False)
        sys.exit(exc.code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        err_console.print("aborted", markup=False)
        sys.exit(130)
    except KeyboardInterrupt:
        sys.exit(130)
    except TyperException as exc:  # usage errors (missing/bad options): click's message, exit 2
        show = getattr(exc, "show", None)
        if callable(show):
            show()
        else:
            err_console.print(f"error: {exc}", markup=False)
        sys.exit(getattr(exc, "exit_code", 2))
    except Exception as exc:
        _report(exc)
        sys.exit(1)


def _report(exc: Exception) -> None:
    """A config or agent-selection error as the user's mistake; anything else: one line, no
    traceback. (Their modules are imported here, not at start-up: a command that raised one
    has imported it already.)"""
    from ..config import ConfigError
    from ..routing import AgentSelectionRequired
    from ._common import report_config_error

    if isinstance(exc, ConfigError):
        report_config_error(exc)
    elif isinstance(exc, AgentSelectionRequired):
        err_console.print(f"error: {exc.code}: {exc}", markup=False)
    else:
        if os.environ.get("CLAWMESH_DEBUG"):
            raise exc
        err_console.print(
            f"error: {type(exc).__name__}: {exc} (set CLAWMESH_DEBUG=1 for a traceback)", markup=False
        )
