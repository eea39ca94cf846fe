"""`hooks.*` resolved as OpenClaw 2026.9.6 resolves it when its gateway starts, and the agent and
session-key policy of every hook request (its `src/gateway/hooks.ts`).

A config OpenClaw's `config validate` accepts always loads; what OpenClaw's gateway would refuse
at start-up (`enabled` without a token, `path: "/"`, a default key outside the prefixes, …) is a
load warning here and the hook endpoints are not served (`resolve_hooks` raises `HooksConfigError`).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Literal

from ..config import Config, Problem
from ..ids import DEFAULT_AGENT_ID, js_lower_trim, js_trim, normalize_agent_id
from ..routing import parse_agent_session_key
from ._mapping import HookRule, has_template, rules_from

__all__ = [
    "DEFAULT_HOOKS_MAX_BODY_BYTES",
    "DEFAULT_HOOKS_PATH",
    "MAX_HOOK_SESSION_KEY_LENGTH",
    "HookPolicyError",
    "HooksConfigError",
    "HooksPolicy",
    "SessionKeySource",
    "config_checks",
    "resolve_hooks",
]

DEFAULT_HOOKS_PATH: Final = "/hooks"
DEFAULT_HOOKS_MAX_BODY_BYTES: Final = 256 * 1024
MAX_HOOK_SESSION_KEY_LENGTH: Final = 512
# Gmail-path mappings get a larger body allowance (OpenClaw's resolveGmailHookMaxBodyBytes)
_GMAIL_DEFAULT_MAX_BYTES: Final = 20_000
_GMAIL_CEILING: Final = 32 * 1024 * 1024
_VALID_AGENT_ID: Final = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}", re.IGNORECASE | re.ASCII)

SessionKeySource = Literal["request", "mapping-static", "mapping-templated"]


class HooksConfigError(ValueError):
    """`hooks.enabled` with a config OpenClaw's gateway would refuse to start with."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message


class HookPolicyError(Exception):
    """A hook request the agent or session policy refuses: a 400 with OpenClaw's message."""


@dataclass(frozen=True)
class HooksPolicy:
    base_path: str  # "/hooks": leading slash, no trailing one
    token: str
    rules: tuple[HookRule, ...]  # custom mappings, then presets
    default_agent_id: str | None
    known_agent_ids: frozenset[str]
    allowed_agent_ids: frozenset[str] | None  # None: every agent
    default_session_key: str | None
    allow_request_session_key: bool
    allowed_prefixes: tuple[str, ...] | None  # lower-cased; None: no restriction
    gmail_max_body_bytes: int
    channels: tuple[str, ...]  # the configured channels a delivery may name (besides `last`)

    def body_limit(self, subpath: str) -> int:
        """The body bound of one hook subpath: 256 KiB, more for a Gmail-path mapping."""
        path = subpath.strip("/")
        if path and any(rule.match_path == path == "gmail" for rule in self.rules):
            return max(DEFAULT_HOOKS_MAX_BODY_BYTES, self.gmail_max_body_bytes)
        return DEFAULT_HOOKS_MAX_BODY_BYTES

    # --- agents -------------------------------------------------------------------------
    def target_agent(self, agent_id: str | None, source: Literal["request", "mapping"]) -> str:
        """The agent a hook action runs for (HookPolicyError when unknown, unresolvable or not
        in `hooks.allowedAgentIds`). A request's agent must be configured; a mapping's unknown
        agent falls back to the default agent, as OpenClaw does."""
        raw = js_trim(agent_id or "")
        selected: str | None = None
        if raw and source == "mapping":
            normalized = normalize_agent_id(raw)
            selected = normalized if normalized in self.known_agent_ids else self.default_agent_id
        elif raw:
            strict = _strict_agent_id(raw)
            if strict is None or strict not in self.known_agent_ids:
                raise HookPolicyError(f'unknown agentId "{strict or raw}"')
            selected = strict
        effective = selected or self.default_agent_id
        if effective is None:
            raise HookPolicyError("agentId is required when multiple agents are configured")
        if self.allowed_agent_ids is not None and effective not in self.allowed_agent_ids:
            raise HookPolicyError("agentId is not allowed by hooks.allowedAgentIds")
        return effective

    # --- session keys -------------------------------------------------------------------
    def _check_prefix(self, key: str) -> None:
        prefixes = self.allowed_prefixes
        if prefixes is not None and not _prefixed(key, prefixes):
            raise HookPolicyError(f"sessionKey must start with one of: {', '.join(prefixes)}")

    def session_key(
        self,
        requested: str | None,
        source: SessionKeySource,
        *,
        new_id: Callable[[], str] = lambda: str(uuid.uuid4()),
    ) -> str:
        """The logical key of a hook action: the request's or mapping's, else
        `hooks.defaultSessionKey`, else a new `hook:<uuid>` (HookPolicyError when the caller may
        not choose keys or the key is outside `hooks.allowedSessionKeyPrefixes`)."""
        key = js_trim(requested or "")
        if key:
            if source != "mapping-static" and not self.allow_request_session_key:
                raise HookPolicyError(
                    "sessionKey is disabled for externally supplied hook payload values; "
                    "set hooks.allowRequestSessionKey=true to enable"
                )
            self._check_prefix(key)
            return key
        if self.default_session_key:
            return self.default_session_key
        generated = f"hook:{new_id()}"
        self._check_prefix(generated)
        return generated

    def dispatch_key(self, logical: str, agent_id: str) -> str:
        """An `agent:`-prefixed key re-scoped to the target agent, checked against the prefixes again."""
        key = js_trim(logical)
        parsed = parse_agent_session_key(key)
        if parsed is not None:
            key = f"agent:{normalize_agent_id(agent_id)}:{parsed.rest}"
        self._check_prefix(key)
        return key


