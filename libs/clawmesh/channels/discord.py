"""Discord, as a gateway needs it: the Gateway's frames and intents, the `MESSAGE_CREATE`
message, OpenClaw's mapping of a message to routing input
(`extensions/discord/src/monitor/route-resolution.ts`, `message-handler.preflight.ts`;
channel-protocols.md §3, §5.3), a message's attachments as OpenClaw takes them in
(`message-media.ts`, `preflight-audio.ts`: each file's name, type and size, a voice message's
type, the CDN hosts it downloads from, `mediaMaxMb` default 100), and the preview mode
(`streaming`, legacy `streamMode`) as OpenClaw reads it (`preview-streaming.ts`,
`doctor-contract.ts`).

Interactions over HTTP (§3.6): the Ed25519 signature of a request (`X-Signature-Ed25519` over
`X-Signature-Timestamp` + the raw body, the app's public key), the interaction's shape with its
ids bounded (snowflakes, the token's length and alphabet), and a slash command as routing input
as OpenClaw's native commands map it (`native-command.ts`, `native-command-context.ts`): the
routed conversation's peer, the user's slash session `agent:<agentId>:discord:slash:<userId>`
(`resolveNativeCommandSessionTargets`), the command text `/<name> <input>`
(`buildCommandTextFromArgs`), and the commands registered with Discord.

Pure functions: the ingress adapter does the WebSocket, the HTTP and the bus."""

from __future__ import annotations

import base64
import binascii
import hashlib
import mimetypes
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Final, Literal
from urllib.parse import urlsplit

import msgspec

from ..config import ChannelAccount, ChannelConfig, ChannelStreaming, ConfigError, Problem, secret_value
from ..ids import DEFAULT_ACCOUNT_ID, normalize_account_id
from ..wire import Peer, Sender
from ._limits import media_limit, url_refused

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

