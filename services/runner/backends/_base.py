"""The one small protocol every proxy backend implements, and what crosses it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from clawmesh.config import BackendSettings

__all__ = ["Backend", "BackendError", "OnDelta", "ProxyResult", "ProxyTurn"]

OnDelta = Callable[[str], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class ProxyTurn:
    """One turn handed to a backend."""

    agent_id: str
    session_key: str
    turn_id: str
    text: str
    settings: BackendSettings
    env: Mapping[str, str]
    # the backend's own session/conversation id kept from this session's last proxied turn
    remote_session: str | None = None
    workspace: Path | None = None
    # the turn's time (runtime.turnTimeoutSeconds): the longest a backend waits for an answer
    timeout: float = 600.0
    # an agent of this gateway calling one of another gateway (`sessions_spawn` of
    # `worker@sg`): the serving gateway's agent-to-agent policy judges it; "" otherwise
    caller: str = ""
    # this turn was delivered to a runner before (one died, or handed it back): the backend
    # may have answered it already
    again: bool = False


@dataclass(slots=True)
class ProxyResult:
    text: str
    remote_session: str | None = None
    usage: tuple[int, int] = (0, 0)
    model: str = ""
    cost_usd: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    # the serving side keeps this answer under the turn's id: asked again for the turn, it
    # returns this answer, not a new one (a gateway of the federation does)
    kept: bool = False


class BackendError(Exception):
    """The backend failed the turn. `failover`: it is down, overloaded, rate limited or timed
    out (the agent's fallbacks may answer instead); otherwise the user is told."""

    def __init__(self, message: str, *, reason: str, failover: bool, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason
        self.failover = failover
        self.hint = hint


class Backend(Protocol):
    """A turn in, its reply text streamed out through `on_delta`, the outcome returned.

    Cancelling `run` (turn timeout, runner stopping) must reach the backend: each one stops
    the remote turn (Coze cancel, OpenCode abort, killing the CLI, closing the stream) before
    the cancellation propagates. Long-lived resources (HTTP pools, started servers) are
    released by `aclose`."""

    kind: str

    async def run(self, turn: ProxyTurn, on_delta: OnDelta) -> ProxyResult: ...

    async def aclose(self) -> None: ...


def failover_worthy_status(status: int) -> bool:
    """The Stainless SDKs' retry rule, which OpenClaw's failover follows: 408, 409, 429, ≥ 500."""
    return status in (408, 409, 429) or status >= 500
