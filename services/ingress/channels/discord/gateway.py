"""The Discord Gateway connection of one bot token, held by one ingress replica at a time.

The replica holds a KV lease (`leases`, key `discord-gateway.<token hash>`) while it is
connected; the others wait and take over when it lapses, as Telegram's poller does. On the
socket (channel-protocols.md §3.2): HELLO, heartbeats every `heartbeat_interval` (the first after
a random fraction of it) carrying the last sequence number seen, an ACK expected before the
next beat (none: a zombie connection, dropped and resumed), IDENTIFY with the intents, READY
(the bot's user, the session id, `resume_gateway_url`). On a drop, op 7 RECONNECT, op 9 with
`d: true` or a resumable close code it reconnects to `resume_gateway_url` and RESUMEs with the
session id and sequence number, and Discord replays what was missed; after op 9 `d: false` or
close 4007/4009 it identifies anew; after 4004 (bad token), 4014 (disallowed intents) and the
other fatal codes it stops, saying why. Reconnects back off (1 s doubling to 60 s) until a
session is up again.

Dispatches are handed to `on_dispatch` in sequence order by one worker (the socket keeps being
read meanwhile, so heartbeats are answered while a message is being stored). The session id,
the sequence number of the last dispatch handled (stored) and the resume URL are saved in KV
(`channels`, `discord.session.<token hash>`): a replica that takes the lease over RESUMEs that
session, so Discord replays what the previous holder had not stored, and a message seen twice
is one turn (its id is the inbound stream's dedupe key). Leaving (lease lost, ingress stopping)
closes with code 4000, never 1000/1001, which would end the session for the successor.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Any, Final

import msgspec
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from clawmesh.bus import Lease, LeaseLost, Leases, wait_for_stop
from clawmesh.channels.discord import CLOSE_FATAL, CLOSE_NEW_SESSION, INTENTS, Op

from ..base import token_key
from .rest import NetworkError, RestApi, RestError

__all__ = ["Gateway", "SavedSession"]

log = logging.getLogger("clawmesh.ingress.discord")
# the WebSocket library logs every frame at DEBUG, IDENTIFY and RESUME (the token) included:
# its logger never goes below INFO, whatever the service's log level
_ws_log = logging.getLogger("clawmesh.ingress.discord.websocket")
_ws_log.setLevel(logging.INFO)

BACKOFF_FIRST: Final = 1.0
BACKOFF_MAX: Final = 60.0
HELLO_TIMEOUT: Final = 30.0
LEAVE_CODE: Final = 4000  # any code but 1000/1001 keeps the session resumable
MAX_FRAME_BYTES: Final = 8 << 20  # READY of a bot in many guilds is large
PROPERTIES: Final = {"os": "linux", "browser": "clawmesh", "device": "clawmesh"}

OnDispatch = Callable[[str, msgspec.Raw], Awaitable[None]]
OnReady = Callable[[dict[str, Any]], Awaitable[None]]


class SavedSession(msgspec.Struct):
    session_id: str
    seq: int
    resume_url: str


class _Frame(msgspec.Struct):
    op: int
    d: msgspec.Raw = msgspec.Raw(b"null")
    s: int | None = None
    t: str | None = None


class _Hello(msgspec.Struct):
    heartbeat_interval: float


class _Ready(msgspec.Struct):
    session_id: str
    resume_gateway_url: str
    user: dict[str, Any]


_frame = msgspec.json.Decoder(_Frame)
_hello = msgspec.json.Decoder(_Hello)
_ready = msgspec.json.Decoder(_Ready)
_session = msgspec.json.Decoder(SavedSession)


class _Again(Exception):
    """Reconnect: `resume` the session, or identify anew; `wait` first (seconds)."""

    def __init__(self, why: str, *, resume: bool, wait: float = 0.0) -> None:
        super().__init__(why)
        self.resume = resume
        self.wait = wait


class _Fatal(Exception):
    """Reconnecting cannot help (the token was refused, the intents are not allowed)."""


class Gateway:
    """One bot token's Gateway session while this replica holds its lease."""

    def __init__(
        self,
        rest: RestApi,
        token: str,
        leases: Leases,
        sessions: KeyValue,
        lease_seconds: float,
        on_ready: OnReady,
        on_dispatch: OnDispatch,
        *,
        account: str,
        intents: int = INTENTS,
    ) -> None:
        self.rest = rest
        self._token = token
        self.key = token_key(token)
        self.leases = leases
        self.sessions = sessions
        self.lease_seconds = lease_seconds
        self.on_ready = on_ready
        self.on_dispatch = on_dispatch
        self.account = account
        self.intents = intents
        self.connected = False
        self.fatal: str | None = None
        self.identifies = 0
        self.resumes = 0
        self._session_id: str | None = None
        self._resume_url: str | None = None
        self._seq: int | None = None  # the last sequence number received
        self._handled: int | None = None  # the last one handed to on_dispatch successfully
        self._gateway_url: str | None = None
        self._healthy = False  # the current connection reached READY or RESUMED
        self._queue: asyncio.Queue[tuple[str, int, str, msgspec.Raw]] = asyncio.Queue()
        self._save_wanted = asyncio.Event()
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def lease_key(self) -> str:
        return f"discord-gateway.{self.key}"

    @property
    def session_key(self) -> str:
        return f"discord.session.{self.key}"

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def status(self) -> dict[str, Any]:
        return {
            "connected": self.connected,
            "identifies": self.identifies,
            "resumes": self.resumes,
            **({"error": self.fatal} if self.fatal else {}),
        }

    # --- the lease ----------------------------------------------------------------------------

    async def _run(self) -> None:
        while not self._stop.is_set() and self.fatal is None:
            try:
                lease = await self.leases.acquire(self.lease_key)
            except Exception as exc:
                log.warning("discord %s: cannot take the gateway lease: %s", self.account, exc)
                lease = None
            if lease is None:  # another replica holds this bot's gateway
                await wait_for_stop(self._stop, self.lease_seconds / 3)
                continue
            log.info("discord %s: connecting (this replica holds the bot's gateway lease)", self.account)
            try:
                await self._while_held(lease)
            except Exception as exc:  # NATS trouble, say: start over
                log.warning(
                    "discord %s: gateway stopped (%s: %s); restarting", self.account, type(exc).__name__, exc
                )
                await wait_for_stop(self._stop, 1.0)
            finally:
                self.connected = False
                with contextlib.suppress(Exception):
                    await asyncio.shield(lease.release())

    async def _while_held(self, lease: Lease) -> None:
        tasks = [
            asyncio.create_task(self._connect_forever()),
            asyncio.create_task(self._work()),
            asyncio.create_task(self._save_forever()),
        ]
        try:
            while True:
                done, _ = await asyncio.wait(
                    tasks, timeout=self.lease_seconds / 3, return_when=asyncio.FIRST_COMPLETED
                )
                if done:
                    for task in done:
                        task.result()  # re-raise what ended it
                    return
                try:
                    await lease.renew()
                except LeaseLost:
                    log.warning("discord %s: lost the gateway lease; another replica connects", self.account)
                    return
                except Exception as exc:  # a slow round trip: still ours until it expires
                    log.warning("discord %s: lease renewal failed: %s", self.account, exc)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            # what was received and not yet handled is replayed to whoever resumes next
            self._drain_queue()
            if not lease.lost:  # never over what a successor holding the lease saved
                with contextlib.suppress(Exception):
                    await asyncio.shield(self._save())

    # --- the connection -----------------------------------------------------------------------

    async def _connect_forever(self) -> None:
        await self._load()
        delay = BACKOFF_FIRST
        resume = self._session_id is not None
        while not self._stop.is_set():
            self._healthy = False
            wait = 0.0
            try:
                await self._connection(resume=resume and self._session_id is not None)
                resume, why = True, "the gateway closed the connection"
            except _Again as again:
                resume, why, wait = again.resume, str(again), again.wait
            except _Fatal as exc:
                self.fatal = str(exc)
                log.error("discord %s: %s; this account stays off", self.account, exc)
                return
            except RestError as exc:
                if exc.status == 401:
                    self.fatal = "the bot token was refused (HTTP 401 on /gateway/bot)"
                    log.error("discord %s: %s; this account stays off", self.account, self.fatal)
                    return
                why = str(exc)
            except (
                OSError,
                InvalidHandshake,
                InvalidURI,
                TimeoutError,
                ConnectionClosed,
                NetworkError,
            ) as exc:
                why = f"{type(exc).__name__}: {exc}"
            finally:
                self.connected = False
            if not resume:
                self._session_id = self._resume_url = None
                self._seq = None
            if self._healthy:  # it was up: come back at once, and back off anew from the start
                delay, pause = BACKOFF_FIRST, wait
            else:
                pause = max(wait, delay)
                delay = min(delay * 2, BACKOFF_MAX)
            log.info(
                "discord %s: %s; %s in %.1fs",
                self.account,
                why,
                "resuming" if resume and self._session_id else "identifying anew",
                pause,
            )
            await wait_for_stop(self._stop, pause)

    async def _connection(self, *, resume: bool) -> None:
        if resume and self._resume_url:
            base = self._resume_url
        else:
            if self._gateway_url is None:
                self._gateway_url = await self.rest.gateway_url()
            base = self._gateway_url
        url = f"{base.rstrip('/')}/?v=10&encoding=json"
        async with connect(
            url,
            open_timeout=HELLO_TIMEOUT,
            max_size=MAX_FRAME_BYTES,
            ping_interval=None,  # Discord's own heartbeats keep it alive
            proxy=None,
            compression=None,
            logger=_ws_log,
        ) as ws:
            try:
                await self._session(ws, resume=resume)
            finally:
                if ws.close_code is None:
                    with contextlib.suppress(Exception):
                        await ws.close(LEAVE_CODE, "reconnecting")

    async def _session(self, ws: ClientConnection, *, resume: bool) -> None:
        first = _frame.decode(await asyncio.wait_for(ws.recv(decode=False), HELLO_TIMEOUT))
        if first.op != Op.HELLO:
            raise _Again(f"expected HELLO, got op {first.op}", resume=resume)
        interval = _hello.decode(first.d).heartbeat_interval / 1000.0
        acked = asyncio.Event()
        acked.set()
        beat_now = asyncio.Event()

        async def beat() -> None:
            # the first beat after a random part of the interval, so reconnecting bots spread out
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(beat_now.wait(), interval * random.random())
            while True:
                if not acked.is_set():  # no ACK since the last beat: a zombie connection
                    log.info("discord %s: no heartbeat ACK; reconnecting", self.account)
                    await ws.close(LEAVE_CODE, "zombie connection")
                    return
                acked.clear()
                beat_now.clear()
                await ws.send(msgspec.json.encode({"op": Op.HEARTBEAT, "d": self._seq}).decode())
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(beat_now.wait(), interval)

        if resume and self._session_id is not None:
            self.resumes += 1
            hello: dict[str, Any] = {
                "op": Op.RESUME,
                "d": {"token": self._token, "session_id": self._session_id, "seq": self._seq},
            }
        else:
            self.identifies += 1
            hello = {
                "op": Op.IDENTIFY,
                "d": {"token": self._token, "intents": self.intents, "properties": PROPERTIES},
            }
        await ws.send(msgspec.json.encode(hello).decode())
        beater = asyncio.create_task(beat())
        try:
            async for raw in ws:
                try:
                    frame = _frame.decode(raw)
                except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                    log.warning("discord %s: a malformed gateway frame ignored: %s", self.account, exc)
                    continue
                await self._frame(frame, acked, beat_now)
        except ConnectionClosed:
            pass  # the close code below says what to do
        finally:
            beater.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await beater
        code = ws.close_code
        if code in CLOSE_FATAL:
            raise _Fatal(f"the gateway closed with {code}: {CLOSE_FATAL[code]}")
        if code in CLOSE_NEW_SESSION:
            raise _Again(f"the gateway closed with {code} (session ended)", resume=False)
        raise _Again(f"the gateway closed the connection ({code})", resume=True)

    async def _frame(self, frame: _Frame, acked: asyncio.Event, beat_now: asyncio.Event) -> None:
        op = frame.op
        if op == Op.DISPATCH:
            if frame.s is not None:
                self._seq = frame.s
            if frame.t == "READY":
                ready = _ready.decode(frame.d)
                self._session_id = ready.session_id
                self._resume_url = ready.resume_gateway_url
                self._handled = frame.s
                self._healthy = self.connected = True
                await self.on_ready(ready.user)
                self._save_wanted.set()
            elif frame.t == "RESUMED":
                self._healthy = self.connected = True
                log.info("discord %s: session resumed", self.account)
            elif frame.t and frame.s is not None and self._session_id is not None:
                self._queue.put_nowait((self._session_id, frame.s, frame.t, frame.d))
        elif op == Op.HEARTBEAT_ACK:
            acked.set()
        elif op == Op.HEARTBEAT:  # the gateway asks for one now
            beat_now.set()
        elif op == Op.RECONNECT:
            raise _Again("the gateway asked to reconnect (op 7)", resume=True)
        elif op == Op.INVALID_SESSION:
            resumable = msgspec.json.decode(frame.d) is True
            # Discord asks for a wait of 1-5 s before identifying again
            raise _Again(
                f"invalid session (resumable: {resumable})",
                resume=resumable,
                wait=0.0 if resumable else random.uniform(1.0, 5.0),
            )

    # --- dispatches, in order -----------------------------------------------------------------

    async def _work(self) -> None:
        while True:
            session, seq, name, data = await self._queue.get()
            delay = BACKOFF_FIRST
            while True:
                try:
                    await self.on_dispatch(name, data)
                    break
                except Exception as exc:  # not stored: try again, keeping the order
                    log.warning(
                        "discord %s: %s #%d not handled (%s: %s); retrying in %.0fs",
                        self.account,
                        name,
                        seq,
                        type(exc).__name__,
                        exc,
                        delay,
                    )
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, BACKOFF_MAX)
            if session == self._session_id:
                self._handled = seq
                self._save_wanted.set()

    def _drain_queue(self) -> None:
        while not self._queue.empty():
            self._queue.get_nowait()
        # this replica resumes from what it handled too, should it take the lease again
        if self._handled is not None:
            self._seq = self._handled

    async def _save_forever(self) -> None:
        while True:
            await self._save_wanted.wait()
            self._save_wanted.clear()
            try:
                await self._save()
            except Exception as exc:  # a lagging save means a successor replays a little more
                log.warning("discord %s: could not save the gateway session: %s", self.account, exc)

    async def _save(self) -> None:
        if self._session_id is None or self._resume_url is None or self._handled is None:
            return
        saved = SavedSession(session_id=self._session_id, seq=self._handled, resume_url=self._resume_url)
        await self.sessions.put(self.session_key, msgspec.json.encode(saved))

    async def _load(self) -> None:
        """The session the last holder saved (this replica or another one): newer than what
        this replica remembers when another one held the lease since."""
        try:
            entry = await self.sessions.get(self.session_key)
        except KeyNotFoundError:
            return
        try:
            saved = _session.decode(entry.value or b"")
        except (msgspec.DecodeError, msgspec.ValidationError):
            return
        self._session_id, self._seq, self._resume_url = saved.session_id, saved.seq, saved.resume_url
        self._handled = saved.seq
