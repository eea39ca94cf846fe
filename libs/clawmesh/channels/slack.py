"""Slack as a gateway needs it: which mode an account runs (OpenClaw's `mode`, `socket` when
unset) and its credentials, the Events API's request signatures (v0) and event envelope, Socket
Mode's frames (`hello`, `disconnect`, envelopes and their acks), and OpenClaw's mapping of a
`message` / `app_mention` event to routing input
(`extensions/slack/src/monitor/message-handler/prepare.ts`, `channel-type.ts`).

Pure functions: the ingress adapter does the HTTP, the WebSocket and the bus."""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final, Literal
from urllib.parse import urlsplit, urlunsplit

import msgspec

from ..config import ChannelAccount, ConfigError, Problem, secret_value
from ..ids import DEFAULT_ACCOUNT_ID
from ..wire import Peer, Sender

__all__ = [
    "DEFAULT_API_BASE_URL",
    "DEFAULT_MODE",
    "DEFAULT_WEBHOOK_PATH",
    "REPLAY_WINDOW",
    "TEXT_LIMIT",
    "BotIdentity",
    "Envelope",
    "Event",
    "Mode",
    "SlackCredentials",
    "SlackInbound",
    "SocketFrame",
    "decode_socket_frame",
    "normalize_event",
    "redact_url",
    "resolve_credentials",
    "resolve_mode",
    "salvage_envelope_id",
    "sign",
    "socket_ack",
    "socket_payload",
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
_USER_MENTION: Final = re.compile(r"<@([UW][A-Z0-9]+)(?:\|[^>]*)?>")
# message subtypes that are a person saying something (the others: edits, joins, bot posts, ...)
_PLAIN_SUBTYPES: Final = frozenset({"", "thread_broadcast", "file_share", "me_message"})

ChannelType = Literal["im", "mpim", "channel", "group"]
Mode = Literal["socket", "http"]


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
