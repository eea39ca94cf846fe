"""`clawmesh`: the library's command line (clawmesh.cli) plus the commands that run services.

`clawmesh --version` answers before any command module is imported (they cost ~0.4 s of start-up
for a line a script may ask for in a loop); `app` is built on first use."""

from __future__ import annotations

import sys
from functools import cache
from typing import TYPE_CHECKING, Any, NoReturn

if TYPE_CHECKING:
    import typer

__all__ = ["main"]  # and `app`, built on first access (module __getattr__)


@cache
def _app() -> typer.Typer:
    from clawmesh.cli import COMMANDS, app
    from clawmesh.cli import LazyCommand as Lazy

    # in `clawmesh --help` order, imported (with every service) only when they run
    up = Lazy(
        "clawmesh_gateway._up:up",
        "Start the gateway in one process: private nats-server + ingress, router, runner, node-agent.",
    )
    service = Lazy(
        "clawmesh_gateway._alone:service_app",
        "Run one service alone (the scaled deployment: one per container).",
    )
    items = list(COMMANDS.items())
    at = [name for name, _ in items].index("config")
    COMMANDS.clear()
    COMMANDS.update([*items[:at], ("up", up), *items[at:], ("service", service)])
    return app


def __getattr__(name: str) -> Any:
    if name == "app":
        return _app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def main() -> NoReturn:
    if sys.argv[1:] == ["--version"]:
        from clawmesh import __version__

        print(f"clawmesh {__version__}")
        raise SystemExit(0)
    from clawmesh.cli import run

    run(_app())
