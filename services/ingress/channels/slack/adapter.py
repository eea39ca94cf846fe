"""One Slack app account: the Events API over HTTP in, `chat.postMessage` out.

In: Slack POSTs each event to `webhookPath` (default `/slack/events`) on ingress's own HTTP
server. The v0 signature is checked over the raw body (constant time, 5-minute window) before
anything is parsed; `url_verification` is answered with its challenge; a message is handed to
the access policy and stored, and only then acknowledged (well inside Slack's 3 s: one
JetStream publish), so a failure to store is a 503 Slack retries. A retry (`X-Slack-Retry-Num`)
and the `message` + `app_mention` pair Slack sends for one mention are the same platform id
(`<channel>:<ts>`) and so one turn (the inbound stream's dedupe).

Out: `deliver` posts the reply with `chat.postMessage` into the thread it answers (in channels
a reply opens a thread under the message, as OpenClaw's default), split at `textChunkLimit`
(default and at most 4000).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any, ClassVar, Final
from urllib.parse import urlsplit

import msgspec
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from clawmesh.bus import ServiceContext
from clawmesh.channels import AccessRequest, PairingChallenge
from clawmesh.channels.accounts import AccountSettings
from clawmesh.channels.slack import (
    DEFAULT_API_BASE_URL,
    DEFAULT_WEBHOOK_PATH,
    TEXT_LIMIT,
    BotIdentity,
    Envelope,
    SlackCredentials,
    SlackInbound,
    normalize_event,
    verify_signature,
)
from clawmesh.channels.text import split_text
from clawmesh.config import ConfigError, Problem
from clawmesh.errors import best_effort
from clawmesh.wire import InboundMessage, OutboundMessage, now

from ...turns import Unavailable, turn_id_for
from ..base import BackgroundTasks, DeliveryProgress, PermanentSendError, TransientSendError, WebhookRoute
from ..inbound import ChannelInbound
from .webapi import NetworkError, WebApi, WebApiError

__all__ = ["SlackAdapter"]

log = logging.getLogger("clawmesh.ingress.slack")

MAX_EVENT_BYTES: Final = 1 << 20
_envelope = msgspec.json.Decoder(Envelope)


class SlackAdapter:
    channel: ClassVar[str] = "slack"

    def __init__(
        self,
        ctx: ServiceContext,
        account: AccountSettings,
        credentials: SlackCredentials,
        inbound: ChannelInbound,
    ) -> None:
        self.ctx = ctx
        self.account = account
        self.inbound = inbound
        s = account.settings
        if s.mode not in (None, "http"):
            raise ConfigError(
                [
                    Problem(
                        f"{account.path}.mode",
                        f'only "http" (Events API) is served by clawmesh, got {s.mode!r}',
                    )
                ]
            )
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
        self._secret = credentials.signing_secret
        self.api = WebApi(base, credentials.bot_token)
        self.bot: BotIdentity | None = None
        self._tasks = BackgroundTasks()
        self._starting: asyncio.Task[None] | None = None

    @property
    def limit(self) -> int:
        configured = self.account.settings.text_chunk_limit
        return min(configured, TEXT_LIMIT) if configured and configured > 0 else TEXT_LIMIT

    # --- life cycle -------------------------------------------------------------------------

    async def start(self) -> None:
        self._starting = asyncio.create_task(self._start())

    async def _start(self) -> None:
        acct = self.account.account_id
        delay = 1.0
        while True:
            try:
                me = await self.api.auth_test()
                break
            except WebApiError as exc:
                if not exc.transient:
                    log.error(
                        "slack %s: auth.test refused the bot token (%s); this account stays off",
                        acct,
                        exc.error,
                    )
                    return
                log.warning("slack %s: auth.test failed (%s); retrying in %.0fs", acct, exc, delay)
            except NetworkError as exc:
                log.warning("slack %s: Web API unreachable (%s); retrying in %.0fs", acct, exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)
        self.bot = BotIdentity(
            user_id=str(me.get("user_id") or ""),
            team_id=str(me.get("team_id") or ""),
            name=str(me.get("user") or ""),
        )
        log.info(
            "slack %s: bot %s of team %s ready (events on %s)",
            acct,
            self.bot.name,
            self.bot.team_id,
            self.path,
        )

    async def stop_inbound(self) -> None:
        if self._starting is not None:
            self._starting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._starting

    async def stop(self) -> None:
        await self.stop_inbound()
        await self._tasks.cancel_all()
        await self.api.close()

    def status(self) -> dict[str, Any]:
        return {
            "channel": self.channel,
            "account": self.account.account_id,
            "mode": "http",
            "ready": self.bot is not None,
            "bot": self.bot.name if self.bot else None,
            "team": self.bot.team_id if self.bot else None,
        }

    def webhook_routes(self) -> list[WebhookRoute]:
        return [WebhookRoute(host=None, port=None, path=self.path, handler=self.on_event)]

    # --- in ---------------------------------------------------------------------------------

    async def on_event(self, request: Request) -> Response:
        counters = self.ctx.counters
        body = await request.body()
        if len(body) > MAX_EVENT_BYTES:
            return JSONResponse({"ok": False, "error": "request too large"}, status_code=413)
        why = verify_signature(
            self._secret,
            request.headers.get("x-slack-request-timestamp", ""),
            request.headers.get("x-slack-signature", ""),
            body,
            time.time(),
        )
        if why is not None:
            counters["slack_events_refused"] += 1
            return JSONResponse({"ok": False, "error": why}, status_code=401)
        try:
            envelope = _envelope.decode(body)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            counters["slack_events_malformed"] += 1
            return JSONResponse({"ok": False, "error": f"not a Slack event: {exc}"}, status_code=400)
        if envelope.type == "url_verification":
            return PlainTextResponse(envelope.challenge or "")
        if self.bot is None:
            return JSONResponse(
                {"ok": False, "error": "starting"}, status_code=503, headers={"Retry-After": "1"}
            )
        try:
            await self.accept(envelope)
        except Unavailable as exc:
            return JSONResponse({"ok": False, "error": str(exc)}, status_code=503)
        return Response(status_code=200)

    async def accept(self, envelope: Envelope) -> None:
        assert self.bot is not None
        sl = normalize_event(envelope, self.bot)
        counters = self.ctx.counters
        if sl is None:
            counters["slack_events_ignored"] += 1
            return
        acct = self.account.account_id
        inbound = InboundMessage(
            id=turn_id_for(self.channel, acct, sl.platform_message_id),
            channel=self.channel,
            account_id=acct,
            peer=sl.peer,
            team_id=self.bot.team_id or None,
            sender=sl.sender,
            text=sl.text,
            message_id=sl.platform_message_id,
            thread_id=sl.thread_ts,
            received_at=now(),
            reply_events="final",
        )
        request = AccessRequest(
            channel=self.channel,
            account=acct,
            chat_type=sl.chat_type,
            sender_id=sl.sender.id,
            group_id=sl.channel_id if sl.chat_type != "direct" else None,
            team_id=self.bot.team_id or None,
            # OpenClaw gates mentions in channels only, never in group DMs
            was_mentioned=sl.was_mentioned or not sl.is_room,
            mentions_others=sl.mentions_others,
            can_detect_mention=bool(self.bot.user_id),
            text=sl.text,
        )
        result = await self.inbound.submit(request, inbound, follow=False)
        counters["slack_events_accepted"] += 1
        if isinstance(result.denied, PairingChallenge):
            self._tasks.spawn(self._answer_denied(sl, result.denied.reply))

    async def _answer_denied(self, sl: SlackInbound, text: str) -> None:
        with best_effort(self.ctx.counters, "slack_policy_reply", log=log):
            await self.api.post_message(sl.channel_id, text, thread_ts=sl.thread_ts)

    # --- out --------------------------------------------------------------------------------

    async def deliver(self, out: OutboundMessage, progress: DeliveryProgress) -> None:
        # the channel from the answered message's id (`<channel>:<ts>`); a DM peer is a user id
        channel = out.reply_to.rsplit(":", 1)[0] if out.reply_to and ":" in out.reply_to else None
        channel = channel or (out.peer.id if out.peer else None)
        if not channel:
            raise PermanentSendError(f"the reply names no Slack channel (peer {out.peer!r})")
        pieces = split_text(out.text, self.limit)
        for index, piece in enumerate(pieces):
            if index < len(progress.sent):
                continue
            try:
                ts = await self.api.post_message(channel, piece, thread_ts=out.thread_id)
            except WebApiError as exc:
                if exc.transient:
                    raise TransientSendError(str(exc), exc.retry_after) from None
                raise PermanentSendError(f"Slack refused the reply: {exc.error}") from None
            except NetworkError as exc:
                raise TransientSendError(str(exc)) from None
            await progress.part_sent(ts, last=index == len(pieces) - 1)
