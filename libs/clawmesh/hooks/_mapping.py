"""Hook payloads → actions, as OpenClaw 2026.9.6 does it (its `src/gateway/hooks-mapping.ts` and
`hooks.ts`): the direct `/wake` and `/agent` payloads, `hooks.mappings` (plus presets) with
their `{{…}}` templates and `forEach` fan-out, and the delivery fields of an agent action.

Every refusal is a `HookPayloadError` with OpenClaw's message, which names the field.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Final, Literal

from ..config import HookMapping
from ..ids import MAX_ID_LENGTH, js_trim

__all__ = [
    "FAN_OUT_LIMIT",
    "AgentAction",
    "Delivery",
    "HookPayloadError",
    "HookRule",
    "MappedActions",
    "MappingContext",
    "TransformUnsupported",
    "WakeAction",
    "agent_payload",
    "apply_rules",
    "has_template",
    "hook_idempotency_key",
    "render",
    "rules_from",
    "wake_payload",
]

FAN_OUT_LIMIT: Final = 200
MAX_IDEMPOTENCY_KEY_LENGTH: Final = 256
_TEMPLATE: Final = re.compile(r"\{\{\s*([^}]+)\s*\}\}")
_PATH_PART: Final = re.compile(r"([^.\[\]]+)|(\[(\d+)\])")
_BLOCKED_KEYS: Final = frozenset({"__proto__", "prototype", "constructor"})

WakeMode = Literal["now", "next-heartbeat"]
SessionMode = Literal["isolated", "persistent"]


class HookPayloadError(Exception):
    """A payload or mapping result OpenClaw refuses with 400; the message names the field."""


class TransformUnsupported(Exception):
    """The matching mapping has a JS/TS `transform`, which clawmesh cannot run (a 500)."""


# --- direct payloads -------------------------------------------------------------------------


def _opt_str(value: Any) -> str | None:
    """OpenClaw's normalizeOptionalString: a trimmed non-empty string, else None."""
    if not isinstance(value, str):
        return None
    return js_trim(value) or None


def _bounded(value: str | None, field: str, limit: int = MAX_ID_LENGTH) -> str | None:
    if value is not None and len(value) > limit:
        raise HookPayloadError(f"{field} is {len(value)} characters long; at most {limit}")
    return value


def _agent_id(payload: Mapping[str, Any]) -> str | None:
    if "agentId" not in payload:
        return None
    agent = _opt_str(payload["agentId"])
    if agent is None:
        raise HookPayloadError("agentId must be a non-empty string")
    return _bounded(agent, "agentId")


@dataclass(frozen=True)
class WakeAction:
    text: str
    mode: WakeMode = "now"
    agent_id: str | None = None
    session_key: str | None = None
    session_key_source: Literal["request", "mapping-static", "mapping-templated"] = "request"
    mapping_id: str | None = None


@dataclass(frozen=True)
class Delivery:
    """Where an agent action's result would be announced. clawmesh has no outbound channel
    delivery for hooks yet: it is validated as OpenClaw does and recorded with the turn."""

    deliver: bool = True
    channel: str = "last"
    to: str | None = None
    account_id: str | None = None

    @property
    def mode(self) -> str:
        return "announce" if self.deliver and (self.to or self.channel != "last") else "none"


@dataclass(frozen=True)
class AgentAction:
    message: str
    name: str = "Hook"
    agent_id: str | None = None
    session_key: str | None = None
    session_key_source: Literal["request", "mapping-static", "mapping-templated"] = "request"
    session_mode: SessionMode = "isolated"
    wake_mode: WakeMode = "now"
    delivery: Delivery = Delivery()
    model: str | None = None
    thinking: str | None = None
    timeout_seconds: int | None = None
    idempotency_key: str | None = None
    mapping_id: str | None = None
    allow_unsafe_external_content: bool = False


def wake_payload(payload: Mapping[str, Any]) -> WakeAction:
    """`POST /hooks/wake`: `{text, mode?, agentId?, sessionKey?}`."""
    text = _opt_str(payload.get("text"))
    if text is None:
        raise HookPayloadError("text required")
    mode: WakeMode = "next-heartbeat" if payload.get("mode") == "next-heartbeat" else "now"
    agent_id = _agent_id(payload)
    session_key = _opt_str(payload.get("sessionKey"))
    if "sessionKey" in payload and session_key is None:
        raise HookPayloadError("sessionKey must be a non-empty string")
    if mode == "next-heartbeat" and session_key:
        raise HookPayloadError("sessionKey requires mode=now")
    return WakeAction(
        text=text, mode=mode, agent_id=agent_id, session_key=_bounded(session_key, "sessionKey", 512)
    )


