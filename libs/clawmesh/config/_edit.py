"""A change to a config written into the JSON5 text itself: only the text of what changed is
replaced, so comments, key order, quoting and layout everywhere else stay byte for byte.

`diff` compares the data before and after a change and says, per object or array, which members
were added, removed or replaced (arrays are matched element by element, so an edited binding is
edited in place and keeps the comments inside it). `apply_edits` finds those containers in the
text (a structural scan: the loader has already checked the file) and writes each change:

- a replaced value is re-rendered in the file's style (quoted or bare keys, trailing commas,
  indentation unit, one-line objects where the siblings are one-line);
- in a container with one member per line, a removed member takes its own lines (and the
  comment on them) away and a new one gets a line of its own; commas are fixed so the last
  member keeps the container's trailing-comma style;
- a container written on one line (or in any other layout) is re-rendered as a whole.
"""

from __future__ import annotations

import itertools
import json
import re
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from difflib import SequenceMatcher
from typing import Any, Final, TypeAlias

import json5

__all__ = ["Change", "EditError", "Path", "apply_edits", "diff"]

Path: TypeAlias = tuple[str | int, ...]


class EditError(Exception):
    """The text cannot be edited in place (not one of the layouts this module writes into)."""


@dataclass
class Change:
    """What happened to one object or array at `path` (in the data before the change).

    `removed`: keys, or indexes of the old array. `replaced`: key or old index → new value.
    `added`: for an object (key, value) pairs appended at its end; for an array (old index the
    new element goes before, value), `len(old)` meaning at the end. `value`: the container's
    whole new value (used when it is re-rendered)."""

    path: Path
    value: Any
    removed: list[str | int] = field(default_factory=list)
    replaced: dict[str | int, Any] = field(default_factory=dict)
    added: list[tuple[str | int, Any]] = field(default_factory=list)

    @property
    def structural(self) -> bool:
        return bool(self.removed or self.added)


def _canon(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)


def diff(old: Any, new: Any, path: Path = ()) -> list[Change]:
    """The changes that turn `old` into `new` (both objects at the top). Nested objects and arrays
    present on both sides are compared recursively; anything else that differs is replaced."""
    changes: list[Change] = []
    _diff(old, new, path, changes)
    return changes


def _diff(old: Any, new: Any, path: Path, out: list[Change]) -> None:
    change = Change(path, new)
    nested: list[tuple[Any, Any, Path]] = []
    if isinstance(old, dict):
        for key in old:
            if key not in new:
                change.removed.append(key)
            elif _same_kind(old[key], new[key]):
                if not _equal(old[key], new[key]):
                    nested.append((old[key], new[key], (*path, key)))
            elif not _equal(old[key], new[key]):
                change.replaced[key] = new[key]
        change.added = [(key, value) for key, value in new.items() if key not in old]
    else:
        # elements equal at both ends are skipped with C-speed comparisons; only the middle
        # (what an edit touched) is matched element by element
        head = 0
        while head < min(len(old), len(new)) and _equal(old[head], new[head]):
            head += 1
        tail = 0
        while tail < min(len(old), len(new)) - head and _equal(old[-1 - tail], new[-1 - tail]):
            tail += 1
        old_mid, new_mid = old[head : len(old) - tail], new[head : len(new) - tail]
        matcher = SequenceMatcher(
            a=[_canon(v) for v in old_mid], b=[_canon(v) for v in new_mid], autojunk=False
        )
        for op, i1, i2, j1, j2 in matcher.get_opcodes():
            i1, i2, j1, j2 = i1 + head, i2 + head, j1 + head, j2 + head
            if op == "equal":
                continue
            if op == "replace" and i2 - i1 == j2 - j1:
                for i, j in zip(range(i1, i2), range(j1, j2), strict=True):
                    if _same_kind(old[i], new[j]):
                        nested.append((old[i], new[j], (*path, i)))
                    else:
                        change.replaced[i] = new[j]
                continue
            change.removed.extend(range(i1, i2))
            change.added.extend((i1, new[j]) for j in range(j1, j2))
    if change.removed or change.replaced or change.added:
        out.append(change)
    for o, n, p in nested:
        _diff(o, n, p, out)


