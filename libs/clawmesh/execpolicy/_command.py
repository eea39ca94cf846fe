"""A shell command as the allowlist sees it: top-level segments (`;`, `&&`, `||`, newlines), each
a pipeline of argv lists. Anything the allowlist cannot reason about — redirections, command
substitution, subshells, background jobs, heredocs — makes the whole command unparseable, which
every policy treats as an allowlist miss (OpenClaw's rule)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

__all__ = ["Stage", "split_command"]

_ASSIGNMENT: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=")


@dataclass(frozen=True)
class Stage:
    """One command of a pipeline: its words with quotes removed, and whether any word is
    expanded by the shell (`$VAR`, globs, `~`), so that its final value is not what we see."""

    argv: tuple[str, ...]
    expands: tuple[bool, ...]
    substitutes: bool = False  # a `$` expansion in any word: its value is not what was judged

    @property
    def assigns(self) -> bool:
        """`FOO=bar cmd`: the environment changes what the command does."""
        return bool(self.argv) and not self.expands[0] and _ASSIGNMENT.match(self.argv[0]) is not None


class _Unparseable(Exception):
    pass


class _Words:
    def __init__(self) -> None:
        self.segments: list[list[Stage]] = []
        self.stages: list[Stage] = []
        self.argv: list[str] = []
        self.expands: list[bool] = []
        self.word: str | None = None
        self.expand = False
        self.dollar = False

    def add(self, text: str, *, expand: bool = False, dollar: bool = False) -> None:
        self.word = (self.word or "") + text
        self.expand = self.expand or expand
        self.dollar = self.dollar or dollar

    def flush(self) -> None:
        if self.word is not None:
            self.argv.append(self.word)
            self.expands.append(self.expand)
        self.word, self.expand = None, False

    def end_stage(self, *, required: bool) -> None:
        self.flush()
        if self.argv:
            self.stages.append(Stage(tuple(self.argv), tuple(self.expands), self.dollar))
        elif required:  # `a | | b`, `| b`
            raise _Unparseable
        self.argv, self.expands, self.dollar = [], [], False

    def end_segment(self, *, required: bool) -> None:
        self.end_stage(required=required or bool(self.stages))
        if self.stages:
            self.segments.append(self.stages)
        elif required:  # `&& b`
            raise _Unparseable
        self.stages = []


def _double_quoted(text: str, i: int, words: _Words) -> int:
    """Reads a "…" word part starting after the opening quote; returns the index after it."""
    n = len(text)
    while i < n:
        c = text[i]
        if c == '"':
            return i + 1
        if c == "`" or text.startswith("$(", i):
            raise _Unparseable
        if c == "\\" and i + 1 < n and text[i + 1] in '$`"\\\n':
            if text[i + 1] != "\n":
                words.add(text[i + 1])
            i += 2
            continue
        words.add(c, expand=c == "$", dollar=c == "$")
        i += 1
    raise _Unparseable  # unterminated


def split_command(text: str) -> list[list[Stage]] | None:
    """Segments → pipeline stages, or None when the command uses syntax the allowlist refuses."""
    words = _Words()
    i, n = 0, len(text)
    try:
        while i < n:
            c = text[i]
            nxt = text[i + 1] if i + 1 < n else ""
            if c in " \t":
                words.flush()
            elif c in ";\n":
                words.end_segment(required=False)
            elif c == "&":
                if nxt != "&":
                    raise _Unparseable  # background job
                words.end_segment(required=True)
                i += 1
            elif c == "|":
                if nxt == "|":
                    words.end_segment(required=True)
                    i += 1
                elif nxt == "&":
                    raise _Unparseable
                else:
                    words.end_stage(required=True)
            elif c in "<>(){}`":
                raise _Unparseable  # redirections, subshells, groups, command substitution
            elif c == "\\":
                if nxt and nxt != "\n":
                    words.add(nxt)
                i += 2
                continue
            elif c == "'":
                end = text.find("'", i + 1)
                if end < 0:
                    raise _Unparseable
                words.add(text[i + 1 : end])
                i = end + 1
                continue
            elif c == '"':
                words.add("")
                i = _double_quoted(text, i + 1, words)
                continue
            elif c == "$":
                if nxt in "({":
                    raise _Unparseable  # $(…) and ${…} (which can hide $(…) in defaults)
                words.add(c, expand=True, dollar=True)
            elif c == "#" and words.word is None:
                end = text.find("\n", i)
                i = n if end < 0 else end
                continue
            elif c in "*?[" or (c == "~" and words.word is None):
                words.add(c, expand=True)
            else:
                words.add(c)
            i += 1
        words.end_segment(required=False)
    except _Unparseable:
        return None
    # a dangling `a &&` or `a |` is a syntax error, not a command
    stripped = text.rstrip()
    if stripped.endswith(("&&", "||", "|")):
        return None
    return words.segments
