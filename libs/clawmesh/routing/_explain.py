"""`explain_route`: every tier, every binding, and in plain words why it did or did not match.

The most reported OpenClaw routing problem is a binding that looks right but never applies
(wrong account, case of an id, group vs channel…). This walks the same precedence as
`resolve_route` without the index, so it can say something about *every* binding.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..ids import normalize_account_id
from ._bindings import TIERS, RouteBinding
from ._errors import AgentSelectionRequired
from ._peer import normalize_chat_type, normalize_id, peer_kind_matches
from ._resolve import Route, resolve_route, route_index

if TYPE_CHECKING:
    from ..config import Config

__all__ = ["CandidateExplanation", "RouteExplanation", "TierExplanation", "explain_route"]


@dataclass(slots=True)
class CandidateExplanation:
    path: str
    agent_id: str
    matched: bool
    reasons: list[str]
    chosen: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "binding": self.path,
            "agentId": self.agent_id,
            "matched": self.matched,
            "chosen": self.chosen,
            "reasons": self.reasons,
        }


@dataclass(slots=True)
class TierExplanation:
    matched_by: str
    enabled: bool
    note: str = ""
    candidates: list[CandidateExplanation] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "tier": self.matched_by,
            "enabled": self.enabled,
            "note": self.note,
            "candidates": [c.to_dict() for c in self.candidates],
        }


@dataclass(slots=True)
class RouteExplanation:
    input: dict[str, Any]
    tiers: list[TierExplanation]
    route: Route | None
    error: AgentSelectionRequired | None
    ignored: list[tuple[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "input": self.input,
            "route": self.route.to_dict() if self.route else None,
            "error": self.error.to_dict() if self.error else None,
            "tiers": [t.to_dict() for t in self.tiers],
            "ignored": [{"binding": p, "reason": r} for p, r in self.ignored],
        }

    def render(self) -> str:
        """Readable multi-line text (what `clawmesh route --explain` prints)."""
        lines = []
        channel = self.input["channel"]
        for tier in self.tiers:
            state = "" if tier.enabled else " (skipped)"
            lines.append(f"{tier.matched_by}{state}{': ' + tier.note if tier.note else ''}")
            elsewhere = 0
            for c in tier.candidates:
                if c.reasons and c.reasons[0].startswith("channel ") and not c.matched:
                    elsewhere += 1  # bindings of other channels: counted, not listed
                    continue
                mark = "✔" if c.chosen else ("~" if c.matched else "✘")
                lines.append(f"  {mark} {c.path} → {c.agent_id}: {'; '.join(c.reasons)}")
            if elsewhere:
                lines.append(
                    f"  ({elsewhere} binding{'s' if elsewhere != 1 else ''} for other channels than '{channel}')"
                )
        for path, reason in self.ignored:
            lines.append(f"ignored {path}: {reason}")
        if self.route is not None:
            r = self.route
            lines.append(f"⇒ agent '{r.agent_id}' via {r.matched_by}, session {r.session_key}")
        elif self.error is not None:
            lines.append(f"⇒ {self.error.code}: {self.error}")
        return "\n".join(lines)


def _peer(value: Any) -> tuple[str | None, str] | None:
    if value is None:
        return None
    raw_kind = value.get("kind") if isinstance(value, Mapping) else getattr(value, "kind", None)
    raw_id = value.get("id") if isinstance(value, Mapping) else getattr(value, "id", None)
    kind = normalize_chat_type(raw_kind) or (raw_kind if isinstance(raw_kind, str) else None)
    return kind, normalize_id(raw_id)


def _id_reason(what: str, want: str, got: str) -> str:
    if want.lower() == got.lower():
        return f"{what} '{want}' ≠ '{got}': ids match case-sensitively"
    return f"{what} '{want}' ≠ '{got}'"


def _reasons(
    b: RouteBinding,
    channel: str,
    account: str,
    scope_peer: tuple[str | None, str] | None,
    peer_label: str,
    guild: str,
    team: str,
    roles: frozenset[str],
) -> list[str]:
    why: list[str] = []
    if b.channel != channel:
        why.append(f"channel '{b.channel}' ≠ '{channel}'")
    if b.account != "*" and b.account != account:
        if not b.account_given:
            why.append(
                f"binding has no accountId, so it only matches account 'default' (message is from '{account}'); "
                "use accountId '*' for every account"
            )
        else:
            why.append(f"account '{b.account}' ≠ '{account}'")
    if b.peer_state in ("valid", "wildcard"):
        if scope_peer is None:
            why.append(f"message has no {peer_label}")
        else:
            kind, pid = scope_peer
            if not peer_kind_matches(b.peer_kind, kind):
                extra = " (group and channel are interchangeable; direct is not)" if kind else ""
                why.append(f"{peer_label} kind '{b.peer_kind}' does not match '{kind}'{extra}")
            if b.peer_state == "valid" and b.peer_id != pid:
                why.append(_id_reason(f"{peer_label} id", b.peer_id or "", pid))
    if b.guild_id is not None and b.guild_id != guild:
        why.append(
            _id_reason("guild", b.guild_id, guild)
            if guild
            else f"binding needs guild '{b.guild_id}'; message has none"
        )
    if b.team_id is not None and b.team_id != team:
        why.append(
            _id_reason("team", b.team_id, team)
            if team
            else f"binding needs team '{b.team_id}'; message has none"
        )
    if b.roles is not None and b.roles.isdisjoint(roles):
        listed = ", ".join(b.role_list)
        why.append(
            f"member has none of the roles {listed}"
            if roles
            else f"binding needs one of the roles {listed}; message has no member roles"
        )
    return why


@dataclass(frozen=True, slots=True)
class _Message:
    """The routing input, normalised the way `resolve_route` normalises it."""

    channel: str
    account: str
    peer: tuple[str | None, str] | None
    parent: tuple[str | None, str] | None
    guild: str
    team: str
    roles: frozenset[str]


def _tier_gates(m: _Message) -> dict[str, tuple[bool, str]]:
    """Whether each tier is evaluated for this message at all, and why not."""
    return {
        "binding.peer": (m.peer is not None, "message has no peer"),
        "binding.peer.parent": (
            m.parent is not None and bool(m.parent[1]),
            "message has no parent peer (thread parent)",
        ),
        "binding.peer.wildcard": (m.peer is not None, "message has no peer"),
        "binding.guild+roles": (bool(m.guild) and bool(m.roles), "needs both a guild id and member roles"),
        "binding.guild": (bool(m.guild), "message has no guild id"),
        "binding.team": (bool(m.team), "message has no team id"),
        "binding.account": (True, ""),
        "binding.channel": (True, ""),
    }


def _tier_members(bindings: Iterable[RouteBinding]) -> dict[str, list[RouteBinding]]:
    """The bindings each tier looks at, in config order."""
    members: dict[str, list[RouteBinding]] = {name: [] for name in TIERS}
    for b in bindings:
        if b.peer_state == "valid":
            members["binding.peer"].append(b)
            members["binding.peer.parent"].append(b)
        elif b.peer_state == "wildcard":
            members["binding.peer.wildcard"].append(b)
        if b.tier != "peer":  # peer bindings serve the three peer steps above
            members[f"binding.{b.tier}"].append(b)
    return members


def _explain_tiers(
    config: Config, m: _Message
) -> tuple[list[TierExplanation], tuple[str, RouteBinding] | None]:
    """Every binding of every tier with why it did or did not match; the first match wins."""
    index = route_index(config)
    gates = _tier_gates(m)
    members = _tier_members(index.bindings)
    tiers: list[TierExplanation] = []
    winner: tuple[str, RouteBinding] | None = None
    for name in TIERS:
        on, why_off = gates[name]
        tier = TierExplanation(name, on, "" if on else why_off)
        parent_tier = name == "binding.peer.parent"
        scope_peer, label = (m.parent, "parent peer") if parent_tier else (m.peer, "peer")
        for b in members[name]:
            reasons = _reasons(b, m.channel, m.account, scope_peer, label, m.guild, m.team, m.roles)
            matched = on and not reasons
            cand = CandidateExplanation(b.path, b.agent_id, matched, reasons)
            if matched and winner is None:
                winner = (name, b)
                cand.chosen = True
                cand.reasons = ["matches: every field of the binding matches this message"]
                agent = index.agent_for[b.index]
                if isinstance(agent, AgentSelectionRequired):
                    cand.reasons.append(f"but {agent.message} ({agent.code})")
            elif matched and winner is not None and winner[1] is not b:
                cand.reasons = [
                    f"matches, but {winner[1].path} ({winner[0]}) is evaluated first"
                    if winner[0] != name
                    else f"matches, but {winner[1].path} comes first in config order"
                ]
            elif not on and not reasons:
                cand.reasons = [f"tier skipped: {why_off}"]
            tier.candidates.append(cand)
        tiers.append(tier)
    return tiers, winner


def _default_tier(
    winner: tuple[str, RouteBinding] | None, route: Route | None, error: AgentSelectionRequired | None
) -> TierExplanation:
    default = TierExplanation("default", winner is None, "" if winner is None else "a binding matched")
    if winner is None:
        if route is not None:
            default.note = f"no binding matched; default agent '{route.agent_id}'"
        elif error is not None:
            default.note = f"no binding matched and {error.hint}"
    return default


def explain_route(
    config: Config,
    *,
    channel: str,
    account_id: str | None = None,
    peer: Mapping[str, Any] | Any | None = None,
    parent_peer: Mapping[str, Any] | Any | None = None,
    guild_id: str | int | None = None,
    team_id: str | int | None = None,
    member_role_ids: Iterable[str] | None = (),
    dm_scope: str | None = None,
    group_scope: str | None = None,
    default_agent_id: str | None = None,
) -> RouteExplanation:
    """Explain a routing decision tier by tier; the outcome is exactly `resolve_route`'s."""
    roles_tuple = tuple(member_role_ids or ())
    m = _Message(
        channel=channel.strip().lower() if isinstance(channel, str) else "",
        account=normalize_account_id(account_id),
        peer=_peer(peer),
        parent=_peer(parent_peer),
        guild=normalize_id(guild_id),
        team=normalize_id(team_id),
        roles=frozenset(r if isinstance(r, str) else str(r) for r in roles_tuple),
    )
    kept = {b.index for b in route_index(config).bindings}
    ignored = [
        (f"$.bindings[{i}]", _ignored_reason(b))
        for i, b in enumerate(config.document.bindings or ())
        if i not in kept
    ]
    tiers, winner = _explain_tiers(config, m)
    route: Route | None = None
    error: AgentSelectionRequired | None = None
    try:
        route = resolve_route(
            config,
            channel=channel,
            account_id=account_id,
            peer=peer,
            parent_peer=parent_peer,
            guild_id=guild_id,
            team_id=team_id,
            member_role_ids=roles_tuple,
            dm_scope=dm_scope,
            group_scope=group_scope,
            default_agent_id=default_agent_id,
        )
    except AgentSelectionRequired as exc:
        error = exc
    tiers.append(_default_tier(winner, route, error))
    return RouteExplanation(
        input={
            "channel": m.channel,
            "accountId": m.account,
            "peer": {"kind": m.peer[0], "id": m.peer[1]} if m.peer else None,
            "parentPeer": {"kind": m.parent[0], "id": m.parent[1]} if m.parent else None,
            "guildId": m.guild or None,
            "teamId": m.team or None,
            "memberRoleIds": sorted(m.roles),
        },
        tiers=tiers,
        route=route,
        error=error,
        ignored=ignored,
    )


def _ignored_reason(binding: Any) -> str:
    kind = (getattr(binding, "type", None) or "route").strip().lower()
    if kind != "route":
        return f"type '{kind}' is not a route binding"
    return "empty channel"
