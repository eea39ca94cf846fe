"""A Slack Web API client for one bot token: JSON bodies, the token in the Authorization header
(never in a URL, so never in a log line), `{"ok": false, "error": …}` (HTTP 200) and 429
`Retry-After` turned into typed errors. `connections_open` is Socket Mode's one call with the
app-level token (in the header too, as Slack requires). `download` fetches a message's file
from its private URL with the bot token, streamed and bounded."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

import httpx
import msgspec

from ..media import read_body

__all__ = ["DownloadError", "NetworkError", "WebApi", "WebApiError"]

MAX_REDIRECTS: Final = 5

# errors that will not go away by trying again (anything else unknown is treated the same)
_TRANSIENT = frozenset(
    {"ratelimited", "internal_error", "fatal_error", "service_unavailable", "request_timeout"}
)


class WebApiError(Exception):
    """Slack answered `ok: false` (or a non-JSON error page): `error` is Slack's code."""

    def __init__(self, method: str, status: int, error: str, retry_after: float | None = None) -> None:
        super().__init__(f"{method}: {error} (HTTP {status})")
        self.method = method
        self.status = status
        self.error = error
        self.retry_after = retry_after

    @property
    def transient(self) -> bool:
        return self.status == 429 or self.status >= 500 or self.error in _TRANSIENT


class NetworkError(Exception):
    """No answer from the Web API (connection refused or reset, timeout)."""


class DownloadError(Exception):
    """A file was not served: not a 200, a redirect where the token may not go, too many
    redirects (more bytes than taken: MediaTooLarge)."""


class _Answer(msgspec.Struct):
    ok: bool = False
    error: str = ""


_answer = msgspec.json.Decoder(_Answer)


class WebApi:
    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._client = httpx.AsyncClient(
            base_url=base_url.rstrip("/") + "/",
            headers={"authorization": f"Bearer {token}"},
            timeout=httpx.Timeout(timeout, connect=10.0),
            trust_env=False,
            transport=transport,
        )

    async def close(self) -> None:
        await self._client.aclose()

    async def call(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """The decoded answer of `method`; WebApiError or NetworkError."""
        return await self._post(
            method, msgspec.json.encode(params or {}), {"content-type": "application/json; charset=utf-8"}
        )

    async def _post(self, method: str, content: bytes, headers: dict[str, str]) -> dict[str, Any]:
        try:
            resp = await self._client.post(method, content=content, headers=headers)
        except httpx.TransportError as exc:
            raise NetworkError(f"{method}: {type(exc).__name__}: {exc}") from None
        retry = resp.headers.get("retry-after")
        try:
            retry_after = float(retry) if retry is not None else None
        except ValueError:
            retry_after = None
        if resp.status_code == 429:
            raise WebApiError(method, 429, "ratelimited", retry_after if retry_after is not None else 1.0)
        try:
            head = _answer.decode(resp.content)
            body: dict[str, Any] = msgspec.json.decode(resp.content)
        except (msgspec.DecodeError, msgspec.ValidationError):
            raise WebApiError(
                method, resp.status_code, f"not a Web API answer (HTTP {resp.status_code})"
            ) from None
        if resp.status_code >= 500 or not head.ok:
            raise WebApiError(method, resp.status_code, head.error or "unknown_error", retry_after)
        return body

    async def auth_test(self) -> dict[str, Any]:
        return await self.call("auth.test")

    async def connections_open(self, app_token: str) -> str:
        """A Socket Mode WebSocket URL (single use, short-lived: a new one for every connection).
        The app-level token goes in the Authorization header of this call only; the URL carries
        a ticket and is never logged."""
        answer = await self._post(
            "apps.connections.open",
            b"",
            {"authorization": f"Bearer {app_token}", "content-type": "application/x-www-form-urlencoded"},
        )
        url = answer.get("url")
        if not isinstance(url, str) or not url:
            raise NetworkError("apps.connections.open: an answer without a url")  # worth another try
        return url

    async def post_message(self, channel: str, text: str, *, thread_ts: str | None = None) -> str:
        """The new message's `ts`."""
        params: dict[str, Any] = {"channel": channel, "text": text}
        if thread_ts:
            params["thread_ts"] = thread_ts
        return str((await self.call("chat.postMessage", params)).get("ts", ""))

    async def update(self, channel: str, ts: str, text: str) -> None:
        """Replace a message's text (`message_not_found`, `cant_update_message`,
        `edit_window_closed`, `msg_too_long` above 4000 bytes: WebApiError, HTTP 200)."""
        await self.call("chat.update", {"channel": channel, "ts": ts, "text": text})

    async def delete(self, channel: str, ts: str) -> None:
        """Delete one of the bot's messages (`chat.delete`)."""
        await self.call("chat.delete", {"channel": channel, "ts": ts})

    async def download(self, url: str, limit: int, refused: Callable[[str], str | None]) -> tuple[bytes, str]:
        """A file's bytes and the type it was served as, from a private URL (`url_private…`)
        with the bot token. Redirects are followed by hand, at most `MAX_REDIRECTS`, each hop
        asked of `refused` first (the token goes only where it allows); the body is streamed and
        given up past `limit` bytes. DownloadError, MediaTooLarge, or NetworkError."""
        for _ in range(MAX_REDIRECTS + 1):
            why = refused(url)
            if why is not None:
                raise DownloadError(f"not fetched: {why}")
            try:
                async with self._client.stream("GET", url) as resp:
                    if resp.is_redirect:
                        location = resp.headers.get("location")
                        if not location:
                            raise DownloadError(f"HTTP {resp.status_code} without a Location")
                        url = str(resp.url.join(location))
                        continue
                    if resp.status_code != 200:
                        raise DownloadError(f"HTTP {resp.status_code}")
                    return await read_body(resp, limit), resp.headers.get("content-type", "")
            except httpx.InvalidURL as exc:
                raise DownloadError(f"not a URL: {exc}") from None
            except httpx.TransportError as exc:
                raise NetworkError(f"file download: {type(exc).__name__}: {exc}") from None
        raise DownloadError(f"more than {MAX_REDIRECTS} redirects")
