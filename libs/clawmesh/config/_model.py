"""`Config`: a validated config file plus what follows from it (roster, default agent, paths)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, TypeVar

from ..ids import DEFAULT_AGENT_ID, normalize_agent_id
from ._errors import Problem
from ._paths import default_workspace, resolve_user_path
from ._runners import BackendSettings, resolve_backend
from ._schema import AgentEntry, ConfigFile, ModelSpec, NodeSelector, RunnerType
from ._settings import DEFAULT_MAX_CONCURRENT, ExecSettings, Settings, positive, resolve_exec

__all__ = [
    "DEFAULT_MAX_CONCURRENT",
    "DEFAULT_MODEL",
    "DERIVED_LIMIT",
    "AgentView",
    "Config",
    "ConfigCheck",
    "build_roster",
]

T = TypeVar("T")

# No model configured anywhere: use the offline echo provider rather than a paid API the user
# has no key for; loading says so in a warning.
DEFAULT_MODEL: Final = (
    "openai/gpt-6-astra"  # OpenClaw 2026.9.6 with no model configured (`openclaw models status`)
)
DERIVED_LIMIT: Final = 4096  # values derived from one config version (see Config.derived)


@dataclass(frozen=True, slots=True)
class AgentView:
    """One agent as clawmesh runs it: normalised id, resolved paths and model chain."""

    id: str
    raw_id: str
    path: str
    entry: AgentEntry
    is_default: bool
    name: str
    workspace: Path
    agent_dir: Path
    sessions_dir: Path
    models: tuple[str, ...]
    runner_type: RunnerType
    max_concurrent: int
    tool_iterations: int  # model↔tool round trips per turn
    model_timeout: float | None  # seconds without progress from the model; None: the provider's
    node: str | NodeSelector | None = None
    # runnerType other than `local`: the backend's settings, and the models a turn fails over
    # to when the backend is down (the `fallbacks` of the agent's model setting)
    backend: BackendSettings | None = None
    fallbacks: tuple[str, ...] = ()
    declared_default: bool = field(default=False)
    exec: ExecSettings = field(
        default_factory=ExecSettings
    )  # `tools.exec` with this agent's `tools.exec` applied


# A domain's checks of a loaded config (routing's bindings, sandbox's binds, …): config knows
# none of them; whoever loads a config passes them in (see `clawmesh.config_checks`).
ConfigCheck = Callable[["Config"], Iterable[Problem]]


class Config:
    """A loaded, validated configuration. Immutable; reloading produces a new `Config`."""

    __slots__ = (
        "__weakref__",
        "_by_id",
        "_derived",
        "_derived_limit",
        "_lock",
        "agents",
        "checks",
        "default_agent_id",
        "default_agent_problem",
        "document",
        "env",
        "has_roster",
        "raw",
        "settings",
        "source",
        "state_dir",
        "version",
        "warnings",
    )

    document: ConfigFile
    raw: dict[str, Any]
    agents: tuple[AgentView, ...]
    has_roster: bool
    default_agent_id: str | None
    default_agent_problem: str | None
    settings: Settings
    state_dir: Path
    env: Mapping[str, str]
    source: Path | None
    version: str
    warnings: tuple[Problem, ...]
    checks: tuple[ConfigCheck, ...]
    _by_id: dict[str, AgentView]
    _derived: OrderedDict[str, Any]
    _derived_limit: int
    _lock: threading.RLock

    def __init__(
        self,
        *,
        document: ConfigFile,
        raw: dict[str, Any],
        agents: tuple[AgentView, ...],
        has_roster: bool,
        default_agent_id: str | None,
        default_agent_problem: str | None,
        settings: Settings,
        state_dir: Path,
        env: Mapping[str, str],
        source: Path | None,
        version: str,
        warnings: tuple[Problem, ...],
        checks: tuple[ConfigCheck, ...],
    ) -> None:
        init = object.__setattr__
        init(self, "document", document)
        init(self, "raw", raw)
        init(self, "agents", agents)
        init(self, "has_roster", has_roster)
        init(self, "default_agent_id", default_agent_id)
        init(self, "default_agent_problem", default_agent_problem)
        init(self, "settings", settings)
        init(self, "state_dir", state_dir)
        init(self, "env", env)
        init(self, "source", source)
        init(self, "version", version)
        init(self, "warnings", warnings)
        # The checks this config passed: a reload runs the same ones.
        init(self, "checks", checks)
        init(self, "_by_id", {a.id: a for a in agents})
        # Bounded: callers key derived data by agent id, and without a roster any id is an agent.
        init(self, "_derived", OrderedDict())
        init(self, "_derived_limit", DERIVED_LIMIT + 32 * len(agents))
        init(self, "_lock", threading.RLock())  # a derived value may be built from others

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"Config is immutable; cannot set {name!r}")

    def agent(self, agent_id: str) -> AgentView | None:
        """Look an agent up by any spelling of its id (ids compare normalised)."""
        return self._by_id.get(agent_id) or self._by_id.get(normalize_agent_id(agent_id))

    def agent_view(self, agent_id: str) -> AgentView | None:
        """The agent to run: from the roster, or — when there is no roster (OpenClaw accepts any
        bound agent id then) — one made from `agents.defaults`."""
        found = self.agent(agent_id)
        if found is not None or self.has_roster:
            return found
        aid = normalize_agent_id(agent_id)
        return self.derived(
            f"agent-view:{aid}",
            lambda c: _view(
                aid, "$", AgentEntry(), c.document, c.settings, c.state_dir, c.env, aid == DEFAULT_AGENT_ID
            ),
        )

    @property
    def agent_ids(self) -> tuple[str, ...]:
        return tuple(a.id for a in self.agents)

    @property
    def subject_prefix(self) -> str:
        return self.settings.nats.subject_prefix

    def derived(self, name: str, build: Callable[[Config], T]) -> T:
        """Data computed once per config version (routing index, tool policies, …).

        At most `DERIVED_LIMIT` (plus a few per roster agent) values are kept; the least
        recently used are dropped and built again when asked for."""
        derived = self._derived
        try:
            value: T = derived[name]
        except KeyError:
            pass
        else:
            # Recency only matters once eviction is near; below that a hit costs one lookup.
            if len(derived) > self._derived_limit // 2:
                try:
                    derived.move_to_end(name)
                except KeyError:  # evicted by another thread meanwhile
                    pass
            return value
        with self._lock:
            try:
                return derived[name]  # type: ignore[no-any-return]
            except KeyError:
                value = build(self)
                derived[name] = value
                while len(derived) > self._derived_limit:
                    derived.popitem(last=False)
                return value

    def __repr__(self) -> str:
        return f"<Config {self.version} agents={list(self.agent_ids)} source={self.source}>"


def _model_chain(entry: AgentEntry, defaults_model: str | ModelSpec | None) -> tuple[str, ...]:
    """OpenClaw latest: a string is a strict primary; `{primary, fallbacks}` opts into fallback;
    `{primary}` alone is strict too; `fallbacks: []` disables the defaults' chain."""
    model = entry.model
    if isinstance(model, str):
        return (model,)
    default_primary = (
        defaults_model
        if isinstance(defaults_model, str)
        else (defaults_model.primary if defaults_model else None)
    )
    if isinstance(model, ModelSpec):
        primary = model.primary or default_primary or DEFAULT_MODEL
        fallbacks = model.fallbacks if isinstance(model.fallbacks, list) else []
        return (primary, *fallbacks)
    if isinstance(defaults_model, str):
        return (defaults_model,)
    if isinstance(defaults_model, ModelSpec):
        fallbacks = defaults_model.fallbacks if isinstance(defaults_model.fallbacks, list) else []
        return (defaults_model.primary or DEFAULT_MODEL, *fallbacks)
    return (DEFAULT_MODEL,)


