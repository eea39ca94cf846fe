"""Structural check of raw config data against the msgspec schema, reporting *every* problem.

msgspec stops at the first error; users fixing a config want the whole list at once, with paths
and wording they understand. This walker follows the schema's type info, collects problems,
drops keys OpenClaw knows but clawmesh does not implement (one warning each, the key's subtree
unread) and returns data that `msgspec.convert` then accepts. Which keys OpenClaw knows comes
from its own schema (`_catalogue`), walked beside the config.
"""

from __future__ import annotations

import difflib
import re
import typing
from typing import Any, Final

import msgspec
import msgspec.inspect as mi

from ._catalogue import CatalogueNode, catalogue_child, catalogue_item, catalogue_names, catalogue_root
from ._errors import Problem
from ._keys import NOT_ENFORCED_KEYS, OPENCLAW_ONLY_KEYS, POLICY_ENFORCED_CHANNELS

__all__ = ["DuplicateKeyDict", "check_structure", "child_path", "index_path"]

# Legacy spellings accepted on input but not advertised in messages.
_HIDDEN_LITERALS: Final = frozenset({"dm"})
_IDENT: Final = re.compile(r"^[A-Za-z_$][A-Za-z0-9_$]*$")
# `$.channels.<ch>…` as `child_path` writes it: the channel a policy key belongs to.
_CHANNEL_PATH: Final = re.compile(r"^\$\.channels(?:\.([A-Za-z_$][A-Za-z0-9_$]*)|\['([^']*)'\])")


def _policy_enforced(path: str) -> bool:
    """Whether an ingress adapter applies the access policy at `path` (see `_keys`)."""
    found = _CHANNEL_PATH.match(path)
    if found is None:
        return False
    channel = found.group(1) or found.group(2)
    if channel == "defaults":  # `channels.defaults.groupPolicy` counts once any adapter enforces
        return bool(POLICY_ENFORCED_CHANNELS)
    return channel in POLICY_ENFORCED_CHANNELS


def _literal_orders() -> dict[frozenset[Any], tuple[Any, ...]]:
    """msgspec sorts Literal values; messages list them in the order the schema declares."""
    from . import _schema

    orders: dict[frozenset[Any], tuple[Any, ...]] = {}
    for value in vars(_schema).values():
        if typing.get_origin(value) is typing.Literal:
            orders[frozenset(typing.get_args(value))] = typing.get_args(value)
    return orders


_LITERAL_ORDER: Final = _literal_orders()


class DuplicateKeyDict(dict[str, Any]):
    """A JSON object that remembers keys the file gave more than once (JSON5 allows it; we don't)."""

    duplicates: list[str]

    def __init__(self, pairs: list[tuple[str, Any]]) -> None:
        super().__init__(pairs)  # the last value of a key wins, as it did in json5
        self.duplicates = []
        if len(self) != len(pairs):  # rare: only then look for which keys repeat
            seen: set[str] = set()
            for key, _ in pairs:
                if key in seen:
                    self.duplicates.append(key)
                seen.add(key)


def child_path(path: str, key: str) -> str:
    return f"{path}.{key}" if _IDENT.match(key) else f"{path}[{key!r}]"


def index_path(path: str, index: int) -> str:
    return f"{path}[{index}]"


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _misses_literal(value: Any, t: mi.Type) -> bool:
    """A value of a literal's shape that is none of its values (told apart in a union, whose
    other members may take it or must be named in the error)."""
    return isinstance(t, mi.LiteralType) and value not in t.values


def _describe(t: mi.Type) -> str:
    if isinstance(t, mi.StrType):
        return "a string"
    if isinstance(t, mi.IntType):
        return "an integer"
    if isinstance(t, mi.FloatType):
        return "a number"
    if isinstance(t, mi.BoolType):
        return "a boolean"
    if isinstance(t, mi.ListType):
        return "an array"
    if isinstance(t, mi.DictType | mi.StructType):
        return "an object"
    if isinstance(t, mi.LiteralType):
        values = _LITERAL_ORDER.get(frozenset(t.values), t.values)
        return "one of " + "|".join(str(v) for v in values if v not in _HIDDEN_LITERALS)
    if isinstance(t, mi.NoneType):
        return "null"
    return "a value"


