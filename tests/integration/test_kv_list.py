"""`list_keys` against a real nats-server: every stored key, filtered by prefix, and what a
deleted key looks like to its callers."""

from __future__ import annotations

import pytest
from nats.aio.client import Client
from nats.js.errors import KeyNotFoundError

from clawmesh.kvlist import list_keys


async def test_lists_every_key_of_a_bucket_and_filters_by_prefix(nc: Client) -> None:
    kv = await nc.jetstream().create_key_value(bucket="list_test", history=1)
    assert await list_keys(kv) == []
    written = [f"s.{i:03d}" for i in range(250)] + ["a.x", "a.y", "sx.1", "router.m.r1"]
    for key in written:
        await kv.put(key, b"v")

    assert await list_keys(kv) == sorted(written)
    assert await list_keys(kv, "s.") == [f"s.{i:03d}" for i in range(250)]  # not "sx.1"
    assert await list_keys(kv, "router.m.") == ["router.m.r1"]
    assert await list_keys(kv, "s") == sorted([f"s.{i:03d}" for i in range(250)] + ["sx.1"])
    assert await list_keys(kv, "none.") == []


async def test_a_deleted_key_is_listed_until_purged_and_reads_as_not_found(nc: Client) -> None:
    kv = await nc.jetstream().create_key_value(bucket="list_deleted", history=1)
    await kv.put("a.1", b"v")
    await kv.put("a.2", b"v")
    await kv.delete("a.2")
    # the delete marker keeps the subject: callers read each key, and a marker is "not found"
    assert await list_keys(kv, "a.") == ["a.1", "a.2"]
    with pytest.raises(KeyNotFoundError):
        await kv.get("a.2")
    await kv.purge("a.2")
    await kv.purge_deletes(olderthan=-1)
    assert await list_keys(kv, "a.") == ["a.1"]


async def test_a_bucket_deleted_meanwhile_lists_nothing(nc: Client) -> None:
    js = nc.jetstream()
    kv = await js.create_key_value(bucket="list_gone")
    await kv.put("k", b"v")
    await js.delete_key_value("list_gone")
    assert await list_keys(kv) == []
