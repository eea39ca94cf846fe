"""Auth profiles: which credentials to try for a provider, in which order, and their cooldowns.

OpenClaw layout, one file per agent: `<agentDir>/auth-profiles.json` =

    {"version": 1,
     "profiles": {"anthropic:work": {"type": "api_key", "provider": "anthropic", "key": "sk-…"},
                  "anthropic:home": {"type": "token", "provider": "anthropic", "token": "…"}},
     "order": {"anthropic": ["anthropic:home", "anthropic:work"]}}

Candidates for a provider: its profiles from the file (`order` first, then file order), then
`models.providers.<id>.apiKey`, then `ANTHROPIC_API_KEY` / `OPENAI_API_KEY` from the config's
environment. A profile that failed (auth, rate limit, billing) is cooled down and tried last
until the cooldown ends: 1 min → 5 min → 25 min → 1 h on repeated failures, billing 5 h
doubling up to 24 h (OpenClaw's schedule). Cooldowns live in memory: keep one `AuthProfiles`
per agent for the life of the service.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Final, TypeVar

import msgspec

from ..config import AgentView
from ._registry import BUILTIN_PROVIDERS, ENV_API_KEY, ModelTarget
from ._types import Credential, FailoverReason, ProviderError

__all__ = ["AUTH_PROFILES_FILENAME", "AuthProfiles", "cooldown_seconds"]

log = logging.getLogger("clawmesh.providers")

AUTH_PROFILES_FILENAME: Final = "auth-profiles.json"
_COOLDOWN_BASE: Final = 60.0
_COOLDOWN_FACTOR: Final = 5.0
_COOLDOWN_CAP: Final = 3600.0
_BILLING_BASE: Final = 5 * 3600.0
_BILLING_CAP: Final = 24 * 3600.0

T = TypeVar("T")


def cooldown_seconds(failures: int, reason: FailoverReason) -> float:
    """Cooldown after the `failures`-th consecutive failure (1-based)."""
    n = max(1, failures) - 1
    if reason == "billing":
        return float(min(_BILLING_BASE * 2**n, _BILLING_CAP))
    return float(min(_COOLDOWN_BASE * _COOLDOWN_FACTOR**n, _COOLDOWN_CAP))


# --- the file --------------------------------------------------------------------------------


class _ApiKeyProfile(msgspec.Struct, tag="api_key", tag_field="type", kw_only=True):
    key: Annotated[str, msgspec.Meta(min_length=1)]
    provider: str | None = None


class _TokenProfile(msgspec.Struct, tag="token", tag_field="type", kw_only=True):
    token: Annotated[str, msgspec.Meta(min_length=1)]
    provider: str | None = None


class _OAuthProfile(msgspec.Struct, tag="oauth", tag_field="type", kw_only=True):
    """OpenClaw's OAuth logins: accepted in the file, but clawmesh cannot refresh them (skipped)."""

    provider: str | None = None


_Profile = _ApiKeyProfile | _TokenProfile | _OAuthProfile


class _FileShape(msgspec.Struct):
    # Unknown keys are allowed: OpenClaw also keeps `lastGood` and `usageStats` in this file.
    version: int = 1
    # Entries are checked one by one below, so that errors name the key (msgspec says `[...]`).
    profiles: dict[str, Any] = {}
    order: dict[str, Any] = {}


@dataclass(frozen=True, slots=True)
class _Loaded:
    profiles: tuple[tuple[str, str, Credential], ...]  # (profile id, provider, credential), file order
    order: dict[str, list[str]]


def _json_path(parent: str, key: str) -> str:
    return f"{parent}.{key}" if key.replace("_", "").isalnum() else f"{parent}[{json.dumps(key)}]"


def _located(exc: msgspec.ValidationError, where: str) -> str:
    """msgspec's message with its path made absolute (it omits `- at $` for the root itself)."""
    text = str(exc)
    return text.replace("`$", f"`{where}") if " - at `" in text else f"{text} - at `{where}`"


def _parse(data: bytes, path: Path) -> _Loaded:
    def broken(detail: str) -> ProviderError:
        return ProviderError("auth", f"{path}: {detail}", provider="auth-profiles", model="*")

    try:
        shape = msgspec.json.decode(data, type=_FileShape)
    except msgspec.ValidationError as exc:
        raise broken(_located(exc, "$")) from None
    except msgspec.DecodeError as exc:
        raise broken(f"not valid JSON: {exc}") from None

    def convert(value: object, kind: type[T], where: str) -> T:
        try:
            return msgspec.convert(value, kind)
        except msgspec.ValidationError as exc:
            raise broken(_located(exc, where)) from None

    profiles: list[tuple[str, str, Credential]] = []
    for profile_id, raw in shape.profiles.items():
        where = _json_path("$.profiles", profile_id)
        profile: _Profile = convert(raw, _Profile, where)  # type: ignore[arg-type]
        provider = (profile.provider or profile_id.partition(":")[0]).strip().lower()
        if not provider or (profile.provider is None and ":" not in profile_id):
            raise broken(
                f"profile has no provider (set \"provider\" or name it '<provider>:<name>') - at `{where}`"
            )
        if isinstance(profile, _OAuthProfile):
            log.warning("auth profile %s in %s is an OAuth login; clawmesh skips it", profile_id, path)
            continue
        if isinstance(profile, _ApiKeyProfile):
            credential = Credential(profile_id, profile.key, "api_key")
        else:
            credential = Credential(profile_id, profile.token, "token")
        profiles.append((profile_id, provider, credential))
    order = {
        k.strip().lower(): convert(v, list[str], _json_path("$.order", k)) for k, v in shape.order.items()
    }
    return _Loaded(tuple(profiles), order)


