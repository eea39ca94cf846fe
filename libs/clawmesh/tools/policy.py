"""OpenClaw's tool policy: which tools an agent may use in a given session.

    from clawmesh.tools import effective_tools
    result = effective_tools(config, "work", sandboxed=True)
    result.allowed            # ("exec", "read", …) in catalog order
    result.allows("Bash")     # case-insensitive, aliases resolved
    result.removed            # each other tool with the first stage and rule that removed it

Stages, in order (`shared/reference/openclaw-behaviour.md` §5.2); each one can only narrow,
so a later stage never re-grants what an earlier one removed:

1. profile            `agents.list[].tools.profile`, else `tools.profile` (+ that scope's `alsoAllow`)
2. provider profile   `byProvider[provider/model | provider].profile`, the agent's before the global
3. global             `tools.allow` / `tools.deny`
4. global provider    `tools.byProvider[…].allow` / `.deny`
5. agent              `agents.list[].tools.allow` / `.deny`
6. agent provider     `agents.list[].tools.byProvider[…].allow` / `.deny`
7. sandbox            only when sandboxed: `tools.sandbox.tools`, each key replaced by the agent's
                      `tools.sandbox.tools` when set; unset keys use OpenClaw's defaults
8. sub-agent          only for sub-agent sessions: OpenClaw's sub-agent defaults plus
                      `tools.subagents.tools` (the agent's keys replace the global ones)

Within a stage deny wins; a non-empty `allow` makes the stage an allow-list (`allow: []` or no
`allow` allows everything); `alsoAllow` adds to a stage's allow-list (alone it restricts
nothing). Entries are case-insensitive, may be `*` globs, `group:*` shorthands or aliases
(`bash` → `exec`). Entries that name no known tool simply match nothing (reported in `warnings`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final

from ..config import AgentView, Config, ToolPolicy, ToolsSection
from ..errors import ClawmeshError
from .catalog import (
    CATALOG_NAMES,
    SANDBOX_DEFAULT_ALLOW,
    SANDBOX_DEFAULT_DENY,
    SUBAGENT_DENY_ALWAYS,
    SUBAGENT_DENY_LEAF,
    TOOL_GROUPS,
    TOOL_PROFILES,
    glob_regex,
    normalize_tool_name,
)

__all__ = [
    "DEFAULT_MAX_SPAWN_DEPTH",
    "Removal",
    "ToolPolicyResult",
    "UnknownAgentError",
    "effective_tools",
    "expand",
    "max_spawn_depth",
]

# OpenClaw latest: `agents.defaults.subagents.maxSpawnDepth` defaults to 5 (range 1–5).
DEFAULT_MAX_SPAWN_DEPTH: Final = 5
_MAX_SPAWN_DEPTH_LIMIT: Final = 5

SANDBOX_DEFAULTS_ALLOW_LABEL: Final = "sandbox defaults (allow)"
SANDBOX_DEFAULTS_DENY_LABEL: Final = "sandbox defaults (deny)"
SUBAGENT_DEFAULTS_DENY_LABEL: Final = "sub-agent defaults (deny)"
_NOT_LISTED: Final = "not in allow-list"

_CATALOG_INDEX: Final = {name: i for i, name in enumerate(CATALOG_NAMES)}


class UnknownAgentError(ClawmeshError):
    """`effective_tools` was asked about an agent the config does not have."""

    def __init__(self, agent_id: str, configured: Sequence[str]) -> None:
        super().__init__(
            "UNKNOWN_AGENT", f"unknown agent '{agent_id}' (configured: {', '.join(configured) or 'none'})"
        )
        self.agent_id = agent_id
        self.configured = tuple(configured)


@dataclass(frozen=True)
class Removal:
    """A tool that is not allowed: the first stage that removed it and the rule that did.

    `stage` is where to look in the config (`agents.list[1].tools.deny`); `rule` is the entry
    that matched (`group:runtime`), or why an allow-list left the tool out (`not in allow-list`).
    """

    tool: str
    stage: str
    rule: str

    def __str__(self) -> str:
        return f"{self.tool}: {self.stage}: {self.rule}"


@dataclass(frozen=True)
class ToolPolicyResult:
    allowed: tuple[str, ...]  # in catalog order (candidates outside the catalog after it)
    removed: tuple[Removal, ...]  # same order; every candidate that is not allowed
    warnings: tuple[str, ...] = ()  # config entries that match no known tool
    _allowed_set: frozenset[str] = field(init=False, repr=False, compare=False)
    _removed_by_tool: dict[str, Removal] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_allowed_set", frozenset(self.allowed))
        object.__setattr__(self, "_removed_by_tool", {r.tool: r for r in self.removed})

    def allows(self, tool: str) -> bool:
        """Whether `tool` may be used; case-insensitive, aliases resolved (`bash` → `exec`)."""
        return normalize_tool_name(tool) in self._allowed_set

    def removal(self, tool: str) -> Removal | None:
        """Why `tool` is not allowed (None when it is allowed or was not a candidate)."""
        return self._removed_by_tool.get(normalize_tool_name(tool))


# --- matching -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Rule:
    """One config entry, compiled: a set of names (a name, a group) or a glob pattern."""

    label: str  # where it was written, e.g. "tools.deny"
    entry: str  # as written (trimmed), shown as the removal rule
    names: frozenset[str] = frozenset()
    pattern: re.Pattern[str] | None = None
    configured: bool = True  # False for OpenClaw's built-in defaults (never warned about)

    def matches(self, tool: str) -> bool:
        return tool in self.names or (self.pattern is not None and self.pattern.match(tool) is not None)


@dataclass(frozen=True, slots=True)
class _AllowList:
    label: str
    rules: tuple[_Rule, ...]
    miss: str  # the Removal.rule for a tool no rule lists


@dataclass(frozen=True, slots=True)
class _Stage:
    deny: tuple[_Rule, ...] = ()
    allow: _AllowList | None = None

    def check(self, tool: str) -> Removal | None:
        for rule in self.deny:
            if rule.matches(tool):
                return Removal(tool, rule.label, rule.entry)
        if self.allow is not None and not any(rule.matches(tool) for rule in self.allow.rules):
            return Removal(tool, self.allow.label, self.allow.miss)
        return None


def _compile(entry: str, label: str, *, configured: bool = True) -> _Rule | None:
    name = normalize_tool_name(entry)
    if not name:
        return None
    if name in TOOL_GROUPS:
        return _Rule(label, entry.strip(), names=frozenset(TOOL_GROUPS[name]), configured=configured)
    if "*" in name:
        return _Rule(label, entry.strip(), pattern=glob_regex(name), configured=configured)
    return _Rule(label, entry.strip(), names=frozenset({name}), configured=configured)


def _rules(entries: Iterable[str] | None, label: str, *, configured: bool = True) -> list[_Rule]:
    out = []
    for entry in entries or ():
        rule = _compile(entry, label, configured=configured)
        if rule is not None:
            out.append(rule)
    return out


def expand(entries: Iterable[str]) -> set[str]:
    """Policy entries → tool names (lower-cased, aliases resolved): groups become their members,
    globs the catalog tools they match; other names are kept as they are."""
    out: set[str] = set()
    for entry in entries:
        rule = _compile(entry, "")
        if rule is None:
            continue
        out |= rule.names
        if rule.pattern is not None:
            out.update(name for name in CATALOG_NAMES if rule.matches(name))
    return out


def _explicit_names(rules: Iterable[_Rule]) -> frozenset[str]:
    """Tools named outright (names and groups, not globs): these lift a matching default deny."""
    return frozenset(name for rule in rules if rule.pattern is None for name in rule.names)


# --- stages ---------------------------------------------------------------------------------


def _key_path(key: str) -> str:
    return f".{key}" if key.isidentifier() else f"[{key!r}]"


def _agent_prefix(view: AgentView) -> str:
    return view.path[2:] if view.path.startswith("$.") else "agents.defaults"


def _by_provider(
    section: ToolsSection | None, provider: str | None, model: str | None
) -> tuple[str, ToolPolicy] | None:
    """The `byProvider` entry for `provider/model`, else for `provider` (keys case-insensitive;
    the more specific entry wins outright, the two are not merged)."""
    if section is None or not section.by_provider or provider is None:
        return None
    lookup = {key.strip().lower(): (key, policy) for key, policy in section.by_provider.items()}
    wanted = ([f"{provider}/{model.lower()}"] if model else []) + [provider]
    for key in wanted:
        if key in lookup:
            return lookup[key]
    return None


def _profile_stage(
    profile: str | None, label: str, also_allow: list[str] | None, also_label: str
) -> _Stage | None:
    members = TOOL_PROFILES.get(profile) if profile else None
    if members is None:  # no profile, or `full`
        return None
    rules = _rules(members, label, configured=False) + _rules(also_allow, also_label)
    return _Stage(allow=_AllowList(label, tuple(rules), f"not in profile '{profile}'"))


def _policy_stage(policy: ToolPolicy | ToolsSection | None, prefix: str) -> _Stage | None:
    if policy is None:
        return None
    deny = _rules(policy.deny, f"{prefix}.deny")
    allow = None
    if policy.allow:  # `allow: []` or no allow = everything
        rules = _rules(policy.allow, f"{prefix}.allow") + _rules(policy.also_allow, f"{prefix}.alsoAllow")
        allow = _AllowList(f"{prefix}.allow", tuple(rules), _NOT_LISTED)
    if not deny and allow is None:
        return None
    return _Stage(tuple(deny), allow)


def _stage_policies(
    agent_tools: ToolsSection | None, global_tools: ToolsSection | None, which: str, agent_prefix: str
) -> tuple[ToolPolicy | None, ToolPolicy | None, str, str]:
    agent_stage = getattr(agent_tools, which, None) if agent_tools else None
    global_stage = getattr(global_tools, which, None) if global_tools else None
    return (
        agent_stage.tools if agent_stage else None,
        global_stage.tools if global_stage else None,
        f"{agent_prefix}.tools.{which}.tools",
        f"tools.{which}.tools",
    )


def _pick(
    agent: ToolPolicy | None, glob: ToolPolicy | None, attr: str, agent_label: str, global_label: str
) -> tuple[list[str], str] | None:
    """A key of a nested stage policy: the agent's when set, else the global one, else None."""
    key = "alsoAllow" if attr == "also_allow" else attr
    for policy, label in ((agent, agent_label), (glob, global_label)):
        value: list[str] | None = getattr(policy, attr) if policy is not None else None
        if value is not None:
            return value, f"{label}.{key}"
    return None


