"""What the services of one process know about each other: whether every one of them is
started and connected (for `/readyz`), and whether a NATS connection is closed for good.

nats-py does not reconnect once the server has closed a connection (e.g. over its control-line
limit) or the reconnect attempts are used up: the process would live on, serving nothing, with
green health checks. `watch_connections` notices and stops the process, which then exits
non-zero so that its supervisor (compose, systemd) restarts it.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

from nats.aio.client import Client

from ..errors import ClawmeshError
from ._pull import wait_for_stop

__all__ = ["ConnectionClosedForGood", "ProcessHealth", "watch_connections"]

log = logging.getLogger("clawmesh.service")

WATCH_INTERVAL = 0.5  # how soon a closed connection is noticed


class ConnectionClosedForGood(ClawmeshError):
    """A service's NATS connection was closed and will not come back: the process must restart."""

    def __init__(self, services: list[str]) -> None:
        super().__init__(
            "NATS_CLOSED",
            f"the NATS connection of {', '.join(services)} is closed for good;",
            "the process exits so that its supervisor restarts it",
        )
        self.services = services


@dataclass
class ProcessHealth:
    """The services of this process, their connections, and whether they have all started."""

    connections: dict[str, Client] = field(default_factory=dict)
    started: bool = False

    def add(self, service: str, nc: Client) -> None:
        self.connections[service] = nc

    def closed(self) -> list[str]:
        return [name for name, nc in self.connections.items() if nc.is_closed]

    def report(self) -> dict[str, Any]:
        """`ready` only when every service has started and is connected to NATS."""
        connected = {name: bool(nc.is_connected) for name, nc in self.connections.items()}
        ready = self.started and all(connected.values())
        return {"ready": ready, "started": self.started, "nats": connected}


async def watch_connections(health: ProcessHealth, stop: asyncio.Event) -> list[str]:
    """Wait until `stop` is set (returns []) or a connection is closed for good: then log it,
    set `stop` so that the others drain, and return the services whose connection closed."""
    while not stop.is_set():
        closed = health.closed()
        if closed:
            for name in closed:
                log.error(
                    "%s: NATS connection closed for good (%s); nats-py does not reconnect after "
                    "that: stopping the process so that it is restarted",
                    name,
                    health.connections[name].last_error or "no error given",
                )
            stop.set()
            return closed
        await wait_for_stop(stop, WATCH_INTERVAL)
    return []
