"""Write libs/clawmesh/config/openclaw_keys.json: every config key OpenClaw knows, from its own schema.

Run with `make openclaw-catalogue` (needs the OpenClaw oracle, docs/openclaw-oracle.md).
The loader reads the generated file to tell a key OpenClaw accepts but clawmesh does not
implement (a warning) from a mistake (an error with a suggestion).

Format: `{"openclaw": version, "keys": tree}`: each key's node holds its children and, under
`#`, its type; `*` stands for any key of a map and `[]` for the items of an array. A type is
`string`, `integer`, `number`, `boolean`, `null`, `object`, `array`, `enum:a|b|…`, several
joined by ` or `, or `any` for a map whose entries OpenClaw does not check (`"*": {"#": "any"}`
accepts everything below). Nested rather than flat so that loading it is one `json.loads`
(the loader reads it on every config load that has a key clawmesh does not implement).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from _run import ORACLE_VERSION, run_openclaw

OUT = Path(__file__).resolve().parents[2] / "libs" / "clawmesh" / "config" / "openclaw_keys.json"


def _variants(node: dict[str, Any]) -> list[dict[str, Any]]:
    """The node and its anyOf/oneOf/allOf members, flattened (a key is known if any variant has it)."""
    out = [node]
    for combinator in ("anyOf", "oneOf", "allOf"):
        for member in node.get(combinator, ()):
            if isinstance(member, dict):
                out += _variants(member)
    return out


def _type_of(variants: list[dict[str, Any]]) -> str:
    kinds: list[str] = []
    for v in variants:
        if "enum" in v:
            kinds.append("enum:" + "|".join(str(x) for x in v["enum"]))
        elif "const" in v:
            kinds.append("enum:" + str(v["const"]))
        else:
            t = v.get("type")
            for name in t if isinstance(t, list) else [t] if t else []:
                kinds.append(name)
    return " or ".join(dict.fromkeys(kinds)) or "any"


def flatten(node: dict[str, Any], path: str, keys: dict[str, str]) -> None:
    variants = _variants(node)
    if path:
        keys[path] = _type_of(variants)
    for v in variants:
        for name, child in v.get("properties", {}).items():
            flatten(child, f"{path}.{name}" if path else name, keys)
        extra = v.get("additionalProperties")
        if isinstance(extra, dict):
            flatten(extra, f"{path}.*" if path else "*", keys)
        elif extra is True or (
            "additionalProperties" not in v and v.get("type") == "object" and not v.get("properties")
        ):
            keys[f"{path}.*" if path else "*"] = "any"
        items = v.get("items")
        if isinstance(items, dict):
            flatten(items, f"{path}[]", keys)


def _segments(path: str) -> list[str]:
    """`a.b[].*` -> a, b, [], *"""
    out: list[str] = []
    for part in path.split("."):
        name = part.removesuffix("[]")
        arrays = (len(part) - len(name)) // 2
        while name.endswith("[]"):
            name = name.removesuffix("[]")
            arrays += 1
        out += [name] + ["[]"] * arrays
    return out


def main() -> None:
    schema = json.loads(run_openclaw("config", "schema"))
    keys: dict[str, str] = {}
    flatten(schema, "", keys)
    tree: dict[str, Any] = {}
    for path, kind in sorted(keys.items()):
        node = tree
        for seg in _segments(path):
            node = node.setdefault(seg, {})
        node["#"] = kind
    OUT.write_text(
        json.dumps({"openclaw": ORACLE_VERSION, "keys": tree}, separators=(",", ":"), ensure_ascii=False)
        + "\n",
        encoding="utf-8",
    )
    print(f"{len(keys)} keys -> {OUT}", file=sys.stderr)


if __name__ == "__main__":
    main()