def _sandbox_stage(
    agent_tools: ToolsSection | None, global_tools: ToolsSection | None, prefix: str
) -> _Stage:
    agent, glob, agent_label, global_label = _stage_policies(agent_tools, global_tools, "sandbox", prefix)
    picked_allow = _pick(agent, glob, "allow", agent_label, global_label)
    picked_also = _pick(agent, glob, "also_allow", agent_label, global_label)
    picked_deny = _pick(agent, glob, "deny", agent_label, global_label)

    if picked_allow is not None:
        allow_rules = _rules(*picked_allow)
        allow_label = picked_allow[1]
    else:
        allow_rules = _rules(SANDBOX_DEFAULT_ALLOW, SANDBOX_DEFAULTS_ALLOW_LABEL, configured=False)
        allow_label = SANDBOX_DEFAULTS_ALLOW_LABEL
    also_rules = _rules(*picked_also) if picked_also else []

    if picked_deny is not None:
        deny = _rules(*picked_deny)
    else:
        # An explicit allow (or alsoAllow) entry lifts the matching default deny.
        explicit = _explicit_names([*(allow_rules if picked_allow else []), *also_rules])
        deny = _rules(
            (name for name in SANDBOX_DEFAULT_DENY if name not in explicit),
            SANDBOX_DEFAULTS_DENY_LABEL,
            configured=False,
        )

    allow = None
    if allow_rules:  # `allow: []` = everything
        rules = allow_rules + also_rules
        # `image` joins every allow-list unless the deny list removes it.
        if not any(rule.matches("image") for rule in deny):
            rules += _rules(["image"], allow_label, configured=False)
        allow = _AllowList(allow_label, tuple(rules), _NOT_LISTED)
    return _Stage(tuple(deny), allow)


