"""Loading: JSON5 text → `${ENV}` substitution → structural check → msgspec → semantic checks."""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Final

import json5
import msgspec

from ._check import DuplicateKeyDict, check_structure, child_path, index_path
from ._errors import ConfigError, Problem
from ._model import Config, build_roster
from ._paths import config_path, state_dir
from ._schema import ChannelsDefaults, ConfigFile
from ._validate import validate

__all__ = ["load_config", "parse_config", "parse_config_text", "read_config_file"]

# OpenClaw substitutes only upper-case names; `$${X}` is an escaped, literal `${X}`.
_ENV_REF: Final = re.compile(r"\$\$\{([A-Z_][A-Z0-9_]*)\}|\$\{([A-Z_][A-Z0-9_]*)\}")

# Environment overrides for the settings people change per deployment (documented in docs/config.md).
_ENV_OVERRIDES: Final = (
    ("CLAWMESH_GATEWAY_PORT", ("gateway", "port"), int),
    ("CLAWMESH_GATEWAY_TOKEN", ("gateway", "auth", "token"), str),
    ("CLAWMESH_NATS_URL", ("nats", "url"), str),
    ("CLAWMESH_SUBJECT_PREFIX", ("nats", "subjectPrefix"), str),
    ("CLAWMESH_NATS_USER", ("nats", "user"), str),
    ("CLAWMESH_NATS_PASSWORD", ("nats", "password"), str),
    ("CLAWMESH_NATS_CREDS", ("nats", "credsFile"), str),
    ("CLAWMESH_NATS_REPLICAS", ("nats", "replicas"), int),
)


def _substitute(value: Any, env: Mapping[str, str], path: str, problems: list[Problem]) -> Any:
    if isinstance(value, str):
        if "${" not in value:
            return value

        def repl(m: re.Match[str]) -> str:
            if m.group(1):
                return "${" + m.group(1) + "}"
            name = m.group(2)
            got = env.get(name)
            if not got:
                problems.append(
                    Problem(path, f"environment variable {name} is not set (referenced as ${{{name}}})")
                )
                return ""
            return got

        return _ENV_REF.sub(repl, value)
    if isinstance(value, dict):
        out = type(value)([]) if isinstance(value, DuplicateKeyDict) else {}
        if isinstance(value, DuplicateKeyDict) and isinstance(out, DuplicateKeyDict):
            out.duplicates = value.duplicates
        for k, v in value.items():
            out[k] = _substitute(v, env, child_path(path, k), problems)
        return out
    if isinstance(value, list):
        return [_substitute(v, env, index_path(path, i), problems) for i, v in enumerate(value)]
    return value


def _apply_env_overrides(data: dict[str, Any], env: Mapping[str, str], problems: list[Problem]) -> None:
    for var, keys, conv in _ENV_OVERRIDES:
        raw = env.get(var, "").strip()
        if not raw:
            continue
        try:
            value = conv(raw)
        except ValueError:
            problems.append(Problem(f"${var}", f"expected {conv.__name__}, got {raw!r}"))
            continue
        node = data
        for key in keys[:-1]:
            nxt = node.get(key)
            if not isinstance(nxt, dict):
                nxt = {}
                node[key] = nxt
            node = nxt
        node[keys[-1]] = value


