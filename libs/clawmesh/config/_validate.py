"""Checks that need the whole config: cross-references, shared paths, regexes, dead bindings."""

from __future__ import annotations

import re
from collections.abc import Sequence

from ..ids import DEFAULT_AGENT_ID, normalize_agent_id
from ..routing._bindings import RouteBinding, normalize_binding
from ..routing._peer import peer_kind_matches
from ._errors import Problem
from ._model import AgentView
from ._schema import ConfigFile

__all__ = ["validate"]

KNOWN_PROVIDERS = frozenset({"anthropic", "openai", "echo"})
# Only Discord delivers member roles (and only inside a guild).
_ROLE_CHANNELS = frozenset({"discord"})


def validate(file: ConfigFile, agents: Sequence[AgentView], has_roster: bool) -> list[Problem]:
    problems: list[Problem] = []
    problems += _bindings(file, agents, has_roster)
    problems += _shared_paths(agents)
    problems += _mention_patterns(file, agents)
    problems += _models(file, agents)
    problems += _session(file)
    return problems


def _bindings(file: ConfigFile, agents: Sequence[AgentView], has_roster: bool) -> list[Problem]:
    problems: list[Problem] = []
    ids = {a.id for a in agents}
    normalized: dict[tuple[object, ...], list[RouteBinding]] = {}
    for i, binding in enumerate(file.bindings or ()):
        path = f"$.bindings[{i}]"
        kind = (binding.type or "route").strip().lower()
        if kind == "acp":
            problems.append(
                Problem(f"{path}.type", "ACP bindings are not implemented by clawmesh; ignored", "warning")
            )
            continue
        if kind != "route":
            problems.append(Problem(f"{path}.type", f"expected one of route|acp, got {binding.type!r}"))
            continue
        agent = binding.agent_id.strip()
        if (
            has_roster
            and agent
            and normalize_agent_id(agent) not in ids
            and normalize_agent_id(agent) != DEFAULT_AGENT_ID
        ):
            problems.append(
                Problem(
                    f"{path}.agentId",
                    f"unknown agent '{binding.agent_id}' (configured: {', '.join(sorted(ids))})",
                )
            )
        match = binding.match
        if not match.channel.strip():
            problems.append(
                Problem(f"{path}.match.channel", "empty channel; this binding is ignored", "warning")
            )
            continue
        rb = normalize_binding(binding, i)
        if rb is None:
            continue
        if rb.peer_state == "invalid":
            problems.append(
                Problem(f"{path}.match.peer.id", "empty peer id; this binding never matches", "warning")
            )
            continue
        if rb.roles and rb.guild_id is None and rb.channel not in _ROLE_CHANNELS:
            problems.append(
                Problem(
                    f"{path}.match.roles",
                    f"member roles only come from Discord guilds; on channel '{rb.channel}' this binding never matches",
                    "warning",
                )
            )
        group = normalized.setdefault(_shadow_group(rb), [])
        shadow = next((earlier for earlier in group if _covers(earlier, rb)), None)
        if shadow is not None:
            problems.append(
                Problem(
                    path,
                    f"unreachable: {shadow.path} is listed earlier and matches everything this binding matches",
                    "warning",
                )
            )
        group.append(rb)
    return problems


def _shadow_group(b: RouteBinding) -> tuple[object, ...]:
    """Bindings that could cover one another share this key (same channel and tier, and the
    same peer / guild / team / account where the tier is keyed by it), so the shadow check
    compares each binding with a handful of others, not with every earlier one."""
    if b.tier == "peer":
        return (b.channel, b.tier, b.peer_state, b.peer_class, b.peer_id if b.peer_state == "valid" else None)
    if b.tier in ("guild+roles", "guild"):
        return (b.channel, b.tier, b.guild_id)
    if b.tier == "team":
        return (b.channel, b.tier, b.team_id)
    return (b.channel, b.tier, b.account)


def _covers(a: RouteBinding, b: RouteBinding) -> bool:
    """True when binding `a` (earlier) matches every message `b` matches, in the same tier."""
    if a.channel != b.channel or a.tier != b.tier:
        return False
    if a.account != "*" and a.account != b.account:
        return False
    if a.peer_state != b.peer_state:
        return False
    if a.peer_state == "valid" and (
        a.peer_id != b.peer_id or not peer_kind_matches(a.peer_kind, b.peer_kind)
    ):
        return False
    if a.peer_state == "wildcard" and not peer_kind_matches(a.peer_kind, b.peer_kind):
        return False
    if a.guild_id is not None and a.guild_id != b.guild_id:
        return False
    if a.team_id is not None and a.team_id != b.team_id:
        return False
    if a.roles is None:
        return True
    return b.roles is not None and b.roles <= a.roles


def _shared_paths(agents: Sequence[AgentView]) -> list[Problem]:
    problems: list[Problem] = []
    for attr, key, label in (("workspace", "workspace", "workspace"), ("agent_dir", "agentDir", "agentDir")):
        owners: dict[str, AgentView] = {}
        for agent in agents:
            where = str(getattr(agent, attr))
            if where in owners:
                problems.append(
                    Problem(
                        f"{agent.path}.{key}",
                        f"{label} {where} is shared with agent '{owners[where].id}'; each agent needs its own",
                    )
                )
            else:
                owners[where] = agent
    return problems


def _mention_patterns(file: ConfigFile, agents: Sequence[AgentView]) -> list[Problem]:
    sources: list[tuple[str, list[str]]] = []
    if file.messages and file.messages.group_chat and file.messages.group_chat.mention_patterns:
        sources.append(("$.messages.groupChat.mentionPatterns", file.messages.group_chat.mention_patterns))
    for agent in agents:
        gc = agent.entry.group_chat
        if gc and gc.mention_patterns:
            sources.append((f"{agent.path}.groupChat.mentionPatterns", gc.mention_patterns))
    problems = []
    for path, patterns in sources:
        for i, pattern in enumerate(patterns):
            try:
                re.compile(pattern, re.IGNORECASE)
            except re.error as exc:
                problems.append(Problem(f"{path}[{i}]", f"invalid regular expression {pattern!r}: {exc}"))
    return problems


def _models(file: ConfigFile, agents: Sequence[AgentView]) -> list[Problem]:
    custom = set(file.models.providers) if file.models else set()
    problems = []
    for agent in agents:
        for model in agent.models:
            provider = model.split("/", 1)[0] if "/" in model else "openai"
            if provider not in KNOWN_PROVIDERS and provider not in custom:
                problems.append(
                    Problem(
                        f"{agent.path}.model",
                        f"provider '{provider}' of model '{model}' is not supported "
                        "(anthropic, openai, echo, or one defined under models.providers); turns using it will fail",
                        "warning",
                    )
                )
    return problems


def _session(file: ConfigFile) -> list[Problem]:
    session = file.session
    if session and session.identity_links and (session.dm_scope or "main") == "main":
        return [
            Problem(
                "$.session.identityLinks",
                "identityLinks only apply when session.dmScope is not 'main'; they have no effect now",
                "warning",
            )
        ]
    return []
