"""One Telegram bot account: updates in (long polling or webhook), replies out.

In: each update is normalised (`clawmesh.channels.telegram`), handed to the access policy and
stored (`ChannelInbound`). Out: `deliver` sends a reply with `sendMessage`, split at
`textChunkLimit` (at most 4096), into the chat and forum topic it answers; with `streaming`
`partial` or `block` the replica that took the message sends a preview as the answer's text
arrives and edits it at most once per `EDIT_INTERVAL`; the final reply then replaces the
preview in place (its first part) instead of arriving as a new message (`..preview`: what every
platform with previews shares).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar, Final
from urllib.parse import urlsplit

import msgspec
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
from clawmesh.wire import InboundMessage, OutboundMessage, now

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
from ..media import InboundFile, MediaError
from ..preview import Previews
from .botapi import BotApi, BotApiError, NetworkError
from .poller import ALLOWED_UPDATES, Poller

__all__ = ["TelegramAdapter"]

log = logging.getLogger("clawmesh.ingress.telegram")

DEFAULT_WEBHOOK_HOST: Final = "127.0.0.1"
DEFAULT_WEBHOOK_PORT: Final = 8787
DEFAULT_WEBHOOK_PATH: Final = "/telegram-webhook"
MAX_UPDATE_BYTES: Final = 1 << 20
_SECRET_TOKEN: Final = re.compile(r"[A-Za-z0-9_-]{1,256}")
_update = msgspec.json.Decoder(Update)


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
        self.previews = Previews(
            ctx, self.channel, account.account_id, int, failures=(BotApiError, NetworkError), log=log
        )
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
        budget = media_budget(self.settings)
        files, missing = self._files(tg, budget)
        text = "\n".join(t for t in (tg.text, missing) if t)
        inbound = InboundMessage(
            id=turn_id_for(self.channel, acct, tg.platform_message_id),
            channel=self.channel,
            account_id=acct,
            peer=tg.peer,
            parent_peer=tg.parent_peer,
            sender=tg.sender,
            text=text,
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
        result = await self.inbound.submit(
            request, inbound, follow=self.streaming, files=files, media_limit=budget
        )
        counters["telegram_updates_accepted"] += 1
        if isinstance(result.denied, PairingChallenge):
            self._tasks.spawn(self._answer_denied(tg, result.denied.reply))
        if result.turn is not None:
            self._tasks.spawn(self._stream(result.turn, tg))

    def _files(self, tg: TelegramInbound, budget: int) -> tuple[list[InboundFile], str]:
        """The message's files for ingress to take in once the policy admits it: the largest size
        of a photo that fits `mediaMaxMb`, and every document, voice message, video, …"""
        files: list[InboundFile] = []
        missing = ""
        if tg.photos:
            photo = pick_photo(tg.photos, budget)
            if photo is None:
                self.ctx.counters["media_too_large"] += 1
                missing = f"[a photo was sent; it is larger than the {budget} bytes taken in]"
            else:
                name = f"photo-{tg.message_id}.jpg"
                files.append(
                    InboundFile("photo", name, "image/jpeg", photo.file_size, self._fetcher(photo.file_id))
                )
        files.extend(InboundFile(f.kind, f.name, f.mime, f.size, self._fetcher(f.file_id)) for f in tg.files)
        return files, missing

    def _fetcher(self, file_id: str) -> Callable[[int], Awaitable[bytes]]:
        async def fetch(limit: int) -> bytes:
            try:
                return await self.api.download(file_id, limit)
            except (BotApiError, NetworkError) as exc:
                raise MediaError(str(exc)) from None

        return fetch

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

    # --- streamed previews (the shared part: `..preview`) ----------------------------------

    async def _stream(self, turn: PendingTurn, tg: TelegramInbound) -> None:
        """Follow the turn's text as it is generated and show it in a preview message, edited at
        a bounded rate; the final reply (`deliver`) takes the preview over."""

        async def send(text: str) -> int:
            sent = await self.api.send_message(
                tg.chat_id,
                text,
                thread_id=tg.reply_thread_id,
                reply_to=tg.message_id if self.reply_to_mode != "off" else None,
            )
            return sent.message_id

        async def edit(message_id: int, text: str) -> None:
            await self.api.edit_message_text(tg.chat_id, message_id, text)

        await self.previews.stream(
            turn,
            tg.chat_id,
            send=send,
            edit=edit,
            shown=lambda text: split_text(text, self.limit)[0],
            interval=lambda: self.EDIT_INTERVAL,
            timeout=self.inbound.turns.turn_timeout(),
        )

    # --- out --------------------------------------------------------------------------------

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

        async def send(index: int, piece: str) -> int:
            quote = self.reply_to_mode == "all" or (self.reply_to_mode != "off" and index == 0)
            message = await self.api.send_message(
                chat, piece, thread_id=thread, reply_to=answered if quote else None
            )
            return message.message_id

        async def edit(message_id: int, piece: str) -> None:
            await self.api.edit_message_text(chat, message_id, piece)

        try:
            await self.previews.deliver(
                out.turn_id,
                pieces,
                progress,
                send=send,
                edit=edit,
                # deleted, too old, …: the reply is sent anew (429 and 5xx are retried)
                not_editable=lambda exc: isinstance(exc, BotApiError) and not exc.transient,
                recorded=self.streaming,
            )
        except BotApiError as exc:
            if exc.transient:
                raise TransientSendError(str(exc), exc.retry_after) from None
            raise PermanentSendError(f"Telegram refused the reply: {exc.status} {exc.description}") from None
        except NetworkError as exc:
            raise TransientSendError(str(exc)) from None
