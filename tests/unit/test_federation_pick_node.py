"""Which node of another region a tool may run on: exposed, online, able, and matching."""

from __future__ import annotations

from clawmesh.federation import Catalogue, CatalogueNode, pick_remote_node


def _node(
    node_id: str,
    *,
    exposed: bool = True,
    online: bool = True,
    caps: tuple[str, ...] = ("fs", "exec"),
    **labels: str,
) -> CatalogueNode:
    return CatalogueNode(id=node_id, online=online, exposed=exposed, capabilities=list(caps), labels=labels)


def test_only_an_exposed_online_capable_matching_node_is_picked() -> None:
    cats = [
        Catalogue(region="eu", nodes=[_node("eu-1")]),
        Catalogue(
            region="sg",
            nodes=[
                _node("sg-a", exposed=False),
                _node("sg-b", online=False),
                _node("sg-c", caps=("fs",)),
                _node("sg-d", gpu="yes"),
            ],
        ),
    ]
    assert pick_remote_node(cats, {"region": "sg"}, "exec") == (("sg", "sg-d"), "")
    assert pick_remote_node(cats, {"region": "sg"}, "fs") == (("sg", "sg-c"), "")
    assert pick_remote_node(cats, {"gpu": "yes"}, "exec") == (("sg", "sg-d"), "")
    none, why = pick_remote_node(cats, {"region": "sg", "gpu": "no"}, "exec")
    assert none is None and "no node of another region matches" in why
    hidden = [Catalogue(region="sg", nodes=[_node("sg-a", exposed=False)])]
    none, why = pick_remote_node(hidden, {"region": "sg"}, "exec")
    assert none is None and "sg-a@sg" in why and "none is exposed" in why
