"""Regex mention patterns: which are safe to run, and matching them in bounded time.

OpenClaw compiles `mentionPatterns` case-insensitively after rejecting "unsafe nested
repetition" (`compileSafeRegexDetailed`, `src/security/safe-regex.ts`): a quantifier applied to
something that already repeats (`(a+)+`, `(a*)*`, `(x+y)+`) or to an alternation of unequal
lengths repeated without bound (`(a|ab)+`). `unsafe_reason` is a port of that analysis, so the
same patterns are refused (tests/fixtures/oracle/channel_access.json holds OpenClaw's verdicts).

That rule removes exponential backtracking, not polynomial: `\\s*\\s*\\s*x` on a run of spaces is
cubic in its length, and Python's `re` has no timeout (the `regex` package has one, but a new
dependency in every image for this alone was not worth it). So clawmesh also refuses a pattern
with more than `MAX_UNBOUNDED` unbounded quantifiers, and runs each pattern on windows of at most
`WINDOW` characters (consecutive windows overlap by `OVERLAP`, so a match shorter than that is
never split), at most `MAX_WINDOWS` of them from the start plus the last one: a pattern's work
per message is bounded by a constant whatever the message. Refused patterns are reported by the
config loader with their path and never compiled.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final

__all__ = [
    "MAX_UNBOUNDED",
    "MentionMatcher",
    "compile_patterns",
    "derive_identity_patterns",
    "matches_any",
    "normalize_mention_text",
    "unsafe_reason",
]

MAX_UNBOUNDED: Final = 2
WINDOW: Final = 1024
OVERLAP: Final = 256
MAX_WINDOWS: Final = 8
_INVISIBLE: Final = re.compile("[\u200b-\u200f\u202a-\u202e\u2060-\u206f]")


# --- OpenClaw's nested-repetition analysis ----------------------------------------------------


@dataclass
class _Token:
    contains_repetition: bool
    ambiguous_alternation: bool
    min_length: float
    max_length: float


@dataclass
class _Frame:
    last: _Token | None = None
    contains_repetition: bool = False
    has_alternation: bool = False
    branch_min: float = 0
    branch_max: float = 0
    alt_min: float | None = None
    alt_max: float | None = None


@dataclass(frozen=True)
class _Quantifier:
    consumed: int
    min_repeat: int
    max_repeat: int | None


def _read_quantifier(source: str, index: int) -> _Quantifier | None:
    ch = source[index]
    consumed = 2 if index + 1 < len(source) and source[index + 1] == "?" else 1
    if ch == "*":
        return _Quantifier(consumed, 0, None)
    if ch == "+":
        return _Quantifier(consumed, 1, None)
    if ch == "?":
        return _Quantifier(consumed, 0, 1)
    if ch != "{":
        return None
    i = index + 1
    while i < len(source) and source[i].isdigit() and source[i].isascii():
        i += 1
    if i == index + 1:
        return None
    low = int(source[index + 1 : i])
    high: int | None = low
    if i < len(source) and source[i] == ",":
        i += 1
        start = i
        while i < len(source) and source[i].isdigit() and source[i].isascii():
            i += 1
        high = None if i == start else int(source[start:i])
    if i >= len(source) or source[i] != "}":
        return None
    i += 1
    if i < len(source) and source[i] == "?":
        i += 1
    if high is not None and high < low:
        return None
    return _Quantifier(i - index, low, high)


def _tokens(source: str) -> list[tuple[str, _Quantifier | None]]:
    tokens: list[tuple[str, _Quantifier | None]] = []
    in_class = False
    i = 0
    while i < len(source):
        ch = source[i]
        if in_class:
            if ch == "\\":
                i += 2
                continue
            if ch == "]":
                in_class = False
            i += 1
            continue
        if ch == "\\":
            tokens.append(("simple", None))
            i += 2
            continue
        if ch == "[":
            in_class = True
            tokens.append(("simple", None))
        elif ch == "(":
            tokens.append(("open", None))
        elif ch == ")":
            tokens.append(("close", None))
        elif ch == "|":
            tokens.append(("alt", None))
        else:
            quantifier = _read_quantifier(source, i)
            if quantifier is not None:
                tokens.append(("quant", quantifier))
                i += quantifier.consumed
                continue
            tokens.append(("simple", None))
        i += 1
    return tokens


def _record_alternative(frame: _Frame) -> None:
    frame.alt_min = frame.branch_min if frame.alt_min is None else min(frame.alt_min, frame.branch_min)
    frame.alt_max = frame.branch_max if frame.alt_max is None else max(frame.alt_max, frame.branch_max)


def _mul(length: float, factor: float) -> float:
    return 0 if length == 0 or factor == 0 else length * factor


def _has_nested_repetition(source: str) -> bool:
    frames = [_Frame()]

    def emit(token: _Token) -> None:
        frame = frames[-1]
        frame.last = token
        if token.contains_repetition:
            frame.contains_repetition = True
        frame.branch_min += token.min_length
        frame.branch_max += token.max_length

    for kind, quantifier in _tokens(source):
        if kind == "simple":
            emit(_Token(False, False, 1, 1))
        elif kind == "open":
            frames.append(_Frame())
        elif kind == "close":
            if len(frames) > 1:
                frame = frames.pop()
                if frame.has_alternation:
                    _record_alternative(frame)
                low = (frame.alt_min or 0) if frame.has_alternation else frame.branch_min
                high = (frame.alt_max or 0) if frame.has_alternation else frame.branch_max
                emit(
                    _Token(
                        frame.contains_repetition,
                        frame.has_alternation
                        and frame.alt_min is not None
                        and frame.alt_max is not None
                        and frame.alt_min != frame.alt_max,
                        low,
                        high,
                    )
                )
        elif kind == "alt":
            frame = frames[-1]
            frame.has_alternation = True
            _record_alternative(frame)
            frame.branch_min = 0
            frame.branch_max = 0
            frame.last = None
        else:
            assert quantifier is not None
            frame = frames[-1]
            previous = frame.last
            if previous is None:
                continue
            if previous.contains_repetition:
                return True
            if previous.ambiguous_alternation and quantifier.max_repeat is None:
                return True
            old_min, old_max = previous.min_length, previous.max_length
            previous.min_length = _mul(previous.min_length, quantifier.min_repeat)
            previous.max_length = (
                float("inf")
                if quantifier.max_repeat is None
                else _mul(previous.max_length, quantifier.max_repeat)
            )
            previous.contains_repetition = True
            frame.contains_repetition = True
            frame.branch_min = frame.branch_min - old_min + previous.min_length
            finite = frame.branch_max != float("inf") and old_max != float("inf")
            rest = frame.branch_max - old_max if finite else float("inf")
            frame.branch_max = rest + previous.max_length
    return False


def _unbounded_quantifiers(source: str) -> int:
    return sum(1 for kind, q in _tokens(source) if kind == "quant" and q is not None and q.max_repeat is None)


def unsafe_reason(pattern: str) -> str | None:
    """Why `pattern` is refused (None: usable). OpenClaw's reasons `empty`,
    `unsafe-nested-repetition`, `invalid-regex`, plus clawmesh's `too-many-unbounded-quantifiers`."""
    source = pattern.strip()
    if not source:
        return "empty"
    if _has_nested_repetition(source):
        return "unsafe-nested-repetition"
    try:
        re.compile(source, re.IGNORECASE)
    except re.error:
        return "invalid-regex"
    if _unbounded_quantifiers(source) > MAX_UNBOUNDED:
        return "too-many-unbounded-quantifiers"
    return None


