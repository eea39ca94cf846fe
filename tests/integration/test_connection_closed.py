"""A service whose NATS connection is closed for good stops its process with a non-zero exit
(its supervisor restarts it), and `/readyz` reports every service of the process.

nats-py does not reconnect after the server closed a connection over a protocol error. The
test provokes the real thing: a TCP proxy between one service and nats-server slips a control
line longer than the server's limit (4096 bytes) into that service's stream, the server answers
`-ERR 'Maximum Control Line Exceeded'` and closes the connection — what a 1,400-dot peer id in a
subject used to do.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio

from clawmesh.bus import ConnectionClosedForGood, NatsServer
from tests.fixtures.gateway import ServiceProcess, run_gateway, wait_until, write_config

pytestmark = pytest.mark.slow

CONFIG = {"agents": {"list": [{"id": "main", "default": True, "model": "echo/echo"}]}}
_TOO_LONG = b"PUB " + b"x" * 5000 + b" 0\r\n\r\n"


class _Proxy:
    """Forwards NATS connections to `upstream`; can drop them all, refuse new ones for a while,
    or send the server a control line that is too long on every open connection."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.refusing = False
        self._to_server: list[asyncio.StreamWriter] = []
        self._writers: list[asyncio.StreamWriter] = []
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"nats://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    @property
    def connections(self) -> int:
        return sum(not w.is_closing() for w in self._to_server)

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)

    async def stop(self) -> None:
        self.drop()
        if self._server is not None:
            self._server.close()

    def drop(self) -> None:
        for writer in self._writers:
            writer.close()
        self._writers.clear()
        self._to_server.clear()

    async def overflow(self) -> None:
        for writer in self._to_server:
            if not writer.is_closing():
                writer.write(_TOO_LONG)
                # the server may close the connection before the write is drained
                with contextlib.suppress(ConnectionError):
                    await writer.drain()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.refusing:
            writer.close()
            return
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        self._writers += [writer, up_writer]
        self._to_server.append(up_writer)
        await asyncio.gather(self._pump(reader, up_writer), self._pump(up_reader, writer))

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()


@pytest_asyncio.fixture
async def proxy(nats_server: NatsServer) -> AsyncIterator[_Proxy]:
    p = _Proxy(nats_server.client_port or 0)
    await p.start()
    try:
        yield p
    finally:
        await p.stop()


async def test_a_service_process_exits_non_zero_when_its_connection_is_closed_for_good(
    nats_server: NatsServer, proxy: _Proxy, tmp_path: Path
) -> None:
    config = write_config(tmp_path / "clawmesh.json", CONFIG)
    log = tmp_path / "router.log"
    env = {"HOME": str(tmp_path), "CLAWMESH_STATE_DIR": str(tmp_path / "state"), "PATH": "/usr/bin:/bin"}
    router = ServiceProcess("router", config, proxy.url, env, log)
    try:
        await wait_until(lambda: "is the leader" in log.read_text(), 60, message="the router to lead")
        assert router.proc.poll() is None
        await proxy.overflow()
        code = await wait_until(lambda: router.proc.poll(), 30, message="the router to exit")
        text = log.read_text()
        assert code == 1, text
        assert "closed for good" in text and "maximum control line exceeded" in text.lower(), text
    finally:
        router.kill()


async def test_readyz_reports_every_service_and_the_process_stops_when_one_is_closed(
    nats_server: NatsServer, proxy: _Proxy, tmp_path: Path
) -> None:
    # only the router goes through the proxy: ingress stays connected throughout
    async with (
        run_gateway(
            nats_server.url, CONFIG, tmp_path, services=("ingress", "router"), urls={"router": proxy.url}
        ) as gw,
        httpx.AsyncClient(base_url=gw.url) as http,
    ):
        first = await http.get("/readyz")
        assert first.status_code == 200, first.text
        assert first.json()["services"] == {"ingress": True, "router": True}

        proxy.refusing = True
        proxy.drop()  # the router reconnects, and cannot while the proxy refuses
        await wait_until(
            lambda: _status(http, 503), 30, message="/readyz 503 while the router is disconnected"
        )
        body = (await http.get("/readyz")).json()
        assert body["services"] == {"ingress": True, "router": False} and body["nats"] is True

        proxy.refusing = False
        await wait_until(lambda: _status(http, 200), 30, message="/readyz 200 after the reconnect")

        await wait_until(lambda: proxy.connections, 10, message="the router's new connection")
        await proxy.overflow()
        with pytest.raises(ConnectionClosedForGood) as err:
            await asyncio.wait_for(gw.task, 60)
        assert err.value.services == ["router"] and err.value.code == "NATS_CLOSED"


async def _status(http: httpx.AsyncClient, code: int) -> bool:
    return (await http.get("/readyz")).status_code == code
