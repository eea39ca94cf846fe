"""Connecting to NATS: reconnect forever, log every state change."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import nats
from nats.aio.client import Client

__all__ = ["connect"]

log = logging.getLogger("clawmesh.bus")


async def connect(
    servers: str | Sequence[str],
    *,
    name: str,
    user: str | None = None,
    password: str | None = None,
    token: str | None = None,
    creds_file: str | None = None,
    connect_timeout: float = 5.0,
    retry_forever: bool = True,
    quiet: bool = False,
) -> Client:
    """Connect with reconnect-forever (services start before NATS under compose, and must ride
    out server restarts). With `retry_forever=False` (CLI commands) a missing server fails fast."""
    urls = [servers] if isinstance(servers, str) else list(servers)
    urls = [u for url in urls for u in url.split(",") if u.strip()]

    client: list[Client] = []
    errors: list[Exception] = []  # what the server said, for a failed first connect

    def closing() -> bool:
        return bool(client) and (client[0].is_closed or client[0].is_draining)

    async def on_error(exc: Exception) -> None:
        errors.append(exc)
        del errors[:-3]
        if not quiet and not closing():
            log.warning("%s: NATS error: %s", name, exc)

    async def on_disconnect() -> None:
        if not quiet and not closing():
            log.warning("%s: disconnected from NATS", name)

    async def on_reconnect() -> None:
        log.warning("%s: reconnected to NATS", name)

    async def on_close() -> None:
        log.info("%s: NATS connection closed", name)

    kwargs: dict[str, Any] = {
        "servers": urls,
        "name": name,
        "error_cb": on_error,
        "disconnected_cb": on_disconnect,
        "reconnected_cb": on_reconnect,
        "closed_cb": on_close,
        "connect_timeout": connect_timeout,
        "allow_reconnect": True,
        "reconnect_time_wait": 1.0,
        "max_reconnect_attempts": -1 if retry_forever else 1,
        "ping_interval": 20,
        "max_outstanding_pings": 3,
        "drain_timeout": 30,
    }
    if user:
        kwargs["user"], kwargs["password"] = user, password
    if token:
        kwargs["token"] = token
    if creds_file:
        kwargs["user_credentials"] = creds_file
    try:
        nc = await nats.connect(**kwargs)
    except Exception as exc:
        # nats-py reports a refused login as "no servers available"; say what the server said
        said = next((e for e in reversed(errors) if "authorization" in str(e).lower()), None)
        if said is not None:
            raise PermissionError(f"NATS refused the credentials: {said}") from exc
        raise
    client.append(nc)
    return nc
