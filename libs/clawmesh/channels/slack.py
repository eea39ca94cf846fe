"""Slack's Events API, as a gateway needs it: request signatures (v0), the event envelope,
and OpenClaw's mapping of a `message` / `app_mention` event to routing input
(`extensions/slack/src/monitor/message-handler/prepare.ts`, `channel-type.ts`).

Pure functions: the ingress adapter does the HTTP and the bus."""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Literal

import msgspec

from ..config import ChannelAccount, ConfigError, Problem, secret_value
from ..ids import DEFAULT_ACCOUNT_ID
from ..wire import Peer, Sender

__all__ = [
    "DEFAULT_API_BASE_URL",
    "DEFAULT_WEBHOOK_PATH",
    "REPLAY_WINDOW",
    "TEXT_LIMIT",
    "BotIdentity",
    "Envelope",
    "Event",
    "SlackCredentials",
    "SlackInbound",
    "normalize_event",
    "resolve_credentials",
    "sign",
    "verify_signature",
]

DEFAULT_API_BASE_URL: Final = "https://slack.com/api"
DEFAULT_WEBHOOK_PATH: Final = "/slack/events"  # OpenClaw's default Request URL path
REPLAY_WINDOW: Final = 300  # seconds a signed request stays valid (Slack's rule)
TEXT_LIMIT: Final = 4000  # Slack truncates at 40,000; it asks to keep messages at 4,000
ENV_BOT_TOKEN: Final = "SLACK_BOT_TOKEN"
ENV_SIGNING_SECRET: Final = "SLACK_SIGNING_SECRET"
_USER_MENTION: Final = re.compile(r"<@([UW][A-Z0-9]+)(?:\|[^>]*)?>")
# message subtypes that are a person saying something (the others: edits, joins, bot posts, ...)
_PLAIN_SUBTYPES: Final = frozenset({"", "thread_broadcast", "file_share", "me_message"})

ChannelType = Literal["im", "mpim", "channel", "group"]


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
    thread_ts: str | None  # the thread a reply goes to (a reply's thread, else the message itself in rooms)
    text: str
    was_mentioned: bool
    mentions_others: bool
    is_room: bool  # a channel or private channel: mention gating applies (not DMs, not mpims)

    @property
    def platform_message_id(self) -> str:
        """`channel:ts`: the same message as `message` and as `app_mention` is one id."""
        return f"{self.channel_id}:{self.ts}"


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
    another bot's, an edit/join/…, or an `app_mention` in a DM (its `message` event covers it)."""
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
    mentioned_ids = _USER_MENTION.findall(event.text)
    explicit = event.type == "app_mention" or bot.user_id in mentioned_ids
    implicit = bool(event.parent_user_id and event.parent_user_id == bot.user_id)
    if kind == "im":
        peer, chat_type = Peer(kind="direct", id=event.user), "direct"
    elif kind == "mpim":
        peer, chat_type = Peer(kind="group", id=event.channel), "group"
    else:
        peer, chat_type = Peer(kind="channel", id=event.channel), "channel"
    in_thread = event.thread_ts is not None and event.thread_ts != event.ts
    # in rooms a reply starts (or continues) a thread under the message; DMs answer in line
    thread = event.thread_ts if in_thread else (event.ts if kind in ("channel", "group") else None)
    return SlackInbound(
        peer=peer,
        sender=Sender(id=event.user),
        chat_type=chat_type,  # type: ignore[arg-type]
        channel_id=event.channel,
        ts=event.ts,
        thread_ts=thread,
        text=event.text,
        was_mentioned=explicit or implicit,
        mentions_others=bool(mentioned_ids) and not explicit,
        is_room=kind in ("channel", "group"),
    )


@dataclass(frozen=True)
class SlackCredentials:
    bot_token: str
    signing_secret: str


def resolve_credentials(
    settings: ChannelAccount, account_id: str, env: Mapping[str, str] | None, path: str
) -> SlackCredentials | None:
    """`botToken` and `signingSecret` (SecretRefs to env or files allowed), else for the default
    account SLACK_BOT_TOKEN / SLACK_SIGNING_SECRET. None: no bot token. ConfigError: a bot token
    but no signing secret (as OpenClaw's HTTP mode, events are never taken unsigned)."""
    env = env or {}
    token = secret_value(settings.bot_token, env, f"{path}.botToken")
    secret = secret_value(settings.signing_secret, env, f"{path}.signingSecret")
    if account_id == DEFAULT_ACCOUNT_ID:
        token = token or env.get(ENV_BOT_TOKEN)
        secret = secret or env.get(ENV_SIGNING_SECRET)
    if not token or not token.strip():
        return None
    if not secret or not secret.strip():
        raise ConfigError([Problem(f"{path}.signingSecret", "required for the Events API over HTTP")])
    return SlackCredentials(bot_token=token.strip(), signing_secret=secret.strip())
