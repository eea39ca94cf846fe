"""Splitting a reply into the messages a platform takes: shared by every channel adapter."""

from __future__ import annotations

__all__ = ["cap_lines", "split_text"]


def _u16(text: str) -> int:
    """Length in UTF-16 code units (Telegram's count; never less than the characters)."""
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def _fitting(text: str, limit: int) -> int:
    """How many characters of `text` fit in `limit` UTF-16 units (outside the BMP: two each)."""
    units = 0
    for n, ch in enumerate(text):
        units += 2 if ord(ch) > 0xFFFF else 1
        if units > limit:
            return n
    return len(text)


def split_text(text: str, limit: int) -> list[str]:
    """Reply text in messages of at most `limit` UTF-16 units (at most `limit` characters), cut at the last paragraph break,
    else line break, else space in the second half of a piece, else hard. Never an empty piece
    (platforms refuse empty text); an empty reply is one "…"."""
    if not text.strip():
        return ["…"]
    pieces: list[str] = []
    rest = text
    while _u16(rest) > limit:
        limit_here = _fitting(rest, limit)
        window = rest[:limit_here]
        if rest[limit_here].isspace():  # the window ends at a break: cut there, drop the break
            pieces.append(window.rstrip() or window)
            rest = rest[limit_here + 1 :].lstrip("\n")
            continue
        cut = -1
        for sep in ("\n\n", "\n", " "):
            at = window.rfind(sep)
            if at >= limit_here // 2:
                cut = at + len(sep)
                break
        if cut <= 0:
            cut = limit_here
        piece = rest[:cut].rstrip()
        pieces.append(piece or rest[:cut])
        rest = rest[cut:].lstrip("\n")
    if rest.strip():
        pieces.append(rest)
    return pieces


def _fence(line: str) -> str | None:
    """The fence marker a line opens or closes (```` ``` ```` or `~~~`, with its length), or None."""
    stripped = line.strip()
    for ch in ("`", "~"):
        if stripped.startswith(ch * 3):
            return ch * (len(stripped) - len(stripped.lstrip(ch)))
    return None


def cap_lines(text: str, max_lines: int) -> list[str]:
    """`text` in pieces of at most `max_lines` lines (Discord's `maxLinesPerMessage`: tall
    messages are clipped in its UI). A code block cut in two is closed at the end of one piece
    and opened again, with its language, at the start of the next, so both render as code
    (the cap is soft: those two lines come on top). Pieces of blank lines only are left out."""
    if max_lines <= 0:
        return [text]
    pieces: list[str] = []
    current: list[str] = []
    reopened = 0  # 1 when `current` starts with a code block's opening line carried over
    opener: str | None = None  # the line that opened the code block we are in
    marker = ""
    for line in text.split("\n"):
        if len(current) - reopened >= max_lines:
            pieces.append("\n".join([*current, marker] if opener is not None else current))
            current = [opener] if opener is not None else []
            reopened = len(current)
        current.append(line)
        found = _fence(line)
        if found is None:
            continue
        if opener is None:
            opener, marker = line.strip(), found
        elif found[0] == marker[0] and len(found) >= len(marker) and line.strip() == found:
            opener, marker = None, ""
    pieces.append("\n".join(current))
    return [p for p in pieces if p.strip()] or [text]
