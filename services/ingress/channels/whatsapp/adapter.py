"""One WhatsApp Cloud API business number: webhooks in, Graph API messages out.

In: Meta calls `webhookPath` (default `/whatsapp/webhook`) on ingress's own HTTP server. GET is
the subscription handshake (`hub.mode=subscribe`, `hub.verify_token` = `verifyToken`, answered
with `hub.challenge` verbatim; 403 otherwise). POST bodies are checked against
`X-Hub-Signature-256` (HMAC-SHA256 of the raw bytes with `appSecret`, constant time; 401
otherwise) before they are parsed; every message of every entry and change for this number is
handed to the access policy and stored, then the POST is answered 200 (a store failure is a 503,
which Meta retries). A redelivered message is one turn: its `wamid` seeds the turn id and is the
inbound stream's dedupe key.

Media: an image, document, audio or voice note, video or sticker is handed to ingress with the
message (its caption is the text) and fetched only once the access policy admitted it: the
media node (`GET /<version>/<media id>` with the access token) gives a URL valid for minutes and
the file's size, checked against `mediaMaxMb` (default 50, OpenClaw's WhatsApp default) before
the URL is read; the download stops past the limit, and bytes whose SHA-256 is not the one the
webhook and the node give are refused. A file not taken in is named in the text instead.

Out: `deliver` sends a text message to the chat it answers (`+` dropped from the number, a
group by its id), split at `textChunkLimit` (default and at most 4096). WhatsApp has no edit
API, so there are no streamed previews.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar, Final
from urllib.parse import urlsplit

import msgspec
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from clawmesh.bus import ServiceContext
from clawmesh.channels import AccessRequest, PairingChallenge
from clawmesh.channels.accounts import AccountSettings
from clawmesh.channels.text import split_text
from clawmesh.channels.whatsapp import (
    DEFAULT_API_BASE_URL,
    DEFAULT_API_VERSION,
    DEFAULT_WEBHOOK_PATH,
    TEXT_LIMIT,
    Webhook,
    WhatsAppCredentials,
    WhatsAppFile,
    WhatsAppInbound,
    media_budget,
    normalize_webhook,
    sha256_matches,
    verify_signature,
)
from clawmesh.config import ConfigError, Problem
from clawmesh.errors import best_effort
from clawmesh.wire import InboundMessage, OutboundMessage, now

from ...turns import Unavailable, turn_id_for
from ..base import BackgroundTasks, DeliveryProgress, PermanentSendError, TransientSendError, WebhookRoute
from ..inbound import ChannelInbound
from ..media import InboundFile, MediaError, MediaTooLarge
from .graphapi import GraphApi, GraphError, GraphNetworkError

__all__ = ["WhatsAppAdapter"]

log = logging.getLogger("clawmesh.ingress.whatsapp")

MAX_BODY_BYTES: Final = 1 << 20
_webhook = msgspec.json.Decoder(Webhook)


def _graph_error(code: int, message: str, status: int) -> JSONResponse:
    return JSONResponse(
        {"error": {"message": message, "type": "OAuthException", "code": code}}, status_code=status
    )


class WhatsAppAdapter:
    channel: ClassVar[str] = "whatsapp"

    def __init__(
        self,
        ctx: ServiceContext,
        account: AccountSettings,
        credentials: WhatsAppCredentials,
        inbound: ChannelInbound,
    ) -> None:
        self.ctx = ctx
        self.account = account
        self.inbound = inbound
        s = account.settings
        base = s.api_base_url or DEFAULT_API_BASE_URL
        parsed = urlsplit(base)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ConfigError(
                [Problem(f"{account.path}.apiBaseUrl", f"expected an http(s) URL, got {base!r}")]
            )
        path = s.webhook_path or DEFAULT_WEBHOOK_PATH
        if not path.startswith("/"):
            raise ConfigError([Problem(f"{account.path}.webhookPath", f"must start with '/', got {path!r}")])
        self.path = path
        self.phone_number_id = credentials.phone_number_id
        self._secret = credentials.app_secret
        self._verify = credentials.verify_token
        self.api = GraphApi(
            base, s.api_version or DEFAULT_API_VERSION, credentials.phone_number_id, credentials.access_token
        )
        self._tasks = BackgroundTasks()

    @property
    def limit(self) -> int:
        configured = self.account.settings.text_chunk_limit
        return min(configured, TEXT_LIMIT) if configured and configured > 0 else TEXT_LIMIT

    async def start(self) -> None:
        log.info(
            "whatsapp %s: number %s, webhooks on %s", self.account.account_id, self.phone_number_id, self.path
        )

    async def stop_inbound(self) -> None:
        return None

    async def stop(self) -> None:
        await self._tasks.cancel_all()
        await self.api.close()

    def status(self) -> dict[str, Any]:
        return {
            "channel": self.channel,
            "account": self.account.account_id,
            "mode": "webhook",
            "ready": True,
            "phoneNumberId": self.phone_number_id,
        }

    def webhook_routes(self) -> list[WebhookRoute]:
        return [
            WebhookRoute(
                host=None, port=None, path=self.path, handler=self.on_webhook, methods=("GET", "POST")
            )
        ]

    # --- in ---------------------------------------------------------------------------------

    async def on_webhook(self, request: Request) -> Response:
        if request.method == "GET":
            return self._handshake(request)
        counters = self.ctx.counters
        body = await request.body()
        if len(body) > MAX_BODY_BYTES:
            return _graph_error(100, "request too large", 413)
        if not verify_signature(self._secret, request.headers.get("x-hub-signature-256", ""), body):
            counters["whatsapp_webhook_refused"] += 1
            return _graph_error(190, "missing or wrong X-Hub-Signature-256", 401)
        try:
            hook = _webhook.decode(body)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            counters["whatsapp_webhook_malformed"] += 1
            return _graph_error(100, f"not a WhatsApp webhook: {exc}", 400)
        messages, ignored = normalize_webhook(hook)
        counters["whatsapp_messages_ignored"] += ignored
        try:
            for wa in messages:
                if wa.phone_number_id != self.phone_number_id:
                    counters["whatsapp_other_number"] += 1
                    continue
                await self.accept(wa)
        except Unavailable as exc:
            return _graph_error(2, str(exc), 503)
        return Response(status_code=200)

    def _handshake(self, request: Request) -> Response:
        q = request.query_params
        token = q.get("hub.verify_token", "")
        if (
            q.get("hub.mode") == "subscribe"
            and self._verify is not None
            and hmac.compare_digest(token.encode(), self._verify.encode())
        ):
            return PlainTextResponse(q.get("hub.challenge", ""))
        self.ctx.counters["whatsapp_verify_refused"] += 1
        return PlainTextResponse("verification failed", status_code=403)

    async def accept(self, wa: WhatsAppInbound) -> None:
        acct = self.account.account_id
        inbound = InboundMessage(
            id=turn_id_for(self.channel, acct, wa.message_id),
            channel=self.channel,
            account_id=acct,
            peer=wa.peer,
            sender=wa.sender,
            text=wa.text,
            message_id=wa.message_id,
            received_at=now(),
            reply_events="final",
        )
        request = AccessRequest(
            channel=self.channel,
            account=acct,
            chat_type=wa.chat_type,
            sender_id=wa.sender.id,
            sender_name=wa.sender.name,
            group_id=wa.group_id,
            was_mentioned=wa.was_mentioned or wa.replied_to_us,
            text=wa.text,
        )
        files = [InboundFile(f.kind, f.name, f.mime, None, self._fetcher(f)) for f in wa.files]
        result = await self.inbound.submit(
            request,
            inbound,
            follow=False,
            files=files,
            media_limit=media_budget(self.account.settings),
        )
        self.ctx.counters["whatsapp_messages_accepted"] += 1
        if isinstance(result.denied, PairingChallenge):
            self._tasks.spawn(self._answer_denied(wa, result.denied.reply))

    def _fetcher(self, f: WhatsAppFile) -> Callable[[int], Awaitable[bytes]]:
        """The file's bytes once asked for: its media node (the size checked against the limit
        before anything is downloaded), then its URL; the SHA-256 the webhook and the node
        give must be the bytes'."""

        async def fetch(limit: int) -> bytes:
            try:
                info = await self.api.media(f.media_id)
                if info.file_size is not None and info.file_size > limit:
                    raise MediaTooLarge(f"{info.file_size} bytes; at most {limit} are taken")
                data = await self.api.download(info.url, limit)
            except (GraphError, GraphNetworkError) as exc:
                raise MediaError(str(exc)) from None
            for said in (f.sha256, info.sha256):
                if said and not sha256_matches(said, data):
                    self.ctx.counters["whatsapp_media_hash_mismatch"] += 1
                    raise MediaError(f"the bytes are not the ones sent (sha256 {said!r})")
            return data

        return fetch

    async def _answer_denied(self, wa: WhatsAppInbound, text: str) -> None:
        with best_effort(self.ctx.counters, "whatsapp_policy_reply", log=log):
            await self.api.send_text(wa.sender.id.lstrip("+"), text)

    # --- out --------------------------------------------------------------------------------

    async def deliver(self, out: OutboundMessage, progress: DeliveryProgress) -> None:
        peer = out.peer
        if peer is None or not peer.id:
            raise PermanentSendError("the reply names no WhatsApp chat")
        group = peer.kind == "group"
        to = str(peer.id) if group else str(peer.id).lstrip("+")
        pieces = split_text(out.text, self.limit)
        for index, piece in enumerate(pieces):
            if index < len(progress.sent):
                continue
            try:
                wamid = await self.api.send_text(to, piece, group=group)
            except GraphError as exc:
                if exc.transient:
                    raise TransientSendError(str(exc)) from None
                raise PermanentSendError(f"WhatsApp refused the reply: {exc}") from None
            except GraphNetworkError as exc:
                raise TransientSendError(str(exc)) from None
            await progress.part_sent(wamid, last=index == len(pieces) - 1)
