"""An A2A (Agent2Agent) server for every agent: agent cards and JSON-RPC 2.0, v1.0 and v0.3.

Layout: an agent's base URL is `/a2a/<agentId>`; its card is at
`/a2a/<agentId>/.well-known/agent-card.json` (where a2a-sdk's card resolver looks for it given
that base URL) and its JSON-RPC endpoint is `POST /a2a/<agentId>/v1`. The gateway's own
`/.well-known/agent-card.json` (and the legacy `/.well-known/agent.json`) is the default
agent's card, listing every agent as a skill, with its endpoint `POST /a2a/v1` (OpenClaw's
path). A card names one endpoint, and a skill is not addressable in A2A, so an agent per base
URL is the only way a remote caller can choose the agent.

Cards are public (the spec's discovery); the JSON-RPC endpoints need the gateway token like the
rest of the API. Methods: `SendMessage`/`message/send`, `SendStreamingMessage`/
`message/stream` (SSE), `GetTask`/`tasks/get`, `CancelTask`/`tasks/cancel` (stops the task's
turn, running or still queued behind another task of its context, and what it spawned:
`clawmesh.sessions.stop_turn`; only at the task's agent's endpoint). The version comes from the `A2A-Version` header, else from the method's
spelling (PascalCase is v1.0, slash-style v0.3) — OpenClaw's curl examples send v1 names
without the header — and answers are in that version's shapes. One A2A `contextId` is one session
(`agent:<id>:a2a:<contextId>`); a task is one turn (its id is the turn id); streamed text is
artifact updates. Tasks are remembered in this ingress instance's memory only (the last 500),
for `GetTask`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, Literal

import msgspec
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from clawmesh import __version__
from clawmesh.bus import ServiceContext
from clawmesh.config import Config
from clawmesh.ids import DEFAULT_AGENT_ID
from clawmesh.sessions import stop_turn
from clawmesh.wire import InboundMessage, Peer, RouteDecision, TextDeltaEvent, TurnError, TurnFinal, now

from .http import InvalidBody, RequestGuard, decode_body, read_body, sse_data, sse_response
from .turns import PendingTurn, TurnClient, turn_id_for

__all__ = ["A2AAPI", "JSONRPC_ERRORS", "agent_card"]

Version = Literal["0.3", "1.0"]

# JSON-RPC and A2A error codes (A2A spec §5.4, §9.5)
JSONRPC_ERRORS: Final = {
    "parse_error": -32700,
    "invalid_request": -32600,
    "method_not_found": -32601,
    "invalid_params": -32602,
    "internal": -32603,
    "task_not_found": -32001,
    "task_not_cancelable": -32002,
    "unsupported_operation": -32004,
    "version_not_supported": -32009,
}
_METHODS: Final[dict[str, tuple[str, Version]]] = {
    "SendMessage": ("send", "1.0"),
    "message/send": ("send", "0.3"),
    "SendStreamingMessage": ("stream", "1.0"),
    "message/stream": ("stream", "0.3"),
    "GetTask": ("get", "1.0"),
    "tasks/get": ("get", "0.3"),
    "CancelTask": ("cancel", "1.0"),
    "tasks/cancel": ("cancel", "0.3"),
}
_CONTEXT_ID: Final = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_MAX_TASKS: Final = 500
_TERMINAL: Final = frozenset({"completed", "failed", "canceled", "rejected"})
_ARTIFACT_NAME: Final = "response"


class _Envelope(msgspec.Struct):
    jsonrpc: str
    method: str
    id: str | int | None = None
    params: msgspec.Raw = msgspec.field(default_factory=lambda: msgspec.Raw(b"{}"))


class _Part(msgspec.Struct):
    # v1: one of text|raw|url|data; v0.3: `kind` text|file|data. Only text and data become
    # the prompt (as OpenClaw's channel does); file parts are not fetched for the caller.
    text: str | None = None
    data: Any = None
    kind: str | None = None


class _Message(msgspec.Struct, rename="camel"):
    message_id: str
    role: str
    parts: list[_Part]
    context_id: str | None = None
    task_id: str | None = None


class _Configuration(msgspec.Struct, rename="camel"):
    return_immediately: bool | None = None
    blocking: bool | None = None  # v0.3: false is v1's returnImmediately


class _SendParams(msgspec.Struct):
    message: _Message
    configuration: _Configuration | None = None


class _GetParams(msgspec.Struct, rename="camel"):
    id: str
    history_length: int | None = None


class _CancelParams(msgspec.Struct):
    id: str


class _RpcError(Exception):
    def __init__(self, code: str, message: str, field_path: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field_path = field_path


@dataclass
class _Task:
    id: str
    context_id: str
    agent_id: str
    session_key: str
    state: str = "working"  # v0.3 spelling; `_state` renders v1's
    text: str = ""
    error: str | None = None
    updated: str = field(default_factory=lambda: _timestamp())


def _timestamp() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{datetime.now(UTC).microsecond // 1000:03d}Z"


def _state(state: str, version: Version) -> str:
    return state if version == "0.3" else "TASK_STATE_" + state.upper().replace("-", "_")


def _text_part(text: str, version: Version) -> dict[str, Any]:
    return {"kind": "text", "text": text} if version == "0.3" else {"text": text}


def _status(task: _Task, version: Version) -> dict[str, Any]:
    status: dict[str, Any] = {"state": _state(task.state, version), "timestamp": task.updated}
    if task.error is not None:
        message: dict[str, Any] = {
            "messageId": uuid.uuid4().hex,
            "role": "agent" if version == "0.3" else "ROLE_AGENT",
            "parts": [_text_part(task.error, version)],
            "contextId": task.context_id,
            "taskId": task.id,
        }
        if version == "0.3":
            message["kind"] = "message"
        status["message"] = message
    return status


def _artifact(task: _Task, text: str, version: Version) -> dict[str, Any]:
    return {"artifactId": f"{task.id}-response", "name": _ARTIFACT_NAME, "parts": [_text_part(text, version)]}


def _task_json(task: _Task, version: Version) -> dict[str, Any]:
    body: dict[str, Any] = {"id": task.id, "contextId": task.context_id, "status": _status(task, version)}
    if task.state == "completed":
        body["artifacts"] = [_artifact(task, task.text, version)]
    if version == "0.3":
        body["kind"] = "task"
    return body


def _wrap(kind: str, body: dict[str, Any], version: Version) -> dict[str, Any]:
    """v1 wraps a result in a one-of key; v0.3 sends it bare, with its `kind` inside."""
    if version == "0.3":
        return body
    return {kind: body}


def _agent_ids(config: Config) -> tuple[str, ...]:
    return config.agent_ids or (DEFAULT_AGENT_ID,)


def _default_agent(config: Config) -> str | None:
    if config.default_agent_id is not None:
        return config.default_agent_id
    return None if config.has_roster else DEFAULT_AGENT_ID


def _describe(config: Config, agent_id: str) -> tuple[str, str]:
    agent = config.agent(agent_id)
    entry = agent.entry if agent else None
    name = (entry.identity.name if entry and entry.identity else None) or (entry.name if entry else None)
    name = name or agent_id
    return name, f"clawmesh agent '{agent_id}' ({name})"


def agent_card(config: Config, base: str, agent_id: str | None, version: str, auth: bool) -> dict[str, Any]:
    """The card of `agent_id`'s endpoint, or (None) the gateway's: the default agent's endpoint
    with every agent as a skill. `base` is the gateway's origin as the caller reached it."""
    if agent_id is None:
        url = f"{base}/a2a/v1"
        skill_ids = list(_agent_ids(config))
        default = _default_agent(config)
        name = f"clawmesh: {default}" if default else "clawmesh"
        description = "clawmesh gateway; the endpoint reaches the default agent " + (default or "(none)")
    else:
        url = f"{base}/a2a/{agent_id}/v1"
        skill_ids = [agent_id]
        agent_name, description = _describe(config, agent_id)
        name = f"clawmesh: {agent_name}"
    skills = []
    for sid in skill_ids:
        skill_name, skill_description = _describe(config, sid)
        skills.append({"id": sid, "name": skill_name, "description": skill_description, "tags": ["chat"]})
    card: dict[str, Any] = {
        "name": name,
        "description": description,
        "supportedInterfaces": [{"url": url, "protocolBinding": "JSONRPC", "protocolVersion": "1.0"}],
        "version": version,
        "capabilities": {"streaming": True, "pushNotifications": False, "extendedAgentCard": False},
        "defaultInputModes": ["text/plain", "application/json"],
        "defaultOutputModes": ["text/plain"],
        "skills": skills,
        # v0.3 readers look for these instead of supportedInterfaces
        "url": url,
        "preferredTransport": "JSONRPC",
        "protocolVersion": "0.3.0",
    }
    if auth:
        card["securitySchemes"] = {
            "gatewayToken": {
                "httpAuthSecurityScheme": {
                    "scheme": "Bearer",
                    "description": "the gateway token (gateway.auth.token)",
                }
            }
        }
        card["securityRequirements"] = [{"schemes": {"gatewayToken": {"list": []}}}]
        card["security"] = [{"gatewayToken": []}]  # v0.3
    return card


