"""Sandbox failures. Either one means the command did NOT run: clawmesh never falls back to the
host (OpenClaw #128026 reported "sandboxed" while commands ran on the host)."""

from __future__ import annotations

from ..errors import ClawmeshError

__all__ = ["SandboxError", "SandboxUnavailable"]


class SandboxError(ClawmeshError):
    """The engine answered but the sandbox cannot be used: refused config, missing image, failed
    setupCommand, container gone…"""

    def __init__(self, message: str) -> None:
        super().__init__("SANDBOX_ERROR", message)


class SandboxUnavailable(ClawmeshError):
    """No usable Docker engine: not installed, not running, unreachable or not responding.

    Deliberately not a `SandboxError` subclass, so callers can tell "Docker is down" (retry later,
    tell the operator) from "this sandbox is misconfigured" with two independent `except` clauses.
    """

    def __init__(self, message: str) -> None:
        super().__init__("SANDBOX_UNAVAILABLE", message)
