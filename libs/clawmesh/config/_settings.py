"""Resolved settings: each default applied once, when a config loads, and written next to its type.

Services read `config.settings.runtime.turn_timeout` and never the optional file keys, so a default
lives in exactly one place. A key that can only be positive is refused at 0 or below: leaving it
out is how a user asks for the default, and 0 would otherwise silently mean the same.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final, Literal

from ._check import child_path
from ._errors import Problem
from ._schema import (
    ConfigFile,
    DmScope,
    ExecAsk,
    ExecMode,
    ExecSecurity,
    ExecTools,
    GroupScope,
    SafeBinProfile,
)

__all__ = [
    "DEFAULT_MAX_CONCURRENT",
    "DEFAULT_SAFE_BINS",
    "ExecHost",
    "ExecSettings",
    "GatewaySettings",
    "NatsSettings",
    "NodeSettings",
    "RuntimeSettings",
    "SessionSettings",
    "Settings",
    "positive",
    "resolve_exec",
    "resolve_settings",
]

DEFAULT_MAX_CONCURRENT: Final = 4
MAX_ROUTER_PARTITIONS: Final = 256  # turns per agent at once (OpenClaw's main lane)

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
    max_deliveries: int = (
        5  # maxDeliveries: tries of an inbound message (or a turn) before it is dead-lettered
    )
    publish_retry: float = 10.0  # publishRetrySeconds: a stream publish is retried this long (leader change)
    # routerPartitions: CM_INBOUND split by a hash of (channel, account, peer or session); each
    # partition is routed by one router at a time, so routers scale out. 1: one active router.
    router_partitions: int = 1

    @property
    def reply_wait(self) -> float:
        """How long an HTTP caller waits for a turn's final reply."""
        return self.turn_timeout + _REPLY_GRACE


ExecHost = Literal["auto", "sandbox", "gateway", "node"]

# OpenClaw's default safe bins (stdin-only filters that run in allowlist mode without an entry).
DEFAULT_SAFE_BINS: Final = ("cut", "uniq", "head", "tail", "tr", "wc")
_DEFAULT_TRUSTED_DIRS: Final = ("/bin", "/usr/bin")
# `tools.exec.mode` → (security, ask), OpenClaw's table. `auto` has no reviewer model here, so
# its misses go to a human, which is what OpenClaw does when the reviewer cannot decide.
_MODES: Final[Mapping[str, tuple[ExecSecurity, ExecAsk]]] = {
    "deny": ("deny", "off"),
    "allowlist": ("allowlist", "off"),
    "ask": ("allowlist", "on-miss"),
    "auto": ("allowlist", "on-miss"),
    "full": ("full", "off"),
}
# Never safe bins, whatever the config says: they can run code or read files by design.
_NEVER_SAFE: Final = frozenset({"jq", "awk", "gawk", "mawk", "nawk", "sed", "gsed"})


@dataclass(frozen=True)
class ExecSettings:
    """`tools.exec.*` (global, then per agent): the `exec` tool's limits and OpenClaw's host-exec
    policy. The default is OpenClaw's: host exec runs without approval (`security` full, `ask` off)."""

    timeout: float = 120.0  # timeoutSec: when the model gives none
    max_output_bytes: int = 200_000  # maxOutputBytes
    host: ExecHost = "auto"
    mode: ExecMode | None = None  # as configured; security/ask below are what it means
    security: ExecSecurity = "full"
    ask: ExecAsk = "off"
    safe_bins: tuple[str, ...] = DEFAULT_SAFE_BINS
    safe_bin_trusted_dirs: tuple[str, ...] = _DEFAULT_TRUSTED_DIRS
    safe_bin_profiles: Mapping[str, SafeBinProfile] = field(default_factory=lambda: MappingProxyType({}))
    approval_timeout: float = (
        1800.0  # approvalTimeoutSeconds: OpenClaw's pending approvals expire after 30 min
    )
    run_as: str = "nobody"  # runAs: host commands' user when the node-agent runs as root
    allow_root: bool = False  # allowRoot: keep root for host commands (an explicit opt-in)

    @property
    def unapproved_host_exec(self) -> bool:
        """Whether any command the agent sends can run on a host without anyone approving it."""
        return self.security == "full" and self.ask == "off" and self.host != "sandbox"


