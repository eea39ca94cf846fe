"""Agent-to-agent policy, OpenClaw's latest semantics (`shared/reference/openclaw-behaviour.md`
§4): who may spawn which agent (`subagents.allowAgents`), how deep and how many children,
cross-agent access (`tools.agentToAgent`), and which sessions a session may see
(`tools.sessions.visibility`).

    limits = subagent_limits(config, view)
    why_not = spawn_refusal(config, view, "research")     # None: allowed
    why_not = a2a_refusal(config, "main", "work")          # sessions_send across agents

Refusals are the texts OpenClaw returns, so a model (or a person) that knows OpenClaw reads the
same thing here.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final, Literal

from ..config import AgentView, Config, SubagentDefaults
from ..ids import normalize_agent_id
from .catalog import glob_regex
from .policy import max_spawn_depth

__all__ = [
    "DEFAULT_MAX_CHILDREN",
    "DEFAULT_MAX_CONCURRENT",
    "MAX_PING_PONG_TURNS",
    "SubagentLimits",
    "Visibility",
    "a2a_refusal",
    "allowed_spawn_targets",
    "remote_spawn_refusal",
    "spawn_refusal",
    "subagent_limits",
    "visibility_for",
]

# OpenClaw: `maxChildrenPerAgent` 5 (range 1-20), the `subagent` lane's `maxConcurrent` 8,
# ping-pong hard-coded to 5 turns in the latest build.
DEFAULT_MAX_CHILDREN: Final = 5
DEFAULT_MAX_CONCURRENT: Final = 8
MAX_PING_PONG_TURNS: Final = 5

Visibility = Literal["self", "tree", "agent", "all"]


@dataclass(frozen=True, slots=True)
class SubagentLimits:
    allow_agents: tuple[str, ...]  # normalised; "*" = any configured agent
    max_spawn_depth: int
    max_children: int
    max_concurrent: int
    require_agent_id: bool
    run_timeout: float  # seconds, 0 = none
    model: str | None
    # `agent@gateway` entries (globs: `*@sg`, `*@*`): agents of other gateways of the
    # federation; `*` alone does not reach them
    remote_allow: tuple[str, ...] = ()


def _layers(config: Config, view: AgentView) -> tuple[SubagentDefaults | None, SubagentDefaults | None]:
    defaults = config.document.agents.defaults if config.document.agents else None
    return view.entry.subagents, defaults.subagents if defaults else None


def subagent_limits(config: Config, view: AgentView) -> SubagentLimits:
    """`subagents.*` of the agent, each key falling back to `agents.defaults.subagents`."""
    mine, defaults = _layers(config, view)

    def pick(attr: str) -> object:
        for layer in (mine, defaults):
            value = getattr(layer, attr, None) if layer is not None else None
            if value is not None:
                return value
        return None

    allow = pick("allow_agents")
    model = pick("model")
    children = pick("max_children_per_agent")
    concurrent = pick("max_concurrent")
    timeout = pick("run_timeout_seconds")
    entries = [a.strip() for a in (allow if isinstance(allow, list) else []) if a.strip()]
    return SubagentLimits(
        allow_agents=tuple("*" if a == "*" else normalize_agent_id(a) for a in entries if "@" not in a),
        remote_allow=tuple(a.lower() for a in entries if "@" in a),
        max_spawn_depth=max_spawn_depth(config, view),
        max_children=max(1, min(20, children)) if isinstance(children, int) else DEFAULT_MAX_CHILDREN,
        max_concurrent=max(1, concurrent) if isinstance(concurrent, int) else DEFAULT_MAX_CONCURRENT,
        require_agent_id=pick("require_agent_id") is True,
        run_timeout=float(timeout) if isinstance(timeout, int | float) and timeout > 0 else 0.0,
        model=model if isinstance(model, str) else getattr(model, "primary", None),
    )


def allowed_spawn_targets(config: Config, view: AgentView) -> tuple[str, ...]:
    """The agent ids `view` may name in `sessions_spawn` (`agents_list`): itself, and what
    `subagents.allowAgents` lists (`*`: every configured agent). Stale ids (no longer
    configured) are left out, as OpenClaw's latest build rejects them."""
    allow = subagent_limits(config, view).allow_agents
    configured = config.agent_ids
    if "*" in allow:
        others: Iterable[str] = configured
    else:
        others = (a for a in allow if not config.has_roster or a in configured)
    return tuple(dict.fromkeys((view.id, *others)))


