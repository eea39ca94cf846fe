"""One Discord bot account: the Gateway in, REST `POST /channels/{id}/messages` out.

In: `MESSAGE_CREATE` dispatches (gateway.py: one replica per bot token, resumed across
reconnects and replicas) are normalised (`clawmesh.channels.discord`), handed to the access
policy and stored (`ChannelInbound`). A thread's parent channel (its `parentPeer`, and the guild
channel entry its settings fall back to) and a channel's type when the dispatch lacks
`channel_type` come from `GUILD_CREATE` / `THREAD_CREATE` / `CHANNEL_CREATE`, else from
`GET /channels/{id}`, kept in a bounded cache.

Out: `deliver` posts the reply into the channel (or thread, or DM) of the message it answers,
split at `maxLinesPerMessage` lines (default 17) and `textChunkLimit` characters (default and at
most 2000), links not unfurled (`suppressEmbeds`, default true), as a native reply to that
message per `replyToMode` (OpenClaw's default `off`: none). A reply with no answered message (an approval
notice, the message tool) goes to its peer: a user's DM channel is opened first.

Previews (`streaming.mode`, OpenClaw's default `off`): with `partial` the replica that took the
message posts a preview of the answer once it has `MIN_PREVIEW_CHARS` of text and edits it
(`PATCH …/messages/{id}`) at most once per `EDIT_INTERVAL`, showing the reply's first message;
the final reply then replaces the preview in place (its first part; the rest follow as new
messages), or is sent anew when the preview is gone (404 `Unknown Message`). `block` is served
as `partial` (logged once); `progress` as `off` (the config loader warns). What is not
Discord's is shared with Telegram (`..preview`).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from typing import Any, ClassVar, Final

import msgspec

from clawmesh.bus import ServiceContext
from clawmesh.channels import AccessRequest, PairingChallenge
from clawmesh.channels.accounts import AccountSettings
from clawmesh.channels.discord import (
    DM,
    THREAD_TYPES,
    BotIdentity,
    DiscordInbound,
    Message,
    StreamingMode,
    api_base_url,
    max_lines,
    normalize_message,
    preview_mode,
    text_chunk_limit,
)
from clawmesh.channels.text import cap_lines, split_text
from clawmesh.config import ChannelAccount
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
from ..preview import Previews
from .gateway import Gateway
from .rest import NetworkError, RestApi, RestError

__all__ = ["DiscordAdapter"]

log = logging.getLogger("clawmesh.ingress.discord")

_CHANNELS_KEPT: Final = 50_000
# OpenClaw's `minInitialChars` for a Discord draft: the first preview waits for this much text, so
# the notification it causes says something
MIN_PREVIEW_CHARS: Final = 30


class _ChannelInfo(msgspec.Struct):
    id: str
    type: int = 0
    parent_id: str | None = None


class _Guild(msgspec.Struct):
    channels: list[_ChannelInfo] = []
    threads: list[_ChannelInfo] = []


_message = msgspec.json.Decoder(Message)
_channel = msgspec.json.Decoder(_ChannelInfo)
_guild = msgspec.json.Decoder(_Guild)


class DiscordAdapter:
    channel: ClassVar[str] = "discord"
    # at most one preview edit per turn this often. Discord allows about 5 message edits per 5 s
    # in a channel (the bucket of `PATCH /channels/{id}/messages/{id}`): 1.2 s (OpenClaw's
    # `throttleMs` for Discord drafts) keeps one preview under that with room for the final
    # edit and other replies there; concurrent previews in one channel are held by the REST
    # client's bucket (`X-RateLimit-Remaining: 0`), a 429 stops a preview (the final reply
    # still comes)
    EDIT_INTERVAL: ClassVar[float] = 1.2

    def __init__(
        self, ctx: ServiceContext, account: AccountSettings, token: str, inbound: ChannelInbound
    ) -> None:
        self.ctx = ctx
        self.account = account
        self.inbound = inbound
        self._live = LiveSettings(ctx.holder, self.channel, account)
        self.api = RestApi(api_base_url(account.settings, ctx.holder.current.env, account.path), token)
        self.gateway = Gateway(
            self.api,
            token,
            ctx.leases,
            ctx.kv["channels"],
            ctx.layout.lease_seconds,
            self._ready,
            self._dispatch,
            account=account.account_id,
        )
        self.bot: BotIdentity | None = None
        self._channels: OrderedDict[str, tuple[int, str | None]] = OrderedDict()  # id -> type, parent
        self._dms: OrderedDict[str, str] = OrderedDict()  # user id -> DM channel id
        self._tasks = BackgroundTasks()
        self.previews = Previews(
            ctx, self.channel, account.account_id, str, failures=(RestError, NetworkError), log=log
        )
        self._block_noted = False

    # --- settings a config reload changes at once (from the next message on) ----------------

    @property
    def settings(self) -> ChannelAccount:
        """This account's settings in the current config (the token and API base are the ones
        it started with: those need an ingress restart)."""
        return self._live.get()

    @property
    def streaming(self) -> StreamingMode:
        """The account's preview mode as served: `partial` or `off` (`block` is served as
        `partial`, said once in the log; `progress` as `off`, said by the config loader)."""
        mode = preview_mode(
            (self.ctx.holder.current.document.channels or {}).get(self.channel), self.account.account_id
        )
        if mode == "block":
            if not self._block_noted:
                self._block_noted = True
                log.info(
                    'discord %s: streaming mode "block" is served as "partial" (one preview edited '
                    "as the text arrives; OpenClaw's draft-sized chunks are not implemented)",
                    self.account.account_id,
                )
            return "partial"
        return "partial" if mode == "partial" else "off"

    def _pieces(self, text: str) -> list[str]:
        """A reply's messages: at most `maxLinesPerMessage` lines and `textChunkLimit` characters."""
        settings = self.settings
        limit = text_chunk_limit(settings)
        return [p for part in cap_lines(text, max_lines(settings)) for p in split_text(part, limit)]

    # --- life cycle -------------------------------------------------------------------------

    async def start(self) -> None:
        # in the background: an unreachable Discord must not keep ingress from starting
        self.gateway.start()

    async def stop_inbound(self) -> None:
        await self.gateway.stop()

    async def stop(self) -> None:
        await self.stop_inbound()
        await self._tasks.cancel_all()
        await self.api.close()

    def status(self) -> dict[str, Any]:
        return {
            "channel": self.channel,
            "account": self.account.account_id,
            "mode": "gateway",
            "ready": self.bot is not None,
            "bot": self.bot.username if self.bot else None,
            **self.gateway.status(),
        }

    def webhook_routes(self) -> list[WebhookRoute]:
        return []

    # --- in ---------------------------------------------------------------------------------

    async def _ready(self, user: dict[str, Any]) -> None:
        self.bot = BotIdentity(id=str(user.get("id", "")), username=str(user.get("username") or ""))
        log.info("discord %s: bot %s ready (gateway)", self.account.account_id, self.bot.username)

    async def _dispatch(self, name: str, data: msgspec.Raw) -> None:
        """One dispatch, in gateway order. Raises only when a message could not be stored (or
        the bot's identity, needed to read it, could not be fetched): the gateway worker then
        tries it again."""
        counters = self.ctx.counters
        try:
            if name == "MESSAGE_CREATE":
                if self.bot is None:  # a session resumed from another replica: no READY here
                    await self._ready(await self.api.me())
                await self.accept(_message.decode(data))
            elif name in ("THREAD_CREATE", "THREAD_UPDATE", "CHANNEL_CREATE", "CHANNEL_UPDATE"):
                self._remember(_channel.decode(data))
            elif name == "GUILD_CREATE":
                guild = _guild.decode(data)
                for info in (*guild.channels, *guild.threads):
                    self._remember(info)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            counters["discord_dispatch_malformed"] += 1
            log.warning("discord %s: a malformed %s ignored: %s", self.account.account_id, name, exc)
        except (Unavailable, RestError, NetworkError):
            raise  # worth another try
        except Exception:  # a bug: this dispatch is dropped, the ones after it still flow
            counters["discord_dispatch_failed"] += 1
            log.exception("discord %s: %s dropped", self.account.account_id, name)

    def _remember(self, info: _ChannelInfo) -> None:
        self._channels[info.id] = (info.type, info.parent_id)
        self._channels.move_to_end(info.id)
        while len(self._channels) > _CHANNELS_KEPT:
            self._channels.popitem(last=False)

    async def _lookup(self, channel_id: str) -> tuple[int, str | None] | None:
        found = self._channels.get(channel_id)
        if found is not None:
            return found
        try:
            kind, parent = await self.api.channel(channel_id)
        except (RestError, NetworkError) as exc:
            log.info("discord %s: channel %s not looked up: %s", self.account.account_id, channel_id, exc)
            return None
        self._remember(_ChannelInfo(id=channel_id, type=kind, parent_id=parent))
        return kind, parent

    async def accept(self, msg: Message) -> None:
        """Store one message as an inbound message (or drop it: not one to answer, or refused
        by the access policy). Raises Unavailable when it could not be stored."""
        bot = self.bot
        if bot is None:
            raise Unavailable("the bot's identity is not known yet")
        counters = self.ctx.counters
        if msg.author.id == bot.id or msg.author.bot:  # no lookup for what is dropped anyway
            counters["discord_messages_ignored"] += 1
            return
        kind = msg.channel_type
        parent: str | None = None
        if kind is None or kind in THREAD_TYPES:
            found = await self._lookup(msg.channel_id)
            if found is not None:
                kind = found[0] if kind is None else kind
                parent = found[1]
        if kind is None:
            kind = DM if msg.guild_id is None else 0
        dc = normalize_message(msg, bot, channel_type=kind, parent_id=parent)
        if isinstance(dc, str):
            counters["discord_messages_ignored"] += 1
            return
        acct = self.account.account_id
        inbound = InboundMessage(
            id=turn_id_for(self.channel, acct, dc.platform_message_id),
            channel=self.channel,
            account_id=acct,
            peer=dc.peer,
            parent_peer=dc.parent_peer,
            guild_id=dc.guild_id,
            member_role_ids=list(dc.member_role_ids),
            sender=dc.sender,
            text=dc.text,
            message_id=dc.platform_message_id,
            received_at=now(),
            reply_events="final",
        )
        request = AccessRequest(
            channel=self.channel,
            account=acct,
            chat_type="direct" if dc.is_direct else "channel",
            sender_id=dc.sender.id,
            sender_username=dc.sender.username,
            sender_name=dc.sender.name or dc.sender.username,
            group_id=None if dc.is_direct else dc.channel_id,
            parent_id=dc.parent_id,
            guild_id=dc.guild_id,
            member_role_ids=dc.member_role_ids,
            was_mentioned=dc.was_mentioned,
            mentions_others=dc.mentions_others,
            can_detect_mention=True,
            text=dc.text,
        )
        result = await self.inbound.submit(request, inbound, follow=self.streaming == "partial")
        counters["discord_messages_accepted"] += 1
        if isinstance(result.denied, PairingChallenge):
            self._tasks.spawn(self._answer_denied(dc, result.denied.reply))
        if result.turn is not None:
            self._tasks.spawn(self._stream(result.turn, dc))

    async def _answer_denied(self, dc: DiscordInbound, text: str) -> None:
        """The pairing code for an unknown sender (dmPolicy `pairing`), sent directly."""
        with best_effort(self.ctx.counters, "discord_policy_reply", log=log):
            await self.api.create_message(dc.channel_id, text)

    # --- streamed previews (the shared part: `..preview`) ----------------------------------

    async def _stream(self, turn: PendingTurn, dc: DiscordInbound) -> None:
        """Follow the turn's text as it is generated and show it in a preview message, edited at
        a bounded rate; the final reply (`deliver`) takes the preview over. The preview is what
        the reply's first message would be, sent as that message would be (a native reply per
        `replyToMode`, embeds suppressed, nobody pinged)."""

        async def send(text: str) -> str:
            settings = self.settings
            quote = dc.message_id if (settings.reply_to_mode or "off") in ("first", "all") else None
            suppress = settings.suppress_embeds is not False
            return await self.api.create_message(
                dc.channel_id, text, reply_to=quote, suppress_embeds=suppress
            )

        async def edit(message_id: str, text: str) -> None:
            await self.api.edit_message(dc.channel_id, message_id, text)

        await self.previews.stream(
            turn,
            dc.channel_id,
            send=send,
            edit=edit,
            shown=lambda text: self._pieces(text)[0],
            interval=lambda: self.EDIT_INTERVAL,
            timeout=self.inbound.turns.turn_timeout(),
            min_chars=MIN_PREVIEW_CHARS,
        )

    # --- out --------------------------------------------------------------------------------

    async def _dm_channel(self, user_id: str) -> str:
        found = self._dms.get(user_id)
        if found is None:
            found = await self.api.open_dm(user_id)
            self._dms[user_id] = found
            while len(self._dms) > _CHANNELS_KEPT:
                self._dms.popitem(last=False)
        return found

    async def deliver(self, out: OutboundMessage, progress: DeliveryProgress) -> None:
        answered: str | None = None
        target: str | None = None
        if out.reply_to and ":" in out.reply_to:
            target, answered = out.reply_to.split(":", 1)
        target = target or out.thread_id
        settings = self.settings
        pieces = self._pieces(out.text)
        mode = settings.reply_to_mode or "off"
        suppress = settings.suppress_embeds is not False  # OpenClaw's default: no link previews
        try:
            if not target:
                peer = out.peer
                if peer is None or not peer.id:
                    raise PermanentSendError(f"the reply names no Discord channel or user (peer {peer!r})")
                target = await self._dm_channel(peer.id) if peer.kind in ("direct", "user") else peer.id
            channel_id = target

            async def send(index: int, piece: str) -> str:
                # `batched` quotes only a debounced burst of messages: clawmesh answers each alone
                quote = answered if mode == "all" or (mode == "first" and index == 0) else None
                return await self.api.create_message(
                    channel_id, piece, reply_to=quote, suppress_embeds=suppress
                )

            async def edit(message_id: str, piece: str) -> None:
                await self.api.edit_message(channel_id, message_id, piece)

            await self.previews.deliver(
                out.turn_id,
                pieces,
                progress,
                send=send,
                edit=edit,
                # 404 Unknown Message (deleted meanwhile), 403, …: the reply is sent anew
                not_editable=lambda exc: isinstance(exc, RestError) and not exc.transient,
                recorded=self.streaming == "partial",
            )
        except RestError as exc:
            if exc.transient:
                raise TransientSendError(str(exc), exc.retry_after) from None
            raise PermanentSendError(f"Discord refused the reply: {exc}") from None
        except NetworkError as exc:
            raise TransientSendError(str(exc)) from None
