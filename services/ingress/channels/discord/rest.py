"""A Discord REST client for one bot token: the token in the `Authorization` header (never in
a URL or a log line), Discord's error body (`{"code", "message"}`) and its rate limits (429 with
`retry_after`, and the `X-RateLimit-*` headers of every answer) turned into typed errors and
waits.

Interactions: the interaction's token travels in the webhook URL (`/webhooks/{app}/{token}`), so
those calls carry no bot token, and neither an error nor the HTTP client's log line shows it
(`<token>` instead).

Rate-limit buckets: an answer that says a route's bucket is empty (`X-RateLimit-Remaining: 0`)
holds the next request on that route until `X-RateLimit-Reset-After` has passed, instead of
spending a request on a 429; a 429 itself is raised with its `retry_after` for the caller's
retry (the delivery's back-off)."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import time
from typing import Any, Final

import httpx
import msgspec

__all__ = ["UNKNOWN_MESSAGE", "UNKNOWN_WEBHOOK", "NetworkError", "RestApi", "RestError"]

USER_AGENT: Final = "DiscordBot (https://github.com/clawmesh/clawmesh, 0.1)"
_BUCKETS_KEPT: Final = 4096
MAX_BUCKET_WAIT: Final = 60.0
SUPPRESS_EMBEDS: Final = 1 << 2  # a longer reset is left to the 429 and the caller's retry
EPHEMERAL: Final = 1 << 6  # a follow-up shown to the interaction's user only
UNKNOWN_MESSAGE: Final = 10008  # Discord's code for a message that is gone (deleted) or never was
UNKNOWN_WEBHOOK: Final = 10015  # an interaction token that expired (15 minutes) or never was
_TOKEN_IN_PATH: Final = re.compile(r"(/(?:webhooks|interactions)/[0-9]+/)[^/?\s\"']+")


class _RedactInteractionTokens(logging.Filter):
    """httpx logs each request's URL at INFO: a webhook URL carries the interaction's token."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.args:
            args = record.args if isinstance(record.args, tuple) else (record.args,)
            record.args = tuple(
                _TOKEN_IN_PATH.sub(r"\1<token>", str(a)) if _TOKEN_IN_PATH.search(str(a)) else a for a in args
            )
        if isinstance(record.msg, str) and _TOKEN_IN_PATH.search(record.msg):
            record.msg = _TOKEN_IN_PATH.sub(r"\1<token>", record.msg)
        return True


for _name in ("httpx", "httpcore"):
    logging.getLogger(_name).addFilter(_RedactInteractionTokens())


def _webhook_route(application_id: str, token: str) -> str:
    """An interaction's rate-limit bucket (its webhook), named without the token."""
    return f"webhooks/{application_id}/{hashlib.blake2b(token.encode(), digest_size=8).hexdigest()}"


class RestError(Exception):
    """Discord answered with an error: `code` is Discord's JSON error code (0 when none)."""

    def __init__(
        self, route: str, status: int, code: int, message: str, retry_after: float | None = None
    ) -> None:
        super().__init__(f"{route}: HTTP {status}" + (f" ({code}) {message}" if code or message else ""))
        self.route = route
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after

    @property
    def transient(self) -> bool:
        return self.status == 429 or self.status >= 500


class NetworkError(Exception):
    """No answer from the REST API (connection refused or reset, timeout)."""


class _ErrorBody(msgspec.Struct):
    code: int = 0
    message: str = ""
    retry_after: float | None = None


class _Id(msgspec.Struct):
    id: str = ""


class _Channel(msgspec.Struct):
    id: str = ""
    type: int = 0
    parent_id: str | None = None


class _GatewayBot(msgspec.Struct):
    url: str


_error = msgspec.json.Decoder(_ErrorBody)
_id = msgspec.json.Decoder(_Id)
_channel = msgspec.json.Decoder(_Channel)
_gateway = msgspec.json.Decoder(_GatewayBot)