def resolve_exec(
    base: ExecSettings, section: ExecTools | None, path: str, problems: list[Problem]
) -> ExecSettings:
    """`base` (the defaults, or the global settings for an agent) with `section`'s keys applied."""
    if section is None:
        return base
    given: dict[str, Any] = {}
    if section.mode is not None:
        if section.security is not None or section.ask is not None:
            legacy = [k for k, v in (("security", section.security), ("ask", section.ask)) if v is not None]
            problems.append(
                Problem(
                    f"{path}.mode",
                    f"'mode' cannot be combined with the legacy {' and '.join(repr(k) for k in legacy)} in the same "
                    f"exec object; keep 'mode' ({section.mode!r}) and remove {', '.join(legacy)}",
                )
            )
        given["mode"] = section.mode
        given["security"], given["ask"] = _MODES[section.mode]
    else:
        if section.security is not None:
            given["security"] = section.security
            given["mode"] = None
        if section.ask is not None:
            given["ask"] = section.ask
            given["mode"] = None
    if section.host is not None:
        given["host"] = section.host
    profiles = dict(base.safe_bin_profiles)
    if section.safe_bin_profiles is not None:
        profiles.update({name.strip().lower(): p for name, p in section.safe_bin_profiles.items()})
        for name, p in section.safe_bin_profiles.items():
            _check_profile(p, f"{child_path(f'{path}.safeBinProfiles', name)}", problems)
        given["safe_bin_profiles"] = MappingProxyType(profiles)
    if section.safe_bins is not None:
        bins: list[str] = []
        for i, raw in enumerate(section.safe_bins):
            name = raw.strip().lower().rsplit("/", 1)[-1]
            where = f"{path}.safeBins[{i}]"
            if not name:
                problems.append(Problem(where, "must be a binary name, got an empty string"))
            elif name in _NEVER_SAFE:
                problems.append(
                    Problem(
                        where,
                        f"'{name}' is never a safe bin (it can run code or read files); use an allowlist entry instead",
                        "warning",
                    )
                )
            elif name not in DEFAULT_SAFE_BINS and name not in _BUILTIN_PROFILES and name not in profiles:
                problems.append(
                    Problem(
                        where,
                        f"custom safe bin '{name}' needs a profile in {path}.safeBinProfiles.{name}; it is ignored until it has one",
                        "warning",
                    )
                )
            else:
                bins.append(name)
        given["safe_bins"] = tuple(bins)
    if section.safe_bin_trusted_dirs is not None:
        dirs = list(_DEFAULT_TRUSTED_DIRS)
        for i, d in enumerate(section.safe_bin_trusted_dirs):
            if not d.startswith("/"):
                problems.append(
                    Problem(f"{path}.safeBinTrustedDirs[{i}]", f"must be an absolute directory, got {d!r}")
                )
            elif d not in dirs:
                dirs.append(d.rstrip("/") or "/")
        given["safe_bin_trusted_dirs"] = tuple(dirs)
    if positive(
        section.approval_timeout_seconds, f"{path}.approvalTimeoutSeconds", base.approval_timeout, problems
    ):
        given["approval_timeout"] = section.approval_timeout_seconds
    if section.run_as is not None:
        if not section.run_as.strip() or section.run_as.strip() in ("root", "0"):
            problems.append(
                Problem(
                    f"{path}.runAs",
                    f"must name an unprivileged user, got {section.run_as!r} (use allowRoot: true to keep root)",
                )
            )
        else:
            given["run_as"] = section.run_as.strip()
    if section.allow_root is not None:
        given["allow_root"] = section.allow_root
    return dataclasses.replace(base, **given) if given else base


# Safe bins OpenClaw ships an argv profile for besides the defaults (opt-in only).
_BUILTIN_PROFILES: Final = frozenset({"grep", "sort"})


def _check_profile(profile: SafeBinProfile, path: str, problems: list[Problem]) -> None:
    for key, value in (("minPositional", profile.min_positional), ("maxPositional", profile.max_positional)):
        if value is not None and value < 0:
            problems.append(Problem(f"{path}.{key}", f"must be 0 or more, got {value}"))


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
    region: str | None = None  # region: set when this gateway is part of a federation
    expose_agents: tuple[str, ...] = ()  # federation.exposeAgents
    expose_nodes: tuple[str, ...] = ()  # federation.exposeNodes
    allow_gateways: tuple[str, ...] = ("*",)  # federation.allowGateways
    catalog_seconds: float = 10.0  # federation.catalogSeconds
    keepalive_seconds: float = 5.0  # federation.keepaliveSeconds
    idle_timeout_seconds: float = 30.0  # federation.idleTimeoutSeconds
    failover_region: str | None = None  # federation.failover.region
    failover_agents: tuple[str, ...] = ()  # federation.failover.agents


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
    media_max_bytes: int = 256 * 2**20  # the object store of chat files on their way to a workspace


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
        # an integer default as it is written (256 MiB is 268435456, not 2.68435e+08)
        shown = (
            default if isinstance(default, int) else f"{default:g}" if isinstance(default, float) else default
        )
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


_REGION_RE: Final = re.compile(r"^[a-z0-9][a-z0-9-]{0,31}$")


