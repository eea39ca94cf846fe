"""`resolve_route`: inbound message → agent and session key, with OpenClaw's precedence.

The index is built once per config (bindings bucketed by channel, account and tier, and keyed
by peer / guild / team / role inside each tier), so a decision costs a handful of dict lookups
whatever the number of bindings or accounts — OpenClaw rebuilds an O(n) index the first time
it sees an account. Repeated inputs are answered from a bounded per-config LRU cache.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Final, Literal, NamedTuple

from ..ids import DEFAULT_AGENT_ID, js_lower_trim, js_trim, normalize_account_id, normalize_agent_id
from ._bindings import RouteBinding, normalize_bindings
from ._errors import AgentSelectionRequired
from ._peer import kind_class, normalize_chat_type, normalize_id, peer_kind_matches
from ._session_key import build_agent_peer_session_key, normalize_main_key, normalize_session_peer_id

if TYPE_CHECKING:
    from ..config import Config

__all__ = ["Route", "RouteIndex", "resolve_route", "route_index"]

_CACHE_LIMIT: Final = 4096

MatchedBy = Literal[
    "binding.peer",
    "binding.peer.parent",
    "binding.peer.wildcard",
    "binding.guild+roles",
    "binding.guild",
    "binding.team",
    "binding.account",
    "binding.channel",
    "default",
    "explicit",  # clawmesh: the caller named the agent (OpenAI `model`), bindings were skipped
]


class Route(NamedTuple):
    """A routing decision. Immutable; equal inputs give equal routes."""

    agent_id: str
    channel: str
    account_id: str
    session_key: str
    main_session_key: str
    last_route_policy: Literal["main", "session"]
    matched_by: MatchedBy
    dm_scope: str
    group_scope: str
    binding_index: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """OpenClaw's `ResolvedAgentRoute` shape (camelCase keys)."""
        return {
            "agentId": self.agent_id,
            "channel": self.channel,
            "accountId": self.account_id,
            "sessionKey": self.session_key,
            "mainSessionKey": self.main_session_key,
            "lastRoutePolicy": self.last_route_policy,
            "matchedBy": self.matched_by,
            "dmScope": self.dm_scope,
            "groupScope": self.group_scope,
        }


class _Bucket:
    """Bindings of one (channel, account pattern), split by tier and keyed for O(1) lookup."""

    __slots__ = ("guild", "guild_roles", "peer", "rest_first_plain", "rest_roles", "team", "wildcard")

    def __init__(self) -> None:
        self.peer: dict[tuple[str | None, str | None], list[RouteBinding]] = {}
        self.wildcard: dict[str | None, list[RouteBinding]] = {}
        self.guild_roles: dict[str, dict[str, list[RouteBinding]]] = {}
        self.guild: dict[str, list[RouteBinding]] = {}
        self.team: dict[str, list[RouteBinding]] = {}
        # Account/channel tier: the first binding without roles always matches, so later
        # role-less ones never can; role-bearing ones are keyed by each role they accept.
        self.rest_first_plain: RouteBinding | None = None
        self.rest_roles: dict[str, list[RouteBinding]] = {}

    def add(self, b: RouteBinding) -> None:
        if b.tier == "peer":
            if b.peer_state == "valid":
                self.peer.setdefault((b.peer_class, b.peer_id), []).append(b)
            elif b.peer_state == "wildcard":
                self.wildcard.setdefault(b.peer_class, []).append(b)
            # invalid peers never match (OpenClaw drops them from its index)
        elif b.tier == "guild+roles":
            by_role = self.guild_roles.setdefault(b.guild_id or "", {})
            for role in b.roles or ():
                by_role.setdefault(role, []).append(b)
        elif b.tier == "guild":
            self.guild.setdefault(b.guild_id or "", []).append(b)
        elif b.tier == "team":
            self.team.setdefault(b.team_id or "", []).append(b)
        elif b.roles:
            for role in b.roles:
                self.rest_roles.setdefault(role, []).append(b)
        elif self.rest_first_plain is None:
            self.rest_first_plain = b


