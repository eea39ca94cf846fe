"""Helpers for the events a turn emits."""

from __future__ import annotations

from typing import TypedDict

from clawmesh.wire import TurnRequest

__all__ = ["Stamp", "stamp"]


class Stamp(TypedDict):
    turn_id: str
    agent_id: str
    session_key: str


def stamp(turn: TurnRequest) -> Stamp:
    """The fields every event of a turn carries: `TextDeltaEvent(**stamp(turn), text=…)`."""
    return {"turn_id": turn.turn_id, "agent_id": turn.agent_id, "session_key": turn.session_key}
