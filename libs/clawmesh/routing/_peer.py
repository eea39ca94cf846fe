"""Peer kinds and id normalisation (OpenClaw `normalizeChatType`, `normalizeId`, peer-kind match)."""

from __future__ import annotations

from typing import Any, Final

from ..ids import js_lower_trim, js_trim

__all__ = ["kind_class", "normalize_chat_type", "normalize_id", "peer_kind_matches"]

_CHAT_TYPES: Final = {"direct": "direct", "dm": "direct", "group": "group", "channel": "channel"}


def normalize_chat_type(kind: Any) -> str | None:
    """`direct`/`dm` → direct, `group`, `channel`; anything else is None (unknown)."""
    return _CHAT_TYPES.get(js_lower_trim(kind))


def normalize_id(value: Any) -> str:
    """Strings are trimmed, numbers become their decimal string; any other type becomes ''."""
    if isinstance(value, str):
        return js_trim(value)
    if isinstance(value, int | float) and not isinstance(value, bool):
        if isinstance(value, float) and value.is_integer():
            return str(int(value))
        return str(value)
    return ""


def peer_kind_matches(binding_kind: str | None, runtime_kind: str | None) -> bool:
    """Equal kinds match, and `group` and `channel` are interchangeable; direct never matches a room."""
    if binding_kind == runtime_kind:
        return binding_kind is not None
    return binding_kind in ("group", "channel") and runtime_kind in ("group", "channel")


def kind_class(kind: str | None) -> str | None:
    """Index key for a peer kind: rooms (`group`/`channel`) share one class so lookups find both."""
    if kind in ("group", "channel"):
        return "room"
    return kind