def _rpc_error(
    rpc_id: str | int | None, code: str, message: str, field_path: str | None = None, status: int = 200
) -> JSONResponse:
    error: dict[str, Any] = {"code": JSONRPC_ERRORS[code], "message": message}
    if field_path is not None:
        error["data"] = [
            {
                "@type": "type.googleapis.com/google.rpc.BadRequest",
                "fieldViolations": [{"field": field_path, "description": message}],
            }
        ]
    return JSONResponse({"jsonrpc": "2.0", "id": rpc_id, "error": error}, status_code=status)


def _render_refusal(status: int, code: str, message: str, headers: dict[str, str] | None) -> Response:
    """The guard's refusals (401, 429, 413, …) as JSON-RPC errors, keeping the HTTP status."""
    response = _rpc_error(None, "invalid_request", f"{code}: {message}", status=status)
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def _field(path: str | None) -> str:
    return (path or "$").removeprefix("$").removeprefix(".") or "params"


def _params(raw: msgspec.Raw, type_: type[Any]) -> Any:
    try:
        return decode_body(bytes(raw), type_)
    except InvalidBody as exc:
        where = _field(exc.path)
        raise _RpcError(
            "invalid_params", f"invalid params: {exc.message} (at params.{where})", where
        ) from None


def _prompt(message: _Message) -> str:
    pieces = []
    for part in message.parts:
        if part.text is not None and part.kind in (None, "text"):
            pieces.append(part.text)
        elif part.data is not None and part.kind in (None, "data"):
            pieces.append(json.dumps(part.data, separators=(",", ":"), ensure_ascii=False))
    text = "\n".join(p for p in pieces if p)
    if not text.strip():
        raise _RpcError("invalid_params", "message.parts has no text or data part", "message.parts")
    return text


