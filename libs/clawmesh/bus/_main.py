"""Running services in a process: the event loop, logging, one service alone.

Command lines live in the composition root (clawmesh_gateway), not here.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Coroutine
from typing import Any, TypeVar

from ..config import ConfigHolder
from ._service import ServiceFactory, open_context, run_services
from ._trace import setup_tracing

__all__ = ["configure_logging", "run_loop", "run_one"]

T = TypeVar("T")


def run_loop(main: Coroutine[Any, Any, T]) -> T:
    """asyncio.run, on uvloop when it is installed (≈30% less latency per NATS hop);
    CLAWMESH_UVLOOP=0 keeps the standard loop."""
    if os.environ.get("CLAWMESH_UVLOOP", "1") != "0":
        try:
            import uvloop
        except ImportError:
            pass
        else:
            return uvloop.run(main)
    return asyncio.run(main)


def configure_logging(level: str | None = None) -> None:
    logging.basicConfig(
        level=(level or os.environ.get("CLAWMESH_LOG_LEVEL") or "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


async def run_one(name: str, factory: ServiceFactory, holder: ConfigHolder, nats_url: str | None) -> None:
    """Service `name` alone in this process (one per container), until SIGTERM/SIGINT."""
    setup_tracing(f"clawmesh-{name}")
    ctx = await open_context(name, holder, url=nats_url)
    await run_services([(factory, ctx)])
