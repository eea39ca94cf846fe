"""The config file parser: plain JSON takes the stdlib's fast parser, anything else `json5`, and
both give the same values; nesting deeper than the bound is a clear error, never a crash."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import json5
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clawmesh.checks import default_checks
from clawmesh.config import ConfigError, load_config, read_config_file
from clawmesh.config._check import DuplicateKeyDict
from clawmesh.config._load import MAX_DEPTH, _join_surrogates, _pairs, _parse_json5


def _reference(text: str) -> Any:
    """What the loader gave before the fast path: json5 alone."""
    return _join_surrogates(json5.loads(text, object_pairs_hook=_pairs))


def _same(a: Any, b: Any) -> bool:
    """Equal values of equal types, duplicate keys included (NaN equals NaN)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, DuplicateKeyDict):
        # which keys repeat, not in which order they are reported
        return (
            sorted(a.duplicates) == sorted(b.duplicates)
            and list(a) == list(b)
            and all(_same(a[k], b[k]) for k in a)
        )
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)
    return bool(a == b)


_text = st.text(
    st.characters(codec="utf-8", exclude_categories=["Cs"])
    | st.sampled_from(["\u2028", "\u2029", "\x00", "\x1f", "\x7f", "🦞", "\\", '"', "'", "/"]),
    max_size=12,
)
_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=True, allow_infinity=True)
    | _text
)


def _to_json(value: Any, ascii_only: bool, indent: int | None) -> str:
    """JSON text for `value`, where a `("dup", [(k, v), …])` tuple is an object written with its
    keys as given (so duplicate keys occur)."""
    if isinstance(value, tuple):
        items = [
            f"{json.dumps(k, ensure_ascii=ascii_only)}: {_to_json(v, ascii_only, indent)}"
            for k, v in value[1]
        ]
        return "{" + ", ".join(items) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_to_json(v, ascii_only, indent) for v in value) + "]"
    return json.dumps(value, ensure_ascii=ascii_only, indent=indent)


_values = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.lists(
            st.tuples(st.sampled_from(["a", "b", "id", "é", "🦞", ""]) | _text, inner), max_size=4
        ).map(lambda pairs: ("dup", pairs))
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(_values, st.booleans(), st.sampled_from([None, 0, 2]), st.sampled_from(["", " ", "\n", "\t\r\n "]))
def test_plain_json_parses_as_json5_does(value: Any, ascii_only: bool, indent: int | None, pad: str) -> None:
    text = pad + _to_json(value, ascii_only, indent) + pad
    if not text.strip():
        return
    try:
        expected = _reference(text)
    except ValueError:
        with pytest.raises(ConfigError):
            _parse_json5(text, "c.json")
        return
    assert _same(_parse_json5(text, "c.json"), expected)


@pytest.mark.parametrize(
    "text",
    [
        '{"a": "\\ud83e\\udd9e", "b": "\\ud800", "c": "\\udc00x"}',  # escaped pair joined; lone → U+FFFD
        '{"a": 1, "a": 2, "b": {"c": 1, "c": {}}}',  # duplicates recorded at every level
        '{"n": [NaN, Infinity, -Infinity, 1e400, -0, 0.0, 12345678901234567890123]}',
        '{"s": "tab\\there \\u2028 \\/ \\"q\\""}',
        '{"e": {}, "l": [], "z": [{}]}',
        "\ufeff{}",  # a BOM: not JSON for the stdlib, so json5 decides
        '{"a": "raw\ttab"}',  # a raw control character: refused by `json` (strict), so json5 decides
    ],
)
def test_edge_cases_match_json5(text: str) -> None:
    try:
        expected = _reference(text)
    except ValueError:
        with pytest.raises(ConfigError):
            _parse_json5(text, "c.json")
        return
    assert _same(_parse_json5(text, "c.json"), expected)


def test_json5_syntax_still_parses_and_keeps_duplicate_detection() -> None:
    data = _parse_json5("// c\n{a: 1, a: 'x', b: [+1, .5, 0x10,], /* d */}", "c.json")
    assert isinstance(data, DuplicateKeyDict) and data.duplicates == ["a"]
    assert data == {"a": "x", "b": [1, 0.5, 16]}


@pytest.mark.parametrize(
    "text", ['{"\\ud83e\\udd9e": 1, "\\ud83e\\udd9e": 2}', "{'\\ud83e\\udd9e': 1, '\\ud83e\\udd9e': 2}"]
)
def test_a_duplicate_escaped_key_is_named_as_written(text: str) -> None:
    data = _parse_json5(text, "c.json")
    assert isinstance(data, DuplicateKeyDict) and data.duplicates == ["🦞"] and data == {"🦞": 2}


def _nested(depth: int, json5_syntax: bool) -> str:
    key = "a" if json5_syntax else '"a"'
    head = "// deep\n" if json5_syntax else ""
    return head + "{" + f"{key}: {{" * (depth - 1) + "}" * depth


@pytest.mark.parametrize("json5_syntax", [False, True])
def test_nesting_at_the_bound_is_accepted(json5_syntax: bool) -> None:
    data = _parse_json5(_nested(MAX_DEPTH, json5_syntax), "c.json")
    for _ in range(MAX_DEPTH - 1):
        data = data["a"]
    assert data == {}


@pytest.mark.parametrize("json5_syntax", [False, True])
@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 60, 5_000])
def test_deep_nesting_is_a_config_error_naming_where(tmp_path: Path, json5_syntax: bool, depth: int) -> None:
    path = tmp_path / "deep.json"
    path.write_text(_nested(depth, json5_syntax))
    with pytest.raises(ConfigError) as err:
        read_config_file(path)
    message = str(err.value)
    assert f"nested more than {MAX_DEPTH} levels deep" in message
    # Where: the JSON path when a parser got through, else the file's line.
    assert "$" + ".a" * MAX_DEPTH + ":" in message or f"{path}:{1 + json5_syntax}:" in message


