"""Discord, as a gateway needs it: the Gateway's frames and intents, the `MESSAGE_CREATE`
message, OpenClaw's mapping of a message to routing input
(`extensions/discord/src/monitor/route-resolution.ts`, `message-handler.preflight.ts`;
channel-protocols.md §3, §5.3), and the preview mode (`streaming`, legacy `streamMode`) as
OpenClaw reads it (`preview-streaming.ts`, `doctor-contract.ts`).

Pure functions: the ingress adapter does the WebSocket, the HTTP and the bus."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal
from urllib.parse import urlsplit

import msgspec

from ..config import ChannelAccount, ChannelConfig, ChannelStreaming, ConfigError, Problem, secret_value
from ..ids import DEFAULT_ACCOUNT_ID, normalize_account_id
from ..wire import Peer, Sender

__all__ = [
    "CLOSE_FATAL",
    "CLOSE_NEW_SESSION",
    "DEFAULT_API_BASE_URL",
    "ENV_API_URL",
    "ENV_TOKEN",
    "INTENTS",
    "TEXT_LIMIT",
    "THREAD_TYPES",
    "Author",
    "BotIdentity",
    "DiscordInbound",
    "Frame",
    "Message",
    "Op",
    "StreamingMode",
    "api_base_url",
    "max_lines",
    "normalize_message",
    "preview_mode",
    "resolve_token",
    "streaming_source",
    "text_chunk_limit",
]

DEFAULT_API_BASE_URL: Final = "https://discord.com/api/v10"
ENV_TOKEN: Final = "DISCORD_BOT_TOKEN"
# OpenClaw's process-wide override of the versioned REST base (its Gateway discovery follows it)
ENV_API_URL: Final = "DISCORD_API_URL"
TEXT_LIMIT: Final = 2000  # characters of `content` per message
MAX_LINES: Final = 17  # OpenClaw's `maxLinesPerMessage` default (Discord clips tall messages)

# GUILDS | GUILD_MESSAGES | DIRECT_MESSAGES | MESSAGE_CONTENT (privileged: without it guild
# messages that do not mention the bot arrive with empty content)
INTENTS: Final = (1 << 0) | (1 << 9) | (1 << 12) | (1 << 15)

# channel types: 1 DM, 3 group DM, 10/11/12 announcement / public / private thread
DM: Final = 1
GROUP_DM: Final = 3
THREAD_TYPES: Final = frozenset({10, 11, 12})
# message types that are a person writing (DEFAULT, REPLY); the rest are joins, pins, commands…
_CHAT_TYPES: Final = frozenset({0, 19})

# close codes after which reconnecting cannot help (bad token, bad shard, disallowed intents…)
CLOSE_FATAL: Final = {
    4004: "authentication failed: the bot token was refused",
    4010: "invalid shard",
    4011: "sharding required",
    4012: "invalid API version",
    4013: "invalid intents",
    4014: "disallowed intents: enable the Message Content Intent for the bot in the Developer Portal",
}
StreamingMode = Literal["off", "partial", "block", "progress"]
_MODES: Final = ("off", "partial", "block", "progress")

# close codes after which the session is gone: identify again (4007 invalid seq, 4009 timed out)
CLOSE_NEW_SESSION: Final = frozenset({4007, 4009})


class Op:
    """Gateway opcodes."""

    DISPATCH: Final = 0
    HEARTBEAT: Final = 1
    IDENTIFY: Final = 2
    RESUME: Final = 6
    RECONNECT: Final = 7
    INVALID_SESSION: Final = 9
    HELLO: Final = 10
    HEARTBEAT_ACK: Final = 11


class Frame(msgspec.Struct, frozen=True):
    """Every Gateway payload: `s` and `t` only on dispatches (op 0)."""

    op: int
    d: Any = None
    s: int | None = None
    t: str | None = None


class Author(msgspec.Struct, frozen=True):
    id: str
    username: str = ""
    global_name: str | None = None
    bot: bool = False


class _Member(msgspec.Struct, frozen=True):
    roles: list[str] = []
    nick: str | None = None


class _Mentioned(msgspec.Struct, frozen=True):
    id: str


class _Referenced(msgspec.Struct, frozen=True):
    author: Author | None = None


class Message(msgspec.Struct, frozen=True):
    """A `MESSAGE_CREATE` dispatch's `d` (the fields a gateway needs)."""

    id: str
    channel_id: str
    author: Author
    guild_id: str | None = None
    channel_type: int | None = None
    member: _Member | None = None
    content: str = ""
    mentions: list[_Mentioned] = []
    mention_roles: list[str] = []
    mention_everyone: bool = False
    type: int = 0
    referenced_message: _Referenced | None = None
    webhook_id: str | None = None