__all__ = [
    "CLOSE_FATAL",
    "CLOSE_NEW_SESSION",
    "COMMANDS",
    "DEFAULT_API_BASE_URL",
    "DEFAULT_INTERACTIONS_PATH",
    "DEFAULT_MEDIA_MAX_MB",
    "ENV_API_URL",
    "ENV_PUBLIC_KEY",
    "ENV_TOKEN",
    "EPHEMERAL",
    "INTENTS",
    "INTERACTION_REPLY",
    "SIGNATURE_WINDOW",
    "TEXT_LIMIT",
    "THREAD_TYPES",
    "Attachment",
    "Author",
    "BotIdentity",
    "DiscordFile",
    "DiscordInbound",
    "Frame",
    "Interaction",
    "InteractionType",
    "Message",
    "Op",
    "ResponseType",
    "SlashCommand",
    "SlashInbound",
    "StreamingMode",
    "api_base_url",
    "application_id_from_token",
    "attachment_url_refused",
    "command_definitions",
    "commands_hash",
    "configured_application_id",
    "ephemeral_replies",
    "interactions_path",
    "load_public_key",
    "max_lines",
    "media_budget",
    "message_files",
    "native_commands_enabled",
    "normalize_interaction",
    "normalize_message",
    "preview_mode",
    "resolve_public_key",
    "resolve_token",
    "slash_session_key",
    "streaming_source",
    "text_chunk_limit",
    "verify_interaction",
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


class Attachment(msgspec.Struct, frozen=True):
    """One file of a message (`attachments[]`): `url` is its CDN URL (signed, the query kept),
    `size` in bytes, `content_type` when Discord could tell; a voice message's has
    `duration_secs` and `waveform`."""

    id: str
    filename: str = ""
    content_type: str | None = None
    size: int | None = None
    url: str = ""
    proxy_url: str | None = None
    duration_secs: float | None = None
    waveform: str | None = None


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
    attachments: list[Attachment] = []
    flags: int = 0


# --- a message's files (OpenClaw's `message-media.ts`) --------------------------------------

DEFAULT_MEDIA_MAX_MB: Final = 100  # OpenClaw's DEFAULT_DISCORD_MEDIA_MAX_MB
IS_VOICE_MESSAGE: Final = 1 << 13  # message flag: a voice message (its one attachment: .ogg)
MAX_ATTACHMENTS: Final = 10  # Discord's limit per message: more is not a message Discord sent
# a declared type that says nothing about the content (OpenClaw's NON_DEFINITIVE_MEDIA_TYPES)
_VAGUE_TYPES: Final = frozenset({"application/octet-stream", "binary/octet-stream", "application/ogg"})
# Discord's CDN (OpenClaw's DISCORD_MEDIA_SSRF_POLICY: cdn.discordapp.com, media.discordapp.net)
_CDN_DOMAINS: Final = ("discordapp.com", "discordapp.net")
# the types a name says, Python's own table (never the host's mime.types: the same everywhere)
# with what chats send that it lacks (OpenClaw's audio extensions among them)
_TYPES: Final = mimetypes.MimeTypes()
for _ext, _type in {
    ".ogg": "audio/ogg",
    ".oga": "audio/ogg",
    ".opus": "audio/opus",
    ".m4a": "audio/mp4",
    ".flac": "audio/flac",
    ".caf": "audio/x-caf",
    ".wav": "audio/wav",
    ".webp": "image/webp",
    ".avif": "image/avif",
    ".heif": "image/heif",
    ".webm": "video/webm",
    ".mkv": "video/x-matroska",
    ".md": "text/markdown",
}.items():
    _TYPES.add_type(_type, _ext)


@dataclass(frozen=True)
class DiscordFile:
    """One attachment, as the agent will see it named and typed, and where it is downloaded."""

    kind: str  # voice message | picture | video | sound file | file
    name: str
    mime: str
    size: int | None
    url: str


def _mime_of(declared: str | None) -> str:
    """`image/png; charset=…` as `image/png` (what the runner tests for an image part)."""
    return (declared or "").split(";", 1)[0].strip().lower()


def _attachment_file(att: Attachment, voice_message: bool) -> DiscordFile:
    declared = _mime_of(att.content_type)
    definite = declared if declared and declared not in _VAGUE_TYPES else ""
    guessed = _TYPES.guess_type(att.filename)[0] if att.filename else None
    visual = definite.startswith(("image/", "video/"))
    # OpenClaw's voice: the message's flag, a waveform, or a duration on what is not a picture
    voice = (voice_message or att.waveform is not None or att.duration_secs is not None) and not visual
    if voice:
        mime = definite if definite.startswith("audio/") else "audio/ogg"
        kind = "voice message"
    else:
        mime = definite or guessed or declared or "application/octet-stream"
        major = mime.split("/", 1)[0]
        kind = {"image": "picture", "video": "video", "audio": "sound file"}.get(major, "file")
    name = att.filename
    if not name:
        ext = ".ogg" if voice else (_TYPES.guess_extension(mime) or "")
        name = f"{'voice-message' if voice else 'attachment'}-{att.id}{ext}"
    size = att.size if att.size is not None and att.size >= 0 else None
    return DiscordFile(kind=kind, name=name, mime=mime, size=size, url=att.url)


def message_files(msg: Message) -> tuple[DiscordFile, ...]:
    """A message's attachments as OpenClaw takes them in: named as sent, typed as Discord
    declared them (a vague `application/octet-stream` or none: by the name, else
    `application/octet-stream`), a voice message as `audio/ogg`. At most Discord's 10."""
    voice = bool(msg.flags & IS_VOICE_MESSAGE)
    return tuple(_attachment_file(a, voice) for a in msg.attachments[:MAX_ATTACHMENTS])


def media_budget(settings: ChannelAccount) -> int:
    """The most bytes one attachment may have: `mediaMaxMb` (OpenClaw's default for Discord:
    100)."""
    return media_limit(settings, DEFAULT_MEDIA_MAX_MB)


def attachment_url_refused(url: str, api_base: str) -> str | None:
    """None when an attachment's URL may be downloaded: http(s), on Discord's CDN
    (`*.discordapp.com`, `*.discordapp.net`: OpenClaw's allowlist) or on the REST base's own
    origin (a Discord-compatible endpoint or a test double serving both, as OpenClaw allows
    with `DISCORD_API_URL`); else why not. Nothing else is fetched: the URL comes from a
    message, and ingress must not be made to fetch from hosts on its own network."""
    return url_refused(url, api_base, _CDN_DOMAINS, "Discord's CDN nor the REST API's origin")


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
    files: tuple[DiscordFile, ...] = ()  # its attachments (downloaded once the policy admits it)

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
    messages), a group DM (OpenClaw's `dm.groupEnabled` default), or neither text nor a file
    (no MESSAGE_CONTENT intent, an embed or a sticker only): a file without text is what was
    said. `channel_type` is the message's `channel_type` or the adapter's lookup; `parent_id`
    a thread's parent channel."""
    author = msg.author
    if author.id == bot.id:
        return "own"
    if author.bot or msg.webhook_id:
        return "bot"
    if msg.type not in _CHAT_TYPES:
        return "not-chat"
    if msg.guild_id is None and channel_type == GROUP_DM:
        return "group-dm"
    files = message_files(msg)
    if not msg.content.strip() and not files:
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
        files=files,
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


# --- interactions over HTTP (channel-protocols.md §3.6) -----------------------------------

ENV_PUBLIC_KEY: Final = "DISCORD_PUBLIC_KEY"
DEFAULT_INTERACTIONS_PATH: Final = "/discord/interactions"
# a signature whose timestamp is further than this from now is refused (a replayed request):
# Discord signs each request as it sends it
SIGNATURE_WINDOW: Final = 300.0
EPHEMERAL: Final = 1 << 6  # message flag: shown to the interaction's user only
# a slash command's platform message id is `<channel id>:interaction:<interaction id>`: its
# reply edits the interaction's deferred answer instead of posting into the channel
INTERACTION_REPLY: Final = "interaction:"
# OpenClaw's `sessionPrefix` for Discord's native commands
SLASH_SESSION_PREFIX: Final = "discord:slash"

_CHAT_INPUT: Final = 1  # application command type of a slash command (2, 3: context menus)
_STRING: Final = 3  # option type
_HEX_SIGNATURE: Final = re.compile(r"[0-9a-fA-F]{128}")
_HEX_KEY: Final = re.compile(r"[0-9a-fA-F]{64}")
_TIMESTAMP: Final = re.compile(r"[0-9]{1,12}")
_SNOWFLAKE: Final = re.compile(r"[0-9]{1,20}")

# ids are snowflakes (decimal, 64 bits): anything else is refused before it reaches a subject,
# a KV key or a URL
Snowflake = Annotated[str, msgspec.Meta(pattern=r"^[0-9]{1,20}\Z")]  # (`$` would pass a newline)
# the interaction's token goes into webhook URLs: URL-safe characters only, bounded
InteractionToken = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9._~-]{1,1024}\Z")]


