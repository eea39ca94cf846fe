"""`clawmesh`: the library's command line (clawmesh.cli) plus the commands that run services."""

from __future__ import annotations

from typing import NoReturn

from clawmesh.cli import app, run

from ._alone import service_app
from ._up import up

__all__ = ["app", "main"]

app.command("up")(up)
app.add_typer(service_app, name="service")


def main() -> NoReturn:
    run(app)
