"""Slack as a gateway needs it: which mode an account runs (OpenClaw's `mode`, `socket` when
unset) and its credentials, the Events API's request signatures (v0) and event envelope, Socket
Mode's frames (`hello`, `disconnect`, envelopes and their acks), and OpenClaw's mapping of a
`message` / `app_mention` event to routing input
(`extensions/slack/src/monitor/message-handler/prepare.ts`, `channel-type.ts`), with the files a
message carries as the plugin takes them in (`monitor/media.ts`: `url_private_download`, else
`url_private`, with the bot token, only from Slack's hosts; an HTML page instead of the file is a
failure; at most 8 files a message; `mediaMaxMb` default 20).

Threads and `replyToMode`, as the Slack plugin of OpenClaw 2026.9.6 (`@openclaw/slack`) decides
them (its functions named at each one below): which `replyToMode` a message's chat has
(`resolve_reply_to_mode`), where its reply goes (`reply_thread_ts`: a thread reply in its
thread, a top-level message in a thread under it unless the mode is `off`), and which thread
gets a session of its own (`session_thread_ts`: channel and group-DM thread replies, and a
channel root expected to start a visible thread; the router appends `:thread:<ts>` to the
session key). A DM thread reply stays on the DM's session. Slack's Agent View and Assistant
View (Slack-managed DM threads, which need state remembered across messages) are not
implemented: such DMs are ordinary DMs here.

Streamed previews (`streaming_mode`): `channels.slack.streaming` as the plugin's runtime reads it
(`resolveSlackStreamingMode` over `mergeSlackStreamingConfig`): `off`, `partial`, `block` or
`progress` — OpenClaw's default since 2026.8.1. What a `chat.update` of a preview can take
(`EDIT_TEXT_MAX_BYTES`, `fit_edit`) is the plugin's `SLACK_EDIT_TEXT_MAX_BYTES`.

Pure functions: the ingress adapter does the HTTP, the WebSocket and the bus."""

from __future__ import annotations

import hashlib
import hmac
import mimetypes
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final, Literal
from urllib.parse import urlsplit, urlunsplit

import msgspec

from ..config import (
    ChannelAccount,
    ChannelConfig,
    ChannelGroup,
    ChannelStreaming,
    Config,
    ConfigError,
    Problem,
    ReplyToMode,
    secret_value,
)
from ..ids import DEFAULT_ACCOUNT_ID, normalize_account_id
from ..wire import Peer, Sender
from ._limits import media_limit, url_refused

__all__ = [
    "DEFAULT_API_BASE_URL",
    "DEFAULT_MEDIA_MAX_MB",
    "DEFAULT_MODE",
    "DEFAULT_STREAMING_MODE",
    "DEFAULT_WEBHOOK_PATH",
    "EDIT_TEXT_MAX_BYTES",
    "MAX_FILES",
    "REPLAY_WINDOW",
    "TEXT_LIMIT",
    "BotIdentity",
    "Envelope",
    "Event",
    "FileInfo",
    "Mode",
    "SlackCredentials",
    "SlackFile",
    "SlackInbound",
    "SocketFrame",
    "StreamingMode",
    "channel_requires_mention",
    "config_checks",
    "decode_socket_frame",
    "edit_text_bytes",
    "file_url_refused",
    "fit_edit",
    "media_budget",
    "message_files",
    "normalize_event",
    "redact_url",
    "reply_thread_ts",
    "resolve_credentials",
    "resolve_mode",
    "resolve_reply_to_mode",
    "salvage_envelope_id",
    "session_thread_ts",
    "sign",
    "socket_ack",
    "socket_payload",
    "streaming_mode",
    "unexpected_html",
    "verify_signature",
]