def _equal(a: Any, b: Any) -> bool:
    """Equal, and of one type (`1 == 1.0 == True` in Python, but they are written differently;
    inside containers Python's C-speed comparison decides)."""
    return type(a) is type(b) and bool(a == b)


def _same_kind(a: Any, b: Any) -> bool:
    return (isinstance(a, dict) and isinstance(b, dict)) or (isinstance(a, list) and isinstance(b, list))


# --- the text's structure ------------------------------------------------------------------

_TOKEN: Final = re.compile(
    r"""
    (?P<ws>(?:[\s\ufeff]+|//[^\n\r\u2028\u2029]*|/\*.*?\*/)+)
  | (?P<str>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
  | (?P<punct>[{}\[\]:,])
  | (?P<atom>[^\s\ufeff{}\[\]:,"'/]+)
    """,
    re.VERBOSE | re.DOTALL,
)


@dataclass
class _Item:
    key: str | None
    start: int  # key (objects) or value (arrays)
    value: _Node
    comma: int | None = None  # the comma after the value


@dataclass
class _Node:
    start: int
    end: int
    kind: str  # "{", "[" or "atom"
    items: list[_Item] = field(default_factory=list)

    def child(self, step: str | int) -> _Item:
        if self.kind == "[" and isinstance(step, int) and 0 <= step < len(self.items):
            return self.items[step]
        if self.kind == "{":
            for item in self.items:
                if item.key == step:
                    return item
        raise EditError(f"no {step!r} in the text")


def _key(token: str) -> str:
    if "\\" not in token:
        return token[1:-1] if token[0] in "\"'" else token
    decoded = json5.loads("{" + token + ": 0}")
    return str(next(iter(decoded)))


def _parse(text: str) -> _Node:
    """The containers and members of `text` with their offsets: one pass, no values decoded
    (the loader has read and checked the same text)."""
    stack: list[_Node] = []
    root: _Node | None = None
    key: tuple[str, int] | None = None
    expect_key = False
    for m in _TOKEN.finditer(text):
        kind = m.lastgroup
        if kind == "ws":
            continue
        start, end = m.span()
        if kind == "punct":
            c = text[start]
            if c == ",":
                if not stack or not stack[-1].items:
                    raise EditError(f"unexpected ',' at offset {start}")
                stack[-1].items[-1].comma = start
                expect_key = stack[-1].kind == "{"
                continue
            if c == ":":
                continue
            if c in "}]":
                if not stack:
                    raise EditError(f"unexpected {c!r} at offset {start}")
                stack.pop().end = end
                expect_key = False
                continue
            node = _Node(start, -1, c)
        elif expect_key:
            key, expect_key = (_key(text[start:end]), start), False
            continue
        else:
            node = _Node(start, end, "atom")
        if stack:
            parent = stack[-1]
            if parent.kind == "{":
                if key is None:
                    raise EditError(f"a value without a key at offset {start}")
                parent.items.append(_Item(key[0], key[1], node))
                key = None
            else:
                parent.items.append(_Item(None, start, node))
        elif root is None:
            root = node
        else:
            raise EditError(f"text after the top-level value at offset {start}")
        if node.kind != "atom":
            stack.append(node)
            expect_key = node.kind == "{"
    if root is None or stack or root.kind == "atom":
        raise EditError("the file's top level is not a complete object or array")
    return root


# --- the file's style ------------------------------------------------------------------------


@dataclass(frozen=True)
class _Style:
    unit: str  # one level of indentation
    bare_keys: bool  # keys without quotes where JSON5 allows
    trailing_comma: bool  # a comma after the last member of a multi-line container
    spaced: bool  # one-line objects written `{ a: 1 }` rather than `{a: 1}`


def _line_start(text: str, pos: int) -> int:
    return text.rfind("\n", 0, pos) + 1


def _indent_of(text: str, pos: int) -> str:
    start = _line_start(text, pos)
    head = text[start:pos]
    return head if not head.strip() else head[: len(head) - len(head.lstrip())]


def _walk(node: _Node) -> Iterator[_Node]:
    yield node
    for item in node.items:
        yield from _walk(item.value)