class InteractionType:
    PING: Final = 1
    APPLICATION_COMMAND: Final = 2
    MESSAGE_COMPONENT: Final = 3
    AUTOCOMPLETE: Final = 4
    MODAL_SUBMIT: Final = 5


class ResponseType:
    """An interaction's answer (`{"type": …, "data"?: …}`)."""

    PONG: Final = 1
    CHANNEL_MESSAGE: Final = 4  # CHANNEL_MESSAGE_WITH_SOURCE
    DEFERRED_CHANNEL_MESSAGE: Final = 5  # "thinking…"; the reply edits it later
    AUTOCOMPLETE_RESULT: Final = 8


class _IxUser(msgspec.Struct, frozen=True):
    id: Snowflake
    username: str = ""
    global_name: str | None = None
    bot: bool = False


class _IxMember(msgspec.Struct, frozen=True):
    """A guild interaction's `member` (with its `user`, unlike a message's)."""

    user: _IxUser | None = None
    roles: list[Snowflake] = []


class _IxChannel(msgspec.Struct, frozen=True):
    id: Snowflake
    type: int = 0
    parent_id: Snowflake | None = None


class CommandOption(msgspec.Struct, frozen=True):
    name: str
    type: int = 0
    value: str | int | float | bool | None = None
    options: list[CommandOption] = []  # a sub-command's own


class CommandData(msgspec.Struct, frozen=True):
    """An APPLICATION_COMMAND's `data` (a component's or a modal's decodes too, nameless)."""

    name: str = ""
    type: int = _CHAT_INPUT
    options: list[CommandOption] = []


class Interaction(msgspec.Struct, frozen=True):
    """What Discord POSTs to the Interactions Endpoint URL (the fields a gateway needs)."""

    id: Snowflake
    application_id: Snowflake
    type: int
    token: InteractionToken | None = None
    data: CommandData | None = None
    guild_id: Snowflake | None = None
    channel_id: Snowflake | None = None
    channel: _IxChannel | None = None
    member: _IxMember | None = None  # in a guild
    user: _IxUser | None = None  # in a DM


@dataclass(frozen=True)
class SlashCommand:
    """A command clawmesh registers and serves. A control command (OpenClaw's, by its native
    name and description) becomes `/<name> <input>`; the prompt command's option is the text."""

    name: str
    description: str
    option: str | None = None  # its one string option
    option_description: str = ""
    required: bool = False
    control: bool = True