DEFAULT_API_BASE_URL: Final = "https://slack.com/api"
DEFAULT_WEBHOOK_PATH: Final = "/slack/events"  # OpenClaw's default Request URL path
REPLAY_WINDOW: Final = 300  # seconds a signed request stays valid (Slack's rule)
TEXT_LIMIT: Final = 4000  # Slack truncates at 40,000; it asks to keep messages at 4,000
ENV_BOT_TOKEN: Final = "SLACK_BOT_TOKEN"
ENV_APP_TOKEN: Final = "SLACK_APP_TOKEN"
ENV_SIGNING_SECRET: Final = "SLACK_SIGNING_SECRET"
DEFAULT_MODE: Final = "socket"  # OpenClaw's default (its schema: `mode` … `.default("socket")`)
# the preview mode when nothing says otherwise: the plugin's `resolveSlackStreamingMode` falls
# back to "progress" (OpenClaw 2026.8.1 made it the default, #122552; before: "partial")
DEFAULT_STREAMING_MODE: Final = "progress"
# what Slack takes in one `chat.update` text: 4000 bytes, counted after it escapes `&`, `<` and
# `>` (the plugin's `SLACK_EDIT_TEXT_MAX_BYTES`; its edits are cut to it, a longer final reply is
# sent as new messages). `chat.postMessage` takes up to 40,000 characters.
EDIT_TEXT_MAX_BYTES: Final = 4000
_ESCAPED_BYTES: Final = {"&": 5, "<": 4, ">": 4}  # &amp; &lt; &gt;
_USER_MENTION: Final = re.compile(r"<@([UW][A-Z0-9]+)(?:\|[^>]*)?>")
# message subtypes that are a person saying something (the others: edits, joins, bot posts, ...)
_PLAIN_SUBTYPES: Final = frozenset({"", "thread_broadcast", "file_share", "me_message"})

ChannelType = Literal["im", "mpim", "channel", "group"]
Mode = Literal["socket", "http"]
StreamingMode = Literal["off", "partial", "block", "progress"]
_STREAMING_MODES: Final = ("off", "partial", "block", "progress")


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """`X-Slack-Signature` of a request: `v0=` hex HMAC-SHA256 over `v0:<ts>:<raw body>`."""
    base = b"v0:" + timestamp.encode() + b":" + body
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


def verify_signature(secret: str, timestamp: str, signature: str, body: bytes, now: float) -> str | None:
    """None when the request is Slack's; else why not (stale or missing timestamp, bad signature).
    Compared in constant time over the raw bytes received."""
    try:
        ts = int(timestamp)
    except ValueError:
        return "missing or malformed X-Slack-Request-Timestamp"
    if abs(now - ts) > REPLAY_WINDOW:
        return "stale X-Slack-Request-Timestamp (outside the 5-minute window)"
    if not hmac.compare_digest(sign(secret, timestamp, body).encode(), signature.encode()):
        return "wrong X-Slack-Signature"
    return None


class FileInfo(msgspec.Struct, frozen=True):
    """One of a message's `files` as Slack describes it (the fields a gateway needs). A file
    deleted since (`mode: "tombstone"`), one a free workspace's history limit hides
    (`hidden_by_limit`) or an external one (Google Drive, …) has no URL Slack serves it from."""

    id: str = ""
    name: str | None = None  # the file name, `Q3 report.pdf`
    title: str | None = None  # what Slack shows, `Q3 report`
    mimetype: str | None = None
    filetype: str | None = None
    subtype: str | None = None  # `slack_audio`, `slack_video`: a clip recorded in Slack
    size: int | None = None
    mode: str | None = None  # hosted, external, snippet, post, tombstone, hidden_by_limit
    is_external: bool = False
    url_private: str | None = None
    url_private_download: str | None = None


class Event(msgspec.Struct, frozen=True):
    type: str = ""
    subtype: str | None = None
    channel: str = ""
    channel_type: str | None = None
    user: str | None = None
    bot_id: str | None = None
    text: str = ""
    ts: str = ""
    thread_ts: str | None = None
    parent_user_id: str | None = None
    team: str | None = None
    files: list[FileInfo] = []  # a `file_share` message's files (an `app_mention`'s too)


class Envelope(msgspec.Struct, frozen=True):
    """What Slack POSTs: `url_verification`, `event_callback` or `app_rate_limited`."""

    type: str = ""
    challenge: str | None = None
    team_id: str | None = None
    api_app_id: str | None = None
    event_id: str | None = None
    event: Event | None = None


@dataclass(frozen=True)
class BotIdentity:
    """`auth.test` of the bot token: its user id (for `<@U…>`) and its workspace (`teamId`)."""

    user_id: str
    team_id: str
    name: str = ""


