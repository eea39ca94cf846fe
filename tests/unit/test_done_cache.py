"""The completion-record cache of SessionStore: exact revisions only, bounded by size."""

from __future__ import annotations

from clawmesh.sessions import DoneRecord
from clawmesh.sessions._store import _DoneCache


def test_answers_only_for_the_revision_it_holds() -> None:
    cache = _DoneCache(max_bytes=1000)
    rec = DoneRecord(seq=1)
    cache.put("s", 7, rec, 100)
    assert cache.get("s", 7) is rec
    assert cache.get("s", 8) is None
    assert cache.get("other", 7) is None


def test_least_recently_used_records_go_first_and_oversized_ones_are_not_kept() -> None:
    cache = _DoneCache(max_bytes=250)
    for i, key in enumerate("abc"):
        cache.put(key, 1, DoneRecord(seq=i), 100)  # c pushes a out (300 > 250)
    assert cache.get("a", 1) is None
    assert cache.get("b", 1) is not None  # b is now the most recently used
    cache.put("d", 1, DoneRecord(), 100)
    assert cache.get("c", 1) is None and cache.get("b", 1) is not None
    cache.put("b", 2, DoneRecord(), 1000)  # too big to keep: the old revision is dropped too
    assert cache.get("b", 1) is None and cache.get("b", 2) is None