def max_spawn_depth(config: Config, view: AgentView) -> int:
    """`subagents.maxSpawnDepth` of the agent, else of `agents.defaults`, else 5; clamped to 1–5."""
    defaults = config.document.agents.defaults if config.document.agents else None
    for sub in (view.entry.subagents, defaults.subagents if defaults else None):
        if sub is not None and sub.max_spawn_depth is not None:
            return max(1, min(_MAX_SPAWN_DEPTH_LIMIT, sub.max_spawn_depth))
    return DEFAULT_MAX_SPAWN_DEPTH


def _subagent_stage(
    agent_tools: ToolsSection | None, global_tools: ToolsSection | None, prefix: str, leaf: bool
) -> _Stage:
    agent, glob, agent_label, global_label = _stage_policies(agent_tools, global_tools, "subagents", prefix)
    picked_allow = _pick(agent, glob, "allow", agent_label, global_label)
    picked_also = _pick(agent, glob, "also_allow", agent_label, global_label)
    picked_deny = _pick(agent, glob, "deny", agent_label, global_label)

    allow_rules = _rules(*picked_allow) if picked_allow else []
    also_rules = _rules(*picked_also) if picked_also else []
    explicit = _explicit_names([*allow_rules, *also_rules])
    defaults = SUBAGENT_DENY_ALWAYS + (SUBAGENT_DENY_LEAF if leaf else ())
    deny = _rules(*picked_deny) if picked_deny else []
    deny += _rules(
        (name for name in defaults if name not in explicit), SUBAGENT_DEFAULTS_DENY_LABEL, configured=False
    )
    allow = None
    if allow_rules:
        assert picked_allow is not None
        allow = _AllowList(picked_allow[1], tuple(allow_rules + also_rules), _NOT_LISTED)
    return _Stage(tuple(deny), allow)


