"""Sender ids and allow-list entries as OpenClaw compares them, per channel.

OpenClaw 2026.9.6 (recorded in tests/fixtures/oracle/channel_access.json):
- Telegram (`extensions/telegram/src/bot-access.ts`): entries are trimmed, a `telegram:`/`tg:`
  prefix is dropped (any case), and only numeric user ids match; `@username` entries never
  match at runtime (the loader warns about them).
- WhatsApp (`normalizeE164`): a `scheme:` prefix is dropped, every non-digit removed, `+` put in
  front: `whatsapp:+1 (650) 555-1234` → `+16505551234`.
- Other channels: trimmed, a `<channel>:` or `user:` prefix dropped, compared case-insensitively
  (Slack ids are upper-case, Discord's numeric; mentions `<@123>` become `123`).
`*` is the wildcard everywhere.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

__all__ = ["AllowList", "allow_list", "normalize_e164", "normalize_entry", "normalize_sender"]

WILDCARD: Final = "*"
_TELEGRAM_PREFIX: Final = re.compile(r"^(telegram|tg):", re.IGNORECASE)
_SCHEME: Final = re.compile(r"^[a-z][a-z0-9-]*:", re.IGNORECASE)
_NON_DIGIT: Final = re.compile(r"\D")
_NUMERIC: Final = re.compile(r"^\d+$")
_MENTION: Final = re.compile(r"^<@!?([^>]+)>$")


def normalize_e164(number: str) -> str:
    """OpenClaw's `normalizeE164`: `""` when no digit is left."""
    digits = _NON_DIGIT.sub("", _SCHEME.sub("", number, count=1).strip())
    return f"+{digits}" if digits else ""


def normalize_entry(channel: str, raw: str | int) -> str | None:
    """One allow-list entry in the form senders are compared in; None when it can never match."""
    text = str(raw).strip()
    if not text:
        return None
    if text == WILDCARD:
        return WILDCARD
    if channel == "telegram":
        text = _TELEGRAM_PREFIX.sub("", text, count=1).strip()
        return text if _NUMERIC.match(text) else None
    if channel == "whatsapp":
        return normalize_e164(text) or None
    return _generic(channel, text) or None


def normalize_sender(channel: str, sender_id: str) -> str:
    """A sender id as the adapter reports it, in the form entries are normalised to."""
    text = sender_id.strip()
    if channel == "whatsapp":
        return normalize_e164(text)
    if channel == "telegram":
        return text
    return _generic(channel, text)


def _generic(channel: str, text: str) -> str:
    lowered = text.lower()
    for prefix in (f"{channel.lower()}:", "user:"):
        if lowered.startswith(prefix):
            text = text[len(prefix) :].strip()
            lowered = text.lower()
    mention = _MENTION.match(text)
    if mention:
        lowered = mention.group(1).strip().lower()
    return lowered


@dataclass(frozen=True, slots=True)
class AllowList:
    """A normalised allow-list: OpenClaw's `{entries, hasWildcard, hasEntries}`."""

    entries: frozenset[str]
    wildcard: bool
    has_entries: bool  # any entry was configured, usable or not
    invalid: tuple[str, ...] = ()  # entries that can never match (e.g. Telegram @usernames)

    def allows(self, channel: str, sender_id: str | None) -> bool:
        if self.wildcard:
            return True
        if not sender_id:
            return False
        return normalize_sender(channel, sender_id) in self.entries


EMPTY: Final = AllowList(frozenset(), False, False)


def allow_list(channel: str, *sources: Iterable[str | int] | None) -> AllowList:
    entries: set[str] = set()
    invalid: list[str] = []
    wildcard = False
    has_entries = False
    for source in sources:
        for raw in source or ():
            if not str(raw).strip():
                continue
            has_entries = True
            entry = normalize_entry(channel, raw)
            if entry is None:
                invalid.append(str(raw))
            elif entry == WILDCARD:
                wildcard = True
            else:
                entries.add(entry)
    return AllowList(frozenset(entries), wildcard, has_entries, tuple(invalid))
