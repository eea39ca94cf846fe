"""Names of internal turns: the channels whose replies `followups.py` acts on, never a user's
chat, and the turn ids of a `sessions_send` exchange's steps."""

from __future__ import annotations

from typing import Final

__all__ = ["A2A_CHANNEL", "SUBAGENT_CHANNEL", "a2a_turn_id"]

# their replies go to `cm.out.subagent.*` / `cm.out.a2a.*`
SUBAGENT_CHANNEL: Final = "subagent"
A2A_CHANNEL: Final = "a2a"


def a2a_turn_id(run_id: str, step: int | str) -> str:
    """The turn id of step `step` of a sessions_send exchange (`a` for the announce step)."""
    return f"{run_id}-{step}"
