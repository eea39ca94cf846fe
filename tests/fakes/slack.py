"""A fake Slack (Web API, Events API sender, Socket Mode) for offline tests
(channel-protocols.md §2, §6).

    async with FakeSlack(signing_secret="s") as slack:     # 127.0.0.1, free ports
        app = slack.add_app("xoxb-1", team_id="T1", bot_user_id="UBOT", app_token="xapp-1")
        ...  # point `channels.slack.apiBaseUrl` at slack.api_base, the Request URL at the gateway
        resp = await slack.deliver(url, slack.message_event(app, channel="C1", user="U7", text="hi"))
        sent = await slack.wait_sent(app, lambda m: m.channel == "C1")
        # or over Socket Mode, once the gateway connected:
        await slack.wait_connected(app)
        pushed = await slack.push(app, slack.message_event(app, channel="C1", user="U7", text="hi"))
        await slack.wait_acked(pushed)

Web API as Slack answers it: `POST /api/<method>`, `Authorization: Bearer <token>`, JSON or form
parameters; logical errors are HTTP 200 `{"ok": false, "error": "<code>"}` (`not_authed`,
`invalid_auth`, `channel_not_found`, `no_text`, `msg_too_long` above 40,000 characters,
`message_not_found`); `auth.test`, `chat.postMessage` (a `ts` per message, `thread_ts` kept),
`chat.update` (`{"ok": true, "channel", "ts", "text", "message"}`, recorded in `App.updates`;
`message_not_found` for a message that is not there or was deleted, `cant_update_message` for
another app's, `msg_too_long` above 4000 bytes counted with `&`, `<`, `>` escaped, as Slack
counts an edit), `chat.delete` (`cant_delete_message` for another app's); `delete` removes a
message as a person or a moderator would; scripted failures (`fail_next`: a 429 with
`Retry-After` and `{"ok":false,"error":"ratelimited"}`, or any error code). Events: `deliver` signs an envelope
(v0 HMAC-SHA256 of `v0:<ts>:<raw body>`) and POSTs it as Slack does, optionally with a wrong
signature, a stale timestamp or `X-Slack-Retry-Num`/`X-Slack-Retry-Reason` of a retry.

Socket Mode as Slack runs it: `POST /api/apps.connections.open` with the app-level token in the
Authorization header (a bot token: `not_allowed_token_type`; an unknown one: HTTP 200
`{"ok":false,"error":"invalid_auth"}`; none, e.g. in the body: `not_authed`) answers a local
`ws://127.0.0.1:<port>/link/?ticket=…&app_id=…` URL whose ticket is single-use (a second
handshake with it is refused with HTTP 401). A connection gets `hello` (`num_connections`), then
the envelopes tests queue with `push` (`events_api` by default; spread round-robin over the
app's open connections, or to the one named; held until one is open when none is), and records
each `{"envelope_id": …}` ack (accepted on any of the app's connections). An envelope not acked
within `socket_ack_timeout` is delivered again, as a new envelope (its own `envelope_id`) with
`retry_attempt` + 1 and `retry_reason: "timeout"`, up to `socket_max_retries` times (None:
until acked). Tests drive it: `socket_disconnect` (a `disconnect` frame: `refresh_requested`
and `warning` leave the socket open for the client to close; `link_disabled` and
`too_many_websockets` are followed by Slack closing it), `socket_drop` (the socket lost without
a close frame), `socket_send_raw` (any text, e.g. not JSON), `lose_acks` (the next acks are lost,
as if they came too late). `App.socket_log` orders what happened on the sockets (`("hello", n)`,
`("closed", n)`) and `Socket.closed_by` says who closed one (`client`, `server`, `dropped`).

Files as Slack serves them: `add_file` keeps a file of an app's workspace and answers its file
object (`id`, `name`, `title`, `mimetype`, `filetype`, `size`, `mode`, `url_private`,
`url_private_download`, …) for `message_event(files=[…])` (subtype `file_share`); `mode`
`tombstone` or `hidden_by_limit` gives the object Slack sends for a deleted or hidden file (no
URLs). `GET /files-pri/<team>-<id>/[download/]<name>` with a bot token of the workspace's app in
`Authorization: Bearer` answers 200 with the bytes and the file's type; without one, a wrong one
or one without `files:read` (`add_app(files_read=False)`) 302 to the sign-in page
(`/?redir=…`, 200 `text/html`, counted in `sign_in_pages`), as Slack answers; an unknown file
404. Every request for a file's URL is recorded in `downloads`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qs, parse_qsl, quote, urlsplit

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request as WsRequest
from websockets.http11 import Response as WsResponse
from websockets.protocol import State

from clawmesh.channels.slack import sign
from clawmesh.httpserver import EmbeddedHTTPServer

__all__ = [
    "App",
    "Delivery",
    "Download",
    "FakeSlack",
    "Posted",
    "Pushed",
    "Socket",
    "StoredFile",
    "Updated",
]

MAX_TEXT = 40_000
MAX_EDIT_BYTES = 4000  # chat.update: UTF-8 bytes once `&`, `<`, `>` are escaped
SIGN_IN_PAGE = (
    b'<!DOCTYPE html>\n<html lang="en-US"><head><title>Sign in | Slack</title></head>'
    b'<body><form action="/signin">Sign in to your workspace</form></body></html>\n'
)


@dataclass
class StoredFile:
    id: str
    team_id: str
    name: str
    mimetype: str
    data: bytes


@dataclass
class Download:
    """One request for a file's URL."""

    file_id: str  # "" for a URL that names no file
    authorized: bool  # a bot token of the file's workspace came with it
    status: int


