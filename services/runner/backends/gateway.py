"""`runnerType: openclawx` with `openclawx.gateway`: an agent of another gateway of the
federation, reached over NATS through the hub (docs/federation.md), not over HTTP.

One remote session per local session (the serving gateway derives it from this session's key),
deltas streamed back as they come; an unreachable or silent region is failover-worthy."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Awaitable, Callable

import msgspec
from nats.aio.client import Client

from clawmesh.config import GatewaySettings, OpenClawXSettings
from clawmesh.federation import RemoteStop, RemoteTurn, RemoteTurnFailed, remote_stop_subject, remote_turn

from ._base import BackendError, OnDelta, ProxyResult, ProxyTurn

__all__ = ["GatewayBackend"]


class GatewayBackend:
    kind = "gateway"

    def __init__(
        self,
        nc: Client,
        prefix: str,
        gateway: Callable[[], GatewaySettings],
        silence: Callable[[str], Awaitable[float | None]] | None = None,
    ) -> None:
        self._nc = nc
        self._prefix = prefix
        self._gateway = gateway  # this gateway's region and keep-alive figures, read per turn (reloads)
        self._silence = silence  # how long a region has been silent, when it is gone (`region_silence`)

    async def aclose(self) -> None:
        pass

    async def run(self, turn: ProxyTurn, on_delta: OnDelta) -> ProxyResult:
        settings = turn.settings
        assert isinstance(settings, OpenClawXSettings) and settings.gateway and settings.agent_id
        gateway = self._gateway()
        own = gateway.region
        if own is None:
            raise BackendError(
                f"agent {turn.agent_id!r} runs on gateway {settings.gateway!r}, but this gateway is not federated",
                reason="config",
                failover=False,
                hint="set gateway.region (or `clawmesh up --region R --federate R.leaf`)",
            )
        request = RemoteTurn(
            from_gateway=own,
            agent_id=settings.agent_id,
            session=turn.session_key,
            turn_id=turn.turn_id,
            text=turn.text,
            from_agent=turn.caller,
            kind="spawn" if turn.caller else "turn",
            keepalive=gateway.keepalive_seconds,
            again=turn.again,
        )
        try:
            final = await remote_turn(
                self._nc,
                self._prefix,
                settings.gateway,
                request,
                on_delta,
                idle_timeout=gateway.idle_timeout_seconds,
                silence=None if self._silence is None else functools.partial(self._silence, settings.gateway),
            )
        except asyncio.CancelledError:
            # stopped here (/stop, a run timeout, the runner stopping): stop it there too
            stop = RemoteStop(from_gateway=own, agent_id=settings.agent_id, session=turn.session_key)
            with contextlib.suppress(Exception):
                await self._nc.publish(
                    remote_stop_subject(self._prefix, settings.gateway, settings.agent_id),
                    msgspec.json.encode(stop),
                )
            raise
        except RemoteTurnFailed as exc:
            raise BackendError(
                f"gateway {settings.gateway}: {exc.message}",
                reason="unreachable" if exc.failover else exc.code.lower(),
                failover=exc.failover,
                hint=exc.hint,
            ) from None
        return ProxyResult(
            text=final.text,
            remote_session=final.session_key or None,
            model=f"{settings.gateway}/{final.model}" if final.model else f"gateway:{settings.gateway}",
            extra={"gateway": settings.gateway},
            kept=True,
        )
