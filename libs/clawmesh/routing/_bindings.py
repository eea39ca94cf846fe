"""Route bindings in normalised form, and the tier each one lands in.

A binding lands in exactly one tier, decided by the first property present: a (valid or
wildcard) peer, guild+roles, guild, team, then account (`accountId` ≠ `*`) or channel (`*`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Literal

from ..ids import normalize_account_id
from ._peer import kind_class, normalize_chat_type, normalize_id

if TYPE_CHECKING:
    from ..config import Binding

__all__ = ["TIERS", "PeerState", "RouteBinding", "Tier", "normalize_binding", "normalize_bindings"]

Tier = Literal["peer", "guild+roles", "guild", "team", "account", "channel"]
PeerState = Literal["none", "valid", "wildcard", "invalid"]

# matchedBy value of each evaluation step, in precedence order (peer bindings serve three steps).
TIERS: Final = (
    "binding.peer",
    "binding.peer.parent",
    "binding.peer.wildcard",
    "binding.guild+roles",
    "binding.guild",
    "binding.team",
    "binding.account",
    "binding.channel",
)


@dataclass(frozen=True, slots=True)
class RouteBinding:
    index: int
    agent_id: str
    channel: str
    account: str  # "*" or a normalised account id; an omitted accountId is the literal "default"
    account_given: bool
    peer_state: PeerState
    peer_kind: str | None
    peer_id: str | None
    guild_id: str | None
    team_id: str | None
    roles: frozenset[str] | None  # None when absent or empty (`roles: []` means "no roles")
    role_list: tuple[str, ...]
    dm_scope: str | None
    group_scope: str | None
    tier: Tier

    @property
    def path(self) -> str:
        return f"$.bindings[{self.index}]"

    @property
    def peer_class(self) -> str | None:
        return kind_class(self.peer_kind)


def _account_pattern(raw: str | None) -> tuple[str, bool]:
    trimmed = (raw or "").strip()
    if trimmed == "*":
        return "*", True
    if not trimmed:
        return "default", False
    return normalize_account_id(trimmed), True


def normalize_binding(binding: Binding, index: int) -> RouteBinding | None:
    """The routing view of one config binding; None for bindings routing ignores (non-route, no channel)."""
    if (binding.type or "route").strip().lower() not in ("route", ""):
        return None
    match = binding.match
    channel = match.channel.strip().lower()
    if not channel:
        return None
    account, account_given = _account_pattern(match.account_id)
    peer_state: PeerState = "none"
    peer_kind: str | None = None
    peer_id: str | None = None
    if match.peer is not None:
        peer_kind = normalize_chat_type(match.peer.kind)
        peer_id = normalize_id(match.peer.id)
        if peer_kind is None or not peer_id:
            peer_state = "invalid"
        elif peer_id == "*":
            peer_state = "wildcard"
        else:
            peer_state = "valid"
    guild = normalize_id(match.guild_id) or None
    team = normalize_id(match.team_id) or None
    role_list = tuple(r if isinstance(r, str) else normalize_id(r) for r in (match.roles or ()))
    roles = frozenset(role_list) if role_list else None
    tier: Tier
    if peer_state != "none":
        tier = "peer"
    elif guild and roles:
        tier = "guild+roles"
    elif guild:
        tier = "guild"
    elif team:
        tier = "team"
    else:
        tier = "channel" if account == "*" else "account"
    session = binding.session
    return RouteBinding(
        index=index,
        agent_id=binding.agent_id,
        channel=channel,
        account=account,
        account_given=account_given,
        peer_state=peer_state,
        peer_kind=peer_kind,
        peer_id=peer_id,
        guild_id=guild,
        team_id=team,
        roles=roles,
        role_list=role_list,
        dm_scope=session.dm_scope if session else None,
        group_scope=session.group_scope if session else None,
        tier=tier,
    )


def normalize_bindings(bindings: Sequence[Binding] | None) -> tuple[RouteBinding, ...]:
    out = []
    for i, b in enumerate(bindings or ()):
        rb = normalize_binding(b, i)
        if rb is not None:
            out.append(rb)
    return tuple(out)
