"""SessionStore against a real nats-server: completion records stay correct across processes
(each store keeps the records it saw, and must never answer from a stale one)."""

from __future__ import annotations

from nats.aio.client import Client

from clawmesh.bus import Layout, provision
from clawmesh.sessions import DoneRecord, SessionStore, TxUser
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

    rev1 = await a.put_done(key, _record(1, "first"))
    found = await a.get_done(key)
    assert found is not None and found[1] == rev1 and found[0].final_text == "first"

    # another runner (another store) completes the next turn: `a` must not answer from its copy
    found_b = await b.get_done(key)
    assert found_b is not None and found_b[0].final_text == "first"
    rev2 = await b.put_done(key, _record(2, "second"))
    assert rev2 > rev1
    again = await a.get_done(key)
    assert again is not None and again[1] == rev2
    assert (again[0].seq, again[0].final_text, again[0].context[0].text) == (2, "second", "second")

    # a record written as raw JSON by anything else decodes too
    await kv["sessions"].put("d." + encode_token(key), b'{"seq": 3, "turnId": "t3", "finalText": "raw"}')
    raw = await a.get_done(key)
    assert raw is not None and (raw[0].seq, raw[0].final_text, raw[0].context) == (3, "raw", [])