def _gateway_settings(base: GatewaySettings, section: Any, problems: list[Problem]) -> GatewaySettings:
    """`gateway.region` and `gateway.federation`: a region becomes subject tokens, an account
    name and a JetStream domain, so only simple lower-case names are accepted."""
    if section is None:
        return base
    region = section.region
    if region is not None and (not _REGION_RE.match(region) or region in ("hub", "all", "bcast")):
        problems.append(
            Problem(
                "$.gateway.region",
                f"{region!r} is not a valid region name (1-32 of a-z, 0-9, '-'; not hub/all/bcast)",
            )
        )
        region = None
    fed = section.federation
    if fed is None:
        return dataclasses.replace(base, region=region)
    for key, values in (
        ("exposeAgents", fed.expose_agents),
        ("exposeNodes", fed.expose_nodes),
        ("allowGateways", fed.allow_gateways),
    ):
        for i, value in enumerate(values or ()):
            if not value.strip():
                problems.append(Problem(f"$.gateway.federation.{key}[{i}]", "must not be empty"))
    seconds = fed.catalog_seconds
    if seconds is not None and not 0 < seconds <= 3600:
        problems.append(
            Problem("$.gateway.federation.catalogSeconds", f"expected 0 < seconds <= 3600, got {seconds:g}")
        )
        seconds = None
    keepalive = fed.keepalive_seconds
    if keepalive is not None and not 0 < keepalive <= 60:  # the wire's bound (RemoteTurn)
        problems.append(
            Problem("$.gateway.federation.keepaliveSeconds", f"expected 0 < seconds <= 60, got {keepalive:g}")
        )
        keepalive = None
    keepalive = keepalive or GatewaySettings.keepalive_seconds
    idle = fed.idle_timeout_seconds
    if idle is not None and not 2 * keepalive <= idle <= 3600:
        # one lost keep-alive must not fail a turn that is still running
        problems.append(
            Problem(
                "$.gateway.federation.idleTimeoutSeconds",
                f"expected twice keepaliveSeconds ({2 * keepalive:g}) <= seconds <= 3600, got {idle:g}",
            )
        )
        idle = None
    failover_region: str | None = None
    failover_agents: tuple[str, ...] = ()
    if fed.failover is not None:
        failover_region = fed.failover.region.strip().lower()
        failover_agents = tuple(v.strip() for v in fed.failover.agents or () if v.strip())
        if not _REGION_RE.match(failover_region) or failover_region in ("hub", "all", "bcast"):
            problems.append(
                Problem(
                    "$.gateway.federation.failover.region",
                    f"{failover_region!r} is not a valid region name (1-32 of a-z, 0-9, '-'; not hub/all/bcast)",
                )
            )
            failover_region = None
        elif region is None:
            problems.append(
                Problem(
                    "$.gateway.federation.failover", "needs gateway.region: this gateway is not federated"
                )
            )
            failover_region = None
        elif failover_region == region:
            problems.append(
                Problem(
                    "$.gateway.federation.failover.region",
                    f"{failover_region!r} is this gateway's own region",
                )
            )
            failover_region = None
        elif not failover_agents:
            problems.append(
                Problem(
                    "$.gateway.federation.failover.agents",
                    'name the agents that may run there (their ids, or patterns such as "*")',
                )
            )
    return dataclasses.replace(
        base,
        region=region,
        failover_region=failover_region,
        failover_agents=failover_agents,
        expose_agents=tuple(v.strip() for v in fed.expose_agents or () if v.strip()),
        expose_nodes=tuple(v.strip() for v in fed.expose_nodes or () if v.strip()),
        allow_gateways=tuple(v.strip() for v in fed.allow_gateways or ("*",) if v.strip()),
        catalog_seconds=seconds or GatewaySettings.catalog_seconds,
        keepalive_seconds=keepalive,
        idle_timeout_seconds=idle or max(GatewaySettings.idle_timeout_seconds, 2 * keepalive),
    )


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
            "publish_retry": "publish_retry_seconds",
            "router_partitions": "router_partitions",
        },
        problems,
    )
    if runtime.router_partitions > MAX_ROUTER_PARTITIONS:
        problems.append(
            Problem(
                "$.runtime.routerPartitions",
                f"must be at most {MAX_ROUTER_PARTITIONS}, got {runtime.router_partitions}"
                " (each partition is a durable consumer and a lease)",
            )
        )
        runtime = dataclasses.replace(runtime, router_partitions=MAX_ROUTER_PARTITIONS)
    exec_section = file.tools.exec if file.tools else None
    exec_ = resolve_exec(
        _section(
            ExecSettings,
            exec_section,
            "$.tools.exec",
            {"timeout": "timeout_sec", "max_output_bytes": "max_output_bytes"},
            problems,
        ),
        exec_section,
        "$.tools.exec",
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
    gateway = _gateway_settings(
        _section(GatewaySettings, file.gateway, "$.gateway", {"max_body_bytes": "max_body_bytes"}, problems),
        file.gateway,
        problems,
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
            "media_max_bytes": "media_max_bytes",
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