def _elect_default(
    file: ConfigFile, roster: list[tuple[str, str, AgentEntry]]
) -> tuple[str | None, str | None]:
    """The default (owner) agent, OpenClaw latest; `(None, why)` when selection is required."""
    if not roster:
        if file.agents is not None and (file.agents.list is not None or file.agents.entries is not None):
            # OpenClaw: an explicitly empty roster has no implicit `main` owner to fall back to
            return None, "no agents are configured (the agent roster is empty); add an agent"
        return DEFAULT_AGENT_ID, None
    ids = [agent_id for agent_id, _, _ in roster]
    agents = file.agents
    explicit = agents is not None and agents.ownership == "explicit"
    if explicit:
        system = agents.defaults.system_agent if agents and agents.defaults else None
        if system and system.agent_id and normalize_agent_id(system.agent_id) in ids:
            return normalize_agent_id(system.agent_id), None
    else:
        marked = [agent_id for agent_id, _, entry in roster if entry.default]
        if len(marked) == 1:
            return marked[0], None
        if len(marked) > 1:
            return None, "several agents are marked default: true; keep exactly one"
    if len(roster) == 1:
        return ids[0], None
    return (
        None,
        "several agents and none is the owner; mark one agent default: true or add channel-wide bindings",
    )


def _agent_limits(entry: AgentEntry, path: str, problems: list[Problem]) -> None:
    """The per-agent keys where 0 would silently mean "inherit"."""
    positive(entry.max_concurrent, f"{path}.maxConcurrent", "inherited", problems)
    if entry.tools is not None:
        positive(entry.tools.max_iterations, f"{path}.tools.maxIterations", "inherited", problems)


