"""Loading: JSON5 text → `$include` → `env.vars` → `${ENV}` substitution → structural check →
msgspec → semantic checks."""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import json5
import msgspec

from ._check import DuplicateKeyDict, check_structure, child_path, index_path
from ._errors import ConfigError, Problem
from ._includes import resolve_includes
from ._json5_fast import to_json
from ._model import Config, ConfigCheck, build_roster
from ._paths import config_env, config_path, state_dir
from ._schema import ChannelsDefaults, ConfigFile
from ._settings import resolve_settings
from ._validate import validate

__all__ = ["load_config", "parse_config", "parse_config_text", "read_config_file", "unresolved_reference"]

# OpenClaw substitutes only upper-case names; `$${X}` is an escaped, literal `${X}`.
_ENV_REF: Final = re.compile(r"\$\$\{([A-Z_][A-Z0-9_]*)\}|\$\{([A-Z_][A-Z0-9_]*)\}")

# Environment overrides for the settings people change per deployment (documented in docs/config.md).
_ENV_OVERRIDES: Final = (
    ("CLAWMESH_GATEWAY_PORT", ("gateway", "port"), int),
    ("CLAWMESH_GATEWAY_TOKEN", ("gateway", "auth", "token"), str),
    ("CLAWMESH_GATEWAY_REGION", ("gateway", "region"), str),
    ("CLAWMESH_NATS_URL", ("nats", "url"), str),
    ("CLAWMESH_SUBJECT_PREFIX", ("nats", "subjectPrefix"), str),
    ("CLAWMESH_NATS_USER", ("nats", "user"), str),
    ("CLAWMESH_NATS_PASSWORD", ("nats", "password"), str),
    ("CLAWMESH_NATS_CREDS", ("nats", "credsFile"), str),
    ("CLAWMESH_NATS_REPLICAS", ("nats", "replicas"), int),
)


def _substitute(
    value: Any, env: Mapping[str, str], at: tuple[str | int, ...], problems: list[Problem]
) -> Any:
    """A copy of `value` with `${VAR}` references replaced. The path is kept as keys and built
    into text only for a problem: a large config has tens of thousands of keys and few references."""
    if isinstance(value, str):
        if "${" not in value:
            return value

        def repl(m: re.Match[str]) -> str:
            if m.group(1):
                return "${" + m.group(1) + "}"
            name = m.group(2)
            got = env.get(name)
            if not got:
                # As OpenClaw: left visibly unresolved. Whatever needs the value refuses it
                # there (`unresolved_reference`), naming the variable.
                problems.append(
                    Problem(
                        _path(at),
                        f"environment variable {name} is not set; ${{{name}}} is left unresolved",
                        "warning",
                    )
                )
                return m.group(0)
            return got

        return _ENV_REF.sub(repl, value)
    if isinstance(value, dict):
        out = type(value)([]) if isinstance(value, DuplicateKeyDict) else {}
        if isinstance(value, DuplicateKeyDict) and isinstance(out, DuplicateKeyDict):
            out.duplicates = value.duplicates
        for k, v in value.items():
            out[k] = _substitute(v, env, (*at, k), problems) if _may_refer(v) else v
        return out
    if isinstance(value, list):
        return [_substitute(v, env, (*at, i), problems) if _may_refer(v) else v for i, v in enumerate(value)]
    return value


def unresolved_reference(value: str | None) -> str | None:
    """The first `${VAR}` that loading left unresolved in `value` (its variable was not set), or None.
    A consumer that needs the value (a token, a password) refuses it with this name."""
    if not value or "${" not in value:
        return None
    for m in _ENV_REF.finditer(value):
        if m.group(2):
            return m.group(2)
    return None


def _file_vars(data: Mapping[str, Any]) -> dict[str, str]:
    """`env.vars` of the file: OpenClaw applies them only where the process environment lacks the
    variable, and they count for `${VAR}` substitution and everything that reads the environment."""
    section = data.get("env")
    found = section.get("vars") if isinstance(section, dict) else None
    if not isinstance(found, dict):
        return {}
    return {k: v for k, v in found.items() if isinstance(k, str) and isinstance(v, str)}


def _may_refer(value: Any) -> bool:
    """Whether `_substitute` has anything to do for `value` (containers are always copied)."""
    return isinstance(value, dict | list) or (isinstance(value, str) and "${" in value)