@dataclass(frozen=True)
class BotIdentity:
    """`READY`'s `user`: its own messages are dropped, `<@id>` is a mention of it."""

    id: str
    username: str = ""


@dataclass(frozen=True)
class DiscordInbound:
    """One message to answer, mapped as OpenClaw maps it, with the mention facts an access
    policy needs."""

    message_id: str
    channel_id: str  # where a reply goes (a thread's own id in a thread)
    guild_id: str | None
    parent_id: str | None  # a thread's parent channel
    peer: Peer
    parent_peer: Peer | None
    sender: Sender
    member_role_ids: tuple[str, ...]
    text: str
    was_mentioned: bool  # the bot in `mentions`, @everyone/@here from a person, or a reply to the bot
    mentions_others: bool  # mentions someone (a user or a role), not the bot

    @property
    def is_direct(self) -> bool:
        return self.guild_id is None

    @property
    def platform_message_id(self) -> str:
        """`<channel>:<message>`: the reply finds its channel in it (a snowflake is unique anyway)."""
        return f"{self.channel_id}:{self.message_id}"


Dropped = Literal["own", "bot", "not-chat", "group-dm", "empty"]


def normalize_message(
    msg: Message,
    bot: BotIdentity,
    *,
    channel_type: int | None,
    parent_id: str | None = None,
) -> DiscordInbound | Dropped:
    """The message to answer, or why it is dropped: the bot's own, another bot's or a webhook's
    (OpenClaw's `allowBots` default), not a person writing (joins, pins, slash-command
    messages), a group DM (OpenClaw's `dm.groupEnabled` default), or no text at all (no
    MESSAGE_CONTENT intent, or only attachments). `channel_type` is the message's
    `channel_type` or the adapter's lookup; `parent_id` a thread's parent channel."""
    author = msg.author
    if author.id == bot.id:
        return "own"
    if author.bot or msg.webhook_id:
        return "bot"
    if msg.type not in _CHAT_TYPES:
        return "not-chat"
    if msg.guild_id is None and channel_type == GROUP_DM:
        return "group-dm"
    if not msg.content.strip():
        return "empty"
    sender = Sender(id=author.id, username=author.username or None, name=author.global_name or None)
    explicit = any(m.id == bot.id for m in msg.mentions)
    replied = msg.referenced_message
    implicit = bool(replied and replied.author and replied.author.id == bot.id)
    # @everyone/@here from a person counts as a mention (OpenClaw's preflight)
    was_mentioned = explicit or msg.mention_everyone or implicit
    any_mention = bool(msg.mentions or msg.mention_roles or msg.mention_everyone)
    if msg.guild_id is None:
        peer, parent = Peer(kind="direct", id=author.id), None
        thread_parent = None
    else:
        peer = Peer(kind="channel", id=msg.channel_id)
        is_thread = channel_type in THREAD_TYPES and parent_id is not None
        thread_parent = parent_id if is_thread else None
        parent = Peer(kind="channel", id=parent_id) if is_thread and parent_id else None
    return DiscordInbound(
        message_id=msg.id,
        channel_id=msg.channel_id,
        guild_id=msg.guild_id,
        parent_id=thread_parent,
        peer=peer,
        parent_peer=parent,
        sender=sender,
        member_role_ids=tuple(msg.member.roles) if msg.member is not None else (),
        text=msg.content,
        was_mentioned=was_mentioned,
        mentions_others=any_mention and not was_mentioned,
    )