def _channel(raw: Any, channels: Sequence[str]) -> str | None:
    """`last` or one of the gateway's channels (OpenClaw: its loaded channel plugins, which are
    the configured channels); None for anything else."""
    if raw is None:
        return "last"
    if not isinstance(raw, str):
        return None
    channel = js_trim(raw).lower()
    return channel if channel == "last" or channel in channels else None


def _channel_error(channels: Sequence[str]) -> HookPayloadError:
    return HookPayloadError(f"channel must be {'|'.join(['last', *channels])}")


def _delivery(payload: Mapping[str, Any], channels: Sequence[str]) -> Delivery:
    """OpenClaw's normalizeHookAgentDelivery (direct `/agent`)."""
    if payload.get("deliver") is False:
        return Delivery(deliver=False)
    to = _opt_str(payload.get("to"))
    account = _opt_str(payload.get("accountId"))
    channel = _channel(payload.get("channel"), channels)
    if channel is None:
        raise _channel_error(channels)
    has_channel, has_to, has_account = "channel" in payload, "to" in payload, "accountId" in payload
    if not (has_channel or has_to or has_account):
        return Delivery(channel=channel)
    if has_to and not to:
        raise HookPayloadError("to must be a non-empty string for hook delivery")
    if has_account and not account:
        raise HookPayloadError("accountId must be a non-empty string for hook delivery")
    if has_account and (not has_channel or not to):
        raise HookPayloadError("accountId requires channel and to for hook delivery")
    if not has_channel or not to:
        raise HookPayloadError("channel and to must be set together for hook delivery")
    if channel == "last":
        raise HookPayloadError("channel must name a concrete channel for hook delivery")
    return Delivery(channel=channel, to=_bounded(to, "to"), account_id=_bounded(account, "accountId"))


def _timeout(raw: Any) -> int | None:
    if isinstance(raw, bool) or not isinstance(raw, int | float) or not math.isfinite(raw) or raw <= 0:
        return None
    return math.floor(raw)


def hook_idempotency_key(headers: Mapping[str, str], payload: Mapping[str, Any]) -> str | None:
    """`Idempotency-Key`, then `X-OpenClaw-Idempotency-Key`, then the payload's; trimmed,
    non-empty, at most 256 characters (longer ones are ignored, as OpenClaw does)."""
    for raw in (
        headers.get("idempotency-key"),
        headers.get("x-openclaw-idempotency-key"),
        payload.get("idempotencyKey"),
    ):
        if isinstance(raw, str):
            key = js_trim(raw)
            if key and len(key) <= MAX_IDEMPOTENCY_KEY_LENGTH:
                return key
    return None


def agent_payload(payload: Mapping[str, Any], channels: Sequence[str]) -> AgentAction:
    """`POST /hooks/agent`: `{message, name?, agentId?, sessionKey?, sessionMode?, deliver?,
    channel?, to?, accountId?, model?, thinking?, timeoutSeconds?, wakeMode?, idempotencyKey?}`."""
    message = _opt_str(payload.get("message"))
    if message is None:
        raise HookPayloadError("message required")
    name = _bounded(_opt_str(payload.get("name")) or "Hook", "name")
    agent_id = _agent_id(payload)
    wake_mode: WakeMode = "next-heartbeat" if payload.get("wakeMode") == "next-heartbeat" else "now"
    session_key = _bounded(_opt_str(payload.get("sessionKey")), "sessionKey", 512)
    mode = payload.get("sessionMode")
    if mode is not None and mode not in ("isolated", "persistent"):
        raise HookPayloadError("sessionMode must be isolated or persistent")
    delivery = _delivery(payload, channels)
    model = _opt_str(payload.get("model"))
    if "model" in payload and model is None:
        raise HookPayloadError("model required")
    return AgentAction(
        message=message,
        name=name or "Hook",
        agent_id=agent_id,
        session_key=session_key,
        session_mode=mode or "isolated",
        wake_mode=wake_mode,
        delivery=delivery,
        model=_bounded(model, "model"),
        thinking=_bounded(_opt_str(payload.get("thinking")), "thinking"),
        timeout_seconds=_timeout(payload.get("timeoutSeconds")),
    )