def spawn_refusal(config: Config, view: AgentView, target: str | None) -> str | None:
    """Why `view` may not spawn a run of agent `target` (None: the requester's own agent), or
    None when it may. Spawning one's own agent without `agentId` is always allowed."""
    limits = subagent_limits(config, view)
    if target is None:
        return (
            "sessions_spawn requires agentId (subagents.requireAgentId)" if limits.require_agent_id else None
        )
    wanted = normalize_agent_id(target)
    allowed = allowed_spawn_targets(config, view)
    if config.has_roster and wanted not in config.agent_ids:
        listed = ", ".join(allowed) or "none"
        return f'agentId "{wanted}" is not in the configured agent registry (allowed: {listed})'
    if wanted == view.id or wanted in allowed:
        return None
    allow_text = ", ".join(limits.allow_agents) or "none"
    return f"agentId is not allowed for sessions_spawn (allowed: {allow_text})"


def remote_spawn_refusal(config: Config, view: AgentView, target: str) -> str | None:
    """Why `view` may not spawn `target` = `agent@gateway` (an agent of another gateway), or
    None: this side's `subagents.allowAgents` must list it (`worker@sg`, or a glob: `*@sg`)."""
    limits = subagent_limits(config, view)
    wanted = target.strip().lower()
    if any(p == wanted or ("*" in p and glob_regex(p).match(wanted)) for p in limits.remote_allow):
        return None
    allow_text = ", ".join((*limits.allow_agents, *limits.remote_allow)) or "none"
    return f"agentId is not allowed for sessions_spawn (allowed: {allow_text})"


def _matches(patterns: list[str], agent_id: str) -> bool:
    if not patterns:
        return True  # an empty list means any agent
    agent = agent_id.lower()
    for raw in patterns:
        p = raw.strip().lower()
        if p == "*" or p == agent or ("*" in p and glob_regex(p).match(agent)):
            return True
    return False


def a2a_refusal(config: Config, requester: str, target: str) -> str | None:
    """Why `requester` may not reach a session of agent `target` across agents (None: it may).
    Same agent: always. Otherwise `tools.agentToAgent.enabled` (on unless false, OpenClaw's
    latest default) and *both* agents matching `tools.agentToAgent.allow` (empty = any)."""
    if normalize_agent_id(requester) == normalize_agent_id(target):
        return None
    tools = config.document.tools
    a2a = tools.agent_to_agent if tools else None
    if a2a is not None and a2a.enabled is False:
        return "Agent-to-agent messaging is disabled. Set tools.agentToAgent.enabled=true to allow cross-agent sends."
    allow = a2a.allow if a2a is not None else []
    if not (_matches(allow, requester) and _matches(allow, target)):
        return "Agent-to-agent messaging denied by tools.agentToAgent.allow."
    return None


def visibility_for(config: Config, view: AgentView, *, sandboxed: bool) -> Visibility:
    """`tools.sessions.visibility` (the agent's, else the global one; default `all`), clamped to
    `tree` for a sandboxed session while `sandbox.sessionToolsVisibility` is `spawned` (default)."""
    chosen: Visibility = "all"
    for tools in (view.entry.tools, config.document.tools):
        if tools is not None and tools.sessions is not None and tools.sessions.visibility is not None:
            chosen = tools.sessions.visibility
            break
    if sandboxed and chosen in ("agent", "all"):
        clamp = "spawned"
        defaults = config.document.agents.defaults if config.document.agents else None
        for sandbox in (view.entry.sandbox, defaults.sandbox if defaults else None):
            if sandbox is not None and sandbox.session_tools_visibility is not None:
                clamp = sandbox.session_tools_visibility
                break
        if clamp == "spawned":
            return "tree"
    return chosen