class RouteIndex:
    """Everything a decision needs from one config version, precomputed."""

    __slots__ = (
        "agent_for",
        "bindings",
        "buckets",
        "cache",
        "config",
        "default_agent",
        "default_error",
        "dm_scope",
        "group_scope",
        "identity_links",
        "main_key",
    )

    def __init__(self, config: Config) -> None:
        self.config = config
        self.bindings = normalize_bindings(config.document.bindings)
        self.buckets: dict[str, dict[str, _Bucket]] = {}
        for b in self.bindings:
            self.buckets.setdefault(b.channel, {}).setdefault(b.account, _Bucket()).add(b)
        # Binding agent ids resolve against the roster once, not per message.
        self.agent_for: dict[int, str | AgentSelectionRequired] = {
            b.index: _pick_binding_agent(config, b.agent_id) for b in self.bindings
        }
        self.default_agent = config.default_agent_id
        self.default_error = config.default_agent_problem
        session = config.settings.session
        self.dm_scope: str = session.dm_scope
        self.group_scope: str = session.group_scope
        self.main_key = normalize_main_key(session.main_key)
        self.identity_links = session.identity_links
        # LRU: a plain dict evicted with next(iter(...)) walks the tombstones its deletions
        # leave at the front, O(n) per insert once the cache is full.
        self.cache: OrderedDict[tuple[Any, ...], Route] = OrderedDict()


def route_index(config: Config) -> RouteIndex:
    """The (cached) index of a config; built on first use, never rebuilt for the same config."""
    return config.derived("routing.index", RouteIndex)


def _pick_binding_agent(config: Config, raw_agent_id: str) -> str | AgentSelectionRequired:
    """OpenClaw `pickFirstExistingAgentId` (latest): unknown ids fail closed, `main` is always honoured."""
    if not raw_agent_id.strip():
        return config.default_agent_id or AgentSelectionRequired(
            "Binding has an empty agentId and no default agent is configured.",
            hint=config.default_agent_problem or "",
        )
    normalized = normalize_agent_id(raw_agent_id)
    if not config.has_roster:
        return normalized
    view = config.agent(normalized)
    if view is not None:
        return view.id
    if normalized == DEFAULT_AGENT_ID:
        return DEFAULT_AGENT_ID
    return AgentSelectionRequired(
        f'Binding agentId "{raw_agent_id}" does not match any configured agent.',
        hint=f'Update the binding agentId "{raw_agent_id}" to a configured agent.',
    )


_CHAT_TYPES: Final = {"direct": "direct", "dm": "direct", "group": "group", "channel": "channel"}
_NO_ROLES: Final[frozenset[str]] = frozenset()
Peer = tuple[str | None, str]


def _peer_parts(peer: Any) -> Peer | None:
    if peer is None:
        return None
    if type(peer) is dict or isinstance(peer, Mapping):
        raw_kind, raw_id = peer.get("kind"), peer.get("id")
    else:
        raw_kind, raw_id = getattr(peer, "kind", None), getattr(peer, "id", None)
    kind = _CHAT_TYPES.get(raw_kind) if type(raw_kind) is str else None
    if kind is None:
        kind = normalize_chat_type(raw_kind) or (raw_kind if isinstance(raw_kind, str) else None)
    return kind, js_trim(raw_id) if type(raw_id) is str else normalize_id(raw_id)


def _pick(
    own: list[RouteBinding] | None,
    anyacct: list[RouteBinding] | None,
    peer: Peer | None,
    guild: str,
    team: str,
    roles: frozenset[str],
) -> RouteBinding | None:
    """First binding in config order, across the account's and the `*` candidates, whose scope
    matches (OpenClaw `matchesBindingScope`: every field the binding sets must match)."""
    if own:
        candidates = sorted(own + anyacct, key=_by_index) if anyacct else own
    elif anyacct:
        candidates = anyacct
    else:
        return None
    for b in candidates:
        if b.peer_state == "valid" and (
            peer is None or b.peer_id != peer[1] or not peer_kind_matches(b.peer_kind, peer[0])
        ):
            continue
        if b.guild_id is not None and b.guild_id != guild:
            continue
        if b.team_id is not None and b.team_id != team:
            continue
        if b.roles is None or not b.roles.isdisjoint(roles):
            return b
    return None


def _by_index(b: RouteBinding) -> int:
    return b.index


def _roles_lists(bucket: _Bucket | None, guild: str, roles: frozenset[str]) -> list[RouteBinding] | None:
    by_role = bucket.guild_roles.get(guild) if bucket is not None else None
    if not by_role:
        return None
    found: list[RouteBinding] = []
    for role in roles:
        lst = by_role.get(role)
        if lst:
            found.extend(lst)
    if len(found) > 1:
        found.sort(key=_by_index)
    return found


