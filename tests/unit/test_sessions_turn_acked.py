"""`SessionStore.turn_acked`: whether a turn left CM_TURNS (a work queue: acked turns are gone),
on the safe side (False) when it cannot be told."""

from __future__ import annotations

from typing import Any, cast

import pytest
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError
from nats.js.kv import KeyValue

from clawmesh.sessions import SessionStore
from clawmesh.wire import Subjects

pytestmark = pytest.mark.asyncio


class _JetStream:
    def __init__(self, held: set[int], fail: bool = False) -> None:
        self.held, self.fail = held, fail
        self.asked: list[tuple[str, int]] = []

    async def get_msg(self, stream: str, seq: int) -> Any:
        self.asked.append((stream, seq))
        if self.fail:
            raise TimeoutError("no answer")
        if seq not in self.held:
            raise NotFoundError
        return object()


def _store(js: _JetStream) -> SessionStore:
    return SessionStore(cast(JetStreamContext, js), Subjects(), cast(KeyValue, None))


@pytest.mark.parametrize(
    ("seq", "held", "fail", "acked"),
    [
        (7, set(), False, True),  # gone from CM_TURNS: acked
        (7, {7}, False, False),  # still there
        (7, set(), True, False),  # the stream did not answer: not known to be acked
        (0, set(), False, False),  # no sequence recorded (an older record)
    ],
)
async def test_a_turn_is_acked_when_it_is_gone_from_cm_turns(
    seq: int, held: set[int], fail: bool, acked: bool
) -> None:
    js = _JetStream(held, fail)
    assert await _store(js).turn_acked(seq) is acked
    assert js.asked == ([(Subjects().stream("TURNS"), seq)] if seq else [])
