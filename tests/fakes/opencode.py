"""Fake `opencode serve` (the routes the opencode runner uses), faithful to OpenCode 1.18's wire:
HTTP Basic auth (`opencode:<password>`, or `?auth_token=`) answering 401 with
`www-authenticate`, `?directory=` scoping, `POST /session/:id/prompt_async` → 204 with the turn
on `GET /event` (`data:`-only SSE, `server.connected` first, `message.part.delta` text deltas,
`session.status` busy/retry/idle then `session.idle`), `/abort`, `/command`, `/share`,
`/revert`, `/unrevert`, messages, 404 `NotFoundError` for an unknown session.

Scripted turns: `OcReply(text)`, `OcRetry()` (the model keeps failing: retry statuses until
aborted), `OcHang()` (busy until aborted), `OcModelError(message)` (`session.error`).
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

__all__ = ["FakeOpenCode", "OcHang", "OcModelError", "OcPermission", "OcReply", "OcRetry"]


@dataclass(frozen=True)
class OcReply:
    text: str = "pong from opencode"
    chunks: int = 3


@dataclass(frozen=True)
class OcRetry:
    message: str = "fake 529"


@dataclass(frozen=True)
class OcHang:
    pass


@dataclass(frozen=True)
class OcPermission:
    """The agent wants to run a tool that OpenCode's config says to ask about."""

    permission: str = "bash"


@dataclass(frozen=True)
class OcModelError:
    message: str = "bad request"
    retryable: bool = False


Step = OcReply | OcRetry | OcHang | OcModelError | OcPermission


@dataclass
class _Session:
    id: str
    directory: str
    title: str
    messages: list[dict[str, Any]] = field(default_factory=list)
    revert: dict[str, Any] | None = None
    share: str | None = None
    aborted: asyncio.Event = field(default_factory=asyncio.Event)