def _strict_agent_id(raw: str) -> str | None:
    """OpenClaw's normalizeAgentIdStrict: canonical, or None when nothing representable is left."""
    if _VALID_AGENT_ID.fullmatch(raw):
        return raw.lower()
    normalized = normalize_agent_id(raw)
    return None if normalized == DEFAULT_AGENT_ID and raw.lower() != DEFAULT_AGENT_ID else normalized


def _prefixed(key: str, prefixes: tuple[str, ...]) -> bool:
    lowered = js_lower_trim(key)
    return bool(lowered) and any(lowered.startswith(p) for p in prefixes)


def _base_path(raw: str | None) -> str:
    path = js_trim(raw or "") or DEFAULT_HOOKS_PATH
    if not path.startswith("/"):
        path = "/" + path
    if len(path) > 1:
        path = path.rstrip("/") or "/"
    if path == "/":
        raise HooksConfigError("$.hooks.path", "hooks.path may not be '/'")
    return path


def _allowed_agents(raw: list[str] | None) -> frozenset[str] | None:
    if raw is None:
        return None
    allowed: set[str] = set()
    for entry in raw:
        trimmed = js_trim(entry)
        if trimmed == "*":
            return None
        if trimmed:
            allowed.add(normalize_agent_id(trimmed))
    return frozenset(allowed)


def _prefixes(raw: list[str] | None) -> tuple[str, ...] | None:
    found = tuple(dict.fromkeys(p for p in (js_lower_trim(e) for e in raw or ()) if p))
    return found or None


def _effective_templated(rules: tuple[HookRule, ...]) -> bool:
    """Whether a mapping that can match (not shadowed by an earlier one) has a templated key."""
    earlier: list[HookRule] = []
    for rule in rules:
        shadowed = any(
            (not e.match_path or e.match_path == rule.match_path)
            and (not e.match_source or e.match_source == rule.match_source)
            for e in earlier
        )
        if shadowed:
            continue
        earlier.append(rule)
        if rule.session_key is not None and has_template(rule.session_key):
            return True
    return False


