"""A fake WhatsApp Cloud API (Graph API + webhook sender) for offline tests (channel-protocols.md §4, §6).

    async with FakeWhatsApp(app_secret="s", verify_token="v") as wa:
        number = wa.add_number("106540352242922", token="EAAG…", display="15550783881")
        ...  # point `channels.whatsapp.apiBaseUrl` at wa.api_base, the callback at the gateway
        await wa.deliver(url, wa.text_message(number, sender="16505551234", text="hi"))
        sent = await wa.wait_sent(number, lambda m: m.to == "16505551234")

Graph API as Meta answers it: `POST /<version>/<phone-number-id>/messages` with
`Authorization: Bearer <token>`; errors in Graph's shape `{"error": {"message", "type":
"OAuthException", "code", "error_data": {"messaging_product", "details"}, "fbtrace_id"}}`:
190 (HTTP 401) for a wrong token, 100 (HTTP 400) for a missing `messaging_product`/`to`/`type`
or a text over 4096 characters, 131047 for a user outside the 24-hour window (no message from
them yet), scripted failures (`fail_next`, e.g. 130429 throughput or 131056 pair rate). Sends
answer `{"messaging_product", "contacts": [{"input", "wa_id"}], "messages": [{"id": "wamid.…"}]}`.
`GET /<version>/<phone-number-id>` answers the phone number object (`id`,
`display_phone_number`, `verified_name`, `quality_rating`, …); an unknown id is HTTP 400 code
100 subcode 33, a wrong token 401 code 190.
Media a user sent (`add_media`, then `media_message`): `GET /<version>/<media-id>` with the
number's token answers the media node `{"url", "mime_type", "sha256" (hex), "file_size", "id",
"messaging_product"}` (an unknown id, or one of another number: 400 code 100 subcode 33; a wrong
token: 401 code 190); the URL (`/whatsapp_business/attachments/?mid=…&ext=<expiry>&hash=…`,
valid five minutes) serves the bytes in chunks to the same Bearer token only (401 code 190
otherwise; 404 once expired or for a forged hash). Every node read is in `media_lookups`, every
download request in `downloads`; the node's `sha256`/`file_size` can be made to lie.
Webhooks: `deliver` signs a body with `X-Hub-Signature-256` (or a wrong one) and POSTs it;
`verify` makes the GET handshake; payload builders batch entries and add `statuses`.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import itertools
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from clawmesh.channels.whatsapp import sign
from clawmesh.httpserver import EmbeddedHTTPServer

__all__ = ["FakeWhatsApp", "Media", "Number", "SentMessage"]

URL_TTL = 300.0  # how long a media URL is good for (Meta: five minutes)
_CHUNK = 64 * 1024


@dataclass
class SentMessage:
    to: str
    text: str
    recipient_type: str
    wamid: str
    context: str | None


@dataclass
class Number:
    phone_number_id: str
    token: str
    display: str
    verified_name: str = "Clawmesh Test"
    sent: list[SentMessage] = field(default_factory=list)
    calls: int = 0
    failures: list[tuple[int, int, str]] = field(default_factory=list)
    last_inbound: dict[str, float] = field(default_factory=dict)  # user → when they last wrote


@dataclass
class Media:
    """A file a user sent to `owner` (a phone number id), kept by "Meta" under `media_id`."""

    media_id: str
    owner: str
    data: bytes
    mime: str
    sha256: str | None = None  # what the node says (hex); None: the data's true hash
    file_size: int | None = None  # what the node says; None: the data's true size

    @property
    def webhook_sha256(self) -> str:
        """The data's SHA-256 as webhooks write it (base64)."""
        return base64.b64encode(hashlib.sha256(self.data).digest()).decode()


def _error(status: int, code: int, message: str, details: str = "") -> JSONResponse:
    body = {
        "error": {
            "message": f"(#{code}) {message}",
            "type": "OAuthException",
            "code": code,
            "error_data": {"messaging_product": "whatsapp", "details": details or message},
            "fbtrace_id": "AbCdEfGhIjK",
        }
    }
    return JSONResponse(body, status_code=status)