# --- matching -------------------------------------------------------------------------------


def normalize_mention_text(text: str) -> str:
    """OpenClaw's `normalizeMentionText`: zero-width and bidi controls removed, lower-cased."""
    return _INVISIBLE.sub("", text).lower()


def _windows(text: str) -> Iterable[str]:
    if len(text) <= WINDOW:
        yield text
        return
    step = WINDOW - OVERLAP
    starts = list(range(0, len(text) - OVERLAP, step))
    for start in starts[:MAX_WINDOWS]:
        yield text[start : start + WINDOW]
    if len(starts) > MAX_WINDOWS:
        yield text[-WINDOW:]


def matches_any(regexes: Sequence[re.Pattern[str]], text: str) -> bool:
    if not regexes or not text:
        return False
    cleaned = normalize_mention_text(text)
    return any(r.search(window) for window in _windows(cleaned) for r in regexes)


@dataclass(frozen=True)
class MentionMatcher:
    regexes: tuple[re.Pattern[str], ...] = ()
    refused: tuple[tuple[str, str], ...] = field(default=())  # (pattern, reason)

    def matches(self, text: str) -> bool:
        return matches_any(self.regexes, text)


def compile_patterns(patterns: Iterable[str], *, trusted: bool = False) -> MentionMatcher:
    """Usable patterns compiled case-insensitively; the others with their reasons. `trusted`
    patterns (derived from the agent's identity by clawmesh itself) skip the quantifier limit."""
    regexes: list[re.Pattern[str]] = []
    refused: list[tuple[str, str]] = []
    for pattern in patterns:
        # OpenClaw turns a literal backspace (a JSON "\b" written for a regex \b) back into \b.
        source = pattern.replace("\b", "\\b").strip()
        reason = None if trusted and source else unsafe_reason(source)
        if reason == "empty":
            continue
        if reason is not None:
            refused.append((pattern, reason))
            continue
        regexes.append(re.compile(source, re.IGNORECASE))
    return MentionMatcher(tuple(regexes), tuple(refused))


def derive_identity_patterns(name: str | None, emoji: str | None) -> list[str]:
    """Patterns from `identity.name` / `identity.emoji` when no pattern is configured: the name
    as a whole word (optionally after `@`), its words separated by any white space; the emoji as
    a literal. A simplification of OpenClaw's grapheme-aware derivation that agrees on plain
    names (letters, digits, spaces, punctuation)."""
    patterns: list[str] = []
    words = (name or "").split()
    if words:
        core = r"\s+".join(re.escape(w) for w in words)
        patterns.append(rf"(?:@|(?<![\w\u200c\u200d])){core}(?![\w\u200c\u200d])")
    if emoji and emoji.strip():
        patterns.append(re.escape(emoji.strip()))
    return patterns
