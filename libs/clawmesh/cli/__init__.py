"""The `clawmesh` command line (typer; rich for tables): every command that does not run a service.

clawmesh_gateway adds `up` and `service` to `app` and is the `clawmesh` console script.
"""

from ._app import COMMANDS, app, run
from ._common import CliError, State, console, err_console, fail, state
from ._lazy import LazyCommand

__all__ = [
    "COMMANDS",
    "CliError",
    "LazyCommand",
    "State",
    "app",
    "console",
    "err_console",
    "fail",
    "run",
    "state",
]