def _node_error(status: int, code: int, message: str, subcode: int | None = None) -> JSONResponse:
    """Graph's error for a node read (no `error_data`, an `error_subcode` when there is one)."""
    error: dict[str, Any] = {"message": message, "type": "OAuthException", "code": code}
    if subcode is not None:
        error["error_subcode"] = subcode
    error["fbtrace_id"] = "AbCdEfGhIjK"
    return JSONResponse({"error": error}, status_code=status)


class FakeWhatsApp:
    def __init__(
        self, *, app_secret: str, verify_token: str = "", host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.app_secret = app_secret
        self.verify_token = verify_token
        self.numbers: dict[str, Number] = {}
        self.media: dict[str, Media] = {}
        self.media_lookups: list[str] = []  # media ids whose node was read
        self.downloads: list[str] = []  # media ids whose URL was requested (any answer)
        self._ids = itertools.count(1)
        self._media_ids = itertools.count(900_000_000_000_001)
        self._url_key = b"fake-lookaside-key"
        self._changed = asyncio.Condition()
        self._http = EmbeddedHTTPServer(
            Starlette(
                routes=[
                    Route("/whatsapp_business/attachments/", self._attachment, methods=["GET"]),
                    Route("/{version}/{number}/messages", self._messages, methods=["POST"]),
                    Route("/{version}/{number}", self._node, methods=["GET"]),
                ]
            ),
            host,
            port,
        )

    @property
    def api_base(self) -> str:
        return f"http://127.0.0.1:{self._http.port}"

    async def __aenter__(self) -> Self:
        await self._http.start()
        self._client = httpx.AsyncClient(timeout=10, trust_env=False)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._client.aclose()
        await self._http.stop()

    def add_number(self, phone_number_id: str, *, token: str, display: str = "15550783881") -> Number:
        number = Number(phone_number_id=phone_number_id, token=token, display=display)
        self.numbers[phone_number_id] = number
        return number

    def fail_next(self, number: Number, status: int, code: int, message: str) -> None:
        number.failures.append((status, code, message))

    def add_media(
        self,
        number: Number,
        data: bytes,
        mime: str,
        *,
        sha256: str | None = None,
        file_size: int | None = None,
    ) -> Media:
        """A file a user sent to `number`; `sha256`/`file_size`: what its node says instead of
        the truth."""
        media = Media(str(next(self._media_ids)), number.phone_number_id, data, mime, sha256, file_size)
        self.media[media.media_id] = media
        return media

    # --- Graph API --------------------------------------------------------------------------

    async def _node(self, request: Request) -> Response:
        """A node as Graph reads it for a token allowed to see it: a phone number or a media."""
        node_id = request.path_params["number"]
        token = request.headers.get("authorization", "").removeprefix("Bearer ")
        if not any(n.token == token for n in self.numbers.values()):
            return _node_error(401, 190, "Invalid OAuth access token - Cannot parse access token")
        number = self.numbers.get(node_id)
        media = self.media.get(node_id)
        if media is not None or node_id not in self.numbers:
            self.media_lookups.append(node_id)
        owner = self.numbers.get(media.owner) if media is not None else None
        if number is not None and number.token == token:
            return self._number(number)
        if media is not None and owner is not None and owner.token == token:
            return self._media_node(request, media)
        return _node_error(
            400,
            100,
            f"Unsupported get request. Object with ID '{node_id}' does not exist, cannot be loaded "
            "due to missing permissions, or does not support this operation.",
            33,
        )

    def _media_node(self, request: Request, media: Media) -> Response:
        expiry = str(int(time.time() + URL_TTL))
        signed = hmac.new(self._url_key, f"{media.media_id}:{expiry}".encode(), hashlib.sha256).hexdigest()
        return JSONResponse(
            {
                "messaging_product": "whatsapp",
                "url": f"{self.api_base}/whatsapp_business/attachments/?mid={media.media_id}"
                f"&ext={expiry}&hash={signed}",
                "mime_type": media.mime,
                "sha256": media.sha256 or hashlib.sha256(media.data).hexdigest(),
                "file_size": media.file_size if media.file_size is not None else len(media.data),
                "id": media.media_id,
            }
        )

    async def _attachment(self, request: Request) -> Response:
        """A media URL: the bytes, to the owning number's Bearer token, while the URL is good."""
        q = request.query_params
        mid, expiry, signed = q.get("mid", ""), q.get("ext", ""), q.get("hash", "")
        self.downloads.append(mid)
        media = self.media.get(mid)
        expected = hmac.new(self._url_key, f"{mid}:{expiry}".encode(), hashlib.sha256).hexdigest()
        if media is None or not hmac.compare_digest(expected, signed):
            return _node_error(404, 100, "The URL is not valid")
        owner = self.numbers.get(media.owner)
        if owner is None or request.headers.get("authorization", "") != f"Bearer {owner.token}":
            return _node_error(401, 190, "Invalid OAuth access token - Cannot parse access token")
        if not expiry.isdigit() or int(expiry) < time.time():
            return _node_error(404, 100, "The URL has expired")
        data = media.data

        async def chunks() -> AsyncIterator[bytes]:
            for start in range(0, len(data), _CHUNK):
                yield data[start : start + _CHUNK]

        return StreamingResponse(chunks(), media_type=media.mime)

    def _number(self, number: Number) -> Response:
        """The phone number node."""
        return JSONResponse(
            {
                "verified_name": number.verified_name,
                "code_verification_status": "VERIFIED",
                "display_phone_number": number.display,
                "quality_rating": "GREEN",
                "platform_type": "CLOUD_API",
                "throughput": {"level": "STANDARD"},
                "id": number.phone_number_id,
            }
        )

    async def _messages(self, request: Request) -> Response:
        number = self.numbers.get(request.path_params["number"])
        if number is None:
            return _error(400, 100, "Unsupported post request. Object does not exist")
        if request.headers.get("authorization", "") != f"Bearer {number.token}":
            return _error(401, 190, "Invalid OAuth access token - Cannot parse access token")
        number.calls += 1
        if number.failures:
            status, code, message = number.failures.pop(0)
            return _error(status, code, message)
        try:
            body = json.loads(await request.body())
        except ValueError:
            return _error(400, 100, "Invalid parameter", "the body is not JSON")
        if body.get("messaging_product") != "whatsapp":
            return _error(400, 100, "Invalid parameter", "messaging_product must be whatsapp")
        to, kind = body.get("to"), body.get("type", "text")
        if not to:
            return _error(400, 100, "Invalid parameter", "to is required")
        if kind != "text":
            return _error(400, 131051, "Unsupported message type")
        text = (body.get("text") or {}).get("body") or ""
        if not text:
            return _error(400, 100, "Invalid parameter", "text.body is required")
        if len(text) > 4096:
            return _error(400, 100, "Invalid parameter", "text.body is longer than 4096 characters")
        group = body.get("recipient_type") == "group"
        last = number.last_inbound.get(to)
        if not group and (last is None or time.time() - last > 24 * 3600):
            return _error(
                400, 131047, "Re-engagement message", "more than 24 hours since the user's last message"
            )
        wamid = f"wamid.OUT{next(self._ids):08d}"
        context = (body.get("context") or {}).get("message_id")
        async with self._changed:
            number.sent.append(SentMessage(to, text, "group" if group else "individual", wamid, context))
            self._changed.notify_all()
        return JSONResponse(
            {
                "messaging_product": "whatsapp",
                "contacts": [{"input": to, "wa_id": to}],
                "messages": [{"id": wamid}],
            }
        )

    async def wait_sent(
        self,
        number: Number,
        predicate: Callable[[SentMessage], bool],
        *,
        timeout: float = 30.0,
        count: int = 1,
    ) -> list[SentMessage]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        async with self._changed:
            while True:
                found = [m for m in number.sent if predicate(m)]
                if len(found) >= count:
                    return found[:count]
                left = deadline - loop.time()
                if left <= 0:
                    raise TimeoutError(f"no {count} matching messages; sent: {number.sent!r}")
                try:
                    await asyncio.wait_for(self._changed.wait(), left)
                except TimeoutError:
                    pass

    # --- webhooks ---------------------------------------------------------------------------

    def message(
        self,
        number: Number,
        *,
        sender: str | None,
        text: str,
        name: str = "Sheena",
        group_id: str | None = None,
        user_id: str | None = None,
        wamid: str | None = None,
    ) -> dict[str, Any]:
        """One change of field `messages` carrying one text message (`sender`: digits, no `+`;
        None for a username user known only by BSUID `user_id`)."""
        if sender:
            number.last_inbound[sender] = time.time()
        msg: dict[str, Any] = {
            "id": wamid or f"wamid.IN{next(self._ids):08d}",
            "timestamp": str(int(time.time())),
            "type": "text",
            "text": {"body": text},
        }
        contact: dict[str, Any] = {"profile": {"name": name}}
        if sender:
            msg["from"], contact["wa_id"] = sender, sender
        if user_id:
            msg["user_id"], contact["user_id"] = user_id, user_id
        if group_id:
            msg["group_id"] = group_id
        return {
            "field": "messages",
            "value": {
                "messaging_product": "whatsapp",
                "metadata": {
                    "display_phone_number": number.display,
                    "phone_number_id": number.phone_number_id,
                },
                "contacts": [contact],
                "messages": [msg],
            },
        }

    def status(self, number: Number, wamid: str, recipient: str) -> dict[str, Any]:
        """A `statuses` change (a delivery receipt of our own message): never a message."""
        return {
            "field": "messages",
            "value": {
                "messaging_product": "whatsapp",
                "metadata": {
                    "display_phone_number": number.display,
                    "phone_number_id": number.phone_number_id,
                },
                "statuses": [
                    {
                        "id": wamid,
                        "status": "delivered",
                        "timestamp": str(int(time.time())),
                        "recipient_id": recipient,
                    }
                ],
            },
        }

    def media_message(
        self,
        number: Number,
        media: Media | str,
        *,
        sender: str,
        type: str,
        caption: str | None = None,
        filename: str | None = None,
        voice: bool = False,
        mime: str | None = None,
        sha256: str | None = None,
        group_id: str | None = None,
    ) -> dict[str, Any]:
        """One change carrying a media message of `type` (image, document, audio, video,
        sticker) for `media` (or a media id "Meta" does not know); `sha256`: what the webhook
        says instead of the data's hash."""
        change = self.message(number, sender=sender, text="", group_id=group_id)
        msg = change["value"]["messages"][0]
        known = media if isinstance(media, Media) else self.media.get(media)
        body: dict[str, Any] = {
            "id": media.media_id if isinstance(media, Media) else media,
            "mime_type": mime or (known.mime if known else "application/octet-stream"),
            "sha256": sha256 or (known.webhook_sha256 if known else base64.b64encode(b"\0" * 32).decode()),
        }
        if caption is not None:
            body["caption"] = caption
        if filename is not None:
            body["filename"] = filename
        if voice:
            body["voice"] = True
        del msg["text"]
        msg["type"] = type
        msg[type] = body
        return change

    @staticmethod
    def payload(*changes: dict[str, Any], entries: int = 1) -> dict[str, Any]:
        """A notification with the changes spread over `entries` entries (Meta batches)."""
        per = [list(changes[i::entries]) for i in range(entries)]
        return {
            "object": "whatsapp_business_account",
            "entry": [{"id": f"WABA{i}", "changes": c} for i, c in enumerate(per) if c],
        }

    async def deliver(
        self, url: str, payload: dict[str, Any], *, secret: str | None = None, signature: str | None = None
    ) -> httpx.Response:
        # Meta escapes non-ASCII as \\uXXXX in the body it signs
        body = json.dumps(payload, ensure_ascii=True).encode()
        headers = {
            "content-type": "application/json",
            "x-hub-signature-256": signature
            if signature is not None
            else sign(secret or self.app_secret, body),
        }
        return await self._client.post(url, content=body, headers=headers)

    async def verify(self, url: str, *, token: str | None = None, mode: str = "subscribe") -> httpx.Response:
        params = {
            "hub.mode": mode,
            "hub.verify_token": token or self.verify_token,
            "hub.challenge": "1158201444",
        }
        return await self._client.get(url, params=params)
