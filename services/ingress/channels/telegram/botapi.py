"""A Bot API client: one keep-alive httpx client per account, the `{"ok": …}` envelope turned
into results or typed errors. The token is part of every URL (`<apiRoot>/bot<token>/<method>`),
so no URL is ever logged: httpx's own request log lines are redacted here."""

from __future__ import annotations

import logging
import re
from typing import Any, Final

import httpx
import msgspec

from clawmesh.channels.telegram import Message, Update, User

from ..media import MediaTooLarge, read_body

__all__ = ["BotApi", "BotApiError", "Conflict", "NetworkError", "RateLimited"]

_TOKEN_IN_URL: Final = re.compile(r"/bot[^/\s]+/")


class _RedactTokens(logging.Filter):
    """httpx logs each request's URL at INFO: with a Bot API URL that is the bot token."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.args:
            record.args = tuple(
                _TOKEN_IN_URL.sub("/bot<redacted>/", str(a)) if "/bot" in str(a) else a
                for a in (record.args if isinstance(record.args, tuple) else (record.args,))
            )
        if isinstance(record.msg, str) and "/bot" in record.msg:
            record.msg = _TOKEN_IN_URL.sub("/bot<redacted>/", record.msg)
        return True


for _name in ("httpx", "httpcore"):
    logging.getLogger(_name).addFilter(_RedactTokens())


class BotApiError(Exception):
    """The Bot API answered `ok: false` (status and description as Telegram gave them)."""

    def __init__(self, method: str, status: int, description: str, retry_after: float | None = None) -> None:
        super().__init__(f"{method}: {status} {description}")
        self.method = method
        self.status = status
        self.description = description
        self.retry_after = retry_after

    @property
    def transient(self) -> bool:
        """Worth trying again: rate limited or a server-side failure."""
        return self.status == 429 or self.status >= 500


class RateLimited(BotApiError):
    """429: wait `retry_after` seconds before the next call for that chat."""


class Conflict(BotApiError):
    """409: another getUpdates poller, or a webhook, owns this bot token."""


class NetworkError(Exception):
    """No answer from the Bot API server (connection refused or reset, timeout)."""


class _File(msgspec.Struct):
    file_id: str
    file_size: int | None = None
    file_path: str | None = None


class _Envelope(msgspec.Struct):
    ok: bool
    result: msgspec.Raw = msgspec.Raw(b"null")
    error_code: int = 0
    description: str = ""
    parameters: dict[str, Any] = {}


_envelope = msgspec.json.Decoder(_Envelope)
_updates = msgspec.json.Decoder(list[Update])
_message = msgspec.json.Decoder(Message)
_user = msgspec.json.Decoder(User)
_file = msgspec.json.Decoder(_File)


class BotApi:
    """Calls for one bot token on one Bot API server (`apiRoot`)."""

    def __init__(self, api_root: str, token: str, *, timeout: float = 30.0) -> None:
        self.api_root = api_root.rstrip("/")
        self._files = f"{self.api_root}/file/bot{token}/"
        self._client = httpx.AsyncClient(
            base_url=f"{self.api_root}/bot{token}/",
            timeout=httpx.Timeout(timeout, connect=10.0),
            limits=httpx.Limits(max_connections=100, max_keepalive_connections=50),
            trust_env=False,
        )

    async def close(self) -> None:
        await self._client.aclose()

    async def call(
        self, method: str, params: dict[str, Any] | None = None, *, timeout: float | None = None
    ) -> bytes:
        """The raw `result` of `method`; BotApiError (RateLimited, Conflict) or NetworkError."""
        try:
            resp = await self._client.post(
                method,
                content=msgspec.json.encode(params or {}),
                headers={"content-type": "application/json"},
                timeout=timeout if timeout is not None else httpx.USE_CLIENT_DEFAULT,
            )
        except httpx.TransportError as exc:  # its message never carries the URL
            raise NetworkError(f"{method}: {type(exc).__name__}: {exc}") from None
        try:
            env = _envelope.decode(resp.content)
        except msgspec.DecodeError:
            raise BotApiError(
                method, resp.status_code, f"not a Bot API answer (HTTP {resp.status_code})"
            ) from None
        if env.ok:
            return bytes(env.result)
        status = env.error_code or resp.status_code
        retry_after = env.parameters.get("retry_after")
        kind = RateLimited if status == 429 else Conflict if status == 409 else BotApiError
        raise kind(method, status, env.description, float(retry_after) if retry_after is not None else None)

    async def get_me(self) -> User:
        return _user.decode(await self.call("getMe"))

    async def get_updates(self, offset: int | None, timeout: int, allowed: list[str]) -> list[Update]:
        params: dict[str, Any] = {"timeout": timeout, "allowed_updates": allowed}
        if offset is not None:
            params["offset"] = offset
        # the HTTP read must outlast the long poll
        return _updates.decode(await self.call("getUpdates", params, timeout=timeout + 15.0))

    async def send_message(
        self, chat_id: int, text: str, *, thread_id: int | None = None, reply_to: int | None = None
    ) -> Message:
        params: dict[str, Any] = {"chat_id": chat_id, "text": text}
        if thread_id is not None:
            params["message_thread_id"] = thread_id
        if reply_to is not None:
            params["reply_parameters"] = {"message_id": reply_to, "allow_sending_without_reply": True}
        return _message.decode(await self.call("sendMessage", params))

    async def edit_message_text(self, chat_id: int, message_id: int, text: str) -> None:
        """Edit a sent message; editing to the same text counts as done (Telegram's 400
        `message is not modified`)."""
        try:
            await self.call("editMessageText", {"chat_id": chat_id, "message_id": message_id, "text": text})
        except BotApiError as exc:
            if exc.status == 400 and "message is not modified" in exc.description:
                return
            raise

    async def set_webhook(self, url: str, secret: str, allowed: list[str]) -> None:
        await self.call("setWebhook", {"url": url, "secret_token": secret, "allowed_updates": allowed})

    async def delete_webhook(self) -> None:
        await self.call("deleteWebhook", {})

    async def download(self, file_id: str, limit: int) -> bytes:
        """A file's bytes (`getFile`, then the file URL), refused above `limit` bytes whatever
        the server claims beforehand."""
        info = _file.decode(await self.call("getFile", {"file_id": file_id}))
        if info.file_size is not None and info.file_size > limit:
            raise MediaTooLarge(f"{info.file_size} bytes; at most {limit} are taken")
        if not info.file_path:
            raise BotApiError("getFile", 400, "no file_path (the file is not downloadable)")
        try:
            async with self._client.stream("GET", self._files + info.file_path) as resp:
                if resp.status_code != 200:
                    raise BotApiError("file", resp.status_code, f"download failed (HTTP {resp.status_code})")
                return await read_body(resp, limit)
        except httpx.TransportError as exc:
            raise NetworkError(f"file download: {type(exc).__name__}: {exc}") from None
