"""Resolved settings: each default applied once, when a config loads, and written next to its type.

Services read `config.settings.runtime.turn_timeout` and never the optional file keys, so a default
lives in exactly one place. A key that can only be positive is refused at 0 or below: leaving it
out is how a user asks for the default, and 0 would otherwise silently mean the same.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from ._check import child_path
from ._errors import Problem
from ._schema import ConfigFile, DmScope, GroupScope

__all__ = [
    "DEFAULT_MAX_CONCURRENT",
    "ExecSettings",
    "GatewaySettings",
    "NatsSettings",
    "NodeSettings",
    "RuntimeSettings",
    "SessionSettings",
    "Settings",
    "positive",
    "resolve_settings",
]

DEFAULT_MAX_CONCURRENT: Final = 4  # turns per agent at once (OpenClaw's main lane)

# How long past the turn timeout an HTTP caller keeps waiting: the runner's own timeout error
# (or its final reply) needs time to arrive before the caller gives up.
_REPLY_GRACE: Final = 30.0

# The classes have no __slots__ so that `NatsSettings.url` & co. read as the defaults.


@dataclass(frozen=True)
class RuntimeSettings:
    """`runtime.*`: timing and capacity of the pipeline services (seconds, counts)."""

    lease_seconds: float = 10.0  # turnLeaseSeconds: a dead runner's session moves on after this
    turn_timeout: float = 600.0  # turnTimeoutSeconds: a whole turn, model calls and tools included
    max_turns_in_flight: int = 64  # maxTurnsInFlight: per runner process
    history_limit: int = 50  # historyLimit: transcript messages given to the model as context
    route_wait: float = 5.0  # routeWaitSeconds: HTTP callers wait this long for the route decision
    tool_iterations: int = 16  # toolIterations: model↔tool round trips per turn (tools.maxIterations wins)
    max_deliveries: int = 5  # maxDeliveries: tries of an inbound message before it is dead-lettered

    @property
    def reply_wait(self) -> float:
        """How long an HTTP caller waits for a turn's final reply."""
        return self.turn_timeout + _REPLY_GRACE


@dataclass(frozen=True)
class ExecSettings:
    """`tools.exec.*` (global): the `exec` tool's limits."""

    timeout: float = 120.0  # timeoutSec: when the model gives none
    max_output_bytes: int = 200_000  # maxOutputBytes


@dataclass(frozen=True)
class NodeSettings:
    """`nodes.*`: presence timing and how long a tool invocation may go unanswered."""

    heartbeat_seconds: float = 5.0  # heartbeatSeconds
    offline_after_missed: int = 3  # offlineAfterMissed: heartbeats
    invoke_margin: float = 15.0  # invokeTimeoutSeconds: waited beyond a tool's own timeout


@dataclass(frozen=True)
class GatewaySettings:
    """`gateway.*` read by the HTTP server."""

    max_body_bytes: int = 1024 * 1024  # maxBodyBytes


@dataclass(frozen=True)
class NatsSettings:
    """`nats.*`: where services connect and how streams are created."""

    url: str | list[str] = "nats://127.0.0.1:4222"
    subject_prefix: str = "cm"
    replicas: int = 1  # of every stream and KV bucket
    # Size bounds of the streams that have no natural end; the oldest messages go first. JetStream
    # reserves each bound from its storage when the stream is created, so they stay modest.
    inbound_max_bytes: int = 256 * 2**20
    sessions_max_bytes: int = 2**30
    dead_letters_max_bytes: int = 64 * 2**20


@dataclass(frozen=True)
class SessionSettings:
    """`session.*`: how inbound messages map to session keys (bindings may override scopes)."""

    dm_scope: DmScope = "main"
    group_scope: GroupScope = "per-group"
    main_key: str | None = None  # normalised by routing (`normalize_main_key`)
    identity_links: Mapping[str, list[str]] | None = None


@dataclass(frozen=True)
class Settings:
    """Everything a service reads from the config besides agents, with defaults applied."""

    runtime: RuntimeSettings = field(default_factory=RuntimeSettings)
    exec: ExecSettings = field(default_factory=ExecSettings)
    nodes: NodeSettings = field(default_factory=NodeSettings)
    gateway: GatewaySettings = field(default_factory=GatewaySettings)
    nats: NatsSettings = field(default_factory=NatsSettings)
    session: SessionSettings = field(default_factory=SessionSettings)


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(word.capitalize() for word in rest)


