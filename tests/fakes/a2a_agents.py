"""Remote A2A agents for `runnerType: a2a`: `SdkAgent` is a2a-sdk 1.3.0's own JSON-RPC server
(its request handler, task store, SSE and v0.3 compatibility) around a tiny executor, so the
backend is tested against the reference implementation; `LegacyAgent` is a raw v0.3-only
server, as older A2A agents are (no card, slash-style methods only, a working task polled with
`tasks/get`). Both log each JSON-RPC call (method, A2A-Version, Authorization) and, given a
token, refuse calls without it (HTTP 401).

What the executor does is told by the prompt: `fail …` fails the task, `ask …` asks for input,
`hang …` says `working on it` and works until cancelled (`CancelTask`), anything else is echoed as `echo: <text>` in
three artifact chunks."""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from a2a.helpers import get_message_text, new_task_from_user_message
from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.events import EventQueue
from a2a.server.request_handlers import DefaultRequestHandler
from a2a.server.routes import create_agent_card_routes, create_jsonrpc_routes
from a2a.server.tasks import InMemoryTaskStore, TaskUpdater
from a2a.types.a2a_pb2 import AgentCapabilities, AgentCard, AgentInterface, AgentSkill, Part
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

__all__ = ["Call", "LegacyAgent", "SdkAgent"]


@dataclass(frozen=True)
class Call:
    method: str
    version: str | None
    authorization: str | None
    params: dict[str, Any]


@dataclass
class _Log:
    token: str | None
    calls: list[Call] = field(default_factory=list)


class _Guard:
    """ASGI middleware: logs each JSON-RPC POST and checks the bearer token."""

    def __init__(self, app: Any, log: _Log) -> None:
        self.app = app
        self.log = log

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        body = b"".join(chunks)
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        try:
            request = json.loads(body)
        except ValueError:
            request = {}
        auth = headers.get("authorization")
        self.log.calls.append(
            Call(str(request.get("method")), headers.get("a2a-version"), auth, request.get("params") or {})
        )
        if self.log.token is not None and auth != f"Bearer {self.log.token}":
            await JSONResponse({"error": "unauthorized"}, status_code=401)(scope, receive, send)
            return
        replayed = False

        async def replay() -> Any:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


