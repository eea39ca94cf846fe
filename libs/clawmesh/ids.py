"""Agent and account id normalisation, bit for bit as OpenClaw does it.

Lives outside `clawmesh.routing` because the config loader needs it too and routing needs the
config; `clawmesh.routing` re-exports these names as part of its public API.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Annotated, Final

import msgspec

__all__ = [
    "DEFAULT_ACCOUNT_ID",
    "DEFAULT_AGENT_ID",
    "MAX_ID_LENGTH",
    "Id",
    "IdTooLong",
    "check_id",
    "is_valid_agent_id",
    "js_lower_trim",
    "js_trim",
    "normalize_account_id",
    "normalize_agent_id",
    "normalize_optional_account_id",
]

DEFAULT_AGENT_ID: Final = "main"
DEFAULT_ACCOUNT_ID: Final = "default"

# Ids from outside (channel, account, peer, guild, team, role, message, thread, agent, turn,
# invocation) are refused above this length where they enter: a wire message with a longer id
# fails msgspec validation, naming the field and the limit.
MAX_ID_LENGTH: Final = 256
Id = Annotated[str, msgspec.Meta(max_length=MAX_ID_LENGTH)]


class IdTooLong(ValueError):
    """An id longer than `MAX_ID_LENGTH`; the message names the field."""


def check_id(value: str, field: str) -> str:
    """`value`, or `IdTooLong` naming `field` and the limit (for ids that do not arrive in a
    msgspec struct annotated with `Id`)."""
    if len(value) > MAX_ID_LENGTH:
        raise IdTooLong(f"{field} is {len(value)} characters long; ids may be at most {MAX_ID_LENGTH}")
    return value


# JavaScript's `String.prototype.trim` set. Python's `str.strip()` differs (it strips \x1c-\x1f
# and U+0085, keeps U+FEFF), and ids must normalise exactly as OpenClaw's do.
_JS_WHITESPACE: Final = (
    "\t\n\v\f\r \u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009"
    "\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
)


def js_trim(value: str) -> str:
    """`value.trim()` as JavaScript does it."""
    return value.strip(_JS_WHITESPACE)


def js_lower_trim(value: object) -> str:
    """OpenClaw `normalizeLowercaseStringOrEmpty`: trimmed and lower-cased; '' for non-strings."""
    return value.strip(_JS_WHITESPACE).lower() if isinstance(value, str) else ""


# re.ASCII: JavaScript's /i (no /u) folds only within ASCII for these letters, whereas Python's
# full Unicode folding would accept `ſ` (U+017F) as `s` and the Kelvin sign as `k`.
_VALID_ID: Final = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}", re.IGNORECASE | re.ASCII)
_INVALID_RUN: Final = re.compile(r"[^a-z0-9_-]+")
# Object.prototype keys: OpenClaw refuses them as account ids because ids index plain objects.
_BLOCKED_ACCOUNT_IDS: Final = frozenset({"__proto__", "constructor", "prototype"})


def _sanitize(trimmed: str) -> str:
    return _INVALID_RUN.sub("-", trimmed.lower()).strip("-")[:64]


def is_valid_agent_id(value: str | None) -> bool:
    """True when the trimmed id already has the canonical shape `[a-z0-9][a-z0-9_-]{0,63}` (any case)."""
    trimmed = js_trim(value or "")
    return bool(trimmed) and _VALID_ID.fullmatch(trimmed) is not None


def normalize_agent_id(value: str | None) -> str:
    """Canonical agent id: lower-cased; invalid runs become `-`; empty or unrepresentable → `main`."""
    trimmed = js_trim(value or "")
    if not trimmed:
        return DEFAULT_AGENT_ID
    if _VALID_ID.fullmatch(trimmed):
        return trimmed.lower()
    return _sanitize(trimmed) or DEFAULT_AGENT_ID


@lru_cache(maxsize=512)
def _canonical_account_id(trimmed: str) -> str:
    candidate = trimmed.lower() if _VALID_ID.fullmatch(trimmed) else _sanitize(trimmed)
    return "" if candidate in _BLOCKED_ACCOUNT_IDS else candidate


def normalize_account_id(value: str | None) -> str:
    """Canonical account id; absent, empty or unrepresentable ids are the `default` account."""
    trimmed = js_trim(value) if isinstance(value, str) else ""
    if not trimmed:
        return DEFAULT_ACCOUNT_ID
    return _canonical_account_id(trimmed) or DEFAULT_ACCOUNT_ID


def normalize_optional_account_id(value: str | None) -> str | None:
    """Like `normalize_account_id`, but absent or unrepresentable ids give None instead of `default`."""
    trimmed = js_trim(value) if isinstance(value, str) else ""
    if not trimmed:
        return None
    return _canonical_account_id(trimmed) or None
