"""The WhatsApp Cloud API (Meta's Graph API), as a gateway needs it: webhook signatures
(`X-Hub-Signature-256`), the verify-token handshake, the webhook payload, and messages mapped to
routing input with OpenClaw's WhatsApp id conventions (a direct peer is the sender's E.164
number with `+`, a group its id), so `allowFrom` entries and bindings written for OpenClaw's
WhatsApp channel still match.

OpenClaw's own WhatsApp channel drives WhatsApp Web (Baileys); its config has no Cloud API
keys, so `phoneNumberId`, `accessToken`, `appSecret`, `verifyToken` and `apiVersion` are
clawmesh keys (docs/channels.md). Pure functions: the ingress adapter does the HTTP and the bus."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Literal

import msgspec

from ..config import ChannelAccount, ConfigError, Problem, secret_value
from ..ids import DEFAULT_ACCOUNT_ID
from ..wire import Peer, Sender
from ._normalize import normalize_e164

__all__ = [
    "DEFAULT_API_BASE_URL",
    "DEFAULT_API_VERSION",
    "DEFAULT_WEBHOOK_PATH",
    "TEXT_LIMIT",
    "Webhook",
    "WhatsAppCredentials",
    "WhatsAppInbound",
    "normalize_webhook",
    "resolve_credentials",
    "sign",
    "verify_signature",
]

DEFAULT_API_BASE_URL: Final = "https://graph.facebook.com"
DEFAULT_API_VERSION: Final = "v21.0"
DEFAULT_WEBHOOK_PATH: Final = "/whatsapp/webhook"
TEXT_LIMIT: Final = 4096
ENV_ACCESS_TOKEN: Final = "WHATSAPP_ACCESS_TOKEN"
ENV_APP_SECRET: Final = "WHATSAPP_APP_SECRET"
ENV_VERIFY_TOKEN: Final = "WHATSAPP_VERIFY_TOKEN"
# message types whose text is under `<type>.caption` (the media itself is not taken in yet)
_CAPTIONED: Final = ("image", "video", "document")


def sign(app_secret: str, body: bytes) -> str:
    """`X-Hub-Signature-256` of a body: `sha256=` lower-case hex HMAC-SHA256 with the app secret."""
    return "sha256=" + hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()


def verify_signature(app_secret: str, header: str, body: bytes) -> bool:
    """The signature over the exact bytes received, compared in constant time."""
    return bool(header) and hmac.compare_digest(
        sign(app_secret, body).encode(), header.strip().lower().encode()
    )


class _Text(msgspec.Struct, frozen=True):
    body: str = ""


class _Media(msgspec.Struct, frozen=True):
    caption: str = ""


class _Button(msgspec.Struct, frozen=True):
    text: str = ""


class _Context(msgspec.Struct, frozen=True):
    id: str | None = None
    from_: str | None = msgspec.field(default=None, name="from")


class _Message(msgspec.Struct, frozen=True):
    id: str = ""
    from_: str | None = msgspec.field(default=None, name="from")
    user_id: str | None = None  # a business-scoped user id (BSUID): the number may be absent
    group_id: str | None = None
    timestamp: str = ""
    type: str = ""
    text: _Text | None = None
    image: _Media | None = None
    video: _Media | None = None
    document: _Media | None = None
    button: _Button | None = None
    context: _Context | None = None


class _Profile(msgspec.Struct, frozen=True):
    name: str | None = None


class _Contact(msgspec.Struct, frozen=True):
    wa_id: str | None = None
    user_id: str | None = None
    profile: _Profile | None = None


class _Metadata(msgspec.Struct, frozen=True):
    phone_number_id: str = ""
    display_phone_number: str = ""


class _Value(msgspec.Struct, frozen=True):
    metadata: _Metadata | None = None
    contacts: list[_Contact] = []
    messages: list[_Message] = []


class _Change(msgspec.Struct, frozen=True):
    field: str = ""
    value: _Value | None = None


class _Entry(msgspec.Struct, frozen=True):
    id: str = ""
    changes: list[_Change] = []


class Webhook(msgspec.Struct, frozen=True):
    """A POSTed notification: several entries, changes and messages may be batched."""

    object: str = ""
    entry: list[_Entry] = []


@dataclass(frozen=True)
class WhatsAppInbound:
    """One message to answer, on the business number `phone_number_id`."""

    phone_number_id: str
    message_id: str  # `wamid.…`: the dedupe key
    peer: Peer
    sender: Sender
    chat_type: Literal["direct", "group"]
    group_id: str | None
    text: str
    was_mentioned: bool
    replied_to_us: bool


def _text_of(msg: _Message) -> str | None:
    if msg.type == "text" and msg.text is not None:
        return msg.text.body
    if msg.type == "button" and msg.button is not None:
        return msg.button.text
    for kind in _CAPTIONED:
        media = getattr(msg, kind)
        if msg.type == kind and media is not None and media.caption:
            return str(media.caption)
    return None


def normalize_webhook(hook: Webhook) -> tuple[list[WhatsAppInbound], int]:
    """Every message to answer in a notification (in order), and how many others it carried
    (statuses are not counted: they are no messages; reactions, stickers, locations,
    media without a caption, … are)."""
    found: list[WhatsAppInbound] = []
    ignored = 0
    if hook.object != "whatsapp_business_account":
        return found, ignored
    for entry in hook.entry:
        for change in entry.changes:
            value = change.value
            if change.field != "messages" or value is None or value.metadata is None:
                continue
            names = {c.wa_id or c.user_id: c.profile.name for c in value.contacts if c.profile is not None}
            own = value.metadata.display_phone_number
            for msg in value.messages:
                text = _text_of(msg)
                number = normalize_e164(msg.from_) if msg.from_ else ""
                sender_id = number or (msg.user_id or "")
                if text is None or not msg.id or not sender_id:
                    ignored += 1
                    continue
                name = names.get(msg.from_ or msg.user_id)
                if msg.group_id:
                    peer, chat_type = Peer(kind="group", id=msg.group_id), "group"
                else:
                    peer, chat_type = Peer(kind="direct", id=sender_id), "direct"
                own_digits = "".join(ch for ch in own if ch.isdigit())
                replied = bool(
                    msg.context and msg.context.from_ and own_digits and own_digits in msg.context.from_
                )
                found.append(
                    WhatsAppInbound(
                        phone_number_id=value.metadata.phone_number_id,
                        message_id=msg.id,
                        peer=peer,
                        sender=Sender(id=sender_id, name=name),
                        chat_type=chat_type,  # type: ignore[arg-type]
                        group_id=msg.group_id,
                        text=text,
                        # OpenClaw's last resort: the body names the bot's own number
                        was_mentioned=bool(own_digits)
                        and own_digits in "".join(c for c in text if c.isdigit()),
                        replied_to_us=replied,
                    )
                )
    return found, ignored


@dataclass(frozen=True)
class WhatsAppCredentials:
    phone_number_id: str
    access_token: str
    app_secret: str
    verify_token: str | None


def resolve_credentials(
    settings: ChannelAccount, account_id: str, env: Mapping[str, str] | None, path: str
) -> WhatsAppCredentials | None:
    """`phoneNumberId`, `accessToken`, `appSecret` and `verifyToken` (SecretRefs to env or
    files allowed; for the default account WHATSAPP_ACCESS_TOKEN / WHATSAPP_APP_SECRET /
    WHATSAPP_VERIFY_TOKEN). None: no phone number id (the account is not a Cloud API one).
    ConfigError names a missing access token or app secret (webhooks are never taken unsigned)."""
    env = env or {}
    if not settings.phone_number_id:
        return None
    token = secret_value(settings.access_token, env, f"{path}.accessToken")
    secret = secret_value(settings.app_secret, env, f"{path}.appSecret")
    verify = secret_value(settings.verify_token, env, f"{path}.verifyToken")
    if account_id == DEFAULT_ACCOUNT_ID:
        token = token or env.get(ENV_ACCESS_TOKEN)
        secret = secret or env.get(ENV_APP_SECRET)
        verify = verify or env.get(ENV_VERIFY_TOKEN)
    problems = []
    if not token or not token.strip():
        problems.append(Problem(f"{path}.accessToken", "required with phoneNumberId"))
    if not secret or not secret.strip():
        problems.append(Problem(f"{path}.appSecret", "required with phoneNumberId (webhook signatures)"))
    if problems or token is None or secret is None:
        raise ConfigError(problems)
    return WhatsAppCredentials(
        phone_number_id=str(settings.phone_number_id).strip(),
        access_token=token.strip(),
        app_secret=secret.strip(),
        verify_token=verify.strip() if verify and verify.strip() else None,
    )
