"""Routing's judgement of a config's bindings, run by the loader as one of the domain checks:
bindings naming unknown agents refuse the config; dead or shadowed ones are warned about."""

from __future__ import annotations

from ..config import Config, Problem
from ..ids import DEFAULT_AGENT_ID, normalize_agent_id
from ._bindings import RouteBinding, normalize_binding
from ._peer import peer_kind_matches

__all__ = ["config_checks"]

# Only Discord delivers member roles (and only inside a guild).
_ROLE_CHANNELS = frozenset({"discord"})


def config_checks(config: Config) -> list[Problem]:
    """Bindings that name unknown agents (errors), and ones that can never match (warnings)."""
    problems: list[Problem] = []
    ids = set(config.agent_ids)
    has_roster = config.has_roster
    normalized: dict[tuple[object, ...], list[RouteBinding]] = {}
    for i, binding in enumerate(config.document.bindings or ()):
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