# OpenClaw registers its whole chat-command catalogue; clawmesh registers the control commands it
# serves (OpenClaw's `new`, `reset`, `status`, `stop`: names, descriptions and the optional
# `input` option of a command that takes arguments, as OpenClaw's native specs have them) and
# `ask`, clawmesh's own: its `prompt` is the message.
COMMANDS: Final = (
    SlashCommand("ask", "Ask the agent.", "prompt", "What to ask", required=True, control=False),
    SlashCommand("new", "Start a new session.", "input", "Command input"),
    SlashCommand("reset", "Reset the current session.", "input", "Command input"),
    SlashCommand("status", "Show current status.", "input", "Command input"),
    SlashCommand("stop", "Stop the current run."),
)
_BY_NAME: Final = {c.name: c for c in COMMANDS}


def command_definitions() -> list[dict[str, Any]]:
    """The body of `PUT /applications/{id}/commands`, each command as OpenClaw's client
    serializes one: a slash command (type 1) usable in guilds, the bot's DMs and private
    channels, installable on a guild or a user."""
    out: list[dict[str, Any]] = []
    for c in COMMANDS:
        spec: dict[str, Any] = {"name": c.name, "description": c.description, "type": _CHAT_INPUT}
        if c.option is not None:
            spec["options"] = [
                {
                    "name": c.option,
                    "description": c.option_description,
                    "type": _STRING,
                    "required": c.required,
                }
            ]
        spec.update(integration_types=[0, 1], contexts=[0, 1, 2], default_member_permissions=None)
        out.append(spec)
    return out


def commands_hash(definitions: list[dict[str, Any]]) -> str:
    """A registered set's fingerprint: registering the same set again is skipped (OpenClaw keeps
    one per application too)."""
    return hashlib.sha256(msgspec.json.encode(definitions, order="sorted")).hexdigest()


@dataclass(frozen=True)
class SlashInbound:
    """One slash command to answer, mapped as OpenClaw maps a native command: the routed
    conversation (the channel, thread or DM it was used in) is the peer."""

    interaction_id: str
    application_id: str
    token: str  # the interaction's webhook token (15 minutes): never logged
    command: SlashCommand
    text: str
    channel_id: str
    guild_id: str | None
    parent_id: str | None  # a thread's parent channel
    peer: Peer
    parent_peer: Peer | None
    sender: Sender
    member_role_ids: tuple[str, ...]

    @property
    def is_direct(self) -> bool:
        return self.guild_id is None

    @property
    def platform_message_id(self) -> str:
        return f"{self.channel_id}:{INTERACTION_REPLY}{self.interaction_id}"


SlashDropped = Literal[
    "not-chat-input", "unknown-command", "no-token", "no-user", "bot", "no-channel", "group-dm", "empty"
]


def _option_text(data: CommandData, name: str | None) -> str:
    if name is None:
        return ""
    for option in data.options:
        if option.name == name and option.value is not None:
            return option.value if isinstance(option.value, str) else str(option.value)
    return ""


def normalize_interaction(ix: Interaction) -> SlashInbound | SlashDropped:
    """The slash command in an APPLICATION_COMMAND interaction, or why it is not one to run:
    not a slash command (a context-menu command), one clawmesh does not serve, no user or
    channel, a bot, a group DM (OpenClaw's `dm.groupEnabled` default), an empty prompt."""
    data = ix.data
    if data is None or data.type != _CHAT_INPUT:
        return "not-chat-input"
    command = _BY_NAME.get(data.name)
    if command is None:
        return "unknown-command"
    if not ix.token:
        return "no-token"
    user = ix.member.user if ix.member is not None and ix.member.user is not None else ix.user
    if user is None:
        return "no-user"
    if user.bot:
        return "bot"
    channel_id = ix.channel.id if ix.channel is not None else ix.channel_id
    if not channel_id:
        return "no-channel"
    kind = ix.channel.type if ix.channel is not None else (DM if ix.guild_id is None else 0)
    value = _option_text(data, command.option).strip()
    if command.control:
        text = f"/{command.name} {value}" if value else f"/{command.name}"
    elif not value:
        return "empty"
    else:
        text = value
    parent_id: str | None = None
    if ix.guild_id is None:
        if kind == GROUP_DM:
            return "group-dm"
        peer, parent = Peer(kind="direct", id=user.id), None
    else:
        peer = Peer(kind="channel", id=channel_id)
        found = ix.channel.parent_id if ix.channel is not None else None
        parent_id = found if kind in THREAD_TYPES and found else None
        parent = Peer(kind="channel", id=parent_id) if parent_id else None
    return SlashInbound(
        interaction_id=ix.id,
        application_id=ix.application_id,
        token=ix.token,
        command=command,
        text=text,
        channel_id=channel_id,
        guild_id=ix.guild_id,
        parent_id=parent_id,
        peer=peer,
        parent_peer=parent,
        sender=Sender(id=user.id, username=user.username or None, name=user.global_name or None),
        member_role_ids=tuple(ix.member.roles) if ix.member is not None else (),
    )


