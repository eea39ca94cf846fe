"""What each gateway of a federation tells the others: its agents and nodes (broadcast on
`<prefix>.gwcast.<region>.catalog`, kept by every ingress in the `gateways` KV bucket)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping
from typing import Annotated

import msgspec
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue

from ..kvlist import list_keys

__all__ = [
    "SILENT_PERIODS",
    "Catalogue",
    "CatalogueAgent",
    "CatalogueNode",
    "pick_remote_node",
    "read_catalogues",
    "region_silence",
    "silent_for",
]

# A region not heard from for this many of its broadcast periods is gone (its gateway, or its
# link to the hub): a broadcast or two may be lost or late, three in a row are not.
SILENT_PERIODS = 3
_DEFAULT_PERIOD = 10.0  # gateway.federation.catalogSeconds' default, for a catalogue without one


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
    ts: float = 0.0  # when the region sent it (its clock)
    # the region's broadcast period (its catalogSeconds); 0: not said
    every: Annotated[float, msgspec.Meta(ge=0, le=3600)] = 0.0
    received: float = 0.0  # when this region's ingress stored it (this region's clock)


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


async def region_silence(kv: KeyValue, region: str, *, now: float | None = None) -> float | None:
    """Seconds since this gateway last heard `region`'s catalogue, when that is more than
    `SILENT_PERIODS` of its broadcast periods: the region is gone. None while it is heard, and
    for a region never heard of (nothing to judge by)."""
    try:
        entry = await kv.get(region)
        cat = _decoder.decode(entry.value or b"")
    except (KeyNotFoundError, msgspec.DecodeError, msgspec.ValidationError):
        return None
    if not cat.received:
        return None  # stored by an ingress that did not stamp it
    return silent_for(cat.received, cat.every, now=now)


def silent_for(heard: float, every: float, *, now: float | None = None) -> float | None:
    """Seconds since `heard` when that is more than `SILENT_PERIODS` broadcast periods (`every`;
    0: the default one) — the region is gone; else None."""
    silent = (time.time() if now is None else now) - heard
    return silent if silent > SILENT_PERIODS * (every or _DEFAULT_PERIOD) else None


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
