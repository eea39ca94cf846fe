"""Session keys: building, parsing and classifying them exactly as OpenClaw 2026.9.6 does.

Shapes (`agent:<agentId>:…`):
  main / collapsed DM           agent:<id>:<mainKey>
  DM per-peer                   agent:<id>:direct:<peer>
  DM per-channel-peer           agent:<id>:<channel>:direct:<peer>
  DM per-account-channel-peer   agent:<id>:<channel>:<account>:direct:<peer>
  group / channel room          agent:<id>:<channel>:<group|channel>:<peer>   (no account)
  thread                        <base>:thread:<threadId>
  sub-agent                     agent:<id>:subagent:<uuid>
Keys are lower-cased, except Signal group ids and Matrix room ids (with a Matrix thread's event
id), whose case is meaningful. tests/unit/test_oracle_session_keys.py holds every function here
to OpenClaw's own output on generated and adversarial keys (scripts/oracle/ regenerates it).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from typing import Any, Final, Literal, NamedTuple

from ..ids import js_lower_trim, js_trim, normalize_account_id, normalize_agent_id
from ._peer import normalize_id

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
    "normalize_session_key",
    "normalize_session_peer_id",
    "parse_agent_session_key",
    "resolve_linked_peer_id",
    "resolve_thread_session_keys",
    "to_agent_store_session_key",
]

DEFAULT_MAIN_KEY: Final = "main"
SessionKeyShape = Literal["missing", "agent", "malformed_agent", "legacy_or_alias"]
ChatType = Literal["direct", "group", "channel", "unknown"]

# re.ASCII because JavaScript's /i without /u folds only ASCII letters here (Python's Unicode
# folding would read `ſignal` as `signal`). JavaScript's `$` (no /m) is end of input only, so
# patterns use fullmatch/\Z, and its `.` excludes every line terminator, not just `\n`.
_SIGNAL_GROUP_ID: Final = re.compile(r"(?:^|:)signal:group:([^:]+)", re.IGNORECASE | re.ASCII)
_MATRIX_ROOM_KEY: Final = re.compile(
    r"(?:(?:agent:[^:]*:)+:*)?matrix:(?:channel|group):", re.IGNORECASE | re.ASCII
)
_THREAD_MARKER: Final = ":thread:"
_SUBAGENT_MARK: Final = re.compile(r"(?:^|:)subagent:")
_NOT_LINE_END: Final = r"[^\n\r\u2028\u2029]"
_LEGACY_CHAT_TYPES: Final[tuple[tuple[re.Pattern[str], ChatType], ...]] = (
    (re.compile(rf"group:[^:]+(?::{_NOT_LINE_END}*)?"), "group"),
    (re.compile(rf"channel:[^:]+(?::{_NOT_LINE_END}*)?"), "channel"),
    (re.compile(r"(?:whatsapp:)?[^:]+@g\.us"), "group"),  # WhatsApp group JIDs, bare or in a key
    (re.compile(r"discord:(?:[^:]+:)?guild-[^:]+:channel-[^:]+"), "channel"),
)
_PEER_KINDS: Final = frozenset({"direct", "dm", "group", "channel"})
# JavaScript enumerates integer-like object keys first, ascending (identityLinks order).
_ARRAY_INDEX: Final = re.compile(r"0|[1-9][0-9]{0,9}")


class ParsedSessionKey(NamedTuple):
    agent_id: str
    rest: str


def normalize_main_key(main_key: str | None) -> str:
    return js_lower_trim(main_key) or DEFAULT_MAIN_KEY


def build_agent_main_session_key(agent_id: str | None, main_key: str | None = None) -> str:
    return f"agent:{normalize_agent_id(agent_id)}:{normalize_main_key(main_key)}"


def _case_kept_span(channel: object, kind: object) -> Literal["segment", "tail"] | None:
    c, k = js_lower_trim(channel), js_lower_trim(kind)
    if c == "signal" and k == "group":
        return "segment"
    if c == "matrix" and k in ("channel", "group"):
        return "tail"
    return None


def normalize_session_peer_id(channel: object, kind: object, peer_id: str | None) -> str:
    """A peer id as a session key holds it: trimmed, lower-cased unless its case is meaningful."""
    pid = js_trim(peer_id or "")
    if not pid:
        return ""
    return pid if _case_kept_span(channel, kind) is not None else pid.lower()


def _array_index_first(items: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
    indexed = [(k, v) for k, v in items if _ARRAY_INDEX.fullmatch(k) and int(k) < 4294967295]
    if not indexed:
        return items
    indexed.sort(key=lambda kv: int(kv[0]))
    return indexed + [(k, v) for k, v in items if not (_ARRAY_INDEX.fullmatch(k) and int(k) < 4294967295)]


def resolve_linked_peer_id(
    identity_links: Mapping[str, Sequence[str]] | None, channel: str | None, peer_id: str
) -> str | None:
    """The canonical identity a DM peer is linked to (`session.identityLinks`), if any.

    Candidates are the lower-cased raw id and `<channel>:<id>`; the first canonical name (in
    JavaScript object order) listing one of them wins.
    """
    if not identity_links:
        return None
    peer = js_trim(peer_id)
    if not peer:
        return None
    candidates = {peer.lower()}
    ch = js_lower_trim(channel)
    if ch:
        candidates.add(js_lower_trim(f"{ch}:{peer}"))
    for canonical, ids in _array_index_first(list(identity_links.items())):
        name = js_trim(canonical)
        if not name or not isinstance(ids, list | tuple):
            continue
        for raw in ids:
            normalized = js_lower_trim(raw)
            if normalized and normalized in candidates:
                return name
    return None


def build_agent_peer_session_key(
    *,
    agent_id: str | None,
    main_key: str | None,
    channel: str | None,
    account_id: str | None,
    peer_kind: str | None,
    peer_id: str | None,
    identity_links: Mapping[str, Sequence[str]] | None = None,
    dm_scope: str | None = "main",
    group_scope: str | None = None,
) -> str:
    """The session key for one inbound peer (OpenClaw `buildAgentPeerSessionKey`).

    `peer_kind` is taken as given: only the exact `direct` is a DM (callers normalise `dm`).
    """
    kind = "direct" if peer_kind is None else peer_kind
    aid = normalize_agent_id(agent_id)
    if kind == "direct":
        scope = "main" if dm_scope is None else dm_scope
        pid = js_trim(peer_id or "")
        if scope != "main":
            linked = resolve_linked_peer_id(identity_links, channel, pid)
            if linked:
                pid = linked
        pid = js_lower_trim(pid)
        if pid:
            if scope == "per-account-channel-peer":
                ch = js_lower_trim(channel) or "unknown"
                return f"agent:{aid}:{ch}:{normalize_account_id(account_id)}:direct:{pid}"
            if scope == "per-channel-peer":
                return f"agent:{aid}:{js_lower_trim(channel) or 'unknown'}:direct:{pid}"
            if scope == "per-peer":
                return f"agent:{aid}:direct:{pid}"
        return f"agent:{aid}:{normalize_main_key(main_key)}"
    if group_scope == "main":
        return f"agent:{aid}:{normalize_main_key(main_key)}"
    ch = js_lower_trim(channel) or "unknown"
    pid = normalize_session_peer_id(channel, kind, peer_id) or "unknown"
    return f"agent:{aid}:{ch}:{kind}:{pid}"


def build_agent_session_key(
    *,
    agent_id: str | None,
    channel: str | None,
    account_id: str | None = None,
    peer: Mapping[str, Any] | Any | None = None,
    dm_scope: str | None = "main",
    group_scope: str | None = None,
    identity_links: Mapping[str, Sequence[str]] | None = None,
    main_key: str | None = None,
) -> str:
    """Public builder (OpenClaw `buildAgentSessionKey`): peer is `{kind, id}` or None (main key).

    As in OpenClaw, the peer kind is used as given (`dm` is not folded into `direct` here;
    `resolve_route` folds it first), and a peer with an empty id is the peer `unknown`.
    """
    kind: Any = None
    pid: str | None = None
    if peer is not None:
        raw_kind = peer.get("kind") if isinstance(peer, Mapping) else getattr(peer, "kind", None)
        raw_id = peer.get("id") if isinstance(peer, Mapping) else getattr(peer, "id", None)
        kind = raw_kind
        pid = normalize_id(raw_id) or "unknown"
    return build_agent_peer_session_key(
        agent_id=agent_id,
        main_key=main_key,
        channel=js_lower_trim(channel) or "unknown",
        account_id=account_id,
        peer_kind=kind,
        peer_id=pid,
        identity_links=identity_links,
        dm_scope=dm_scope,
        group_scope=group_scope,
    )


def _case_kept_spans(raw: str) -> list[tuple[int, int, bool]]:
    """(start, end, trim) spans of `raw` whose case a session key keeps (OpenClaw's rules)."""
    spans = [(m.start(1), m.end(1), True) for m in _SIGNAL_GROUP_ID.finditer(raw)]
    match = _MATRIX_ROOM_KEY.match(raw)
    if match is None or match.end() >= len(raw):
        return spans
    start = match.end()
    # OpenClaw looks for the marker in the trimmed tail but uses the index on the untrimmed one.
    marker = js_lower_trim(raw[start:]).rfind(_THREAD_MARKER)
    if marker == -1:
        spans.append((start, len(raw), False))
        return spans
    spans.append((start, start + marker, False))
    thread_start = start + marker + len(_THREAD_MARKER)
    if thread_start < len(raw):
        spans.append((thread_start, len(raw), False))
    return spans


@lru_cache(maxsize=2048)
def _normalize_session_key(raw: str) -> str:
    folded = raw.lower()
    if "signal:" not in folded and "matrix:" not in folded:
        return folded
    spans = sorted((s for s in _case_kept_spans(raw) if s[1] > s[0]), key=lambda s: s[0])
    out: list[str] = []
    cursor = 0
    for start, end, trim in spans:
        if start < cursor:
            continue
        out.append(js_lower_trim(raw[cursor:start]))
        kept = raw[start:end]
        out.append(js_trim(kept) if trim else kept)
        cursor = end
    out.append(js_lower_trim(raw[cursor:]))
    return "".join(out)


def normalize_session_key(session_key: str | None) -> str:
    """A key trimmed and lower-cased, keeping Signal group ids, Matrix room ids and Matrix thread
    event ids as they are (OpenClaw `normalizeSessionKeyPreservingOpaquePeerIds`)."""
    raw = js_trim(session_key) if isinstance(session_key, str) else ""
    return _normalize_session_key(raw) if raw else ""


def _split_agent_key(key: str) -> ParsedSessionKey | None:
    if key[:6].lower() != "agent:":
        return None
    end = key.find(":", 6)
    if end == -1:
        return None
    agent_id = js_trim(key[6:end])
    rest = key[end + 1 :]
    if not agent_id or not rest or rest.startswith(":"):
        return None
    return ParsedSessionKey(agent_id, rest)


def parse_agent_session_key(session_key: str | None) -> ParsedSessionKey | None:
    """Split `agent:<id>:<rest>` of the normalised key; None for anything else (empty id or rest)."""
    return _split_agent_key(normalize_session_key(session_key))


def classify_session_key_shape(session_key: str | None) -> SessionKeyShape:
    raw = js_trim(session_key or "")
    if not raw:
        return "missing"
    if parse_agent_session_key(raw) is not None:
        return "agent"
    return "malformed_agent" if raw.lower().startswith("agent:") else "legacy_or_alias"


def get_subagent_depth(session_key: str | None) -> int:
    """How many `subagent:` levels a key's rest has (a leading `subagent:` counts too)."""
    raw = js_lower_trim(session_key)
    if not raw:
        return 0
    parsed = parse_agent_session_key(raw)
    return len(_SUBAGENT_MARK.findall((parsed.rest if parsed else raw).lower()))


def is_subagent_session_key(session_key: str | None) -> bool:
    raw = js_trim(session_key or "")
    if not raw:
        return False
    if raw.lower().startswith("subagent:"):
        return True
    parsed = parse_agent_session_key(raw)
    return parsed is not None and js_lower_trim(parsed.rest).startswith("subagent:")


def is_cron_session_key(session_key: str | None) -> bool:
    parsed = parse_agent_session_key(session_key)
    return parsed is not None and js_lower_trim(parsed.rest).startswith("cron:")


def _at(parts: list[str], i: int) -> str:
    return parts[i] if i < len(parts) else ""


def _legacy_chat_type(scoped: str) -> ChatType | None:
    for pattern, chat_type in _LEGACY_CHAT_TYPES:
        if pattern.fullmatch(scoped):
            return chat_type
    return None


def _canonical_chat_type(scoped: str) -> ChatType | None:
    """The chat type of a well-formed `[<channel>:[<account>:]]<kind>:<peer>` rest, else None.

    The kind must sit where the grammar puts it; a rest that fits more than one shape (or one
    shape and a legacy one) is ambiguous and has no canonical type.
    """
    parts = scoped.split(":")
    p0, p1, p2, p3 = _at(parts, 0), _at(parts, 1), _at(parts, 2), _at(parts, 3)
    if p0 == "agent":
        return None
    dm_first = p0 in ("direct", "dm") and bool(p1)
    kind_second = bool(p0) and p1 in _PEER_KINDS and bool(p2)
    kind_third = bool(p0) and bool(p1) and p2 in _PEER_KINDS and bool(p3)
    if dm_first + kind_second + kind_third + (_legacy_chat_type(scoped) is not None) > 1:
        return None
    if p0 in ("direct", "dm"):
        kind, peer = p0, p1
    elif p0 and p1 in _PEER_KINDS:
        kind, peer = p1, p2
    elif p0 and p1 and p2 in _PEER_KINDS:
        kind, peer = p2, p3
    else:
        return None
    if not peer:
        return None
    return "direct" if kind in ("direct", "dm") else "group" if kind == "group" else "channel"


def derive_session_chat_type(session_key: str | None) -> ChatType:
    """Chat type of a key (OpenClaw `deriveSessionChatTypeFromKey`): decided by where the kind
    segment sits in the key grammar, or by a legacy shape (`group:…`, `channel:…`, WhatsApp
    `…@g.us`, Discord `guild-…:channel-…`); malformed keys are `unknown`."""
    raw = js_lower_trim(session_key)
    if not raw:
        return "unknown"
    parsed = parse_agent_session_key(raw)
    scoped = parsed.rest if parsed is not None else raw
    return _canonical_chat_type(scoped) or _legacy_chat_type(scoped) or "unknown"


def derive_last_route_policy(session_key: str, main_session_key: str) -> Literal["main", "session"]:
    """`main` when the turn lands in the agent's main session, else `session`."""
    return "main" if session_key == main_session_key else "session"


def resolve_thread_session_keys(
    base_session_key: str,
    thread_id: str | None,
    parent_session_key: str | None = None,
    use_suffix: bool = True,
    normalize_thread_id: Callable[[str], str] | None = None,
) -> tuple[str, str | None]:
    """`(sessionKey, parentSessionKey)` for a thread: `<base>:thread:<threadId>`, the id
    lower-cased unless `normalize_thread_id` says otherwise (a channel whose ids are opaque)."""
    tid = js_trim(thread_id or "")
    if not tid:
        return base_session_key, None
    normalized = normalize_thread_id(tid) if normalize_thread_id is not None else tid.lower()
    key = f"{base_session_key}:thread:{normalized}" if use_suffix else base_session_key
    return key, parent_session_key


def build_subagent_session_key(target_agent_id: str, run_id: str | None = None) -> str:
    """`agent:<target>:subagent:<uuid>` (OpenClaw creates a fresh random UUID per spawn)."""
    return f"agent:{normalize_agent_id(target_agent_id)}:subagent:{run_id or uuid.uuid4()}"


def to_agent_store_session_key(
    agent_id: str | None, request_key: str | None, main_key: str | None = None
) -> str:
    """A key as stored for an agent: `main`/empty → main key; `agent:` keys normalised; else prefixed."""
    raw = js_trim(request_key or "")
    lowered = raw.lower()
    if not raw or lowered == DEFAULT_MAIN_KEY:
        return build_agent_main_session_key(agent_id, main_key)
    parsed = parse_agent_session_key(raw)
    if parsed is not None:
        return f"agent:{parsed.agent_id}:{parsed.rest}"
    normalized = normalize_session_key(raw)
    if lowered.startswith("agent:"):
        return normalized
    return f"agent:{normalize_agent_id(agent_id)}:{normalized}"


def build_group_history_key(
    channel: str | None, account_id: str | None, peer_kind: str, peer_id: str | None
) -> str:
    """`<channel>:<accountId>:<group|channel>:<peerId>` (a history bucket, not a session)."""
    ch = js_lower_trim(channel) or "unknown"
    pid = normalize_session_peer_id(ch, peer_kind, peer_id) or "unknown"
    return f"{ch}:{normalize_account_id(account_id)}:{peer_kind}:{pid}"
