"""Proxy backends: agents whose turns run elsewhere (`runnerType` coze, openclawx, opencode,
claude_code, a2a; synadia and federated gateways on the runner's NATS connection). One module
per backend behind `Backend` (`_base.py`); `backend_for` makes each once per runner process
(they hold HTTP pools, started servers) and `aclose_backends` releases them when the runner
stops."""

from __future__ import annotations

from ._base import Backend, BackendError, OnDelta, ProxyResult, ProxyTurn

__all__ = [
    "Backend",
    "BackendError",
    "OnDelta",
    "ProxyResult",
    "ProxyTurn",
    "aclose_backends",
    "backend_for",
    "set_backend",
]

_BACKENDS: dict[str, Backend] = {}


def _make(kind: str) -> Backend:
    # imported on first use: a runner without proxy agents never loads them
    if kind == "coze":
        from .coze import CozeBackend

        return CozeBackend()
    if kind == "openclawx":
        from .openclawx import OpenClawXBackend

        return OpenClawXBackend()
    if kind == "opencode":
        from .opencode import OpenCodeBackend

        return OpenCodeBackend()
    if kind == "claude_code":
        from .claude_code import ClaudeCodeBackend

        return ClaudeCodeBackend()
    if kind == "a2a":
        from .a2a import A2ABackend

        return A2ABackend()
    if kind == "synadia":  # needs the runner's NATS connection: the runner passes it per turn
        raise BackendError(
            "Synadia Agent Protocol agents need a runner's NATS connection", reason="config", failover=False
        )
    if kind == "gateway":  # needs the runner's NATS connection: the runner sets it at start
        raise BackendError(
            "agents on other gateways need a federated runner", reason="config", failover=False
        )
    raise ValueError(f"no proxy backend {kind!r}")


def backend_for(kind: str) -> Backend:
    backend = _BACKENDS.get(kind)
    if backend is None:
        backend = _BACKENDS[kind] = _make(kind)
    return backend


def set_backend(kind: str, backend: Backend | None) -> None:
    """Use `backend` for `kind` in this process (tests, benchmarks); None: back to the default."""
    if backend is None:
        _BACKENDS.pop(kind, None)
    else:
        _BACKENDS[kind] = backend


async def aclose_backends() -> None:
    backends = list(_BACKENDS.values())
    _BACKENDS.clear()
    for backend in backends:
        await backend.aclose()