@dataclass
class Posted:
    channel: str
    ts: str
    text: str  # as it is now (updates applied)
    thread_ts: str | None
    edits: list[str] = field(default_factory=list)  # the texts it had before each update
    deleted: bool = False


@dataclass
class Updated:
    """One `chat.update` Slack applied."""

    channel: str
    ts: str
    text: str


@dataclass
class Delivery:
    """One envelope as sent on a socket (a redelivery is another one, with its own id)."""

    envelope_id: str
    type: str
    retry_attempt: int
    retry_reason: str
    connection: int  # the number of the socket it went out on
    acked: bool = False


@dataclass
class Pushed:
    """An envelope a test queued, and each delivery of it."""

    type: str
    payload: dict[str, Any]
    deliveries: list[Delivery] = field(default_factory=list)

    @property
    def acked(self) -> bool:
        return any(d.acked for d in self.deliveries)


@dataclass
class Socket:
    """One Socket Mode connection of an app, numbered from 1 in the order they were opened."""

    number: int
    ticket: str
    conn: ServerConnection
    closed: bool = False
    closed_by: str = ""  # client | server | dropped
    close_code: int | None = None

    @property
    def open(self) -> bool:
        return not self.closed and self.conn.state is State.OPEN


@dataclass
class App:
    token: str
    team_id: str
    bot_user_id: str
    bot_id: str
    name: str
    app_token: str | None = None
    app_id: str = "A111"
    files_read: bool = True  # the bot token has `files:read` (else its file URLs sign in)
    sent: list[Posted] = field(default_factory=list)
    updates: list[Updated] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)
    failures: dict[str, list[tuple[int, str, float | None]]] = field(default_factory=dict)
    # Socket Mode
    tickets: list[str] = field(default_factory=list)  # issued by apps.connections.open, in order
    sockets: list[Socket] = field(default_factory=list)
    socket_log: list[tuple[str, int]] = field(default_factory=list)
    pushed: list[Pushed] = field(default_factory=list)
    acks: list[str] = field(default_factory=list)  # envelope ids acked, in order
    frames: list[str] = field(default_factory=list)  # what clients sent that is not an ack
    lost_acks: int = 0
    waiting: list[tuple[Pushed, int, str]] = field(default_factory=list)  # no connection to send on

    def open_sockets(self) -> list[Socket]:
        return [s for s in self.sockets if s.open]


