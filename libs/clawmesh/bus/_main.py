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
from ..safetext import one_line
from ._service import ServiceFactory, open_context, run_services
from ._trace import setup_tracing

__all__ = ["OneLineFormatter", "configure_logging", "run_loop", "run_one"]

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


class OneLineFormatter(logging.Formatter):
    """One record, one line: what a message quotes from outside (a chat message, a payload, a
    header) is escaped and bounded (`clawmesh.safetext`), so it cannot forge lines of its own or
    drive the terminal. A traceback still follows on its own lines."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = one_line(record.message)
        return super().formatMessage(record)


def configure_logging(level: str | None = None) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(OneLineFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(
        level=(level or os.environ.get("CLAWMESH_LOG_LEVEL") or "INFO").upper(), handlers=[handler]
    )


async def run_one(name: str, factory: ServiceFactory, holder: ConfigHolder, nats_url: str | None) -> None:
    """Service `name` alone in this process (one per container), until SIGTERM/SIGINT."""
    setup_tracing(f"clawmesh-{name}")
    ctx = await open_context(name, holder, url=nats_url)
    await run_services([(factory, ctx)])