class _Walker:
    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def error(self, path: str, message: str) -> None:
        self.problems.append(Problem(path, message))

    def warn(self, path: str, message: str) -> None:
        self.problems.append(Problem(path, message, "warning"))

    def walk(self, value: Any, t: mi.Type, path: str, known: CatalogueNode | None) -> Any:
        """`known` is OpenClaw's catalogue at the same place (None where OpenClaw has no such key)."""
        if isinstance(t, mi.AnyType):
            return value
        if isinstance(t, mi.UnionType):
            return self._union(value, t, path, known)
        if isinstance(t, mi.StructType):
            return self._struct(value, t, path, known)
        if isinstance(t, mi.ListType):
            if not isinstance(value, list):
                self.error(path, f"expected an array, got {_kind(value)}")
                return value
            item = catalogue_item(known) if known is not None else None
            return [self.walk(v, t.item_type, index_path(path, i), item) for i, v in enumerate(value)]
        if isinstance(t, mi.DictType):
            if not isinstance(value, dict):
                self.error(path, f"expected an object, got {_kind(value)}")
                return value
            self._duplicates(value, path)
            return {
                k: self.walk(
                    v,
                    t.value_type,
                    child_path(path, k),
                    catalogue_child(known, k) if known is not None else None,
                )
                for k, v in value.items()
            }
        if isinstance(t, mi.LiteralType):
            if value not in t.values or isinstance(value, bool) != any(isinstance(v, bool) for v in t.values):
                self.error(path, f"expected {_describe(t)}, got {value!r}")
            return value
        if not _scalar_ok(value, t):
            self.error(path, f"expected {_describe(t)}, got {_kind(value)}")
        return value

    def _union(self, value: Any, t: mi.UnionType, path: str, known: CatalogueNode | None) -> Any:
        members = list(t.types)
        if value is None and any(isinstance(m, mi.NoneType) for m in members):
            return value
        for member in members:
            if _shape_fits(value, member) and not _misses_literal(value, member):
                return self.walk(value, member, path, known)
        wanted = " or ".join(dict.fromkeys(_describe(m) for m in members if not isinstance(m, mi.NoneType)))
        # a value of a literal's shape that is none of its values is named, as a literal's own
        # error names it: `expected a boolean or one of auto, got 'x'`
        missed = any(_shape_fits(value, m) and _misses_literal(value, m) for m in members)
        got = repr(value) if missed else _kind(value)
        self.error(path, f"expected {wanted}, got {got}")
        return value

    def _struct(self, value: Any, t: mi.StructType, path: str, known: CatalogueNode | None) -> Any:
        if not isinstance(value, dict):
            self.error(path, f"expected an object, got {_kind(value)}")
            return value
        self._duplicates(value, path)
        fields = {f.encode_name: f for f in t.fields}
        not_enforced = NOT_ENFORCED_KEYS.get(t.cls, frozenset())
        out: dict[str, Any] = {}
        for key, item in value.items():
            field = fields.get(key)
            theirs = catalogue_child(known, key) if known is not None else None
            if field is not None:
                out[key] = self.walk(item, field.type, child_path(path, key), theirs)
                if key in not_enforced and item is not None and not _policy_enforced(path):
                    self.warn(
                        child_path(path, key),
                        "accepted, not enforced by clawmesh (no sender is filtered by it)",
                    )
            elif theirs is not None:
                self.warn(child_path(path, key), "accepted, not implemented by clawmesh; ignored")
            elif key in OPENCLAW_ONLY_KEYS.get(t.cls, ()):
                self.warn(
                    child_path(path, key),
                    "a key of older OpenClaw versions (not in OpenClaw 2026.9.6), not implemented by clawmesh; ignored",
                )
            else:
                theirs_here = catalogue_names(known) if known is not None else []
                self.error(child_path(path, key), _unknown_key_message(key, path, theirs_here, list(fields)))
        for field in t.fields:
            if field.required and field.encode_name not in value:
                self.error(path, f"missing required key '{field.encode_name}'")
        return out

    def _duplicates(self, value: dict[str, Any], path: str) -> None:
        for key in getattr(value, "duplicates", ()):
            self.error(child_path(path, key), "duplicate key (each key may appear only once)")


def _unknown_key_message(key: str, path: str, openclaw: list[str], clawmesh: list[str]) -> str:
    """OpenClaw's current names are suggested first: a clawmesh-only or legacy spelling only
    when OpenClaw has nothing close."""
    close: list[str] = []
    for known in (openclaw, clawmesh):
        close = difflib.get_close_matches(key, known, n=1, cutoff=0.75)
        if not close:
            folded = {k.lower(): k for k in known}
            if key.lower() in folded:
                close = [folded[key.lower()]]
        if close:
            break
    hint = f" — did you mean '{close[0]}'?" if close else ""
    return f"unknown key '{key}' at {path}{hint}"


def _scalar_ok(value: Any, t: mi.Type) -> bool:
    if isinstance(t, mi.StrType):
        return isinstance(value, str)
    if isinstance(t, mi.IntType):
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(t, mi.FloatType):
        return isinstance(value, int | float) and not isinstance(value, bool)
    if isinstance(t, mi.BoolType):
        return isinstance(value, bool)
    if isinstance(t, mi.NoneType):
        return value is None
    return True


def _shape_fits(value: Any, t: mi.Type) -> bool:
    if isinstance(t, mi.StructType | mi.DictType):
        return isinstance(value, dict)
    if isinstance(t, mi.ListType):
        return isinstance(value, list)
    if isinstance(t, mi.LiteralType):
        return any(type(v) is type(value) for v in t.values)
    return _scalar_ok(value, t) and not isinstance(t, mi.NoneType)


def check_structure(
    value: Any, schema: type[msgspec.Struct], path: str = "$", known_path: str = ""
) -> tuple[Any, list[Problem]]:
    """Check `value` against `schema`; return the cleaned value and all problems found.
    `known_path` is where `value` sits in OpenClaw's catalogue (dotted; the root by default)."""
    walker = _Walker()
    known: CatalogueNode | None = catalogue_root()
    for key in filter(None, known_path.split(".")):
        known = catalogue_child(known, key) if known is not None else None
    cleaned = walker.walk(value, mi.type_info(schema), path, known)
    return cleaned, walker.problems