class FakeSlack:
    def __init__(
        self,
        *,
        signing_secret: str,
        host: str = "127.0.0.1",
        port: int = 0,
        socket_ack_timeout: float = 3.0,
        socket_max_retries: int | None = 3,
    ) -> None:
        self.signing_secret = signing_secret
        self.socket_ack_timeout = socket_ack_timeout
        self.socket_max_retries = socket_max_retries
        self.apps: dict[str, App] = {}
        self.channels: set[str] = set()
        self._ts = itertools.count(1)
        self._events = itertools.count(1)
        self._envelopes = itertools.count(1)
        self._round_robin = itertools.count()
        self._changed = asyncio.Condition()
        self._host = host
        self.files: dict[str, StoredFile] = {}
        self.downloads: list[Download] = []
        self.sign_in_pages = 0  # how often the sign-in page was served
        self._file_ids = itertools.count(1)
        routes = [
            Route("/api/{method}", self._handle, methods=["GET", "POST"]),
            Route("/files-pri/{key}/{rest:path}", self._file, methods=["GET"]),
            Route("/", self._sign_in, methods=["GET"]),
        ]
        self._http = EmbeddedHTTPServer(Starlette(routes=routes), host, port)
        self._ws: Server | None = None
        self._tickets: dict[str, tuple[App, bool]] = {}  # ticket -> app, used
        self._handshakes: dict[ServerConnection, tuple[App, str]] = {}
        self._timers: set[asyncio.Task[None]] = set()

    @property
    def api_base(self) -> str:
        return f"http://127.0.0.1:{self._http.port}/api"

    @property
    def socket_base(self) -> str:
        assert self._ws is not None
        return f"ws://127.0.0.1:{self._ws.sockets[0].getsockname()[1]}"

    async def __aenter__(self) -> Self:
        await self._http.start()
        self._ws = await serve(
            self._socket,
            self._host,
            0,
            process_request=self._handshake,
            ping_interval=None,
            compression=None,
        )
        self._client = httpx.AsyncClient(timeout=10, trust_env=False)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for timer in list(self._timers):
            timer.cancel()
        await asyncio.gather(*self._timers, return_exceptions=True)
        assert self._ws is not None
        self._ws.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._ws.wait_closed(), 5)
        await self._client.aclose()
        await self._http.stop()

    def add_app(
        self,
        token: str,
        *,
        team_id: str = "T111",
        bot_user_id: str = "UBOT",
        name: str = "clawbot",
        app_token: str | None = None,
        files_read: bool = True,
    ) -> App:
        app = App(
            token=token,
            team_id=team_id,
            bot_user_id=bot_user_id,
            bot_id="B" + bot_user_id[1:],
            name=name,
            app_token=app_token,
            files_read=files_read,
        )
        self.apps[token] = app
        return app

    def fail_next(
        self, app: App, method: str, status: int, error: str, retry_after: float | None = None
    ) -> None:
        app.failures.setdefault(method, []).append((status, error, retry_after))

    def delete(self, app: App, message: Posted) -> None:
        """A message deleted by a person or a moderator: updating it is `message_not_found`."""
        message.deleted = True

    # --- Web API ----------------------------------------------------------------------------

    async def _handle(self, request: Request) -> Response:
        method = request.path_params["method"]
        auth = request.headers.get("authorization", "")
        if method == "apps.connections.open":
            return self._connections_open(auth)
        raw = await request.body()
        params: dict[str, Any]
        if request.headers.get("content-type", "").startswith("application/json"):
            try:
                params = json.loads(raw or b"{}")
            except ValueError:
                return JSONResponse({"ok": False, "error": "invalid_json"})
        else:
            params = dict(parse_qsl(raw.decode()))
        token = (
            auth.removeprefix("Bearer ").strip() if auth.startswith("Bearer ") else params.get("token", "")
        )
        if not token:
            return JSONResponse({"ok": False, "error": "not_authed"})
        app = self.apps.get(token)
        if app is None:
            if any(a.app_token == token for a in self.apps.values()):
                return JSONResponse({"ok": False, "error": "not_allowed_token_type"})
            return JSONResponse({"ok": False, "error": "invalid_auth"})
        app.calls.append(method)
        scripted = app.failures.get(method)
        if scripted:
            status, error, retry_after = scripted.pop(0)
            headers = {"Retry-After": str(int(retry_after))} if retry_after is not None else {}
            return JSONResponse({"ok": False, "error": error}, status_code=status, headers=headers)
        if method == "auth.test":
            return JSONResponse(
                {
                    "ok": True,
                    "url": "https://fake.slack.com/",
                    "team": "Fake",
                    "user": app.name,
                    "team_id": app.team_id,
                    "user_id": app.bot_user_id,
                    "bot_id": app.bot_id,
                    "is_enterprise_install": False,
                }
            )
        if method == "chat.postMessage":
            return await self._post(app, params)
        if method == "chat.update":
            return await self._update(app, params)
        if method == "chat.delete":
            return await self._delete(app, params)
        return JSONResponse({"ok": False, "error": "unknown_method"}, status_code=404)

    async def _post(self, app: App, params: dict[str, Any]) -> Response:
        channel = str(params.get("channel") or "")
        text = params.get("text")
        if not channel or (channel not in self.channels and not channel.startswith("U")):
            return JSONResponse({"ok": False, "error": "channel_not_found"})
        if not text:
            return JSONResponse({"ok": False, "error": "no_text"})
        if len(text) > MAX_TEXT:
            return JSONResponse({"ok": False, "error": "msg_too_long"})
        ts = f"{int(time.time())}.{next(self._ts):06d}"
        thread = params.get("thread_ts")
        posted = Posted(channel=channel, ts=ts, text=text, thread_ts=str(thread) if thread else None)
        async with self._changed:
            app.sent.append(posted)
            self._changed.notify_all()
        return JSONResponse(
            {
                "ok": True,
                "channel": channel,
                "ts": ts,
                "message": {"text": text, "user": app.bot_user_id, "ts": ts},
            }
        )

    def _message(self, app: App, params: dict[str, Any], verb: str) -> Posted | Response:
        """The message `channel` + `ts` name, if it is there and the app's own."""
        channel, ts = params.get("channel"), params.get("ts")
        if not channel or (channel not in self.channels and not str(channel).startswith("U")):
            return JSONResponse({"ok": False, "error": "channel_not_found"})
        found = next(
            (p for a in self.apps.values() for p in a.sent if p.channel == channel and p.ts == ts), None
        )
        if found is None or found.deleted:
            return JSONResponse({"ok": False, "error": "message_not_found"})
        if found not in app.sent:
            return JSONResponse({"ok": False, "error": f"cant_{verb}_message"})
        return found

    async def _update(self, app: App, params: dict[str, Any]) -> Response:
        found = self._message(app, params, "update")
        if isinstance(found, Response):
            return found
        text = params.get("text")
        if not text:
            return JSONResponse({"ok": False, "error": "no_text"})
        text = str(text)
        escaped = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        if len(escaped.encode()) > MAX_EDIT_BYTES:
            return JSONResponse({"ok": False, "error": "msg_too_long"})
        async with self._changed:
            found.edits.append(found.text)
            found.text = text
            app.updates.append(Updated(channel=found.channel, ts=found.ts, text=text))
            self._changed.notify_all()
        return JSONResponse(
            {
                "ok": True,
                "channel": found.channel,
                "ts": found.ts,
                "text": text,
                "message": {"text": text, "user": app.bot_user_id, "ts": found.ts},
            }
        )

    async def _delete(self, app: App, params: dict[str, Any]) -> Response:
        found = self._message(app, params, "delete")
        if isinstance(found, Response):
            return found
        async with self._changed:
            found.deleted = True
            self._changed.notify_all()
        return JSONResponse({"ok": True, "channel": found.channel, "ts": found.ts})

    async def wait_sent(
        self, app: App, predicate: Callable[[Posted], bool], *, timeout: float = 30.0, count: int = 1
    ) -> list[Posted]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        async with self._changed:
            while True:
                found = [p for p in app.sent if predicate(p)]
                if len(found) >= count:
                    return found[:count]
                left = deadline - loop.time()
                if left <= 0:
                    raise TimeoutError(f"no {count} matching messages; sent: {app.sent!r}")
                try:
                    await asyncio.wait_for(self._changed.wait(), left)
                except TimeoutError:
                    pass

    # --- files -------------------------------------------------------------------------------

    def add_file(
        self,
        app: App,
        data: bytes,
        *,
        name: str,
        mimetype: str,
        title: str | None = None,
        filetype: str | None = None,
        size: int | None = None,
        mode: str = "hosted",
        **extra: Any,
    ) -> dict[str, Any]:
        """A file uploaded to the app's workspace: its file object as a message event carries
        it (`size`: what Slack says, the real size unless given). `mode` `tombstone` (deleted)
        or `hidden_by_limit`: the stripped object Slack sends for such a file, never served."""
        file_id = f"F{next(self._file_ids):08d}"
        if mode in ("tombstone", "hidden_by_limit"):
            return {"id": file_id, "mode": mode, **extra}
        self.files[file_id] = StoredFile(file_id, app.team_id, name, mimetype, data)
        base = f"http://127.0.0.1:{self._http.port}/files-pri/{app.team_id}-{file_id}"
        ext = filetype or (name.rsplit(".", 1)[1].lower() if "." in name else "binary")
        return {
            "id": file_id,
            "created": int(time.time()),
            "timestamp": int(time.time()),
            "name": name,
            "title": title if title is not None else name,
            "mimetype": mimetype,
            "filetype": ext,
            "pretty_type": ext.upper(),
            "user": "U0",
            "user_team": app.team_id,
            "editable": False,
            "size": len(data) if size is None else size,
            "mode": mode,
            "is_external": False,
            "external_type": "",
            "is_public": False,
            "public_url_shared": False,
            "display_as_bot": False,
            "username": "",
            "url_private": f"{base}/{quote(name)}",
            "url_private_download": f"{base}/download/{quote(name)}",
            "permalink": f"https://fake.slack.com/files/U0/{file_id}/{quote(name)}",
            "is_starred": False,
            "has_rich_preview": False,
            "file_access": "visible",
            **extra,
        }

    async def _file(self, request: Request) -> Response:
        """A file's private URL: the bytes for a bot token of its workspace, else the sign-in
        page (a redirect to it, as Slack answers)."""
        team, _, file_id = request.path_params["key"].partition("-")
        found = self.files.get(file_id)
        auth = request.headers.get("authorization", "")
        token = auth.removeprefix("Bearer ").strip() if auth.startswith("Bearer ") else ""
        app = self.apps.get(token)
        authorized = found is not None and app is not None and app.team_id == found.team_id and app.files_read
        if found is None or found.team_id != team:
            status, response = 404, Response(b"Not Found", status_code=404, media_type="text/plain")
        elif not authorized:
            where = f"/?redir={quote(request.url.path, safe='')}"
            status, response = 302, Response(status_code=302, headers={"location": where})
        else:
            status, response = 200, Response(found.data, media_type=found.mimetype)
        self.downloads.append(Download(file_id if found else "", authorized, status))
        await self._notify()
        return response

    async def _sign_in(self, request: Request) -> Response:
        self.sign_in_pages += 1
        return Response(SIGN_IN_PAGE, media_type="text/html; charset=utf-8")

    # --- Socket Mode --------------------------------------------------------------------------

    def _connections_open(self, auth: str) -> Response:
        """`apps.connections.open`: the app-level token in the header only, as Slack wants it."""
        token = auth.removeprefix("Bearer ").strip() if auth.startswith("Bearer ") else ""
        if not token:
            return JSONResponse({"ok": False, "error": "not_authed"})
        app = next((a for a in self.apps.values() if a.app_token and a.app_token == token), None)
        if app is None:
            error = "not_allowed_token_type" if token in self.apps else "invalid_auth"
            return JSONResponse({"ok": False, "error": error})
        app.calls.append("apps.connections.open")
        ticket = secrets.token_urlsafe(16)
        self._tickets[ticket] = (app, False)
        app.tickets.append(ticket)
        return JSONResponse(
            {"ok": True, "url": f"{self.socket_base}/link/?ticket={ticket}&app_id={app.app_id}"}
        )

    def _handshake(self, conn: ServerConnection, request: WsRequest) -> WsResponse | None:
        """Only an issued ticket, once."""
        parts = urlsplit(request.path)
        ticket = (parse_qs(parts.query).get("ticket") or [""])[0]
        found = self._tickets.get(ticket)
        if parts.path != "/link/" or found is None or found[1]:
            return conn.respond(HTTPStatus.UNAUTHORIZED, "invalid or used ticket\n")
        app = found[0]
        self._tickets[ticket] = (app, True)
        self._handshakes[conn] = (app, ticket)
        return None

    async def _socket(self, conn: ServerConnection) -> None:
        app, ticket = self._handshakes.pop(conn)
        sock = Socket(number=len(app.sockets) + 1, ticket=ticket, conn=conn)
        app.sockets.append(sock)
        try:
            await conn.send(
                json.dumps(
                    {
                        "type": "hello",
                        "num_connections": len(app.open_sockets()),
                        "debug_info": {
                            "host": f"fake-applink-{sock.number}",
                            "build_number": 1,
                            "approximate_connection_time": 18060,
                        },
                        "connection_info": {"app_id": app.app_id},
                    }
                )
            )
            app.socket_log.append(("hello", sock.number))
            await self._notify()
            waiting, app.waiting = app.waiting, []
            for item, attempt, reason in waiting:
                await self._deliver(app, item, attempt, reason)
            async for raw in conn:
                text = raw if isinstance(raw, str) else raw.decode(errors="replace")
                try:
                    frame = json.loads(text)
                except ValueError:
                    app.frames.append(text)
                    continue
                envelope_id = frame.get("envelope_id") if isinstance(frame, dict) else None
                if isinstance(envelope_id, str):
                    await self._acked(app, envelope_id)
                else:
                    app.frames.append(text)
        except ConnectionClosed:
            pass
        finally:
            sock.closed = True
            sock.close_code = conn.close_code
            sock.closed_by = sock.closed_by or "client"
            app.socket_log.append(("closed", sock.number))
            await self._notify()

    async def _acked(self, app: App, envelope_id: str) -> None:
        if app.lost_acks > 0:  # as if it came too late
            app.lost_acks -= 1
            return
        app.acks.append(envelope_id)
        for item in app.pushed:
            for d in item.deliveries:
                if d.envelope_id == envelope_id:
                    d.acked = True
        await self._notify()

    async def _deliver(
        self, app: App, item: Pushed, attempt: int, reason: str, connection: int | None = None
    ) -> None:
        targets = [s for s in app.open_sockets() if connection is None or s.number == connection]
        if not targets:
            app.waiting.append((item, attempt, reason))
            return
        sock = targets[next(self._round_robin) % len(targets)]
        delivery = Delivery(
            envelope_id=f"{next(self._envelopes):08d}-fake-{secrets.token_hex(4)}",
            type=item.type,
            retry_attempt=attempt,
            retry_reason=reason,
            connection=sock.number,
        )
        envelope = {
            "envelope_id": delivery.envelope_id,
            "type": item.type,
            "accepts_response_payload": item.type != "events_api",
            "retry_attempt": attempt,
            "retry_reason": reason,
            "payload": item.payload,
        }
        try:
            await sock.conn.send(json.dumps(envelope))
        except ConnectionClosed:  # it just went: on another one, or when one is open again
            await self._deliver(app, item, attempt, reason)
            return
        item.deliveries.append(delivery)
        await self._notify()
        timer = asyncio.create_task(self._expire(app, item, delivery))
        self._timers.add(timer)
        timer.add_done_callback(self._timers.discard)

    async def _expire(self, app: App, item: Pushed, delivery: Delivery) -> None:
        await asyncio.sleep(self.socket_ack_timeout)
        if item.acked:
            return
        if self.socket_max_retries is not None and delivery.retry_attempt >= self.socket_max_retries:
            return  # Slack gives up
        await self._deliver(app, item, delivery.retry_attempt + 1, "timeout")

    async def push(
        self,
        app: App,
        payload: dict[str, Any],
        *,
        type: str = "events_api",
        connection: int | None = None,
    ) -> Pushed:
        """Queue an envelope: sent at once on an open connection (`connection`: that one), else
        when one is open."""
        item = Pushed(type=type, payload=payload)
        app.pushed.append(item)
        await self._deliver(app, item, 0, "", connection)
        return item

    def _socket_of(self, app: App, connection: int | None) -> Socket:
        open_ = app.open_sockets()
        found = [s for s in open_ if s.number == connection] if connection is not None else open_[-1:]
        assert found, f"no open connection {connection or ''} of the app"
        return found[0]

    async def socket_disconnect(self, app: App, reason: str, *, connection: int | None = None) -> int:
        """A `disconnect` frame on the connection (the newest open one); Slack closes the socket
        itself after `link_disabled` and `too_many_websockets`. Returns the connection's number."""
        sock = self._socket_of(app, connection)
        await sock.conn.send(
            json.dumps(
                {
                    "type": "disconnect",
                    "reason": reason,
                    "debug_info": {"host": f"fake-applink-{sock.number}"},
                }
            )
        )
        if reason in ("link_disabled", "too_many_websockets"):
            sock.closed_by = "server"
            await sock.conn.close(1000, reason)
        return sock.number

    async def socket_drop(self, app: App, *, connection: int | None = None) -> int:
        """The connection lost without a close frame (a network failure)."""
        sock = self._socket_of(app, connection)
        sock.closed_by = "dropped"
        sock.conn.transport.abort()
        return sock.number

    async def socket_send_raw(self, app: App, text: str, *, connection: int | None = None) -> None:
        await self._socket_of(app, connection).conn.send(text)

    def lose_acks(self, app: App, count: int = 1) -> None:
        """The next `count` acks of the app are lost (its envelopes are delivered again)."""
        app.lost_acks += count

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def wait_for(
        self, condition: Callable[[], Any], *, timeout: float = 30.0, what: str = "condition"
    ) -> Any:
        """`condition()`'s value once truthy, re-checked whenever the fake's state changes."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        async with self._changed:
            while True:
                value = condition()
                if value:
                    return value
                left = deadline - loop.time()
                if left <= 0:
                    raise TimeoutError(f"timed out waiting for {what}")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), min(left, 0.5))

    async def wait_connected(self, app: App, *, count: int = 1, timeout: float = 30.0) -> Socket:
        """The app's `count`-th connection, once it got its hello and while it is open."""

        def ready() -> Socket | None:
            said = [n for kind, n in app.socket_log if kind == "hello"]
            if len(said) < count:
                return None
            sock = app.sockets[said[count - 1] - 1]
            return sock if sock.open else None

        found: Socket = await self.wait_for(ready, timeout=timeout, what=f"connection {count} of the app")
        return found

    async def wait_acked(self, item: Pushed, *, timeout: float = 30.0) -> Delivery:
        """The delivery of `item` that was acked."""
        found: Delivery = await self.wait_for(
            lambda: next((d for d in item.deliveries if d.acked), None), timeout=timeout, what="an ack"
        )
        return found

    async def wait_deliveries(self, item: Pushed, count: int, *, timeout: float = 30.0) -> list[Delivery]:
        await self.wait_for(
            lambda: len(item.deliveries) >= count, timeout=timeout, what=f"{count} deliveries"
        )
        return item.deliveries[:count]

    # --- Events API -------------------------------------------------------------------------

    def event(self, app: App, event: dict[str, Any]) -> dict[str, Any]:
        """An `event_callback` envelope around `event`."""
        return {
            "token": "legacy-verification-token",
            "team_id": app.team_id,
            "api_app_id": "A111",
            "event": event,
            "type": "event_callback",
            "event_id": f"Ev{next(self._events):08d}",
            "event_time": int(time.time()),
            "authorizations": [{"team_id": app.team_id, "user_id": app.bot_user_id, "is_bot": True}],
        }

    def message_event(
        self,
        app: App,
        *,
        channel: str,
        user: str,
        text: str,
        channel_type: str | None = None,
        thread_ts: str | None = None,
        kind: str = "message",
        ts: str | None = None,
        parent_user_id: str | None = None,
        files: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """A person's message; in a thread (`thread_ts`) Slack also names who started it
        (`parent_user_id`). With `files` (`add_file`'s objects) it is a `file_share` message, its
        text the caption (often empty)."""
        self.channels.add(channel)
        ev: dict[str, Any] = {
            "type": kind,
            "user": user,
            "text": text,
            "ts": ts or f"{int(time.time())}.{next(self._ts):06d}",
            "channel": channel,
            "team": app.team_id,
            "event_ts": ts or "0",
        }
        if kind == "message":
            ev["channel_type"] = channel_type or {"D": "im", "G": "group"}.get(channel[0], "channel")
        if thread_ts:
            ev["thread_ts"] = thread_ts
        if parent_user_id:
            ev["parent_user_id"] = parent_user_id
        if files:
            ev.update(subtype="file_share", files=files, upload=False, display_as_bot=False)
        return self.event(app, ev)

    async def deliver(
        self,
        url: str,
        envelope: dict[str, Any],
        *,
        retry: int = 0,
        secret: str | None = None,
        timestamp: int | None = None,
        signature: str | None = None,
    ) -> httpx.Response:
        """POST `envelope` as Slack does: signed with the signing secret (or `secret`), at
        `timestamp` (now), as retry number `retry` (0: the first attempt)."""
        body = json.dumps(envelope).encode()
        ts = str(timestamp if timestamp is not None else int(time.time()))
        headers = {
            "content-type": "application/json",
            "x-slack-request-timestamp": ts,
            "x-slack-signature": signature or sign(secret or self.signing_secret, ts, body),
        }
        if retry:
            headers["x-slack-retry-num"] = str(retry)
            headers["x-slack-retry-reason"] = "http_timeout"
        return await self._client.post(url, content=body, headers=headers)
