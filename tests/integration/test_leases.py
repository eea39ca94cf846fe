"""Leases on a real nats-server: exclusive, released only by their holder, and cheap to take
again for the process that released them."""

from __future__ import annotations

from nats.aio.client import Client

from clawmesh.bus import Layout, Leases, provision


async def _leases(nc: Client) -> tuple[Leases, Leases]:
    js = nc.jetstream()
    layout = Layout()
    kv = await provision(js, layout)
    bucket = layout.subjects.bucket("leases")
    return Leases(js, kv["leases"], bucket), Leases(js, kv["leases"], bucket)


async def test_a_lease_has_one_holder_at_a_time(nc: Client) -> None:
    a, b = await _leases(nc)
    rev = await a.acquire("s.one", b"a")
    assert rev is not None
    assert await b.acquire("s.one", b"b") is None
    rev = await a.renew("s.one", b"a", rev)
    await a.release("s.one", b"a", rev)
    rev_b = await b.acquire("s.one", b"b")  # b never saw the marker: the general path
    assert rev_b is not None
    assert await a.acquire("s.one", b"a") is None  # a's remembered marker is stale now
    await b.release("s.one", b"b", rev_b)
    assert await a.acquire("s.one", b"a") is not None


async def test_the_releasing_process_takes_it_again_in_one_update(nc: Client) -> None:
    a, b = await _leases(nc)
    rev = await a.acquire("s.two", b"a")
    assert rev is not None
    await a.release("s.two", b"a", rev)
    calls = 0
    create = a.kv.create

    async def counting_create(*args, **kwargs):  # type: ignore[no-untyped-def]
        nonlocal calls
        calls += 1
        return await create(*args, **kwargs)

    a.kv.create = counting_create  # type: ignore[method-assign]
    again = await a.acquire("s.two", b"a")
    assert again is not None and again > rev and calls == 0
    assert await b.acquire("s.two", b"b") is None


async def test_release_with_a_stale_revision_leaves_the_new_holder_alone(nc: Client) -> None:
    a, b = await _leases(nc)
    rev = await a.acquire("s.three", b"a")
    assert rev is not None
    await a.release("s.three", b"a", rev)
    rev_b = await b.acquire("s.three", b"b")
    assert rev_b is not None
    await a.release("s.three", b"a", rev)  # a thinks it still holds revision `rev`: refused quietly
    assert await a.acquire("s.three", b"a") is None
    entry = await a.kv.get("s.three")
    assert entry.value == b"b"


async def test_release_after_a_renewal_it_did_not_see_still_releases(nc: Client) -> None:
    """The heartbeat may renew while the turn ends: the revision the releaser knows is stale,
    but the lease is still its own and must not linger until it expires."""
    a, b = await _leases(nc)
    rev = await a.acquire("s.four", b"a")
    assert rev is not None
    await a.renew("s.four", b"a", rev)
    await a.release("s.four", b"a", rev)
    assert await b.acquire("s.four", b"b") is not None
