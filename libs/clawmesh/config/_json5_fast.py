"""A fast path for JSON5 config files: rewrite the JSON5 that people write (comments, unquoted
keys, single-quoted strings, trailing commas) as JSON for the stdlib's C parser.

`json5` reads ~50-80 KB/s; a 1 MB hand-written config took longer than a minute. This rewrite
is one regex scan whose Python work is per comment, key and closing bracket, not per character;
the JSON parser then validates everything it passed through unchanged (strings, numbers,
literals, punctuation). It is deliberately partial: whatever it is not sure to translate exactly
(hex numbers, `+1`, `.5`, unusual escapes, Unicode identifiers, line continuations, ...) either
makes it answer None or leaves text the JSON parser refuses, and then the caller uses `json5`,
which stays the reference for values and error messages. tests/unit/test_config_parse.py
compares the two on generated and mutated documents.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["to_json"]

_LITERAL: Final = r"(?:true|false|null|Infinity|NaN)(?![A-Za-z0-9_$])"

# `plain`: a run of text that JSON5 and JSON read alike, passed through as is: JSON whitespace,
# double-quoted strings, number-like runs (the JSON parser refuses JSON5-only forms such as `.5`,
# so json5 decides those), literals, and punctuation except closing brackets. Everything else is
# one token that needs a decision.
_TOKEN: Final = re.compile(
    rf"""
    (?P<plain>(?:
        [ \t\n\r]+
      | "(?:[^"\\\n\r\u2028\u2029]|\\.)*"
      | -?[0-9][0-9.eE+-]*
      | {_LITERAL}
      | [{{\[:,]
    )+)
  | (?P<close>[}}\]])
  | (?P<ident>[A-Za-z_$][A-Za-z0-9_$]*)
  | (?P<sq>'(?:[^'\\\n\r\u2028\u2029]|\\(?:['"\\/bfnrt]|u[0-9a-fA-F]{{4}}))*')
  | (?P<line>//[^\n\r\u2028\u2029]*)
  | (?P<block>/\*.*?\*/)
  | (?P<ws5>[\v\f\u00a0\ufeff\u1680\u2000-\u200a\u202f\u205f\u3000]+)
    """,
    re.VERBOSE | re.DOTALL,
)

_SQ_PART: Final = re.compile(r"""\\(u[0-9a-fA-F]{4}|.)|(")""", re.DOTALL)
_SPACE: Final = " \t\n\r"


def _sq_to_dq(token: str) -> str:
    """'it\\'s "x"' → "it's \\"x\\"" (the token already matched the strict single-quote form)."""

    def part(m: re.Match[str]) -> str:
        if m.group(2):
            return '\\"'
        esc = m.group(1)
        return "'" if esc == "'" else "\\" + esc

    return '"' + _SQ_PART.sub(part, token[1:-1]) + '"'


def _drop_trailing_comma(out: list[str]) -> None:
    """Remove the comma that ends `out` (ignoring whitespace) when a value precedes it: `[1,]` →
    `[1]`, while `[,]` and `[1,,]` keep theirs for the JSON parser to refuse, as json5 does."""
    seen_comma: tuple[int, int] | None = None
    for i in range(len(out) - 1, -1, -1):
        chunk = out[i]
        for j in range(len(chunk) - 1, -1, -1):
            c = chunk[j]
            if c in _SPACE:
                continue
            if seen_comma is None:
                if c != ",":
                    return
                seen_comma = (i, j)
                continue
            if c not in "[{,:":
                ci, cj = seen_comma
                out[ci] = out[ci][:cj] + out[ci][cj + 1 :]
            return


def to_json(text: str) -> str | None:
    """`text` rewritten as JSON with the same meaning, or None when this fast path cannot vouch
    for it (then parse it with `json5`). Invalid JSON5 either gives None or JSON that the JSON
    parser rejects too, so errors always come from `json5`."""
    out: list[str] = []
    pending_key = False  # an unquoted name was written: the next significant text must be ':'
    pos, end = 0, len(text)
    match = _TOKEN.match
    while pos < end:
        m = match(text, pos)
        if m is None:
            return None
        kind = m.lastgroup
        token = m.group()
        pos = m.end()
        if kind in ("line", "block", "ws5"):
            out.append(" ")
            continue
        if kind == "plain":
            if pending_key:
                head = token.lstrip(_SPACE)
                if head:
                    if head[0] != ":":
                        return None
                    pending_key = False
            out.append(token)
            continue
        if pending_key:
            return None
        if kind == "close":
            _drop_trailing_comma(out)
            out.append(token)
        elif kind == "ident":
            out.append('"' + token + '"')
            pending_key = True
        else:  # sq
            out.append(_sq_to_dq(token))
    if pending_key:
        return None
    return "".join(out)
