"""One Telegram bot account: updates in (long polling or webhook), replies out.

In: each update is normalised (`clawmesh.channels.telegram`), handed to the access policy and
stored (`ChannelInbound`). Out: `deliver` sends a reply with `sendMessage`, split at
`textChunkLimit` (at most 4096), into the chat and forum topic it answers; with `streaming`
`partial` or `block` the replica that took the message sends a preview as the answer's text
arrives and edits it at most once per `EDIT_INTERVAL`; the final reply then replaces the
preview in place (its first part) instead of arriving as a new message.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import re
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, ClassVar, Final
from urllib.parse import urlsplit

import msgspec
from nats.js.errors import KeyNotFoundError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from clawmesh.bus import ServiceContext
from clawmesh.channels import AccessRequest, PairingChallenge
from clawmesh.channels.accounts import AccountSettings
from clawmesh.channels.telegram import (
    DEFAULT_API_ROOT,
    BotIdentity,
    TelegramInbound,
    Update,
    chat_of,
    media_budget,
    normalize_update,
    pick_photo,
    split_text,
    streaming_mode,
    text_chunk_limit,
)
from clawmesh.config import ChannelAccount, ConfigError, Problem, secret_value
from clawmesh.errors import best_effort
from clawmesh.wire import Attachment, InboundMessage, OutboundMessage, TextDeltaEvent, now

from ...turns import PendingTurn, Unavailable, turn_id_for
from ..base import (
    BackgroundTasks,
    DeliveryProgress,
    LiveSettings,
    PermanentSendError,
    TransientSendError,
    WebhookRoute,
)
from ..inbound import ChannelInbound
from .botapi import BotApi, BotApiError, MediaTooLarge, NetworkError
from .poller import ALLOWED_UPDATES, Poller

__all__ = ["TelegramAdapter"]

log = logging.getLogger("clawmesh.ingress.telegram")

DEFAULT_WEBHOOK_HOST: Final = "127.0.0.1"
DEFAULT_WEBHOOK_PORT: Final = 8787
DEFAULT_WEBHOOK_PATH: Final = "/telegram-webhook"
MAX_UPDATE_BYTES: Final = 1 << 20
_PREVIEWS_KEPT: Final = 10_000
_SECRET_TOKEN: Final = re.compile(r"[A-Za-z0-9_-]{1,256}")
_update = msgspec.json.Decoder(Update)


@dataclass
class _Preview:
    """A streamed answer's preview message; `finished` once the final reply took it over."""

    chat_id: int
    message_id: int | None = None
    finished: bool = False
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class _PreviewRecord(msgspec.Struct):
    chat_id: int
    message_id: int


