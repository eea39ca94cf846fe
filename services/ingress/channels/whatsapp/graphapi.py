"""A Graph API client for one WhatsApp business number: the access token in the Authorization
header (never in a URL or a log line), Graph's error shape (`{"error": {"code", "message",
"error_data": {"details"}}}`) turned into typed errors branching on `code`, not on the text.

Media a user sent are fetched in two steps with that token: the media node
(`GET /<version>/<media id>` → its short-lived `url`, `mime_type`, `sha256`, `file_size`), then
that URL, streamed and given up past the caller's limit."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

import httpx
import msgspec

from ..media import read_body

__all__ = ["GraphApi", "GraphError", "GraphNetworkError", "MediaInfo"]

# throughput (130429), pair rate (131056), WABA/app rate (80007), app call rate (4), generic (131000)
_TRANSIENT_CODES: Final = frozenset({4, 80007, 130429, 131000, 131056})
# a media id as webhooks carry it (digits in practice): one path segment, nothing to escape
_MEDIA_ID: Final = re.compile(r"[A-Za-z0-9_-]{1,128}")
_ERROR_BODY_LIMIT: Final = 64 * 1024


class GraphError(Exception):
    def __init__(self, status: int, code: int, message: str, details: str = "") -> None:
        super().__init__(f"HTTP {status}: ({code}) {message}" + (f": {details}" if details else ""))
        self.status = status
        self.code = code
        self.message = message
        self.details = details

    @property
    def transient(self) -> bool:
        return self.code in _TRANSIENT_CODES or self.status == 429 or self.status >= 500


class GraphNetworkError(Exception):
    """No answer from the Graph API."""


class _ErrorData(msgspec.Struct):
    details: str = ""


class _Error(msgspec.Struct):
    message: str = ""
    code: int = 0
    error_data: _ErrorData | None = None


class _ErrorBody(msgspec.Struct):
    error: _Error | None = None


class _Sent(msgspec.Struct):
    id: str = ""


class _SendAnswer(msgspec.Struct):
    messages: list[_Sent] = []


class _MediaNode(msgspec.Struct):
    url: str = ""
    mime_type: str = ""
    sha256: str = ""
    # Graph writes it as a number; some answers have carried it as a string
    file_size: int | str | None = None
    id: str = ""


@dataclass(frozen=True)
class MediaInfo:
    url: str
    mime_type: str
    sha256: str
    file_size: int | None


_error = msgspec.json.Decoder(_ErrorBody)
_sent = msgspec.json.Decoder(_SendAnswer)
_media = msgspec.json.Decoder(_MediaNode)


def _graph_error(status: int, body: bytes, fallback: str) -> GraphError:
    try:
        err = _error.decode(body).error
    except (msgspec.DecodeError, msgspec.ValidationError):
        err = None
    if err is None:
        return GraphError(status, 0, fallback)
    return GraphError(status, err.code, err.message, err.error_data.details if err.error_data else "")


def _refused(resp: httpx.Response) -> GraphError:
    return _graph_error(resp.status_code, resp.content, f"not a Graph API answer (HTTP {resp.status_code})")


async def _refused_stream(resp: httpx.Response) -> GraphError:
    """`_refused` for a streamed answer, reading no more of its body than an error needs."""
    body = b""
    async for chunk in resp.aiter_bytes():
        body += chunk
        if len(body) > _ERROR_BODY_LIMIT:
            break
    return _graph_error(
        resp.status_code, body[:_ERROR_BODY_LIMIT], f"download refused (HTTP {resp.status_code})"
    )


class GraphApi:
    def __init__(self, base_url: str, version: str, phone_number_id: str, token: str) -> None:
        root = f"{base_url.rstrip('/')}/{version.strip('/')}/"
        self._root = urlsplit(root)
        self._messages = f"{phone_number_id}/messages"
        self._client = httpx.AsyncClient(
            base_url=root,
            headers={"authorization": f"Bearer {token}"},
            timeout=httpx.Timeout(30.0, connect=10.0),
            trust_env=False,
        )

    async def close(self) -> None:
        await self._client.aclose()

    async def send_text(self, to: str, text: str, *, group: bool = False, reply_to: str | None = None) -> str:
        """The sent message's `wamid`; GraphError or GraphNetworkError."""
        body: dict[str, Any] = {
            "messaging_product": "whatsapp",
            "recipient_type": "group" if group else "individual",
            "to": to,
            "type": "text",
            "text": {"body": text, "preview_url": False},
        }
        if reply_to:
            body["context"] = {"message_id": reply_to}
        try:
            resp = await self._client.post(
                self._messages,
                content=msgspec.json.encode(body),
                headers={"content-type": "application/json"},
            )
        except httpx.TransportError as exc:
            raise GraphNetworkError(f"messages: {type(exc).__name__}: {exc}") from None
        if resp.status_code >= 400:
            raise _refused(resp)
        try:
            answer = _sent.decode(resp.content)
        except (msgspec.DecodeError, msgspec.ValidationError):
            raise GraphError(resp.status_code, 0, "malformed answer to a send") from None
        return answer.messages[0].id if answer.messages else ""

    async def media(self, media_id: str) -> MediaInfo:
        """A received media's node: where to download it (for a few minutes), its type, hash
        and size. GraphError (an unknown id is code 100) or GraphNetworkError."""
        if not _MEDIA_ID.fullmatch(media_id):
            raise GraphError(0, 100, f"not a media id: {media_id[:40]!r}")
        try:
            resp = await self._client.get(media_id)
        except httpx.TransportError as exc:
            raise GraphNetworkError(f"media node: {type(exc).__name__}: {exc}") from None
        if resp.status_code >= 400:
            raise _refused(resp)
        try:
            node = _media.decode(resp.content)
        except (msgspec.DecodeError, msgspec.ValidationError):
            raise GraphError(resp.status_code, 0, "malformed media node") from None
        if not node.url:
            raise GraphError(resp.status_code, 0, "the media node has no url")
        size = node.file_size
        if isinstance(size, str):
            size = int(size) if size.strip().isdigit() else None
        return MediaInfo(url=node.url, mime_type=node.mime_type, sha256=node.sha256, file_size=size)

    async def download(self, url: str, limit: int) -> bytes:
        """A media URL's bytes (the token goes along, as Graph requires), refused above `limit`
        bytes whatever was said beforehand: read in chunks and dropped once past it. The token
        is sent over https only, or to the configured API root itself (a local fake or proxy)."""
        target = urlsplit(url)
        own = (target.scheme, target.netloc) == (self._root.scheme, self._root.netloc)
        if target.scheme != "https" and not own:
            raise GraphError(0, 0, f"refusing to send the token to a {target.scheme or 'relative'} URL")
        try:
            async with self._client.stream("GET", url, follow_redirects=True) as resp:
                if resp.status_code >= 400:
                    raise await _refused_stream(resp)
                return await read_body(resp, limit)
        except httpx.TransportError as exc:
            raise GraphNetworkError(f"media download: {type(exc).__name__}: {exc}") from None
