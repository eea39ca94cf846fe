"""What each gateway of a federation tells the others: its agents and nodes (broadcast on
`<prefix>.gwcast.<region>.catalog`, kept by every ingress in the `gateways` KV bucket)."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping

import msgspec
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue

from ..kvlist import list_keys

__all__ = ["Catalogue", "CatalogueAgent", "CatalogueNode", "pick_remote_node", "read_catalogues"]


class CatalogueAgent(msgspec.Struct, kw_only=True, rename="camel", omit_defaults=True):
    id: str
    name: str = ""
    runner_type: str = "local"
    exposed: bool = False


class CatalogueNode(msgspec.Struct, kw_only=True, rename="camel", omit_defaults=True):
    id: str
    online: bool = False
    labels: dict[str, str] = {}
    capabilities: list[str] = []
    exposed: bool = False  # other regions' agents may run tools on it


class Catalogue(msgspec.Struct, kw_only=True, rename="camel", omit_defaults=True):
    region: str
    agents: list[CatalogueAgent] = []
    nodes: list[CatalogueNode] = []
    ts: float = 0.0


_decoder = msgspec.json.Decoder(Catalogue)


async def read_catalogues(kv: KeyValue) -> list[Catalogue]:
    """Every other region's latest catalogue (unreadable entries are skipped)."""
    out: list[Catalogue] = []
    for key in await list_keys(kv):
        with contextlib.suppress(KeyNotFoundError, msgspec.DecodeError, msgspec.ValidationError):
            entry = await kv.get(key)
            if entry.value:
                out.append(_decoder.decode(entry.value))
    return out


def pick_remote_node(
    catalogues: list[Catalogue], selector: Mapping[str, str], capability: str
) -> tuple[tuple[str, str] | None, str]:
    """(region, node id) of an exposed, online node of another region whose labels (and region)
    match `selector` and that can run `capability`; deterministic (region, then node id).
    Else (None, why)."""
    seen: list[str] = []
    for cat in catalogues:
        for node in cat.nodes:
            labels = {**node.labels, "region": cat.region}
            if not all(labels.get(k) == v for k, v in selector.items()):
                continue
            seen.append(f"{node.id}@{cat.region}")
            if node.exposed and node.online and capability in node.capabilities:
                return (cat.region, node.id), ""
    if not seen:
        return None, "no node of another region matches either"
    return (
        None,
        f"nodes of other regions match ({', '.join(seen)}) but none is exposed, online and able to run {capability}",
    )
