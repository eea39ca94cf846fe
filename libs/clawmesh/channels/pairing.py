"""DM pairing: pending requests and approved senders, kept in the `pairing` KV bucket.

OpenClaw's semantics (`src/pairing/pairing-store.ts`, docs/channels/pairing.md):
- a code is 8 characters from `ABCDEFGHJKLMNPQRSTUVWXYZ23456789` (no 0/O/1/I), unique among
  the pending codes, drawn with a CSPRNG;
- a request expires 1 h after it was created (later messages do not extend it);
- at most 3 requests are pending per channel account; a new sender beyond that gets no code and
  no reply; a sender who already has a pending code gets no new reply either;
- approving a code adds the sender to the account's approved list, which `dmPolicy: pairing`
  merges with `allowFrom` (OpenClaw's `<channel>[-<account>]-allowFrom.json`; DM access only).

Keys, one per channel account, each updated with compare-and-set so that several ingress
replicas never exceed the limit or lose an approval: `pending.<channel>.<account>` →
`{"requests": [...]}`, `approved.<channel>.<account>` → `{"senders": [...]}` (tokens as in
docs/subjects.md).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from typing import Final

import msgspec
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from ..ids import normalize_account_id
from ..kvlist import list_keys
from ..wire import decode_token, encode_token
from ._normalize import normalize_sender

__all__ = [
    "CODE_ALPHABET",
    "CODE_LENGTH",
    "MAX_PENDING",
    "PENDING_TTL_SECONDS",
    "PairingRequest",
    "PairingStore",
    "new_code",
    "pairing_reply",
]

CODE_ALPHABET: Final = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
CODE_LENGTH: Final = 8
PENDING_TTL_SECONDS: Final = 3600.0
MAX_PENDING: Final = 3
_ATTEMPTS: Final = 8  # compare-and-set retries when replicas write the same key at once

_ID_LINES: Final = {
    "telegram": "Your Telegram user id: {id}",
    "slack": "Your Slack user id: {id}",
    "discord": "Your Discord user id: {id}",
    "whatsapp": "Your WhatsApp phone number: {id}",
}


class PairingRequest(msgspec.Struct, kw_only=True, rename="camel"):
    id: str  # the sender, normalised as allowFrom compares it
    code: str
    created_at: float
    last_seen_at: float
    account: str
    meta: dict[str, str] = msgspec.field(default_factory=dict)

    def expires_at(self) -> float:
        return self.created_at + PENDING_TTL_SECONDS


class _Pending(msgspec.Struct):
    requests: list[PairingRequest] = msgspec.field(default_factory=list)


class _Approved(msgspec.Struct):
    senders: list[str] = msgspec.field(default_factory=list)


def new_code(taken: set[str] | frozenset[str] = frozenset()) -> str:
    while True:
        code = "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))
        if code not in taken:
            return code


def pairing_reply(channel: str, sender_id: str, code: str) -> str:
    """The message an unknown sender gets (OpenClaw's `buildPairingReply`, clawmesh's command)."""
    id_line = _ID_LINES.get(channel, "Your {channel} id: {id}").format(id=sender_id, channel=channel)
    return "\n".join(
        [
            "clawmesh: access not configured.",
            "",
            id_line,
            "Pairing code:",
            "```",
            code,
            "```",
            "",
            "Ask the bot owner to approve with:",
            "```",
            f"clawmesh pairing approve {channel} {code}",
            "```",
        ]
    )


def _key(kind: str, channel: str, account: str) -> str:
    return f"{kind}.{encode_token(channel)}.{encode_token(normalize_account_id(account))}"


class PairingStore:
    """Pending requests and approved senders of every channel account, in one KV bucket."""

    def __init__(self, kv: KeyValue, *, clock: Callable[[], float] = time.time) -> None:
        self._kv = kv
        self._clock = clock

    async def _read(self, key: str, kind: type[_Pending] | type[_Approved]) -> tuple[object, int | None]:
        try:
            entry = await self._kv.get(key)
        except KeyNotFoundError:
            return kind(), None
        if entry.value is None or not entry.value:  # deleted or purged
            return kind(), entry.revision
        try:
            return msgspec.json.decode(entry.value, type=kind), entry.revision
        except msgspec.ValidationError:
            # A damaged record must not lock everybody out forever: start it afresh.
            return kind(), entry.revision

    async def _write(self, key: str, value: object, revision: int | None) -> bool:
        data = msgspec.json.encode(value)
        try:
            if revision is None:
                await self._kv.create(key, data)
            else:
                await self._kv.update(key, data, last=revision)
        except KeyWrongLastSequenceError:
            return False
        except Exception as exc:  # nats-py reports a create race as a generic API error
            if "wrong last sequence" in str(exc).lower() or "key exists" in str(exc).lower():
                return False
            raise
        return True

    # --- approved senders ---------------------------------------------------------------

    async def approved(self, channel: str, account: str) -> frozenset[str]:
        value, _ = await self._read(_key("approved", channel, account), _Approved)
        assert isinstance(value, _Approved)
        return frozenset(value.senders)

    async def add_approved(self, channel: str, account: str, sender_id: str) -> None:
        key = _key("approved", channel, account)
        sender = normalize_sender(channel, sender_id)
        for _ in range(_ATTEMPTS):
            value, revision = await self._read(key, _Approved)
            assert isinstance(value, _Approved)
            if sender in value.senders:
                return
            value.senders.append(sender)
            if await self._write(key, value, revision):
                return
        raise RuntimeError(
            f"could not record the approval of {sender} on {channel}/{account}: too much contention"
        )

    # --- pending requests ---------------------------------------------------------------

    async def pending(self, channel: str, account: str) -> list[PairingRequest]:
        value, _ = await self._read(_key("pending", channel, account), _Pending)
        assert isinstance(value, _Pending)
        now = self._clock()
        return [r for r in value.requests if r.expires_at() > now]

    async def challenge(
        self, channel: str, account: str, sender_id: str, meta: dict[str, str] | None = None
    ) -> str | None:
        """A new code for `sender_id`, or None when none is to be sent (the sender already has
        a pending code, or the account has `MAX_PENDING` pending requests)."""
        key = _key("pending", channel, account)
        sender = normalize_sender(channel, sender_id)
        account_id = normalize_account_id(account)
        for _ in range(_ATTEMPTS):
            value, revision = await self._read(key, _Pending)
            assert isinstance(value, _Pending)
            now = self._clock()
            live = [r for r in value.requests if r.expires_at() > now]
            mine = next((r for r in live if r.id == sender), None)
            code: str | None = None
            if mine is not None:
                mine.last_seen_at = now
            elif len(live) >= MAX_PENDING:
                if len(live) == len(value.requests):
                    return None  # nothing to prune: no write
            else:
                code = new_code({r.code for r in live})
                live.append(
                    PairingRequest(
                        id=sender,
                        code=code,
                        created_at=now,
                        last_seen_at=now,
                        account=account_id,
                        meta={k: v for k, v in (meta or {}).items() if v},
                    )
                )
            if await self._write(key, _Pending(live), revision):
                return code
        return None  # contention: stay silent rather than send two codes

    async def approve(self, channel: str, code: str, account: str | None = None) -> PairingRequest | None:
        """Approve the pending request with `code` (case-insensitive) on `account`, or on any
        account of `channel` listed by `accounts` when None. Returns it, or None if no pending
        request has that code."""
        wanted = code.strip().upper()
        accounts = [normalize_account_id(account)] if account is not None else await self.accounts(channel)
        for acct in accounts:
            key = _key("pending", channel, acct)
            for _ in range(_ATTEMPTS):
                value, revision = await self._read(key, _Pending)
                assert isinstance(value, _Pending)
                now = self._clock()
                live = [r for r in value.requests if r.expires_at() > now]
                found = next((r for r in live if r.code == wanted), None)
                if found is None:
                    break
                await self.add_approved(channel, acct, found.id)
                rest = [r for r in live if r is not found]
                if await self._write(key, _Pending(rest), revision):
                    return found
        return None

    async def accounts(self, channel: str) -> list[str]:
        """Accounts of `channel` with a pending-request record."""
        key_prefix = f"pending.{encode_token(channel)}."
        out: list[str] = []
        for key in await list_keys(self._kv, key_prefix):
            try:
                out.append(decode_token(key[len(key_prefix) :]))
            except ValueError:
                continue
        return sorted(out)
