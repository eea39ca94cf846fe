"""Reading a secret where it is needed: a plain string, a `${VAR}` the loader left unresolved, or
an OpenClaw SecretRef object (`env` or `file` source). Loading accepts all of them (as OpenClaw does); the consumer that
needs the value refuses one it cannot have, naming the variable and the key."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from ._errors import ConfigError, Problem
from ._load import unresolved_reference
from ._paths import resolve_user_path
from ._schema import Secret, SecretRef

__all__ = ["secret_value"]


def secret_value(value: Secret | None, env: Mapping[str, str], path: str) -> str | None:
    """The secret's text, or None when it is not set. Raises `ConfigError` when it refers to an
    environment variable that is not set, or to a SecretRef source clawmesh does not read."""
    if value is None:
        return None
    if isinstance(value, SecretRef):
        if value.source == "file":
            return _read_file(value.id, env, path)
        if value.source != "env":
            raise ConfigError(
                [
                    Problem(
                        path,
                        f"a SecretRef with source '{value.source}' is not read by clawmesh; use a string or source 'env' or 'file'",
                    )
                ]
            )
        got = env.get(value.id)
        if not got:
            raise ConfigError(
                [Problem(path, f"environment variable {value.id} is not set (SecretRef source 'env')")]
            )
        return got
    missing = unresolved_reference(value)
    if missing is not None:
        raise ConfigError(
            [Problem(path, f"environment variable {missing} is not set (referenced as ${{{missing}}})")]
        )
    return value


def _read_file(raw: str, env: Mapping[str, str], path: str) -> str:
    """A SecretRef `{source: "file", id: "<path>"}`: the file's text without surrounding
    whitespace (files written by `echo` end in a newline)."""
    where: Path = resolve_user_path(raw, env)
    try:
        text = where.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(
            [Problem(path, f"cannot read the secret file {where}: {exc.strerror or exc}")]
        ) from None
    if not text:
        raise ConfigError([Problem(path, f"the secret file {where} is empty")])
    return text
