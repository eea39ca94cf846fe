"""Per-session sequence numbers assigned by the router: arrival order, one counter per session,
the same number for a redelivered message, nothing cached until stored."""

from __future__ import annotations

from typing import Any

import pytest

from clawmesh.routing import Route
from clawmesh.sessions import SessionRecord
from clawmesh.wire import InboundMessage, Peer
from clawmesh_router.sequences import RECENT_ASSIGNMENTS, Sequences, turn_mark


class _Store:
    """The session records a SessionStore would return, counting reads."""

    def __init__(self, records: dict[str, tuple[SessionRecord, int]] | None = None) -> None:
        self.records = dict(records or {})
        self.reads: list[str] = []

    async def get_session(self, key: str) -> tuple[SessionRecord, int] | None:
        self.reads.append(key)
        return self.records.get(key)


def _route(session: str, agent: str = "main") -> Route:
    return Route(
        agent, "api", "default", session, f"agent:{agent}:main", "session", "default", "main", "per-group"
    )


def _msg(turn: int, peer: str = "u") -> InboundMessage:
    return InboundMessage(id=f"t{turn}", channel="api", peer=Peer(kind="direct", id=peer))


def _at(session: str, seq: int, peer: str = "u") -> tuple[Route, InboundMessage, int]:
    """A message of `session` at CM_INBOUND sequence `seq`, turn id `t<seq>`."""
    return _route(session), _msg(seq, peer), seq


def _marks(*turns: int) -> list[str]:
    return [turn_mark(f"t{t}") for t in turns]


def _numbered(numbers: dict[int, int]) -> SessionRecord:
    """Session s1 as stored after numbering the messages at these CM_INBOUND sequences (turn
    ids `t<seq>`) as given."""
    return SessionRecord(
        session_key="s1",
        agent_id="main",
        session_id="x",
        seq=max(numbers.values()),
        inbound_seq=max(numbers),
        recent_turns={turn_mark(f"t{k}"): v for k, v in numbers.items()},
    )


def _sequences(store: _Store) -> Sequences:
    return Sequences(store)  # type: ignore[arg-type]


async def test_a_new_session_counts_from_one_in_arrival_order() -> None:
    store = _Store()
    seqs, touched = await _sequences(store).assign([_at("s1", 10), _at("s2", 11, "v"), _at("s1", 12)])
    assert seqs == [1, 1, 2]
    record, last = touched["s1"]
    assert last is None  # created, not updated
    assert (record.seq, record.inbound_seq) == (2, 12)
    assert record.recent_turns == dict(zip(_marks(10, 12), [1, 2], strict=True))
    assert record.agent_id == "main" and record.peer == Peer(kind="direct", id="u")
    assert touched["s2"][0].seq == 1
    assert store.reads == ["s1", "s2"]  # each session read once per batch


async def test_numbers_continue_from_the_stored_record_and_replace_its_revision() -> None:
    stored = SessionRecord(session_key="s1", agent_id="main", session_id="x", seq=7, inbound_seq=40)
    store = _Store({"s1": (stored, 99)})
    seqs, touched = await _sequences(store).assign([_at("s1", 41)])
    assert seqs == [8]
    record, last = touched["s1"]
    assert last == 99 and record.session_id == "x"


async def test_a_redelivered_message_gets_the_number_it_was_given_before() -> None:
    stored = _numbered({29: 2, 30: 3})
    seqs, touched = await _sequences(_Store({"s1": (stored, 5)})).assign(
        [_at("s1", 29), _at("s1", 30), _at("s1", 31)]
    )
    assert seqs == [2, 3, 4]
    assert touched["s1"][0].seq == 4


async def test_a_message_sent_again_after_the_duplicate_window_gets_its_first_number() -> None:
    # JetStream stored it again (a new CM_INBOUND sequence): a platform's late retry, a
    # calling gateway asking again; the turn id is the same, so is its number
    stored = _numbered({28: 1, 29: 2, 30: 3})
    again = (_route("s1"), _msg(29), 900)
    seqs, touched = await _sequences(_Store({"s1": (stored, 5)})).assign([again, _at("s1", 901)])
    assert seqs == [2, 4]
    record = touched["s1"][0]
    assert record.seq == 4 and list(record.recent_turns.values()) == [1, 2, 3, 4]


async def test_numbers_given_by_an_older_router_by_stream_sequence_are_still_honoured() -> None:
    stored = SessionRecord(
        session_key="s1", agent_id="main", session_id="x", seq=3, inbound_seq=30, recent={29: 2, 30: 3}
    )
    seqs, touched = await _sequences(_Store({"s1": (stored, 5)})).assign([_at("s1", 30), _at("s1", 31)])
    assert seqs == [3, 4]
    record = touched["s1"][0]
    assert record.recent == {29: 2, 30: 3}  # never added to
    assert record.recent_turns == {turn_mark("t31"): 4}


async def test_an_older_message_that_was_never_numbered_still_gets_the_next_number(
    caplog: pytest.LogCaptureFixture,
) -> None:
    stored = SessionRecord(session_key="s1", agent_id="main", session_id="x", seq=3, inbound_seq=30)
    seqs, touched = await _sequences(_Store({"s1": (stored, 5)})).assign([_at("s1", 20)])
    assert seqs == [4]
    assert touched["s1"][0].inbound_seq == 30  # the newest seen stays the newest
    assert "arrived after a newer one" in caplog.text


