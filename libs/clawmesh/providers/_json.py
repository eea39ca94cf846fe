"""Tool-call arguments as the models stream them: JSON text, sometimes empty or broken."""

from __future__ import annotations

import json
from typing import Any, Final

__all__ = ["INVALID_ARGUMENTS_KEY", "parse_arguments"]

# Small local models sometimes emit arguments that are not a JSON object. Rather than fail the
# whole turn, the call goes through with the raw text under this key: the tool's argument
# validation then rejects it and the model sees the error and can try again.
INVALID_ARGUMENTS_KEY: Final = "__invalid_arguments__"


def parse_arguments(raw: str) -> dict[str, Any]:
    """`{}` for empty text (OpenAI-compatible servers send `""` for argument-less calls)."""
    if not raw.strip():
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        return {INVALID_ARGUMENTS_KEY: raw}
    return value if isinstance(value, dict) else {INVALID_ARGUMENTS_KEY: raw}