# --- mappings --------------------------------------------------------------------------------


@dataclass(frozen=True)
class HookRule:
    """One mapping (or preset), normalised."""

    id: str
    match_path: str | None
    match_source: str | None
    action: Literal["wake", "agent"]
    wake_mode: WakeMode
    for_each: str | None
    name: str | None = None
    agent_id: str | None = None
    session_key: str | None = None
    session_mode: str | None = None
    message_template: str | None = None
    text_template: str | None = None
    deliver: bool | None = None
    channel: str | None = None
    to: str | None = None
    model: str | None = None
    thinking: str | None = None
    timeout_seconds: int | None = None
    allow_unsafe_external_content: bool | None = None
    has_transform: bool = False


_GMAIL = HookMapping(
    id="gmail",
    action="agent",
    wake_mode="now",
    name="Gmail",
    for_each="messages",
    session_key="hook:gmail:{{messages[0].id}}",
    message_template=(
        "New email from {{messages[0].from}}\nSubject: {{messages[0].subject}}\n"
        "{{messages[0].snippet}}\n{{messages[0].body}}"
    ),
)
PRESETS: Final[dict[str, tuple[tuple[HookMapping, str], ...]]] = {"gmail": ((_GMAIL, "gmail"),)}


def _match_path(raw: str | None) -> str | None:
    trimmed = js_trim(raw or "")
    return trimmed.strip("/") if trimmed else None


def _for_each(raw: str | None) -> str | None:
    key = js_trim(raw or "")
    if not key:
        return None
    if re.search(r"[.\[\]]", key) or key in _BLOCKED_KEYS:
        raise ValueError(f"Hook mapping forEach must be a top-level payload key: {raw}")
    return key


def _rule(mapping: HookMapping, index: int, preset_path: str | None = None) -> HookRule:
    match = mapping.match
    return HookRule(
        id=js_trim(mapping.id or "") or f"mapping-{index + 1}",
        match_path=_match_path(preset_path if preset_path is not None else (match.path if match else None)),
        match_source=js_trim(match.source) if match and match.source else None,
        action=mapping.action or "agent",
        wake_mode=mapping.wake_mode or "now",
        for_each=_for_each(mapping.for_each),
        name=mapping.name,
        agent_id=js_trim(mapping.agent_id or "") or None,
        session_key=mapping.session_key,
        session_mode=mapping.session_mode,
        message_template=mapping.message_template,
        text_template=mapping.text_template,
        deliver=mapping.deliver,
        channel=mapping.channel,
        to=mapping.to,
        model=mapping.model,
        thinking=mapping.thinking,
        timeout_seconds=mapping.timeout_seconds,
        allow_unsafe_external_content=mapping.allow_unsafe_external_content,
        has_transform=mapping.transform is not None,
    )


def rules_from(mappings: Sequence[HookMapping], presets: Sequence[str]) -> tuple[HookRule, ...]:
    """Custom mappings in order, then the presets' (unknown preset names add nothing).
    ValueError for a nested `forEach`."""
    entries: list[tuple[HookMapping, str | None]] = [(m, None) for m in mappings]
    for preset in presets:
        entries += PRESETS.get(preset, ())
    return tuple(_rule(m, i, path) for i, (m, path) in enumerate(entries))


def has_template(text: str) -> bool:
    return _TEMPLATE.search(js_trim(text)) is not None


@dataclass(frozen=True)
class MappingContext:
    payload: Mapping[str, Any]
    headers: Mapping[str, str]  # lower-cased names
    query: Mapping[str, str]
    path: str  # the subpath after hooks.path


def _lookup(value: Any, expr: str) -> Any:
    if not expr:
        return None
    for m in _PATH_PART.finditer(expr):
        if value is None:
            return None
        if m.group(1) is not None:
            part = m.group(1)
            if part in _BLOCKED_KEYS or not isinstance(value, dict):
                return None
            value = value.get(part)
        else:
            index = int(m.group(3))
            if not isinstance(value, list):
                return None
            value = value[index] if index < len(value) else None
    return value


def _resolve(expr: str, ctx: MappingContext) -> Any:
    if expr == "path":
        return ctx.path
    if expr == "now":
        return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    if expr.startswith("headers."):
        return _lookup(dict(ctx.headers), expr[8:])
    if expr.startswith("query."):
        return _lookup(dict(ctx.query), expr[6:])
    if expr.startswith("payload."):
        return _lookup(ctx.payload, expr[8:])
    return _lookup(ctx.payload, expr)