# --- profiles and cooldowns -----------------------------------------------------------------


@dataclass(slots=True)
class _Cooldown:
    failures: int
    until: float
    reason: FailoverReason


class AuthProfiles:
    """Credential candidates and cooldowns for one agent. `path` may not exist (no profiles).

    The file is re-read when it changes on disk, so `openclaw auth`-style edits apply at once.
    """

    def __init__(self, path: Path | None, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.path = path
        self._clock = clock
        self._cooldowns: dict[str, _Cooldown] = {}
        self._stamp: tuple[int, int] | None = None
        self._loaded = _Loaded((), {})

    @classmethod
    def for_agent(cls, agent: AgentView, *, clock: Callable[[], float] = time.monotonic) -> AuthProfiles:
        return cls(agent.agent_dir / AUTH_PROFILES_FILENAME, clock=clock)

    def _load(self) -> _Loaded:
        if self.path is None:
            return self._loaded
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            self._stamp, self._loaded = None, _Loaded((), {})
            return self._loaded
        except OSError as exc:
            raise ProviderError(
                "auth", f"{self.path}: {exc.strerror}", provider="auth-profiles", model="*"
            ) from None
        stamp = (stat.st_mtime_ns, stat.st_size)
        if stamp != self._stamp:
            try:
                data = self.path.read_bytes()
            except OSError as exc:
                raise ProviderError(
                    "auth", f"{self.path}: {exc.strerror}", provider="auth-profiles", model="*"
                ) from None
            self._loaded = _parse(data, self.path)  # raises on a broken file, keeps the stamp unset
            self._stamp = stamp
        return self._loaded

    def candidates(self, provider_id: str, target: ModelTarget | None = None) -> list[Credential]:
        """Credentials to try for `provider_id`, best first; cooled-down ones last.

        Raises `ProviderError("auth")` naming the file and JSON path when the file is broken.
        """
        provider_id = provider_id.strip().lower()
        if provider_id == "echo" or (target is not None and target.api == "echo"):
            return [Credential("echo", None, "none")]
        try:
            loaded = self._load()
        except ProviderError as exc:
            exc.provider, exc.model = provider_id, target.model if target else "*"
            raise
        mine = {pid: cred for pid, provider, cred in loaded.profiles if provider == provider_id}
        ordered = [mine[pid] for pid in loaded.order.get(provider_id, []) if pid in mine]
        ordered += [cred for pid, cred in mine.items() if cred not in ordered]
        if target is not None and target.config_api_key:
            ordered.append(Credential(f"config:{provider_id}", target.config_api_key))
        if target is not None and target.env_api_key:
            ordered.append(Credential(f"env:{ENV_API_KEY[provider_id]}", target.env_api_key))
        if not ordered and provider_id not in BUILTIN_PROVIDERS:
            # A custom endpoint without any key (a local Ollama/vLLM): call it keyless.
            ordered.append(Credential(f"none:{provider_id}", None, "none"))
        unique: list[Credential] = []
        seen: set[tuple[str, str | None]] = set()
        for cred in ordered:  # the same secret twice (e.g. apiKey: "${OPENAI_API_KEY}") is one try
            if (cred.kind, cred.key) not in seen:
                seen.add((cred.kind, cred.key))
                unique.append(cred)
        now = self._clock()
        ready = [c for c in unique if self.cooldown_remaining(c.profile_id, now) == 0]
        cooling = sorted(
            (c for c in unique if c not in ready), key=lambda c: self._cooldowns[c.profile_id].until
        )
        return ready + cooling

    def missing_key_hint(self, target: ModelTarget) -> str:
        """What to configure when `candidates` found nothing for a built-in provider."""
        where = [f"models.providers.{target.provider_id}.apiKey"]
        if target.provider_id in ENV_API_KEY:
            where.insert(0, ENV_API_KEY[target.provider_id])
        if self.path is not None:
            where.append(f"a '{target.provider_id}:<name>' profile in {self.path}")
        return f"no API key for {target.provider_id}: set {', '.join(where[:-1])} or {where[-1]}"

    def mark_failure(self, profile_id: str, reason: FailoverReason) -> float:
        """Cool `profile_id` down after a failure; returns the cooldown in seconds."""
        state = self._cooldowns.get(profile_id)
        failures = (state.failures if state else 0) + 1
        seconds = cooldown_seconds(failures, reason)
        self._cooldowns[profile_id] = _Cooldown(failures, self._clock() + seconds, reason)
        return seconds

    def mark_success(self, profile_id: str) -> None:
        self._cooldowns.pop(profile_id, None)

    def cooldown_remaining(self, profile_id: str, now: float | None = None) -> float:
        state = self._cooldowns.get(profile_id)
        if state is None:
            return 0.0
        return max(0.0, state.until - (self._clock() if now is None else now))

    def __repr__(self) -> str:
        cooling = {k: round(v.until - self._clock()) for k, v in self._cooldowns.items()}
        return f"<AuthProfiles {self.path} cooling={json.dumps(cooling)}>"
