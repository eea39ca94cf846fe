"""OpenClaw's `apply_patch` format: parsing a patch and applying an update's hunks to a file's
text (OpenClaw's `src/agents/apply-patch.ts` and `apply-patch-update.ts`, with its error texts).
Writing the files is the workspace's business (`files.Workspace.apply_patch`).

    *** Begin Patch
    *** Add File: notes.txt
    +hello
    *** Update File: src/app.py
    *** Move to: src/main.py
    @@ def main():
    -    return 1
    +    return 2
    *** Delete File: old.txt
    *** End Patch

Hunks are found with OpenClaw's tolerance (exact, then trailing whitespace, then surrounding
whitespace, then typographic punctuation ignored) and must match exactly once; context lines
keep the file's own bytes; the file's line ending, BOM and missing final newline are kept.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Final

__all__ = [
    "AddFile",
    "DeleteFile",
    "Hunk",
    "PatchError",
    "PatchOp",
    "UpdateFile",
    "apply_hunks",
    "parse_patch",
]

_BEGIN: Final = "*** Begin Patch"
_END: Final = "*** End Patch"
_ADD: Final = "*** Add File: "
_DELETE: Final = "*** Delete File: "
_UPDATE: Final = "*** Update File: "
_MOVE: Final = "*** Move to: "
_EOF: Final = "*** End of File"


class PatchError(ValueError):
    """A patch that cannot be parsed or applied; the message names the line or the hunk."""


@dataclass(frozen=True, slots=True)
class AddFile:
    path: str
    contents: str


@dataclass(frozen=True, slots=True)
class DeleteFile:
    path: str


@dataclass(slots=True)
class Hunk:
    """One `@@` chunk: the lines it expects (`old`) and what replaces them (`new`: a str is an
    added line, an int the index of a context line in `old`, kept as the file has it)."""

    context: str | None = None
    old: list[str] = field(default_factory=list)
    new: list[str | int] = field(default_factory=list)
    end_of_file: bool = False

    def header(self) -> str:
        return f"@@ {self.context}" if self.context else "@@"


@dataclass(frozen=True, slots=True)
class UpdateFile:
    path: str
    move_to: str | None
    hunks: tuple[Hunk, ...]


PatchOp = AddFile | DeleteFile | UpdateFile


# --- parsing -----------------------------------------------------------------------------------


def _boundaries(lines: list[str]) -> list[str]:
    def problem(candidate: list[str]) -> str | None:
        first = candidate[0].strip() if candidate else ""
        last = candidate[-1].strip() if candidate else ""
        if first == _BEGIN and last == _END:
            return None
        if first != _BEGIN:
            return "The first line of the patch must be '*** Begin Patch'"
        return "The last line of the patch must be '*** End Patch'"

    error = problem(lines)
    if error is None:
        return lines
    # a patch passed through a shell heredoc (OpenClaw accepts it too)
    if len(lines) >= 4 and lines[0] in ("<<EOF", "<<'EOF'", '<<"EOF"') and lines[-1].endswith("EOF"):
        inner = lines[1:-1]
        error = problem(inner)
        if error is None:
            return inner
    raise PatchError(error)


def _parse_hunk(lines: Sequence[str], line_number: int, first: bool) -> tuple[Hunk, int]:
    hunk = Hunk()
    start = 0
    head = lines[0]
    if head == "@@":
        start = 1
    elif head.startswith("@@ "):
        hunk.context = head[3:]
        start = 1
    elif not first:
        raise PatchError(
            f"Invalid patch hunk at line {line_number}: Expected update hunk to start with a @@ "
            f"context marker, got: '{head}'"
        )
    if start >= len(lines):
        raise PatchError(
            f"Invalid patch hunk at line {line_number + 1}: Update hunk does not contain any lines"
        )
    parsed = 0
    for line in lines[start:]:
        if line == _EOF:
            if parsed == 0:
                raise PatchError(
                    f"Invalid patch hunk at line {line_number + 1}: Update hunk does not contain any lines"
                )
            hunk.end_of_file = True
            parsed += 1
            break
        marker, text = line[:1], line[1:]
        if marker in ("", " "):
            hunk.new.append(len(hunk.old))
            hunk.old.append(text)
        elif marker == "+":
            hunk.new.append(text)
        elif marker == "-":
            hunk.old.append(text)
        elif parsed == 0:
            raise PatchError(
                f"Invalid patch hunk at line {line_number + 1}: Unexpected line found in update hunk: "
                f"'{line}'. Every line should start with ' ' (context line), '+' (added line), or '-' "
                "(removed line)"
            )
        else:
            break
        parsed += 1
    return hunk, parsed + start


def _parse_op(lines: list[str], line_number: int) -> tuple[PatchOp, int]:
    head = lines[0].strip()
    if head.startswith(_ADD):
        added = []
        for line in lines[1:]:
            if not line.startswith("+"):
                break
            added.append(line[1:] + "\n")
        return AddFile(head[len(_ADD) :], "".join(added)), 1 + len(added)
    if head.startswith(_DELETE):
        return DeleteFile(head[len(_DELETE) :]), 1
    if head.startswith(_UPDATE):
        path = head[len(_UPDATE) :]
        consumed = 1
        move_to = None
        if len(lines) > 1 and lines[1].strip().startswith(_MOVE):
            move_to = lines[1].strip()[len(_MOVE) :]
            consumed += 1
        hunks: list[Hunk] = []
        while consumed < len(lines):
            line = lines[consumed]
            if not line.strip():
                consumed += 1
                continue
            if line.startswith("***"):
                break
            hunk, used = _parse_hunk(lines[consumed:], line_number + consumed, not hunks)
            hunks.append(hunk)
            consumed += used
        if not hunks:
            raise PatchError(
                f"Invalid patch hunk at line {line_number}: Update file hunk for path '{path}' is empty"
            )
        return UpdateFile(path, move_to, tuple(hunks)), consumed
    raise PatchError(
        f"Invalid patch hunk at line {line_number}: '{lines[0]}' is not a valid hunk header. Valid hunk "
        "headers: '*** Add File: {path}', '*** Delete File: {path}', '*** Update File: {path}'"
    )


def parse_patch(text: str) -> list[PatchOp]:
    """The patch's file operations, in order; PatchError names the line that is wrong."""
    trimmed = text.strip()
    if not trimmed:
        raise PatchError("Invalid patch: input is empty.")
    lines = _boundaries(re.split(r"\r?\n", trimmed))
    body = lines[1:-1]
    ops: list[PatchOp] = []
    line_number = 2
    while body:
        op, used = _parse_op(body, line_number)
        ops.append(op)
        line_number += used
        body = body[used:]
    if not ops:
        raise PatchError("No files were modified.")
    return ops


