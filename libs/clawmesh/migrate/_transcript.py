"""OpenClaw transcript messages ↔ clawmesh transcript records, both ways.

OpenClaw (pi-agent) messages: `user` (text/image parts), `assistant` (text, `toolCall` parts,
`api`, `provider`, `model`, `usage`, `stopReason`; a failed call is an assistant message with
`stopReason: "error"` and `errorMessage`), `toolResult`. clawmesh groups records in turns, one
per user message; an imported turn's id is derived from OpenClaw's ids, so importing again
finds what is stored already.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from ..sessions import TranscriptEntry, TxAssistant, TxError, TxTool, TxUser

__all__ = ["ImportedTurn", "openclaw_index_entry", "openclaw_jsonl", "to_turns"]

# clawmesh's stop reasons (the providers' words) ↔ OpenClaw's
_TO_OPENCLAW_STOP: Final = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "refusal": "stop",
    "tool_use": "toolUse",
    "max_tokens": "length",
}
_FROM_OPENCLAW_STOP: Final = {"stop": "end_turn", "toolUse": "tool_use", "length": "max_tokens"}
# clawmesh's provider APIs ↔ OpenClaw's `api` names
_TO_OPENCLAW_API: Final = {"anthropic": "anthropic-messages", "openai": "openai-completions"}


@dataclass(slots=True)
class ImportedTurn:
    turn_id: str
    seq: int
    entries: list[TranscriptEntry] = field(default_factory=list)


def _ts(event: dict[str, Any], message: dict[str, Any]) -> float:
    raw = message.get("timestamp")
    if isinstance(raw, int | float) and raw > 0:
        return float(raw) / 1000.0
    stamp = event.get("timestamp")
    if isinstance(stamp, str):
        try:
            return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
        except ValueError:
            pass
    return 0.0


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    parts = []
    for part in content if isinstance(content, list) else ():
        if isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str):
            parts.append(part["text"])
        elif isinstance(part, dict) and part.get("type") == "image":
            parts.append("[image]")
    return "\n".join(parts)


def _model_ref(message: dict[str, Any]) -> str:
    model, provider = message.get("model") or "", message.get("provider") or ""
    return f"{provider}/{model}" if provider and model and "/" not in str(model) else str(model)


def to_turns(session_id: str, events: Sequence[dict[str, Any]]) -> tuple[list[ImportedTurn], int]:
    """The session's messages as clawmesh turns, and how many events were not messages
    (model changes, compaction markers, custom entries: nothing a model context replays)."""
    turns: list[ImportedTurn] = []
    other = 0

    def current(event_id: str) -> ImportedTurn:
        if not turns:
            turns.append(ImportedTurn(f"openclaw:{session_id}:{event_id}", 1))
        return turns[-1]

    for n, event in enumerate(events):
        message = event.get("message")
        if event.get("type") != "message" or not isinstance(message, dict):
            other += event.get("type") != "session"
            continue
        event_id = str(event.get("id") or n)
        role, ts = message.get("role"), _ts(event, message)
        if role == "user":
            turn = ImportedTurn(f"openclaw:{session_id}:{event_id}", len(turns) + 1)
            turns.append(turn)
            turn.entries.append(
                TxUser(turn_id=turn.turn_id, seq=turn.seq, text=_text(message.get("content")), ts=ts)
            )
        elif role == "assistant":
            turn = current(event_id)
            raw_content = message.get("content")
            content: list[Any] = raw_content if isinstance(raw_content, list) else []
            calls = [
                {
                    "id": str(p.get("id", "")),
                    "name": str(p.get("name", "")),
                    "arguments": p.get("arguments") or {},
                }
                for p in content
                if isinstance(p, dict) and p.get("type") == "toolCall"
            ]
            text = _text(content)
            raw_usage = message.get("usage")
            usage: dict[str, Any] = raw_usage if isinstance(raw_usage, dict) else {}
            stop = str(message.get("stopReason") or "")
            if stop in ("error", "aborted"):
                if text or calls:
                    turn.entries.append(
                        TxAssistant(
                            turn_id=turn.turn_id, seq=turn.seq, text=text, model=_model_ref(message), ts=ts
                        )
                    )
                why = str(message.get("errorMessage") or ("aborted" if stop == "aborted" else "model error"))
                turn.entries.append(
                    TxError(turn_id=turn.turn_id, seq=turn.seq, code="MODEL_ERROR", message=why, ts=ts)
                )
                continue
            turn.entries.append(
                TxAssistant(
                    turn_id=turn.turn_id,
                    seq=turn.seq,
                    text=text,
                    tool_calls=calls,
                    model=_model_ref(message),
                    api=str(message.get("api") or ""),
                    stop_reason=_FROM_OPENCLAW_STOP.get(stop, stop),
                    input_tokens=int(usage.get("input") or 0),
                    output_tokens=int(usage.get("output") or 0),
                    ts=ts,
                )
            )
        elif role == "toolResult":
            turn = current(event_id)
            turn.entries.append(
                TxTool(
                    turn_id=turn.turn_id,
                    seq=turn.seq,
                    tool_call_id=str(message.get("toolCallId", "")),
                    name=str(message.get("toolName", "")),
                    content=_text(message.get("content")),
                    is_error=bool(message.get("isError")),
                    ts=ts,
                )
            )
        else:
            other += 1
    return turns, other


# --- export ----------------------------------------------------------------------------------


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def _usage(inp: int, out: int) -> dict[str, Any]:
    zero = {"input": 0, "output": 0, "cacheRead": 0, "cacheWrite": 0, "total": 0}
    return {
        "input": inp,
        "output": out,
        "cacheRead": 0,
        "cacheWrite": 0,
        "totalTokens": inp + out,
        "cost": zero,
    }


def _assistant_fields(model_ref: str, api: str) -> dict[str, str]:
    provider, slash, model = model_ref.partition("/")
    if not slash:
        provider, model = "", model_ref
    return {
        "api": _TO_OPENCLAW_API.get(api, api) or _TO_OPENCLAW_API.get(provider, "openai-completions"),
        "provider": provider,
        "model": model,
    }


def openclaw_jsonl(session_id: str, entries: Sequence[TranscriptEntry], cwd: str) -> list[dict[str, Any]]:
    """A transcript as OpenClaw (pi-agent) session JSONL lines, as OpenClaw's importer reads
    them: assistant messages with `api`, `provider`, `model`, `usage` and `stopReason`, a
    failed turn as an assistant message with `stopReason: "error"` and its `errorMessage`."""
    first_ts = entries[0].ts if entries else 0.0
    lines: list[dict[str, Any]] = [
        {"type": "session", "version": 3, "id": session_id, "timestamp": _iso(first_ts), "cwd": cwd}
    ]
    parent = None
    last_model, last_api = "", ""
    for i, e in enumerate(entries):
        message: dict[str, Any]
        if isinstance(e, TxUser):
            message = {"role": "user", "content": [{"type": "text", "text": e.text}]}
        elif isinstance(e, TxAssistant):
            content: list[dict[str, Any]] = [{"type": "text", "text": e.text}] if e.text else []
            content += [
                {"type": "toolCall", "id": c["id"], "name": c["name"], "arguments": c.get("arguments", {})}
                for c in e.tool_calls
            ]
            last_model, last_api = e.model, e.api
            stop = e.stop_reason or ("tool_use" if e.tool_calls else "end_turn")
            message = {
                "role": "assistant",
                "content": content,
                **_assistant_fields(e.model, e.api),
                "usage": _usage(e.input_tokens, e.output_tokens),
                "stopReason": _TO_OPENCLAW_STOP.get(stop, stop),
            }
        elif isinstance(e, TxTool):
            message = {
                "role": "toolResult",
                "toolCallId": e.tool_call_id,
                "toolName": e.name,
                "content": [{"type": "text", "text": e.content}],
                "isError": e.is_error,
            }
        else:
            message = {
                "role": "assistant",
                "content": [],
                **_assistant_fields(last_model, last_api),
                "usage": _usage(0, 0),
                "stopReason": "error",
                "errorMessage": e.message,
            }
        message["timestamp"] = int(e.ts * 1000)
        entry_id = f"{session_id[:8]}-{i:05d}"
        lines.append(
            {
                "type": "message",
                "id": entry_id,
                "parentId": parent,
                "timestamp": _iso(e.ts),
                "message": message,
            }
        )
        parent = entry_id
    return lines


def openclaw_index_entry(
    session_id: str,
    entries: Sequence[TranscriptEntry],
    *,
    updated_at: float,
    session_file: str,
    channel: str,
    account_id: str = "",
    peer: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The session's `sessions.json` entry with what OpenClaw keeps there: model, provider and
    token totals (what `openclaw sessions` shows), channel and origin."""
    replies = [e for e in entries if isinstance(e, TxAssistant)]
    inp = sum(e.input_tokens for e in replies)
    out = sum(e.output_tokens for e in replies)
    entry: dict[str, Any] = {
        "sessionId": session_id,
        "updatedAt": int(updated_at * 1000),
        "sessionFile": session_file,
        "inputTokens": inp,
        "outputTokens": out,
        "totalTokens": inp + out,
    }
    if replies and replies[-1].model:
        fields = _assistant_fields(replies[-1].model, replies[-1].api)
        if fields["provider"]:
            entry["modelProvider"] = fields["provider"]
        entry["model"] = fields["model"]
    if channel:
        entry["lastChannel"] = channel
        entry["channel"] = channel
        origin: dict[str, Any] = {"provider": channel}
        if account_id:
            origin["accountId"] = account_id
            entry["lastAccountId"] = account_id
        if peer and peer.get("kind"):
            entry["chatType"] = "direct" if peer["kind"] in ("direct", "dm") else peer["kind"]
        entry["origin"] = origin
    return entry