def _path(at: tuple[str | int, ...]) -> str:
    path = "$"
    for part in at:
        path = index_path(path, part) if isinstance(part, int) else child_path(path, part)
    return path


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
    checks: Sequence[ConfigCheck],
    env: Mapping[str, str] | None = None,
    source: str | os.PathLike[str] | None = None,
    apply_env_overrides: bool = True,
) -> Config:
    """Validate a config object (OpenClaw or clawmesh shape). Raises `ConfigError` listing every error.

    `checks` are the domains' own checks (`clawmesh.checks.default_checks()`), run on the
    `Config` once its own schema and settings are sound; their errors refuse it too.
    """
    env = dict(os.environ) if env is None else dict(env)
    src = Path(source) if source is not None else None
    where = str(src) if src else None
    problems: list[Problem] = []
    if not isinstance(data, Mapping):
        raise ConfigError(
            [Problem("$", f"expected an object at the top level, got {type(data).__name__}")], where
        )
    data = resolve_includes(data, src, env, _parse_json5)
    if not isinstance(data, Mapping):
        raise ConfigError(
            [Problem("$", f"the top-level $include gave {type(data).__name__}, not an object")], where
        )
    defined = _file_vars(data)
    if defined:
        env = {**env, **{k: v for k, v in defined.items() if not env.get(k)}}
    substituted = _substitute(data if isinstance(data, dict) else dict(data), env, (), problems)
    if apply_env_overrides:
        _apply_env_overrides(substituted, env, problems)
    channel_defaults = None
    channels = substituted.get("channels")
    if isinstance(channels, dict) and "defaults" in channels:
        channels = dict(channels)
        raw_defaults = channels.pop("defaults")
        substituted = {**substituted, "channels": channels}
        cleaned_defaults, found = check_structure(
            raw_defaults, ChannelsDefaults, "$.channels.defaults", "channels.defaults"
        )
        problems += found
        channel_defaults = cleaned_defaults
    cleaned, found = check_structure(substituted, ConfigFile)
    problems += found
    if _has_errors(problems):
        raise ConfigError(problems, where)
    try:
        document = msgspec.convert(cleaned, ConfigFile)
    except msgspec.ValidationError as exc:  # the walker should have caught it; report anyway
        raise ConfigError([Problem("$", str(exc))], where) from None
    settings, found = resolve_settings(document)
    problems += found
    sdir = state_dir(env)
    agents, has_roster, default_id, default_problem, found = build_roster(document, settings, sdir, env)
    problems += found
    problems += validate(document, settings, agents)
    if channel_defaults is not None:
        cleaned = {**cleaned, "channels": {"defaults": channel_defaults, **cleaned.get("channels", {})}}
    version = hashlib.sha256(msgspec.json.encode(cleaned, order="sorted")).hexdigest()[:12]

    def build(warnings: tuple[Problem, ...]) -> Config:
        return Config(
            document=document,
            raw=cleaned,
            agents=agents,
            has_roster=has_roster,
            default_agent_id=default_id,
            default_agent_problem=default_problem,
            settings=settings,
            state_dir=sdir,
            env=env,
            source=src,
            version=version,
            warnings=warnings,
            checks=tuple(checks),
        )

    config = build(_warnings(problems))
    found = [problem for check in checks for problem in check(config)]
    if _has_errors(problems + found):
        raise ConfigError(problems + found, where)
    # The domains' warnings belong in the `Config` they judged: a new one, as a `Config` never changes.
    return build(_warnings(problems + found)) if found else config


def _has_errors(problems: Iterable[Problem]) -> bool:
    return any(p.severity == "error" for p in problems)


def _warnings(problems: Iterable[Problem]) -> tuple[Problem, ...]:
    return tuple(p for p in problems if p.severity == "warning")


def parse_config_text(
    text: str,
    *,
    checks: Sequence[ConfigCheck],
    source: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
) -> Config:
    """Parse JSON5 text (comments, trailing commas; duplicate keys rejected) into a `Config`."""
    return parse_config(_parse_json5(text, source), checks=checks, env=env, source=source)


def _parse_json5(text: str, source: str | os.PathLike[str] | None) -> Any:
    name = os.fspath(source) if source is not None else "<config>"
    if not text.strip():
        return {}
    try:
        data = _parse_plain_json(text)
        if data is _NOT_PLAIN_JSON:
            data = _parse_rewritten_json5(text)
        if data is _NOT_PLAIN_JSON:
            data = _join_surrogates(json5.loads(text, object_pairs_hook=_pairs))
    except ValueError as exc:
        msg = str(exc)
        loc = re.match(r"<string>:(\d+)\s+(.*)", msg)
        where = f"{name}:{loc.group(1)}" if loc else name
        detail = loc.group(2) if loc else msg
        raise ConfigError([Problem(where, f"not valid JSON5: {detail}")], name) from None
    except RecursionError:
        line = _line_too_deep(text)
        where = f"{name}:{line}" if line else name
        raise ConfigError([Problem(where, f"nested more than {MAX_DEPTH} levels deep")], name) from None
    too_deep = _path_too_deep(data)
    if too_deep is not None:
        raise ConfigError([Problem(too_deep, f"nested more than {MAX_DEPTH} levels deep")], name)
    return data


