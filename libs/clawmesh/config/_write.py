"""Editing the config file from the CLI: validate first, keep a backup, write atomically."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ._load import parse_config, read_config_file
from ._model import Config

__all__ = ["update_config_file"]


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def update_config_file(
    path: Path, mutate: Callable[[dict[str, Any]], None], *, env: Mapping[str, str] | None = None
) -> Config:
    """Apply `mutate` to the file's raw data (`${VAR}` references kept), validate, then write.

    The previous file is kept as `<file>.bak`. Comments in a JSON5 file are not preserved (the
    file is rewritten as JSON), which is why the backup exists. Raises `ConfigError` and leaves
    the file untouched when the result would not be valid.
    """
    data: dict[str, Any] = _plain(read_config_file(path)) if path.exists() else {}
    mutate(data)
    config = parse_config(data, env=env, source=path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        shutil.copy2(path, path.with_name(path.name + ".bak"))
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return config