async def test_recent_assignments_are_bounded_keeping_the_newest() -> None:
    arrivals: list[Any] = [_at("s1", i) for i in range(1, RECENT_ASSIGNMENTS + 11)]
    seqs, touched = await _sequences(_Store()).assign(arrivals)
    assert seqs == list(range(1, RECENT_ASSIGNMENTS + 11))
    recent = touched["s1"][0].recent_turns
    assert len(recent) == RECENT_ASSIGNMENTS and next(iter(recent)) == turn_mark("t11")
    assert list(recent.values()) == list(range(11, RECENT_ASSIGNMENTS + 11))


async def test_stored_records_are_used_without_reading_again_until_forgotten() -> None:
    store = _Store()
    sequences = _sequences(store)
    seqs, touched = await sequences.assign([_at("s1", 1)])
    sequences.stored(touched, [17])
    seqs, touched = await sequences.assign([_at("s1", 2)])
    assert seqs == [2] and touched["s1"][1] == 17
    assert store.reads == ["s1"]
    sequences.forget()
    await sequences.assign([_at("s1", 3)])
    assert store.reads == ["s1", "s1"]


async def test_a_batch_that_was_not_stored_leaves_the_cache_as_it_was() -> None:
    store = _Store()
    sequences = _sequences(store)
    _, touched = await sequences.assign([_at("s1", 1)])
    sequences.stored(touched, [17])
    await sequences.assign([_at("s1", 2), _at("s1", 3)])  # never stored
    seqs, touched = await sequences.assign([_at("s1", 2)])
    assert seqs == [2]  # the unstored assignment left no trace
    record, last = touched["s1"]
    assert last == 17 and record.recent_turns == dict(zip(_marks(1, 2), [1, 2], strict=True))


def _command(seq: int, name: str, args: str = "") -> tuple[Route, InboundMessage, int]:
    """A command message of session s1 at CM_INBOUND sequence `seq`, turn id `t<seq>`."""
    metadata = {"command": name, "commandArgs": args}
    inbound = InboundMessage(id=f"t{seq}", channel="api", peer=Peer(kind="direct", id="u"), metadata=metadata)
    return _route("s1"), inbound, seq


async def test_new_and_reset_give_the_session_a_new_id_once_even_when_redelivered() -> None:
    stored = SessionRecord(session_key="s1", agent_id="main", session_id="x", seq=4, inbound_seq=40)
    sequences = _sequences(_Store({"s1": (stored, 9)}))
    seqs, touched = await sequences.assign([_command(41, "new")])
    record = touched["s1"][0]
    assert seqs == [5] and record.session_id != "x" and record.started_seq == 5
    sequences.stored(touched, [10])
    fresh = record.session_id
    # redelivered after a router crash: the same number, no second new session
    seqs, touched = await sequences.assign([_command(41, "new")])
    assert seqs == [5] and touched["s1"][0].session_id == fresh
    # with a text, the command's own turn is the new session's first message
    seqs, touched = await sequences.assign([_command(42, "reset", "hello"), _command(43, "status")])
    record = touched["s1"][0]
    assert seqs == [6, 7] and record.session_id != fresh and record.started_seq == 5


def _task(child: str) -> InboundMessage:
    """A sessions_spawn task message: it names the child session the spawn just made up."""
    return InboundMessage(
        id="run",
        channel="subagent",
        session_key=child,
        metadata={"parentSessionKey": "agent:main:main", "spawnDepth": "1"},
    )


async def test_a_spawned_child_session_is_created_without_reading_it_first() -> None:
    child = "agent:worker:subagent:5b1e"
    store = _Store()
    seqs, touched = await _sequences(store).assign([(_route(child, "worker"), _task(child), 7)])
    assert seqs == [1] and touched[child][1] is None  # a create: it fails if the record exists
    assert store.reads == []


async def test_a_child_session_whose_create_failed_is_read_like_any_other() -> None:
    # the task message delivered again after a crash: the session was created the first time
    child = "agent:worker:subagent:5b1e"
    stored = SessionRecord(
        session_key=child, agent_id="worker", session_id="x", seq=1, recent_turns={turn_mark("run"): 1}
    )
    store = _Store({child: (stored, 3)})
    sequences = _sequences(store)
    await sequences.assign([(_route(child, "worker"), _task(child), 7)])
    sequences.drop([child])  # its create failed: the record exists
    seqs, touched = await sequences.assign([(_route(child, "worker"), _task(child), 7)])
    assert store.reads == [child]
    assert seqs == [1] and touched[child][1] == 3  # its number of the first time, an update
    # the same after a batch that failed as a whole (a new leader, the store unavailable)
    other = "agent:worker:subagent:9c0d"
    await sequences.assign([(_route(other, "worker"), _task(other), 8)])
    sequences.forget()
    await sequences.assign([(_route(other, "worker"), _task(other), 8)])
    assert store.reads == [child, other]


async def test_only_a_sub_agent_task_message_skips_the_read() -> None:
    # a later message to a child session (sessions_send), or a look-alike outside sub-agent keys
    child = "agent:worker:subagent:5b1e"
    store = _Store()
    later = InboundMessage(id="t", channel="a2a", session_key=child)
    odd = InboundMessage(id="u", channel="api", session_key="agent:main:main", metadata={"spawnDepth": "1"})
    await _sequences(store).assign([(_route(child, "worker"), later, 8), (_route("agent:main:main"), odd, 9)])
    assert store.reads == [child, "agent:main:main"]