def build_roster(
    file: ConfigFile, settings: Settings, state_dir: Path, env: Mapping[str, str]
) -> tuple[tuple[AgentView, ...], bool, str | None, str | None, list[Problem]]:
    """Agents in roster order with their paths; also the default agent and roster problems."""
    problems: list[Problem] = []
    raw: list[tuple[str, str, AgentEntry]] = []
    agents = file.agents
    if agents and agents.list:
        for i, entry in enumerate(agents.list):
            path = f"$.agents.list[{i}]"
            _agent_limits(entry, path, problems)
            _agent_exec(entry, path, file, problems)
            if entry.id is None or not entry.id.strip():
                problems.append(Problem(path, "missing required key 'id'"))
                continue
            raw.append((entry.id, path, entry))
    if agents and agents.entries:
        for key, entry in agents.entries.items():
            path = f"$.agents.entries[{key!r}]" if not key.isidentifier() else f"$.agents.entries.{key}"
            _agent_limits(entry, path, problems)
            _agent_exec(entry, path, file, problems)
            if entry.id is not None and normalize_agent_id(entry.id) != normalize_agent_id(key):
                problems.append(Problem(f"{path}.id", f"id '{entry.id}' differs from its key '{key}'"))
            raw.append((key, path, entry))

    seen: dict[str, str] = {}
    roster: list[tuple[str, str, AgentEntry]] = []
    for raw_id, path, entry in raw:
        agent_id = normalize_agent_id(raw_id)
        if agent_id in seen:
            problems.append(
                Problem(
                    f"{path}.id",
                    f"agent id '{raw_id}' resolves to '{agent_id}', already used by {seen[agent_id]}",
                )
            )
            continue
        if agent_id != raw_id.strip():
            problems.append(Problem(f"{path}.id", f"agent id '{raw_id}' is used as '{agent_id}'", "warning"))
        seen[agent_id] = path
        roster.append((agent_id, path, entry))

    default_id, default_problem = _elect_default(file, roster)
    defaults = agents.defaults if agents else None
    marked = [path for _, path, entry in roster if entry.default]
    if len(marked) > 1:
        problems += [Problem(f"{p}.default", "more than one agent is marked default: true") for p in marked]
    if agents and agents.ownership == "explicit":
        problems += [
            Problem(
                f"{p}.default",
                "'default' is retired under agents.ownership 'explicit'; use agents.defaults.systemAgent",
            )
            for p in marked
        ]
        system = defaults.system_agent if defaults else None
        if system and system.agent_id and normalize_agent_id(system.agent_id) not in seen:
            problems.append(
                Problem("$.agents.defaults.systemAgent.agentId", f"unknown agent '{system.agent_id}'")
            )

    views: list[AgentView] = []
    for agent_id, path, entry in roster or [(DEFAULT_AGENT_ID, "$", AgentEntry())]:
        views.append(
            _view(agent_id, path, entry, file, settings, state_dir, env, agent_id == default_id, problems)
        )
    for view in views:
        if view.runner_type != "local":
            continue  # its backend answers; a model is only its fallback
        if view.models == (DEFAULT_MODEL,) and view.entry.model is None and not (defaults and defaults.model):
            problems.append(
                Problem(
                    f"{view.path}.model" if roster else "$.agents.defaults.model",
                    f"no model configured for agent '{view.id}'; using OpenClaw's default {DEFAULT_MODEL} "
                    "(set agents.defaults.model; `echo/<name>` is the offline test model)",
                    "warning",
                )
            )
    return tuple(views), bool(roster), default_id, default_problem, problems