class A2AAPI:
    """The A2A routes: cards (public) and the JSON-RPC endpoints (guarded)."""

    def __init__(
        self, ctx: ServiceContext, turns: TurnClient, guard: RequestGuard, auth: Callable[[], bool]
    ) -> None:
        self.ctx = ctx
        self.turns = turns
        self.guard = guard
        self._auth = auth
        self._tasks: OrderedDict[str, _Task] = OrderedDict()
        self._background: set[asyncio.Task[None]] = set()

    def routes(self) -> list[Route]:
        rpc = self.guard(self.rpc, render=_render_refusal)
        return [
            Route("/.well-known/agent-card.json", self.card, methods=["GET"]),
            Route("/.well-known/agent.json", self.card, methods=["GET"]),
            Route("/a2a/v1", rpc, methods=["POST"]),
            Route("/a2a/{agent_id}/.well-known/agent-card.json", self.card, methods=["GET"]),
            Route("/a2a/{agent_id}/.well-known/agent.json", self.card, methods=["GET"]),
            Route("/a2a/{agent_id}/v1", rpc, methods=["POST"]),
        ]

    def _known_agent(self, config: Config, agent_id: str) -> str | None:
        agent = config.agent(agent_id)
        if agent is not None:
            return agent.id
        return agent_id if not config.has_roster and agent_id == DEFAULT_AGENT_ID else None

    async def card(self, request: Request) -> Response:
        config = self.ctx.holder.current
        raw = request.path_params.get("agent_id")
        agent_id = None
        if raw is not None:
            agent_id = self._known_agent(config, raw)
            if agent_id is None:
                return JSONResponse(
                    {"error": {"code": "not_found", "message": f"no agent {raw[:80]!r}"}}, status_code=404
                )
        base = str(request.base_url).rstrip("/")
        body = agent_card(config, base, agent_id, __version__, self._auth())
        data = json.dumps(body, sort_keys=True).encode()
        etag = '"' + uuid.uuid5(uuid.NAMESPACE_OID, data.decode()).hex + '"'
        headers = {"Cache-Control": "public, max-age=60", "ETag": etag}
        if request.headers.get("if-none-match") == etag:
            return Response(status_code=304, headers=headers)
        return Response(data, media_type="application/json", headers=headers)

    async def rpc(self, request: Request) -> Response:
        data = await read_body(request, self.guard.body_limit(), self.guard.body_timeout)
        try:
            envelope = msgspec.json.decode(data, type=_Envelope)
        except msgspec.ValidationError as exc:
            return _rpc_error(None, "invalid_request", f"not a JSON-RPC 2.0 request: {exc}")
        except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as exc:
            return _rpc_error(None, "parse_error", f"body is not valid JSON: {exc}")
        rpc_id = envelope.id
        if envelope.jsonrpc != "2.0":
            return _rpc_error(
                rpc_id, "invalid_request", f'jsonrpc must be "2.0", not {envelope.jsonrpc[:20]!r}'
            )
        found = _METHODS.get(envelope.method)
        if found is None:
            return _rpc_error(
                rpc_id,
                "method_not_found",
                f"method {envelope.method[:80]!r} is not supported (SendMessage, SendStreamingMessage, "
                "GetTask, CancelTask and their v0.3 names)",
            )
        action = found[0]
        version: Version = found[1]
        asked = request.headers.get("a2a-version") or request.query_params.get("A2A-Version")
        if asked is not None:
            if asked.strip() not in ("0.3", "1.0"):
                return _rpc_error(
                    rpc_id, "version_not_supported", f"A2A version {asked[:20]!r} is not supported (1.0, 0.3)"
                )
            version = "1.0" if asked.strip() == "1.0" else "0.3"
        config = self.ctx.holder.current
        raw_agent = request.path_params.get("agent_id")
        agent_id = self._known_agent(config, raw_agent) if raw_agent is not None else _default_agent(config)
        if agent_id is None:
            what = f"no agent {raw_agent[:80]!r}" if raw_agent else "no default agent is configured"
            return _rpc_error(rpc_id, "invalid_request", what, status=404)
        try:
            if action == "get":
                get = _params(envelope.params, _GetParams)
                task = self._tasks.get(get.id)
                if task is None:
                    raise _RpcError("task_not_found", f"no task {get.id[:80]!r}", "id")
                return self._result(rpc_id, _task_json(task, version))
            if action == "cancel":
                cancel = _params(envelope.params, _CancelParams)
                return self._result(rpc_id, _task_json(await self._cancel(cancel.id, agent_id), version))
            send = _params(envelope.params, _SendParams)
            text, session_key, context_id = self._check(send, agent_id)
        except _RpcError as exc:
            return _rpc_error(rpc_id, exc.code, exc.message, exc.field_path)
        turn = await self._submit(request, agent_id, session_key, text, stream=action == "stream")
        task = self._remember(_Task(turn.turn_id, context_id, agent_id, session_key))
        if action == "stream":
            return sse_response(self._stream(turn, task, rpc_id, version), on_close=turn.close)
        conf = send.configuration
        if conf is not None and (conf.return_immediately or conf.blocking is False):
            follow = asyncio.create_task(self._follow(turn, task))
            self._background.add(follow)
            follow.add_done_callback(self._background.discard)
            return self._result(rpc_id, _wrap("task", _task_json(task, version), version))
        await self._follow(turn, task)
        return self._result(rpc_id, _wrap("task", _task_json(task, version), version))

    def _result(self, rpc_id: str | int | None, result: dict[str, Any]) -> JSONResponse:
        return JSONResponse({"jsonrpc": "2.0", "id": rpc_id, "result": result})

    def _check(self, send: _SendParams, agent_id: str) -> tuple[str, str, str]:
        message = send.message
        if message.role not in ("user", "ROLE_USER"):
            raise _RpcError(
                "invalid_params", f"message.role must be ROLE_USER, not {message.role[:40]!r}", "message.role"
            )
        if message.task_id:
            known = self._tasks.get(message.task_id)
            if known is None:
                raise _RpcError("task_not_found", f"no task {message.task_id[:80]!r}", "message.taskId")
            if known.state in _TERMINAL:
                raise _RpcError(
                    "unsupported_operation",
                    f"task {message.task_id!r} is {known.state}: send a new message without taskId",
                    "message.taskId",
                )
        context_id = message.context_id or uuid.uuid4().hex
        if not _CONTEXT_ID.match(context_id):
            raise _RpcError(
                "invalid_params",
                "message.contextId must be 1 to 128 characters of A-Z a-z 0-9 . _ : -",
                "message.contextId",
            )
        # session keys are case-folded, so are context ids
        return _prompt(message), f"agent:{agent_id}:a2a:{context_id.lower()}", context_id

    async def _cancel(self, task_id: str, agent_id: str) -> _Task:
        """Stop the task's turn — running (cancelled as `/stop` cancels one) or still queued
        behind another task of its context (it ends as stopped when it starts, without running)
        — and the sub-agent runs it spawned, and mark it canceled; the context's other tasks
        run on. A task of another agent is not found: only a caller of that agent's endpoint may
        cancel it."""
        task = self._tasks.get(task_id)
        if task is None or task.agent_id != agent_id:
            raise _RpcError("task_not_found", f"no task {task_id[:80]!r}", "id")
        if task.state not in _TERMINAL:
            try:
                await stop_turn(
                    self.ctx.sessions,
                    self.ctx.nc.publish,
                    self.ctx.subjects.stop,
                    task.session_key,
                    task.id,
                    reason="canceled over A2A",
                )
            except Exception as exc:
                raise _RpcError("internal", f"task {task_id[:80]!r} could not be stopped: {exc}") from None
        # checked after the stop too: the turn may have ended while the stop was on its way
        if task.state in _TERMINAL:
            raise _RpcError(
                "task_not_cancelable", f"task {task_id[:80]!r} is {task.state}: it cannot be canceled", "id"
            )
        task.state, task.updated = "canceled", _timestamp()
        self.ctx.counters["a2a_cancels"] += 1
        return task

    def _remember(self, task: _Task) -> _Task:
        self._tasks[task.id] = task
        while len(self._tasks) > _MAX_TASKS:
            self._tasks.popitem(last=False)
        return task

    async def _submit(
        self, request: Request, agent_id: str, session_key: str, text: str, *, stream: bool
    ) -> PendingTurn:
        turn_id = turn_id_for("api", "default", None)
        inbound = InboundMessage(
            id=turn_id,
            channel="api",
            account_id="default",
            peer=Peer(kind="direct", id="a2a"),
            text=text,
            agent_id=agent_id,
            session_key=session_key,
            received_at=now(),
            reply_subject=self.turns.reply_subject,
            reply_events="all" if stream else "final",
            metadata={"api": "a2a", "messageChannel": "a2a"},
        )
        return await self.turns.submit(inbound, f"in:{turn_id}", request.headers)

    def _settle(self, task: _Task, item: Any) -> None:
        if task.state == "canceled":  # the stopped turn's TURN_STOPPED is the cancel's own doing
            return
        task.updated = _timestamp()
        if isinstance(item, TurnFinal):
            task.state, task.text = "completed", item.text
        elif isinstance(item, TurnError):
            task.state, task.error = "failed", f"{item.code}: {item.message}"
        elif isinstance(item, RouteDecision):
            task.state = "failed"
            task.error = f"{item.error_code}: {item.error_message or 'routing failed'}"
        elif isinstance(item, TimeoutError):
            task.state, task.error = "failed", "timeout: the agent did not answer in time"

    async def _follow(self, turn: PendingTurn, task: _Task) -> None:
        """Wait for the turn's outcome and record it in `task`."""
        with contextlib.closing(turn):
            try:
                decision = await turn.decision(self.turns.route_wait())
                if decision is not None and not decision.ok:
                    self._settle(task, decision)
                    return
                self._settle(task, await turn.outcome(self.turns.turn_timeout()))
            except TimeoutError:
                self._settle(task, TimeoutError())

    async def _stream(
        self, turn: PendingTurn, task: _Task, rpc_id: str | int | None, version: Version
    ) -> AsyncIterator[bytes]:
        """The task (working), the reply's text as artifact updates (one delta held back so the
        last carries `lastChunk`), then the final status update."""

        def event(result: dict[str, Any]) -> bytes:
            return sse_data({"jsonrpc": "2.0", "id": rpc_id, "result": result})

        def artifact_update(text: str, first: bool, last: bool) -> bytes:
            body: dict[str, Any] = {
                "taskId": task.id,
                "contextId": task.context_id,
                "artifact": _artifact(task, text, version),
                "append": not first,
                "lastChunk": last,
            }
            if version == "0.3":
                body["kind"] = "artifact-update"
            return event(_wrap("artifactUpdate", body, version))

        def status_update() -> bytes:
            body: dict[str, Any] = {
                "taskId": task.id,
                "contextId": task.context_id,
                "status": _status(task, version),
            }
            if version == "0.3":
                body["kind"] = "status-update"
                body["final"] = True
            return event(_wrap("statusUpdate", body, version))

        with contextlib.closing(turn):
            yield event(_wrap("task", _task_json(task, version), version))
            held: str | None = None
            sent = False
            try:
                decision = await turn.decision(self.turns.route_wait())
                if decision is not None and not decision.ok:
                    self._settle(task, decision)
                else:
                    async for item in turn.events(self.turns.turn_timeout()):
                        if isinstance(item, TextDeltaEvent) and item.text:
                            if held is not None:
                                yield artifact_update(held, not sent, False)
                                sent = True
                            held = item.text
                        elif isinstance(item, TurnFinal | TurnError | RouteDecision):
                            self._settle(task, item)
            except TimeoutError:
                self._settle(task, TimeoutError())
            if task.state == "completed":
                if held is not None:
                    yield artifact_update(held, not sent, True)
                elif not sent and task.text:
                    yield artifact_update(task.text, True, True)
            yield status_update()