@dataclass(frozen=True)
class SlackInbound:
    """One message to answer, mapped as OpenClaw maps it."""

    peer: Peer
    sender: Sender
    chat_type: Literal["direct", "group", "channel"]
    channel_id: str
    ts: str
    thread_ts: str | None  # the event's `thread_ts`: the thread a reply is in (a root's own ts)
    is_thread_reply: bool  # in a thread, not its root (OpenClaw's `isThreadReply`)
    text: str
    explicit_mention: bool  # `<@bot>` in the text, or an `app_mention` event
    was_mentioned: bool  # explicit, or a reply in a thread the bot started
    mentions_others: bool
    is_room: bool  # a channel or private channel: mention gating applies (not DMs, not mpims)
    files: tuple[SlackFile, ...] = ()  # its files (downloaded once the policy admits it)

    @property
    def platform_message_id(self) -> str:
        """`channel:ts`: the same message as `message` and as `app_mention` is one id."""
        return f"{self.channel_id}:{self.ts}"


# --- a message's files (the plugin's `monitor/media.ts`) ------------------------------------

# the plugin's monitor: `mediaMaxBytes = (opts.mediaMaxMb ?? slackCfg.mediaMaxMb ?? 20) * 1024 * 1024`
DEFAULT_MEDIA_MAX_MB: Final = 20
# files of one message taken in (the plugin's `files.slice(0, 8)`, the rest "omitted: 8-file
# limit"; Slack lets a message carry 10)
MAX_FILES: Final = 8
# where the bot token may go (the plugin's SLACK_MEDIA_SSRF_POLICY, GovSlack's files host too)
_FILE_DOMAINS: Final = ("slack.com", "slack-edge.com", "slack-files.com", "slack-gov.com")
_NOT_SERVED: Final = {
    "tombstone": "deleted",
    "hidden_by_limit": "hidden by the workspace's history limit",
}
# Python's own table (never the host's mime.types: the same everywhere)
_TYPES: Final = mimetypes.MimeTypes()


@dataclass(frozen=True)
class SlackFile:
    """One file of a message, as the agent will see it named and typed, and where it is
    downloaded from (`url`; empty when Slack serves it from nowhere: `unavailable` says why)."""

    kind: str  # voice message | picture | video | sound file | file
    file_id: str
    name: str
    mime: str
    size: int | None
    url: str
    unavailable: str = ""


def _file(info: FileInfo) -> SlackFile:
    declared = (info.mimetype or "").split(";", 1)[0].strip().lower()
    name = info.name or info.title or ""
    mime = declared or (_TYPES.guess_type(name)[0] if name else None) or "application/octet-stream"
    # a clip recorded in Slack is served as video/*: the plugin makes it audio/* (so it is
    # transcribed) and it is the voice message of Slack (`resolveSlackMediaMimetype`)
    if info.subtype == "slack_audio":
        mime = mime.replace("video/", "audio/", 1) if mime.startswith("video/") else mime
        kind = "voice message"
    else:
        major = mime.split("/", 1)[0]
        kind = {"image": "picture", "video": "video", "audio": "sound file"}.get(major, "file")
    if not name:
        name = f"file-{info.id or 'unnamed'}{_TYPES.guess_extension(mime) or ''}"
    url = info.url_private_download or info.url_private or ""
    why = _NOT_SERVED.get(info.mode or "", "")
    if not why and (info.is_external or info.mode == "external"):
        why = "an external file (not stored by Slack)"
    if not why and not url:
        why = "no private download URL"
    size = info.size if info.size is not None and info.size >= 0 else None
    return SlackFile(
        kind=kind, file_id=info.id, name=name, mime=mime, size=size, url="" if why else url, unavailable=why
    )


def message_files(event: Event) -> tuple[SlackFile, ...]:
    """A message's files as the plugin takes them in: named as sent (`name`, else its title),
    typed as Slack declared them (else by the name, else `application/octet-stream`; a clip
    recorded in Slack as audio), downloaded from `url_private_download`, else `url_private`.
    All of them: the adapter takes `MAX_FILES` and names the rest."""
    return tuple(_file(f) for f in event.files)


def media_budget(settings: ChannelAccount) -> int:
    """The most bytes one file may have: `mediaMaxMb` (the plugin's default: 20)."""
    return media_limit(settings, DEFAULT_MEDIA_MAX_MB)