def _js_string(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def render(template: str | None, ctx: MappingContext) -> str:
    """`{{expr}}` replaced by the value it names; missing values are empty, objects JSON."""
    if not template:
        return ""
    return _TEMPLATE.sub(lambda m: _js_string(_resolve(js_trim(m.group(1)), ctx)), template)


def _render_optional(template: str | None, ctx: MappingContext) -> str | None:
    if not template:
        return None
    return js_trim(render(template, ctx)) or None


def _key_source(template: str | None) -> Literal["mapping-static", "mapping-templated"] | None:
    trimmed = js_trim(template or "")
    if not trimmed:
        return None
    return "mapping-templated" if has_template(trimmed) else "mapping-static"


def _matches(rule: HookRule, ctx: MappingContext) -> bool:
    if rule.match_path and rule.match_path != _match_path(ctx.path):
        return False
    if rule.match_source:
        source = ctx.payload.get("source")
        if not isinstance(source, str) or source != rule.match_source:
            return False
    return True


def _action(rule: HookRule, ctx: MappingContext, channels: Sequence[str]) -> WakeAction | AgentAction:
    source = _key_source(rule.session_key)
    key = _render_optional(rule.session_key, ctx)
    if source == "mapping-templated" and not key:
        raise HookPayloadError("hook mapping sessionKey template rendered empty")
    if rule.action == "wake":
        text = render(rule.text_template or "", ctx)
        if not js_trim(text):
            raise HookPayloadError("hook mapping requires text")
        if rule.wake_mode == "next-heartbeat" and key:
            raise HookPayloadError("hook mapping sessionKey requires wakeMode=now")
        return WakeAction(
            text=text,
            mode=rule.wake_mode,
            agent_id=rule.agent_id,
            session_key=key,
            session_key_source=source or "mapping-static",
            mapping_id=rule.id,
        )
    message = render(rule.message_template or "", ctx)
    if not js_trim(message):
        raise HookPayloadError("hook mapping requires message")
    mode = rule.session_mode or "isolated"
    if mode not in ("isolated", "persistent"):
        raise HookPayloadError("hook mapping sessionMode must be isolated or persistent")
    channel = _channel(rule.channel, channels)
    if channel is None:
        raise _channel_error(channels)
    return AgentAction(
        message=message,
        name=_render_optional(rule.name, ctx) or "Hook",
        agent_id=rule.agent_id,
        session_key=key,
        session_key_source=source or "mapping-static",
        session_mode=mode,  # type: ignore[arg-type]  # checked just above
        wake_mode=rule.wake_mode,
        delivery=Delivery(
            deliver=rule.deliver is not False, channel=channel, to=_render_optional(rule.to, ctx)
        ),
        model=_render_optional(rule.model, ctx),
        thinking=_render_optional(rule.thinking, ctx),
        timeout_seconds=rule.timeout_seconds,
        mapping_id=rule.id,
        allow_unsafe_external_content=rule.allow_unsafe_external_content is True,
    )


@dataclass(frozen=True)
class MappedActions:
    actions: tuple[WakeAction | AgentAction, ...]
    fanout: bool
    dropped: int  # items beyond FAN_OUT_LIMIT


def apply_rules(
    rules: Sequence[HookRule], ctx: MappingContext, channels: Sequence[str]
) -> MappedActions | None:
    """The actions of the first rule that matches (None: no rule does). HookPayloadError for
    an action OpenClaw refuses; TransformUnsupported for a rule with a JS transform."""
    for rule in rules:
        if not _matches(rule, ctx):
            continue
        if rule.has_transform:
            raise TransformUnsupported(rule.id)
        if rule.for_each is None:
            return MappedActions((_action(rule, ctx, channels),), fanout=False, dropped=0)
        raw = ctx.payload.get(rule.for_each)
        items = raw if isinstance(raw, list) else []
        actions = tuple(
            _action(rule, replace(ctx, payload={**ctx.payload, rule.for_each: [item]}), channels)
            for item in items[:FAN_OUT_LIMIT]
        )
        return MappedActions(actions, fanout=True, dropped=max(0, len(items) - FAN_OUT_LIMIT))
    return None