def positive(value: float | None, path: str, default: object, problems: list[Problem]) -> bool:
    """True when `value` is set and usable; records a problem for 0 or less."""
    if value is None:
        return False
    if value <= 0:
        shown = f"{default:g}" if isinstance(default, int | float) else default
        problems.append(
            Problem(path, f"must be greater than 0, got {value:g} (leave it out for the default, {shown})")
        )
        return False
    return True


def _section(
    cls: type[Any], section: object, path: str, keys: Mapping[str, str], problems: list[Problem]
) -> Any:
    """`cls` with each of its `keys` (setting name → file attribute) taken from `section` when set."""
    defaults = {f.name: f.default for f in dataclasses.fields(cls)}
    given: dict[str, Any] = {}
    for name, attr in keys.items():
        value = getattr(section, attr) if section is not None else None
        if positive(value, f"{path}.{_camel(attr)}", defaults[name], problems):
            given[name] = value
    return cls(**given)


def _inherited_limits(file: ConfigFile, problems: list[Problem]) -> None:
    """Keys resolved elsewhere (per agent, per provider) where 0 would silently mean the default."""
    defaults = file.agents.defaults if file.agents else None
    if defaults is not None:
        positive(defaults.max_concurrent, "$.agents.defaults.maxConcurrent", DEFAULT_MAX_CONCURRENT, problems)
        positive(defaults.timeout_seconds, "$.agents.defaults.timeoutSeconds", "the provider's", problems)
    if file.tools is not None:
        positive(file.tools.max_iterations, "$.tools.maxIterations", "runtime.toolIterations", problems)
    for provider_id, provider in (file.models.providers if file.models else {}).items():
        path = child_path("$.models.providers", provider_id)
        positive(provider.timeout_seconds, f"{path}.timeoutSeconds", "the provider's", problems)


def resolve_settings(file: ConfigFile) -> tuple[Settings, list[Problem]]:
    """The settings of a config document, and what is wrong with the keys they come from."""
    problems: list[Problem] = []
    runtime = _section(
        RuntimeSettings,
        file.runtime,
        "$.runtime",
        {
            "lease_seconds": "turn_lease_seconds",
            "turn_timeout": "turn_timeout_seconds",
            "max_turns_in_flight": "max_turns_in_flight",
            "history_limit": "history_limit",
            "route_wait": "route_wait_seconds",
            "tool_iterations": "tool_iterations",
            "max_deliveries": "max_deliveries",
        },
        problems,
    )
    exec_ = _section(
        ExecSettings,
        file.tools.exec if file.tools else None,
        "$.tools.exec",
        {"timeout": "timeout_sec", "max_output_bytes": "max_output_bytes"},
        problems,
    )
    nodes = _section(
        NodeSettings,
        file.nodes,
        "$.nodes",
        {
            "heartbeat_seconds": "heartbeat_seconds",
            "offline_after_missed": "offline_after_missed",
            "invoke_margin": "invoke_timeout_seconds",
        },
        problems,
    )
    gateway = _section(
        GatewaySettings, file.gateway, "$.gateway", {"max_body_bytes": "max_body_bytes"}, problems
    )
    nats = _section(
        NatsSettings,
        file.nats,
        "$.nats",
        {
            "replicas": "replicas",
            "inbound_max_bytes": "inbound_max_bytes",
            "sessions_max_bytes": "sessions_max_bytes",
            "dead_letters_max_bytes": "dead_letters_max_bytes",
        },
        problems,
    )
    section = file.nats
    if section is not None:
        prefix = (section.subject_prefix or "").strip()
        nats = dataclasses.replace(
            nats,
            url=section.url or NatsSettings.url,
            subject_prefix=prefix or NatsSettings.subject_prefix,
        )
    _inherited_limits(file, problems)
    session = file.session
    settings = Settings(
        runtime=runtime,
        exec=exec_,
        nodes=nodes,
        gateway=gateway,
        nats=nats,
        session=SessionSettings(
            dm_scope=session.dm_scope or SessionSettings.dm_scope,
            group_scope=session.group_scope or SessionSettings.group_scope,
            main_key=session.main_key,
            identity_links=session.identity_links,
        )
        if session is not None
        else SessionSettings(),
    )
    return settings, problems
