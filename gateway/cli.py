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
    from clawmesh.cli import app

    from ._alone import service_app
    from ._up import up

    app.command("up")(up)
    app.add_typer(service_app, name="service")
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
