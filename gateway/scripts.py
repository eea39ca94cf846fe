"""The per-service console scripts (`clawmesh-ingress`, …): `clawmesh service NAME` under its own name."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NoReturn

import typer

from clawmesh.cli import run

from . import _alone

__all__ = ["ingress", "node_agent", "router", "runner"]


def _script(command: Callable[..., Any]) -> NoReturn:
    # one command and no callback: typer runs it without a sub-command name
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None)
    app.command()(command)
    run(app)


def ingress() -> None:
    _script(_alone.ingress)


def router() -> None:
    _script(_alone.router)


def runner() -> None:
    _script(_alone.runner)


def node_agent() -> None:
    _script(_alone.node_agent)
