"""Text from outside, fit for a log line, a stored reason or the operator's terminal.

A log line quotes what it is about: a chat message's text, a header, the value a malformed
payload had where a tag belongs. Quoted as it came, a newline would start a line that looks like
the gateway's own, an escape sequence would drive the operator's terminal (clear it, retitle
it, write the clipboard with OSC 52), a bidi override would make the line read otherwise than it
is, and a megabyte of payload would be a megabyte of log. `one_line` escapes those characters
and keeps the line's start and end when it is too long; `for_terminal` escapes them but keeps
lines and tabs, for what the CLI prints (a session's messages, a model's reply, a table of ids).
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["MAX_LINE", "for_terminal", "one_line"]

MAX_LINE: Final = 4000  # characters a log message keeps

# the soft hyphen, the zero-width and bidi formatting characters, line and paragraph
# separators, word joiner and BOM: invisible, or changing how the rest reads
_INVISIBLE: Final = "\u00ad\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2064\u2066-\u2069\ufeff"
# ... and the C0 and C1 controls and DEL; a terminal keeps newline and tab
_UNSAFE: Final = re.compile(f"[\x00-\x1f\x7f-\x9f{_INVISIBLE}]")
_UNSAFE_IN_TERMINAL: Final = re.compile(f"[\x00-\x08\x0b-\x1f\x7f-\x9f{_INVISIBLE}]")
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


def for_terminal(text: str) -> str:
    """`text` as a terminal should show it: lines and tabs kept, every other control character
    (ESC and the sequences it starts, CR, BEL, …) and invisible formatting character escaped
    as in `one_line` (a Windows line end is a line end). Not bounded: the CLI prints what was
    asked for."""
    if _UNSAFE_IN_TERMINAL.search(text) is None:
        return text
    return _UNSAFE_IN_TERMINAL.sub(_escape, text.replace("\r\n", "\n"))