def _gmail_body_bytes(config: Config) -> int:
    raw = config.raw.get("hooks", {}) if isinstance(config.raw, dict) else {}
    gmail = raw.get("gmail") if isinstance(raw, dict) else None
    max_bytes = gmail.get("maxBytes") if isinstance(gmail, dict) else None
    if not isinstance(max_bytes, int) or isinstance(max_bytes, bool) or max_bytes <= 0:
        max_bytes = _GMAIL_DEFAULT_MAX_BYTES
    return min(_GMAIL_CEILING, 100 * (max_bytes * 3 + 8192))


def _resolve(config: Config) -> HooksPolicy | None:
    section = config.document.hooks
    if section is None or section.enabled is not True:
        return None
    token = js_trim(section.token or "")
    if not token:
        raise HooksConfigError("$.hooks.token", "hooks.enabled requires hooks.token")
    base_path = _base_path(section.path)
    rules = rules_from(section.mappings or [], section.presets or [])
    prefixes = _prefixes(section.allowed_session_key_prefixes)
    default_key = js_trim(section.default_session_key or "") or None
    if default_key and prefixes and not _prefixed(default_key, prefixes):
        raise HooksConfigError(
            "$.hooks.defaultSessionKey", "hooks.defaultSessionKey must match hooks.allowedSessionKeyPrefixes"
        )
    if not default_key and prefixes and not _prefixed("hook:example", prefixes):
        raise HooksConfigError(
            "$.hooks.allowedSessionKeyPrefixes",
            "hooks.allowedSessionKeyPrefixes must include 'hook:' when hooks.defaultSessionKey is unset",
        )
    if _effective_templated(rules) and not prefixes:
        raise HooksConfigError(
            "$.hooks.allowedSessionKeyPrefixes",
            "hooks.allowedSessionKeyPrefixes is required when a hook mapping sessionKey uses templates, "
            "even if hooks.allowRequestSessionKey=true",
        )
    default_agent = config.default_agent_id
    if default_agent is None and not config.has_roster:
        default_agent = DEFAULT_AGENT_ID
    known = set(config.agent_ids)
    if default_agent:
        known.add(default_agent)
    return HooksPolicy(
        base_path=base_path,
        token=token,
        rules=rules,
        default_agent_id=default_agent,
        known_agent_ids=frozenset(known),
        allowed_agent_ids=_allowed_agents(section.allowed_agent_ids),
        default_session_key=default_key,
        allow_request_session_key=section.allow_request_session_key is True,
        allowed_prefixes=prefixes,
        gmail_max_body_bytes=_gmail_body_bytes(config),
        channels=tuple(dict.fromkeys(c.lower() for c in config.document.channels or {} if c != "defaults")),
    )


def resolve_hooks(config: Config) -> HooksPolicy | None:
    """The hooks policy of `config`, None when hooks are off (HooksConfigError when enabled
    with a config OpenClaw's gateway refuses). Cached per config version."""
    outcome = config.derived("hooks.policy", _outcome)
    if isinstance(outcome, HooksConfigError):
        raise outcome
    return outcome


def _outcome(config: Config) -> HooksPolicy | HooksConfigError | None:
    try:
        return _resolve(config)
    except HooksConfigError as exc:
        return exc
    except ValueError as exc:  # a mapping's forEach
        return HooksConfigError("$.hooks.mappings", str(exc))


def config_checks(config: Config) -> list[Problem]:
    """Warnings only: a config OpenClaw accepts must load; hooks it would not start with are off."""
    problems: list[Problem] = []
    try:
        policy = resolve_hooks(config)
    except HooksConfigError as exc:
        return [Problem(exc.path, f"{exc.message}; the hook endpoints are not served", "warning")]
    if policy is None:
        return problems
    for i, mapping in enumerate((config.document.hooks.mappings if config.document.hooks else None) or ()):
        if mapping.transform is not None:
            problems.append(
                Problem(
                    f"$.hooks.mappings[{i}].transform",
                    "hook transforms (JS/TS modules) are not implemented by clawmesh; "
                    "requests this mapping matches are answered 500",
                    "warning",
                )
            )
    return problems