def _exact_peer(
    own: _Bucket | None, anyacct: _Bucket | None, peer: Peer, guild: str, team: str, roles: frozenset[str]
) -> RouteBinding | None:
    key = (kind_class(peer[0]), peer[1])
    return _pick(
        own.peer.get(key) if own else None,
        anyacct.peer.get(key) if anyacct else None,
        peer,
        guild,
        team,
        roles,
    )


def _evaluate(
    own: _Bucket | None,
    anyacct: _Bucket | None,
    peer: Peer | None,
    parent: Peer | None,
    guild: str,
    team: str,
    roles: frozenset[str],
) -> tuple[RouteBinding, MatchedBy] | None:
    if peer is not None:
        hit = _exact_peer(own, anyacct, peer, guild, team, roles)
        if hit is not None:
            return hit, "binding.peer"
    if parent is not None and parent[1]:
        # the thread's parent is matched like a peer, and is the scope the other fields see
        hit = _exact_peer(own, anyacct, parent, guild, team, roles)
        if hit is not None:
            return hit, "binding.peer.parent"
    if peer is not None:
        cls = kind_class(peer[0])
        hit = _pick(
            own.wildcard.get(cls) if own else None,
            anyacct.wildcard.get(cls) if anyacct else None,
            peer,
            guild,
            team,
            roles,
        )
        if hit is not None:
            return hit, "binding.peer.wildcard"
    if guild:
        if roles:
            hit = _pick(
                _roles_lists(own, guild, roles), _roles_lists(anyacct, guild, roles), peer, guild, team, roles
            )
            if hit is not None:
                return hit, "binding.guild+roles"
        hit = _pick(
            own.guild.get(guild) if own else None,
            anyacct.guild.get(guild) if anyacct else None,
            peer,
            guild,
            team,
            roles,
        )
        if hit is not None:
            return hit, "binding.guild"
    if team:
        hit = _pick(
            own.team.get(team) if own else None,
            anyacct.team.get(team) if anyacct else None,
            peer,
            guild,
            team,
            roles,
        )
        if hit is not None:
            return hit, "binding.team"
    return None


def _rest(bucket: _Bucket | None, roles: frozenset[str]) -> RouteBinding | None:
    if bucket is None:
        return None
    best = bucket.rest_first_plain
    if roles and bucket.rest_roles:
        for role in roles:
            lst = bucket.rest_roles.get(role)
            if lst and (best is None or lst[0].index < best.index):
                best = lst[0]
    return best


def resolve_route(
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
) -> Route:
    """Choose the agent and session for an inbound message (OpenClaw `resolveAgentRoute`, latest).

    Raises `AgentSelectionRequired` when the matched binding names an agent that is not
    configured, or when nothing matches and no single default agent exists.
    """
    index = route_index(config)
    roles_key = tuple(member_role_ids or ())
    key: tuple[Any, ...] | None = (
        channel,
        account_id,
        _raw_peer_key(peer),
        _raw_peer_key(parent_peer),
        guild_id,
        team_id,
        roles_key,
        dm_scope,
        group_scope,
        default_agent_id,
    )
    cache = index.cache
    try:
        cached = cache.get(key)  # type: ignore[arg-type]
    except TypeError:  # an unhashable input: resolve without the cache
        key, cached = None, None
    if cached is not None:
        try:
            cache.move_to_end(key)  # type: ignore[arg-type]
        except KeyError:  # another thread evicted it meanwhile
            pass
        return cached
    route = _resolve_uncached(
        index,
        channel,
        account_id,
        peer,
        parent_peer,
        guild_id,
        team_id,
        roles_key,
        dm_scope,
        group_scope,
        default_agent_id,
    )
    if key is not None:
        if len(cache) >= _CACHE_LIMIT:
            try:
                cache.popitem(last=False)
            except KeyError:  # emptied by another thread meanwhile
                pass
        cache[key] = route
    return route


def _raw_peer_key(peer: Any) -> tuple[Any, Any] | None:
    if peer is None:
        return None
    if isinstance(peer, Mapping):
        return peer.get("kind"), peer.get("id")
    return getattr(peer, "kind", None), getattr(peer, "id", None)


