"""Session keys: building, parsing and classifying them exactly as OpenClaw (latest) does.

Shapes (`agent:<agentId>:…`):
  main / collapsed DM           agent:<id>:<mainKey>
  DM per-peer                   agent:<id>:direct:<peer>
  DM per-channel-peer           agent:<id>:<channel>:direct:<peer>
  DM per-account-channel-peer   agent:<id>:<channel>:<account>:direct:<peer>
  group / channel room          agent:<id>:<channel>:<group|channel>:<peer>   (no account)
  thread                        <base>:thread:<threadId>
  sub-agent                     agent:<id>:subagent:<uuid>
Keys are lower-cased, except Signal group ids and Matrix room ids, whose case is meaningful.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping, Sequence
from typing import Any, Final, Literal, NamedTuple

from ..ids import normalize_account_id, normalize_agent_id
from ._peer import normalize_chat_type, normalize_id

__all__ = [
    "ParsedSessionKey",
    "build_agent_main_session_key",
    "build_agent_peer_session_key",
    "build_agent_session_key",
    "build_group_history_key",
    "build_subagent_session_key",
    "classify_session_key_shape",
    "derive_last_route_policy",
    "derive_session_chat_type",
    "get_subagent_depth",
    "is_cron_session_key",
    "is_subagent_session_key",
    "normalize_main_key",
    "normalize_session_peer_id",
    "parse_agent_session_key",
    "resolve_linked_peer_id",
    "resolve_thread_session_keys",
    "to_agent_store_session_key",
]

DEFAULT_MAIN_KEY: Final = "main"
SessionKeyShape = Literal["missing", "agent", "malformed_agent", "legacy_or_alias"]
ChatType = Literal["direct", "group", "channel", "unknown"]

# Spans of a key whose case is kept: Signal group ids (base64) and Matrix room ids (`!Ab:server`).
_CASE_KEPT_SPAN: Final = re.compile(
    r"^(signal:group:|matrix:(?:group|channel):)(.*)$", re.IGNORECASE | re.DOTALL
)
_THREAD_MARK: Final = re.compile(r":thread:", re.IGNORECASE)
_DISCORD_GUILD_CHANNEL: Final = re.compile(r"^discord:(?:[^:]+:)?guild-[^:]+:channel-[^:]+$")


class ParsedSessionKey(NamedTuple):
    agent_id: str
    rest: str


def normalize_main_key(main_key: str | None) -> str:
    trimmed = (main_key or "").strip().lower()
    return trimmed or DEFAULT_MAIN_KEY


def build_agent_main_session_key(agent_id: str, main_key: str | None = None) -> str:
    return f"agent:{normalize_agent_id(agent_id)}:{normalize_main_key(main_key)}"


def _keeps_case(channel: str, kind: str) -> bool:
    return (channel == "signal" and kind == "group") or (channel == "matrix" and kind in ("group", "channel"))


def normalize_session_peer_id(channel: str, kind: str, peer_id: str) -> str:
    """Lower-case a peer id for use in a session key, except where its case is meaningful."""
    return peer_id if _keeps_case(channel, kind) else peer_id.lower()


def resolve_linked_peer_id(
    identity_links: Mapping[str, Sequence[str]] | None, channel: str, peer_id: str
) -> str | None:
    """The canonical identity a DM peer is linked to (`session.identityLinks`), if any.

    Candidates are the lower-cased raw id and `<channel>:<id>`; the first canonical name (in
    object order) listing one of them wins.
    """
    if not identity_links:
        return None
    peer = peer_id.strip()
    if not peer:
        return None
    candidates = {peer.lower()}
    ch = channel.strip().lower()
    if ch:
        candidates.add(f"{ch}:{peer}".lower())
    for canonical, ids in identity_links.items():
        name = canonical.strip()
        if not name or not isinstance(ids, list | tuple):
            continue
        for raw in ids:
            if isinstance(raw, str) and raw.strip().lower() in candidates:
                return name
    return None


def build_agent_peer_session_key(
    *,
    agent_id: str,
    main_key: str | None,
    channel: str,
    account_id: str | None,
    peer_kind: str | None,
    peer_id: str | None,
    identity_links: Mapping[str, Sequence[str]] | None = None,
    dm_scope: str | None = "main",
    group_scope: str | None = None,
) -> str:
    """The session key for one inbound peer (OpenClaw `buildAgentPeerSessionKey`)."""
    kind = peer_kind or "direct"
    aid = normalize_agent_id(agent_id)
    if kind == "direct":
        scope = dm_scope or "main"
        pid = (peer_id or "").strip()
        if scope != "main":
            linked = resolve_linked_peer_id(identity_links, channel, pid)
            if linked:
                pid = linked
        pid = pid.lower()
        if pid:
            if scope == "per-account-channel-peer":
                ch = channel.strip().lower() or "unknown"
                return f"agent:{aid}:{ch}:{normalize_account_id(account_id)}:direct:{pid}"
            if scope == "per-channel-peer":
                ch = channel.strip().lower() or "unknown"
                return f"agent:{aid}:{ch}:direct:{pid}"
            if scope == "per-peer":
                return f"agent:{aid}:direct:{pid}"
        return f"agent:{aid}:{normalize_main_key(main_key)}"
    if group_scope == "main":
        return f"agent:{aid}:{normalize_main_key(main_key)}"
    ch = channel.strip().lower() or "unknown"
    pid = (peer_id or "").strip() or "unknown"
    return f"agent:{aid}:{ch}:{kind}:{normalize_session_peer_id(ch, kind, pid)}"


def build_agent_session_key(
    *,
    agent_id: str,
    channel: str,
    account_id: str | None = None,
    peer: Mapping[str, Any] | Any | None = None,
    dm_scope: str | None = "main",
    group_scope: str | None = None,
    identity_links: Mapping[str, Sequence[str]] | None = None,
    main_key: str | None = None,
) -> str:
    """Public builder (OpenClaw `buildAgentSessionKey`): peer is `{kind, id}` or None (main key)."""
    kind: str | None = None
    pid = ""
    if peer is not None:
        raw_kind = peer.get("kind") if isinstance(peer, Mapping) else getattr(peer, "kind", None)
        raw_id = peer.get("id") if isinstance(peer, Mapping) else getattr(peer, "id", None)
        kind = normalize_chat_type(raw_kind) or (raw_kind if isinstance(raw_kind, str) else None)
        pid = normalize_id(raw_id)
    return build_agent_peer_session_key(
        agent_id=agent_id,
        main_key=main_key,
        channel=channel,
        account_id=account_id,
        peer_kind=kind,
        peer_id=pid,
        identity_links=identity_links,
        dm_scope=dm_scope,
        group_scope=group_scope,
    )


def _lower_key_rest(rest: str) -> str:
    match = _CASE_KEPT_SPAN.match(rest)
    if match is None:
        return rest.lower()
    prefix, tail = match.groups()
    thread = _THREAD_MARK.search(tail)
    if thread is None:
        return prefix.lower() + tail
    return prefix.lower() + tail[: thread.start()] + tail[thread.start() :].lower()


def parse_agent_session_key(session_key: str | None) -> ParsedSessionKey | None:
    """Split `agent:<id>:<rest>`; None for anything else (including empty id or rest)."""
    raw = (session_key or "").strip()
    if len(raw) < 6 or raw[:6].lower() != "agent:":
        return None
    body = raw[6:]
    sep = body.find(":")
    if sep < 0:
        return None
    agent_id = body[:sep].strip().lower()
    rest = body[sep + 1 :]
    if not agent_id or not rest or rest.startswith(":"):
        return None
    return ParsedSessionKey(agent_id, _lower_key_rest(rest))


def classify_session_key_shape(session_key: str | None) -> SessionKeyShape:
    raw = (session_key or "").strip()
    if not raw:
        return "missing"
    if parse_agent_session_key(raw) is not None:
        return "agent"
    return "malformed_agent" if raw.lower().startswith("agent:") else "legacy_or_alias"


def get_subagent_depth(session_key: str | None) -> int:
    """How many `subagent:` levels a key has (a bare leading `subagent:` counts too)."""
    raw = (session_key or "").strip().lower()
    if not raw:
        return 0
    depth = raw.count(":subagent:")
    if raw.startswith("subagent:"):
        depth += 1
    return depth


def is_subagent_session_key(session_key: str | None) -> bool:
    raw = (session_key or "").strip()
    if not raw:
        return False
    if raw.lower().startswith("subagent:"):
        return True
    parsed = parse_agent_session_key(raw)
    return parsed is not None and parsed.rest.startswith("subagent:")


def is_cron_session_key(session_key: str | None) -> bool:
    parsed = parse_agent_session_key(session_key)
    return parsed is not None and parsed.rest.startswith("cron:")


def derive_session_chat_type(session_key: str | None) -> ChatType:
    raw = (session_key or "").strip().lower()
    if not raw:
        return "unknown"
    parsed = parse_agent_session_key(raw)
    scoped = parsed.rest if parsed is not None else raw
    tokens = {t for t in scoped.split(":") if t}
    if "group" in tokens:
        return "group"
    if "channel" in tokens:
        return "channel"
    if "direct" in tokens or "dm" in tokens:
        return "direct"
    if _DISCORD_GUILD_CHANNEL.match(scoped):
        return "channel"
    return "unknown"


def derive_last_route_policy(session_key: str, main_session_key: str) -> Literal["main", "session"]:
    """`main` when the turn lands in the agent's main session, else `session`."""
    return "main" if session_key == main_session_key else "session"


