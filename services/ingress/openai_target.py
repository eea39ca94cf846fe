"""Which agent and session an OpenAI-compatible request is for, as OpenClaw decides it.

`model` names an agent target (`openclaw`, `openclaw/default`, `openclaw/<id>`, `openclaw:<id>`,
`agent:<id>`, and clawmesh's own `clawmesh/<id>` or the bare id); `x-openclaw-agent-id`
overrides it. The session is private by default: without `user` every request gets a new
session (`agent:<id>:openai:<uuid>`), with `user` the conversation keeps one
(`agent:<id>:openai-user:<user>`), and `x-openclaw-session-key` names one explicitly. Every
`x-openclaw-*` header has an `x-clawmesh-*` twin; OpenClaw's spelling wins when both are sent.
"""

from __future__ import annotations

import re
import urllib.parse
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from clawmesh.config import Config
from clawmesh.ids import DEFAULT_AGENT_ID, MAX_ID_LENGTH, is_valid_agent_id, normalize_agent_id
from clawmesh.routing import parse_agent_session_key, to_agent_store_session_key

__all__ = [
    "DEFAULT_MESSAGE_CHANNEL",
    "MAX_SESSION_KEY_LENGTH",
    "BadTarget",
    "Target",
    "header",
    "model_ids",
    "resolve_target",
    "session_key_header",
]

# OpenClaw's channel context for OpenAI-compatible turns when the caller names none.
DEFAULT_MESSAGE_CHANNEL: Final = "webchat"
MAX_SESSION_KEY_LENGTH: Final = 512
_MODEL_AGENT: Final = re.compile(
    r"^(?:openclaw[:/]|agent:|clawmesh[:/])(?P<id>[a-z0-9][a-z0-9_-]{0,63})$", re.I
)
_DEFAULT_MODELS: Final = frozenset({"openclaw", "openclaw/default", "clawmesh", "clawmesh/default"})
# Namespaces of sessions that clawmesh/OpenClaw make themselves: a caller may not write into them.
_RESERVED: Final = ("subagent", "cron", "acp")
_CHANNEL: Final = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")


class BadTarget(Exception):
    """The request names no usable agent or session: `status` and an OpenAI-shaped error."""

    def __init__(
        self, status: int, message: str, *, param: str | None = None, code: str | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code


@dataclass(frozen=True, slots=True)
class Target:
    agent_id: str
    session_key: str
    message_channel: str
    model_override: str | None


def header(headers: Mapping[str, str], name: str) -> str | None:
    """`x-openclaw-<name>`, else `x-clawmesh-<name>`; trimmed, None when absent or blank."""
    for prefix in ("x-openclaw-", "x-clawmesh-"):
        value = (headers.get(prefix + name) or "").strip()
        if value:
            return value
    return None


def model_ids(config: Config) -> list[str]:
    """What `GET /v1/models` lists: OpenClaw's agent targets, then clawmesh's own spelling."""
    ids = ["openclaw", "openclaw/default"]
    ids += [f"openclaw/{a.id}" for a in config.agents]
    ids += [f"clawmesh/{a.id}" for a in config.agents]
    return ids


def _default_agent(config: Config) -> str:
    if config.default_agent_id is not None:
        return config.default_agent_id
    if config.has_roster:
        raise BadTarget(
            400,
            config.default_agent_problem or "no default agent is configured; name one in `model`",
            param="model",
            code="AGENT_SELECTION_REQUIRED",
        )
    return DEFAULT_AGENT_ID


def agent_for_model(config: Config, model: str) -> str:
    """The agent a `model` id names (the default agent for `openclaw`), or BadTarget (404
    `model_not_found` for an agent that is not configured)."""
    raw = model.strip()
    if not raw or raw.lower() in _DEFAULT_MODELS:
        return _default_agent(config)
    found = _MODEL_AGENT.match(raw)
    candidate = found.group("id") if found else raw
    agent = config.agent(candidate)
    if agent is not None:
        return agent.id
    if config.has_roster or not is_valid_agent_id(candidate):
        known = ", ".join(f"openclaw/{a}" for a in config.agent_ids) or "none"
        raise BadTarget(
            404,
            f"The model `{model}` does not exist (agent targets: openclaw, {known})",
            param="model",
            code="model_not_found",
        )
    return normalize_agent_id(candidate)


def _agent_from_header(config: Config, raw: str) -> str:
    if not is_valid_agent_id(raw):
        raise BadTarget(400, f"x-openclaw-agent-id: {raw[:80]!r} is not an agent id", code="invalid_request")
    agent = config.agent(raw)
    if agent is None and config.has_roster:
        raise BadTarget(
            404,
            f"x-openclaw-agent-id: unknown agent '{raw}' (configured: {', '.join(config.agent_ids)})",
            code="UNKNOWN_AGENT",
        )
    return agent.id if agent else normalize_agent_id(raw)


def _is_reserved(key: str) -> bool:
    lowered = key.lower()
    parsed = parse_agent_session_key(lowered)
    rest = parsed.rest if parsed is not None else lowered
    return any(rest.startswith(ns + ":") or f":{ns}:" in f":{rest}" for ns in _RESERVED)


def _explicit_session(agent_id: str, raw: str, main_key: str | None) -> str:
    if len(raw) > MAX_SESSION_KEY_LENGTH:
        raise BadTarget(
            400,
            f"x-openclaw-session-key is {len(raw)} characters long; at most {MAX_SESSION_KEY_LENGTH}",
            code="invalid_request",
        )
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in raw):
        raise BadTarget(400, "x-openclaw-session-key contains control characters", code="invalid_request")
    if _is_reserved(raw):
        raise BadTarget(
            400,
            "`x-openclaw-session-key` cannot use reserved internal session namespaces "
            "(subagent:, cron:, acp:).",
            code="invalid_request",
        )
    # OpenClaw's endpoint passes an explicit `agent:` key on as sent (to_agent_store_session_key
    # would fold its case); other keys become the agent's store key
    trimmed = raw.strip()
    key = trimmed if trimmed[:6].lower() == "agent:" else to_agent_store_session_key(agent_id, raw, main_key)
    parsed = parse_agent_session_key(key)
    if parsed is None:
        raise BadTarget(
            400, f"x-openclaw-session-key: {raw[:80]!r} is not a session key", code="invalid_request"
        )
    if normalize_agent_id(parsed.agent_id) != agent_id:
        raise BadTarget(
            400,
            f"x-openclaw-session-key belongs to agent '{parsed.agent_id}', "
            f"but the request is for agent '{agent_id}'",
            code="invalid_request",
        )
    return key