def file_url_refused(url: str, api_base: str) -> str | None:
    """None when a file may be downloaded from `url` with the bot token (every hop of a
    redirect is asked again): https on Slack's hosts (`*.slack.com`, `*.slack-edge.com`,
    `*.slack-files.com`, GovSlack's `*.slack-gov.com`: the plugin's allowlist), or the Web API
    base's own origin (a Slack-compatible endpoint or a test double serving both); else why
    not. The token never goes anywhere else, and nothing else is fetched."""
    return url_refused(url, api_base, _FILE_DOMAINS, "Slack's nor the Web API's origin")


def unexpected_html(content_type: str, data: bytes, file: SlackFile) -> bool:
    """Slack answers a file URL it will not serve to the token (no `files:read`, a revoked
    token) with its sign-in page, HTTP 200 `text/html`: a page where a file that is not HTML
    was expected is a failure, not the file (the plugin's "blocked: unexpected HTML content")."""
    if file.mime == "text/html" or file.name.lower().endswith((".html", ".htm")):
        return False
    if content_type.split(";", 1)[0].strip().lower() == "text/html":
        return True
    head = data[:512].decode("utf-8", "replace").lstrip().lower()
    return head.startswith(("<!doctype html", "<html"))


def _channel_type(event: Event) -> ChannelType:
    """`channel_type`, corrected by the id's prefix as OpenClaw does (`D…` is always a DM)."""
    cid = event.channel
    if cid.startswith("D"):
        return "im"
    if event.channel_type in ("im", "mpim", "channel", "group"):
        return event.channel_type  # type: ignore[return-value]
    if cid.startswith("G"):
        return "group"
    return "channel"


def normalize_event(envelope: Envelope, bot: BotIdentity) -> SlackInbound | None:
    """The message to answer, or None: not a message, another workspace's, the bot's own or
    another bot's, an edit/join/…, an `app_mention` in a DM (its `message` event covers it), or
    neither text nor a file (the plugin's `prepareSlackMessage` drops a message with nothing in
    its body). A file without text (`file_share`) is what was said."""
    event = envelope.event
    if envelope.type != "event_callback" or event is None or event.type not in ("message", "app_mention"):
        return None
    if envelope.team_id and bot.team_id and envelope.team_id != bot.team_id:
        return None
    if (event.subtype or "") not in _PLAIN_SUBTYPES or event.bot_id or not event.user or not event.ts:
        return None
    if event.user == bot.user_id or not event.channel:
        return None
    kind = _channel_type(event)
    if event.type == "app_mention" and kind in ("im", "mpim"):
        return None
    files = message_files(event)
    if not event.text.strip() and not files:
        return None
    mentioned_ids = _USER_MENTION.findall(event.text)
    explicit = event.type == "app_mention" or bot.user_id in mentioned_ids
    implicit = bool(event.parent_user_id and event.parent_user_id == bot.user_id)
    if kind == "im":
        peer, chat_type = Peer(kind="direct", id=event.user), "direct"
    elif kind == "mpim":
        peer, chat_type = Peer(kind="group", id=event.channel), "group"
    else:
        peer, chat_type = Peer(kind="channel", id=event.channel), "channel"
    thread_ts = event.thread_ts or None
    # resolveSlackThreadContext: a `thread_ts` other than its own ts, or one with a parent
    in_thread = thread_ts is not None and (thread_ts != event.ts or bool(event.parent_user_id))
    return SlackInbound(
        peer=peer,
        sender=Sender(id=event.user),
        chat_type=chat_type,  # type: ignore[arg-type]
        channel_id=event.channel,
        ts=event.ts,
        thread_ts=thread_ts,
        is_thread_reply=in_thread,
        text=event.text,
        explicit_mention=explicit,
        was_mentioned=explicit or implicit,
        mentions_others=bool(mentioned_ids) and not explicit,
        is_room=kind in ("channel", "group"),
        files=files,
    )


# --- threads and replyToMode ------------------------------------------------------------------


def _channel_keys(channel_id: str, team_id: str | None) -> list[str]:
    """The `channels` map keys that name a channel, in the plugin's order
    (`buildSlackChannelIdCandidates`, an install that is not enterprise-wide): team-scoped
    `team:<T>:channel:<C>`, the id as given, lower- and upper-cased, and `channel:<id>`."""
    cid = channel_id.strip()
    if not cid:
        return []
    ids = (cid, cid.lower(), cid.upper())
    team = (team_id or "").strip()
    teams = (team, team.lower(), team.upper()) if team else ()
    keys = [f"team:{t}:channel:{c}" for t, c in zip(teams, ids, strict=False)]
    keys += [*ids, *(f"channel:{c}" for c in ids)]
    return list(dict.fromkeys(keys))


