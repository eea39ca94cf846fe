"""Typed routing errors."""

from __future__ import annotations

from typing import Final

from ..errors import ClawmeshError
from ..wire import ErrorCode

__all__ = ["AGENT_SELECTION_REQUIRED", "AgentSelectionRequired"]

AGENT_SELECTION_REQUIRED: Final[ErrorCode] = "AGENT_SELECTION_REQUIRED"


class AgentSelectionRequired(ClawmeshError):
    """No agent can be chosen safely; OpenClaw's fail-closed `AgentSelectionRequiredError`.

    Raised instead of silently falling back to some other agent (the misrouting that OpenClaw
    issues #13423 and #6602 reported). `hint` tells the user what to change.
    """

    def __init__(self, message: str, *, hint: str, channel: str = "", account_id: str = "") -> None:
        super().__init__(AGENT_SELECTION_REQUIRED, message, hint)
        self.channel = channel
        self.account_id = account_id
