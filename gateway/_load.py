"""A service that cannot be imported stops the command with one clear line (never a silent skip)."""

from __future__ import annotations

from typing import NoReturn

from clawmesh.cli import fail

__all__ = ["cannot_load"]


def cannot_load(exc: ImportError) -> NoReturn:
    """The commands import the services lazily (the other `clawmesh` commands start faster);
    an ImportError there means a broken installation, so say so and stop."""
    fail(f"cannot load the gateway's services ({type(exc).__name__}: {exc}): reinstall clawmesh", 1)