def _channel_entries(
    settings: ChannelAccount, channel_id: str, team_id: str | None
) -> tuple[ChannelGroup | None, ChannelGroup | None]:
    """The channel's entry in the `channels` map (its own, else `"*"`) and the `"*"` entry
    (`resolveSlackChannelConfig`: a key falls back to the wildcard's)."""
    table = settings.channels if isinstance(settings.channels, dict) else {}
    wildcard = table.get("*")
    entry = next((table[k] for k in _channel_keys(channel_id, team_id) if k != "*" and k in table), wildcard)
    return entry, wildcard


def resolve_reply_to_mode(
    settings: ChannelAccount,
    chat_type: Literal["direct", "group", "channel"],
    channel_id: str,
    team_id: str | None = None,
) -> ReplyToMode:
    """The `replyToMode` of a message's chat (`resolveSlackRoutingContext`:
    `channelConfig?.replyToMode ?? resolveSlackReplyToMode(account, chatType)`): a channel's
    entry in `channels` (its own, else `"*"`; channels and private channels only), then
    `replyToModeByChatType.<direct|group|channel>` (for DMs the legacy `dm.replyToMode` when
    that is unset: OpenClaw's `doctor --fix` moves it there), then `replyToMode`, else `off`.
    `settings` are the account's merged over the channel's (each key as a whole)."""
    if chat_type == "channel":
        for level in _channel_entries(settings, channel_id, team_id):
            if level is not None and level.reply_to_mode is not None:
                return level.reply_to_mode
    by_type = settings.reply_to_mode_by_chat_type
    chosen = getattr(by_type, chat_type) if by_type is not None else None
    if chosen is None and chat_type == "direct" and settings.dm is not None:
        chosen = settings.dm.reply_to_mode
    return chosen or settings.reply_to_mode or "off"


def channel_requires_mention(settings: ChannelAccount, channel_id: str, team_id: str | None = None) -> bool:
    """`requireMention` of a channel (`resolveSlackChannelConfig`): its entry's, else `"*"`'s,
    else the account's, else true."""
    for level in _channel_entries(settings, channel_id, team_id):
        if level is not None and level.require_mention is not None:
            return level.require_mention
    return settings.require_mention if settings.require_mention is not None else True


def reply_thread_ts(sl: SlackInbound, mode: ReplyToMode) -> str | None:
    """The `thread_ts` a reply is posted with (None: the channel's top level). A thread reply
    is answered in its thread whatever the mode; a top-level message in a thread under it unless
    the mode is `off` (`createSlackReplyDeliveryPlan` over `createReplyReferencePlanner`, and
    `deliverNormally`). `first` and `batched` thread only the first reply payload of a turn; a
    clawmesh turn has one reply, so they answer as `all` does."""
    if sl.is_thread_reply:
        return sl.thread_ts
    if mode == "off":
        return None
    return sl.thread_ts or sl.ts


def session_thread_ts(
    sl: SlackInbound, mode: ReplyToMode, *, require_mention: bool, mentioned: bool
) -> str | None:
    """The thread whose own session the message belongs to (its key `<base>:thread:<ts>`), or
    None: the chat's session (`resolveSlackRoutingContext`'s `routedThreadId`). A thread reply
    in a channel or group DM: its thread. A DM thread reply: None (the DM's session). A
    top-level message in a channel or private channel that is expected to start a visible
    thread — `mode` is not `off` and it mentions the bot (`app_mention`, `<@bot>`, or a mention
    pattern: `mentioned`, the access policy's `WasMentioned`) or the channel does not require a
    mention — is seeded into its own ts, so it and the replies in its thread share a session
    (`prepareSlackMessage`'s `seedTopLevelRoomThread`)."""
    if sl.chat_type == "direct":
        return None
    if sl.is_thread_reply:
        return sl.thread_ts
    if not sl.is_room or mode == "off":
        return None
    if sl.explicit_mention or mentioned or not require_mention:
        return sl.thread_ts or sl.ts
    return None


# --- streamed previews -------------------------------------------------------------------


