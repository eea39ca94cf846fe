"""The config file parser: plain JSON takes the stdlib's fast parser, anything else `json5`, and
both give the same values; nesting deeper than the bound is a clear error, never a crash."""

from __future__ import annotations

import json
import math
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
        return a.duplicates == b.duplicates and list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
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