def slash_session_key(agent_id: str, user_id: str) -> str:
    """The session a slash command's prompt runs in: `agent:<agentId>:discord:slash:<userId>`
    (OpenClaw's `resolveNativeCommandSessionTargets`, its Discord `sessionPrefix`)."""
    return f"agent:{agent_id}:{SLASH_SESSION_PREFIX}:{user_id}"


def verify_interaction(
    key: Ed25519PublicKey, timestamp: str, signature: str, body: bytes, now: float
) -> str | None:
    """None when the request is Discord's: `signature` (hex) is the app's Ed25519 signature of
    `timestamp` + the raw body, and `timestamp` is within `SIGNATURE_WINDOW` of now; else why
    not. Nothing of the body is read before."""
    from cryptography.exceptions import InvalidSignature

    if not _TIMESTAMP.fullmatch(timestamp):
        return "missing or malformed X-Signature-Timestamp"
    if abs(now - int(timestamp)) > SIGNATURE_WINDOW:
        return "stale X-Signature-Timestamp (outside the 5-minute window)"
    if not _HEX_SIGNATURE.fullmatch(signature):
        return "missing or malformed X-Signature-Ed25519"
    try:
        key.verify(bytes.fromhex(signature), timestamp.encode() + body)
    except InvalidSignature:
        return "wrong X-Signature-Ed25519"
    return None


def load_public_key(value: str, path: str) -> Ed25519PublicKey:
    """The app's public key (the Developer Portal's hex string); ConfigError naming the key."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    if not _HEX_KEY.fullmatch(value):
        raise ConfigError(
            [
                Problem(
                    f"{path}.publicKey",
                    "expected the application's public key: 64 hex characters (Developer Portal, "
                    "General Information)",
                )
            ]
        )
    return Ed25519PublicKey.from_public_bytes(bytes.fromhex(value))


def resolve_public_key(
    settings: ChannelAccount, account_id: str, env: Mapping[str, str], path: str
) -> str | None:
    """`publicKey` (a clawmesh key: a string, `${VAR}` or a SecretRef), else `DISCORD_PUBLIC_KEY`
    for the default account. None: the account serves no interactions endpoint."""
    configured = (secret_value(settings.public_key, env, f"{path}.publicKey") or "").strip()
    if not configured and account_id == DEFAULT_ACCOUNT_ID:
        configured = (env.get(ENV_PUBLIC_KEY) or "").strip()
    return configured or None


def interactions_path(settings: ChannelAccount, path: str) -> str:
    """Where the interactions endpoint is served: `webhookPath` (a clawmesh key for Discord),
    default `/discord/interactions`."""
    found = settings.webhook_path or DEFAULT_INTERACTIONS_PATH
    if not found.startswith("/"):
        raise ConfigError([Problem(f"{path}.webhookPath", f"must start with '/', got {found!r}")])
    return found


def configured_application_id(settings: ChannelAccount, path: str) -> str | None:
    """`applicationId` (OpenClaw's key: the app slash commands are registered for), checked to
    be an id (it goes into a URL and a KV key); None when unset."""
    found = (settings.application_id or "").strip()
    if not found:
        return None
    if not _SNOWFLAKE.fullmatch(found):
        raise ConfigError(
            [Problem(f"{path}.applicationId", f"expected the application's id (digits), got {found[:40]!r}")]
        )
    return found


def application_id_from_token(token: str) -> str | None:
    """The application id a bot token starts with (base64 of the bot's user id), as OpenClaw's
    `parseApplicationIdFromToken` reads it; None when it is not there."""
    first, dot, _ = token.partition(".")
    if not dot or not first:
        return None
    try:
        decoded = base64.b64decode(first.replace("-", "+").replace("_", "/") + "=" * (-len(first) % 4))
        text = decoded.decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    return text if _SNOWFLAKE.fullmatch(text) else None


def native_commands_enabled(settings: ChannelAccount) -> bool:
    """`commands.native` (OpenClaw's key; `auto`, its default, is on for Discord): whether the
    slash commands are registered with Discord."""
    native = settings.commands.native if settings.commands is not None else None
    return native is not False


def ephemeral_replies(settings: ChannelAccount) -> bool:
    """`slashCommand.ephemeral` (OpenClaw's default true): a slash command's answer is shown to
    the user who ran it only."""
    return settings.slash_command is None or settings.slash_command.ephemeral is not False
