"""Leases on a real nats-server: exclusive, released only by their holder, and cheap to take
again for the process that released them."""

from __future__ import annotations

import pytest
from nats.aio.client import Client

from clawmesh.bus import Layout, LeaseLost, Leases, provision


async def _leases(nc: Client) -> tuple[Leases, Leases]:
    js = nc.jetstream()
    layout = Layout()
    kv = await provision(js, layout)
    bucket = layout.subjects.bucket("leases")
    return Leases(js, kv["leases"], bucket, "a"), Leases(js, kv["leases"], bucket, b"b")


async def test_a_lease_has_one_holder_at_a_time(nc: Client) -> None:
    a, b = await _leases(nc)
    lease = await a.acquire("s.one")
    assert lease is not None
    assert await b.acquire("s.one") is None
    await lease.renew()
    await lease.release()
    lease_b = await b.acquire("s.one")  # b never saw the marker: the general path
    assert lease_b is not None
    assert await a.acquire("s.one") is None  # a's remembered marker is stale now
    await lease_b.release()
    assert await a.acquire("s.one") is not None


async def test_the_releasing_process_takes_it_again_in_one_update(nc: Client) -> None:
    a, b = await _leases(nc)
    lease = await a.acquire("s.two")
    assert lease is not None
    await lease.release()
    calls = 0
    create = a.kv.create

    async def counting_create(*args, **kwargs):  # type: ignore[no-untyped-def]
        nonlocal calls
        calls += 1
        return await create(*args, **kwargs)

    a.kv.create = counting_create  # type: ignore[method-assign]
    again = await a.acquire("s.two")
    assert again is not None and again.revision > lease.revision and calls == 0
    assert await b.acquire("s.two") is None


async def test_release_with_a_stale_revision_leaves_the_new_holder_alone(nc: Client) -> None:
    a, b = await _leases(nc)
    lease = await a.acquire("s.three")
    assert lease is not None
    await lease.release()
    lease_b = await b.acquire("s.three")
    assert lease_b is not None
    await lease.release()  # a's object still has its old revision: refused quietly
    assert await a.acquire("s.three") is None
    entry = await a.kv.get("s.three")
    assert entry.value == b"b"


async def test_release_after_a_renewal_it_did_not_see_still_releases(nc: Client) -> None:
    """The heartbeat may renew while the turn ends: the revision the releaser knows is stale,
    but the lease is still its own and must not linger until it expires."""
    a, b = await _leases(nc)
    lease = await a.acquire("s.four")
    assert lease is not None
    await a.kv.update("s.four", b"a", last=lease.revision)  # a renewal whose answer is still on its way
    await lease.release()
    assert await b.acquire("s.four") is not None


async def test_renewing_a_lease_someone_else_took_raises_lease_lost(nc: Client) -> None:
    a, b = await _leases(nc)
    lease = await a.acquire("s.five")
    assert lease is not None
    await a.kv.delete("s.five")  # as if it had expired
    assert await b.acquire("s.five") is not None
    with pytest.raises(LeaseLost, match=r"s\.five"):
        await lease.renew()
    assert lease.lost
    await lease.release()  # lost: nothing to give up, and b keeps it
    assert (await a.kv.get("s.five")).value == b"b"
    with pytest.raises(LeaseLost):
        await lease.renew()


async def test_a_renewal_moves_the_revision_on(nc: Client) -> None:
    a, _ = await _leases(nc)
    lease = await a.acquire("s.six")
    assert lease is not None
    first = lease.revision
    await lease.renew()
    assert lease.revision > first
    assert (await a.kv.get("s.six")).revision == lease.revision
