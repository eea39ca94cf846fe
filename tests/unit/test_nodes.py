"""Node presence and placement: offline after missed heartbeats, deterministic least-loaded pick."""

from __future__ import annotations

from clawmesh.nodes import NodeAnnouncement, Resources, node_statuses, pick_node


def node(
    node_id: str,
    *,
    load: float = 0.0,
    cpus: int = 2,
    labels: dict[str, str] | None = None,
    caps: tuple[str, ...] = ("exec", "files"),
    seen: float = 1000.0,
) -> NodeAnnouncement:
    return NodeAnnouncement(
        node_id=node_id,
        instance="i-" + node_id,
        version="0",
        capabilities=list(caps),
        labels=labels or {},
        resources=Resources(cpus=cpus, load1=load),
        heartbeat_seconds=5.0,
        last_seen=seen,
    )


def test_three_missed_heartbeats_mean_offline() -> None:
    statuses = node_statuses([node("a", seen=1000.0), node("b", seen=984.0)], now=1000.0)
    assert [(s.node.node_id, s.online) for s in statuses] == [("a", True), ("b", False)]
    assert node_statuses([node("c", seen=985.0)], now=1000.0)[0].online  # exactly 3 beats: still online


def test_selector_picks_least_loaded_matching_node_deterministically() -> None:
    nodes = node_statuses(
        [
            node("sg-2", load=1.0, labels={"region": "sg"}),
            node("sg-1", load=1.0, labels={"region": "sg"}),
            node("sg-3", load=3.0, labels={"region": "sg"}),
            node("eu-1", load=0.0, labels={"region": "eu"}),
        ],
        now=1000.0,
    )
    chosen, why = pick_node(nodes, {"region": "sg"}, capability="exec")
    assert chosen is not None and chosen.node.node_id == "sg-1" and why == ""
    chosen, _ = pick_node(nodes, None, capability="exec")
    assert chosen is not None and chosen.node.node_id == "eu-1"
    chosen, _ = pick_node(nodes, "sg-3", capability="files")
    assert chosen is not None and chosen.node.node_id == "sg-3"


def test_clear_reasons_when_no_node_fits() -> None:
    nodes = node_statuses(
        [node("sg-1", labels={"region": "sg"}, seen=900.0), node("x", caps=("files",))], now=1000.0
    )
    assert pick_node(nodes, {"region": "us"}, capability="exec") == (
        None,
        "no node matches nodes with region=us",
    )
    chosen, why = pick_node(nodes, {"region": "sg"}, capability="exec")
    assert chosen is None and "are offline" in why and "sg-1 last seen 100s ago" in why
    chosen, why = pick_node(nodes, "ghost", capability="exec")
    assert chosen is None and "not known" in why
    chosen, why = pick_node(nodes, "x", capability="exec")
    assert chosen is None and "cannot run exec" in why


def test_local_node_is_preferred_when_unpinned() -> None:
    nodes = node_statuses([node("local", load=5.0), node("other", load=0.0)], now=1000.0)
    chosen, _ = pick_node(nodes, None, capability="exec", prefer="local")
    assert chosen is not None and chosen.node.node_id == "local"
