"""A fake Discord (REST API + Gateway) for offline tests (channel-protocols.md §3, §6).

    async with FakeDiscord() as discord:                   # 127.0.0.1, two free ports
        bot = discord.add_bot("bot-token", user_id="900", username="clawbot")
        ...  # point `channels.discord.apiBaseUrl` at discord.api_base
        await discord.wait_ready(bot)
        discord.direct_message(bot, user="42", content="hi")
        sent = await discord.wait_sent(bot, lambda m: m.channel_id == discord.dm_channel("42"))

REST as Discord answers it, under `/api/v10`: `Authorization: Bot <token>` (else 401
`{"message": "401: Unauthorized", "code": 0}`); `GET /gateway/bot` (the local `ws://` URL),
`GET /users/@me`, `GET /channels/{id}` (404 code 10003 `Unknown Channel`),
`POST /users/@me/channels` (a user's DM channel, the same every time),
`POST /channels/{id}/messages` (empty content: 400 50006; over 2000 characters: 400 50035
`Invalid Form Body`; unknown channel: 404 10003; a `message_reference` kept), which also
dispatches the bot's own MESSAGE_CREATE as Discord does; `PATCH /channels/{id}/messages/{id}`
(200 with the edited message object and MESSAGE_UPDATE dispatched; a deleted or unknown message:
404 10008 `Unknown Message`; another author's: 403 50005; empty or over 2000 characters: 400),
each edit recorded in `Bot.edits` and applied to the `Posted` message; every answer carries the
`X-RateLimit-*` headers; scripted failures (`fail_next`, per method: a 429 with `retry_after`
in the body, `Retry-After`, `X-RateLimit-Remaining: 0`, `-Reset-After`, `-Scope`, or any
status). `delete` removes a message as a user deleting it would.

Attachments as Discord serves them: `attachment(...)` makes one (its object as MESSAGE_CREATE
carries it: id, filename, size, a signed CDN `url` and `proxy_url`, `content_type` only when
given; a voice message's `duration_secs` and `waveform`), `message(..., attachments=[...])`
sends it, `voice_message(...)` sends one as the client does (flags 8192, no text). The CDN
routes (`/cdn/attachments/{channel}/{id}/{name}`, the `url`; `/media/attachments/…`, the
`proxy_url`) answer 200 with the bytes and the attachment's type, 404 ("This content is no
longer available.") for an unknown attachment or a URL whose signature (`ex`, `is`, `hm`) is
not the one issued; `fail_download` makes one answer 403 or 500 instead, `chunked` serves it
without a Content-Length. Every CDN request is recorded (`cdn_requests`: path, query,
headers), whatever the answer.

Interactions as Discord sends them (§3.6): `application(bot)` gives the bot an app with an
Ed25519 key pair made in the test (`App.public_key` is what `publicKey` is set to);
`slash_command(...)` / `ping(...)` build an interaction (a guild member's with roles, a DM user's,
a thread with its parent; a fresh id and webhook token), `interact(...)` POSTs it to the
gateway's Interactions Endpoint URL signed as Discord signs (`X-Signature-Ed25519` over
`X-Signature-Timestamp` + the body; or a wrong signature, a stale or garbled timestamp, a
missing header) and records the answer (type 5: a deferred original, ephemeral with flags 64;
type 4: the original message). The webhook endpoints answer as Discord does:
`PATCH /webhooks/{app}/{token}/messages/@original` and `POST /webhooks/{app}/{token}` (a
follow-up) with a 200 message object, `Interaction.original` / `.followups` recorded; an
unknown or expired token (`expire`) is 404 `{"code": 10015, "message": "Unknown Webhook"}`; the
2000-character limit and empty content as for messages. `PUT /applications/{id}/commands`
(the bot's own application, else 403 50001) records `App.commands`; `GET
/oauth2/applications/@me` is the bot's application.

Gateway as Discord runs it: HELLO (op 10) on connect; heartbeats (op 1) answered with op 11;
IDENTIFY (op 2) checked (an unknown token closes 4004, intents without MESSAGE_CONTENT 4014)
and answered with READY (the bot user, a session id, `resume_gateway_url` on its own path)
then one GUILD_CREATE per guild (its channels and threads); RESUME (op 6) replays every
dispatch after the given `seq` and then RESUMED, or op 9 `d: false` for an unknown session.
Dispatches of a session whose connection is gone are kept and replayed on RESUME. Tests
drive it: `reconnect` (op 7), `drop` (the socket closed without a close frame's code),
`invalidate` (op 9), `request_heartbeat` (op 1 from the server), `Bot.ack_heartbeats = False`
(a zombie connection: heartbeats unanswered).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import itertools
import json
import math
import secrets
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self
from urllib.parse import quote

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from clawmesh.httpserver import EmbeddedHTTPServer

__all__ = ["App", "Bot", "CdnRequest", "Edited", "FakeAttachment", "FakeDiscord", "FakeInteraction", "Posted"]

MAX_CONTENT = 2000
MESSAGE_CONTENT = 1 << 15
GUILD_TEXT, DM, PUBLIC_THREAD = 0, 1, 11
SUPPRESS_EMBEDS, EPHEMERAL = 1 << 2, 1 << 6
IS_VOICE_MESSAGE = 1 << 13


@dataclass
class Posted:
    channel_id: str
    id: str
    content: str  # as it is now (edits applied)
    reply_to: str | None  # message_reference.message_id
    allowed_mentions: Any = None
    flags: int = 0
    deleted: bool = False


@dataclass
class FakeAttachment:
    """A file the CDN serves: `fail` (a status) answers instead of the bytes."""

    id: str
    channel_id: str
    filename: str
    data: bytes
    served_type: str  # the CDN's Content-Type
    signature: str  # the `hm` of its signed URLs
    fail: int | None = None
    chunked: bool = False  # served without a Content-Length


@dataclass(frozen=True)
class CdnRequest:
    """One request the CDN got (answered or not)."""

    path: str
    query: str
    headers: dict[str, str]

    @property
    def attachment_id(self) -> str:
        parts = self.path.split("/")  # /cdn/attachments/{channel}/{id}/{name}
        return parts[4] if len(parts) > 4 else ""


@dataclass
class Edited:
    """One `PATCH …/messages/{id}` Discord applied."""

    channel_id: str
    message_id: str
    content: str
    allowed_mentions: Any = None


@dataclass
class FakeInteraction:
    """One interaction sent to the gateway, and what became of it."""

    id: str
    token: str
    payload: dict[str, Any]
    answers: list[dict[str, Any]] = field(default_factory=list)  # the endpoint's 200 bodies
    original: Posted | None = None  # the answer: deferred ("thinking…", content "") or a message
    original_edits: list[str] = field(default_factory=list)  # the content of each @original edit
    followups: list[Posted] = field(default_factory=list)
    webhook_auth: list[str] = field(default_factory=list)  # Authorization headers webhook calls sent
    expired: bool = False

    @property
    def answer(self) -> dict[str, Any] | None:
        return self.answers[0] if self.answers else None

    @property
    def deferred(self) -> bool:
        return bool(self.answers) and self.answers[0].get("type") == 5


@dataclass
class App:
    """A bot's application: its Ed25519 key pair (made here) and what was registered."""

    id: str
    private_key: Ed25519PrivateKey
    commands: list[dict[str, Any]] = field(default_factory=list)
    command_puts: int = 0
    interactions: dict[str, FakeInteraction] = field(default_factory=dict)  # by token

    @property
    def public_key(self) -> str:
        """The Developer Portal's hex public key."""
        return self.private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex()

    def sign(self, timestamp: str, body: bytes) -> str:
        return self.private_key.sign(timestamp.encode() + body).hex()


