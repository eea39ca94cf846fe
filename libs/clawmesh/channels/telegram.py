"""Telegram without I/O: the Bot API's update shapes, an update mapped to routing input exactly
as OpenClaw maps it (`extensions/telegram/src/conversation-route.ts`, `bot/helpers.ts`), mention
facts for the access policy, the bot token as OpenClaw resolves it, and reply text split to
Telegram's limit.

Routing input (channel-protocols.md §5.1):
- private chat: peer `direct:<from.id>` (the sender, not the chat);
- group / supergroup: peer `group:<chat.id>`; in a forum supergroup `group:<chat.id>:topic:<t>`
  with t = `message_thread_id`, or 1 (General) when absent, and parent peer `group:<chat.id>` so
  bindings on the whole group still match a topic; in a non-forum group the thread id is ignored;
- a channel post is a group message whose sender is the posting chat;
- the bot's own messages are dropped.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Literal

import msgspec

from ..config import ChannelAccount, ChannelStreaming, ConfigError, Problem, secret_value
from ..ids import DEFAULT_ACCOUNT_ID
from ..wire import Peer, Sender
from ._limits import media_limit
from .text import split_text as _split_text

__all__ = [
    "DEFAULT_API_ROOT",
    "GENERAL_TOPIC",
    "TEXT_LIMIT",
    "BotIdentity",
    "Chat",
    "Message",
    "MessageEntity",
    "PhotoSize",
    "StreamingMode",
    "TelegramFile",
    "TelegramInbound",
    "Update",
    "User",
    "chat_of",
    "media_budget",
    "message_files",
    "normalize_update",
    "pick_photo",
    "resolve_token",
    "split_text",
    "streaming_mode",
    "text_chunk_limit",
]

DEFAULT_API_ROOT: Final = "https://api.telegram.org"
TEXT_LIMIT: Final = 4096  # characters per message, after entity parsing
GENERAL_TOPIC: Final = 1  # a forum's General topic: sends must omit message_thread_id
ENV_TOKEN: Final = "TELEGRAM_BOT_TOKEN"

StreamingMode = Literal["off", "partial", "block", "progress"]


# --- the Bot API's shapes (the fields a gateway uses; unknown keys are ignored) -------------


class User(msgspec.Struct, frozen=True):
    id: int
    is_bot: bool = False
    first_name: str = ""
    last_name: str | None = None
    username: str | None = None


class Chat(msgspec.Struct, frozen=True):
    id: int
    type: str
    title: str | None = None
    username: str | None = None
    is_forum: bool = False


class MessageEntity(msgspec.Struct, frozen=True):
    type: str
    offset: int
    length: int
    user: User | None = None


class PhotoSize(msgspec.Struct, frozen=True):
    file_id: str
    width: int = 0
    height: int = 0
    file_size: int | None = None


class FileInfo(msgspec.Struct, frozen=True):
    """A document, voice message, audio, video, video note, animation or sticker (their common
    fields; a sticker's kind shows in its flags)."""

    file_id: str
    file_name: str | None = None
    mime_type: str | None = None
    file_size: int | None = None
    is_animated: bool = False  # stickers: a .tgs animation
    is_video: bool = False  # stickers: a .webm video


class Message(msgspec.Struct, frozen=True, rename={"from_": "from"}):
    message_id: int
    chat: Chat
    date: int = 0
    message_thread_id: int | None = None
    is_topic_message: bool = False
    from_: User | None = None
    sender_chat: Chat | None = None
    text: str | None = None
    caption: str | None = None
    entities: list[MessageEntity] = []
    caption_entities: list[MessageEntity] = []
    reply_to_message: Message | None = None
    forum_topic_created: dict[str, object] | None = None
    photo: list[PhotoSize] = []  # the same picture in several sizes, smallest first
    document: FileInfo | None = None
    voice: FileInfo | None = None
    audio: FileInfo | None = None
    video: FileInfo | None = None
    video_note: FileInfo | None = None
    animation: FileInfo | None = None
    sticker: FileInfo | None = None


class Update(msgspec.Struct, frozen=True):
    update_id: int
    message: Message | None = None
    edited_message: Message | None = None
    channel_post: Message | None = None
    edited_channel_post: Message | None = None


@dataclass(frozen=True)
class BotIdentity:
    """Who the bot is (`getMe`): its own messages are dropped, `@username` is a mention."""

    id: int
    username: str = ""


# --- an update as routing input ---------------------------------------------------------------


@dataclass(frozen=True)
class TelegramFile:
    """One file of a message, as the agent will see it named."""

    kind: str  # document | voice message | audio | video | video note | animation | sticker
    file_id: str
    name: str
    mime: str
    size: int | None


# (kind, default type, default extension) per Message field; a sticker's type is decided by its flags
_FILE_FIELDS: Final = (
    ("document", "document", "application/octet-stream", ""),
    ("voice", "voice message", "audio/ogg", ".ogg"),
    ("audio", "audio", "audio/mpeg", ".mp3"),
    ("video", "video", "video/mp4", ".mp4"),
    ("video_note", "video note", "video/mp4", ".mp4"),
    ("animation", "animation", "video/mp4", ".mp4"),
    ("sticker", "sticker", "image/webp", ".webp"),
)


def message_files(msg: Message) -> tuple[TelegramFile, ...]:
    """A message's files other than photos, named as sent (or `<field>-<message id><ext>`)."""
    found = []
    for attr, kind, mime, ext in _FILE_FIELDS:
        info: FileInfo | None = getattr(msg, attr)
        if info is None:
            continue
        if attr == "sticker" and (info.is_animated or info.is_video):
            mime, ext = ("video/webm", ".webm") if info.is_video else ("application/x-tgsticker", ".tgs")
        found.append(
            TelegramFile(
                kind=kind,
                file_id=info.file_id,
                name=info.file_name or f"{attr.replace('_', '-')}-{msg.message_id}{ext}",
                mime=info.mime_type or mime,
                size=info.file_size,
            )
        )
    return tuple(found)


@dataclass(frozen=True)
class TelegramInbound:
    """One message, normalised: what routing sees, where a reply goes, and the mention facts an
    access policy needs (OpenClaw's `bot/body-helpers.ts`)."""

    update_id: int
    chat_id: int
    chat_type: str  # private | group | supergroup (a channel post is a supergroup message)
    message_id: int
    peer: Peer
    parent_peer: Peer | None
    sender: Sender
    text: str
    # where a reply goes: a forum topic other than General, or a private chat's thread
    reply_thread_id: int | None
    is_group: bool
    is_channel_post: bool
    was_mentioned: bool  # `@botusername` in the text, or a mention entity naming the bot
    has_any_mention: bool  # any mention entity
    implicit_mention: bool  # a reply to one of the bot's messages
    topic: int | None  # the forum topic (1: General); None outside forums
    is_command: bool  # starts with a `/command` (a `bot_command` entity at offset 0)
    photos: tuple[PhotoSize, ...] = ()  # a photo message's sizes (the adapter picks one that fits)
    files: tuple[TelegramFile, ...] = ()  # its other media (documents, voice, video, …)

    @property
    def platform_message_id(self) -> str:
        """Unique per account: message ids are unique only within their chat."""
        return f"{self.chat_id}:{self.message_id}"


def _utf16_slice(text: str, offset: int, length: int) -> str:
    raw = text.encode("utf-16-le")
    return raw[offset * 2 : (offset + length) * 2].decode("utf-16-le", "replace")


def _mentions(msg: Message, text: str, bot: BotIdentity) -> tuple[bool, bool]:
    entities = msg.entities if msg.text is not None else msg.caption_entities
    mention_entities = [e for e in entities if e.type in ("mention", "text_mention")]
    explicit = False
    if bot.username:
        handle = "@" + bot.username.lower()
        pattern = rf"(?<![a-z0-9_]){re.escape(handle)}(?![a-z0-9_])"
        explicit = re.search(pattern, text.lower()) is not None
        explicit = explicit or any(
            e.type == "mention" and _utf16_slice(text, e.offset, e.length).lower() == handle
            for e in mention_entities
        )
    explicit = explicit or any(e.type == "text_mention" and e.user and e.user.id == bot.id for e in entities)
    return explicit, bool(mention_entities)


def normalize_update(update: Update, bot: BotIdentity) -> TelegramInbound | None:
    """The update as routing input, or None when it is nothing to answer (an edit, a service
    message without text, the bot's own message, a chat type a bot is not answered in)."""
    channel_post = update.channel_post is not None
    msg = update.message or update.channel_post
    if msg is None:
        return None
    text = msg.text if msg.text is not None else (msg.caption or "")
    files = message_files(msg)
    if not text and not msg.photo and not files:
        return None  # a service message (a member joined, a pin, …)
    chat = msg.chat
    if msg.from_ is not None and msg.from_.id == bot.id:
        return None
    chat_type = "supergroup" if channel_post else chat.type
    if chat_type == "private":
        if msg.from_ is None:
            return None
        peer = Peer(kind="direct", id=str(msg.from_.id))
        parent: Peer | None = None
        topic: int | None = None
        # OpenClaw keeps a private chat's thread for the reply
        reply_thread = msg.message_thread_id
    elif chat_type in ("group", "supergroup"):
        if chat.is_forum:
            topic = msg.message_thread_id or GENERAL_TOPIC
            peer = Peer(kind="group", id=f"{chat.id}:topic:{topic}")
            parent = Peer(kind="group", id=str(chat.id))
            reply_thread = topic if topic != GENERAL_TOPIC else None
        else:
            # outside forums a thread id only marks a reply chain: the reply quotes the message
            peer = Peer(kind="group", id=str(chat.id))
            parent = None
            reply_thread = None
            topic = None
    else:
        return None
    who = msg.from_
    if channel_post or who is None:
        poster = msg.sender_chat or chat
        sender = Sender(id=str(poster.id), name=poster.title, username=poster.username)
    else:
        name = " ".join(p for p in (who.first_name, who.last_name) if p) or None
        sender = Sender(id=str(who.id), name=name, username=who.username)
    explicit, any_mention = _mentions(msg, text, bot)
    entities = msg.entities if msg.text is not None else msg.caption_entities
    command = any(e.type == "bot_command" and e.offset == 0 for e in entities)
    replied = msg.reply_to_message
    implicit = (
        replied is not None
        and replied.from_ is not None
        and replied.from_.id == bot.id
        and replied.forum_topic_created is None
    )
    return TelegramInbound(
        update_id=update.update_id,
        chat_id=chat.id,
        chat_type=chat_type,
        message_id=msg.message_id,
        peer=peer,
        parent_peer=parent,
        sender=sender,
        text=text,
        reply_thread_id=reply_thread,
        is_group=chat_type != "private",
        is_channel_post=channel_post,
        was_mentioned=explicit,
        has_any_mention=any_mention,
        implicit_mention=implicit,
        topic=topic,
        is_command=command,
        photos=tuple(msg.photo),
        files=files,
    )


def chat_of(peer: Peer | None, reply_to: str | None) -> int | None:
    """The chat a reply goes to: from the answered message's id (`<chat>:<message>`), else the
    peer (a private chat's id is its user's; a topic peer is `<chat>:topic:<t>`)."""
    for raw in (
        reply_to.rsplit(":", 1)[0] if reply_to and ":" in reply_to else None,
        peer.id if peer else None,
    ):
        if raw:
            head = raw.split(":", 1)[0]
            try:
                return int(head)
            except ValueError:
                continue
    return None


# --- settings ---------------------------------------------------------------------------------


def resolve_token(settings: ChannelAccount, account_id: str, env: Mapping[str, str], path: str) -> str | None:
    """The bot token as OpenClaw resolves it: `tokenFile` (a regular file, not a symlink) beats
    `botToken`, which beats `TELEGRAM_BOT_TOKEN` (the default account only). None: no token.
    ConfigError names the key when a configured source cannot be read; the token itself is
    never put in a message."""
    if settings.token_file:
        file_path = os.path.expanduser(settings.token_file)
        where = f"{path}.tokenFile"
        try:
            info = os.lstat(file_path)
        except OSError as exc:
            raise ConfigError(
                [Problem(where, f"cannot read the token file {file_path}: {exc.strerror}")]
            ) from None
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError([Problem(where, f"{file_path} must be a regular file (symlinks are refused)")])
        try:
            with open(file_path, encoding="utf-8") as fh:
                token = fh.read().strip()
        except OSError as exc:
            raise ConfigError(
                [Problem(where, f"cannot read the token file {file_path}: {exc.strerror}")]
            ) from None
        if not token:
            raise ConfigError([Problem(where, f"the token file {file_path} is empty")])
        return token
    configured = secret_value(settings.bot_token, env, f"{path}.botToken")
    if configured:
        return configured.strip()
    if account_id == DEFAULT_ACCOUNT_ID:
        return (env.get(ENV_TOKEN) or "").strip() or None
    return None


def streaming_mode(settings: ChannelAccount) -> StreamingMode:
    """`streaming` as OpenClaw reads it: the object's `mode`; legacy `true` is `partial`, `false`
    `off`, a bare mode string that mode. Unset: `progress` (OpenClaw's default since 2026.8.1)."""
    value = settings.streaming
    if isinstance(value, ChannelStreaming):
        value = value.mode
    if value is True:
        return "partial"
    if value is False:
        return "off"
    if value in ("off", "partial", "block", "progress"):
        return value  # type: ignore[return-value]
    return "progress"


def text_chunk_limit(settings: ChannelAccount) -> int:
    """`textChunkLimit`, within Telegram's own limit (4096)."""
    limit = settings.text_chunk_limit
    return TEXT_LIMIT if limit is None or limit <= 0 else min(limit, TEXT_LIMIT)


def split_text(text: str, limit: int = TEXT_LIMIT) -> list[str]:
    """Reply text in messages of at most `limit` UTF-16 units (as Telegram counts); see
    `clawmesh.channels.text.split_text`."""
    return _split_text(text, limit)


def media_budget(settings: ChannelAccount) -> int:
    """The most bytes one file of a message may have: `mediaMaxMb` (OpenClaw's default for
    Telegram: 100; the Bot API itself hands a bot files of up to 20 MB)."""
    return media_limit(settings, 100.0)


def pick_photo(photos: tuple[PhotoSize, ...], budget: int) -> PhotoSize | None:
    """The largest size of a photo known to fit `budget` bytes."""
    fitting = [p for p in photos if p.file_size is not None and p.file_size <= budget]
    return max(fitting, key=lambda p: (p.file_size or 0, p.width * p.height), default=None)
