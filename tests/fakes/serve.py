"""Serve any ASGI app on 127.0.0.1 in the running loop (the fakes of backends use it), or a
backend fake in its own process: `python -m tests.fakes.serve coze|opencode|a2a [--secret S]`
prints `LISTENING <port>` once bound and serves until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import socket
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import uvicorn

from tests.fakes.models import _EmbeddedServer

__all__ = ["serve_app"]


@contextlib.asynccontextmanager
async def serve_app(app: Any, host: str = "127.0.0.1") -> AsyncIterator[str]:
    """`async with serve_app(app) as base_url:` — `http://127.0.0.1:<port>` while inside."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    sock.listen(1024)
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app, lifespan="off", log_config=None, access_log=False, ws="none", timeout_graceful_shutdown=2
    )
    server = _EmbeddedServer(config)
    task = asyncio.create_task(server.serve(sockets=[sock]), name="fake-backend")
    while not server.started:
        if task.done():
            await task
            raise RuntimeError("fake backend exited during startup")
        await asyncio.sleep(0)
    try:
        yield f"http://{host}:{port}"
    finally:
        server.exit_requested.set()
        await task


def _app(kind: str, secret: str) -> tuple[Any, Callable[[str], None]]:
    """The fake's ASGI app, and what to tell it its URL once bound."""
    if kind == "coze":
        from tests.fakes.coze import FakeCoze

        return FakeCoze(token=secret).app, _ignore
    if kind == "opencode":
        from tests.fakes.opencode import FakeOpenCode

        return FakeOpenCode(password=secret or None).app, _ignore
    if kind == "a2a":
        from tests.fakes.a2a_agents import SdkAgent

        agent = SdkAgent(token=secret or None)

        def told(url: str) -> None:
            agent.base = url  # its card names its own URL

        return agent.app, told
    raise SystemExit(f"unknown fake {kind!r} (coze | opencode | a2a)")


def _ignore(url: str) -> None:
    pass


async def _serve_until_signalled(app: Any, told: Callable[[str], None]) -> None:
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopped.set)
    async with serve_app(app) as url:
        told(url)
        print(f"LISTENING {url.rsplit(':', 1)[1]}", flush=True)
        await stopped.wait()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m tests.fakes.serve", description="Run a backend fake in its own process."
    )
    parser.add_argument("kind", choices=["coze", "opencode", "a2a"])
    parser.add_argument("--secret", default="", help="Coze token / OpenCode password / A2A bearer token")
    args = parser.parse_args(argv)
    asyncio.run(_serve_until_signalled(*_app(args.kind, args.secret)))


if __name__ == "__main__":
    main()
