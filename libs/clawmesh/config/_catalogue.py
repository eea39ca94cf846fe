"""OpenClaw's own key catalogue (`openclaw_keys.json`, generated from `openclaw config schema` by
scripts/openclaw_key_catalogue.py), as a tree the structural check walks beside the config.

A key the catalogue has but clawmesh's schema lacks is OpenClaw's and loads with a warning; a
key in neither is a mistake, and the catalogue's names at that place are the suggestions.
"""

from __future__ import annotations

import functools
import json
from importlib import resources
from typing import Final

__all__ = ["CatalogueNode", "catalogue_root"]

_ANY: Final = "any"


class CatalogueNode:
    """The keys OpenClaw knows at one place of the config. `*` is any key of a map, `[]` the
    items of an array; an `open` node accepts anything below it."""

    __slots__ = ("children", "open", "type")

    def __init__(self) -> None:
        self.children: dict[str, CatalogueNode] = {}
        self.type = "object"
        self.open = False

    def child(self, key: str) -> CatalogueNode | None:
        if self.open:
            return self
        found = self.children.get(key)
        return found if found is not None else self.children.get("*")

    def item(self) -> CatalogueNode | None:
        return self if self.open else self.children.get("[]")

    def names(self) -> list[str]:
        """The keys spelled out here (what a typo is compared with)."""
        return [k for k in self.children if k not in ("*", "[]")]


def _segments(path: str) -> list[str]:
    out: list[str] = []
    for part in path.split("."):
        name = part
        arrays = 0
        while name.endswith("[]"):
            name = name[:-2]
            arrays += 1
        out.append(name)
        out += ["[]"] * arrays
    return out


@functools.cache
def catalogue_root() -> CatalogueNode:
    """The catalogue, read once per process (~8000 keys, a few ms)."""
    text = resources.files("clawmesh.config").joinpath("openclaw_keys.json").read_text(encoding="utf-8")
    root = CatalogueNode()
    for path, kind in json.loads(text)["keys"].items():
        node = root
        for seg in _segments(path):
            nxt = node.children.get(seg)
            if nxt is None:
                nxt = node.children[seg] = CatalogueNode()
            node = nxt
        node.type = kind
        if kind == _ANY and path.endswith("*"):
            node.open = True
    # OpenClaw 9.6 writes agents as the `entries` map; its older `list` form (which clawmesh
    # still reads) has the same entry shape.
    agents = root.children.get("agents")
    entries = agents.children.get("entries") if agents else None
    if agents is not None and entries is not None and "*" in entries.children:
        legacy = agents.children.setdefault("list", CatalogueNode())
        legacy.type = "array"
        legacy.children["[]"] = entries.children["*"]
    return root
