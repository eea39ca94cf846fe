"""`EffectiveSandbox`: an agent's sandbox settings with OpenClaw's precedence and defaults applied.

Precedence (OpenClaw `src/agents/sandbox/config.ts`): `agents.list[].sandbox.<key>` over
`agents.defaults.sandbox.<key>`, key by key (docker sub-keys too); `binds` global + agent merged;
`ulimits` merged; `env` agent over global (the global env replaces the `{LANG}` default). With scope
`shared` one container serves every agent, so per-agent `docker` and `prune` are ignored.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final, Literal

# leaf modules, not the `clawmesh.config` package: the config loader may import this package to
# report sandbox problems, and must not find itself half-initialised
from ..config import Config, SandboxConfig, SandboxDocker, SandboxPrune, home_dir, resolve_user_path
from ..ids import normalize_agent_id

__all__ = [
    "DEFAULT_CONTAINER_PREFIX",
    "DEFAULT_IDLE_HOURS",
    "DEFAULT_IMAGE",
    "DEFAULT_MAX_AGE_DAYS",
    "DEFAULT_TMPFS",
    "DEFAULT_WORKDIR",
    "EffectiveSandbox",
    "Mode",
    "Scope",
    "UlimitValue",
    "WorkspaceAccess",
    "resolve_sandbox",
]

Mode = Literal["off", "non-main", "all"]
Scope = Literal["agent", "session", "shared"]
WorkspaceAccess = Literal["none", "ro", "rw"]
UlimitValue = int | str | Mapping[str, int]

DEFAULT_IMAGE: Final = "clawmesh-sandbox:bookworm"
DEFAULT_CONTAINER_PREFIX: Final = "clawmesh-sbx-"
DEFAULT_WORKDIR: Final = "/workspace"
DEFAULT_TMPFS: Final = ("/tmp", "/var/tmp", "/run")
DEFAULT_NETWORK: Final = "none"
DEFAULT_CAP_DROP: Final = ("ALL",)
DEFAULT_ENV: Final = MappingProxyType({"LANG": "C.UTF-8"})
DEFAULT_IDLE_HOURS: Final = 24.0
DEFAULT_MAX_AGE_DAYS: Final = 7.0

# Fields that do not shape the container: whether it is used at all (mode), when it is pruned,
# and the home directory binds are validated against.
_NOT_HASHED: Final = frozenset({"mode", "prune_idle_hours", "prune_max_age_days", "home"})


def _empty_env() -> Mapping[str, str]:
    return MappingProxyType({})


def _empty_ulimits() -> Mapping[str, UlimitValue]:
    return MappingProxyType({})


@dataclass(frozen=True)
class EffectiveSandbox:
    """Everything that decides whether and how an agent's tools run in a container."""

    mode: Mode = "off"
    scope: Scope = "agent"
    workspace_access: WorkspaceAccess = "none"
    workspace_root: Path = Path("sandboxes")
    image: str = DEFAULT_IMAGE
    container_prefix: str = DEFAULT_CONTAINER_PREFIX
    workdir: str = DEFAULT_WORKDIR
    read_only_root: bool = True
    tmpfs: tuple[str, ...] = DEFAULT_TMPFS
    network: str = DEFAULT_NETWORK
    user: str | None = None
    cap_drop: tuple[str, ...] = DEFAULT_CAP_DROP
    env: Mapping[str, str] = field(default_factory=lambda: DEFAULT_ENV)
    setup_command: str | None = None
    pids_limit: int | None = None
    memory: str | None = None
    # = memory when only memory is configured: the same limit for memory+swap means no swap
    memory_swap: str | None = None
    cpus: float | None = None
    ulimits: Mapping[str, UlimitValue] = field(default_factory=_empty_ulimits)
    # global + agent, in that order; `~` is expanded when the container is made (see `home`)
    binds: tuple[str, ...] = ()
    dns: tuple[str, ...] = ()
    extra_hosts: tuple[str, ...] = ()
    seccomp_profile: str | None = None
    apparmor_profile: str | None = None
    prune_idle_hours: float = DEFAULT_IDLE_HOURS
    prune_max_age_days: float = DEFAULT_MAX_AGE_DAYS
    # the user's home (config env): `~` in binds, and the protected `~/.ssh`, `~/.aws`, …
    home: Path = field(default_factory=Path.home)

    def _shape(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):
            if f.name in _NOT_HASHED:
                continue
            value = getattr(self, f.name)
            if isinstance(value, Mapping):
                value = {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in sorted(value.items())}
            elif isinstance(value, tuple):
                value = list(value)
            elif isinstance(value, Path):
                value = str(value)
            out[f.name] = value
        return out

    def config_hash(self) -> str:
        """Stable hash of everything that shapes the container (not mode, not prune settings).

        A container whose `clawmesh.config-hash` label differs is recreated on next use.
        """
        canonical = json.dumps(self._shape(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:24]

    def applies_to(self, session_key: str, main_session_key: str) -> bool:
        """Whether this session's tools run sandboxed: off → never, all → always, non-main →
        every session but the agent's main one (groups, channels, sub-agents, cron…)."""
        if self.mode == "off":
            return False
        if self.mode == "all":
            return True
        return session_key.strip().lower() != main_session_key.strip().lower()

    def __hash__(self) -> int:
        return hash((self.mode, self.prune_idle_hours, self.prune_max_age_days, self.config_hash()))


def _pick(*values: Any) -> Any:
    for v in values:
        if v is not None:
            return v
    return None


def _memory(value: str | int | None) -> str | None:
    if value is None:
        return None
    return str(value).strip() or None


def resolve_sandbox(config: Config, agent_id: str) -> EffectiveSandbox:
    """The sandbox settings of `agent_id`, defaults applied. Never raises for bad values: those are
    reported by `config_checks` and refused again by `SandboxManager.ensure`."""
    view = config.agent_view(agent_id)
    if view is None:
        raise KeyError(f"unknown agent {normalize_agent_id(agent_id)!r}")
    agents = config.document.agents
    glob = (agents.defaults.sandbox if agents and agents.defaults else None) or SandboxConfig()
    mine = view.entry.sandbox or SandboxConfig()

    scope: Scope
    explicit_scope = _pick(mine.scope, glob.scope)
    if explicit_scope is not None:
        scope = explicit_scope
    else:
        # legacy `perSession`: true → session, false → shared (OpenClaw resolveSandboxScope)
        per_session = _pick(mine.per_session, glob.per_session)
        scope = "agent" if per_session is None else ("session" if per_session else "shared")

    gd = glob.docker or SandboxDocker()
    ad = (mine.docker if scope != "shared" else None) or SandboxDocker()
    gp = glob.prune or SandboxPrune()
    ap = (mine.prune if scope != "shared" else None) or SandboxPrune()

    root = _pick(mine.workspace_root, glob.workspace_root)
    workspace_root = (
        resolve_user_path(root, config.env) if root and root.strip() else config.state_dir / "sandboxes"
    )
    env = dict(gd.env) if gd.env is not None else dict(DEFAULT_ENV)
    env.update(ad.env or {})
    ulimits: dict[str, UlimitValue] = {**(gd.ulimits or {}), **(ad.ulimits or {})}
    memory = _memory(_pick(ad.memory, gd.memory))
    tmpfs = _pick(ad.tmpfs, gd.tmpfs)
    cap_drop = _pick(ad.cap_drop, gd.cap_drop)
    return EffectiveSandbox(
        mode=_pick(mine.mode, glob.mode) or "off",
        scope=scope,
        workspace_access=_pick(mine.workspace_access, glob.workspace_access) or "none",
        workspace_root=workspace_root,
        image=_pick(ad.image, gd.image) or DEFAULT_IMAGE,
        container_prefix=_pick(ad.container_prefix, gd.container_prefix) or DEFAULT_CONTAINER_PREFIX,
        workdir=_pick(ad.workdir, gd.workdir) or DEFAULT_WORKDIR,
        read_only_root=_pick(ad.read_only_root, gd.read_only_root, True),
        tmpfs=tuple(tmpfs) if tmpfs is not None else DEFAULT_TMPFS,
        network=_pick(ad.network, gd.network) or DEFAULT_NETWORK,
        user=_pick(ad.user, gd.user) or None,
        cap_drop=tuple(cap_drop) if cap_drop is not None else DEFAULT_CAP_DROP,
        env=MappingProxyType(env),
        setup_command=_pick(ad.setup_command, gd.setup_command) or None,
        pids_limit=_pick(ad.pids_limit, gd.pids_limit),
        memory=memory,
        memory_swap=_memory(_pick(ad.memory_swap, gd.memory_swap)) or memory,
        cpus=_pick(ad.cpus, gd.cpus),
        ulimits=MappingProxyType(ulimits),
        binds=(*(gd.binds or ()), *(ad.binds or ())),
        dns=tuple(_pick(ad.dns, gd.dns) or ()),
        extra_hosts=tuple(_pick(ad.extra_hosts, gd.extra_hosts) or ()),
        seccomp_profile=_pick(ad.seccomp_profile, gd.seccomp_profile) or None,
        apparmor_profile=_pick(ad.apparmor_profile, gd.apparmor_profile) or None,
        prune_idle_hours=float(_pick(ap.idle_hours, gp.idle_hours, DEFAULT_IDLE_HOURS)),
        prune_max_age_days=float(_pick(ap.max_age_days, gp.max_age_days, DEFAULT_MAX_AGE_DAYS)),
        home=home_dir(config.env),
    )
