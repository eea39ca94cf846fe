"""Process entry point shared by the per-service commands (`clawmesh-router`, `python -m …`)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Coroutine, Sequence
from typing import Any, TypeVar

from ..checks import default_checks
from ..config import ConfigError, ConfigHolder
from ._process import ConnectionClosedForGood
from ._service import Service, open_context, run_services
from ._trace import setup_tracing

__all__ = ["configure_logging", "run_loop", "run_one", "service_main"]

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


async def run_one(
    cls: type[Service], holder: ConfigHolder, nats_url: str | None, options: dict[str, Any] | None = None
) -> None:
    setup_tracing(f"clawmesh-{cls.name}")
    ctx = await open_context(cls.name, holder, url=nats_url, options=options)
    await run_services([(cls, ctx)])


def service_main(cls: type[Service], argv: Sequence[str] | None = None) -> None:
    """`--config`, `--nats-url`, `--log-level`; runs until SIGTERM/SIGINT (SIGHUP reloads config)."""
    parser = argparse.ArgumentParser(
        prog=f"clawmesh-{cls.name.replace('_', '-')}", description=f"Run the clawmesh {cls.name} service."
    )
    parser.add_argument(
        "--config", "-c", help="config file (default: $CLAWMESH_CONFIG_PATH or ~/.clawmesh/clawmesh.json)"
    )
    parser.add_argument(
        "--nats-url", default=os.environ.get("CLAWMESH_NATS_URL"), help="NATS URL(s), comma separated"
    )
    parser.add_argument("--log-level", default=None, help="DEBUG, INFO (default), WARNING, ERROR")
    args = parser.parse_args(argv)
    configure_logging(args.log_level)
    try:
        holder = ConfigHolder.load(args.config, checks=default_checks())
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
    try:
        run_loop(run_one(cls, holder, args.nats_url))
    except KeyboardInterrupt:
        pass
    except ConnectionClosedForGood as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)  # the supervisor (compose: restart: unless-stopped) starts a fresh process
