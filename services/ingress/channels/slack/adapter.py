"""One Slack app account: Socket Mode or the Events API over HTTP in, `chat.postMessage` out.

In, `mode: "socket"` (OpenClaw's default, also when `mode` is unset): after `auth.test` the
account opens Socket Mode connections with its app-level token (socketmode.py) and serves no
webhook; each `events_api` envelope's payload takes the same path as an HTTP event (`accept`)
and is acknowledged only once stored.

In, `mode: "http"`: Slack POSTs each event to `webhookPath` (default `/slack/events`) on
ingress's own HTTP server. The v0 signature is checked over the raw body (constant time,
5-minute window) before anything is parsed; `url_verification` is answered with its challenge.

Either way a message is handed to the access policy and stored, and only then acknowledged
(well inside Slack's 3 s: one JetStream publish), so a failure to store is a 503 (HTTP) or no
ack (Socket Mode) and Slack delivers it again. A redelivery (`X-Slack-Retry-Num`,
`retry_attempt`) and the `message` + `app_mention` pair Slack sends for one mention are the same
platform id (`<channel>:<ts>`) and so one turn (the inbound stream's dedupe).

Files (a `file_share` message's `files`, as the plugin takes them in): once the policy admitted
the message, and before it is stored, each of the first `MAX_FILES` is downloaded (`..media`)
within `mediaMaxMb` (default 20, the plugin's) from `url_private_download` (else
`url_private`) with the bot token — only from Slack's hosts or the Web API's origin, redirects
included; Slack's sign-in page in place of a file (a token without `files:read`) is a failure.
A file that cannot be taken (deleted, hidden by the workspace's history limit, external, too
large, refused) is named in the text instead. Downloading comes before the acknowledgement: a
message with large files may be acknowledged after Slack's 3 s, and Slack's retry of it is the
same turn.

Threads, as OpenClaw's Slack plugin: the account's `replyToMode` for the message's chat
(`replyToModeByChatType`, a channel's own in `channels`; default `off`) decides where its reply
goes — a thread reply in its thread, a top-level message in a thread under it unless `off` —
and a channel thread (or a channel root expected to start one) gets a session of its own
(`sessionThreadId`, made `<base>:thread:<ts>` by the router); clawmesh.channels.slack decides
both. A config reload applies from the next message.

Out: `deliver` posts the reply with `chat.postMessage` (`thread_ts` the thread decided when the
message came in), split at `textChunkLimit` (default and at most 4000).

Previews (`streaming`, as the plugin reads it: `clawmesh.channels.slack.streaming_mode`; OpenClaw's
default `progress` is served as `off`): with `partial` the replica that took the message posts a
preview of the answer where the reply will go (its thread) as soon as there is text, and
replaces its text (`chat.update`) at most once per `EDIT_INTERVAL` — the plugin's draft path
(`createSlackDraftStream`); its native streaming (`chat.startStream`) is served by the same
path. The preview shows the reply's first message, cut to what `chat.update` takes (4000 bytes).
The final reply then replaces the preview in place (its first part; the rest follow as new
messages), or is posted anew when the preview cannot be edited (`message_not_found`, …; a
preview still there is then deleted, as the plugin clears its draft). `block` is served as
`partial` (logged once). What is not Slack's is shared with Telegram and Discord (`..preview`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, ClassVar, Final, Literal
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
    EDIT_TEXT_MAX_BYTES,
    MAX_FILES,
    TEXT_LIMIT,
    BotIdentity,
    Envelope,
    SlackCredentials,
    SlackFile,
    SlackInbound,
    SocketFrame,
    channel_requires_mention,
    edit_text_bytes,
    file_url_refused,
    fit_edit,
    media_budget,
    normalize_event,
    reply_thread_ts,
    resolve_reply_to_mode,
    session_thread_ts,
    socket_payload,
    streaming_mode,
    unexpected_html,
    verify_signature,
)
from clawmesh.channels.text import split_text
from clawmesh.config import ChannelAccount, ConfigError, Problem
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
from ..media import InboundFile, MediaError, missing_line
from ..preview import Previews
from .webapi import DownloadError, NetworkError, WebApi, WebApiError

if TYPE_CHECKING:
    from .socketmode import SocketModeClient

__all__ = ["SlackAdapter"]

log = logging.getLogger("clawmesh.ingress.slack")

MAX_EVENT_BYTES: Final = 1 << 20
# one file's download, all of it (the plugin's SLACK_MEDIA_TOTAL_TIMEOUT_MS)
DOWNLOAD_TIMEOUT: Final = 120.0
_envelope = msgspec.json.Decoder(Envelope)


class SlackAdapter:
    channel: ClassVar[str] = "slack"
    # at most one preview edit per turn this often: the plugin's draft throttle
    # (`createSlackDraftStream`, DEFAULT_THROTTLE_MS). `chat.update` is a Tier 3 method (50+ a
    # minute per workspace, bursts allowed); a 429 stops a preview (the final reply still comes)
    EDIT_INTERVAL: ClassVar[float] = 1.0

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
        self._live = LiveSettings(ctx.holder, self.channel, account)
        s = account.settings
        self.mode = credentials.mode
        base = s.api_base_url or DEFAULT_API_BASE_URL
        parsed = urlsplit(base)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ConfigError(
                [Problem(f"{account.path}.apiBaseUrl", f"expected an http(s) URL, got {base!r}")]
            )
        path = s.webhook_path or DEFAULT_WEBHOOK_PATH
        if self.mode == "http" and not path.startswith("/"):  # (Socket Mode serves no path)
            raise ConfigError([Problem(f"{account.path}.webhookPath", f"must start with '/', got {path!r}")])
        self.path = path
        self._secret = credentials.signing_secret
        self.api = WebApi(base, credentials.bot_token)
        self._api_base = base
        self.bot: BotIdentity | None = None
        self.error: str | None = None  # why this account stays off
        self._tasks = BackgroundTasks()
        self.previews = Previews(
            ctx, self.channel, account.account_id, str, failures=(WebApiError, NetworkError), log=log
        )
        self._starting: asyncio.Task[None] | None = None
        self.socket: SocketModeClient | None = None
        if self.mode == "socket":
            # imported here: the WebSocket client is loaded only by an ingress running Socket Mode
            from .socketmode import SocketModeClient

            self.socket = SocketModeClient(
                self.api,
                credentials.app_token,
                self._on_envelope,
                account=account.account_id,
                token_path=f"{account.path}.appToken",
                counters=ctx.counters,
            )

    @property
    def settings(self) -> ChannelAccount:
        """The account's settings in the current config (its tokens, mode and API base are the
        ones it started with)."""
        return self._live.get()

    @property
    def streaming(self) -> Literal["partial", "off"]:
        """The account's preview mode as served: `partial` or `off` (`block` is served as
        `partial`, said once in the log; `progress`, OpenClaw's default, as `off`)."""
        mode = streaming_mode(
            (self.ctx.holder.current.document.channels or {}).get(self.channel), self.account.account_id
        )
        return self.previews.served(mode, "one preview whose text grows as the answer arrives")

    @property
    def limit(self) -> int:
        configured = self.settings.text_chunk_limit
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
                    self.error = f"auth.test refused the bot token ({exc.error})"
                    log.error("slack %s: %s; this account stays off", acct, self.error)
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
        if self.socket is not None:
            log.info("slack %s: bot %s of team %s ready (Socket Mode)", acct, self.bot.name, self.bot.team_id)
            self.socket.start()
            return
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
        if self.socket is not None:
            await self.socket.stop()

    async def stop(self) -> None:
        await self.stop_inbound()
        await self._tasks.cancel_all()
        await self.api.close()

    def status(self) -> dict[str, Any]:
        """`connection` (Socket Mode): connecting, connected, reconnecting or stopped (with
        `error` saying why, when it was not asked to stop)."""
        out: dict[str, Any] = {
            "channel": self.channel,
            "account": self.account.account_id,
            "mode": self.mode,
            "ready": self.bot is not None,
            "bot": self.bot.name if self.bot else None,
            "team": self.bot.team_id if self.bot else None,
        }
        if self.socket is not None:
            out.update(self.socket.status())
            out["ready"] = self.bot is not None and self.socket.connected
            if self.error is not None:
                out["connection"] = "stopped"
        if self.error is not None:
            out["error"] = self.error
        return out

    def webhook_routes(self) -> list[WebhookRoute]:
        if self.socket is not None:  # Socket Mode: no Request URL
            return []
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

    async def _on_envelope(self, frame: SocketFrame) -> None:
        """A Socket Mode `events_api` envelope: its payload as if POSTed. Returns when it may be
        acknowledged (stored, or nothing to store); NotAcknowledged when it was not stored."""
        from .socketmode import NotAcknowledged

        counters = self.ctx.counters
        try:
            envelope = socket_payload(frame)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            counters["slack_events_malformed"] += 1
            log.warning(
                "slack %s: envelope %s is not a Slack event (%s); acknowledged and dropped",
                self.account.account_id,
                frame.envelope_id,
                exc,
            )
            return
        if frame.retry_attempt:
            log.info(
                "slack %s: envelope %s is Slack's retry %d (%s)",
                self.account.account_id,
                frame.envelope_id,
                frame.retry_attempt,
                frame.retry_reason or "no reason given",
            )
        try:
            await self.accept(envelope)
        except Unavailable as exc:
            raise NotAcknowledged(str(exc)) from None

    async def accept(self, envelope: Envelope) -> None:
        """Store one event's message (or drop it: not one to answer, or refused by the access
        policy). Raises Unavailable when it could not be stored."""
        assert self.bot is not None
        sl = normalize_event(envelope, self.bot)
        counters = self.ctx.counters
        if sl is None:
            counters["slack_events_ignored"] += 1
            return
        acct = self.account.account_id
        team = self.bot.team_id or None
        settings = self.settings
        mode = resolve_reply_to_mode(settings, sl.chat_type, sl.channel_id, team)
        files, missing = self._files(sl)
        inbound = InboundMessage(
            id=turn_id_for(self.channel, acct, sl.platform_message_id),
            channel=self.channel,
            account_id=acct,
            peer=sl.peer,
            team_id=team,
            sender=sl.sender,
            text="\n".join(t for t in (sl.text, *missing) if t),
            message_id=sl.platform_message_id,
            thread_id=reply_thread_ts(sl, mode),
            received_at=now(),
            reply_events="final",
        )
        require = channel_requires_mention(settings, sl.channel_id, team) if sl.is_room else False

        def in_thread(message: InboundMessage, mentioned: bool) -> InboundMessage:
            thread = session_thread_ts(sl, mode, require_mention=require, mentioned=mentioned)
            return message if thread is None else msgspec.structs.replace(message, session_thread_id=thread)

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
            # the thread a reply is in: its own group history (OpenClaw's thread.historyScope
            # default, "thread"); the policy itself reads no topics on Slack
            thread_id=sl.thread_ts if sl.is_thread_reply else None,
        )
        result = await self.inbound.submit(
            request,
            inbound,
            follow=self.streaming == "partial",
            on_admit=in_thread,
            files=files,
            media_limit=media_budget(settings),
        )
        counters["slack_events_accepted"] += 1
        if isinstance(result.denied, PairingChallenge):
            self._tasks.spawn(self._answer_denied(sl, result.denied.reply))
        if result.turn is not None:
            self._tasks.spawn(self._stream(result.turn, sl.channel_id, inbound.thread_id))

    def _files(self, sl: SlackInbound) -> tuple[list[InboundFile], list[str]]:
        """The message's files for ingress to take in once the policy admits it (the first
        `MAX_FILES`), and a line for each one Slack serves from nowhere (deleted, hidden by the
        workspace's history limit, external) and for those past `MAX_FILES`: the agent learns a
        file was sent, as for one that could not be downloaded."""
        files: list[InboundFile] = []
        missing: list[str] = []
        for f in sl.files[:MAX_FILES]:
            if f.unavailable:
                self.ctx.counters["slack_files_unavailable"] += 1
                log.info(
                    "slack %s: %s %s not taken in: %s",
                    self.account.account_id,
                    f.kind,
                    f.file_id,
                    f.unavailable,
                )
                missing.append(missing_line(f.kind, "it could not be received"))
                continue
            files.append(InboundFile(f.kind, f.name, f.mime, f.size, self._fetcher(f)))
        extra = len(sl.files) - MAX_FILES
        if extra > 0:
            self.ctx.counters["slack_files_unavailable"] += extra
            missing.append(
                f"[{extra} more file{'s were' if extra > 1 else ' was'} sent; "
                f"at most {MAX_FILES} of a message are taken in]"
            )
        return files, missing

    def _fetcher(self, f: SlackFile) -> Callable[[int], Awaitable[bytes]]:
        def refused(url: str) -> str | None:
            return file_url_refused(url, self._api_base)

        async def fetch(limit: int) -> bytes:
            try:
                async with asyncio.timeout(DOWNLOAD_TIMEOUT):
                    data, content_type = await self.api.download(f.url, limit, refused)
            except (DownloadError, NetworkError) as exc:
                raise MediaError(str(exc)) from None
            except TimeoutError:
                raise MediaError(f"not downloaded within {DOWNLOAD_TIMEOUT:.0f}s") from None
            if unexpected_html(content_type, data, f):
                # Slack's sign-in page: the token may not read files (no `files:read`)
                raise MediaError("an HTML page instead of the file (does the bot token have files:read?)")
            return data

        return fetch

    async def _answer_denied(self, sl: SlackInbound, text: str) -> None:
        # the pairing challenge goes to the DM itself, never a thread (OpenClaw's
        # authorizeSlackDirectMessage sends it without threadTs)
        with best_effort(self.ctx.counters, "slack_policy_reply", log=log):
            await self.api.post_message(sl.channel_id, text)

    # --- streamed previews (the shared part: `..preview`) ----------------------------------

    def _shown(self, text: str) -> str:
        """What a preview shows of the text so far: the reply's first message, trailing
        whitespace dropped, cut to what `chat.update` takes (the plugin cuts its edits so)."""
        return fit_edit(split_text(text, self.limit)[0].rstrip())

    async def _stream(self, turn: PendingTurn, channel: str, thread_ts: str | None) -> None:
        """Follow the turn's text as it is generated and show it in a preview message where the
        reply will go (`thread_ts`: the thread decided for it), edited at a bounded rate; the
        final reply (`deliver`) takes the preview over. An edit that would not change the text
        is not made (the plugin's `lastSentKey`)."""
        shown = ""

        async def send(text: str) -> str:
            nonlocal shown
            ts = await self.api.post_message(channel, text, thread_ts=thread_ts)
            if not ts:
                raise WebApiError("chat.postMessage", 200, "an answer without a ts")
            shown = text
            return ts

        async def edit(ts: str, text: str) -> None:
            nonlocal shown
            if text != shown:
                await self.api.update(channel, ts, text)
                shown = text

        await self.previews.stream(
            turn,
            channel,
            send=send,
            edit=edit,
            shown=self._shown,
            interval=lambda: self.EDIT_INTERVAL,
            timeout=self.inbound.turns.turn_timeout(),
        )

    # --- out --------------------------------------------------------------------------------

    async def deliver(self, out: OutboundMessage, progress: DeliveryProgress) -> None:
        # the channel from the answered message's id (`<channel>:<ts>`); a DM peer is a user id
        channel = out.reply_to.rsplit(":", 1)[0] if out.reply_to and ":" in out.reply_to else None
        channel = channel or (out.peer.id if out.peer else None)
        if not channel:
            raise PermanentSendError(f"the reply names no Slack channel (peer {out.peer!r})")
        target = channel
        pieces = split_text(out.text, self.limit)
        gone = False  # the preview was deleted meanwhile: nothing to clear

        async def send(index: int, piece: str) -> str:
            return await self.api.post_message(target, piece, thread_ts=out.thread_id)

        async def edit(ts: str, piece: str) -> None:
            nonlocal gone
            if edit_text_bytes(piece) > EDIT_TEXT_MAX_BYTES:  # what Slack would answer
                raise WebApiError("chat.update", 200, "msg_too_long")
            try:
                await self.api.update(target, ts, piece)
            except WebApiError as exc:
                gone = exc.error == "message_not_found"
                raise

        async def discard(ts: str) -> None:
            # a preview the final reply could not replace (too long for an edit, not editable
            # any more) would show a stale draft above it: the plugin deletes its draft then too
            if not gone:
                await self.api.delete(target, ts)

        try:
            await self.previews.deliver(
                out.turn_id,
                pieces,
                progress,
                send=send,
                edit=edit,
                # message_not_found (deleted meanwhile), cant_update_message, edit_window_closed,
                # msg_too_long, …: posted anew, as the plugin falls back to a normal send on an
                # edit failure; rate limits, 5xx and network errors are retried
                not_editable=lambda exc: isinstance(exc, WebApiError) and not exc.transient,
                recorded=self.streaming == "partial",
                discard=discard,
            )
        except WebApiError as exc:
            if exc.transient:
                raise TransientSendError(str(exc), exc.retry_after) from None
            raise PermanentSendError(f"Slack refused the reply: {exc.error}") from None
        except NetworkError as exc:
            raise TransientSendError(str(exc)) from None
