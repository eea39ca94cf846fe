"""Helpers for the events a turn emits."""

from __future__ import annotations

from clawmesh.wire import TurnRequest

__all__ = ["stamp"]


def stamp(turn: TurnRequest) -> dict[str, str]:
    """The fields every event of a turn carries: `TextDeltaEvent(**stamp(turn), text=…)`."""
    return {"turn_id": turn.turn_id, "agent_id": turn.agent_id, "session_key": turn.session_key}