def resolve_thread_session_keys(
    base_session_key: str,
    thread_id: str | None,
    parent_session_key: str | None = None,
    use_suffix: bool = True,
) -> tuple[str, str | None]:
    """`(sessionKey, parentSessionKey)` for a thread: `<base>:thread:<threadId lower-cased>`."""
    tid = (thread_id or "").strip()
    if not tid:
        return base_session_key, None
    key = f"{base_session_key}:thread:{tid.lower()}" if use_suffix else base_session_key
    return key, parent_session_key


def build_subagent_session_key(target_agent_id: str, run_id: str | None = None) -> str:
    """`agent:<target>:subagent:<uuid>` (OpenClaw creates a fresh random UUID per spawn)."""
    return f"agent:{normalize_agent_id(target_agent_id)}:subagent:{run_id or uuid.uuid4()}"


def to_agent_store_session_key(agent_id: str, request_key: str | None, main_key: str | None = None) -> str:
    """A key as stored for an agent: `main`/empty → main key; `agent:` keys kept; else prefixed."""
    raw = (request_key or "").strip()
    if not raw or raw.lower() == DEFAULT_MAIN_KEY:
        return build_agent_main_session_key(agent_id, main_key)
    if raw.lower().startswith("agent:"):
        return raw
    return f"agent:{normalize_agent_id(agent_id)}:{raw.lower()}"


def build_group_history_key(channel: str, account_id: str | None, peer_kind: str, peer_id: str) -> str:
    """`<channel>:<accountId>:<group|channel>:<peerId>` (a history bucket, not a session)."""
    return f"{channel.strip().lower()}:{normalize_account_id(account_id)}:{peer_kind}:{peer_id.strip()}"