class TelegramAdapter:
    channel: ClassVar[str] = "telegram"
    # at most one preview edit per turn this often (Telegram: about one message per second per chat)
    EDIT_INTERVAL: ClassVar[float] = 1.0

    def __init__(
        self, ctx: ServiceContext, account: AccountSettings, token: str, inbound: ChannelInbound
    ) -> None:
        self.ctx = ctx
        self.account = account
        self.inbound = inbound
        s = account.settings
        root = s.api_root or DEFAULT_API_ROOT
        parsed = urlsplit(root)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            # said here, before the URL with the token in it is ever built
            raise ConfigError([Problem(f"{account.path}.apiRoot", f"expected an http(s) URL, got {root!r}")])
        self.api = BotApi(root, token)
        self._live = LiveSettings(ctx.holder, self.channel, account)
        self.bot: BotIdentity | None = None
        self.webhook_secret: str | None = None
        self.poller: Poller | None = None
        if s.webhook_url:
            where = f"{account.path}.webhookSecret"
            self.webhook_secret = secret_value(s.webhook_secret, ctx.holder.current.env, where)
            # as OpenClaw: no webhook without a secret (anyone could post updates otherwise)
            if not self.webhook_secret:
                raise ConfigError([Problem(where, "required with webhookUrl")])
            if not _SECRET_TOKEN.fullmatch(self.webhook_secret):
                raise ConfigError(
                    [Problem(where, "must be 1-256 characters of A-Z a-z 0-9 _ - (Telegram's rule)")]
                )
        else:
            self.poller = Poller(
                self.api,
                token,
                ctx.leases,
                ctx.kv["channels"],
                ctx.layout.lease_seconds,
                self.accept,
                account=account.account_id,
            )
        self._previews: OrderedDict[str, _Preview] = OrderedDict()
        self._tasks = BackgroundTasks()
        self._starting: asyncio.Task[None] | None = None

    # --- settings a config reload changes at once (OpenClaw: from the next turn on) ---------

    @property
    def settings(self) -> ChannelAccount:
        """This account's settings in the current config (the token, transport and webhook are
        the ones it started with: those need an ingress restart)."""
        return self._live.get()

    @property
    def streaming(self) -> bool:
        return streaming_mode(self.settings) in ("partial", "block")

    @property
    def limit(self) -> int:
        return text_chunk_limit(self.settings)

    @property
    def reply_to_mode(self) -> str:
        return self.settings.reply_to_mode or "off"

    # --- life cycle -------------------------------------------------------------------------

    async def start(self) -> None:
        # in the background: an unreachable Bot API must not keep ingress from starting
        self._starting = asyncio.create_task(self._start())

    async def _start(self) -> None:
        acct = self.account.account_id
        delay = 1.0
        while True:
            try:
                me = await self.api.get_me()
                break
            except BotApiError as exc:
                if exc.status in (401, 404):
                    log.error(
                        "telegram %s: the Bot API refused the bot token (%s %s): check botToken, tokenFile "
                        "or TELEGRAM_BOT_TOKEN; this account stays off",
                        acct,
                        exc.status,
                        exc.description,
                    )
                    return
                log.warning("telegram %s: getMe failed (%s); retrying in %.0fs", acct, exc, delay)
            except NetworkError as exc:
                log.warning("telegram %s: Bot API unreachable (%s); retrying in %.0fs", acct, exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)
        self.bot = BotIdentity(id=me.id, username=me.username or "")
        s = self.account.settings
        if s.webhook_url and self.webhook_secret is not None:
            with best_effort(self.ctx.counters, "telegram_set_webhook", log=log):
                await self.api.set_webhook(s.webhook_url, self.webhook_secret, ALLOWED_UPDATES)
        elif self.poller is not None:
            self.poller.start()
        log.info(
            "telegram %s: bot @%s ready (%s)",
            acct,
            self.bot.username,
            "webhook" if s.webhook_url else "polling",
        )

    async def stop_inbound(self) -> None:
        if self._starting is not None:
            self._starting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._starting
        if self.poller is not None:
            await self.poller.stop()

    async def stop(self) -> None:
        await self.stop_inbound()
        await self._tasks.cancel_all()
        await self.api.close()

    def status(self) -> dict[str, Any]:
        return {
            "channel": self.channel,
            "account": self.account.account_id,
            "mode": "polling" if self.poller is not None else "webhook",
            "ready": self.bot is not None,
            "bot": self.bot.username if self.bot else None,
            **(self.poller.status() if self.poller else {}),
        }

    # --- in ---------------------------------------------------------------------------------

    async def accept(self, update: Update) -> None:
        """Store one update as an inbound message (or drop it: not a message to answer, or
        refused by the access policy). Raises Unavailable when it could not be stored."""
        assert self.bot is not None  # updates are taken only once the bot's identity is known
        tg = normalize_update(update, self.bot)
        counters = self.ctx.counters
        if tg is None:
            counters["telegram_updates_ignored"] += 1
            return
        if tg.is_channel_post and str(tg.chat_id) not in (self.settings.groups or {}):
            # OpenClaw answers a channel's posts only when the channel is configured by its id
            # under `groups` (`requireConfiguredGroup`), whatever groupPolicy says
            counters["telegram_channel_posts_unconfigured"] += 1
            return
        acct = self.account.account_id
        attachments, missing = await self._photo(tg) if tg.photos else ([], "")
        text = f"{tg.text}\n{missing}" if tg.text and missing else tg.text or missing
        inbound = InboundMessage(
            id=turn_id_for(self.channel, acct, tg.platform_message_id),
            channel=self.channel,
            account_id=acct,
            peer=tg.peer,
            parent_peer=tg.parent_peer,
            sender=tg.sender,
            text=text,
            attachments=attachments,
            message_id=tg.platform_message_id,
            thread_id=str(tg.reply_thread_id) if tg.reply_thread_id is not None else None,
            received_at=now(),
            reply_events="final",
        )
        request = AccessRequest(
            channel=self.channel,
            account=acct,
            chat_type="group" if tg.is_group else "direct",
            sender_id=tg.sender.id,
            sender_username=tg.sender.username,
            sender_name=tg.sender.name,
            group_id=str(tg.chat_id) if tg.is_group else None,
            thread_id=str(tg.topic) if tg.topic is not None else None,
            was_mentioned=tg.was_mentioned or tg.implicit_mention,
            mentions_others=tg.has_any_mention and not tg.was_mentioned,
            can_detect_mention=bool(self.bot.username),
            text=tg.text,
            is_command=tg.is_command,
            bot_username=self.bot.username or None,
        )
        result = await self.inbound.submit(request, inbound, follow=self.streaming)
        counters["telegram_updates_accepted"] += 1
        if isinstance(result.denied, PairingChallenge):
            self._tasks.spawn(self._answer_denied(tg, result.denied.reply))
        if result.turn is not None:
            self._tasks.spawn(self._stream(result.turn, tg))

    async def _photo(self, tg: TelegramInbound) -> tuple[list[Attachment], str]:
        """The photo's largest size within `mediaMaxMb` (and the bus's message size), as an image
        part for the model; or none, and a note for the model saying why."""
        budget = media_budget(self.settings, self.ctx.nc.max_payload)
        photo = pick_photo(tg.photos, budget)
        counters = self.ctx.counters
        if photo is None:
            counters["telegram_media_too_large"] += 1
            return [], f"[a photo was sent; it is larger than the {budget} bytes taken in]"
        try:
            data = await self.api.download(photo.file_id, budget)
        except (BotApiError, NetworkError, MediaTooLarge) as exc:
            counters["telegram_media_failed"] += 1
            log.warning("telegram %s: photo not downloaded: %s", self.account.account_id, exc)
            return [], "[a photo was sent; it could not be received]"
        counters["telegram_media_in"] += 1
        name = f"photo-{tg.message_id}.jpg"
        return [Attachment(name=name, mime="image/jpeg", size=len(data), data=data)], ""

    async def _answer_denied(self, tg: TelegramInbound, text: str) -> None:
        """The pairing code for an unknown sender (dmPolicy `pairing`), sent directly."""
        with best_effort(self.ctx.counters, "telegram_policy_reply", log=log):
            await self.api.send_message(tg.chat_id, text, thread_id=tg.reply_thread_id)

    def webhook_routes(self) -> list[WebhookRoute]:
        s = self.account.settings
        if not s.webhook_url:
            return []
        return [
            WebhookRoute(
                host=s.webhook_host or DEFAULT_WEBHOOK_HOST,
                port=s.webhook_port if s.webhook_port is not None else DEFAULT_WEBHOOK_PORT,
                path=s.webhook_path or DEFAULT_WEBHOOK_PATH,
                handler=self.on_webhook,
            )
        ]

    async def on_webhook(self, request: Request) -> Response:
        """One update POSTed by Telegram. The secret header is checked (constant time) before
        the body is read; 200 only once the update is stored, so Telegram retries otherwise."""
        counters = self.ctx.counters
        got = request.headers.get("x-telegram-bot-api-secret-token", "")
        if not self.webhook_secret or not hmac.compare_digest(got.encode(), self.webhook_secret.encode()):
            counters["telegram_webhook_refused"] += 1
            return JSONResponse({"ok": False, "description": "wrong secret token"}, status_code=401)
        if self.bot is None:
            return JSONResponse(
                {"ok": False, "description": "starting"}, status_code=503, headers={"Retry-After": "1"}
            )
        body = await request.body()
        if len(body) > MAX_UPDATE_BYTES:
            return JSONResponse({"ok": False, "description": "update too large"}, status_code=413)
        try:
            update = _update.decode(body)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            counters["telegram_webhook_malformed"] += 1
            return JSONResponse(
                {"ok": False, "description": f"not a Telegram update: {exc}"}, status_code=400
            )
        try:
            await self.accept(update)
        except Unavailable as exc:
            return JSONResponse(
                {"ok": False, "description": str(exc)}, status_code=503, headers={"Retry-After": "5"}
            )
        return Response(status_code=200)

    # --- streamed previews ------------------------------------------------------------------

    async def _stream(self, turn: PendingTurn, tg: TelegramInbound) -> None:
        """Follow the turn's text as it is generated and show it in a preview message, edited at
        a bounded rate; the final reply (`deliver`) takes the preview over."""
        preview = _Preview(chat_id=tg.chat_id)
        self._previews[turn.turn_id] = preview
        while len(self._previews) > _PREVIEWS_KEPT:
            self._previews.popitem(last=False)
        parts: list[str] = []
        changed = asyncio.Event()
        following = True

        async def follow() -> None:
            nonlocal following
            try:
                async for event in turn.events(self.inbound.turns.turn_timeout()):
                    if isinstance(event, TextDeltaEvent) and event.text:
                        parts.append(event.text)
                        changed.set()
            except TimeoutError:
                pass
            finally:
                following = False
                changed.set()

        async def show() -> None:
            while True:
                await changed.wait()
                changed.clear()
                if not following:
                    return  # the final reply replaces whatever the preview shows
                text = "".join(parts)
                if not text.strip():
                    continue
                async with preview.lock:
                    if preview.finished:
                        return
                    shown = split_text(text, self.limit)[0]
                    if preview.message_id is None:
                        sent = await self.api.send_message(
                            tg.chat_id,
                            shown,
                            thread_id=tg.reply_thread_id,
                            reply_to=tg.message_id if self.reply_to_mode != "off" else None,
                        )
                        preview.message_id = sent.message_id
                        record = _PreviewRecord(chat_id=tg.chat_id, message_id=sent.message_id)
                        await self.ctx.kv["delivered"].put(
                            f"preview.{turn.turn_id}", msgspec.json.encode(record)
                        )
                    else:
                        await self.api.edit_message_text(tg.chat_id, preview.message_id, shown)
                    self.ctx.counters["telegram_preview_updates"] += 1
                await asyncio.sleep(self.EDIT_INTERVAL)  # the rate bound, not a synchronisation

        try:
            await asyncio.gather(follow(), show())
        except (BotApiError, NetworkError) as exc:  # a preview is best effort: the final reply still comes
            log.info(
                "telegram %s: preview of turn %s stopped: %s", self.account.account_id, turn.turn_id, exc
            )
        finally:
            turn.close()

    async def _take_preview(self, turn_id: str) -> int | None:
        """The preview message of a streamed turn, which the final reply replaces: this
        replica's own (stopped first, so no late edit overwrites the final text), or one another
        replica recorded."""
        preview = self._previews.pop(turn_id, None)
        if preview is not None:
            async with preview.lock:
                preview.finished = True
                return preview.message_id
        if not self.streaming:
            return None
        try:
            entry = await self.ctx.kv["delivered"].get(f"preview.{turn_id}")
        except KeyNotFoundError:
            return None
        try:
            return msgspec.json.decode(entry.value or b"", type=_PreviewRecord).message_id
        except (msgspec.DecodeError, msgspec.ValidationError):
            return None

    # --- out --------------------------------------------------------------------------------

    async def _edited(self, chat: int, message_id: int, text: str) -> bool:
        """Replace a preview's text; False when the preview cannot be edited (deleted, too old):
        the reply is then sent as a new message."""
        try:
            await self.api.edit_message_text(chat, message_id, text)
        except BotApiError as exc:
            if exc.transient:
                raise
            log.info(
                "telegram %s: preview %s not editable (%s); sending anew",
                self.account.account_id,
                message_id,
                exc,
            )
            return False
        return True

    async def deliver(self, out: OutboundMessage, progress: DeliveryProgress) -> None:
        chat = chat_of(out.peer, out.reply_to)
        if chat is None:
            raise PermanentSendError(f"the reply names no Telegram chat (peer {out.peer!r})")
        try:
            thread = int(out.thread_id) if out.thread_id else None
            answered = int(out.reply_to.rsplit(":", 1)[1]) if out.reply_to and ":" in out.reply_to else None
        except ValueError:
            raise PermanentSendError(
                f"malformed thread or message id in the reply ({out.thread_id!r}, {out.reply_to!r})"
            ) from None
        pieces = split_text(out.text, self.limit)
        preview = await self._take_preview(out.turn_id) if not progress.sent else None
        for index, piece in enumerate(pieces):
            if index < len(progress.sent):
                continue
            last = index == len(pieces) - 1
            try:
                if index == 0 and preview is not None and await self._edited(chat, preview, piece):
                    sent_id = preview
                else:
                    quote = self.reply_to_mode == "all" or (self.reply_to_mode != "off" and index == 0)
                    message = await self.api.send_message(
                        chat, piece, thread_id=thread, reply_to=answered if quote else None
                    )
                    sent_id = message.message_id
            except BotApiError as exc:
                if exc.transient:
                    raise TransientSendError(str(exc), exc.retry_after) from None
                raise PermanentSendError(
                    f"Telegram refused the reply: {exc.status} {exc.description}"
                ) from None
            except NetworkError as exc:
                raise TransientSendError(str(exc)) from None
            await progress.part_sent(str(sent_id), last=last)