def _style(text: str, root: _Node) -> _Style:
    units: Counter[str] = Counter()
    keys: Counter[bool] = Counter()
    trailing: Counter[bool] = Counter()
    spaced: Counter[bool] = Counter()
    containers = (node for node in _walk(root) if node.items)
    for node in itertools.islice(containers, 1000):  # enough to tell a file's habits
        if node.kind == "{":
            keys.update(text[item.start] not in "\"'" for item in node.items)
            if _one_line(text, node):
                spaced[text[node.start + 1 : node.start + 2] == " "] += 1
        if _one_per_line(text, node):
            outer, inner = _indent_of(text, node.start), _indent_of(text, node.items[0].start)
            if inner.startswith(outer) and len(inner) > len(outer):
                units[inner[len(outer) :]] += 1
            trailing[node.items[-1].comma is not None] += 1
    unit = units.most_common(1)[0][0] if units else "  "
    bare = keys[True] > keys[False]
    return _Style(
        unit, bare, trailing[True] > trailing[False], spaced[True] > spaced[False] if spaced else bare
    )


_IDENT: Final = re.compile(r"[A-Za-z_$][A-Za-z0-9_$]*")


def _render_key(key: str, style: _Style) -> str:
    return key if style.bare_keys and _IDENT.fullmatch(key) else json.dumps(key, ensure_ascii=False)


def _render(value: Any, indent: str, style: _Style, inline: bool = False, spaced: bool = True) -> str:
    """`value` as JSON5 in the file's style; `indent` is that of the line it starts on."""
    if not isinstance(value, dict | list) or not value:
        return json.dumps(value, ensure_ascii=False)
    inner = indent + style.unit
    if isinstance(value, dict):
        heads = [f"{_render_key(str(k), style)}: " for k in value]
        children = list(value.values())
        opening, closing, pad = "{", "}", " " if spaced else ""
    else:
        heads, children = ["" for _ in value], list(value)
        opening, closing, pad = "[", "]", ""
    if inline:
        body = ", ".join(
            h + _render(c, indent, style, True, spaced) for h, c in zip(heads, children, strict=True)
        )
        return f"{opening}{pad}{body}{pad}{closing}"
    lines = [inner + h + _render(c, inner, style) for h, c in zip(heads, children, strict=True)]
    tail = "," if style.trailing_comma else ""
    return opening + "\n" + ",\n".join(lines) + tail + "\n" + indent + closing


def _one_line(text: str, node: _Node) -> bool:
    return "\n" not in text[node.start : node.end]


_AFTER: Final = re.compile(r"[ \t]*(,)?[ \t]*(?://[^\n]*|/\*[^\n]*?\*/)?[ \t]*\r?\n")


def _one_per_line(text: str, node: _Node) -> bool:
    """Each member on lines of its own (a comment may follow on its last line) and the closing
    bracket on its own line: the layout where members are added and removed line by line."""
    if not node.items or node.kind == "atom":
        return False
    for item in node.items:
        if text[_line_start(text, item.start) : item.start].strip():
            return False
        after = _AFTER.match(text, item.value.end)
        if after is None or (item.comma is not None and item.comma >= after.end()):
            return False
    close = node.end - 1
    return not text[_line_start(text, close) : close].strip()


# --- writing --------------------------------------------------------------------------------


@dataclass
class _Edits:
    text: str
    spans: list[tuple[int, int, str]] = field(default_factory=list)

    def replace(self, start: int, end: int, new: str) -> None:
        if self.crlf:  # new lines end as the file's do
            new = new.replace("\n", "\r\n")
        self.spans.append((start, end, new))

    @property
    def crlf(self) -> bool:
        return self.text.count("\r\n") * 2 > self.text.count("\n")

    def result(self) -> str:
        out = self.text
        # from the end, so offsets stay valid; at one offset a removal goes before an insertion
        for start, end, new in sorted(self.spans, key=lambda s: (s[0], s[1]), reverse=True):
            out = out[:start] + new + out[end:]
        return out