def _resolve_uncached(
    index: RouteIndex,
    channel: str,
    account_id: str | None,
    peer_in: Any,
    parent_in: Any,
    guild_in: Any,
    team_in: Any,
    roles_in: tuple[Any, ...],
    dm_in: str | None,
    gs_in: str | None,
    default_agent_id: str | None,
) -> Route:
    ch = js_lower_trim(channel)
    acct = normalize_account_id(account_id)
    peer = _peer_parts(peer_in)
    parent = _peer_parts(parent_in) if parent_in is not None else None
    guild = normalize_id(guild_in) if guild_in is not None else ""
    team = normalize_id(team_in) if team_in is not None else ""
    roles = frozenset(r if isinstance(r, str) else str(r) for r in roles_in) if roles_in else _NO_ROLES
    hit: tuple[RouteBinding, MatchedBy] | None = None
    by_channel = index.buckets.get(ch)
    if by_channel:
        own = by_channel.get(acct)
        anyacct = by_channel.get("*")
        hit = _evaluate(own, anyacct, peer, parent, guild, team, roles)
        if hit is None:
            b = _rest(own, roles)
            if b is not None:
                hit = (b, "binding.account")
            else:
                b = _rest(anyacct, roles)
                if b is not None:
                    hit = (b, "binding.channel")
    binding: RouteBinding | None
    if hit is not None:
        binding, matched_by = hit
        agent = index.agent_for[binding.index]
    else:
        binding, matched_by = None, "default"
        agent = _default_agent(index, default_agent_id, ch, acct)
    if isinstance(agent, AgentSelectionRequired):
        raise AgentSelectionRequired(agent.message, hint=agent.hint, channel=ch, account_id=acct)
    dm = (binding.dm_scope if binding else None) or dm_in or index.dm_scope
    gs = (binding.group_scope if binding else None) or gs_in or index.group_scope
    main_session_key = f"agent:{agent}:{index.main_key}"
    session_key = _session_key(index, agent, main_session_key, ch, acct, peer, dm, gs)
    return Route(
        agent,
        ch,
        acct,
        session_key,
        main_session_key,
        "main" if session_key == main_session_key else "session",
        matched_by,
        dm,
        gs,
        binding.index if binding else None,
    )


def _session_key(
    index: RouteIndex, agent: str, main_key: str, ch: str, acct: str, peer: Peer | None, dm: str, gs: str
) -> str:
    """`build_agent_peer_session_key` for already-normalised inputs (the hot path skips re-checks)."""
    kind = peer[0] if peer is not None else "direct"
    if kind == "direct" or kind is None:
        if dm == "main" or peer is None:
            return main_key
        # OpenClaw: a DM peer without an id is the peer `unknown`, not the main session
        pid = peer[1].lower() or "unknown"
        if index.identity_links:
            return build_agent_peer_session_key(
                agent_id=agent,
                main_key=index.main_key,
                channel=ch,
                account_id=acct,
                peer_kind="direct",
                peer_id=peer[1] or "unknown",
                identity_links=index.identity_links,
                dm_scope=dm,
                group_scope=gs,
            )
        if dm == "per-channel-peer":
            return f"agent:{agent}:{ch or 'unknown'}:direct:{pid}"
        if dm == "per-account-channel-peer":
            return f"agent:{agent}:{ch or 'unknown'}:{acct}:direct:{pid}"
        if dm == "per-peer":
            return f"agent:{agent}:direct:{pid}"
        return main_key
    if gs == "main":
        return main_key
    pid = peer[1] if peer is not None and peer[1] else "unknown"
    return f"agent:{agent}:{ch or 'unknown'}:{kind}:{normalize_session_peer_id(ch, kind, pid)}"


def _default_agent(
    index: RouteIndex, default_agent_id: str | None, channel: str, account: str
) -> str | AgentSelectionRequired:
    if default_agent_id and default_agent_id.strip():
        return _pick_binding_agent(index.config, default_agent_id)
    if index.default_agent is not None:
        return index.default_agent
    if not index.config.has_roster:
        return AgentSelectionRequired(
            "No agents configured.",
            hint="Add an agent to agents.list (or agents.entries), or bind this channel.",
        )
    return AgentSelectionRequired(
        f"No agent owns {channel}:{account} and no single default agent is configured.",
        hint=(
            f"Add a channel-wide binding for {channel}:{account} "
            f'(e.g. {{"agentId": "<id>", "match": {{"channel": "{channel}", "accountId": "*"}}}}), '
            'or mark exactly one agent "default": true.'
        ),
    )
