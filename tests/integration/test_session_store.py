"""SessionStore against a real nats-server: completion records stay correct across processes
(each store keeps the records it saw, and must never answer from a stale one)."""

from __future__ import annotations

import pytest
from nats.aio.client import Client

from clawmesh.bus import Layout, provision
from clawmesh.sessions import CompletionConflict, DoneRecord, SessionStore, TxAssistant, TxUser
from clawmesh.wire import encode_token


def _record(seq: int, text: str) -> DoneRecord:
    return DoneRecord(
        seq=seq,
        turn_id=f"t{seq}",
        final_text=text,
        context=[TxUser(turn_id=f"t{seq}", seq=seq, text=text)],
        has_context=True,
    )


async def test_done_records_written_elsewhere_are_seen(nc: Client) -> None:
    js = nc.jetstream()
    layout = Layout()
    kv = await provision(js, layout)
    a = SessionStore(js, layout.subjects, kv["sessions"])
    b = SessionStore(js, layout.subjects, kv["sessions"])
    key = "agent:main:api:direct:ann"
    assert await a.get_done(key) is None

    rev1 = await a.put_done(key, _record(1, "first"), last=0)
    found = await a.get_done(key)
    assert found is not None and found[1] == rev1 and found[0].final_text == "first"

    # another runner (another store) completes the next turn: `a` must not answer from its copy
    found_b = await b.get_done(key)
    assert found_b is not None and found_b[0].final_text == "first"
    rev2 = await b.put_done(key, _record(2, "second"), last=found_b[1])
    assert rev2 > rev1
    again = await a.get_done(key)
    assert again is not None and again[1] == rev2
    assert (again[0].seq, again[0].final_text, again[0].context[0].text) == (2, "second", "second")

    # a record written as raw JSON by anything else decodes too
    await kv["sessions"].put("d." + encode_token(key), b'{"seq": 3, "turnId": "t3", "finalText": "raw"}')
    raw = await a.get_done(key)
    assert raw is not None and (raw[0].seq, raw[0].final_text, raw[0].context) == (3, "raw", [])


async def test_a_completion_record_is_written_only_over_the_revision_it_was_read_at(nc: Client) -> None:
    js = nc.jetstream()
    layout = Layout()
    kv = await provision(js, layout)
    fresh = SessionStore(js, layout.subjects, kv["sessions"])
    stale = SessionStore(js, layout.subjects, kv["sessions"])
    key = "agent:main:api:direct:cas"
    rev1 = await fresh.put_done(key, _record(1, "first"), last=0)
    # a second "first write" (someone read no record before the first one was stored) loses
    with pytest.raises(CompletionConflict):
        await stale.put_done(key, _record(1, "other first"), last=0)
    # the stale runner read revision 1; a newer runner moved on to turn 2 meanwhile
    rev2 = await fresh.put_done(key, _record(2, "second"), last=rev1)
    with pytest.raises(CompletionConflict):
        await stale.put_done(key, _record(2, "stale second"), last=rev1)
    found = await stale.get_done(key)
    assert found is not None and (found[0].final_text, found[1]) == ("second", rev2)


async def test_attempts_are_counted_per_turn(nc: Client) -> None:
    js = nc.jetstream()
    layout = Layout()
    kv = await provision(js, layout)
    store = SessionStore(js, layout.subjects, kv["sessions"])
    key = "agent:main:api:direct:tries"
    # the first delivery is never recorded (it cannot be told from a hand-back)
    assert [await store.count_attempt(key, 4, "t4") for _ in range(3)] == [1, 2, 3]
    assert await store.count_attempt(key, 5, "t5") == 1  # the next turn starts over


async def test_a_turns_records_appended_together_read_back_in_order_once(nc: Client) -> None:
    js = nc.jetstream()
    layout = Layout()
    kv = await provision(js, layout)
    store = SessionStore(js, layout.subjects, kv["sessions"])
    key = "agent:main:api:direct:bob"
    await store.append("main", key, TxUser(turn_id="t1", seq=1, text="one record"), "t1:0")
    batch = [TxUser(turn_id="t2", seq=2, text="q"), TxAssistant(turn_id="t2", seq=2, text="a")]
    await store.append_batch("main", key, batch, "t2:tx")
    await store.append_batch("main", key, batch, "t2:tx")  # a replay: dropped as a duplicate
    await store.append("main", key, TxUser(turn_id="t3", seq=3, text="after"), "t3:0")
    history = await store.history("main", key)
    assert [(e.turn_id, type(e).__name__) for e in history] == [
        ("t1", "TxUser"),
        ("t2", "TxUser"),
        ("t2", "TxAssistant"),
        ("t3", "TxUser"),
    ]