class FakeOpenCode:
    def __init__(self, password: str | None = None) -> None:
        self.password = password
        self.sessions: dict[str, _Session] = {}
        self.requests: list[tuple[str, str, dict[str, str], Any]] = []  # method, path, query, body
        self.aborts: list[str] = []
        self.commands: list[dict[str, Any]] = []
        self.prompts: list[dict[str, Any]] = []
        self._steps: deque[Step] = deque()
        self._ids = itertools.count(1)
        self._subscribers: dict[str, list[asyncio.Queue[dict[str, Any]]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.app = Starlette(
            routes=[
                Route("/global/health", self._health, methods=["GET"]),
                Route("/event", self._events, methods=["GET"]),
                Route("/session", self._create, methods=["POST"]),
                Route("/session/{id}", self._get, methods=["GET"]),
                Route("/session/{id}/message", self._messages, methods=["GET", "POST"]),
                Route("/session/{id}/prompt_async", self._prompt_async, methods=["POST"]),
                Route("/session/{id}/abort", self._abort, methods=["POST"]),
                Route("/session/{id}/command", self._command, methods=["POST"]),
                Route("/session/{id}/share", self._share, methods=["POST"]),
                Route("/session/{id}/revert", self._revert, methods=["POST"]),
                Route("/session/{id}/unrevert", self._unrevert, methods=["POST"]),
            ]
        )

    def script(self, *steps: Step) -> None:
        self._steps.extend(steps)

    def _id(self, prefix: str) -> str:
        return f"{prefix}_{next(self._ids):06d}"

    # --- plumbing -----------------------------------------------------------------------
    def _denied(self, request: Request) -> Response | None:
        if self.password is None:
            return None
        good = base64.b64encode(f"opencode:{self.password}".encode()).decode()
        if (
            request.headers.get("authorization") == f"Basic {good}"
            or request.query_params.get("auth_token") == good
        ):
            return None
        return Response(
            "Unauthorized", status_code=401, headers={"www-authenticate": 'Basic realm="Secure Area"'}
        )

    async def _begin(self, request: Request) -> tuple[Response | None, Any]:
        raw = await request.body()
        body = json.loads(raw) if raw else None
        self.requests.append((request.method, request.url.path, dict(request.query_params), body))
        return self._denied(request), body

    def _session(self, request: Request) -> _Session | Response:
        sid = request.path_params["id"]
        found = self.sessions.get(sid)
        if found is None:
            return JSONResponse(
                {"name": "NotFoundError", "data": {"message": f"Session not found: {sid}"}}, status_code=404
            )
        return found

    def _info(self, s: _Session) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": s.id,
            "projectID": "global",
            "directory": s.directory,
            "title": s.title,
            "version": "1.18.33",
            "time": {"created": 0, "updated": 0},
        }
        if s.share:
            out["share"] = {"url": s.share}
        if s.revert:
            out["revert"] = s.revert
        return out

    def _publish(self, directory: str, kind: str, properties: dict[str, Any]) -> None:
        event = {"id": self._id("evt"), "type": kind, "properties": properties}
        for queue in self._subscribers.get(directory, []):
            queue.put_nowait(event)

    # --- routes -------------------------------------------------------------------------
    async def _health(self, request: Request) -> Response:
        denied, _ = await self._begin(request)
        return denied or JSONResponse({"healthy": True, "version": "1.18.33"})

    async def _events(self, request: Request) -> Response:
        denied, _ = await self._begin(request)
        if denied:
            return denied
        directory = request.query_params.get("directory", "")
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._subscribers.setdefault(directory, []).append(queue)

        async def stream() -> Any:
            try:
                yield f"data: {json.dumps({'type': 'server.connected', 'properties': {}})}\n\n".encode()
                while True:
                    event = await queue.get()
                    yield f"data: {json.dumps(event)}\n\n".encode()
            finally:
                self._subscribers[directory].remove(queue)

        return StreamingResponse(stream(), media_type="text/event-stream")

    async def _create(self, request: Request) -> Response:
        denied, body = await self._begin(request)
        if denied:
            return denied
        s = _Session(
            self._id("ses"), request.query_params.get("directory", "/"), (body or {}).get("title", "")
        )
        self.sessions[s.id] = s
        return JSONResponse(self._info(s))

    async def _get(self, request: Request) -> Response:
        denied, _ = await self._begin(request)
        if denied:
            return denied
        s = self._session(request)
        return s if isinstance(s, Response) else JSONResponse(self._info(s))

    async def _messages(self, request: Request) -> Response:
        denied, _ = await self._begin(request)
        if denied:
            return denied
        s = self._session(request)
        return s if isinstance(s, Response) else JSONResponse(s.messages)

    async def _prompt_async(self, request: Request) -> Response:
        denied, body = await self._begin(request)
        if denied:
            return denied
        s = self._session(request)
        if isinstance(s, Response):
            return s
        self.prompts.append(body)
        text = "".join(p.get("text", "") for p in body.get("parts", []) if p.get("type") == "text")
        step = self._steps.popleft() if self._steps else OcReply()
        s.aborted = asyncio.Event()
        task = asyncio.create_task(self._turn(s, text, step, body.get("model")))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return Response(status_code=204)

    async def _turn(self, s: _Session, text: str, step: Step, model: dict[str, str] | None) -> None:
        d, sid = s.directory, s.id
        user = {"id": self._id("msg"), "sessionID": sid, "role": "user"}
        s.messages.append({"info": user, "parts": [{"type": "text", "text": text}]})
        self._publish(d, "message.updated", {"sessionID": sid, "info": user})
        self._publish(
            d,
            "message.part.updated",
            {
                "sessionID": sid,
                "part": {
                    "id": self._id("prt"),
                    "sessionID": sid,
                    "messageID": user["id"],
                    "type": "text",
                    "text": text,
                },
            },
        )
        self._publish(d, "session.status", {"sessionID": sid, "status": {"type": "busy"}})
        await asyncio.sleep(0)
        provider = (model or {}).get("providerID", "fake")
        model_id = (model or {}).get("modelID", "fake-model")
        reply = {
            "id": self._id("msg"),
            "sessionID": sid,
            "role": "assistant",
            "providerID": provider,
            "modelID": model_id,
        }
        self._publish(d, "message.updated", {"sessionID": sid, "info": reply})
        if isinstance(step, OcPermission):
            self._publish(
                d,
                "permission.asked",
                {
                    "id": self._id("per"),
                    "sessionID": sid,
                    "permission": step.permission,
                    "patterns": ["rm -rf build"],
                    "metadata": {},
                },
            )
            await s.aborted.wait()  # OpenCode waits for the answer; an abort ends the turn
            self._publish(d, "session.status", {"sessionID": sid, "status": {"type": "idle"}})
            return
        if isinstance(step, OcRetry | OcHang):
            attempt = 0
            while not s.aborted.is_set():
                if isinstance(step, OcRetry):
                    attempt += 1
                    self._publish(
                        d,
                        "session.status",
                        {
                            "sessionID": sid,
                            "status": {
                                "type": "retry",
                                "attempt": attempt,
                                "message": step.message,
                                "next": 0,
                            },
                        },
                    )
                try:
                    await asyncio.wait_for(s.aborted.wait(), 0.05)
                except TimeoutError:
                    continue
            self._publish(
                d,
                "session.error",
                {"sessionID": sid, "error": {"name": "MessageAbortedError", "data": {"message": "Aborted"}}},
            )
            self._publish(d, "session.status", {"sessionID": sid, "status": {"type": "idle"}})
            self._publish(d, "session.idle", {"sessionID": sid})
            return
        if isinstance(step, OcModelError):
            error = {
                "name": "APIError",
                "data": {"message": step.message, "statusCode": 400, "isRetryable": step.retryable},
            }
            self._publish(d, "session.error", {"sessionID": sid, "error": error})
            self._publish(d, "session.status", {"sessionID": sid, "status": {"type": "idle"}})
            self._publish(d, "session.idle", {"sessionID": sid})
            return
        part = {"id": self._id("prt"), "sessionID": sid, "messageID": reply["id"], "type": "text", "text": ""}
        self._publish(
            d,
            "message.part.updated",
            {"sessionID": sid, "part": {**part, "type": "step-start", "id": self._id("prt")}},
        )
        self._publish(d, "message.part.updated", {"sessionID": sid, "part": part})
        size = max(1, -(-len(step.text) // max(1, step.chunks)))
        for i in range(0, len(step.text), size):
            delta = step.text[i : i + size]
            self._publish(
                d,
                "message.part.delta",
                {
                    "sessionID": sid,
                    "messageID": reply["id"],
                    "partID": part["id"],
                    "field": "text",
                    "delta": delta,
                },
            )
        done = {**part, "text": step.text}
        # OpenCode emits some events twice: consumers must be idempotent
        self._publish(d, "message.part.updated", {"sessionID": sid, "part": done})
        self._publish(d, "message.part.updated", {"sessionID": sid, "part": done})
        finished = {
            **reply,
            "tokens": {"input": len(text), "output": len(step.text)},
            "cost": 0.0025,
            "finish": "stop",
        }
        s.messages.append({"info": finished, "parts": [done]})
        self._publish(d, "message.updated", {"sessionID": sid, "info": finished})
        self._publish(d, "session.status", {"sessionID": sid, "status": {"type": "idle"}})
        self._publish(d, "session.status", {"sessionID": sid, "status": {"type": "idle"}})
        self._publish(d, "session.idle", {"sessionID": sid})

    async def _abort(self, request: Request) -> Response:
        denied, _ = await self._begin(request)
        if denied:
            return denied
        s = self._session(request)
        if isinstance(s, Response):
            return s
        self.aborts.append(s.id)
        s.aborted.set()
        return JSONResponse(True)

    async def _command(self, request: Request) -> Response:
        denied, body = await self._begin(request)
        if denied:
            return denied
        s = self._session(request)
        if isinstance(s, Response):
            return s
        self.commands.append(body)
        if body.get("command") != "init":
            return JSONResponse(
                {"name": "UnknownError", "data": {"message": "Unexpected server error"}}, status_code=500
            )
        info = {"id": self._id("msg"), "sessionID": s.id, "role": "assistant"}
        return JSONResponse({"info": info, "parts": [{"type": "text", "text": "Created AGENTS.md"}]})

    async def _share(self, request: Request) -> Response:
        denied, _ = await self._begin(request)
        if denied:
            return denied
        s = self._session(request)
        if isinstance(s, Response):
            return s
        s.share = f"https://opncd.ai/s/{s.id[-6:]}"
        return JSONResponse(self._info(s))

    async def _revert(self, request: Request) -> Response:
        denied, body = await self._begin(request)
        if denied:
            return denied
        s = self._session(request)
        if isinstance(s, Response):
            return s
        s.revert = {"messageID": body["messageID"], "snapshot": "abc", "diff": ""}
        return JSONResponse(self._info(s))

    async def _unrevert(self, request: Request) -> Response:
        denied, _ = await self._begin(request)
        if denied:
            return denied
        s = self._session(request)
        if isinstance(s, Response):
            return s
        s.revert = None
        return JSONResponse(self._info(s))