def _parse_mode(value: object) -> StreamingMode | None:
    """`parseStreamingMode`: a mode name, trimmed and case-folded; None for anything else."""
    if not isinstance(value, str):
        return None
    mode = value.strip().lower()
    return mode if mode in _STREAMING_MODES else None  # type: ignore[return-value]


def _merged_streaming(
    channel: ChannelStreaming | bool | str | None, account: ChannelStreaming | bool | str | None
) -> ChannelStreaming | bool | str | None:
    """`mergeSlackStreamingConfig`: an account's `streaming` object over the channel's, key by
    key; an account's boolean or string replaces the channel's setting; a channel's boolean or
    string gives way to an account's object."""
    if account is not None and not isinstance(account, ChannelStreaming):
        return account
    if channel is not None and not isinstance(channel, ChannelStreaming):
        return account if account is not None else channel
    if channel is None or account is None:
        return account if account is not None else channel
    return ChannelStreaming(mode=account.mode if account.mode is not None else channel.mode)


def _resolve_mode(streaming: ChannelStreaming | bool | str | None) -> StreamingMode:
    """`resolveSlackStreamingMode({streaming})`: `streaming.mode`, else `streaming` as a bare
    mode, else a boolean `streaming` (true `partial`, false `off`), else `progress`. (The
    plugin's runtime passes only `streaming`: the legacy `streamMode` is not read.)"""
    value = streaming.mode if isinstance(streaming, ChannelStreaming) else streaming
    mode = _parse_mode(value)
    if mode is not None:
        return mode
    if isinstance(streaming, bool):
        return "partial" if streaming else "off"
    return DEFAULT_STREAMING_MODE


def streaming_mode(section: ChannelConfig | None, account_id: str) -> StreamingMode:
    """An account's preview mode as OpenClaw's Slack plugin reads it: its own
    `accounts.<id>.streaming` merged over the channel's (`_merged_streaming`), then resolved
    (`_resolve_mode`; default `progress`)."""
    if section is None:
        return DEFAULT_STREAMING_MODE
    own = next(
        (a for raw_id, a in (section.accounts or {}).items() if normalize_account_id(raw_id) == account_id),
        None,
    )
    return _resolve_mode(_merged_streaming(section.streaming, own.streaming if own is not None else None))


def edit_text_bytes(text: str) -> int:
    """The size Slack measures a `chat.update` text by: UTF-8 bytes, `&`, `<`, `>` escaped."""
    return len(text.encode()) + sum(text.count(ch) * (n - 1) for ch, n in _ESCAPED_BYTES.items())


def fit_edit(text: str) -> str:
    """`text` cut to what one `chat.update` takes (`EDIT_TEXT_MAX_BYTES`), at a character
    boundary; unchanged when it fits (the plugin's `truncateSlackTextByUtf8Bytes`)."""
    if edit_text_bytes(text) <= EDIT_TEXT_MAX_BYTES:
        return text
    used = 0
    for n, ch in enumerate(text):
        used += _ESCAPED_BYTES.get(ch, len(ch.encode()))
        if used > EDIT_TEXT_MAX_BYTES:
            return text[:n]
    return text


def config_checks(config: Config) -> list[Problem]:
    """Warnings about reply threading keys: Slack's legacy `dm.replyToMode` (read as OpenClaw's
    `doctor --fix` moves it), and `replyToModeByChatType`, `dm.replyToMode` and a group's
    `replyToMode` on channels that do not read them; and about Slack's preview modes clawmesh
    serves otherwise than OpenClaw (`_streaming_problems`)."""
    problems: list[Problem] = []
    for name, section in (config.document.channels or {}).items():
        base = f"$.channels.{name}" if name.isidentifier() else f"$.channels[{name!r}]"
        levels: list[tuple[str, ChannelAccount]] = [(base, section)]
        for account_id, account in (section.accounts or {}).items():
            sep = f".{account_id}" if account_id.isidentifier() else f"[{account_id!r}]"
            levels.append((f"{base}.accounts{sep}", account))
        for path, level in levels:
            _level_problems(problems, name, path, level)
    return problems


_IGNORED: Final = "accepted, not implemented by clawmesh on this channel (Slack reads it); ignored"


