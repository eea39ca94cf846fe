"""The chaos harness's own logic (tests/chaos): the seeded schedule and the checker."""

from __future__ import annotations

import itertools

from clawmesh.sessions import TxUser
from tests.chaos.checker import Reply, check
from tests.chaos.faults import schedule
from tests.chaos.load import Sent, session_key

_TARGETS = [
    ("nats1", "nats"),
    ("nats2", "nats"),
    ("nats3", "nats"),
    ("ingress1", "ingress"),
    ("router1", "router"),
    ("runner1", "runner"),
    ("runner2", "runner"),
    ("node-agent1", "node-agent"),
]


def test_the_same_seed_gives_the_same_schedule_and_another_seed_another() -> None:
    a = schedule(7, 300, _TARGETS)
    assert a == schedule(7, 300, _TARGETS)
    assert a != schedule(8, 300, _TARGETS)
    assert {f.action for f in a} == {"kill", "pause", "nats-kill", "nats-partition"}


def test_one_nats_server_at_most_and_one_fault_per_process_at_a_time() -> None:
    for seed in range(20):
        faults = schedule(seed, 600, _TARGETS, mean_gap=1.0)
        nats = [f for f in faults if f.action.startswith("nats")]
        for earlier, later in itertools.pairwise(nats):
            assert later.at >= earlier.at + earlier.duration, (seed, earlier, later)
        by_target: dict[str, float] = {}
        for f in faults:
            assert f.at >= by_target.get(f.target, 0.0), (seed, f)
            by_target[f.target] = f.at + f.duration
        assert all(0 <= f.at < 600 for f in faults)


def _sent(peer: str, n: int, *, accepted: bool = True, t: float = 100.0) -> Sent:
    m = Sent(peer, n, f"{peer}-m{n}", f"{peer} message {n}", first_sent=t + n)
    if accepted:
        m.accepted_at, m.turn_id = t + n + 0.1, f"turn-{peer}-{n}"
    else:
        m.failures.append("503")
    return m


def _reply(seq: int, m: Sent, *, text: str | None = None) -> Reply:
    return Reply(
        seq, m.turn_id or "", session_key(m.peer), text or f"echo: {m.text}", m.first_sent + 0.5, False
    )


def _tx(*sent: Sent) -> list[TxUser]:
    return [TxUser(turn_id=m.turn_id or "", seq=i, text=m.text) for i, m in enumerate(sent)]


def test_a_clean_run_is_ok_and_splits_latency_by_phase() -> None:
    a = [_sent("a", n) for n in range(3)]
    replies = [_reply(i + 1, m) for i, m in enumerate(a)]
    r = check(a, replies, {"a": _tx(*a)}, chaos_start=101.5, chaos_end=200)
    assert r.ok and (r.accepted, r.answered) == (3, 3)
    assert (len(r.latency_warm), len(r.latency_chaos)) == (2, 1)


def test_lost_duplicated_misordered_wrong_and_refused_are_each_reported() -> None:
    a = [_sent("a", n) for n in range(4)]
    refused = _sent("b", 0, accepted=False)
    replies = [
        _reply(1, a[1]),
        _reply(2, a[0]),  # after the reply to a later message
        _reply(3, a[1]),  # twice
        _reply(4, a[2], text="echo: something else"),
    ]  # a[3]: never answered
    r = check([*a, refused], replies, {"a": _tx(a[1], a[0], a[2])}, chaos_start=0, chaos_end=1e9)
    assert not r.ok
    assert r.lost == ["a-m3"]
    assert r.duplicated == ["a-m1 ×2"]
    assert r.misordered_sessions == {"a": [1, 0, 1, 2]} and r.misordered_replies == 1
    assert r.wrong_text == ["a-m2: 'echo: something else'"]
    assert [x.split(" ")[0] for x in r.refused] == ["b-m0"]
    assert r.transcript_missing == ["a message 3"] and r.transcript_misordered == ["a"]
    assert r.sequenced_out_of_order == {"a": [(1, 0), (0, 1), (2, 2)]}
    assert r.numbering_inversions() == {"a": [[(1, 0), (0, 1), (2, 2)]]}