def resolve_token(settings: ChannelAccount, account_id: str, env: Mapping[str, str], path: str) -> str | None:
    """The bot token as OpenClaw resolves it: `token` (a string, `${VAR}` or a SecretRef), else
    `DISCORD_BOT_TOKEN` for the default account. A `Bot ` prefix pasted with it is dropped.
    None: no token. The token itself is never put in a message."""
    configured = secret_value(settings.token, env, f"{path}.token")
    token = (configured or "").strip()
    if not token and account_id == DEFAULT_ACCOUNT_ID:
        token = (env.get(ENV_TOKEN) or "").strip()
    if token.lower().startswith("bot "):
        token = token[4:].strip()
    return token or None


def api_base_url(settings: ChannelAccount, env: Mapping[str, str], path: str) -> str:
    """The versioned REST base: `apiBaseUrl` (a clawmesh key, per account), else OpenClaw's
    `DISCORD_API_URL`, else Discord's. The Gateway URL is discovered from it (`/gateway/bot`)."""
    base = settings.api_base_url or env.get(ENV_API_URL) or DEFAULT_API_BASE_URL
    where = f"{path}.apiBaseUrl" if settings.api_base_url else ENV_API_URL
    parsed = urlsplit(base)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ConfigError([Problem(where, f"expected an http(s) URL, got {base!r}")])
    return base.rstrip("/")


def text_chunk_limit(settings: ChannelAccount) -> int:
    """`textChunkLimit` (OpenClaw's default 2000), within Discord's own limit."""
    limit = settings.text_chunk_limit
    return TEXT_LIMIT if limit is None or limit <= 0 else min(limit, TEXT_LIMIT)


def max_lines(settings: ChannelAccount) -> int:
    """`maxLinesPerMessage` (OpenClaw's default 17): a reply taller than that is split."""
    lines = settings.max_lines_per_message
    return MAX_LINES if lines is None or lines <= 0 else lines


def _mode(value: object) -> StreamingMode | None:
    if not isinstance(value, str):
        return None
    found = value.strip().lower()
    return found if found in _MODES else None  # type: ignore[return-value]


def streaming_source(level: ChannelAccount) -> tuple[StreamingMode, str] | None:
    """The preview mode one config level (the channel, or an account's own keys) sets, and the
    key that sets it (`streaming.mode`, `streaming`, `streamMode`; "" for the default), read as
    OpenClaw reads a Discord entry: `streaming.mode`, else `streaming` as a mode string, else the
    legacy `streamMode`, else a legacy boolean `streaming` (true `partial`, false `off`), else
    `off` (Discord's default). Mode names are trimmed and case-folded; an unknown one is
    skipped. None: the level says nothing about streaming (it inherits the channel's)."""
    streaming = level.streaming
    if streaming is None and level.stream_mode is None:
        return None
    if isinstance(streaming, ChannelStreaming) and (mode := _mode(streaming.mode)) is not None:
        return mode, "streaming.mode"
    if (mode := _mode(streaming)) is not None:
        return mode, "streaming"
    if (mode := _mode(level.stream_mode)) is not None:
        return mode, "streamMode"
    if isinstance(streaming, bool):
        return ("partial" if streaming else "off"), "streaming"
    return "off", ""


def preview_mode(section: ChannelConfig | None, account_id: str) -> StreamingMode:
    """An account's preview mode (`channels.discord.streaming` as OpenClaw reads it, default
    `off`): its own `accounts.<id>` keys when they say anything about streaming (an account's
    `streaming` replaces the channel's as a whole), else the channel's."""
    if section is None:
        return "off"
    for raw_id, own in (section.accounts or {}).items():
        if normalize_account_id(raw_id) == account_id:
            found = streaming_source(own)
            if found is not None:
                return found[0]
            break
    found = streaming_source(section)
    return found[0] if found is not None else "off"