def _float(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


class RestApi:
    def __init__(self, base_url: str, token: str, *, timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._client = httpx.AsyncClient(
            base_url=self.base_url + "/",
            headers={"authorization": f"Bot {token}", "user-agent": USER_AGENT},
            timeout=httpx.Timeout(timeout, connect=10.0),
            trust_env=False,
        )
        self._reset_at: dict[str, float] = {}  # route -> monotonic time its bucket refills

    async def close(self) -> None:
        await self._client.aclose()

    async def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        route: str | None = None,
        shown: str | None = None,
        auth: bool = True,
    ) -> bytes:
        """The answer's body; RestError or NetworkError. `route` names the rate-limit bucket
        (the path with its major parameter, e.g. `channels/123/messages`); `shown` is the path
        as errors name it (a webhook's without its token); `auth=False` sends no bot token (a
        webhook URL is its own authentication)."""
        route = route or path
        shown = shown or path
        wait = self._reset_at.get(route, 0.0) - time.monotonic()
        if wait > 0:
            await asyncio.sleep(min(wait, MAX_BUCKET_WAIT))
        try:
            request = self._client.build_request(
                method,
                path,
                content=msgspec.json.encode(body) if body is not None else None,
                headers={"content-type": "application/json"} if body is not None else None,
            )
            if not auth:
                del request.headers["authorization"]
            resp = await self._client.send(request)
        except httpx.TransportError as exc:  # its message never carries the headers (nor the URL)
            raise NetworkError(f"{method} {shown}: {type(exc).__name__}: {exc}") from None
        self._note_bucket(route, resp)
        if resp.status_code < 400:
            return resp.content
        try:
            err = _error.decode(resp.content)
        except (msgspec.DecodeError, msgspec.ValidationError):
            err = _ErrorBody(message=f"not a Discord answer (HTTP {resp.status_code})")
        retry_after = None
        if resp.status_code == 429:
            retry_after = (
                err.retry_after
                if err.retry_after is not None
                else _float(resp.headers.get("retry-after"))
                or _float(resp.headers.get("x-ratelimit-reset-after"))
                or 1.0
            )
        raise RestError(f"{method} {shown}", resp.status_code, err.code, err.message, retry_after)

    def _note_bucket(self, route: str, resp: httpx.Response) -> None:
        remaining = resp.headers.get("x-ratelimit-remaining")
        reset_after = _float(resp.headers.get("x-ratelimit-reset-after"))
        if remaining == "0" and reset_after is not None and resp.status_code != 429:
            if len(self._reset_at) >= _BUCKETS_KEPT:
                now = time.monotonic()
                self._reset_at = {k: v for k, v in self._reset_at.items() if v > now}
            self._reset_at[route] = time.monotonic() + reset_after
        else:
            self._reset_at.pop(route, None)

    async def gateway_url(self) -> str:
        """`GET /gateway/bot`: the WebSocket URL to connect to (also checks the token)."""
        return _gateway.decode(await self.call("GET", "gateway/bot")).url

    async def me(self) -> dict[str, Any]:
        """`GET /users/@me`: the bot user."""
        answer: dict[str, Any] = msgspec.json.decode(await self.call("GET", "users/@me"))
        return answer

    async def channel(self, channel_id: str) -> tuple[int, str | None]:
        """A channel's type and parent (a thread's parent channel)."""
        found = _channel.decode(await self.call("GET", f"channels/{channel_id}"))
        return found.type, found.parent_id

    async def open_dm(self, user_id: str) -> str:
        """The DM channel with a user (`POST /users/@me/channels`; the same one every time)."""
        return _id.decode(await self.call("POST", "users/@me/channels", {"recipient_id": user_id})).id

    async def create_message(
        self, channel_id: str, content: str, *, reply_to: str | None = None, suppress_embeds: bool = False
    ) -> str:
        """Post `content`; the new message's id. No mention in it pings anyone (model output
        must not reach @everyone); `reply_to` makes it a native reply (kept if that message
        is gone); `suppress_embeds`: links are not unfurled (the SUPPRESS_EMBEDS flag)."""
        body: dict[str, Any] = {"content": content, "allowed_mentions": {"parse": []}}
        if suppress_embeds:
            body["flags"] = SUPPRESS_EMBEDS
        if reply_to:
            body["message_reference"] = {
                "message_id": reply_to,
                "channel_id": channel_id,
                "fail_if_not_exists": False,
            }
        route = f"channels/{channel_id}/messages"
        return _id.decode(await self.call("POST", route, body, route=route)).id

    async def edit_message(self, channel_id: str, message_id: str, content: str) -> None:
        """`PATCH /channels/{id}/messages/{id}`: replace a sent message's content (a streamed
        preview, or the final reply taking it over); it pings nobody either. A message deleted
        meanwhile is a 404 with code `UNKNOWN_MESSAGE`. Every edit in a channel counts against
        one bucket (Discord keys it by the route, the channel being its major parameter)."""
        body = {"content": content, "allowed_mentions": {"parse": []}}
        route = f"channels/{channel_id}/messages/{{message.id}}"
        await self.call("PATCH", f"channels/{channel_id}/messages/{message_id}", body, route=route)

    # --- slash commands (interactions) ----------------------------------------------------

    async def application_id(self) -> str:
        """`GET /oauth2/applications/@me`: the bot's application (OpenClaw's fallback when the
        token does not start with it)."""
        return _id.decode(await self.call("GET", "oauth2/applications/@me")).id

    async def put_commands(self, application_id: str, commands: list[dict[str, Any]]) -> None:
        """`PUT /applications/{id}/commands`: the app's global commands become exactly these
        (ids of commands kept by name stay the same)."""
        route = f"applications/{application_id}/commands"
        await self.call("PUT", route, commands, route=route)

    def _webhook_body(self, content: str, flags: int) -> dict[str, Any]:
        body: dict[str, Any] = {"content": content, "allowed_mentions": {"parse": []}}
        if flags:
            body["flags"] = flags
        return body

    async def edit_original(
        self, application_id: str, token: str, content: str, *, suppress_embeds: bool = False
    ) -> str:
        """`PATCH /webhooks/{app}/{token}/messages/@original`: the interaction's answer (its
        deferred "thinking…") becomes `content`; the message's id. An expired token is a 404
        with code `UNKNOWN_WEBHOOK`."""
        body = self._webhook_body(content, SUPPRESS_EMBEDS if suppress_embeds else 0)
        answer = await self.call(
            "PATCH",
            f"webhooks/{application_id}/{token}/messages/@original",
            body,
            route=_webhook_route(application_id, token),
            shown=f"webhooks/{application_id}/<token>/messages/@original",
            auth=False,
        )
        return _id.decode(answer).id

    async def follow_up(
        self,
        application_id: str,
        token: str,
        content: str,
        *,
        ephemeral: bool = False,
        suppress_embeds: bool = False,
        flags: int = 0,
    ) -> str:
        """`POST /webhooks/{app}/{token}`: a follow-up message of the interaction (`flags`:
        `EPHEMERAL` for its user only); the message's id."""
        flags |= (SUPPRESS_EMBEDS if suppress_embeds else 0) | (EPHEMERAL if ephemeral else 0)
        answer = await self.call(
            "POST",
            f"webhooks/{application_id}/{token}",
            self._webhook_body(content, flags),
            route=_webhook_route(application_id, token),
            shown=f"webhooks/{application_id}/<token>",
            auth=False,
        )
        return _id.decode(answer).id
