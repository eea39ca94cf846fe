"""The WhatsApp Cloud API (Meta's Graph API), as a gateway needs it: webhook signatures
(`X-Hub-Signature-256`), the verify-token handshake, the webhook payload, and messages mapped to
routing input with OpenClaw's WhatsApp id conventions (a direct peer is the sender's E.164
number with `+`, a group its id), so `allowFrom` entries and bindings written for OpenClaw's
WhatsApp channel still match.

OpenClaw's own WhatsApp channel drives WhatsApp Web (Baileys); its config has no Cloud API
keys, so `phoneNumberId`, `accessToken`, `appSecret`, `verifyToken` and `apiVersion` are
clawmesh keys (docs/channels.md). Pure functions: the ingress adapter does the HTTP and the bus."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import mimetypes
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Literal

import msgspec

from ..config import ChannelAccount, ConfigError, Problem, secret_value
from ..ids import DEFAULT_ACCOUNT_ID
from ..wire import Peer, Sender
from ._limits import media_limit
from ._normalize import normalize_e164

__all__ = [
    "DEFAULT_API_BASE_URL",
    "DEFAULT_API_VERSION",
    "DEFAULT_MEDIA_MAX_MB",
    "DEFAULT_WEBHOOK_PATH",
    "TEXT_LIMIT",
    "Webhook",
    "WhatsAppCredentials",
    "WhatsAppFile",
    "WhatsAppInbound",
    "media_budget",
    "message_files",
    "normalize_webhook",
    "resolve_credentials",
    "sha256_matches",
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
# OpenClaw's WhatsApp default for `mediaMaxMb` (its channel schema: `.default(50)`)
DEFAULT_MEDIA_MAX_MB: Final = 50.0
# message types whose text is under `<type>.caption`
_CAPTIONED: Final = ("image", "video", "document")
# message types that carry one file, `{<type>: {id, mime_type, sha256, …}}`
_MEDIA_TYPES: Final = ("image", "document", "audio", "video", "sticker")
# what a file's name ends in, for the types WhatsApp takes (where Python's own table has none
# or another spelling); then the standard table (never the host's mime.types: names stay the
# same on every machine)
_EXTENSIONS: Final = {
    "audio/ogg": ".ogg",
    "audio/opus": ".opus",
    "audio/amr": ".amr",
    "audio/mp4": ".m4a",
    "audio/aac": ".aac",
    "image/webp": ".webp",
    "video/3gpp": ".3gp",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": ".docx",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": ".xlsx",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation": ".pptx",
}
_STANDARD_TYPES: Final = mimetypes.MimeTypes()
_HEX_DIGEST: Final = re.compile(r"[0-9a-fA-F]{64}")


def media_budget(settings: ChannelAccount) -> int:
    """The most bytes one medium may have: `mediaMaxMb` (OpenClaw's WhatsApp default: 50)."""
    return media_limit(settings, DEFAULT_MEDIA_MAX_MB)


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
    id: str = ""
    mime_type: str = ""
    sha256: str = ""
    caption: str = ""
    filename: str = ""  # documents
    voice: bool = False  # audio: a voice note recorded in the chat


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
    audio: _Media | None = None
    sticker: _Media | None = None
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
class WhatsAppFile:
    """The file a media message carries, as the agent will see it named; its bytes are fetched
    by `media_id` (the Graph API's media node, then its short-lived URL)."""

    kind: str  # image | document | audio | voice message | video | sticker
    media_id: str
    name: str
    mime: str
    sha256: str  # as the webhook gives it (base64 of the digest); "" when it gives none


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
    files: tuple[WhatsAppFile, ...] = ()  # the image, document, voice note, … it carries


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


def _bare_mime(mime: str) -> str:
    """`audio/ogg; codecs=opus` → `audio/ogg`."""
    return mime.split(";", 1)[0].strip().lower()


def _extension(mime: str) -> str:
    return _EXTENSIONS.get(mime) or _STANDARD_TYPES.guess_extension(mime) or ""


def _id_tail(message_id: str, fallback: str) -> str:
    """The last characters of a `wamid.…` that are safe in a file name."""
    tail = "".join(ch for ch in message_id.removeprefix("wamid.") if ch.isascii() and ch.isalnum())[-12:]
    return tail or "".join(ch for ch in fallback if ch.isascii() and ch.isalnum())[-12:] or "media"


def message_files(msg: _Message) -> tuple[WhatsAppFile, ...]:
    """The file of a media message (image, document, audio, video, sticker): a document named
    as sent, the others `<type>-<message id tail><ext of its type>`."""
    if msg.type not in _MEDIA_TYPES:
        return ()
    media: _Media | None = getattr(msg, msg.type)
    if media is None or not media.id:
        return ()
    mime = _bare_mime(media.mime_type) or "application/octet-stream"
    kind = "voice message" if msg.type == "audio" and media.voice else msg.type
    name = media.filename.strip() if msg.type == "document" else ""
    if not name:
        name = f"{msg.type}-{_id_tail(msg.id, media.id)}{_extension(mime)}"
    return (WhatsAppFile(kind=kind, media_id=media.id, name=name, mime=mime, sha256=media.sha256),)


def sha256_matches(expected: str, data: bytes) -> bool:
    """Whether `data` has the SHA-256 `expected` says, written as Graph writes it: base64 in
    webhooks, lower-case hex in the media node. An unreadable hash matches nothing."""
    digest = hashlib.sha256(data).digest()
    value = expected.strip()
    if _HEX_DIGEST.fullmatch(value):
        return hmac.compare_digest(bytes.fromhex(value), digest)
    try:
        decoded = base64.b64decode(
            value.replace("-", "+").replace("_", "/") + "=" * (-len(value) % 4), validate=True
        )
    except (binascii.Error, ValueError):
        return False
    return len(decoded) == len(digest) and hmac.compare_digest(decoded, digest)


def normalize_webhook(hook: Webhook) -> tuple[list[WhatsAppInbound], int]:
    """Every message to answer in a notification (in order), and how many others it carried
    (statuses are not counted: they are no messages; reactions, locations, contacts, … are)."""
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
                files = message_files(msg)
                number = normalize_e164(msg.from_) if msg.from_ else ""
                sender_id = number or (msg.user_id or "")
                if (text is None and not files) or not msg.id or not sender_id:
                    ignored += 1
                    continue
                text = text or ""
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
                        files=files,
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
