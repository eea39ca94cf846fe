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
from ..config import ConfigError
from ..routing import AgentSelectionRequired
from . import (
    _agents_cmd,
    _approvals_cmd,
    _client_cmds,
    _config_cmd,
    _deploy_cmd,
    _doctor_cmd,
    _nodes_cmd,
    _route_cmd,
    _tools_cmd,
)
from ._common import CliError, State, err_console, report_config_error

__all__ = ["app", "run"]

app = typer.Typer(
    name="clawmesh",
    help="clawmesh: a self-hosted multi-agent AI gateway on NATS (OpenClaw config-compatible).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
app.add_typer(_config_cmd.app, name="config")
app.add_typer(_agents_cmd.app, name="agents")
app.command("route")(_route_cmd.route)
app.command("send")(_client_cmds.send)
app.command("chat")(_client_cmds.chat)
app.command("status")(_client_cmds.status)
app.add_typer(_client_cmds.sessions_app, name="sessions")
app.add_typer(_tools_cmd.app, name="tools")
app.add_typer(_nodes_cmd.nodes_app, name="nodes")
app.add_typer(_approvals_cmd.app, name="approvals")
app.add_typer(_nodes_cmd.sandbox_app, name="sandbox")
app.add_typer(_deploy_cmd.app, name="deploy")
app.command("doctor")(_doctor_cmd.doctor)
_config_cmd.app.command("reload")(_client_cmds.config_reload)


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
    except ConfigError as exc:
        report_config_error(exc)
        sys.exit(1)
    except AgentSelectionRequired as exc:
        err_console.print(f"error: {exc.code}: {exc}", markup=False)
        sys.exit(1)
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
    except Exception as exc:  # anything unexpected: one line, no traceback
        if os.environ.get("CLAWMESH_DEBUG"):
            raise
        err_console.print(
            f"error: {type(exc).__name__}: {exc} (set CLAWMESH_DEBUG=1 for a traceback)", markup=False
        )
        sys.exit(1)
