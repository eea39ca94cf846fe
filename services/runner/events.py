"""The events a turn emits: their common fields, and where they are published."""

from __future__ import annotations

from typing import TypedDict

from nats.aio.client import Client

from clawmesh.bus import inject
from clawmesh.wire import Subjects, TurnError, TurnEvent, TurnFinal, TurnRequest, encode_json

__all__ = ["Stamp", "TurnEvents", "stamp"]


class Stamp(TypedDict):
    turn_id: str
    agent_id: str
    session_key: str


def stamp(turn: TurnRequest) -> Stamp:
    """The fields every event of a turn carries: `TextDeltaEvent(**stamp(turn), text=…)`."""
    return {"turn_id": turn.turn_id, "agent_id": turn.agent_id, "session_key": turn.session_key}


class TurnEvents:
    """Publishes a turn's events on its session's subject, and to the caller's reply subject
    when it asked for them (every event, or only the outcome: `final`/`error`)."""

    def __init__(self, nc: Client, subjects: Subjects) -> None:
        self.nc = nc
        self.subjects = subjects

    async def emit(self, turn: TurnRequest, event: TurnEvent) -> None:
        data, hdrs = encode_json(event)
        hdrs = inject(hdrs)
        await self.nc.publish(self.subjects.events(turn.agent_id, turn.session_key), data, headers=hdrs)
        inbound = turn.inbound
        if inbound.reply_subject and (
            inbound.reply_events == "all" or isinstance(event, TurnFinal | TurnError)
        ):
            await self.nc.publish(inbound.reply_subject, data, headers=hdrs)
