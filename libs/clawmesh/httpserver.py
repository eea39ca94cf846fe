"""uvicorn embedded in a service's event loop (the host process owns the signals)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Iterator
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from .errors import best_effort

__all__ = ["DEFAULT_HEADER_TIMEOUT", "EmbeddedHTTPServer"]

# How long a client may take to send a request's line and headers.
DEFAULT_HEADER_TIMEOUT = 30.0

log = logging.getLogger("clawmesh.http")


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # The service host installs SIGTERM/SIGINT handlers; uvicorn must not replace them.
        yield


def _protocol(header_timeout: float) -> type[HttpToolsProtocol]:
    """uvicorn's httptools protocol, closing a connection whose request line and headers are not
    complete `header_timeout` seconds after it opened or after the request's first byte
    (uvicorn itself has no such limit: a client sending headers byte by byte holds a connection,
    and its memory, for ever). The idle time between requests stays uvicorn's keep-alive timeout."""

    class Protocol(HttpToolsProtocol):
        _header_timer: asyncio.TimerHandle | None = None

        def _arm(self) -> None:
            self._disarm()
            self._header_timer = self.loop.call_later(header_timeout, self._too_slow)

        def _disarm(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _too_slow(self) -> None:
            self._header_timer = None
            if not self.transport.is_closing():
                self.transport.close()

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._disarm()  # idle until the next request: uvicorn's keep-alive timer

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._arm()

        def on_headers_complete(self) -> None:
            self._disarm()
            super().on_headers_complete()

    return Protocol


class EmbeddedHTTPServer:
    """Serve an ASGI app on host:port in the running loop; `port` is the bound port (0 works).
    A connection must send its request line and headers within `header_timeout` seconds."""

    def __init__(
        self,
        app: Any,
        host: str,
        port: int,
        *,
        graceful_timeout: float = 10.0,
        header_timeout: float = DEFAULT_HEADER_TIMEOUT,
    ) -> None:
        self.app = app
        self.host = host
        self.port = port
        self.graceful_timeout = graceful_timeout
        self.header_timeout = header_timeout
        self._server: _Server | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        # Build the socket with proto=IPPROTO_TCP: asyncio sets TCP_NODELAY on accepted
        # connections only for such sockets; without it every keep-alive response waits for
        # Nagle's delayed ACK (~40 ms per request).
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        sock.listen(2048)
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app,
            lifespan="off",
            log_config=None,
            access_log=False,
            ws="none",
            http=_protocol(self.header_timeout),  # httptools, a C parser: a third of h11's CPU per request
            timeout_graceful_shutdown=int(self.graceful_timeout),
            timeout_keep_alive=30,
            # The app decides whose X-Forwarded-For to believe (uvicorn would from any loopback peer).
            proxy_headers=False,
        )
        self._server = _Server(config)
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]), name="http-server")
        while not self._server.started:
            if self._task.done():
                await self._task
                raise RuntimeError("HTTP server exited during start-up")
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        if self._server is None or self._task is None:
            return
        self._server.should_exit = True
        # stopping anyway: a server that crashed or hangs is reported, not raised
        with best_effort(None, "http_server_stop", log=log):
            await asyncio.wait_for(self._task, self.graceful_timeout + 5)
        self._server = None
        self._task = None
