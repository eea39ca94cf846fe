"""Tool-call arguments as the models stream them: JSON text, sometimes empty or broken."""

from __future__ import annotations

import json
from typing import Any

from ..tools.specs import INVALID_ARGUMENTS_KEY

__all__ = ["arguments_from_json"]


def arguments_from_json(raw: str) -> dict[str, Any]:
    """The arguments object of a tool call; `{}` for empty text (OpenAI-compatible servers send
    `""` for argument-less calls). Text that is not a JSON object is passed on under
    INVALID_ARGUMENTS_KEY, so that the tool rejects the call and the model sees why."""
    if not raw.strip():
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        return {INVALID_ARGUMENTS_KEY: raw}
    return value if isinstance(value, dict) else {INVALID_ARGUMENTS_KEY: raw}
