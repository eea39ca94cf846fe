"""Routing: which agent and session an inbound message belongs to (OpenClaw semantics, exactly).

from clawmesh.routing import resolve_route
route = resolve_route(config, channel="discord", peer={"kind": "channel", "id": "c1"}, guild_id="g1")
route.agent_id, route.session_key, route.matched_by
"""

from ..ids import (
    DEFAULT_ACCOUNT_ID,
    DEFAULT_AGENT_ID,
    is_valid_agent_id,
    normalize_account_id,
    normalize_agent_id,
    normalize_optional_account_id,
)
from ._bindings import TIERS, RouteBinding, normalize_bindings
from ._checks import config_checks
from ._errors import AGENT_SELECTION_REQUIRED, AgentSelectionRequired
from ._explain import CandidateExplanation, RouteExplanation, TierExplanation, explain_route
from ._peer import normalize_chat_type, peer_kind_matches
from ._resolve import Route, RouteIndex, resolve_route, route_index
from ._session_key import (
    ParsedSessionKey,
    build_agent_main_session_key,
    build_agent_peer_session_key,
    build_agent_session_key,
    build_group_history_key,
    build_subagent_session_key,
    classify_session_key_shape,
    derive_last_route_policy,
    derive_session_chat_type,
    get_subagent_depth,
    is_cron_session_key,
    is_subagent_session_key,
    normalize_main_key,
    normalize_session_peer_id,
    parse_agent_session_key,
    resolve_linked_peer_id,
    resolve_thread_session_keys,
    to_agent_store_session_key,
)

__all__ = [
    "AGENT_SELECTION_REQUIRED",
    "DEFAULT_ACCOUNT_ID",
    "DEFAULT_AGENT_ID",
    "TIERS",
    "AgentSelectionRequired",
    "CandidateExplanation",
    "ParsedSessionKey",
    "Route",
    "RouteBinding",
    "RouteExplanation",
    "RouteIndex",
    "TierExplanation",
    "build_agent_main_session_key",
    "build_agent_peer_session_key",
    "build_agent_session_key",
    "build_group_history_key",
    "build_subagent_session_key",
    "classify_session_key_shape",
    "config_checks",
    "derive_last_route_policy",
    "derive_session_chat_type",
    "explain_route",
    "get_subagent_depth",
    "is_cron_session_key",
    "is_subagent_session_key",
    "is_valid_agent_id",
    "normalize_account_id",
    "normalize_agent_id",
    "normalize_bindings",
    "normalize_chat_type",
    "normalize_main_key",
    "normalize_optional_account_id",
    "normalize_session_peer_id",
    "parse_agent_session_key",
    "peer_kind_matches",
    "resolve_linked_peer_id",
    "resolve_route",
    "resolve_thread_session_keys",
    "route_index",
    "to_agent_store_session_key",
]