def _build_stages(
    config: Config,
    view: AgentView,
    provider: str | None,
    model: str | None,
    sandboxed: bool,
    subagent_depth: int,
) -> tuple[_Stage, ...]:
    global_tools = config.document.tools
    agent_tools = view.entry.tools
    prefix = _agent_prefix(view)
    global_provider = _by_provider(global_tools, provider, model)
    agent_provider = _by_provider(agent_tools, provider, model)
    global_provider_label = f"tools.byProvider{_key_path(global_provider[0])}" if global_provider else ""
    agent_provider_label = (
        f"{prefix}.tools.byProvider{_key_path(agent_provider[0])}" if agent_provider else ""
    )

    stages: list[_Stage | None] = []
    profile: str | None
    also: list[str] | None
    # 1. profile: the agent's, else the global one; alsoAllow likewise.
    if agent_tools is not None and agent_tools.profile is not None:
        profile, profile_label = agent_tools.profile, f"{prefix}.tools.profile"
    else:
        profile = global_tools.profile if global_tools else None
        profile_label = "tools.profile"
    if agent_tools is not None and agent_tools.also_allow is not None:
        also, also_label = agent_tools.also_allow, f"{prefix}.tools.alsoAllow"
    else:
        also = global_tools.also_allow if global_tools else None
        also_label = "tools.alsoAllow"
    stages.append(_profile_stage(profile, profile_label, also, also_label))
    # 2. provider profile: the agent's byProvider entry, else the global one; alsoAllow likewise.
    provider_entries = [
        (e[1], lbl)
        for e, lbl in ((agent_provider, agent_provider_label), (global_provider, global_provider_label))
        if e is not None
    ]
    provider_profile = next(((p.profile, f"{lbl}.profile") for p, lbl in provider_entries if p.profile), None)
    if provider_profile is not None:
        provider_also = next(
            ((p.also_allow, f"{lbl}.alsoAllow") for p, lbl in provider_entries if p.also_allow is not None),
            (None, ""),
        )
        stages.append(_profile_stage(*provider_profile, *provider_also))
    # 3–6. allow/deny: global, global provider, agent, agent provider.
    stages.append(_policy_stage(global_tools, "tools"))
    stages.append(_policy_stage(global_provider[1], global_provider_label) if global_provider else None)
    stages.append(_policy_stage(agent_tools, f"{prefix}.tools"))
    stages.append(_policy_stage(agent_provider[1], agent_provider_label) if agent_provider else None)
    # 7. sandbox; 8. sub-agent.
    if sandboxed:
        stages.append(_sandbox_stage(agent_tools, global_tools, prefix))
    if subagent_depth > 0:
        leaf = subagent_depth >= max_spawn_depth(config, view)
        stages.append(_subagent_stage(agent_tools, global_tools, prefix, leaf))
    return tuple(s for s in stages if s is not None)


