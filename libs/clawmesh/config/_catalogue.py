"""OpenClaw's own key catalogue (`openclaw_keys.json`, generated from `openclaw config schema` by
scripts/oracle/key_catalogue.py), walked beside the config by the structural check.

A key the catalogue has but clawmesh's schema lacks is OpenClaw's and loads with a warning; a
key in neither is a mistake, and the catalogue's names at that place are the suggestions. A node
is the file's own dict (children by key, `*` any key of a map, `[]` an array's items, `#` the
type), so reading the catalogue is one JSON decode.
"""

from __future__ import annotations

import functools
from importlib import resources
from typing import Any, Final, TypeAlias

import msgspec

__all__ = ["CatalogueNode", "catalogue_child", "catalogue_item", "catalogue_names", "catalogue_root"]

CatalogueNode: TypeAlias = dict[str, Any]

_TYPE: Final = "#"
_ANY: Final = "any"


def _is_open(node: CatalogueNode) -> bool:
    """A map whose entries OpenClaw does not check: everything below it is known."""
    return node.get(_TYPE) == _ANY


def catalogue_child(node: CatalogueNode, key: str) -> CatalogueNode | None:
    if _is_open(node):
        return node
    found = node.get(key) if key != _TYPE else None
    return found if found is not None else node.get("*")


def catalogue_item(node: CatalogueNode) -> CatalogueNode | None:
    return node if _is_open(node) else node.get("[]")


def catalogue_names(node: CatalogueNode) -> list[str]:
    """The keys spelled out at this place (what a typo is compared with)."""
    return [k for k in node if k not in ("*", "[]", _TYPE)]


@functools.cache
def catalogue_root() -> CatalogueNode:
    """The catalogue, read once per process."""
    data = resources.files("clawmesh.config").joinpath("openclaw_keys.json").read_bytes()
    root: CatalogueNode = msgspec.json.decode(data)["keys"]  # twice as fast as json.loads here
    # OpenClaw 9.6 writes agents as the `entries` map; its older `list` form (which clawmesh
    # still reads) has the same entry shape.
    entries = root.get("agents", {}).get("entries", {})
    if "*" in entries:
        root["agents"].setdefault("list", {_TYPE: "array", "[]": entries["*"]})
    return root