def _message_channel(raw: str | None) -> str:
    if raw is None:
        return DEFAULT_MESSAGE_CHANNEL
    channel = raw.lower()
    if not _CHANNEL.match(channel):
        raise BadTarget(
            400, f"x-openclaw-message-channel: {raw[:80]!r} is not a channel id", code="invalid_request"
        )
    return channel


def _model_override(raw: str | None) -> str | None:
    if raw is None:
        return None
    if len(raw) > MAX_ID_LENGTH or any(c.isspace() for c in raw) or raw.startswith("/") or raw.endswith("/"):
        raise BadTarget(400, "Invalid `x-openclaw-model`.", code="invalid_request")
    return raw


def resolve_target(
    config: Config, model: str, user: str | None, headers: Mapping[str, str], *, prefix: str = "openai"
) -> Target:
    """Agent, session key, channel context and model override of one request (BadTarget).
    `prefix` names the surface in derived keys (`openai`, `openresponses`), as OpenClaw's do."""
    from_header = header(headers, "agent-id") or header(headers, "agent")
    agent_id = _agent_from_header(config, from_header) if from_header else agent_for_model(config, model)
    explicit = header(headers, "session-key")
    if explicit is not None:
        session_key = _explicit_session(agent_id, explicit, config.settings.session.main_key)
    elif user is not None and user.strip():
        if any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in user):
            raise BadTarget(400, "`user` contains control characters", param="user", code="invalid_request")
        session_key = f"agent:{agent_id}:{prefix}-user:{user.strip().lower()}"
    else:
        session_key = f"agent:{agent_id}:{prefix}:{uuid.uuid4()}"
    return Target(
        agent_id=agent_id,
        session_key=session_key,
        message_channel=_message_channel(header(headers, "message-channel")),
        model_override=_model_override(header(headers, "model")),
    )


# what a header value may hold as it is: visible ASCII and the space (RFC 9110 field-vchar,
# without obs-text); anything else is sent percent-encoded, `%` included
_HEADER_SAFE: Final = "".join(chr(c) for c in range(0x20, 0x7F) if chr(c) != "%")


def session_key_header(session_key: str) -> dict[str, str]:
    """The `x-openclaw-session-key` response header. A key made from a `user` with letters
    beyond ASCII (`José`) cannot go in a header as it is: it goes UTF-8 percent-encoded
    (`jos%C3%A9`), as RFC 8187 encodes header parameters. To continue that session, send the
    same `user`."""
    if session_key.isascii() and session_key.isprintable():
        return {"x-openclaw-session-key": session_key}
    return {"x-openclaw-session-key": urllib.parse.quote(session_key, safe=_HEADER_SAFE)}
