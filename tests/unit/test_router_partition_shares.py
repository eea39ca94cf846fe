"""Partitioned routers without a server: the inbound subjects and their mapping, the consumers
of each partition, how partitions are shared out, and `runtime.routerPartitions`."""

from __future__ import annotations

import itertools

import pytest
from nats.js.api import ConsumerInfo, SequenceInfo

from clawmesh.bus import Layout
from clawmesh.config import ConfigError, parse_config
from clawmesh.wire import InboundMessage, Peer, Subjects, inbound_key
from clawmesh_router.partitions import LEADER_KEY, done_up_to, plan, share


def test_the_key_is_what_decides_the_session_besides_channel_and_account() -> None:
    dm = InboundMessage(id="1", channel="telegram", account_id="bot", peer=Peer(kind="direct", id="42"))
    chosen = InboundMessage(id="2", channel="openai", agent_id="main", session_key="agent:main:openai-user:x")
    bare = InboundMessage(id="3", channel="api")
    assert inbound_key(dm) == "direct:42"
    assert inbound_key(chosen) == "session:agent:main:openai-user:x"  # the caller's session wins
    assert inbound_key(bare) == ""


def test_inbound_subjects_carry_the_key_only_when_partitioned() -> None:
    msg = InboundMessage(
        id="1", channel="telegram", account_id="bot.1", peer=Peer(kind="group", id="-100.5 x")
    )
    assert Subjects("cm").inbound_of(msg) == "cm.in.telegram.bot=2e1"  # as before: one router
    keyed = Subjects("cm", keyed_inbound=True).inbound_of(msg)
    assert keyed == "cm.in.telegram.bot=2e1.group=3a-100=2e5=20x"
    assert len(keyed.split(".")) == 5  # an id from outside never adds a token


def test_a_huge_key_stays_one_bounded_token() -> None:
    msg = InboundMessage(id="1", channel="api", agent_id="main", session_key="agent:main:" + "é" * 400)
    subject = Subjects("cm", keyed_inbound=True).inbound_of(msg)
    assert len(subject.split(".")) == 5 and len(subject) < 200


def test_the_stream_maps_keyed_subjects_to_partitions_with_nats_partition() -> None:
    s = Subjects("acme")
    src, dest = s.inbound_transform(8)
    assert src == "acme.in.*.*.*"
    assert dest == "acme.in.p.{{partition(8,1,2,3)}}.{{wildcard(1)}}.{{wildcard(2)}}.{{wildcard(3)}}"
    assert Layout(subjects=s).inbound_transform() is None  # one partition: no mapping
    transform = Layout(subjects=s, router_partitions=8).inbound_transform()
    assert transform is not None and (transform.src, transform.dest) == (src, dest)
    inbound = next(c for c in Layout(subjects=s, router_partitions=8).streams() if c.name == "ACME_INBOUND")
    assert inbound.subject_transform == transform and inbound.subjects == ["acme.in.>"]


def test_each_partition_has_its_consumer_and_lease_and_partition_zero_takes_the_unmapped() -> None:
    s = Subjects("cm")
    [one] = plan(1, s)
    assert (one.lease_key, one.durable, one.filters) == (LEADER_KEY, "router", ["cm.in.>"])  # as before
    parts = plan(4, s)
    assert [p.durable for p in parts] == ["router-p0", "router-p1", "router-p2", "router-p3"]
    assert len({p.lease_key for p in parts}) == 4
    assert parts[2].filters == ["cm.in.p.2.*.*.*"]
    # a message stored unmapped (an unkeyed publisher, or before the stream had its mapping)
    assert parts[0].filters == ["cm.in.p.0.*.*.*", "cm.in.*.*", "cm.in.*.*.*"]


@pytest.mark.parametrize("partitions", [1, 2, 3, 8, 16])
@pytest.mark.parametrize("routers", [1, 2, 3, 5])
def test_shares_add_up_and_are_even(partitions: int, routers: int) -> None:
    for held_counts in itertools.product(range(partitions + 1), repeat=routers):
        if sum(held_counts) > partitions:
            continue
        held = {f"r{i}": n for i, n in enumerate(held_counts)}
        shares = [share(held, r, partitions) for r in held]
        assert sum(shares) == partitions
        assert max(shares) - min(shares) <= 1


def test_a_router_keeps_what_it_holds_when_nobody_joins_or_leaves() -> None:
    # one partition: the leader stays the leader when a standby with a smaller name appears
    assert share({"b": 1, "a": 0}, "b", 1) == 1
    assert share({"b": 1, "a": 0}, "a", 1) == 0
    # 8 over 3: the two holding the most keep the extra one
    held = {"a": 2, "b": 3, "c": 3}
    assert [share(held, r, 8) for r in "abc"] == [2, 3, 3]


def test_a_router_not_yet_listed_counts_itself() -> None:
    assert share({"a": 4}, "b", 4) == 2


def test_a_joining_router_gets_its_share_as_the_others_hand_over() -> None:
    held = {"a": 4, "b": 4}
    assert share(held, "a", 8) == share(held, "b", 8) == 4
    held["c"] = 0
    assert [share(held, r, 8) for r in "abc"] == [3, 3, 2]


def _info(*, ack_pending: int, pending: int, delivered: int, floor: int) -> ConsumerInfo:
    return ConsumerInfo(
        name="router",
        stream_name="CM_INBOUND",
        config=None,  # type: ignore[arg-type]
        created=0.0,
        delivered=SequenceInfo(consumer_seq=delivered, stream_seq=delivered),
        ack_floor=SequenceInfo(consumer_seq=floor, stream_seq=floor),
        num_ack_pending=ack_pending,
        num_pending=pending,
    )


def test_a_new_consumer_starts_where_every_old_one_has_acknowledged_everything() -> None:
    # caught up: everything up to the stream's end is done
    assert done_up_to(_info(ack_pending=0, pending=0, delivered=90, floor=90), 120) == 120
    # messages waiting, none in hand: done up to what it delivered
    assert done_up_to(_info(ack_pending=0, pending=5, delivered=90, floor=90), 120) == 90
    # messages in hand: only up to its ack floor
    assert done_up_to(_info(ack_pending=3, pending=5, delivered=90, floor=80), 120) == 80


def test_router_partitions_is_a_positive_bounded_count() -> None:
    assert parse_config({}, checks=()).settings.runtime.router_partitions == 1
    assert (
        parse_config({"runtime": {"routerPartitions": 8}}, checks=()).settings.runtime.router_partitions == 8
    )
    with pytest.raises(ConfigError, match=r"runtime\.routerPartitions"):
        parse_config({"runtime": {"routerPartitions": 0}}, checks=())
    with pytest.raises(ConfigError, match=r"routerPartitions.*at most 256"):
        parse_config({"runtime": {"routerPartitions": 1000}}, checks=())
