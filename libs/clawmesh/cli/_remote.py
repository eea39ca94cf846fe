"""How CLI commands reach a running gateway: its HTTP API, or NATS directly."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from nats.aio.client import Client

from ..config import Config
from ..gateway import DEFAULT_NATS_PORT, gateway_token, http_port
from ._common import fail

__all__ = ["api_base", "api_token", "nats_client", "nats_url", "scatter_gather"]


def api_base(config: Config, url: str | None) -> str:
    if url:
        return url.rstrip("/")
    env = os.environ.get("CLAWMESH_GATEWAY_URL")
    if env:
        return env.rstrip("/")
    return f"http://127.0.0.1:{http_port(config)}"


def api_token(config: Config, token: str | None) -> str | None:
    return token or gateway_token(config, create=False)


def nats_url(config: Config, url: str | None) -> str:
    if url:
        return url
    env = os.environ.get("CLAWMESH_NATS_URL")
    if env:
        return env
    section = config.document.nats
    if section and section.url:
        return section.url if isinstance(section.url, str) else ",".join(section.url)
    port = section.port if section and section.port is not None else DEFAULT_NATS_PORT
    return f"nats://127.0.0.1:{port}"


@asynccontextmanager
async def nats_client(config: Config, url: str | None) -> AsyncIterator[Client]:
    from ..bus import connect

    target = nats_url(config, url)
    section = config.document.nats
    try:
        nc = await connect(
            target,
            name="clawmesh-cli",
            user=section.user if section else None,
            password=section.password if section else None,
            token=section.token if section else None,
            creds_file=section.creds_file if section else None,
            connect_timeout=3.0,
            retry_forever=False,
            quiet=True,
        )
    except Exception as exc:
        fail(
            f"cannot reach NATS at {target} ({type(exc).__name__}: {exc}); is the gateway running? (clawmesh up, or --nats-url)"
        )
    try:
        yield nc
    finally:
        await nc.close()


async def scatter_gather(
    nc: Client, subject: str, payload: bytes = b"", wait: float = 1.0
) -> list[dict[str, Any]]:
    """Publish one request and collect every JSON reply that arrives within `wait` seconds
    (how `$SRV` discovery works: each service instance answers)."""
    inbox = nc.new_inbox()
    replies: list[dict[str, Any]] = []

    async def cb(msg: Any) -> None:
        if msg.data:  # an empty message is a "no responders" status
            with contextlib.suppress(ValueError):
                replies.append(json.loads(msg.data))

    sub = await nc.subscribe(inbox, cb=cb)
    try:
        await nc.publish(subject, payload, reply=inbox)
        await nc.flush()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(
                asyncio.Event().wait(), wait
            )  # the window itself: replies arrive meanwhile
    finally:
        await sub.unsubscribe()
    return replies