class _Executor(AgentExecutor):
    def __init__(self, agent: SdkAgent) -> None:
        self.agent = agent

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        assert context.message is not None
        task = context.current_task or new_task_from_user_message(context.message)
        await event_queue.enqueue_event(task)
        updater = TaskUpdater(event_queue, task.id, task.context_id)
        text = get_message_text(context.message)
        self.agent.prompts.append((text, task.context_id))
        await updater.start_work()
        if text.startswith("fail"):
            await updater.failed(updater.new_agent_message([Part(text="the tool broke")]))
        elif text.startswith("ask"):
            await updater.requires_input(updater.new_agent_message([Part(text="which city?")]))
        elif text.startswith("hang"):
            await updater.add_artifact([Part(text="working on it")], artifact_id="reply")
            stop = self.agent.hanging[task.id] = asyncio.Event()
            self.agent.hung.set()
            await stop.wait()
        else:
            pieces = ["echo: ", text[: len(text) // 2], text[len(text) // 2 :]]
            for i, piece in enumerate(pieces):
                await updater.add_artifact(
                    [Part(text=piece)], artifact_id="reply", append=i > 0, last_chunk=i == len(pieces) - 1
                )
            await updater.complete()

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        assert context.task_id is not None and context.context_id is not None
        self.agent.cancelled.append(context.task_id)
        stop = self.agent.hanging.pop(context.task_id, None)
        if stop is not None:
            stop.set()
        await TaskUpdater(event_queue, context.task_id, context.context_id).cancel()


class SdkAgent:
    """a2a-sdk's server at `/rpc`; its card at `/.well-known/agent-card.json` (the SDK's route),
    or with `legacy_card` a v0.3 card there (`url`, `preferredTransport`, `protocolVersion`
    0.3.0) with the server's v0.3 compatibility on. Set `base` to the served URL before use."""

    def __init__(
        self, *, streaming: bool = True, legacy_card: bool = False, token: str | None = None
    ) -> None:
        self.streaming = streaming
        self.legacy_card = legacy_card
        self.base = ""
        self.prompts: list[tuple[str, str]] = []
        self.cancelled: list[str] = []
        self.hanging: dict[str, asyncio.Event] = {}
        self.hung = asyncio.Event()
        self._log = _Log(token)
        card = AgentCard(
            name="sdk echo",
            description="a2a-sdk 1.3.0 server in a test",
            version="1.0.0",
            supported_interfaces=[
                AgentInterface(url="http://unset/rpc", protocol_binding="JSONRPC", protocol_version="1.0")
            ],
            capabilities=AgentCapabilities(streaming=streaming),
            default_input_modes=["text/plain"],
            default_output_modes=["text/plain"],
            skills=[AgentSkill(id="echo", name="echo", description="echoes", tags=["test"])],
        )
        handler = DefaultRequestHandler(
            agent_executor=_Executor(self), task_store=InMemoryTaskStore(), agent_card=card
        )

        async def served(card: AgentCard) -> AgentCard:
            copy = AgentCard()
            copy.CopyFrom(card)
            copy.supported_interfaces[0].url = f"{self.base}/rpc"
            return copy

        card_routes: list[Any]
        if legacy_card:
            card_routes = [Route("/.well-known/agent-card.json", self._legacy_card, methods=["GET"])]
        else:
            card_routes = create_agent_card_routes(card, card_modifier=served)
        routes = card_routes + create_jsonrpc_routes(handler, "/rpc", enable_v0_3_compat=legacy_card)
        self.app = _Guard(Starlette(routes=routes), self._log)

    @property
    def calls(self) -> list[Call]:
        return self._log.calls

    async def _legacy_card(self, request: Request) -> Response:
        return JSONResponse(
            {
                "name": "sdk echo (v0.3 card)",
                "description": "a2a-sdk 1.3.0 server with v0.3 compatibility",
                "url": f"{self.base}/rpc",
                "preferredTransport": "JSONRPC",
                "protocolVersion": "0.3.0",
                "version": "1.0.0",
                "capabilities": {"streaming": self.streaming},
                "defaultInputModes": ["text/plain"],
                "defaultOutputModes": ["text/plain"],
                "skills": [{"id": "echo", "name": "echo", "description": "echoes", "tags": ["test"]}],
            }
        )


class LegacyAgent:
    """A v0.3-only JSON-RPC endpoint at `/rpc`, no card: `message/send` answers a working task,
    which `tasks/get` reports completed (`echo: <text>`) from the second poll on; v1 method names
    are answered -32601 (method not found), `tasks/cancel` -32002."""

    def __init__(self, *, token: str | None = None) -> None:
        self._log = _Log(token)
        self.tasks: dict[str, dict[str, Any]] = {}
        self.polls: dict[str, int] = {}
        self.app = _Guard(Starlette(routes=[Route("/rpc", self._rpc, methods=["POST"])]), self._log)

    @property
    def calls(self) -> list[Call]:
        return self._log.calls

    async def _rpc(self, request: Request) -> Response:
        body = await request.json()
        rpc_id, method, params = body.get("id"), body.get("method"), body.get("params") or {}

        def error(code: int, message: str) -> Response:
            return JSONResponse({"jsonrpc": "2.0", "id": rpc_id, "error": {"code": code, "message": message}})

        def result(value: dict[str, Any]) -> Response:
            return JSONResponse({"jsonrpc": "2.0", "id": rpc_id, "result": value})

        if method == "message/send":
            message = params["message"]
            if message.get("kind") != "message" or message.get("role") != "user":
                return error(-32602, "not a v0.3 message")
            text = "".join(p["text"] for p in message["parts"] if p.get("kind") == "text")
            task_id = uuid.uuid4().hex
            self.tasks[task_id] = {
                "kind": "task",
                "id": task_id,
                "contextId": message.get("contextId") or "ctx",
                "status": {"state": "working"},
                "text": text,
            }
            self.polls[task_id] = 0
            return result({k: v for k, v in self.tasks[task_id].items() if k != "text"})
        if method == "tasks/get":
            task = self.tasks.get(params.get("id"))
            if task is None:
                return error(-32001, "Task not found")
            self.polls[task["id"]] += 1
            answer = {k: v for k, v in task.items() if k != "text"}
            if self.polls[task["id"]] >= 2:
                answer["status"] = {"state": "completed"}
                answer["artifacts"] = [
                    {"artifactId": "a", "parts": [{"kind": "text", "text": f"echo: {task['text']}"}]}
                ]
            return result(answer)
        if method == "tasks/cancel":
            return error(-32002, "Task cannot be canceled")
        return error(-32601, f"Method not found: {method}")