def parse_config(
    data: Mapping[str, Any],
    *,
    env: Mapping[str, str] | None = None,
    source: str | os.PathLike[str] | None = None,
    apply_env_overrides: bool = True,
) -> Config:
    """Validate a config object (OpenClaw or clawmesh shape). Raises `ConfigError` listing every error."""
    env = dict(os.environ) if env is None else dict(env)
    src = Path(source) if source is not None else None
    problems: list[Problem] = []
    if not isinstance(data, Mapping):
        raise ConfigError(
            [Problem("$", f"expected an object at the top level, got {type(data).__name__}")], str(src)
        )
    substituted = _substitute(data if isinstance(data, dict) else dict(data), env, "$", problems)
    if apply_env_overrides:
        _apply_env_overrides(substituted, env, problems)
    channel_defaults = None
    channels = substituted.get("channels")
    if isinstance(channels, dict) and "defaults" in channels:
        channels = dict(channels)
        raw_defaults = channels.pop("defaults")
        substituted = {**substituted, "channels": channels}
        cleaned_defaults, found = check_structure(raw_defaults, ChannelsDefaults, "$.channels.defaults")
        problems += found
        channel_defaults = cleaned_defaults
    cleaned, found = check_structure(substituted, ConfigFile)
    problems += found
    if any(p.severity == "error" for p in problems):
        raise ConfigError(problems, str(src) if src else None)
    try:
        file = msgspec.convert(cleaned, ConfigFile)
    except msgspec.ValidationError as exc:  # the walker should have caught it; report anyway
        raise ConfigError([Problem("$", str(exc))], str(src) if src else None) from None
    sdir = state_dir(env)
    agents, has_roster, default_id, default_problem, roster_problems = build_roster(file, sdir, env)
    problems += roster_problems
    problems += validate(file, agents, has_roster)
    if any(p.severity == "error" for p in problems):
        raise ConfigError(problems, str(src) if src else None)
    if channel_defaults is not None:
        cleaned = {**cleaned, "channels": {"defaults": channel_defaults, **cleaned.get("channels", {})}}
    version = hashlib.sha256(msgspec.json.encode(cleaned, order="sorted")).hexdigest()[:12]
    config = Config(
        document=file,
        raw=cleaned,
        agents=agents,
        has_roster=has_roster,
        default_agent_id=default_id,
        default_agent_problem=default_problem,
        state_dir=sdir,
        env=env,
        source=src,
        version=version,
        warnings=tuple(p for p in problems if p.severity == "warning"),
    )
    # Sandbox checks (refused binds and networks, …) need the resolved paths of a Config.
    from ..sandbox import sandbox_config_problems

    sandbox_problems = sandbox_config_problems(config)
    if any(p.severity == "error" for p in sandbox_problems):
        raise ConfigError(problems + sandbox_problems, str(src) if src else None)
    if sandbox_problems:
        config.warnings = config.warnings + tuple(sandbox_problems)
    return config


def parse_config_text(
    text: str, *, source: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None
) -> Config:
    """Parse JSON5 text (comments, trailing commas; duplicate keys rejected) into a `Config`."""
    return parse_config(_parse_json5(text, source), env=env, source=source)


def _parse_json5(text: str, source: str | os.PathLike[str] | None) -> Any:
    name = os.fspath(source) if source is not None else "<config>"
    if not text.strip():
        return {}
    try:
        return _join_surrogates(json5.loads(text, object_pairs_hook=_pairs))
    except ValueError as exc:
        msg = str(exc)
        loc = re.match(r"<string>:(\d+)\s+(.*)", msg)
        where = f"{name}:{loc.group(1)}" if loc else name
        detail = loc.group(2) if loc else msg
        raise ConfigError([Problem(where, f"not valid JSON5: {detail}")], name) from None


def _pairs(pairs: Iterable[tuple[str, Any]]) -> DuplicateKeyDict:
    return DuplicateKeyDict(list(pairs))


_SURROGATE: Final = re.compile("[\ud800-\udfff]")


def _join_surrogates(value: Any) -> Any:
    """json5 decodes an escaped pair like `\\ud83e\\udd9e` (what `json.dumps` writes for 🦞) into
    two lone surrogates; join them into the real character."""
    if isinstance(value, str):
        if _SURROGATE.search(value) is None:
            return value
        return value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    if isinstance(value, DuplicateKeyDict):
        fixed = DuplicateKeyDict([(_join_surrogates(k), _join_surrogates(v)) for k, v in value.items()])
        fixed.duplicates = value.duplicates
        return fixed
    if isinstance(value, list):
        return [_join_surrogates(v) for v in value]
    return value


def read_config_file(path: str | os.PathLike[str]) -> Any:
    """Read and parse a JSON5 file to plain data (no validation)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([Problem(str(p), "config file not found")], str(p)) from None
    except OSError as exc:
        raise ConfigError([Problem(str(p), f"cannot read config file: {exc.strerror}")], str(p)) from None
    return _parse_json5(text, p)


def load_config(
    path: str | os.PathLike[str] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    missing_ok: bool = False,
) -> Config:
    """Find (`--config` > `CLAWMESH_CONFIG_PATH` > `~/.clawmesh/clawmesh.json`), read and validate.

    With `missing_ok`, an absent file at the *default* location gives an empty config.
    """
    env = dict(os.environ) if env is None else dict(env)
    where = config_path(path, env)
    if missing_ok and path is None and not env.get("CLAWMESH_CONFIG_PATH") and not where.exists():
        return parse_config({}, env=env, source=None)
    return parse_config(read_config_file(where), env=env, source=where)