_NOT_PLAIN_JSON: Final = object()
_ESCAPED_SURROGATE: Final = re.compile(r"\\u[dD][89a-fA-F]")


def _parse_plain_json(text: str) -> Any:
    """The stdlib's C parser for a file that is plain JSON (most large, generated configs): 30-50x
    faster than `json5`, which reads ~50-80 KB/s. Plain JSON is JSON5, and for it both give the
    same values (tests/unit/test_config_parse.py compares them), so only text `json` rejects goes
    to `json5`, whose semantics and error messages stay the reference."""
    try:
        data = json.loads(text, object_pairs_hook=_pairs)
    except ValueError:
        return _NOT_PLAIN_JSON
    # json5 leaves an escaped lone surrogate alone and `_join_surrogates` then replaces it with
    # U+FFFD; do the same here (json joins escaped pairs itself).
    return _join_surrogates(data) if _ESCAPED_SURROGATE.search(text) else data


def _parse_rewritten_json5(text: str) -> Any:
    """Hand-written JSON5 (comments, unquoted keys, trailing commas) through `to_json` and the C
    parser; `_NOT_PLAIN_JSON` when the rewrite declines or the result is not JSON, so that `json5`
    decides (and words the error)."""
    rewritten = to_json(text)
    if rewritten is None:
        return _NOT_PLAIN_JSON
    return _parse_plain_json(rewritten)


# Real configs nest about ten levels; json5 is recursive and fails at about 55. A bound well
# under that keeps both parsers and every walker after them (all recursive) inside Python's stack.
MAX_DEPTH: Final = 32

_TOKENS: Final = re.compile(
    r'"(?:[^"\\\n]|\\.)*"|\'(?:[^\'\\\n]|\\.)*\'|//[^\n]*|/\*.*?\*/|[\[\]{}]', re.DOTALL
)


def _line_too_deep(text: str) -> int | None:
    """The line where the text opens its (MAX_DEPTH+1)th nested object or array."""
    depth = 0
    for m in _TOKENS.finditer(text):
        token = m.group()
        if token in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                return text.count("\n", 0, m.start()) + 1
        elif token in "]}":
            depth -= 1
    return None


def _path_too_deep(data: Any) -> str | None:
    """The path of the first value nested deeper than MAX_DEPTH. Iterative (the check itself must
    not be the one to overflow) and path-free until it finds one: it runs on every file."""
    level = [data] if isinstance(data, dict | list) else []
    for _ in range(MAX_DEPTH):
        level = [
            child
            for value in level
            for child in (value.values() if isinstance(value, dict) else value)
            if isinstance(child, dict | list)
        ]
        if not level:
            return None
    return _find_at_depth(data, "$", MAX_DEPTH)


def _find_at_depth(value: Any, path: str, depth: int) -> str | None:
    """The path of the first container `depth` levels under `value` (recursion bounded by depth)."""
    if not isinstance(value, dict | list):
        return None
    if depth == 0:
        return path
    items = (
        ((child_path(path, k), v) for k, v in value.items())
        if isinstance(value, dict)
        else ((index_path(path, i), v) for i, v in enumerate(value))
    )
    for child, v in items:
        found = _find_at_depth(v, child, depth - 1)
        if found is not None:
            return found
    return None


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
        # keys the file repeated as written, then keys that became equal once joined ("\ud83e\udd9e"
        # and a literal 🦞 are the same key: json joins escaped pairs before it compares)
        fixed.duplicates = [*(_join_surrogates(k) for k in value.duplicates), *fixed.duplicates]
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
    except UnicodeDecodeError as exc:
        problem = Problem(str(p), f"not UTF-8 text: byte {exc.object[exc.start]:#04x} at offset {exc.start}")
        raise ConfigError([problem], str(p)) from None
    except OSError as exc:
        raise ConfigError([Problem(str(p), f"cannot read config file: {exc.strerror}")], str(p)) from None
    return _parse_json5(text, p)


def load_config(
    path: str | os.PathLike[str] | None = None,
    *,
    checks: Sequence[ConfigCheck],
    env: Mapping[str, str] | None = None,
    missing_ok: bool = False,
) -> Config:
    """Find (`--config` > `CLAWMESH_CONFIG_PATH` > `OPENCLAW_CONFIG_PATH` > `~/.clawmesh/clawmesh.json`,
    see `config_path`), read and validate.

    With `missing_ok`, an absent file at the *default* location gives an empty config.
    """
    env = dict(os.environ) if env is None else dict(env)
    where = config_path(path, env)
    if missing_ok and path is None and not config_env(env) and not where.exists():
        return parse_config({}, checks=checks, env=env, source=None)
    return parse_config(read_config_file(where), checks=checks, env=env, source=where)