@dataclass
class _Channel:
    id: str
    type: int
    guild_id: str | None = None
    parent_id: str | None = None
    recipient: str | None = None


@dataclass
class _Session:
    id: str
    bot: Bot
    events: list[tuple[int, str, Any]] = field(default_factory=list)
    conn: ServerConnection | None = None


@dataclass
class Bot:
    token: str
    user_id: str
    username: str
    sent: list[Posted] = field(default_factory=list)
    edits: list[Edited] = field(default_factory=list)  # the edits applied, in order
    calls: list[str] = field(default_factory=list)  # "METHOD path" of each REST call
    failures: list[tuple[int, dict[str, Any], dict[str, str]]] = field(default_factory=list)
    edit_failures: list[tuple[int, dict[str, Any], dict[str, str]]] = field(default_factory=list)
    identifies: list[dict[str, Any]] = field(default_factory=list)
    resumes: list[dict[str, Any]] = field(default_factory=list)
    heartbeats: list[Any] = field(default_factory=list)  # the `d` of each heartbeat
    paths: list[str] = field(default_factory=list)  # the request path of each gateway connection
    ack_heartbeats: bool = True  # False: a zombie connection (heartbeats go unanswered)
    session: _Session | None = None
    app: App | None = None


class FakeDiscord:
    def __init__(self, *, heartbeat_interval_ms: int = 41250, host: str = "127.0.0.1") -> None:
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.bots: dict[str, Bot] = {}
        self.channels: dict[str, _Channel] = {}
        self.guilds: dict[str, list[str]] = {}  # guild id -> its channel ids
        self.attachments: dict[str, FakeAttachment] = {}  # by id
        self.cdn_requests: list[CdnRequest] = []
        self._ids = itertools.count(1_100_000_000_000_000_000)
        self._sessions: dict[str, _Session] = {}
        self._changed = asyncio.Condition()
        self._host = host
        prefix = "/api/v10"
        self._http = EmbeddedHTTPServer(
            Starlette(
                routes=[
                    Route(prefix + "/gateway/bot", self._gateway_bot),
                    Route(prefix + "/users/@me", self._me),
                    Route(prefix + "/users/@me/channels", self._open_dm, methods=["POST"]),
                    Route(prefix + "/channels/{cid}", self._channel),
                    Route(prefix + "/channels/{cid}/messages", self._create_message, methods=["POST"]),
                    Route(
                        prefix + "/channels/{cid}/messages/{mid}",
                        self._edit_message,
                        methods=["PATCH"],
                    ),
                    Route(prefix + "/channels/{cid}/typing", self._typing, methods=["POST"]),
                    Route("/{host:str}/attachments/{cid}/{aid}/{name}", self._cdn),
                    Route(prefix + "/oauth2/applications/@me", self._application_me),
                    Route(prefix + "/applications/{app}/commands", self._put_commands, methods=["PUT"]),
                    Route(prefix + "/webhooks/{app}/{token}", self._follow_up, methods=["POST"]),
                    Route(
                        prefix + "/webhooks/{app}/{token}/messages/@original",
                        self._edit_original,
                        methods=["PATCH"],
                    ),
                ]
            ),
            host,
            0,
        )
        self._ws: Server | None = None

    def next_id(self) -> str:
        return str(next(self._ids))

    @property
    def api_base(self) -> str:
        return f"http://127.0.0.1:{self._http.port}/api/v10"

    @property
    def origin(self) -> str:
        """Where the REST API and the CDN both are (the CDN's paths as Discord's)."""
        return f"http://127.0.0.1:{self._http.port}"

    @property
    def gateway_url(self) -> str:
        assert self._ws is not None
        return f"ws://127.0.0.1:{self._ws.sockets[0].getsockname()[1]}"

    async def __aenter__(self) -> Self:
        await self._http.start()
        self._ws = await serve(self._connection, self._host, 0, ping_interval=None, compression=None)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._ws is not None
        self._ws.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._ws.wait_closed(), 5)
        await self._http.stop()

    # --- setup --------------------------------------------------------------------------------

    def add_bot(self, token: str, *, user_id: str = "900", username: str = "clawbot") -> Bot:
        bot = Bot(token=token, user_id=user_id, username=username)
        self.bots[token] = bot
        return bot

    def add_channel(self, guild_id: str, channel_id: str, *, parent_id: str | None = None) -> str:
        """A guild text channel, or a public thread of `parent_id`."""
        kind = PUBLIC_THREAD if parent_id else GUILD_TEXT
        self.channels[channel_id] = _Channel(channel_id, kind, guild_id=guild_id, parent_id=parent_id)
        self.guilds.setdefault(guild_id, []).append(channel_id)
        return channel_id

    def dm_channel(self, user_id: str) -> str:
        for ch in self.channels.values():
            if ch.type == DM and ch.recipient == user_id:
                return ch.id
        cid = self.next_id()
        self.channels[cid] = _Channel(cid, DM, recipient=user_id)
        return cid

    def fail_next(
        self,
        bot: Bot,
        status: int,
        *,
        retry_after: float | None = None,
        code: int = 0,
        message: str = "",
        method: str = "POST",
    ) -> None:
        """The next `POST …/messages` (or, with `method="PATCH"`, the next edit) answers
        `status` (a 429: Discord's rate-limit answer)."""
        headers: dict[str, str] = {}
        body: dict[str, Any] = {"message": message or f"{status}: scripted", "code": code}
        if status == 429:
            wait = retry_after if retry_after is not None else 1.0
            body = {"message": "You are being rate limited.", "retry_after": wait, "global": False}
            headers = {
                "Retry-After": str(math.ceil(wait)),
                "X-RateLimit-Limit": "5",
                "X-RateLimit-Remaining": "0",
                "X-RateLimit-Reset": f"{time.time() + wait:.3f}",
                "X-RateLimit-Reset-After": f"{wait:.3f}",
                "X-RateLimit-Bucket": "fakebucket",
                "X-RateLimit-Scope": "user",
            }
        (bot.edit_failures if method == "PATCH" else bot.failures).append((status, body, headers))

    def delete(self, bot: Bot, message: Posted) -> None:
        """A message deleted (by a user or a moderator): editing it is 404 `Unknown Message`."""
        message.deleted = True

    # --- gateway ------------------------------------------------------------------------------

    async def _connection(self, conn: ServerConnection) -> None:
        bot: Bot | None = None
        path = conn.request.path if conn.request is not None else ""
        try:
            await conn.send(json.dumps({"op": 10, "d": {"heartbeat_interval": self.heartbeat_interval_ms}}))
            async for raw in conn:
                frame = json.loads(raw)
                op, d = frame.get("op"), frame.get("d")
                if op == 1:
                    if bot is not None:
                        bot.heartbeats.append(d)
                    if bot is None or bot.ack_heartbeats:
                        await conn.send(json.dumps({"op": 11}))
                elif op == 2:
                    bot = self.bots.get(str(d.get("token")))
                    if bot is None:
                        await conn.close(4004, "Authentication failed.")
                        return
                    bot.paths.append(path)
                    bot.identifies.append(d)
                    if not int(d.get("intents", 0)) & MESSAGE_CONTENT:
                        await conn.close(4014, "Disallowed intent(s).")
                        return
                    await self._identify(bot, conn)
                elif op == 6:
                    bot = self.bots.get(str(d.get("token")))
                    if bot is None:
                        await conn.close(4004, "Authentication failed.")
                        return
                    bot.paths.append(path)
                    bot.resumes.append(d)
                    await self._resume(bot, conn, str(d.get("session_id")), int(d.get("seq") or 0))
        except ConnectionClosed:
            pass
        finally:
            if bot is not None and bot.session is not None and bot.session.conn is conn:
                bot.session.conn = None
            async with self._changed:
                self._changed.notify_all()

    async def _identify(self, bot: Bot, conn: ServerConnection) -> None:
        session = _Session(id=f"session-{self.next_id()}", bot=bot, conn=conn)
        self._sessions[session.id] = session
        if bot.session is not None and bot.session.conn is not None and bot.session.conn is not conn:
            await bot.session.conn.close(4009, "Session timed out.")
        bot.session = session
        ready = {
            "v": 10,
            "user": {"id": bot.user_id, "username": bot.username, "bot": True, "global_name": None},
            "guilds": [{"id": g, "unavailable": True} for g in self.guilds],
            "session_id": session.id,
            "resume_gateway_url": f"{self.gateway_url}/resume",
            "application": {"id": bot.user_id, "flags": 0},
        }
        await self._dispatch(session, "READY", ready)
        for guild_id, ids in self.guilds.items():
            chans = [self.channels[c] for c in ids]
            await self._dispatch(
                session,
                "GUILD_CREATE",
                {
                    "id": guild_id,
                    "channels": [{"id": c.id, "type": c.type} for c in chans if c.parent_id is None],
                    "threads": [
                        {"id": c.id, "type": c.type, "parent_id": c.parent_id} for c in chans if c.parent_id
                    ],
                },
            )

    async def _resume(self, bot: Bot, conn: ServerConnection, session_id: str, seq: int) -> None:
        session = self._sessions.get(session_id)
        if session is None or session.bot is not bot:
            await conn.send(json.dumps({"op": 9, "d": False}))
            return
        old = session.conn
        session.conn = conn
        bot.session = session
        if old is not None and old is not conn:
            with contextlib.suppress(Exception):
                await old.close(4000, "resumed elsewhere")
        for s, t, d in list(session.events):
            if s > seq:
                await conn.send(json.dumps({"op": 0, "s": s, "t": t, "d": d}))
        await self._dispatch(session, "RESUMED", None)

    async def _dispatch(self, session: _Session, name: str, data: Any) -> None:
        seq = len(session.events) + 1
        session.events.append((seq, name, data))
        if session.conn is not None:
            with contextlib.suppress(ConnectionClosed):
                await session.conn.send(json.dumps({"op": 0, "s": seq, "t": name, "d": data}))

    async def wait_ready(self, bot: Bot, *, timeout: float = 30.0) -> None:
        await self._wait(lambda: bot.session is not None and bot.session.conn is not None, timeout)

    async def _wait(self, condition: Callable[[], bool], timeout: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        async with self._changed:
            while not condition():
                left = deadline - loop.time()
                if left <= 0:
                    raise TimeoutError("condition not met in time")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), min(left, 0.5))

    async def wait_disconnected(self, bot: Bot, *, timeout: float = 30.0) -> None:
        await self._wait(lambda: bot.session is None or bot.session.conn is None, timeout)

    def _conn(self, bot: Bot) -> ServerConnection:
        assert bot.session is not None and bot.session.conn is not None, "the bot is not connected"
        return bot.session.conn

    async def reconnect(self, bot: Bot) -> None:
        """Op 7: the client should reconnect and resume."""
        await self._conn(bot).send(json.dumps({"op": 7, "d": None}))

    async def invalidate(self, bot: Bot, *, resumable: bool) -> None:
        """Op 9; a non-resumable one also forgets the session."""
        conn = self._conn(bot)
        if not resumable and bot.session is not None:
            self._sessions.pop(bot.session.id, None)
        await conn.send(json.dumps({"op": 9, "d": resumable}))

    async def request_heartbeat(self, bot: Bot) -> None:
        await self._conn(bot).send(json.dumps({"op": 1, "d": None}))

    async def drop(self, bot: Bot) -> None:
        """The connection lost without a close code (a network failure)."""
        conn = self._conn(bot)
        assert bot.session is not None
        bot.session.conn = None
        conn.transport.abort()

    # --- messages in --------------------------------------------------------------------------

    async def message(
        self,
        bot: Bot,
        *,
        channel_id: str,
        author: str,
        content: str,
        mentions: tuple[str, ...] = (),
        roles: tuple[str, ...] = (),
        mention_everyone: bool = False,
        reply_to: Posted | None = None,
        author_is_bot: bool = False,
        include_channel_type: bool = True,
        attachments: Sequence[dict[str, Any]] = (),
        flags: int = 0,
    ) -> dict[str, Any]:
        """A MESSAGE_CREATE dispatched to the bot's session (kept for a RESUME while it is
        disconnected), with `attachments` (made by `attachment`). Returns the message."""
        channel = self.channels[channel_id]
        msg: dict[str, Any] = {
            "id": self.next_id(),
            "channel_id": channel_id,
            "author": {
                "id": author,
                "username": f"user{author}",
                "global_name": f"User {author}",
                "bot": author_is_bot,
                "discriminator": "0",
            },
            "content": content,
            "timestamp": "2026-12-04T09:00:00.000000+00:00",
            "edited_timestamp": None,
            "tts": False,
            "mention_everyone": mention_everyone,
            "mentions": [{"id": m, "username": f"user{m}"} for m in mentions],
            "mention_roles": [],
            "attachments": list(attachments),
            "embeds": [],
            "pinned": False,
            "type": 19 if reply_to else 0,
            "flags": flags,
        }
        if include_channel_type:
            msg["channel_type"] = channel.type
        if channel.guild_id is not None:
            msg["guild_id"] = channel.guild_id
            msg["member"] = {"roles": list(roles), "joined_at": "2026-01-01T00:00:00+00:00", "nick": None}
        if reply_to is not None:
            msg["message_reference"] = {"type": 0, "message_id": reply_to.id, "channel_id": channel_id}
            msg["referenced_message"] = {
                "id": reply_to.id,
                "author": {"id": bot.user_id, "username": bot.username, "bot": True},
                "content": reply_to.content,
            }
        assert bot.session is not None, "the bot never identified"
        await self._dispatch(bot.session, "MESSAGE_CREATE", msg)
        return msg

    async def direct_message(
        self, bot: Bot, *, user: str, content: str, attachments: Sequence[dict[str, Any]] = ()
    ) -> dict[str, Any]:
        return await self.message(
            bot, channel_id=self.dm_channel(user), author=user, content=content, attachments=attachments
        )

    # --- attachments (the CDN) ----------------------------------------------------------------

    def attachment(
        self,
        channel_id: str,
        filename: str,
        data: bytes,
        *,
        content_type: str | None = None,
        served_type: str | None = None,
        size: int | None = None,
        extra: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """An attachment object as MESSAGE_CREATE carries it, its bytes served by the CDN:
        `content_type` only when given (Discord omits what it cannot tell), `size` the real one
        unless given, URLs signed as Discord signs them."""
        aid = self.next_id()
        expires = f"{int(time.time()) + 86_400:x}"
        issued = f"{int(time.time()):x}"
        signature = hashlib.sha256(f"{aid}:{expires}:{issued}".encode()).hexdigest()
        self.attachments[aid] = FakeAttachment(
            id=aid,
            channel_id=channel_id,
            filename=filename,
            data=data,
            served_type=served_type or content_type or "application/octet-stream",
            signature=signature,
        )
        query = f"?ex={expires}&is={issued}&hm={signature}&"
        path = f"attachments/{channel_id}/{aid}/{quote(filename)}"
        att: dict[str, Any] = {
            "id": aid,
            "filename": filename,
            "size": len(data) if size is None else size,
            "url": f"{self.origin}/cdn/{path}{query}",
            "proxy_url": f"{self.origin}/media/{path}{query}",
        }
        if content_type is not None:
            att["content_type"] = content_type
        att.update(extra or {})
        return att

    def fail_download(self, attachment: dict[str, Any], status: int) -> None:
        """The CDN answers `status` (403, 500, …) for this attachment from now on."""
        self.attachments[attachment["id"]].fail = status

    def chunked(self, attachment: dict[str, Any]) -> None:
        """The CDN streams this attachment without saying its length."""
        self.attachments[attachment["id"]].chunked = True

    async def voice_message(
        self, bot: Bot, *, channel_id: str, author: str, data: bytes, **fields: Any
    ) -> dict[str, Any]:
        """A voice message as the client sends one: no text, flags 8192, one `voice-message.ogg`
        with its duration and waveform."""
        att = self.attachment(
            channel_id,
            "voice-message.ogg",
            data,
            content_type="audio/ogg",
            extra={"duration_secs": 3.5, "waveform": base64.b64encode(bytes(range(0, 256, 4))).decode()},
        )
        return await self.message(
            bot,
            channel_id=channel_id,
            author=author,
            content="",
            attachments=[att],
            flags=IS_VOICE_MESSAGE,
            **fields,
        )

    def downloads(self, attachment: dict[str, Any]) -> list[CdnRequest]:
        """The CDN requests for this attachment."""
        return [r for r in self.cdn_requests if r.attachment_id == attachment["id"]]

    async def _cdn(self, request: Request) -> Response:
        p = request.path_params
        async with self._changed:
            self.cdn_requests.append(
                CdnRequest(path=request.url.path, query=request.url.query, headers=dict(request.headers))
            )
            self._changed.notify_all()
        found = self.attachments.get(p["aid"])
        gone = PlainTextResponse("This content is no longer available.", status_code=404)
        if (
            p["host"] not in ("cdn", "media")
            or found is None
            or found.channel_id != p["cid"]
            or found.filename != p["name"]
            or request.query_params.get("hm") != found.signature
        ):
            return gone
        if found.fail is not None:
            return PlainTextResponse(f"{found.fail}: scripted", status_code=found.fail)
        if found.chunked:
            data = found.data

            async def body() -> AsyncIterator[bytes]:
                for i in range(0, len(data), 65536):
                    yield data[i : i + 65536]

            return StreamingResponse(body(), media_type=found.served_type)
        return Response(found.data, media_type=found.served_type)

    # --- REST ---------------------------------------------------------------------------------

    def _auth(self, request: Request) -> Bot | None:
        header = request.headers.get("authorization", "")
        return self.bots.get(header.removeprefix("Bot ")) if header.startswith("Bot ") else None

    @staticmethod
    def _limits() -> dict[str, str]:
        return {
            "X-RateLimit-Limit": "5",
            "X-RateLimit-Remaining": "4",
            "X-RateLimit-Reset": f"{time.time() + 5:.3f}",
            "X-RateLimit-Reset-After": "5.000",
            "X-RateLimit-Bucket": "fakebucket",
        }

    def _answer(self, body: Any, status: int = 200) -> Response:
        return JSONResponse(body, status_code=status, headers=self._limits())

    @staticmethod
    def _unauthorized() -> Response:
        return JSONResponse({"message": "401: Unauthorized", "code": 0}, status_code=401)

    async def _gateway_bot(self, request: Request) -> Response:
        bot = self._auth(request)
        if bot is None:
            return self._unauthorized()
        bot.calls.append("GET /gateway/bot")
        return self._answer(
            {
                "url": self.gateway_url,
                "shards": 1,
                "session_start_limit": {
                    "total": 1000,
                    "remaining": 999,
                    "reset_after": 14_400_000,
                    "max_concurrency": 1,
                },
            }
        )

    async def _me(self, request: Request) -> Response:
        bot = self._auth(request)
        if bot is None:
            return self._unauthorized()
        return self._answer({"id": bot.user_id, "username": bot.username, "bot": True})

    async def _channel(self, request: Request) -> Response:
        bot = self._auth(request)
        if bot is None:
            return self._unauthorized()
        cid = request.path_params["cid"]
        bot.calls.append(f"GET /channels/{cid}")
        ch = self.channels.get(cid)
        if ch is None:
            return self._answer({"message": "Unknown Channel", "code": 10003}, 404)
        body: dict[str, Any] = {"id": ch.id, "type": ch.type}
        if ch.guild_id:
            body["guild_id"] = ch.guild_id
        if ch.parent_id:
            body["parent_id"] = ch.parent_id
        return self._answer(body)

    async def _open_dm(self, request: Request) -> Response:
        bot = self._auth(request)
        if bot is None:
            return self._unauthorized()
        bot.calls.append("POST /users/@me/channels")
        user = str((await request.json()).get("recipient_id") or "")
        if not user:
            return self._answer(
                {"message": "Invalid Form Body", "code": 50035, "errors": {"recipient_id": {}}}, 400
            )
        cid = self.dm_channel(user)
        return self._answer({"id": cid, "type": DM, "recipients": [{"id": user}]})

    async def _typing(self, request: Request) -> Response:
        if self._auth(request) is None:
            return self._unauthorized()
        return Response(status_code=204, headers=self._limits())

    async def _create_message(self, request: Request) -> Response:
        bot = self._auth(request)
        if bot is None:
            return self._unauthorized()
        cid = request.path_params["cid"]
        bot.calls.append(f"POST /channels/{cid}/messages")
        if bot.failures:
            status, body, headers = bot.failures.pop(0)
            return JSONResponse(body, status_code=status, headers=headers)
        try:
            params = await request.json()
        except ValueError:
            return self._answer({"message": "400: Bad Request", "code": 50109}, 400)
        if cid not in self.channels:
            return self._answer({"message": "Unknown Channel", "code": 10003}, 404)
        content = params.get("content") or ""
        if not content:
            return self._answer({"message": "Cannot send an empty message", "code": 50006}, 400)
        if len(content) > MAX_CONTENT:
            return self._answer(
                {
                    "message": "Invalid Form Body",
                    "code": 50035,
                    "errors": {
                        "content": {
                            "_errors": [
                                {
                                    "code": "BASE_TYPE_MAX_LENGTH",
                                    "message": "Must be 2000 or fewer in length.",
                                }
                            ]
                        }
                    },
                },
                400,
            )
        ref = params.get("message_reference") or {}
        posted = Posted(
            channel_id=cid,
            id=self.next_id(),
            content=content,
            reply_to=ref.get("message_id"),
            allowed_mentions=params.get("allowed_mentions"),
            flags=int(params.get("flags") or 0),
        )
        async with self._changed:
            bot.sent.append(posted)
            self._changed.notify_all()
        own = {
            "id": posted.id,
            "channel_id": cid,
            "author": {"id": bot.user_id, "username": bot.username, "bot": True},
            "content": content,
            "mentions": [],
            "mention_roles": [],
            "mention_everyone": False,
            "type": 19 if posted.reply_to else 0,
        }
        channel = self.channels[cid]
        if channel.guild_id:
            own["guild_id"] = channel.guild_id
        if bot.session is not None:  # Discord echoes the bot's own message on the gateway
            await self._dispatch(bot.session, "MESSAGE_CREATE", own)
        return self._answer(own)

    async def _edit_message(self, request: Request) -> Response:
        bot = self._auth(request)
        if bot is None:
            return self._unauthorized()
        cid, mid = request.path_params["cid"], request.path_params["mid"]
        bot.calls.append(f"PATCH /channels/{cid}/messages/{mid}")
        if bot.edit_failures:
            status, body, headers = bot.edit_failures.pop(0)
            return JSONResponse(body, status_code=status, headers=headers)
        try:
            params = await request.json()
        except ValueError:
            return self._answer({"message": "400: Bad Request", "code": 50109}, 400)
        if cid not in self.channels:
            return self._answer({"message": "Unknown Channel", "code": 10003}, 404)
        posted = next(
            (p for b in self.bots.values() for p in b.sent if p.id == mid and p.channel_id == cid), None
        )
        if posted is None or posted.deleted:
            return self._answer({"message": "Unknown Message", "code": 10008}, 404)
        if posted not in bot.sent:
            return self._answer(
                {"message": "Cannot edit a message authored by another user", "code": 50005}, 403
            )
        content = params.get("content")
        if content is not None:
            if not content:
                return self._answer({"message": "Cannot send an empty message", "code": 50006}, 400)
            if len(content) > MAX_CONTENT:
                return self._answer(
                    {
                        "message": "Invalid Form Body",
                        "code": 50035,
                        "errors": {
                            "content": {
                                "_errors": [
                                    {
                                        "code": "BASE_TYPE_MAX_LENGTH",
                                        "message": "Must be 2000 or fewer in length.",
                                    }
                                ]
                            }
                        },
                    },
                    400,
                )
        async with self._changed:
            if content is not None:
                posted.content = content
            bot.edits.append(
                Edited(
                    channel_id=cid,
                    message_id=mid,
                    content=posted.content,
                    allowed_mentions=params.get("allowed_mentions"),
                )
            )
            self._changed.notify_all()
        message = {
            "id": posted.id,
            "channel_id": cid,
            "author": {"id": bot.user_id, "username": bot.username, "bot": True},
            "content": posted.content,
            "edited_timestamp": "2026-12-04T09:00:01.000000+00:00",
            "mentions": [],
            "mention_roles": [],
            "mention_everyone": False,
            "flags": posted.flags,
            "type": 19 if posted.reply_to else 0,
        }
        channel = self.channels[cid]
        if channel.guild_id:
            message["guild_id"] = channel.guild_id
        if bot.session is not None:  # as Discord: the edit is dispatched on the gateway
            await self._dispatch(bot.session, "MESSAGE_UPDATE", message)
        return self._answer(message)

    async def wait_edited(
        self, bot: Bot, predicate: Callable[[Edited], bool], *, timeout: float = 30.0, count: int = 1
    ) -> list[Edited]:
        found: list[Edited] = []

        def enough() -> bool:
            found[:] = [e for e in bot.edits if predicate(e)]
            return len(found) >= count

        try:
            await self._wait(enough, timeout)
        except TimeoutError:
            raise TimeoutError(f"no {count} matching edits; edits: {bot.edits!r}") from None
        return found[:count]

    async def wait_sent(
        self, bot: Bot, predicate: Callable[[Posted], bool], *, timeout: float = 30.0, count: int = 1
    ) -> list[Posted]:
        found: list[Posted] = []

        def enough() -> bool:
            found[:] = [p for p in bot.sent if predicate(p)]
            return len(found) >= count

        try:
            await self._wait(enough, timeout)
        except TimeoutError:
            raise TimeoutError(f"no {count} matching messages; sent: {bot.sent!r}") from None
        return found[:count]

    # --- interactions ---------------------------------------------------------------------------

    def application(self, bot: Bot, *, application_id: str | None = None) -> App:
        """The bot's application with a fresh Ed25519 key pair (its id: the bot user's id, as
        for a bot made with its app)."""
        if bot.app is None:
            bot.app = App(id=application_id or bot.user_id, private_key=Ed25519PrivateKey.generate())
        return bot.app

    def _new_interaction(self, app: App, payload: dict[str, Any]) -> dict[str, Any]:
        iid = self.next_id()
        # Discord's tokens: base64 of "interaction:<id>:<random>", URL-safe, ~200 characters
        raw = f"interaction:{iid}:{secrets.token_hex(64)}".encode()
        token = base64.urlsafe_b64encode(raw).decode().rstrip("=")
        payload = {
            "id": iid,
            "application_id": app.id,
            "token": token,
            "version": 1,
            "app_permissions": "2248473465835073",
            "locale": "en-US",
            "entitlements": [],
            **payload,
        }
        app.interactions[token] = FakeInteraction(id=iid, token=token, payload=payload)
        return payload

    def ping(self, bot: Bot) -> dict[str, Any]:
        assert bot.app is not None, "no application: call application(bot) first"
        return self._new_interaction(bot.app, {"type": 1})

    def slash_command(
        self,
        bot: Bot,
        name: str,
        options: dict[str, Any] | None = None,
        *,
        user: str = "42",
        channel_id: str | None = None,
        roles: tuple[str, ...] = (),
        command_type: int = 1,
    ) -> dict[str, Any]:
        """An APPLICATION_COMMAND of `user`: in the guild channel (or thread) `channel_id`, as a
        member with `roles`, else in their DM with the bot. `options`: string options by name."""
        app = bot.app
        assert app is not None, "no application: call application(bot) first"
        person = {"id": user, "username": f"user{user}", "global_name": f"User {user}", "discriminator": "0"}
        registered = next((c for c in app.commands if c.get("name") == name), None)
        data: dict[str, Any] = {
            "id": str(registered["id"]) if registered else self.next_id(),
            "name": name,
            "type": command_type,
        }
        if options:
            data["options"] = [{"name": k, "type": 3, "value": v} for k, v in options.items()]
        payload: dict[str, Any] = {"type": 2, "data": data}
        if channel_id is None:
            cid = self.dm_channel(user)
            payload.update(
                channel_id=cid,
                channel={"id": cid, "type": DM, "flags": 0, "recipients": [person]},
                user=person,
                context=1,
                authorizing_integration_owners={"0": user},
            )
        else:
            ch = self.channels[channel_id]
            channel: dict[str, Any] = {"id": ch.id, "type": ch.type, "guild_id": ch.guild_id, "flags": 0}
            if ch.parent_id:
                channel["parent_id"] = ch.parent_id
            payload.update(
                guild_id=ch.guild_id,
                guild={"id": ch.guild_id, "locale": "en-US", "features": []},
                guild_locale="en-US",
                channel_id=ch.id,
                channel=channel,
                member={
                    "user": person,
                    "roles": list(roles),
                    "nick": None,
                    "joined_at": "2026-01-01T00:00:00+00:00",
                    "permissions": "2248473465835073",
                },
                context=0,
                authorizing_integration_owners={"0": ch.guild_id},
            )
        return self._new_interaction(app, payload)

    def interaction(self, bot: Bot, payload: dict[str, Any]) -> FakeInteraction:
        assert bot.app is not None
        return bot.app.interactions[payload["token"]]

    def expire(self, bot: Bot, payload: dict[str, Any]) -> None:
        """The interaction's token expired (15 minutes): its webhook is 404 Unknown Webhook."""
        self.interaction(bot, payload).expired = True

    async def interact(
        self,
        bot: Bot,
        url: str,
        payload: dict[str, Any] | None,
        *,
        body: bytes | None = None,
        timestamp: str | None = None,
        signature: str | None = None,
        omit: tuple[str, ...] = (),
    ) -> httpx.Response:
        """POST an interaction to the gateway's endpoint `url`, signed as Discord signs (`body`:
        raw bytes instead of `payload` as JSON; `timestamp`, `signature`: sent instead of the
        right ones; `omit`: headers left out) and record the answer."""
        app = bot.app
        assert app is not None, "no application: call application(bot) first"
        raw = body if body is not None else json.dumps(payload, separators=(",", ":")).encode()
        ts = timestamp if timestamp is not None else str(int(time.time()))
        headers = {
            "content-type": "application/json",
            "user-agent": "Discord-Interactions/1.0 (+https://discord.com)",
            "x-signature-ed25519": signature if signature is not None else app.sign(ts, raw),
            "x-signature-timestamp": ts,
        }
        for name in omit:
            headers.pop(name, None)
        async with httpx.AsyncClient(timeout=30, trust_env=False) as client:
            resp = await client.post(url, content=raw, headers=headers)
        found = app.interactions.get(str((payload or {}).get("token")))
        if found is not None and resp.status_code == 200:
            answer = resp.json()
            async with self._changed:
                found.answers.append(answer)
                if found.original is None and answer.get("type") in (4, 5):
                    data = answer.get("data") or {}
                    found.original = Posted(
                        channel_id=str(found.payload.get("channel_id")),
                        id=self.next_id(),
                        content=str(data.get("content") or ""),
                        reply_to=None,
                        allowed_mentions=data.get("allowed_mentions"),
                        flags=int(data.get("flags") or 0),
                    )
                self._changed.notify_all()
        return resp

    async def wait_interaction(
        self,
        bot: Bot,
        payload: dict[str, Any],
        predicate: Callable[[FakeInteraction], bool],
        *,
        timeout: float = 30.0,
    ) -> FakeInteraction:
        found = self.interaction(bot, payload)
        try:
            await self._wait(lambda: predicate(found), timeout)
        except TimeoutError:
            raise TimeoutError(f"interaction not as expected: {found!r}") from None
        return found

    # --- interactions: REST -------------------------------------------------------------------

    def _webhook(self, request: Request) -> tuple[App, FakeInteraction] | Response:
        app_id, token = request.path_params["app"], request.path_params["token"]
        app = next((b.app for b in self.bots.values() if b.app is not None and b.app.id == app_id), None)
        found = app.interactions.get(token) if app is not None else None
        if app is None or found is None or found.expired:
            return self._answer({"message": "Unknown Webhook", "code": 10015}, 404)
        found.webhook_auth.append(request.headers.get("authorization", ""))
        return app, found

    def _content_error(self, content: str) -> Response | None:
        if not content:
            return self._answer({"message": "Cannot send an empty message", "code": 50006}, 400)
        if len(content) > MAX_CONTENT:
            return self._answer(
                {
                    "message": "Invalid Form Body",
                    "code": 50035,
                    "errors": {
                        "content": {
                            "_errors": [
                                {
                                    "code": "BASE_TYPE_MAX_LENGTH",
                                    "message": "Must be 2000 or fewer in length.",
                                }
                            ]
                        }
                    },
                },
                400,
            )
        return None

    def _webhook_message(self, app: App, found: FakeInteraction, posted: Posted, kind: int) -> dict[str, Any]:
        return {
            "id": posted.id,
            "channel_id": posted.channel_id,
            "author": {"id": app.id, "username": "clawbot", "bot": True},
            "content": posted.content,
            "flags": posted.flags,
            "type": kind,
            "webhook_id": app.id,
            "application_id": app.id,
            "mentions": [],
            "mention_roles": [],
            "mention_everyone": False,
            "interaction_metadata": {"id": found.id, "type": 2},
        }

    async def _edit_original(self, request: Request) -> Response:
        got = self._webhook(request)
        if isinstance(got, Response):
            return got
        app, found = got
        if found.original is None:  # never answered: there is no original to edit
            return self._answer({"message": "Unknown Message", "code": 10008}, 404)
        params = await request.json()
        content = params.get("content")
        if content is not None:
            error = self._content_error(content)
            if error is not None:
                return error
        async with self._changed:
            if content is not None:
                found.original.content = content
                found.original.allowed_mentions = params.get("allowed_mentions")
            # only SUPPRESS_EMBEDS can be set by an edit (an ephemeral answer stays ephemeral)
            flags = int(params.get("flags") or 0)
            found.original.flags = (found.original.flags & ~SUPPRESS_EMBEDS) | (flags & SUPPRESS_EMBEDS)
            found.original_edits.append(found.original.content)
            self._changed.notify_all()
        return self._answer(self._webhook_message(app, found, found.original, 20))

    async def _follow_up(self, request: Request) -> Response:
        got = self._webhook(request)
        if isinstance(got, Response):
            return got
        app, found = got
        params = await request.json()
        content = params.get("content") or ""
        error = self._content_error(content)
        if error is not None:
            return error
        posted = Posted(
            channel_id=str(found.payload.get("channel_id")),
            id=self.next_id(),
            content=content,
            reply_to=None,
            allowed_mentions=params.get("allowed_mentions"),
            flags=int(params.get("flags") or 0) & (SUPPRESS_EMBEDS | EPHEMERAL),
        )
        async with self._changed:
            found.followups.append(posted)
            self._changed.notify_all()
        return self._answer(self._webhook_message(app, found, posted, 0))

    async def _application_me(self, request: Request) -> Response:
        bot = self._auth(request)
        if bot is None:
            return self._unauthorized()
        bot.calls.append("GET /oauth2/applications/@me")
        app = self.application(bot)
        return self._answer(
            {"id": app.id, "name": bot.username, "bot_public": True, "verify_key": app.public_key}
        )

    async def _put_commands(self, request: Request) -> Response:
        bot = self._auth(request)
        if bot is None:
            return self._unauthorized()
        app_id = request.path_params["app"]
        bot.calls.append(f"PUT /applications/{app_id}/commands")
        if bot.app is None or bot.app.id != app_id:
            return self._answer({"message": "Missing Access", "code": 50001}, 403)
        params = await request.json()
        if not isinstance(params, list):
            return self._answer({"message": "Invalid Form Body", "code": 50035}, 400)
        kept = {c["name"]: c["id"] for c in bot.app.commands}
        commands = [
            {
                **c,
                "id": kept.get(c.get("name")) or self.next_id(),
                "application_id": app_id,
                "version": self.next_id(),
            }
            for c in params
        ]
        async with self._changed:
            bot.app.commands = commands
            bot.app.command_puts += 1
            self._changed.notify_all()
        return self._answer(commands)