def _level_problems(problems: list[Problem], channel: str, path: str, level: ChannelAccount) -> None:
    legacy = level.dm.reply_to_mode if level.dm is not None else None
    if channel != "slack":
        if legacy is not None:
            problems.append(Problem(f"{path}.dm.replyToMode", _IGNORED, "warning"))
        if level.reply_to_mode_by_chat_type is not None:
            problems.append(Problem(f"{path}.replyToModeByChatType", _IGNORED, "warning"))
        for key in ("groups", "guilds", "channels"):
            table = getattr(level, key)
            if isinstance(table, dict):
                _group_problems(problems, f"{path}.{key}", table)
        return
    _streaming_problems(problems, path, level)
    if legacy is None:
        return
    by_type = level.reply_to_mode_by_chat_type
    shadowed = by_type is not None and by_type.direct is not None
    how = (
        "ignored: replyToModeByChatType.direct is set too"
        if shadowed
        else "read for DMs where no replyToModeByChatType.direct is set"
    )
    problems.append(
        Problem(
            f"{path}.dm.replyToMode",
            f"the legacy spelling of replyToModeByChatType.direct (OpenClaw's `doctor --fix` moves it); {how}",
            "warning",
        )
    )


def _streaming_problems(problems: list[Problem], path: str, level: ChannelAccount) -> None:
    """One Slack config level's own `streaming` (the key that sets its mode): `progress` is
    served as `off`; `partial` by the draft path (no native streaming); an unknown mode is read as
    OpenClaw's default. (`block` is served as `partial`: the adapter says so once.)"""
    streaming = level.streaming
    if streaming is None or (isinstance(streaming, ChannelStreaming) and streaming.mode is None):
        return
    said: str | bool | None
    if isinstance(streaming, ChannelStreaming):
        key, said = f"{path}.streaming.mode", streaming.mode
    else:
        key, said = f"{path}.streaming", streaming
    mode = ("partial" if said else "off") if isinstance(said, bool) else _parse_mode(said)
    if mode is None:
        why = (
            f"{said!r} is not one of off|partial|block|progress: read as OpenClaw's default, "
            '"progress" (served as "off": no preview, the final reply only)'
        )
    elif mode == "progress":
        why = (
            "accepted, not implemented by clawmesh: Slack's \"progress\" cards (OpenClaw's default) "
            'are served as "off" (no preview; the final reply only)'
        )
    elif mode == "partial":
        why = (
            "Slack's native text streaming (chat.startStream/appendStream/stopStream, OpenClaw's "
            "streaming.nativeTransport, default true, for replies in a thread) is not implemented "
            "by clawmesh: the preview is posted and edited (chat.postMessage, then chat.update) in "
            "threads too, as OpenClaw does with nativeTransport: false"
        )
    else:
        return
    problems.append(Problem(key, why, "warning"))


def _group_problems(problems: list[Problem], path: str, table: Mapping[str, ChannelGroup]) -> None:
    for key, group in table.items():
        here = f"{path}.{key}" if key.isidentifier() else f"{path}[{key!r}]"
        if group.reply_to_mode is not None:
            problems.append(Problem(f"{here}.replyToMode", _IGNORED, "warning"))
        for nested in ("topics", "channels"):
            inner = getattr(group, nested)
            if inner:
                _group_problems(problems, f"{here}.{nested}", inner)


@dataclass(frozen=True)
class SlackCredentials:
    """What one account connects with: always the bot token (the Web API); in `socket` mode the
    app-level token (`apps.connections.open`), in `http` mode the signing secret. Never in a repr."""

    bot_token: str = field(repr=False)
    mode: Mode = "socket"
    app_token: str = field(default="", repr=False)
    signing_secret: str = field(default="", repr=False)


def resolve_mode(settings: ChannelAccount, path: str) -> Mode:
    """`mode` as OpenClaw reads it: `socket` when unset. ConfigError for `relay` (OpenClaw's
    relay gateway, not served by clawmesh) or anything else."""
    mode = settings.mode if settings.mode is not None else DEFAULT_MODE
    if mode in ("socket", "http"):
        return mode  # type: ignore[return-value]
    if mode == "relay":
        why = 'OpenClaw\'s relay mode is not served by clawmesh; use "socket" (appToken) or "http" (signingSecret)'
    else:
        why = f'expected "socket" (the default) or "http", got {mode!r}'
    raise ConfigError([Problem(f"{path}.mode", why)])


