"""Slack Socket Mode for one app (channel-protocols.md §2.4): events over a WebSocket the gateway
opens, so no public Request URL is needed.

Each connection starts with `apps.connections.open` (the app-level token `xapp-…` in the
Authorization header), whose URL is single-use: every reconnect asks for a new one. Slack sends
`hello`, then envelopes. An `events_api` envelope's payload is the Events API's `event_callback`
body: `on_envelope` stores it (the adapter's path for HTTP events too) and only then is the
envelope acknowledged (`{"envelope_id": …}`); if it could not be stored it is not acknowledged,
and Slack delivers it again (`retry_attempt`, `retry_reason`), which is one turn (the platform id
`<channel>:<ts>` is the inbound stream's dedupe key). Envelopes of other types (`slash_commands`,
`interactive`) are acknowledged and ignored.

`disconnect` with `warning` or `refresh_requested`: a new connection is opened first, then the
old one closed once what it delivered is acknowledged (bounded), so no event is lost.
`too_many_websockets` (more than Slack's 10 connections of one app): back off and try again.
`link_disabled` (Socket Mode turned off for the app): the account stops, saying why. A dropped
socket reconnects with back-off (1 s doubling to 30 s), a refused app token stops the account.

Every ingress replica connects (no lease): Slack spreads an app's envelopes over its connections,
and a redelivery that lands on another replica is the same turn. Envelopes are stored one at a
time in the order they arrived (the socket keeps being read meanwhile). Neither token nor the
URL's ticket is ever logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any, Final

import msgspec
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI
from websockets.protocol import State

from clawmesh.bus import wait_for_stop
from clawmesh.channels.slack import (
    SocketFrame,
    decode_socket_frame,
    redact_url,
    salvage_envelope_id,
    socket_ack,
)

from .webapi import NetworkError, WebApi, WebApiError

__all__ = ["NotAcknowledged", "SocketModeClient"]

log = logging.getLogger("clawmesh.ingress.slack")
# the WebSocket library logs the request line (the URL's ticket) and every frame at DEBUG: its
# logger never goes below INFO, whatever the service's log level
_ws_log = logging.getLogger("clawmesh.ingress.slack.websocket")
_ws_log.setLevel(logging.INFO)

BACKOFF_FIRST: Final = 1.0
BACKOFF_MAX: Final = 30.0
HELLO_TIMEOUT: Final = 10.0
RETIRE_WAIT: Final = 5.0  # how long a replaced connection may take to acknowledge what it delivered
MAX_FRAME_BYTES: Final = 4 << 20
PING_INTERVAL: Final = 20.0  # a dead TCP connection is noticed within about 2 x this
CLOSE_NORMAL: Final = 1000
# apps.connections.open errors that mean the app token itself is wrong
_TOKEN_ERRORS: Final = frozenset(
    {
        "invalid_auth",
        "not_authed",
        "not_allowed_token_type",
        "token_revoked",
        "token_expired",
        "account_inactive",
        "missing_scope",
    }
)

OnEnvelope = Callable[[SocketFrame], Awaitable[None]]


class NotAcknowledged(Exception):
    """Raised by `on_envelope`: the envelope was not stored; leave it unacknowledged so Slack
    delivers it again."""


class _Retry(Exception):
    """This connection attempt failed; try again after `wait` seconds at least."""

    def __init__(self, why: str, *, wait: float = 0.0) -> None:
        super().__init__(why)
        self.wait = wait


class _Fatal(Exception):
    """Trying again cannot help (the app token was refused, Socket Mode is off for the app)."""


class _Connection:
    """One open Socket Mode WebSocket and what is in flight on it."""

    def __init__(self, number: int, ws: ClientConnection, url: str) -> None:
        self.number = number
        self.ws = ws
        self.where = redact_url(url, url)  # for log lines: no ticket
        self.ended: asyncio.Future[tuple[str, str]] = asyncio.get_running_loop().create_future()
        self.replace = asyncio.Event()  # Slack asked for a fresh connection
        self.pending = 0  # envelopes of this connection queued or being stored
        self.idle = asyncio.Event()
        self.idle.set()
        self.reader: asyncio.Task[None] | None = None

    @property
    def open(self) -> bool:
        return self.ws.state is State.OPEN


class SocketModeClient:
    """The Socket Mode connections of one Slack app, for one account of one ingress replica."""

    def __init__(
        self,
        api: WebApi,
        app_token: str,
        on_envelope: OnEnvelope,
        *,
        account: str,
        token_path: str,
        counters: Counter[str] | None = None,
        backoff_first: float = BACKOFF_FIRST,
        backoff_max: float = BACKOFF_MAX,
        hello_timeout: float = HELLO_TIMEOUT,
    ) -> None:
        self.api = api
        self._app_token = app_token
        self.on_envelope = on_envelope
        self.account = account
        self.token_path = token_path
        self.counters: Counter[str] = counters if counters is not None else Counter()
        self.backoff_first = backoff_first
        self.backoff_max = backoff_max
        self.hello_timeout = hello_timeout
        self.state = "connecting"  # connected | reconnecting | stopped
        self.error: str | None = None
        self.connects = 0  # connections that said hello
        self._numbers = 0
        self._current: _Connection | None = None
        self._conns: set[_Connection] = set()
        self._queue: asyncio.Queue[tuple[_Connection, SocketFrame]] = asyncio.Queue()
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def connected(self) -> bool:
        return self.state == "connected"

    @property
    def running(self) -> bool:
        """Connected or trying to be (False once stopped, asked to or not)."""
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.error is None:
            self.state = "stopped"

    def status(self) -> dict[str, Any]:
        return {
            "connection": self.state,
            "connected": self.connected,
            "connections": sum(1 for c in self._conns if c.open),
            "connects": self.connects,
            **({"error": self.error} if self.error else {}),
        }

    # --- connections --------------------------------------------------------------------------

    async def _run(self) -> None:
        worker = asyncio.create_task(self._work())
        delay = self.backoff_first
        try:
            while not self._stop.is_set():
                try:
                    conn = await self._open()
                except _Fatal as exc:
                    self._fail(str(exc))
                    return
                except _Retry as exc:
                    current = self._current
                    if current is not None and current.ended.done():  # the old one went meanwhile
                        self._current = None
                    if self._current is None and self.state == "connected":
                        self.state = "reconnecting"
                    pause = max(self._pause(delay), exc.wait)
                    delay = min(delay * 2, self.backoff_max)
                    log.warning("slack %s: Socket Mode: %s; trying again in %.1fs", self.account, exc, pause)
                    await wait_for_stop(self._stop, pause)
                    continue
                old, self._current = self._current, conn
                self.state = "connected"
                self.connects += 1
                if old is not None:  # replaced at Slack's request: the new one is up, close the old
                    await self._retire(old)
                end = await self._watch(conn)
                if end is None:
                    log.info(
                        "slack %s: Slack asked for a fresh connection; opening it before closing "
                        "connection %d",
                        self.account,
                        conn.number,
                    )
                    continue
                kind, why = end
                self._current = None
                await self._close(conn)
                if kind == "disabled":
                    self._fail(why)
                    return
                self.state = "reconnecting"
                # it was up: back off anew from the start; but after too_many_websockets keep
                # backing off, so as not to add to the stampede
                if kind != "too_many":
                    delay = self.backoff_first
                pause = self._pause(delay)
                delay = min(delay * 2, self.backoff_max)
                log.warning(
                    "slack %s: Socket Mode connection %d: %s; reconnecting in %.1fs",
                    self.account,
                    conn.number,
                    why,
                    pause,
                )
                await wait_for_stop(self._stop, pause)
        finally:
            worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await worker
            for conn in list(self._conns):
                await self._close(conn)
            self._current = None
            if self.state != "stopped":
                self.state = "stopped"

    def _pause(self, delay: float) -> float:
        # a little jitter, so replicas dropped together do not come back together
        return min(delay * random.uniform(1.0, 1.25), self.backoff_max)

    def _fail(self, why: str) -> None:
        self.error = why
        self.state = "stopped"
        log.error("slack %s: %s; this account stays off", self.account, why)

    async def _open(self) -> _Connection:
        """A new connection that said hello (its reader running); _Retry or _Fatal."""
        try:
            url = await self.api.connections_open(self._app_token)
        except WebApiError as exc:
            if exc.transient:
                raise _Retry(str(exc), wait=exc.retry_after or 0.0) from None
            if exc.error in _TOKEN_ERRORS:
                raise _Fatal(
                    f"apps.connections.open refused the app token ({exc.error}); check {self.token_path}: "
                    "an app-level token (xapp-…) of this app with the connections:write scope"
                ) from None
            raise _Fatal(f"apps.connections.open failed: {exc}") from None
        except NetworkError as exc:
            raise _Retry(str(exc)) from None
        self._numbers += 1
        number = self._numbers
        where = redact_url(url, url)
        try:
            ws = await connect(
                url,
                open_timeout=self.hello_timeout,
                max_size=MAX_FRAME_BYTES,
                ping_interval=PING_INTERVAL,
                ping_timeout=PING_INTERVAL,
                proxy=None,
                compression=None,
                logger=_ws_log,
            )
        except (OSError, InvalidHandshake, InvalidURI, TimeoutError) as exc:
            raise _Retry(
                f"cannot connect to {where}: {redact_url(f'{type(exc).__name__}: {exc}', url)}"
            ) from None
        try:
            first = decode_socket_frame(await asyncio.wait_for(ws.recv(), self.hello_timeout))
        except (TimeoutError, ConnectionClosed, msgspec.DecodeError, msgspec.ValidationError) as exc:
            await self._close_ws(ws)
            raise _Retry(f"no hello on {where} ({type(exc).__name__})") from None
        except BaseException:  # stopped meanwhile: not left open
            await self._close_ws(ws)
            raise
        if first.type != "hello":
            await self._close_ws(ws)
            if first.type == "disconnect" and first.reason == "link_disabled":
                raise _Fatal("Slack disabled Socket Mode for this app (disconnect: link_disabled)")
            if first.type == "disconnect" and first.reason == "too_many_websockets":
                raise _Retry("the app has too many connections (disconnect: too_many_websockets)")
            raise _Retry(f"expected hello on {where}, got {first.type or 'a frame without a type'}")
        conn = _Connection(number, ws, url)
        self._conns.add(conn)
        conn.reader = asyncio.create_task(self._read(conn))
        log.info(
            "slack %s: Socket Mode connection %d open (%s; the app has %s)",
            self.account,
            number,
            where,
            f"{first.num_connections} connections" if first.num_connections is not None else "connections",
        )
        return conn

    async def _watch(self, conn: _Connection) -> tuple[str, str] | None:
        """How `conn` ended (kind, why), or None: Slack asked for a fresh connection."""
        asked = asyncio.create_task(conn.replace.wait())
        either: list[asyncio.Future[Any]] = [asked, conn.ended]
        try:
            await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
        finally:
            asked.cancel()
        return conn.ended.result() if conn.ended.done() else None

    async def _retire(self, conn: _Connection) -> None:
        """Close a replaced connection once what it delivered is acknowledged (bounded: what is
        left unacknowledged Slack delivers again)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(conn.idle.wait(), RETIRE_WAIT)
        await self._close(conn)
        log.info("slack %s: Socket Mode connection %d closed (replaced)", self.account, conn.number)

    async def _close(self, conn: _Connection) -> None:
        await self._close_ws(conn.ws)
        if conn.reader is not None and not conn.reader.done():
            conn.reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await conn.reader
        if not conn.ended.done():
            conn.ended.set_result(("closed", "closed by clawmesh"))
        self._conns.discard(conn)

    @staticmethod
    async def _close_ws(ws: ClientConnection) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(ws.close(CLOSE_NORMAL, "bye"), 5.0)

    # --- frames -------------------------------------------------------------------------------

    async def _read(self, conn: _Connection) -> None:
        end: tuple[str, str] | None = None
        try:
            async for raw in conn.ws:
                end = await self._frame(conn, raw)
                if end is not None:
                    break
        except ConnectionClosed:
            pass
        except Exception as exc:  # a bug: this connection is given up, a new one opened
            log.exception("slack %s: Socket Mode connection %d failed", self.account, conn.number)
            end = ("dropped", f"the connection failed ({type(exc).__name__})")
        finally:
            if end is None:
                code = conn.ws.close_code
                end = ("dropped", f"the connection closed ({code if code is not None else 'no close code'})")
            if not conn.ended.done():
                conn.ended.set_result(end)

    async def _frame(self, conn: _Connection, raw: str | bytes) -> tuple[str, str] | None:
        """Handle one frame; (kind, why) when the connection must end."""
        try:
            frame = decode_socket_frame(raw)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            self.counters["slack_socket_malformed"] += 1
            envelope_id = salvage_envelope_id(raw)
            log.warning(
                "slack %s: a malformed Socket Mode frame %s: %s",
                self.account,
                "acknowledged and dropped" if envelope_id else "dropped",
                exc,
            )
            if envelope_id:  # so it is not delivered again and again
                await self._ack(conn, envelope_id)
            return None
        if frame.type == "disconnect":
            if frame.reason == "link_disabled":
                return ("disabled", "Slack disabled Socket Mode for this app (disconnect: link_disabled)")
            if frame.reason == "too_many_websockets":
                return ("too_many", "the app has too many connections (disconnect: too_many_websockets)")
            # warning, refresh_requested (or a reason new to us): a new connection, then this one closed
            log.info(
                "slack %s: Socket Mode connection %d: disconnect (%s)",
                self.account,
                conn.number,
                frame.reason or "no reason",
            )
            conn.replace.set()
            return None
        if frame.envelope_id is None:  # hello again, or something new: nothing to answer
            log.debug("slack %s: Socket Mode frame %r ignored", self.account, frame.type)
            return None
        if frame.type == "events_api":
            if frame.retry_attempt:
                self.counters["slack_socket_redelivered"] += 1
            conn.pending += 1
            conn.idle.clear()
            self._queue.put_nowait((conn, frame))
            return None
        # slash_commands, interactive: not served by clawmesh; acknowledged so Slack stops retrying
        self.counters["slack_socket_ignored"] += 1
        log.debug(
            "slack %s: a %s envelope acknowledged and ignored (not served by clawmesh)",
            self.account,
            frame.type or "typeless",
        )
        await self._ack(conn, frame.envelope_id)
        return None

    async def _work(self) -> None:
        """Store the events_api envelopes one at a time, in arrival order; acknowledge each
        only once stored."""
        while True:
            conn, frame = await self._queue.get()
            envelope_id = frame.envelope_id or ""
            try:
                await self.on_envelope(frame)
            except NotAcknowledged as exc:
                self.counters["slack_socket_not_acked"] += 1
                log.warning(
                    "slack %s: envelope %s not stored (%s); not acknowledged, Slack delivers it again",
                    self.account,
                    envelope_id,
                    exc,
                )
            except Exception:  # a bug: not acknowledged either, Slack's redelivery tries again
                self.counters["slack_socket_not_acked"] += 1
                log.exception("slack %s: envelope %s failed; not acknowledged", self.account, envelope_id)
            else:
                await self._ack(conn, envelope_id)
            finally:
                conn.pending -= 1
                if conn.pending == 0:
                    conn.idle.set()

    async def _ack(self, conn: _Connection, envelope_id: str) -> None:
        """On the connection it came on, else on the current one (a replaced connection closed)."""
        data = socket_ack(envelope_id)
        for target in (conn, self._current):
            if target is None or not target.open:
                continue
            try:
                await target.ws.send(data)
            except ConnectionClosed:
                continue
            self.counters["slack_socket_acked"] += 1
            return
        log.info(
            "slack %s: envelope %s not acknowledged: no open connection (Slack delivers it again: one turn)",
            self.account,
            envelope_id,
        )