def test_deep_nesting_in_a_list_names_the_path(tmp_path: Path) -> None:
    lists: list[Any] = []
    for _ in range(MAX_DEPTH):
        lists = [lists]
    path = tmp_path / "deep.json"
    path.write_text(json.dumps({"plugins": {"entries": {"x": {"config": lists}}}}))
    with pytest.raises(ConfigError) as err:
        load_config(path, env={}, checks=default_checks())
    # `$` is level 1, `config` level 5: the 33rd level is 28 lists further in.
    where = "$.plugins.entries.x.config" + "[0]" * (MAX_DEPTH - 4)
    assert f"{where}: nested more than {MAX_DEPTH} levels deep" in str(err.value)


# --- hand-written JSON5: the rewrite fast path (config._json5_fast) ------------------------------
_IDENT = re.compile(r"[A-Za-z_$][A-Za-z0-9_$]*\Z")
_GAPS = ["", " ", "\n", "// c\n", "/* c */", "\t", "\v", "\u00a0", "\ufeff", "/**/\n"]


def _sq(s: str) -> str:
    """A single-quoted JSON5 string with the value `s`."""
    body = json.dumps(s)[1:-1].replace('\\"', '"').replace("'", "\\'")
    return "'" + body + "'"


def _to_json5(value: Any, draw: Any) -> str:
    """JSON5 text for `value` in the styles people write: unquoted keys, single quotes, comments
    and odd whitespace between tokens, trailing commas."""

    def gap() -> str:
        return str(draw(st.sampled_from(_GAPS)))

    def string(s: str) -> str:
        return _sq(s) if draw(st.booleans()) else json.dumps(s, ensure_ascii=draw(st.booleans()))

    def key(k: str) -> str:
        return k if _IDENT.match(k) and draw(st.booleans()) else string(k)

    def trailing() -> str:
        return "," + gap() if draw(st.booleans()) else ""

    if isinstance(value, tuple):
        items = [f"{gap()}{key(k)}{gap()}:{gap()}{_to_json5(v, draw)}{gap()}" for k, v in value[1]]
        return "{" + ",".join(items) + (trailing() if items else "") + gap() + "}"
    if isinstance(value, list):
        items = [gap() + _to_json5(v, draw) + gap() for v in value]
        return "[" + ",".join(items) + (trailing() if items else "") + gap() + "]"
    if isinstance(value, str):
        return string(value)
    return json.dumps(value)


_json5_keys = st.sampled_from(["a", "b", "id", "$x", "_y", "true", "null", "Infinity", "é", ""]) | _text
_json5_values = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.lists(st.tuples(_json5_keys, inner), max_size=4).map(lambda pairs: ("dup", pairs))
    ),
    max_leaves=20,
)


def _agree(text: str) -> None:
    """The loader gives json5's value for `text`, or a ConfigError where json5 refuses it."""
    try:
        expected = _reference(text)
    except (ValueError, RecursionError):
        with pytest.raises(ConfigError):
            _parse_json5(text, "c.json5")
        return
    assert _same(_parse_json5(text, "c.json5"), expected), text


@settings(max_examples=150, deadline=None)
@given(_json5_values, st.data())
def test_hand_written_json5_parses_as_json5_does(value: Any, data: Any) -> None:
    _agree("// config\n" + _to_json5(value, data.draw) + "\n")


@settings(max_examples=300, deadline=None)
@given(_json5_values, st.data())
def test_broken_json5_is_refused_or_read_as_json5_does(value: Any, data: Any) -> None:
    """One character deleted, inserted or replaced: the fast path never accepts what json5
    refuses, and never reads it differently."""
    text = _to_json5(value, data.draw)
    at = data.draw(st.integers(0, len(text)))
    edit = data.draw(st.sampled_from(["delete", "insert", "replace"]))
    char = data.draw(st.sampled_from([*",:{}[]'\"/\\*\n x0-+.eE", "//", "/*", "*/", "true", "}"]))
    if edit == "delete":
        text = text[:at] + text[at + 1 :]
    elif edit == "insert":
        text = text[:at] + char + text[at:]
    else:
        text = text[:at] + char + text[at + 1 :]
    if text.strip():
        _agree(text)


@pytest.mark.parametrize(
    "text",
    [
        "{a: 1, b: 'x', c: [1, 2,], /* d */}",
        "{true: 1, null: 2, Infinity: Infinity, NaN: NaN}",
        "{'q\"uote': 'it\\'s', \"d'q\": \"x\"}",
        "{a: 1,,}",  # two trailing commas: invalid
        "[,]",  # a comma with nothing before it: invalid
        "{,}",
        "[,1]",
        "[[1],{a:[],},]",
        "{a: /* c */ 1, // d\n b // e\n : 2,}",
        "{a: 1, 'b': 2, \"c\": 3 /* x */ , }",
        "{Infinityx: 1, truex: true, $: null}",
        "{a: b}",  # an unquoted value: invalid
        "{a 1}",
        "[1, 2] // trailing comment",
        "{a: -Infinity, b: +1, c: .5, d: 0x1F, e: 5.}",  # forms the fast path leaves to json5
        "{a: 'line\\\ncontinued'}",
        "{'\\x41': '\\v\\0'}",
        "{a: 01}",
        "{a: 1e}",
        "/* unterminated {a: 1}",
        "{a: 1} /* unterminated",
        "{a\u2028: 1}",
        "{a: '\u2028'}",
    ],
)
def test_json5_edge_cases_match_json5(text: str) -> None:
    _agree(text)
