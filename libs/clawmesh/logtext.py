"""Text from outside, fit for one log line or one stored reason.

A log line quotes what it is about: a chat message's text, a header, the value a malformed
payload had where a tag belongs. Quoted as it came, a newline would start a line that looks like
the gateway's own, an escape sequence would drive the operator's terminal, a bidi override would
make the line read otherwise than it is, and a megabyte of payload would be a megabyte of log.
`one_line` escapes those characters and keeps the line's start and end when it is too long.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["MAX_LINE", "one_line"]

MAX_LINE: Final = 4000  # characters a log message keeps

# C0 and C1 controls (newline and tab included), DEL, the soft hyphen, the zero-width and bidi
# formatting characters, line and paragraph separators, word joiner and BOM.
_UNSAFE: Final = re.compile(
    "[\x00-\x1f\x7f-\x9f\u00ad\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2064\u2066-\u2069\ufeff]"
)
_NAMED: Final = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(match: re.Match[str]) -> str:
    ch = match.group()
    named = _NAMED.get(ch)
    if named is not None:
        return named
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def one_line(text: str, limit: int = MAX_LINE) -> str:
    """`text` with control and invisible formatting characters escaped (`\\n`, `\\x1b`,
    `\\u202e`), and at most about `limit` characters: the middle of a longer one is left out,
    saying how much, since both ends tend to matter (what failed, and where)."""
    if _UNSAFE.search(text) is not None:
        text = _UNSAFE.sub(_escape, text)
    if len(text) > limit:
        tail = limit // 4
        text = f"{text[: limit - tail]}…[{len(text) - limit} characters left out]…{text[len(text) - tail :]}"
    return text