def resolve_credentials(
    settings: ChannelAccount, account_id: str, env: Mapping[str, str] | None, path: str
) -> SlackCredentials | None:
    """The account's mode and credentials: `botToken`, and `appToken` (Socket Mode, OpenClaw's
    default) or `signingSecret` (`mode: "http"`); SecretRefs to env or files allowed, and for the
    default account SLACK_BOT_TOKEN / SLACK_APP_TOKEN / SLACK_SIGNING_SECRET when the keys are
    absent. None: no bot token. ConfigError (naming the missing key): a bot token but not what its
    mode needs (as OpenClaw's HTTP mode, events are never taken unsigned)."""
    env = env or {}
    default = account_id == DEFAULT_ACCOUNT_ID
    token = secret_value(settings.bot_token, env, f"{path}.botToken")
    if default:
        token = token or env.get(ENV_BOT_TOKEN)
    if not token or not token.strip():
        return None
    mode = resolve_mode(settings, path)
    if mode == "http":
        secret = secret_value(settings.signing_secret, env, f"{path}.signingSecret")
        if default:
            secret = secret or env.get(ENV_SIGNING_SECRET)
        if not secret or not secret.strip():
            raise ConfigError(
                [Problem(f"{path}.signingSecret", 'required for mode "http" (the Events API over HTTP)')]
            )
        return SlackCredentials(bot_token=token.strip(), mode="http", signing_secret=secret.strip())
    app = secret_value(settings.app_token, env, f"{path}.appToken")
    if default:
        app = app or env.get(ENV_APP_TOKEN)
    if not app or not app.strip():
        why = (
            "required for Socket Mode, the mode when `mode` is unset (as OpenClaw): the app-level "
            "token (xapp-…, scope connections:write)" + (" or SLACK_APP_TOKEN" if default else "")
        )
        signed = settings.signing_secret is not None or (default and bool(env.get(ENV_SIGNING_SECRET)))
        if signed:
            why += f'; this account has a signing secret: set {path}.mode to "http" to take events over HTTP'
        raise ConfigError([Problem(f"{path}.appToken", why)])
    return SlackCredentials(bot_token=token.strip(), mode="socket", app_token=app.strip())


# --- Socket Mode ----------------------------------------------------------------------------


class SocketFrame(msgspec.Struct, frozen=True):
    """A frame Slack sends on a Socket Mode connection: `hello` (`num_connections`),
    `disconnect` (`reason`: warning, refresh_requested, too_many_websockets, link_disabled), or
    an envelope to acknowledge by `envelope_id` (`type` events_api, slash_commands, interactive;
    `payload` of events_api is the Events API's `event_callback` body)."""

    type: str = ""
    envelope_id: str | None = None
    payload: msgspec.Raw = msgspec.Raw(b"null")
    accepts_response_payload: bool = False
    retry_attempt: int = 0
    retry_reason: str = ""
    reason: str = ""
    num_connections: int | None = None


_socket_frame = msgspec.json.Decoder(SocketFrame)
_envelope = msgspec.json.Decoder(Envelope)


def decode_socket_frame(data: bytes | str) -> SocketFrame:
    """One frame; msgspec.DecodeError (not JSON) or ValidationError (not a frame)."""
    return _socket_frame.decode(data)


def socket_payload(frame: SocketFrame) -> Envelope:
    """An `events_api` envelope's payload, as the Events API would have POSTed it."""
    return _envelope.decode(frame.payload)


def salvage_envelope_id(data: bytes | str) -> str | None:
    """The `envelope_id` of a frame that is JSON but not a valid frame (so it can be acknowledged
    and not redelivered forever); None when there is none to find."""
    try:
        value = msgspec.json.decode(data)
    except msgspec.DecodeError:
        return None
    found = value.get("envelope_id") if isinstance(value, dict) else None
    return found if isinstance(found, str) and found else None


def socket_ack(envelope_id: str) -> str:
    """The acknowledgement of one envelope (no response payload)."""
    return msgspec.json.encode({"envelope_id": envelope_id}).decode()


def redact_url(text: str, url: str) -> str:
    """`text` (a log line, an error) with `url` and its query string (a Socket Mode URL's
    single-use `ticket`) cut down to scheme, host and path."""
    parts = urlsplit(url)
    bare = urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, "", ""))
    text = text.replace(url, bare)
    return text.replace(parts.query, "…") if parts.query else text
