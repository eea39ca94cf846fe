"""OpenClaw's safe bins: stdin-only filters (`head`, `wc`, …) that run in allowlist mode without
an allowlist entry, as long as their argv cannot name a file. Validation looks at the argv shape
only (never at the filesystem), with OpenClaw's per-binary profiles."""

from __future__ import annotations

import os
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Final

from ..config import SafeBinProfile

__all__ = ["NEVER_SAFE", "is_safe_bin_stage"]

# Whatever the config says: these can run code or read files by design.
NEVER_SAFE: Final = frozenset({"jq", "awk", "gawk", "mawk", "nawk", "sed", "gsed"})


@dataclass(frozen=True)
class _Profile:
    min_positional: int = 0
    max_positional: int | None = None
    value_flags: frozenset[str] = frozenset()
    boolean_flags: frozenset[str] = frozenset()
    denied_flags: frozenset[str] = frozenset()

    @property
    def long_flags(self) -> frozenset[str]:
        return frozenset(
            f for f in self.value_flags | self.boolean_flags | self.denied_flags if f.startswith("--")
        )


def _p(
    max_positional: int | None, value: str = "", boolean: str = "", denied: str = "", minimum: int = 0
) -> _Profile:
    return _Profile(
        minimum,
        max_positional,
        frozenset(value.split()),
        frozenset(boolean.split()),
        frozenset(denied.split()),
    )


# OpenClaw 2026.9's built-in profiles (src/infra/exec-safe-bin-trust.ts).
_PROFILES: Final[Mapping[str, _Profile]] = {
    "grep": _p(
        0,
        "--regexp --max-count --after-context --before-context --context --devices --binary-files "
        "--exclude --include --label -e -m -A -B -C -D",
        denied="--file --exclude-from --dereference-recursive --directories --recursive -f -d -r -R",
    ),
    "cut": _p(
        0,
        "--bytes --characters --fields --delimiter --output-delimiter -b -c -f -d",
        "--complement --only-delimited --zero-terminated -n -s -z",
    ),
    "sort": _p(
        0,
        "--key --field-separator --buffer-size --parallel --batch-size -k -t -S",
        denied="--compress-program --files0-from --output --random-source --temporary-directory -T -o",
    ),
    "uniq": _p(
        0,
        "--skip-fields --skip-chars --check-chars --group -f -s -w",
        "--count --repeated --unique --ignore-case --zero-terminated -c -d -u -i -z",
    ),
    "head": _p(0, "--lines --bytes -n -c", "--quiet --silent --verbose --zero-terminated -q -v -z"),
    "tail": _p(
        0,
        "--lines --bytes --sleep-interval --max-unchanged-stats --pid -n -c",
        "--quiet --silent --verbose --zero-terminated -q -v -z",
        denied="--follow --retry -F -f",
    ),
    "tr": _p(
        2,
        boolean="--complement --delete --squeeze-repeats --truncate-set1 -C -c -d -s -t",
        minimum=1,
    ),
    "wc": _p(
        0,
        boolean="--bytes --chars --lines --max-line-length --words -L -c -l -m -w",
        denied="--files0-from",
    ),
}

_GLOB = re.compile(r"[*?\[\]]")
_EXPANSION = re.compile(r"\$(?:[A-Za-z0-9_@*?!$#-]|\{|\(|\[)")


def _custom(profile: SafeBinProfile) -> _Profile:
    low = max(0, profile.min_positional or 0)
    high = profile.max_positional
    return _Profile(
        low,
        None if high is None else max(high, low),
        frozenset(f.strip() for f in profile.allowed_value_flags or () if f.strip()),
        frozenset(),
        frozenset(f.strip() for f in profile.denied_flags or () if f.strip()),
    )


def _literal(token: str) -> bool:
    """No glob, no expansion, not a path: a token that can only be data."""
    if not token or token == "-":
        return True
    t = token.strip()
    if t.startswith(("./", "../", "~", "/")):
        return False
    return not _GLOB.search(token) and not _EXPANSION.search(token)


def _long(flag: str, known: frozenset[str]) -> str | None:
    if flag in known:
        return flag
    matches = [k for k in known if k.startswith(flag)]
    return matches[0] if len(matches) == 1 else None  # unknown or ambiguous abbreviations fail closed


def _positionals(args: tuple[str, ...], profile: _Profile) -> list[str] | None:
    positional: list[str] = []
    i = 0
    while i < len(args):
        token = args[i]
        if token in ("", "-"):
            i += 1
        elif token == "--":
            rest = [a for a in args[i + 1 :] if a and a != "-"]
            if not all(_literal(a) for a in rest):
                return None
            positional += rest
            break
        elif token.startswith("--"):
            flag, eq, inline = token.partition("=")
            canonical = _long(flag, profile.long_flags)
            if canonical is None or canonical in profile.denied_flags:
                return None
            expects = canonical in profile.value_flags
            if eq:
                if not expects or not _literal(inline):
                    return None
                i += 1
            elif expects:
                if i + 1 >= len(args) or not args[i + 1] or not _literal(args[i + 1]):
                    return None
                i += 2
            else:
                i += 1
        elif token.startswith("-"):
            cluster = token[1:]
            step = 1
            for j, ch in enumerate(cluster):
                flag = "-" + ch
                if flag in profile.denied_flags:
                    return None
                if flag in profile.value_flags:
                    inline = cluster[j + 1 :]
                    if inline:
                        if not _literal(inline):
                            return None
                    elif i + 1 >= len(args) or not args[i + 1] or not _literal(args[i + 1]):
                        return None
                    else:
                        step = 2
                    break
                if flag not in profile.boolean_flags:
                    return None
            i += step
        else:
            if not _literal(token):
                return None
            positional.append(token)
            i += 1
    return positional


def is_safe_bin_stage(
    argv: tuple[str, ...],
    resolved: str | None,
    *,
    safe_bins: Collection[str],
    trusted_dirs: Collection[str],
    custom_profiles: Mapping[str, SafeBinProfile],
) -> bool:
    """Whether this pipeline stage is a safe bin run the way only a stream filter can run."""
    if not argv or resolved is None:
        return False
    name = os.path.basename(argv[0]).lower()
    if name in NEVER_SAFE or name not in safe_bins:
        return False
    if os.path.dirname(resolved) not in trusted_dirs:  # PATH entries are never trusted by themselves
        return False
    custom = custom_profiles.get(name)
    profile = _custom(custom) if custom is not None else _PROFILES.get(name)
    if profile is None:
        return False
    positional = _positionals(argv[1:], profile)
    if positional is None or len(positional) < profile.min_positional:
        return False
    return profile.max_positional is None or len(positional) <= profile.max_positional