def _agent_exec(entry: AgentEntry, path: str, file: ConfigFile, problems: list[Problem]) -> None:
    """Reports what is wrong with an agent's `tools.exec` (its view resolves it again, quietly)."""
    if entry.tools is not None and entry.tools.exec is not None:
        resolve_exec(ExecSettings(), entry.tools.exec, f"{path}.tools.exec", problems)


def _view(
    agent_id: str,
    path: str,
    entry: AgentEntry,
    file: ConfigFile,
    settings: Settings,
    state_dir: Path,
    env: Mapping[str, str],
    is_default: bool,
    problems: list[Problem] | None = None,
) -> AgentView:
    defaults = file.agents.defaults if file.agents else None
    if entry.workspace and entry.workspace.strip():
        workspace = resolve_user_path(entry.workspace, env)
    elif is_default:
        fallback = defaults.workspace if defaults and defaults.workspace else None
        workspace = (
            resolve_user_path(fallback, env) if fallback and fallback.strip() else default_workspace(env)
        )
    elif defaults and defaults.workspace and defaults.workspace.strip():
        workspace = resolve_user_path(defaults.workspace, env) / agent_id
    else:
        workspace = state_dir / f"workspace-{agent_id}"
    if entry.agent_dir and entry.agent_dir.strip():
        agent_dir = resolve_user_path(entry.agent_dir, env)
    else:
        agent_dir = state_dir / "agents" / agent_id / "agent"
    name = entry.name or (entry.identity.name if entry.identity and entry.identity.name else None) or agent_id
    runner_type: RunnerType = entry.runner_type or (defaults.runner_type if defaults else None) or "local"
    max_concurrent = (
        entry.max_concurrent or (defaults.max_concurrent if defaults else None) or DEFAULT_MAX_CONCURRENT
    )
    # Per agent, then global `tools.maxIterations`, then the deployment's `runtime.toolIterations`.
    tool_iterations = next(
        (t.max_iterations for t in (entry.tools, file.tools) if t and t.max_iterations),
        settings.runtime.tool_iterations,
    )
    node = entry.node or (defaults.node if defaults else None)
    # OpenClaw's per-agent `tools.exec.node`, then the global one, pin an agent to a node too.
    for tools in (entry.tools, file.tools):
        if node is None and tools and tools.exec and tools.exec.node:
            node = tools.exec.node
    defaults_model = defaults.model if defaults else None
    spec = entry.model if entry.model is not None else defaults_model
    return AgentView(
        id=agent_id,
        raw_id=entry.id or agent_id,
        path=path,
        entry=entry,
        is_default=is_default,
        name=name,
        workspace=workspace,
        agent_dir=agent_dir,
        sessions_dir=state_dir / "agents" / agent_id / "sessions",
        models=_model_chain(entry, defaults_model),
        runner_type=runner_type,
        max_concurrent=max_concurrent,
        tool_iterations=tool_iterations,
        model_timeout=defaults.timeout_seconds if defaults else None,
        node=node,
        backend=resolve_backend(
            entry, runner_type, workspace, env, path, problems if problems is not None else []
        ),
        fallbacks=tuple(spec.fallbacks)
        if isinstance(spec, ModelSpec) and isinstance(spec.fallbacks, list)
        else (),
        declared_default=bool(entry.default),
        exec=resolve_exec(settings.exec, entry.tools.exec if entry.tools else None, f"{path}.tools.exec", []),
    )
