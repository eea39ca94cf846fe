"""Editing the config file from the CLI: validate first, write only what changed (comments and
layout kept), into the file that holds it, keep a backup, write atomically."""

from __future__ import annotations

import contextlib
import json
import os
import stat
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from ._edit import Change, EditError, apply_edits, diff
from ._edit import Path as Path_
from ._errors import ConfigError, Problem
from ._includes import INCLUDE_KEY, resolve_includes
from ._load import _parse_json5, parse_config
from ._model import Config, ConfigCheck

__all__ = ["update_config_file"]


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _replace_with(path: Path, data: bytes, like: os.stat_result | None) -> None:
    """Atomically make `path` hold `data` with the mode and owner of `like` (the file it replaces).

    The config holds secrets: the temporary file is created owner-only and gets the original's
    mode before any byte is written, so there is no moment when it is more readable than before.
    """
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()  # a leftover of a crashed edit
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600 if like else 0o666)
    try:
        if like is not None:
            with contextlib.suppress(PermissionError):  # only root may give a file away
                os.fchown(fd, like.st_uid, like.st_gid)
            os.fchmod(fd, stat.S_IMODE(like.st_mode))
        with os.fdopen(fd, "wb", closefd=False) as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fd)
    except BaseException:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    os.close(fd)
    os.replace(tmp, path)


def update_config_file(
    path: Path,
    mutate: Callable[[dict[str, Any]], None],
    *,
    checks: Sequence[ConfigCheck],
    env: Mapping[str, str] | None = None,
) -> Config:
    """Apply `mutate` to the config as written (`$include`s resolved, `${VAR}` references kept),
    validate the result, and write only what changed into the file that holds it.

    Comments, key order and layout outside the changed values stay byte for byte (see
    `_edit`). A change inside a section that a single-file `$include` holds is written into
    that file (as OpenClaw does); a change to anything merged from several files, to keys beside
    an `$include`, to an include outside the config directory, or to several files at once is
    refused. The previous file is kept as `<file>.bak`; files keep their mode and owner; the
    write is atomic. Raises `ConfigError` and writes nothing when the result would not be valid.
    """
    env = dict(os.environ) if env is None else dict(env)
    if not path.exists():
        data: dict[str, Any] = {}
        mutate(data)
        config = parse_config(data, checks=checks, env=env, source=path)
        path.parent.mkdir(parents=True, exist_ok=True)
        _replace_with(path, (json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode(), None)
        return config
    text = _read(path)
    raw = _parse_json5(text, path)
    resolved = resolve_includes(raw, path, env, _parse_json5)
    before = _plain(resolved)
    after = _plain(resolved)
    mutate(after)
    config = parse_config(after, checks=checks, env=env, source=path)
    changes = diff(before, after)
    if not changes:
        return config
    target, prefix = _owner(raw, path, changes)
    target_text = text if target == path else _read(target)
    local = [replace(c, path=c.path[len(prefix) :]) for c in changes]
    try:
        new_text = apply_edits(target_text, local)
        written = _parse_json5(new_text, target)
    except (EditError, ConfigError) as exc:
        raise _refuse(path, f"cannot write the change into {target} ({exc}); edit it by hand") from None
    expected = after
    for step in prefix:
        expected = expected[step]
    if target == path:
        written = resolve_includes(written, path, env, _parse_json5)
    if _plain(written) != expected:
        raise _refuse(path, f"writing into {target} would not give the intended config; edit it by hand")
    like = target.stat()
    _replace_with(target.with_name(target.name + ".bak"), target_text.encode("utf-8"), like)
    _replace_with(target, new_text.encode("utf-8"), like)
    return config


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise _refuse(path, f"cannot read {path}: {exc}") from None


def _refuse(path: Path, message: str) -> ConfigError:
    return ConfigError([Problem(str(path), message)], str(path))


def _owner(raw: Any, root: Path, changes: Sequence[Change]) -> tuple[Path, Path_]:
    """The one file that holds every changed container, and the path of its content in the
    config. Follows single-file `$include`s inside the config directory; refuses the rest."""
    owners: dict[Path, tuple[Path_, list[Path_]]] = {}
    for change in changes:
        file, node = root, raw
        prefix: Path_ = ()
        if isinstance(node, dict) and INCLUDE_KEY in node:
            raise _refuse(root, "the whole config comes from $include: edit the included file by hand")
        for depth, step in enumerate(change.path):
            node = node[step]
            if isinstance(node, dict) and INCLUDE_KEY in node:
                file, node = _through_include(root, file, node, change.path[: depth + 1])
                prefix = change.path[: depth + 1]
        for member in (*change.removed, *change.replaced):
            value = node[member] if isinstance(node, dict) or isinstance(member, int) else None
            if isinstance(value, dict) and INCLUDE_KEY in value:
                where = _dotted((*change.path, member))
                raise _refuse(root, f"{where} comes from $include: edit the included file by hand")
        owners.setdefault(file, (prefix, []))[1].append(change.path)
    if len(owners) > 1:
        parts = "; ".join(f"{_dotted(paths[0])} in {file}" for file, (_, paths) in owners.items())
        raise _refuse(root, f"the change spans several files ({parts}): make it one file at a time")
    ((file, (prefix, _)),) = owners.items()
    return file, prefix


def _through_include(root: Path, including: Path, node: dict[str, Any], at: Path_) -> tuple[Path, Any]:
    spec = node[INCLUDE_KEY]
    where = _dotted(at)
    if len(node) != 1 or not isinstance(spec, str):
        raise _refuse(
            root, f"{where} is merged from $include and other keys: change the files that hold it by hand"
        )
    target = Path(os.path.normpath(including.parent / spec))
    if not target.resolve().is_relative_to(root.parent.resolve()):
        raise _refuse(root, f"{where} comes from {target}, outside the config directory: edit it by hand")
    content = _parse_json5(_read(target), target)
    if _has_include(content):
        raise _refuse(root, f"{where} comes from {target}, which has $include itself: edit it by hand")
    return target, content


def _has_include(value: Any) -> bool:
    if isinstance(value, dict):
        return INCLUDE_KEY in value or any(_has_include(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_include(v) for v in value)
    return False


def _dotted(path: Path_) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path).lstrip(".") or "(top level)"
