"""One Discord bot account: the Gateway in, REST `POST /channels/{id}/messages` out.

In: `MESSAGE_CREATE` dispatches (gateway.py: one replica per bot token, resumed across
reconnects and replicas) are normalised (`clawmesh.channels.discord`), handed to the access
policy and stored (`ChannelInbound`). A thread's parent channel (its `parentPeer`, and the guild
channel entry its settings fall back to) and a channel's type when the dispatch lacks
`channel_type` come from `GUILD_CREATE` / `THREAD_CREATE` / `CHANNEL_CREATE`, else from
`GET /channels/{id}`, kept in a bounded cache. A message's attachments (a text-less one too: its
file is what was said) are downloaded from Discord's CDN once the policy admitted it, within
`mediaMaxMb` (OpenClaw's default 100) each, without the bot token (cdn.py), and reach the agent's
workspace as Telegram's files do (`..media`).

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

Slash commands (an account with `publicKey`): Discord POSTs interactions to `webhookPath`
(default `/discord/interactions`) on ingress's own HTTP server. The body is read once (bounded)
and the Ed25519 signature checked before anything is parsed (401 otherwise); PING is answered
PONG. A command is mapped as OpenClaw maps a native command (`clawmesh.channels.discord`),
handed to the access policy and stored, then answered DEFERRED (type 5, ephemeral per
`slashCommand.ephemeral`) — or, refused, with OpenClaw's ephemeral refusal. Its token is kept in
KV `delivered` (`discord.interaction.<id>`), so the reply, on whichever replica delivers it,
edits the deferred answer (`PATCH /webhooks/{app}/{token}/messages/@original`) and sends the
rest of a long reply as follow-ups. What takes longer than the 3 s Discord allows is answered
DEFERRED in time and finished in the background (a late refusal or failure edits the answer).
The commands are registered with Discord at start (`PUT /applications/{id}/commands`, unless
`commands.native` is false), once per changed set.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, ClassVar, Final

import msgspec
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from clawmesh.bus import ServiceContext
from clawmesh.channels import AccessRequest, PairingChallenge
from clawmesh.channels.accounts import AccountSettings
from clawmesh.channels.discord import (
    COMMANDS,
    DM,
    EPHEMERAL,
    INTERACTION_REPLY,
    THREAD_TYPES,
    BotIdentity,
    DiscordFile,
    DiscordInbound,
    Interaction,
    InteractionType,
    Message,
    ResponseType,
    SlashInbound,
    StreamingMode,
    api_base_url,
    application_id_from_token,
    command_definitions,
    commands_hash,
    configured_application_id,
    ephemeral_replies,
    interactions_path,
    load_public_key,
    max_lines,
    media_budget,
    native_commands_enabled,
    normalize_interaction,
    normalize_message,
    preview_mode,
    resolve_public_key,
    slash_session_key,
    text_chunk_limit,
    verify_interaction,
)
from clawmesh.channels.text import cap_lines, split_text
from clawmesh.config import ChannelAccount
from clawmesh.errors import ClawmeshError, best_effort
from clawmesh.routing import resolve_route
from clawmesh.wire import InboundMessage, OutboundMessage, now

from ...http import BodyTimeout, BodyTooLarge, read_body
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
from ..media import InboundFile
from ..preview import Previews
from .cdn import Cdn
from .gateway import Gateway
from .rest import UNKNOWN_WEBHOOK, NetworkError, RestApi, RestError

__all__ = ["DiscordAdapter"]

log = logging.getLogger("clawmesh.ingress.discord")

_CHANNELS_KEPT: Final = 50_000
# OpenClaw's `minInitialChars` for a Discord draft: the first preview waits for this much text, so
# the notification it causes says something
MIN_PREVIEW_CHARS: Final = 30
MAX_INTERACTION_BYTES: Final = 1 << 20
# OpenClaw's answers to a slash command the access policy refuses (`native-command.ts`); None:
# ephemeral per `slashCommand.ephemeral`, else always ephemeral
NOT_AUTHORIZED: Final = "You are not authorized to use this command."
_REFUSALS: Final[dict[str, tuple[str, bool | None]]] = {
    "dm-disabled": ("Discord DMs are disabled.", None),
    "group-policy-disabled": ("This channel is not allowed.", None),
    "group-not-allowed": ("This channel is not allowed.", None),
    "group-allowlist-empty": ("This channel is not allowed.", None),
    "group-disabled": ("This channel is disabled.", None),
}
_NOT_RUN: Final = {
    "group-dm": "Discord group DMs are disabled.",
    "empty": "Nothing to ask: the prompt is empty.",
}
NOT_SERVED: Final = "This command is not available."
FAILED: Final = "⚠️ The command could not be accepted; please try again."
_REGISTER_TRIES: Final = 5


class _InteractionRecord(msgspec.Struct):
    """What the reply to a slash command needs (KV `delivered`, `discord.interaction.<id>`):
    its webhook (application id and token: 15 minutes) and whether the deferred answer is
    still to be edited."""

    application_id: str
    token: str
    ephemeral: bool = True
    answered: bool = False


@dataclass(frozen=True)
class _Taken:
    """A slash command's outcome: stored (or a duplicate), or `text` to answer instead."""

    text: str | None = None
    ephemeral: bool = True


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
_interaction = msgspec.json.Decoder(Interaction)
_record = msgspec.json.Decoder(_InteractionRecord)