def apply_edits(text: str, changes: Sequence[Change]) -> str:
    """`text` with `changes` (paths relative to the text's top-level object or array) written in."""
    root = _parse(text)
    style = _style(text, root)
    edits = _Edits(text)
    rerendered: list[Path] = []
    for change in changes:
        if any(change.path[: len(p)] == p for p in rerendered):
            continue  # inside a container already written as a whole
        node = root
        for step in change.path:
            node = node.child(step).value
        if node.kind == "atom":
            raise EditError(f"{_dotted(change.path)} is not an object or array in the text")
        if change.structural and not _one_per_line(text, node) and node.items:
            _rerender(text, node, change, style, edits)
            rerendered.append(change.path)
            continue
        for step, value in change.replaced.items():
            item = node.child(step)
            indent = _indent_of(text, item.start)
            inline = _one_line(text, item.value) and _fits(value)
            rendered = _render(value, indent, style, inline, _spaced(text, node, style))
            edits.replace(item.value.start, item.value.end, rendered)
        if change.structural:
            _restructure(text, node, change, style, edits)
    return edits.result()


def _dotted(path: Path) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path).lstrip(".") or "(top level)"


def _spaced(text: str, node: _Node, style: _Style) -> bool:
    """Whether one-line objects here are written `{ a: 1 }` rather than `{a: 1}`: as the first
    one-line object inside `node`, else as most in the file."""
    for candidate in _walk(node):
        if candidate.kind == "{" and candidate.items and _one_line(text, candidate):
            return text[candidate.start + 1 : candidate.start + 2] == " "
    return style.spaced


def _rerender(text: str, node: _Node, change: Change, style: _Style, edits: _Edits) -> None:
    indent = _indent_of(text, node.start)
    inline = _one_line(text, node)
    spaced = _spaced(text, node, style)
    edits.replace(node.start, node.end, _render(change.value, indent, style, inline, spaced))


def _restructure(text: str, node: _Node, change: Change, style: _Style, edits: _Edits) -> None:
    """Members removed and added, line by line (`node` has one member per line, or none)."""
    if not node.items:
        close = node.end - 1
        if not text[node.start + 1 : close].strip() or text[_line_start(text, close) : close].strip():
            _rerender(text, node, change, style, edits)
            return
        # only comments inside, and the closing bracket on a line of its own: new members go on
        # lines before it
    keyed = node.kind == "{"
    removed = {node.items.index(node.child(r)) if keyed else int(r) for r in change.removed}
    kept = [i for i in range(len(node.items)) if i not in removed]
    inserts: dict[int, list[tuple[str | int | None, Any]]] = {}
    for where, value in change.added:
        at = len(node.items) if keyed else int(where)
        inserts.setdefault(at, []).append((where, value) if keyed else (None, value))
    last_new = max([*kept, *(i - 0.5 for i in inserts)], default=None)
    trailing = node.items[-1].comma is not None if node.items else style.trailing_comma
    child_indent = (
        _indent_of(text, node.items[0].start) if node.items else _indent_of(text, node.start) + style.unit
    )
    siblings_inline = bool(node.items) and all(_one_line(text, it.value) for it in node.items)
    spaced = _spaced(text, node, style)
    for i in sorted(removed):
        item = node.items[i]
        after = _AFTER.match(text, item.value.end)
        assert after is not None
        edits.replace(_line_start(text, item.start), after.end(), "")
    for i in kept:
        item = node.items[i]
        comma_needed = i != last_new or trailing
        if comma_needed and item.comma is None:
            edits.replace(item.value.end, item.value.end, ",")
        elif not comma_needed and item.comma is not None:
            edits.replace(item.comma, item.comma + 1, "")
    for at, members in inserts.items():
        lines = []
        for n, (key, value) in enumerate(members):
            is_last = at - 0.5 == last_new and n == len(members) - 1
            inline = siblings_inline and not (isinstance(value, dict | list) and not value)
            rendered = _render(value, child_indent, style, inline and _fits(value), spaced)
            head = f"{_render_key(str(key), style)}: " if key is not None else ""
            lines.append(child_indent + head + rendered + ("" if is_last and not trailing else ",") + "\n")
        if at < len(node.items):
            pos = _line_start(text, node.items[at].start)
        else:
            pos = _line_start(text, node.end - 1)
        edits.replace(pos, pos, "".join(lines))


def _fits(value: Any) -> bool:
    """Small enough for one line next to one-line siblings."""
    return len(_canon(value)) <= 100
