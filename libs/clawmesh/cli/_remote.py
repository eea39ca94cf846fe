"""How CLI commands reach a running gateway: its HTTP API, or NATS directly."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ..config import Config
from ..gateway import DEFAULT_NATS_PORT, gateway_token, http_port, is_loopback
from ..localgateway import LocalGateway, running
from ..natsauth import NatsAuthError, embedded_admin
from ._common import fail

if TYPE_CHECKING:  # nats-py is imported by the commands that connect, not by every command
    from nats.aio.client import Client

__all__ = [
    "api_base",
    "api_token",
    "expected_services",
    "nats_client",
    "nats_credentials",
    "nats_url",
    "scatter_gather",
]


def _local(config: Config) -> LocalGateway | None:
    """The gateway `clawmesh up` runs on this state dir, when it runs `config` (or `config`
    has no file: the CLI was given nothing that points elsewhere)."""
    live = running(config.state_dir)
    if live is None:
        return None
    if config.source is None or live.config is None or Path(live.config).resolve() == config.source.resolve():
        return live
    return None


def api_base(config: Config, url: str | None) -> str:
    if url:
        return url.rstrip("/")
    env = os.environ.get("CLAWMESH_GATEWAY_URL")
    if env:
        return env.rstrip("/")
    live = _local(config)
    if live is not None and live.url:
        return live.url.rstrip("/")
    return f"http://127.0.0.1:{http_port(config)}"


def api_token(config: Config, token: str | None) -> str | None:
    return token or gateway_token(config, create=False)


def nats_url(config: Config, url: str | None) -> str:
    if url:
        return url
    env = os.environ.get("CLAWMESH_NATS_URL")
    if env:
        return env
    live = _local(config)
    if live is not None and live.nats_url:
        return live.nats_url
    section = config.document.nats
    if section and section.url:
        return section.url if isinstance(section.url, str) else ",".join(section.url)
    port = section.port if section and section.port is not None else DEFAULT_NATS_PORT
    return f"nats://127.0.0.1:{port}"


def _is_loopback(target: str) -> bool:
    hosts = [urlsplit(u.strip() if "://" in u else f"nats://{u.strip()}").hostname for u in target.split(",")]
    return all(h is not None and is_loopback(h) for h in hosts)


def nats_credentials(config: Config, target: str) -> dict[str, Any]:
    """The config's NATS credentials (`nats.*`, CLAWMESH_NATS_USER/PASSWORD/CREDS) when it has
    any; else, for a server on this machine, the `admin` user `clawmesh up` generated in the
    state dir (never sent to a remote server)."""
    section = config.document.nats
    explicit = {
        "user": section.user if section else None,
        "password": section.password if section else None,
        "token": section.token if section else None,
        "creds_file": section.creds_file if section else None,
    }
    if any(explicit.values()) or not _is_loopback(target):
        return explicit
    try:
        admin = embedded_admin(config.state_dir, config.settings.nats.subject_prefix)
    except NatsAuthError as exc:
        fail(str(exc))
    if admin is None:
        return explicit
    return {**explicit, "user": admin[0], "password": admin[1]}


@asynccontextmanager
async def nats_client(config: Config, url: str | None) -> AsyncIterator[Client]:
    from ..bus import connect

    target = nats_url(config, url)
    try:
        nc = await connect(
            target,
            name="clawmesh-cli",
            **nats_credentials(config, target),
            connect_timeout=3.0,
            retry_forever=False,
            quiet=True,
        )
    except PermissionError as exc:
        fail(
            f"{exc} at {target}: set the NATS user (CLAWMESH_NATS_USER/CLAWMESH_NATS_PASSWORD, nats.user, "
            "nats.credsFile); for a local `clawmesh up` run the CLI with the same state dir"
        )
    except Exception as exc:
        fail(
            f"cannot reach NATS at {target} ({type(exc).__name__}: {exc}); is the gateway running? (clawmesh up, or --nats-url)"
        )
    try:
        yield nc
    finally:
        await nc.close()


def expected_services(config: Config) -> frozenset[str]:
    """The services a gateway running `config` has (every one answers discovery and control
    requests): the CLI stops waiting for replies once each has answered."""
    local = config.document.nodes.local if config.document.nodes else None
    names = {"ingress", "router", "runner"}
    if not (local and local.enabled is False):
        names.add("node-agent")
    return frozenset(names)


async def scatter_gather(
    nc: Client,
    subject: str,
    payload: bytes = b"",
    wait: float = 1.0,
    *,
    done: Callable[[list[dict[str, Any]]], bool] | None = None,
) -> list[dict[str, Any]]:
    """Publish one request and collect every JSON reply that arrives within `wait` seconds
    (how `$SRV` discovery works: each service instance answers). With `done`, stop as soon as
    the replies satisfy it, after a grace of a few round trips for other instances of the same
    services (which answer together); `wait` then only bounds a missing service."""
    inbox = nc.new_inbox()
    replies: list[dict[str, Any]] = []
    complete = asyncio.Event()

    async def cb(msg: Any) -> None:
        if msg.data:  # an empty message is a "no responders" status
            with contextlib.suppress(ValueError):
                replies.append(json.loads(msg.data))
                if done is not None and done(replies):
                    complete.set()

    sub = await nc.subscribe(inbox, cb=cb)
    try:
        started = time.monotonic()
        await nc.publish(subject, payload, reply=inbox)
        await nc.flush()
        with contextlib.suppress(TimeoutError):
            # the window itself: replies arrive meanwhile
            await asyncio.wait_for(complete.wait(), wait)
            rtt = time.monotonic() - started
            await asyncio.sleep(min(wait, max(0.02, 3 * rtt)))
    finally:
        await sub.unsubscribe()
    return replies
