"""The `clawmesh` command line (typer + rich)."""

from ._app import app, main

__all__ = ["app", "main"]