# --- entry point ----------------------------------------------------------------------------


def _provider_and_model(
    view: AgentView, provider: str | None, model: str | None
) -> tuple[str | None, str | None]:
    """Defaults come from the agent's primary model (`provider/model`)."""
    if provider is None and model is not None and "/" in model:
        provider, model = model.split("/", 1)
    primary = view.models[0] if view.models else ""
    primary_provider, sep, primary_model = primary.partition("/")
    if provider is None:
        provider = primary_provider if sep else None
        if model is None:
            model = primary_model if sep else primary or None
    elif model is None and sep and provider.strip().lower() == primary_provider.strip().lower():
        model = primary_model
    provider = (provider or "").strip().lower() or None
    model = (model or "").strip() or None
    return provider, model


def _candidates(tools: Iterable[str] | None) -> tuple[str, ...]:
    if tools is None:
        return CATALOG_NAMES
    names = list(dict.fromkeys(n for n in (normalize_tool_name(t) for t in tools) if n))
    known = sorted((n for n in names if n in _CATALOG_INDEX), key=_CATALOG_INDEX.__getitem__)
    return (*known, *(n for n in names if n not in _CATALOG_INDEX))


def _warnings(stages: Iterable[_Stage], candidates: Sequence[str]) -> tuple[str, ...]:
    known = set(CATALOG_NAMES) | set(candidates)
    out: dict[str, None] = {}
    for stage in stages:
        for rule in (*stage.deny, *(stage.allow.rules if stage.allow else ())):
            if not rule.configured:
                continue
            if rule.pattern is not None:
                hit = any(rule.pattern.match(name) for name in known)
            else:
                hit = bool(rule.names & known)
            if not hit:
                out[f"{rule.label}: '{rule.entry}' matches no known tool"] = None
    return tuple(out)


def _evaluate(stages: tuple[_Stage, ...], candidates: tuple[str, ...]) -> ToolPolicyResult:
    allowed: list[str] = []
    removed: list[Removal] = []
    for tool in candidates:
        for stage in stages:
            removal = stage.check(tool)
            if removal is not None:
                removed.append(removal)
                break
        else:
            allowed.append(tool)
    return ToolPolicyResult(tuple(allowed), tuple(removed), _warnings(stages, candidates))


def effective_tools(
    config: Config,
    agent_id: str,
    *,
    provider: str | None = None,
    model: str | None = None,
    sandboxed: bool = False,
    subagent: bool = False,
    spawn_depth: int = 1,
    tools: Iterable[str] | None = None,
) -> ToolPolicyResult:
    """The tools `agent_id` may use, and why each other candidate is not allowed.

    `tools` is the candidate set (default: every catalog tool). `provider`/`model` select the
    `byProvider` entries and default to the agent's primary model. `sandboxed` applies the
    sandbox stage; `subagent` the sub-agent stage, for a sub-agent at `spawn_depth` (1 = spawned
    by a main session; at `maxSpawnDepth` it is a leaf and loses the orchestration tools).
    Raises `UnknownAgentError` for an agent the config does not have. Cached per config version.
    """
    view = config.agent_view(agent_id)
    if view is None:
        raise UnknownAgentError(agent_id, config.agent_ids)
    prov, mod = _provider_and_model(view, provider, model)
    depth = max(1, spawn_depth) if subagent else 0
    candidates = _candidates(tools)
    stage_key = f"tools.policy.stages:{view.id}\0{prov}\0{mod}\0{int(sandboxed)}\0{depth}"
    stages = config.derived(stage_key, lambda c: _build_stages(c, view, prov, mod, sandboxed, depth))
    result_key = f"tools.policy.result:{stage_key}\0{'*' if tools is None else chr(0).join(candidates)}"
    return config.derived(result_key, lambda _c: _evaluate(stages, candidates))
