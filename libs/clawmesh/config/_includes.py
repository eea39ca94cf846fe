"""`$include`: OpenClaw's way of splitting one config over several files, resolved as it does.

`{"$include": "a.json5"}` is replaced by that file's content; a list of files is deep-merged in
order (objects merged key by key, arrays concatenated, later values win); keys beside `$include`
are merged over the included content. Paths are relative to the including file and must stay
inside the top-level config's directory (or a directory listed in `OPENCLAW_INCLUDE_ROOTS`),
symlinks included; nesting stops at 10 levels, a file at 2 MB, and a cycle is an error.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Final

import msgspec

from ._check import child_path, index_path
from ._errors import ConfigError, Problem

__all__ = ["INCLUDE_KEY", "resolve_includes"]

INCLUDE_KEY: Final = "$include"
_MAX_DEPTH: Final = 10
_MAX_PATH: Final = 4096
_MAX_BYTES: Final = 2 * 1024 * 1024


def _has_include(value: Any) -> bool:
    """Whether `value` has an `$include` anywhere. Runs on every load and most configs have none:
    msgspec's C encoder answers in milliseconds for a 1 MB config, where a Python walk takes
    ten times as long; the walk remains for data it cannot encode."""
    try:
        return b'"$include"' in msgspec.json.encode(value)
    except (TypeError, msgspec.EncodeError):
        return _walk_has_include(value)


def _walk_has_include(value: Any) -> bool:
    if isinstance(value, dict):
        return INCLUDE_KEY in value or any(_walk_has_include(v) for v in value.values())
    if isinstance(value, list):
        return any(_walk_has_include(v) for v in value)
    return False


def _merge(base: Any, override: Any) -> Any:
    if isinstance(base, list) and isinstance(override, list):
        return [*base, *override]
    if not isinstance(base, dict) or not isinstance(override, dict):
        return override
    merged = dict(base)
    for key, value in override.items():
        current = merged.get(key)
        if isinstance(value, dict):
            merged[key] = _merge(current, value) if isinstance(current, dict) else value
        elif isinstance(current, list) and isinstance(value, list):
            merged[key] = [*current, *value]
        else:
            merged[key] = value
    return merged


class _Resolver:
    def __init__(self, roots: list[Path], parse: Callable[[str, Path], Any]) -> None:
        self.roots = roots
        self.parse = parse

    def fail(self, path: str, message: str) -> ConfigError:
        return ConfigError([Problem(path, message)])

    def process(self, value: Any, path: str, base: Path, chain: tuple[Path, ...]) -> Any:
        if isinstance(value, list):
            return [self.process(v, index_path(path, i), base, chain) for i, v in enumerate(value)]
        if not isinstance(value, dict):
            return value
        if INCLUDE_KEY not in value:
            return {k: self.process(v, child_path(path, k), base, chain) for k, v in value.items()}
        spec = value[INCLUDE_KEY]
        at = child_path(path, INCLUDE_KEY)
        if isinstance(spec, str):
            included = self.load(spec, at, path, base, chain)
        elif isinstance(spec, list):
            included = {}
            for i, item in enumerate(spec):
                if not isinstance(item, str):
                    raise self.fail(
                        index_path(at, i), f"expected a file name (a string), got {type(item).__name__}"
                    )
                included = _merge(included, self.load(item, index_path(at, i), path, base, chain))
        else:
            raise self.fail(at, "expected a file name or a list of file names")
        rest = {k: v for k, v in value.items() if k != INCLUDE_KEY}
        if not rest:
            return included
        if not isinstance(included, dict):
            raise self.fail(at, "keys beside $include need the included content to be an object")
        return _merge(
            included, {k: self.process(v, child_path(path, k), base, chain) for k, v in rest.items()}
        )

    def load(self, name: str, at: str, path: str, base: Path, chain: tuple[Path, ...]) -> Any:
        if "\0" in name:
            raise self.fail(at, "an include path must not contain null bytes")
        if len(name) >= _MAX_PATH:
            raise self.fail(at, f"include path longer than {_MAX_PATH - 1} characters")
        target = Path(os.path.normpath(base.parent / name))
        if not any(target.is_relative_to(root) for root in self.roots):
            raise self.fail(
                at, f"{name} is outside the config directory {self.roots[0]} (see OPENCLAW_INCLUDE_ROOTS)"
            )
        real = target.resolve()
        if not any(real.is_relative_to(root.resolve()) for root in self.roots):
            raise self.fail(at, f"{name} leads outside the config directory {self.roots[0]} (symlink)")
        if target in chain:
            cycle = " -> ".join(str(p) for p in (*chain, target))
            raise self.fail(at, f"circular $include: {cycle}")
        if len(chain) > _MAX_DEPTH:
            raise self.fail(at, f"$include nested more than {_MAX_DEPTH} levels deep")
        try:
            if target.stat().st_size > _MAX_BYTES:
                raise self.fail(at, f"{name} is larger than {_MAX_BYTES // (1024 * 1024)} MB")
            text = target.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise self.fail(at, f"included file {name} not found ({target})") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise self.fail(at, f"cannot read included file {name}: {exc}") from None
        return self.process(self.parse(text, target), path, target, (*chain, target))


def resolve_includes(
    data: Any, source: Path | None, env: Mapping[str, str], parse: Callable[[str, Path], Any]
) -> Any:
    """`data` (read from `source`) with every `$include` replaced; `data` itself when it has none.
    `parse` reads an included file's text (JSON5, errors naming that file). Raises `ConfigError`."""
    if not _has_include(data):
        return data
    where = str(source) if source else None
    if source is None:
        raise ConfigError([Problem("$", "$include needs a config file to resolve paths against")], where)
    top = Path(os.path.abspath(source))
    extra = [
        Path(p) for p in env.get("OPENCLAW_INCLUDE_ROOTS", "").split(os.pathsep) if p and os.path.isabs(p)
    ]
    resolver = _Resolver([top.parent, *extra], parse)
    try:
        return resolver.process(data, "$", top, (top,))
    except ConfigError as exc:
        raise ConfigError(exc.problems, where) from None
