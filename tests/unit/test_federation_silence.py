"""A region gone silent: judged by when its catalogue was last stored here, and looked up by a
remote turn until the region first answers (over a leaf link a gone region gets no "no
responders")."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
import pytest
from nats.js.errors import KeyNotFoundError

from clawmesh.federation import (
    SILENT_PERIODS,
    Catalogue,
    RemoteAlive,
    RemoteFinal,
    RemoteTurn,
    RemoteTurnFailed,
    _remote,
    region_silence,
    remote_turn,
)

pytestmark = pytest.mark.asyncio

NOW = 1_000_000.0


class _KV:
    def __init__(self, **entries: bytes) -> None:
        self.entries = entries

    async def get(self, key: str) -> Any:
        if key not in self.entries:
            raise KeyNotFoundError
        return type("Entry", (), {"value": self.entries[key]})()


def _heard(seconds_ago: float, every: float = 10.0) -> bytes:
    return msgspec.json.encode(Catalogue(region="sg", every=every, received=NOW - seconds_ago))


async def test_a_region_is_gone_after_three_of_its_broadcast_periods_without_a_word() -> None:
    kv: Any = _KV(sg=_heard(SILENT_PERIODS * 10.0 + 1))
    assert await region_silence(kv, "sg", now=NOW) == SILENT_PERIODS * 10.0 + 1
    kv = _KV(sg=_heard(SILENT_PERIODS * 10.0 - 1))
    assert await region_silence(kv, "sg", now=NOW) is None
    kv = _KV(sg=_heard(1.0, every=0.2))  # its own period, not this gateway's
    assert await region_silence(kv, "sg", now=NOW) == 1.0


async def test_nothing_is_judged_without_what_to_judge_by() -> None:
    never: Any = _KV()
    assert await region_silence(never, "sg", now=NOW) is None
    unstamped: Any = _KV(sg=msgspec.json.encode(Catalogue(region="sg", every=1.0)))
    assert await region_silence(unstamped, "sg", now=NOW) is None
    unreadable: Any = _KV(sg=b"{not json")
    assert await region_silence(unreadable, "sg", now=NOW) is None
    # a catalogue that does not say its period: the default one (10 s)
    old: Any = _KV(sg=msgspec.json.encode(Catalogue(region="sg", received=NOW - 29)))
    assert await region_silence(old, "sg", now=NOW) is None


class _Nats:
    """Answers a request with `answers` (each as its own reply), or not at all."""

    def __init__(self, answers: list[Any]) -> None:
        self.answers = answers
        self.cb: Callable[[Any], Awaitable[None]] | None = None

    def new_inbox(self) -> str:
        return "_INBOX.t"

    async def subscribe(self, subject: str, cb: Callable[[Any], Awaitable[None]]) -> Any:
        self.cb = cb
        return self

    async def unsubscribe(self) -> None:
        pass

    async def publish(self, subject: str, data: bytes, reply: str = "") -> None:
        for answer in self.answers:
            assert self.cb is not None
            await self.cb(type("Msg", (), {"data": msgspec.json.encode(answer), "headers": None})())

    async def flush(self) -> None:
        pass


_TURN = RemoteTurn(from_gateway="eu", agent_id="worker", session="s", turn_id="t", text="hi")


def _looked_up(answers: list[float | None]) -> tuple[list[int], Callable[[], Awaitable[float | None]]]:
    calls: list[int] = []

    async def silence() -> float | None:
        calls.append(1)
        return answers[min(len(calls), len(answers)) - 1]

    return calls, silence


async def _ignore(_: str) -> None:
    pass


async def test_a_remote_turn_ends_when_its_silent_region_is_found_gone(monkeypatch: Any) -> None:
    monkeypatch.setattr(_remote, "SILENCE_CHECK_SECONDS", 0.01)
    calls, silence = _looked_up([None, None, 42.0])
    nc: Any = _Nats([])
    with pytest.raises(RemoteTurnFailed) as failed:
        await remote_turn(nc, "cm", "sg", _TURN, _ignore, idle_timeout=30, silence=silence)
    assert failed.value.failover and failed.value.code == "GATEWAY_UNREACHABLE"
    assert "has not been heard from for 42s" in failed.value.message
    assert len(calls) == 3


async def test_once_the_region_answered_its_silence_is_no_longer_looked_up(monkeypatch: Any) -> None:
    monkeypatch.setattr(_remote, "SILENCE_CHECK_SECONDS", 0.01)
    calls, silence = _looked_up([42.0])
    nc: Any = _Nats([RemoteAlive()])  # heard: only the idle timeout ends the wait now
    with pytest.raises(RemoteTurnFailed) as failed:
        await remote_turn(nc, "cm", "sg", _TURN, _ignore, idle_timeout=0.2, silence=silence)
    assert "did not answer within" in failed.value.message
    assert calls == []


async def test_a_lookup_that_fails_says_nothing(monkeypatch: Any) -> None:
    monkeypatch.setattr(_remote, "SILENCE_CHECK_SECONDS", 0.01)

    async def broken() -> float | None:
        raise ConnectionError("KV unavailable")

    nc: Any = _Nats([])
    with pytest.raises(RemoteTurnFailed) as failed:
        await remote_turn(nc, "cm", "sg", _TURN, _ignore, idle_timeout=0.2, silence=broken)
    assert "did not answer within" in failed.value.message  # the idle timeout, as without it
    final = await remote_turn(
        _Nats([RemoteFinal(text="done")]),
        "cm",
        "sg",
        _TURN,
        _ignore,
        idle_timeout=5,
        silence=broken,  # type: ignore[arg-type]
    )
    assert final.text == "done"


async def test_the_all_gateways_listing_marks_a_region_gone_silent() -> None:
    from clawmesh.cli._common import console
    from clawmesh.cli._gateways import print_remote_agents

    agent = {"id": "worker", "exposed": True}
    cats = [
        {"region": "sg", "agents": [agent], "ageSeconds": 2.0, "gone": False},
        {"region": "us", "agents": [agent], "ageSeconds": 95.0, "gone": True},
    ]
    with console.capture() as out:
        print_remote_agents(None, cats)  # type: ignore[arg-type]
    lines = {line.split()[0]: line for line in out.get().splitlines()[1:]}
    assert lines["sg"].rstrip().endswith("2s ago")
    assert lines["us"].rstrip().endswith("95s ago (gone)")