class DiscordAdapter:
    channel: ClassVar[str] = "discord"
    # at most one preview edit per turn this often. Discord allows about 5 message edits per 5 s
    # in a channel (the bucket of `PATCH /channels/{id}/messages/{id}`): 1.2 s (OpenClaw's
    # `throttleMs` for Discord drafts) keeps one preview under that with room for the final
    # edit and other replies there; concurrent previews in one channel are held by the REST
    # client's bucket (`X-RateLimit-Remaining: 0`), a 429 stops a preview (the final reply
    # still comes)
    EDIT_INTERVAL: ClassVar[float] = 1.2
    # a slash command not stored by then is answered DEFERRED anyway: Discord waits 3 s
    ACK_BUDGET: ClassVar[float] = 2.0

    def __init__(
        self, ctx: ServiceContext, account: AccountSettings, token: str, inbound: ChannelInbound
    ) -> None:
        self.ctx = ctx
        self.account = account
        self.inbound = inbound
        self._live = LiveSettings(ctx.holder, self.channel, account)
        env, where = ctx.holder.current.env, account.path
        public = resolve_public_key(account.settings, account.account_id, env, where)
        # None: no interactions endpoint (the Gateway only)
        self._public_key = load_public_key(public, where) if public is not None else None
        self.interactions_path = interactions_path(account.settings, where) if public is not None else None
        # the application slash commands are registered for (None: asked of Discord)
        self._application_id = (
            (configured_application_id(account.settings, where) or application_id_from_token(token))
            if public is not None
            else None
        )
        self.commands_registered: str | None = None  # the application the commands were registered for
        api_base = api_base_url(account.settings, ctx.holder.current.env, account.path)
        self.api = RestApi(api_base, token)
        self.cdn = Cdn(api_base)  # attachments: no token, Discord's CDN (or the REST origin) only
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
        self._gateway_interactions_noted = False

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
        return self.previews.served(
            mode, "one preview edited as the text arrives; OpenClaw's draft-sized chunks are not implemented"
        )

    def _pieces(self, text: str) -> list[str]:
        """A reply's messages: at most `maxLinesPerMessage` lines and `textChunkLimit` characters."""
        settings = self.settings
        limit = text_chunk_limit(settings)
        return [p for part in cap_lines(text, max_lines(settings)) for p in split_text(part, limit)]

    # --- life cycle -------------------------------------------------------------------------

    async def start(self) -> None:
        # in the background: an unreachable Discord must not keep ingress from starting
        self.gateway.start()
        if self._public_key is not None and native_commands_enabled(self.settings):
            self._tasks.spawn(self._register_commands())

    async def stop_inbound(self) -> None:
        await self.gateway.stop()

    async def stop(self) -> None:
        await self.stop_inbound()
        await self._tasks.cancel_all()
        await self.api.close()
        await self.cdn.close()

    def status(self) -> dict[str, Any]:
        return {
            "channel": self.channel,
            "account": self.account.account_id,
            "mode": "gateway",
            "ready": self.bot is not None,
            "bot": self.bot.username if self.bot else None,
            "interactions": self.interactions_path,
            "commands": self.commands_registered,
            **self.gateway.status(),
        }

    def webhook_routes(self) -> list[WebhookRoute]:
        if self.interactions_path is None:
            return []
        return [WebhookRoute(host=None, port=None, path=self.interactions_path, handler=self.on_interaction)]

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
            elif name == "INTERACTION_CREATE":
                # Discord sends interactions here only while the app has no Interactions Endpoint
                # URL; clawmesh serves them over HTTP only
                counters["discord_gateway_interactions_ignored"] += 1
                if not self._gateway_interactions_noted:
                    self._gateway_interactions_noted = True
                    log.warning(
                        "discord %s: a slash command arrived over the Gateway and is not answered: "
                        "set the app's Interactions Endpoint URL to ingress's %s (with publicKey)",
                        self.account.account_id,
                        self.interactions_path or "webhookPath",
                    )
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
        result = await self.inbound.submit(
            request,
            inbound,
            follow=self.streaming == "partial",
            files=[self._file(f) for f in dc.files],
            media_limit=media_budget(self.settings),
        )
        counters["discord_messages_accepted"] += 1
        if isinstance(result.denied, PairingChallenge):
            self._tasks.spawn(self._answer_denied(dc, result.denied.reply))
        if result.turn is not None:
            self._tasks.spawn(self._stream(result.turn, dc))

    def _file(self, f: DiscordFile) -> InboundFile:
        """An attachment for ingress to take in once the policy admits the message (one larger
        than `mediaMaxMb` by its `size` is never asked for)."""

        async def fetch(limit: int) -> bytes:
            return await self.cdn.download(f.url, limit)

        return InboundFile(f.kind, f.name, f.mime, f.size, fetch)

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
        if answered is not None and answered.startswith(INTERACTION_REPLY):
            await self._deliver_interaction(out, answered.removeprefix(INTERACTION_REPLY), progress)
            return
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

    # --- slash commands: interactions over HTTP ---------------------------------------------

    async def on_interaction(self, request: Request) -> Response:
        """Discord's POST to the Interactions Endpoint URL: verified, then answered (PING, a
        slash command, or what clawmesh does not serve)."""
        assert self._public_key is not None
        counters = self.ctx.counters
        try:
            body = await read_body(request, MAX_INTERACTION_BYTES)
        except BodyTooLarge:
            return JSONResponse({"error": "request too large"}, status_code=413)
        except BodyTimeout:
            return JSONResponse({"error": "request body not received in time"}, status_code=408)
        why = verify_interaction(
            self._public_key,
            request.headers.get("x-signature-timestamp", ""),
            request.headers.get("x-signature-ed25519", ""),
            body,
            time.time(),
        )
        if why is not None:
            counters["discord_interactions_refused"] += 1
            return JSONResponse({"error": why}, status_code=401)
        try:
            ix = _interaction.decode(body)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            counters["discord_interactions_malformed"] += 1
            return JSONResponse({"error": f"not a Discord interaction: {exc}"}, status_code=400)
        if ix.type == InteractionType.PING:
            return JSONResponse({"type": ResponseType.PONG})
        if ix.type == InteractionType.APPLICATION_COMMAND:
            return await self._command(ix)
        counters["discord_interactions_ignored"] += 1
        if ix.type == InteractionType.AUTOCOMPLETE:  # no option offers choices
            return JSONResponse({"type": ResponseType.AUTOCOMPLETE_RESULT, "data": {"choices": []}})
        if ix.type in (InteractionType.MESSAGE_COMPONENT, InteractionType.MODAL_SUBMIT):
            return _answer_with(NOT_SERVED, ephemeral=True)
        return JSONResponse({"error": f"unknown interaction type {ix.type}"}, status_code=400)

    async def _command(self, ix: Interaction) -> Response:
        counters = self.ctx.counters
        ephemeral = ephemeral_replies(self.settings)
        sc = normalize_interaction(ix)
        if isinstance(sc, str):
            counters["discord_interactions_ignored"] += 1
            return _answer_with(_NOT_RUN.get(sc, NOT_SERVED), ephemeral=True)
        counters["discord_commands"] += 1
        # stored before it is answered; what Discord's 3 s do not allow is finished afterwards
        taking = asyncio.ensure_future(self._take(sc, ephemeral))
        try:
            taken = await asyncio.wait_for(asyncio.shield(taking), self.ACK_BUDGET)
        except TimeoutError:
            counters["discord_commands_late"] += 1
            self._tasks.spawn(self._late(taking, sc))
            return _deferred(ephemeral)
        if taken.text is None:
            return _deferred(ephemeral)
        return _answer_with(taken.text, ephemeral=taken.ephemeral)

    async def _take(self, sc: SlashInbound, ephemeral: bool) -> _Taken:
        try:
            return await self._store(sc, ephemeral)
        except Exception:  # a bug: the user is told, the endpoint keeps serving
            self.ctx.counters["discord_commands_failed"] += 1
            log.exception("discord %s: slash command %s failed", self.account.account_id, sc.interaction_id)
            return _Taken(FAILED)

    async def _store(self, sc: SlashInbound, ephemeral: bool) -> _Taken:
        """The access policy, then the message stored (its interaction's record first, so the
        reply always finds it); what to answer instead when it is not stored."""
        records = self.ctx.kv["delivered"]
        key = _record_key(sc.interaction_id)
        record = _InteractionRecord(application_id=sc.application_id, token=sc.token, ephemeral=ephemeral)
        try:
            await records.create(key, msgspec.json.encode(record))
        except KeyWrongLastSequenceError:
            pass  # the same interaction again: its record stays as it is
        except Exception as exc:
            log.warning("discord %s: slash command not accepted: KV: %s", self.account.account_id, exc)
            return _Taken(FAILED)
        acct = self.account.account_id
        inbound = InboundMessage(
            id=turn_id_for(self.channel, acct, sc.platform_message_id),
            channel=self.channel,
            account_id=acct,
            peer=sc.peer,
            parent_peer=sc.parent_peer,
            guild_id=sc.guild_id,
            member_role_ids=list(sc.member_role_ids),
            sender=sc.sender,
            text=sc.text,
            message_id=sc.platform_message_id,
            received_at=now(),
            reply_events="final",
        )
        if not sc.command.control:
            inbound = self._in_slash_session(inbound, sc)
        request = AccessRequest(
            channel=self.channel,
            account=acct,
            chat_type="direct" if sc.is_direct else "channel",
            sender_id=sc.sender.id,
            sender_username=sc.sender.username,
            sender_name=sc.sender.name or sc.sender.username,
            group_id=None if sc.is_direct else sc.channel_id,
            parent_id=sc.parent_id,
            guild_id=sc.guild_id,
            member_role_ids=sc.member_role_ids,
            # a native command is addressed to the bot (OpenClaw: `wasMentioned: true`)
            was_mentioned=True,
            can_detect_mention=True,
            text=sc.text,
            is_command=True,
        )
        try:
            result = await self.inbound.submit(request, inbound, follow=False)
        except Unavailable as exc:
            log.warning("discord %s: slash command not stored: %s", acct, exc)
            return _Taken(FAILED)
        if result.denied is None:
            return _Taken()
        with best_effort(self.ctx.counters, "discord_interaction_record", log=log):
            await records.delete(key)  # no reply will need the token
        if isinstance(result.denied, PairingChallenge):
            return _Taken(result.denied.reply)
        text, own = _REFUSALS.get(result.denied.reason, (NOT_AUTHORIZED, True))
        return _Taken(text, ephemeral if own is None else own)

    def _in_slash_session(self, inbound: InboundMessage, sc: SlashInbound) -> InboundMessage:
        """The prompt command runs in the user's slash session of the agent the conversation
        routes to (OpenClaw: `agent:<agentId>:discord:slash:<userId>`, the route's agent). With
        no agent to route to, the message goes as it is: the router refuses it as it refuses
        the conversation's messages."""
        parent = sc.parent_peer
        try:
            route = resolve_route(
                self.ctx.holder.current,
                channel=self.channel,
                account_id=self.account.account_id,
                peer={"kind": sc.peer.kind, "id": sc.peer.id},
                parent_peer={"kind": parent.kind, "id": parent.id} if parent is not None else None,
                guild_id=sc.guild_id,
                member_role_ids=sc.member_role_ids,
            )
        except ClawmeshError:
            return inbound
        return msgspec.structs.replace(
            inbound, agent_id=route.agent_id, session_key=slash_session_key(route.agent_id, str(sc.sender.id))
        )

    async def _late(self, taking: asyncio.Future[_Taken], sc: SlashInbound) -> None:
        """A command answered DEFERRED before it was stored: a refusal or a failure, when it
        comes, edits the deferred answer."""
        taken = await taking
        if taken.text is None:
            return
        with best_effort(self.ctx.counters, "discord_interaction_late", log=log):
            await self.api.edit_original(sc.application_id, sc.token, taken.text)

    async def _deliver_interaction(
        self, out: OutboundMessage, interaction_id: str, progress: DeliveryProgress
    ) -> None:
        """A slash command's reply: its first part edits the deferred answer, the others are
        follow-ups (ephemeral like it); a later reply to the same command (an approval prompt
        before the answer) is all follow-ups."""
        records = self.ctx.kv["delivered"]
        key = _record_key(interaction_id)
        try:
            entry = await records.get(key)
        except KeyNotFoundError:
            raise PermanentSendError(
                f"no interaction record for slash command {interaction_id} (kept a day): the reply cannot be sent"
            ) from None
        except Exception as exc:
            raise TransientSendError(f"interaction record: {exc}") from None
        try:
            record = _record.decode(entry.value or b"")
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise PermanentSendError(
                f"interaction record for {interaction_id} is unreadable: {exc}"
            ) from None
        pieces = self._pieces(out.text)
        suppress = self.settings.suppress_embeds is not False
        try:
            for index, piece in enumerate(pieces):
                if index < len(progress.sent):
                    continue
                if index == 0 and not record.answered:
                    sent = await self.api.edit_original(
                        record.application_id, record.token, piece, suppress_embeds=suppress
                    )
                    record.answered = True
                    with best_effort(self.ctx.counters, "discord_interaction_record", log=log):
                        await records.put(key, msgspec.json.encode(record))
                else:
                    sent = await self.api.follow_up(
                        record.application_id,
                        record.token,
                        piece,
                        ephemeral=record.ephemeral,
                        suppress_embeds=suppress,
                    )
                await progress.part_sent(sent, last=index == len(pieces) - 1)
        except RestError as exc:
            if exc.transient:
                raise TransientSendError(str(exc), exc.retry_after) from None
            if exc.code == UNKNOWN_WEBHOOK:
                raise PermanentSendError(
                    f"the slash command's token expired (Discord keeps it 15 minutes): {exc}"
                ) from None
            raise PermanentSendError(f"Discord refused the reply: {exc}") from None
        except NetworkError as exc:
            raise TransientSendError(str(exc)) from None

    async def _register_commands(self) -> None:
        """`PUT /applications/{id}/commands` with the commands served here, as OpenClaw deploys
        its native commands at start (in the background; failures only logged); skipped when
        this set was registered for the application already (KV `channels`)."""
        acct = self.account.account_id
        definitions = command_definitions()
        digest = commands_hash(definitions)
        kv = self.ctx.kv["channels"]
        delay = 1.0
        for _ in range(_REGISTER_TRIES):
            try:
                app = self._application_id or await self.api.application_id()
                key = f"discord.commands.{app}"
                with contextlib.suppress(KeyNotFoundError):
                    if (await kv.get(key)).value == digest.encode():
                        self.commands_registered = app
                        return
                await self.api.put_commands(app, definitions)
                await kv.put(key, digest.encode())
                self.commands_registered = app
                log.info(
                    "discord %s: slash commands registered for application %s: /%s",
                    acct,
                    app,
                    ", /".join(c.name for c in COMMANDS),
                )
                return
            except RestError as exc:
                if not exc.transient:
                    log.warning("discord %s: slash commands not registered: %s", acct, exc)
                    return
                wait = exc.retry_after or delay
                log.info("discord %s: registering slash commands: %s; again in %.0fs", acct, exc, wait)
            except Exception as exc:  # the network, KV
                wait = delay
                log.info("discord %s: registering slash commands: %s; again in %.0fs", acct, exc, wait)
            await asyncio.sleep(min(wait, 60.0))
            delay = min(delay * 2, 60.0)
        log.warning(
            "discord %s: slash commands not registered (gave up after %d tries)", acct, _REGISTER_TRIES
        )


def _record_key(interaction_id: str) -> str:
    return f"discord.interaction.{interaction_id}"


def _answer_with(text: str, *, ephemeral: bool) -> JSONResponse:
    """An interaction answered with a message (CHANNEL_MESSAGE_WITH_SOURCE) that pings nobody."""
    data: dict[str, Any] = {"content": text[:2000], "allowed_mentions": {"parse": []}}
    if ephemeral:
        data["flags"] = EPHEMERAL
    return JSONResponse({"type": ResponseType.CHANNEL_MESSAGE, "data": data})


def _deferred(ephemeral: bool) -> JSONResponse:
    """DEFERRED_CHANNEL_MESSAGE_WITH_SOURCE: "thinking…", edited by the reply."""
    if ephemeral:
        return JSONResponse({"type": ResponseType.DEFERRED_CHANNEL_MESSAGE, "data": {"flags": EPHEMERAL}})
    return JSONResponse({"type": ResponseType.DEFERRED_CHANNEL_MESSAGE})