# --- applying an update ------------------------------------------------------------------------

_PUNCTUATION: Final = (
    (re.compile("[\u2010-\u2015\u2212]"), "-"),
    (re.compile("[\u2018-\u201b]"), "'"),
    (re.compile("[\u201c-\u201f]"), '"'),
    (re.compile("[\u00a0\u2002-\u200a\u202f\u205f\u3000]"), " "),
)


def _punctuation(value: str) -> str:
    for pattern, replacement in _PUNCTUATION:
        value = pattern.sub(replacement, value)
    return value


_NORMALIZERS: Final[tuple[Callable[[str], str], ...]] = (
    lambda v: v,
    str.rstrip,
    str.strip,
    lambda v: _punctuation(v.strip()),
)


def _seek(lines: list[str], pattern: list[str], start: int, eof: bool) -> int | str:
    """The index where `pattern` occurs once from `start`; "missing", or the count when it
    occurs more than once."""
    if not pattern:
        return start
    last_start = len(lines) - len(pattern)
    first = max(start, last_start) if eof else start
    if len(pattern) > len(lines) or first > last_start:
        return "missing"
    for normalize in _NORMALIZERS:
        wanted = [normalize(p) for p in pattern]
        found = [
            i
            for i in range(first, last_start + 1)
            if all(normalize(lines[i + k]) == wanted[k] for k in range(len(pattern)))
        ]
        if len(found) == 1:
            return found[0]
        if found:
            return str(len(found))
    return "missing"


def apply_hunks(text: str, hunks: Sequence[Hunk], path: str) -> str:
    """`text` with the hunks applied, in order; PatchError names the hunk that did not apply."""
    bom = "\ufeff" if text.startswith("\ufeff") else ""
    body = text[len(bom) :]
    ending = next((m.group(0) for m in re.finditer(r"\r\n|\r|\n", body)), "\n")
    lines = re.split(r"\r\n|\r|\n", body)
    final_newline = body == "" or lines[-1] == ""
    if lines and lines[-1] == "":
        lines.pop()
    replacements: list[tuple[int, int, list[str]]] = []
    index = 0
    for number, hunk in enumerate(hunks, 1):
        where = f"hunk {number} ({hunk.header()}) of {path}"
        if hunk.context:
            found = _seek(lines, [hunk.context], index, False)
            if found == "missing":
                raise PatchError(f"{where}: Failed to find context '{hunk.context}' in {path}")
            if isinstance(found, str):
                raise PatchError(
                    f"{where}: Found {found} occurrences of context '{hunk.context}' in {path}. The "
                    "context must be unique; use a more specific @@ context line."
                )
            index = found + 1
        if not hunk.old:
            at = index if hunk.context and not hunk.end_of_file else len(lines)
            replacements.append((at, 0, [n for n in hunk.new if isinstance(n, str)]))
            index = at
            continue
        old, new = hunk.old, hunk.new
        found = _seek(lines, old, index, hunk.end_of_file)
        if found == "missing" and old[-1] == "":
            # a trailing empty context line the file does not have
            old = old[:-1]
            new = [n for n in new if n != len(old)] if new and new[-1] == len(old) else new
            found = _seek(lines, old, index, hunk.end_of_file)
        expected = "\n".join(hunk.old)
        if found == "missing":
            raise PatchError(f"{where}: Failed to find expected lines in {path}:\n{expected}")
        if isinstance(found, str):
            raise PatchError(
                f"{where}: Found {found} occurrences of these lines in {path}. The lines must be "
                f"unique; include more surrounding lines in the hunk:\n{expected}"
            )
        kept = [lines[found + n] if isinstance(n, int) else n for n in new]
        replacements.append((found, len(old), kept))
        index = found + len(old)
    for at, count, new_lines in sorted(replacements, key=lambda r: r[0], reverse=True):
        lines[at : at + count] = new_lines
    result = ending.join(lines)
    if lines and final_newline:
        result += ending
    return bom + result
