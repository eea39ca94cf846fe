"""The `clawmesh` command line (typer + rich): every command that does not run a service.

clawmesh_gateway adds `up` and `service` to `app` and is the `clawmesh` console script.
"""

from ._app import app, run
from ._common import CliError, State, console, fail, state

__all__ = ["CliError", "State", "app", "console", "fail", "run", "state"]
