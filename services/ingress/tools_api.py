"""`POST /tools/invoke`: one tool call for an agent's session, as OpenClaw serves it (its
docs/gateway/tools-invoke-http-api.md).

    {"tool" | "name": "read", "args": {...}, "action"?, "sessionKey"?: "main", "agentId"?, "idempotencyKey"?, "dryRun"?}
    → 200 {"ok": true, "result": {"content": [{"type": "text", "text": …}], "details": {…}}}
    → 400 / 403 / 404 / 500 {"ok": false, "error": {"type", "message"}}

Gateway token auth like the rest of the API (401/429 in OpenClaw's `{"error": {message, type}}`).
The ingress resolves the agent and session (`sessionKey` omitted or `main`: the agent's main
session) and asks a runner on `cm.tools.<agent>.invoke`; the runner applies the tool policy as
for a model's call and runs the tool on the agent's node (direct_tools.py in the runner).
"""

from __future__ import annotations

import uuid
from typing import Any, Final

import msgspec
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from clawmesh.bus import ServiceContext, inject
from clawmesh.config import Config
from clawmesh.ids import MAX_ID_LENGTH, is_valid_agent_id, js_trim, normalize_agent_id
from clawmesh.routing import classify_session_key_shape, parse_agent_session_key, to_agent_store_session_key
from clawmesh.wire import (
    DecodeFailure,
    DirectToolInvocation,
    DirectToolResult,
    ErrorCode,
    decode,
    encode_json,
)

from .http import BadRequest, InvalidBody, RequestGuard, read_body

__all__ = ["ToolsAPI"]

MAX_SESSION_KEY_LENGTH: Final = 512
MAX_TOOL_NAME_LENGTH: Final = 128
# How long a runner may take beyond the turn timeout (an exec waiting for approval is bounded by it)
_ANSWER_MARGIN: Final = 30.0
_METHODS: Final = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]  # all answered: 405 but POST
_STATUS: Final = {"invalid": 400, "not_found": 404, "blocked": 403, "failed": 500}
_TYPES: Final = {
    "invalid": "tool_error",
    "not_found": "not_found",
    "blocked": "tool_call_blocked",
    "failed": "tool_error",
}


