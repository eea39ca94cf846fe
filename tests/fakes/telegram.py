"""A fake Telegram Bot API server for offline tests and benchmarks (channel-protocols.md §6).

    async with FakeTelegram() as tg:                       # 127.0.0.1, a free port
        bot = tg.add_bot("123:abc", username="clawbot")     # the token clients must use
        tg.private_message(bot, user=42, text="hi")         # queued for getUpdates (or pushed)
        ...  # point `channels.telegram.apiRoot` at tg.api_root
        sent = await tg.wait_sent(bot, lambda m: m.chat_id == 42)

What it does as the official server does (`tdlib/telegram-bot-api`): `/bot<token>/<method>`
with case-insensitive method names and parameters as JSON, form or query; HTTP status = the
envelope's `error_code`; `{"ok":false,"error_code":…,"description":…,"parameters":…}`;
401 `Unauthorized` for an unknown token, 404 `Not Found: method not found`. `getUpdates`
confirms updates below `offset`, honours `limit` and long-polls up to `timeout` seconds; a second
poller aborts the first with 409 `Conflict: terminated by other getUpdates request…`, and polling
while a webhook is set is a 409 too. `setWebhook` pushes each update to the URL with
`X-Telegram-Bot-Api-Secret-Token`, retrying until a 2xx. `sendMessage` refuses empty text, text
over 4096 UTF-16 units (`message is too long`), unknown chats (`chat not found`) and
`message_thread_id` 1 (`message thread not found`); `editMessageText` refuses an unknown message
and identical text (`message is not modified…`); `getFile` and `/file/bot<token>/<path>` serve
the files of photo messages (`photo_message`). Tests can script failures (`fail_next`, e.g. a
429 with `parameters.retry_after` and a `Retry-After` header).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qsl

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from clawmesh.httpserver import EmbeddedHTTPServer

__all__ = ["Bot", "Failure", "FakeTelegram", "Sent"]

NOT_MODIFIED = (
    "Bad Request: message is not modified: specified new message content and reply markup are exactly "
    "the same as a current content and reply markup of the message"
)
LONG_POLL_MAX = 50
DOWNLOAD_LIMIT = 20 * 1024 * 1024  # getFile refuses larger files ("file is too big")


@dataclass(frozen=True)
class Failure:
    """A scripted answer: `status` with `description` (and `retry_after` for a 429)."""

    status: int
    description: str
    retry_after: int | None = None


@dataclass
class Sent:
    """A message the bot sent (and its edits), as the fake stored it."""

    chat_id: int
    message_id: int
    text: str
    thread_id: int | None
    reply_to: int | None
    at: float  # time.perf_counter() when it arrived
    edits: list[str] = field(default_factory=list)
    edited_at: float = 0.0


@dataclass
class Bot:
    token: str
    id: int
    username: str
    updates: list[dict[str, Any]] = field(default_factory=list)
    next_update: int = 1
    webhook_url: str = ""
    webhook_secret: str = ""
    poll_waiter: asyncio.Future[None] | None = None  # the running getUpdates; aborted by a newer one
    sent: list[Sent] = field(default_factory=list)
    messages: dict[tuple[int, int], Sent] = field(default_factory=dict)
    queued_at: dict[int, float] = field(default_factory=dict)  # update id -> perf_counter()
    failures: dict[str, list[Failure]] = field(default_factory=dict)
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    conflicts: int = 0
    arrived: asyncio.Event = field(default_factory=asyncio.Event)  # an update was queued


class _Error(Exception):
    def __init__(self, status: int, description: str, retry_after: int | None = None) -> None:
        super().__init__(description)
        self.status = status
        self.description = description
        self.retry_after = retry_after


def _u16(text: str) -> int:
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


class FakeTelegram:
    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.bots: dict[str, Bot] = {}
        self.chats: dict[int, dict[str, Any]] = {}  # chat id -> Chat object
        self._ids = itertools.count(1000)  # message ids (per fake; unique is enough)
        self._changed = asyncio.Condition()
        self._closing = asyncio.Event()
        self._pushers: set[asyncio.Task[None]] = set()
        self._http = EmbeddedHTTPServer(
            Starlette(
                routes=[
                    Route("/bot{token}/{method}", self._handle, methods=["GET", "POST"]),
                    Route("/file/bot{token}/{path:path}", self._file, methods=["GET"]),
                ]
            ),
            host,
            port,
            graceful_timeout=1.0,
        )
        self._client: httpx.AsyncClient | None = None
        self.files: dict[str, tuple[str, bytes]] = {}  # file id -> (file path, content)
        # called with each message a bot sends (benchmarks wait on these instead of scanning `sent`)
        self.listeners: list[Callable[[Sent], None]] = []

    # --- life cycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        await self._http.start()
        self._client = httpx.AsyncClient(timeout=10, trust_env=False)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._closing.set()
        for bot in self.bots.values():
            bot.arrived.set()
        for task in self._pushers:
            task.cancel()
        async with self._changed:
            self._changed.notify_all()
        await self._http.stop()
        if self._client is not None:
            await self._client.aclose()

    @property
    def api_root(self) -> str:
        return f"http://127.0.0.1:{self._http.port}"

    # --- scripting ----------------------------------------------------------------------------

    def add_bot(self, token: str, *, username: str = "clawbot", bot_id: int | None = None) -> Bot:
        bot = Bot(token=token, id=bot_id or int(token.split(":", 1)[0]), username=username)
        self.bots[token] = bot
        return bot

    def fail_next(self, bot: Bot, method: str, failure: Failure, times: int = 1) -> None:
        bot.failures.setdefault(method.lower(), []).extend([failure] * times)

    def chat(
        self, chat_id: int, kind: str, *, title: str | None = None, forum: bool = False
    ) -> dict[str, Any]:
        chat: dict[str, Any] = {"id": chat_id, "type": kind}
        if title:
            chat["title"] = title
        if forum:
            chat["is_forum"] = True
        self.chats[chat_id] = chat
        return chat

    def _user(self, user_id: int, name: str = "") -> dict[str, Any]:
        return {"id": user_id, "is_bot": False, "first_name": name or f"user{user_id}"}

    def message(
        self,
        bot: Bot,
        chat: dict[str, Any],
        *,
        user: int,
        text: str,
        thread: int | None = None,
        entities: list[dict[str, Any]] | None = None,
        reply_to: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Queue (or push, with a webhook) a message update; returns the update."""
        msg: dict[str, Any] = {
            "message_id": next(self._ids),
            "date": int(time.time()),
            "chat": chat,
            "from": self._user(user),
            "text": text,
        }
        if thread is not None:
            msg["message_thread_id"] = thread
            msg["is_topic_message"] = bool(chat.get("is_forum"))
        if entities:
            msg["entities"] = entities
        if reply_to is not None:
            msg["reply_to_message"] = reply_to
        return self.push_update(bot, {"message": msg})

    def photo_message(
        self, bot: Bot, chat: dict[str, Any], *, user: int, sizes: list[bytes], caption: str | None = None
    ) -> dict[str, Any]:
        """Queue a photo message: the same picture in several sizes (smallest first), each a file."""
        photo = []
        for i, data in enumerate(sizes):
            file_id = f"photo-{next(self._ids)}-{i}"
            self.files[file_id] = (f"photos/{file_id}.jpg", data)
            photo.append(
                {
                    "file_id": file_id,
                    "file_unique_id": file_id,
                    "width": 90 * (i + 1),
                    "height": 90 * (i + 1),
                    "file_size": len(data),
                }
            )
        msg: dict[str, Any] = {
            "message_id": next(self._ids),
            "date": int(time.time()),
            "chat": chat,
            "from": self._user(user),
            "photo": photo,
        }
        if caption is not None:
            msg["caption"] = caption
        return self.push_update(bot, {"message": msg})

    def file_message(
        self,
        bot: Bot,
        chat: dict[str, Any],
        *,
        user: int,
        field: str,
        data: bytes,
        file_name: str | None = None,
        mime_type: str | None = None,
        caption: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Queue a message with one file in `field` (document, voice, audio, video, video_note,
        animation, sticker), as the Bot API describes it: `file_name` and `mime_type` only when
        given (voice messages and video notes have no name)."""
        file_id = f"{field}-{next(self._ids)}"
        self.files[file_id] = (f"{field}s/{file_id}", data)
        info: dict[str, Any] = {"file_id": file_id, "file_unique_id": file_id, "file_size": len(data)}
        if file_name is not None:
            info["file_name"] = file_name
        if mime_type is not None:
            info["mime_type"] = mime_type
        info.update(extra or {})
        msg: dict[str, Any] = {
            "message_id": next(self._ids),
            "date": int(time.time()),
            "chat": chat,
            "from": self._user(user),
            field: info,
        }
        if caption is not None:
            msg["caption"] = caption
        return self.push_update(bot, {"message": msg})

    def private_message(self, bot: Bot, *, user: int, text: str) -> dict[str, Any]:
        chat = self.chats.get(user) or self.chat(user, "private")
        return self.message(bot, chat, user=user, text=text)

    def push_update(self, bot: Bot, body: dict[str, Any], *, update_id: int | None = None) -> dict[str, Any]:
        """Queue an update (a given `update_id` re-sends an old one: a duplicate delivery)."""
        if update_id is None:
            update_id = bot.next_update
            bot.next_update += 1
        update = {"update_id": update_id, **body}
        bot.queued_at.setdefault(update_id, time.perf_counter())
        if bot.webhook_url:
            task = asyncio.create_task(self._push(bot, update))
            self._pushers.add(task)
            task.add_done_callback(self._pushers.discard)
        else:
            bot.updates.append(update)
            bot.arrived.set()
        return update

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def _push(self, bot: Bot, update: dict[str, Any]) -> None:
        """Deliver to the webhook until it answers 2xx (Telegram retries with back-off)."""
        assert self._client is not None
        delay = 0.05
        while not self._closing.is_set():
            headers = {"X-Telegram-Bot-Api-Secret-Token": bot.webhook_secret} if bot.webhook_secret else {}
            with contextlib.suppress(httpx.HTTPError):
                resp = await self._client.post(bot.webhook_url, json=update, headers=headers)
                if 200 <= resp.status_code < 300:
                    return
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)

    async def wait_sent(
        self, bot: Bot, predicate: Callable[[Sent], bool], *, timeout: float = 30.0, count: int = 1
    ) -> list[Sent]:
        """The first `count` sent messages matching `predicate`, once there are that many."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        async with self._changed:
            while True:
                found = [s for s in bot.sent if predicate(s)]
                if len(found) >= count:
                    return found[:count]
                remaining = deadline - loop.time()
                if remaining <= 0:
                    raise AssertionError(f"timed out after {timeout}s: {len(found)} of {count} messages sent")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), remaining)

    # --- the Bot API --------------------------------------------------------------------------

    async def _handle(self, request: Request) -> Response:
        token = request.path_params["token"]
        method = request.path_params["method"].lower()
        bot = self.bots.get(token)
        try:
            if bot is None:
                raise _Error(401, "Unauthorized")
            params = await self._params(request)
            bot.calls.append((method, params))
            scripted = bot.failures.get(method)
            if scripted:
                f = scripted.pop(0)
                raise _Error(f.status, f.description, f.retry_after)
            handler = getattr(self, f"_m_{method.lower()}", None)
            if handler is None:
                raise _Error(404, "Not Found: method not found")
            result = await handler(bot, params)
        except _Error as err:
            body: dict[str, Any] = {"ok": False, "error_code": err.status, "description": err.description}
            headers = {}
            if err.retry_after is not None:
                body["parameters"] = {"retry_after": err.retry_after}
                headers["Retry-After"] = str(err.retry_after)
            return JSONResponse(body, status_code=err.status, headers=headers)
        return JSONResponse({"ok": True, "result": result})

    async def _params(self, request: Request) -> dict[str, Any]:
        params: dict[str, Any] = dict(request.query_params)
        body = await request.body()
        kind = request.headers.get("content-type", "")
        if body and "json" in kind:
            try:
                params.update(json.loads(body))
            except ValueError:
                raise _Error(400, "Bad Request: can't parse JSON object") from None
        elif body:
            for k, v in parse_qsl(body.decode()):
                params[k] = json.loads(v) if v[:1] in "[{" else v
        return params

    def _int(self, params: dict[str, Any], name: str, *, required: bool = False) -> int | None:
        value = params.get(name)
        if value is None:
            if required:
                raise _Error(400, f'Bad Request: parameter "{name}" is required')
            return None
        try:
            return int(value)
        except (TypeError, ValueError):
            raise _Error(400, f"Bad Request: invalid {name} specified") from None

    async def _m_getme(self, bot: Bot, params: dict[str, Any]) -> Any:
        return {
            "id": bot.id,
            "is_bot": True,
            "first_name": bot.username,
            "username": bot.username,
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
        }

    async def _m_getupdates(self, bot: Bot, params: dict[str, Any]) -> Any:
        if bot.webhook_url:
            raise _Error(
                409,
                "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete "
                "the webhook first",
            )
        offset = self._int(params, "offset")
        limit = max(1, min(100, self._int(params, "limit") or 100))
        timeout = max(0, min(LONG_POLL_MAX, self._int(params, "timeout") or 0))
        if offset is not None:
            bot.updates = [u for u in bot.updates if u["update_id"] >= offset]  # confirmed below it
        if bot.poll_waiter is not None and not bot.poll_waiter.done():
            bot.conflicts += 1
            bot.poll_waiter.set_exception(
                _Error(
                    409,
                    "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running",
                )
            )
        mine: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        bot.poll_waiter = mine
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            while not bot.updates and not self._closing.is_set():
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                bot.arrived.clear()
                arrived = asyncio.ensure_future(bot.arrived.wait())
                await asyncio.wait({arrived, mine}, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
                arrived.cancel()
                if mine.done():
                    mine.result()  # a newer poller or a webhook aborted this one: the 409
            return bot.updates[:limit]
        finally:
            if bot.poll_waiter is mine:
                bot.poll_waiter = None
            if not mine.done():
                mine.cancel()

    async def _m_setwebhook(self, bot: Bot, params: dict[str, Any]) -> Any:
        bot.webhook_url = str(params.get("url") or "")
        bot.webhook_secret = str(params.get("secret_token") or "")
        if bot.poll_waiter is not None and not bot.poll_waiter.done():
            bot.poll_waiter.set_exception(_Error(409, "Conflict: terminated by setWebhook request"))
        pending, bot.updates = bot.updates, []
        for update in pending:
            task = asyncio.create_task(self._push(bot, update))
            self._pushers.add(task)
            task.add_done_callback(self._pushers.discard)
        return True

    async def _m_deletewebhook(self, bot: Bot, params: dict[str, Any]) -> Any:
        bot.webhook_url = ""
        bot.webhook_secret = ""
        if params.get("drop_pending_updates") in (True, "true"):
            bot.updates = []
        return True

    async def _m_getwebhookinfo(self, bot: Bot, params: dict[str, Any]) -> Any:
        return {
            "url": bot.webhook_url,
            "has_custom_certificate": False,
            "pending_update_count": len(bot.updates),
        }

    def _known_chat(self, params: dict[str, Any]) -> int:
        chat_id = self._int(params, "chat_id", required=True)
        assert chat_id is not None
        if chat_id not in self.chats:
            raise _Error(400, "Bad Request: chat not found")
        return chat_id

    def _text(self, params: dict[str, Any]) -> str:
        text = str(params.get("text") or "")
        if not text.strip():
            raise _Error(400, "Bad Request: message text is empty")
        if _u16(text) > 4096:
            raise _Error(400, "Bad Request: message is too long")
        return text

    async def _m_sendmessage(self, bot: Bot, params: dict[str, Any]) -> Any:
        chat_id = self._known_chat(params)
        text = self._text(params)
        thread = self._int(params, "message_thread_id")
        if thread == 1:
            raise _Error(400, "Bad Request: message thread not found")
        reply = params.get("reply_parameters")
        reply_to = int(reply["message_id"]) if isinstance(reply, dict) and "message_id" in reply else None
        sent = Sent(chat_id, next(self._ids), text, thread, reply_to, time.perf_counter())
        bot.sent.append(sent)
        bot.messages[(chat_id, sent.message_id)] = sent
        for listener in self.listeners:
            listener(sent)
        await self._notify()
        message: dict[str, Any] = {
            "message_id": sent.message_id,
            "date": int(time.time()),
            "chat": self.chats[chat_id],
            "from": {"id": bot.id, "is_bot": True, "first_name": bot.username, "username": bot.username},
            "text": text,
        }
        if thread is not None:
            message["message_thread_id"] = thread
        return message

    async def _m_editmessagetext(self, bot: Bot, params: dict[str, Any]) -> Any:
        chat_id = self._known_chat(params)
        message_id = self._int(params, "message_id", required=True)
        assert message_id is not None
        text = self._text(params)
        sent = bot.messages.get((chat_id, message_id))
        if sent is None:
            raise _Error(400, "Bad Request: message to edit not found")
        if sent.text == text:
            raise _Error(400, NOT_MODIFIED)
        sent.text = text
        sent.edits.append(text)
        sent.edited_at = time.perf_counter()
        await self._notify()
        return {"message_id": message_id, "chat": self.chats[chat_id], "date": int(time.time()), "text": text}

    async def _m_getfile(self, bot: Bot, params: dict[str, Any]) -> Any:
        file_id = str(params.get("file_id") or "")
        if file_id not in self.files:
            raise _Error(400, "Bad Request: invalid file_id")
        path, data = self.files[file_id]
        if len(data) > DOWNLOAD_LIMIT:  # the cloud Bot API hands bots files of up to 20 MB
            raise _Error(400, "Bad Request: file is too big")
        return {"file_id": file_id, "file_unique_id": file_id, "file_size": len(data), "file_path": path}

    async def _file(self, request: Request) -> Response:
        if request.path_params["token"] not in self.bots:
            return JSONResponse(
                {"ok": False, "error_code": 401, "description": "Unauthorized"}, status_code=401
            )
        for path, data in self.files.values():
            if path == request.path_params["path"]:
                return Response(data, media_type="application/octet-stream")
        return JSONResponse({"ok": False, "error_code": 404, "description": "Not Found"}, status_code=404)

    async def _m_sendchataction(self, bot: Bot, params: dict[str, Any]) -> Any:
        self._known_chat(params)
        return True
