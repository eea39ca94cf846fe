"""Typed routing errors."""

from __future__ import annotations

from typing import Final

__all__ = ["AGENT_SELECTION_REQUIRED", "AgentSelectionRequired"]

AGENT_SELECTION_REQUIRED: Final = "AGENT_SELECTION_REQUIRED"


class AgentSelectionRequired(LookupError):
    """No agent can be chosen safely; OpenClaw's fail-closed `AgentSelectionRequiredError`.

    Raised instead of silently falling back to some other agent (the misrouting that OpenClaw
    issues #13423 and #6602 reported). `hint` tells the user what to change.
    """

    code: Final = AGENT_SELECTION_REQUIRED

    def __init__(self, message: str, *, hint: str, channel: str = "", account_id: str = "") -> None:
        self.message = message
        self.hint = hint
        self.channel = channel
        self.account_id = account_id
        super().__init__(f"{message} {hint}".strip())

    def to_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message, "hint": self.hint}
