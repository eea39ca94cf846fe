"""Editing the config file from the CLI: validate first, keep a backup, write atomically."""

from __future__ import annotations

import contextlib
import json
import os
import stat
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ._load import parse_config, read_config_file
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
    """Apply `mutate` to the file's raw data (`${VAR}` references kept), validate, then write.

    The previous file is kept as `<file>.bak`. Comments in a JSON5 file are not preserved (the
    file is rewritten as JSON), which is why the backup exists. Both files keep the mode and
    owner of the original. Raises `ConfigError` and leaves the file untouched when the result
    would not be valid.
    """
    data: dict[str, Any] = _plain(read_config_file(path)) if path.exists() else {}
    mutate(data)
    config = parse_config(data, checks=checks, env=env, source=path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        original: os.stat_result | None = path.stat()
    except FileNotFoundError:
        original = None
    if original is not None:
        _replace_with(path.with_name(path.name + ".bak"), path.read_bytes(), original)
    text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    _replace_with(path, text.encode("utf-8"), original)
    return config