def _refusal(status: int, type_: str, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse(
        {"ok": False, "error": {"type": type_, "message": message, **extra}}, status_code=status
    )


def _invalid(message: str) -> BadRequest:
    return BadRequest(_refusal(400, "invalid_request", message))


def _render(status: int, code: ErrorCode, message: str, headers: dict[str, str] | None) -> Response:
    """The guard's refusals as OpenClaw's gateway HTTP errors."""
    if status == 401:
        body = {"message": "Unauthorized", "type": "unauthorized"}
    elif status == 429:
        body = {
            "message": "Too many failed authentication attempts. Please try again later.",
            "type": "rate_limited",
        }
    elif status in (408, 413):
        body = {"message": message, "type": "invalid_request_error"}
    else:
        return _refusal(status, code, message)
    return JSONResponse({"error": body}, status_code=status, headers=headers)


def _on_invalid(exc: InvalidBody) -> Response:
    return JSONResponse({"error": {"message": exc.message, "type": "invalid_request_error"}}, status_code=400)


def _opt_str(value: Any) -> str | None:
    return (js_trim(value) or None) if isinstance(value, str) else None


def _bounded_header(request: Request, name: str) -> str | None:
    value = js_trim(request.headers.get(name, "")) or None
    if value is not None and len(value) > MAX_ID_LENGTH:
        raise _invalid(f"{name} is {len(value)} characters long; at most {MAX_ID_LENGTH}")
    return value


def resolve_session(config: Config, raw_key: str, raw_agent: str | None) -> tuple[str, str]:
    """(agent id, session key) of a request, as OpenClaw's resolveRequestedSessionAgentId +
    resolveStoredSessionKeyForAgentStore decide them (BadRequest naming the problem)."""
    if len(raw_key) > MAX_SESSION_KEY_LENGTH:
        raise _invalid(f"sessionKey is {len(raw_key)} characters long; at most {MAX_SESSION_KEY_LENGTH}")
    if classify_session_key_shape(raw_key) == "malformed_agent":
        raise _invalid(f'malformed session key "{raw_key[:200]}"')
    explicit: str | None = None
    if raw_agent is not None:
        candidate = normalize_agent_id(raw_agent)
        if not is_valid_agent_id(candidate) or (config.has_roster and config.agent(candidate) is None):
            raise _invalid(f'Unknown agent id "{raw_agent[:200]}"')
        explicit = candidate
    parsed = parse_agent_session_key(raw_key)
    if parsed is not None:
        key_agent = normalize_agent_id(parsed.agent_id)
        if explicit is not None and explicit != key_agent:
            raise _invalid(f'agent "{explicit}" does not match session key agent "{key_agent}"')
        if config.has_roster and config.agent(key_agent) is None:
            raise _invalid(f'Unknown agent id "{key_agent}"')
        agent = key_agent
    elif explicit is not None:
        agent = explicit
    elif config.default_agent_id is not None:
        agent = config.default_agent_id
    elif config.has_roster:
        raise _invalid(
            config.default_agent_problem or "agentId is required when multiple agents are configured"
        )
    else:
        agent = normalize_agent_id(None)
    # `main` is the agent's canonical main session: a custom session.mainKey is ignored (OpenClaw)
    return agent, to_agent_store_session_key(agent, raw_key)


def _result(answer: DirectToolResult) -> dict[str, Any]:
    details: dict[str, Any] = {"node": answer.node, "sandboxed": answer.sandboxed}
    if answer.exit_code is not None:
        details["exitCode"] = answer.exit_code
    if answer.truncated:
        details["truncated"] = True
    if answer.timed_out:
        details["timedOut"] = True
    return {"content": [{"type": "text", "text": answer.content}], "details": details}


class ToolsAPI:
    def __init__(self, ctx: ServiceContext, guard: RequestGuard) -> None:
        self.ctx = ctx
        self.guard = guard

    def routes(self) -> list[Route]:
        handler = self._method_check(self.guard(self.invoke, on_invalid=_on_invalid, render=_render))
        return [Route("/tools/invoke", handler, methods=_METHODS)]

    @staticmethod
    def _method_check(handler: Any) -> Any:
        async def checked(request: Request) -> Response:
            if request.method != "POST":
                response = _refusal(405, "method_not_allowed", "Method Not Allowed")
                response.headers["Allow"] = "POST"
                return response
            answer: Response = await handler(request)
            return answer

        return checked

    async def invoke(self, request: Request) -> Response:
        raw = await read_body(request, self.guard.body_limit(), self.guard.body_timeout)
        try:
            decoded = msgspec.json.decode(raw) if raw.strip() else {}
        except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as exc:
            raise InvalidBody("invalid_json", f"body is not valid JSON: {exc}", None, str(exc)) from None
        body: dict[str, Any] = decoded if isinstance(decoded, dict) else {}
        tool = _opt_str(body.get("name")) or _opt_str(body.get("tool"))
        if tool is None:
            raise _invalid("tools.invoke requires name")
        if len(tool) > MAX_TOOL_NAME_LENGTH:
            raise _invalid(f"name is {len(tool)} characters long; at most {MAX_TOOL_NAME_LENGTH}")
        action = _opt_str(body.get("action"))
        args = body.get("args")
        arguments: dict[str, Any] = args if isinstance(args, dict) else {}
        config = self.ctx.holder.current
        agent, session = resolve_session(
            config, _opt_str(body.get("sessionKey")) or "main", _opt_str(body.get("agentId"))
        )
        try:
            invocation = DirectToolInvocation(
                request_id=uuid.uuid4().hex,
                agent_id=agent,
                session_key=session,
                main_session_key=to_agent_store_session_key(agent, None, config.settings.session.main_key),
                tool=tool,
                action=action[:MAX_TOOL_NAME_LENGTH] if action else None,
                arguments=arguments,
                message_channel=_bounded_header(request, "x-openclaw-message-channel"),
                account_id=_bounded_header(request, "x-openclaw-account-id"),
                message_to=_bounded_header(request, "x-openclaw-message-to"),
                thread_id=_bounded_header(request, "x-openclaw-thread-id"),
            )
        except msgspec.ValidationError as exc:
            raise _invalid(str(exc)) from None
        return await self._ask(invocation, config)

    async def _ask(self, invocation: DirectToolInvocation, config: Config) -> Response:
        ctx = self.ctx
        data, headers = encode_json(invocation)
        wait = config.settings.runtime.turn_timeout + _ANSWER_MARGIN
        try:
            reply = await ctx.nc.request(
                ctx.subjects.tools_invoke(invocation.agent_id), data, timeout=wait, headers=inject(headers)
            )
            answer = decode(reply.data, DirectToolResult, reply.headers)
        except NoRespondersError:
            return JSONResponse(
                {
                    "ok": False,
                    "error": {
                        "type": "unavailable",
                        "message": "no runner is available to run the tool; retry shortly",
                    },
                },
                status_code=503,
                headers={"Retry-After": "5"},
            )
        except (TimeoutError, NatsTimeout):
            return _refusal(
                500, "tool_error", f"tool execution failed: no runner answered within {wait:.0f}s"
            )
        except DecodeFailure as exc:
            return _refusal(
                500, "tool_error", f"tool execution failed: a runner sent an invalid answer ({exc})"
            )
        if answer.outcome == "ok":
            return JSONResponse({"ok": True, "result": _result(answer)})
        if answer.error_code == "UNKNOWN_AGENT":
            return _refusal(400, "invalid_request", answer.message)
        extra: dict[str, Any] = {"requiresApproval": False} if answer.outcome == "blocked" else {}
        if answer.error_code:
            extra["code"] = answer.error_code
        return _refusal(_STATUS[answer.outcome], _TYPES[answer.outcome], answer.message, **extra)
