"""Fake Coze chat API v3 (both sites' paths), faithful to the official SDK's fixtures:
`event:<name>` / `data:<json>` SSE without a space after the colon, the exact event sequence of
a streamed chat, errors as HTTP 200 + `{"code", "msg"}` (also when a stream was asked for),
`conversation_id` in the query string, non-streamed chats that complete after polls, message
list, cancel.

    fake = FakeCoze(token="pat_x")
    fake.script(CozeReply("hello", chunks=3), CozeFail(5000, "event interval error"))
    async with serve_app(fake.app) as url: ...

Every request is kept in `fake.requests` (method, path, query, host, JSON body).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

__all__ = [
    "CozeError",
    "CozeErrorEvent",
    "CozeFail",
    "CozeHang",
    "CozeReply",
    "CozeRequest",
    "CozeRequiresAction",
    "FakeCoze",
]


@dataclass(frozen=True)
class CozeReply:
    text: str = "pong from coze"
    chunks: int = 3
    verbose: bool = True  # also send the `verbose` generate_answer_finish message, as Coze does
    follow_up: str | None = "Ask me more?"


@dataclass(frozen=True)
class CozeFail:
    """`conversation.chat.failed` with `last_error`."""

    code: int = 5000
    msg: str = "event interval error"


@dataclass(frozen=True)
class CozeError:
    """HTTP 200 + JSON envelope instead of a stream (SDK fixture `mock_chat_stream_json_fail`)."""

    code: int = 4000
    msg: str = "json fail"


@dataclass(frozen=True)
class CozeErrorEvent:
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CozeRequiresAction:
    pass


@dataclass(frozen=True)
class CozeHang:
    """Stream the chat start and a first answer delta, then wait until the chat is cancelled."""

    first: str = "thinking"


Step = CozeReply | CozeFail | CozeError | CozeErrorEvent | CozeRequiresAction | CozeHang


@dataclass
class CozeRequest:
    method: str
    path: str
    query: dict[str, str]
    host: str
    headers: dict[str, str]
    body: dict[str, Any] | None


def _sse(event: str, data: Any) -> bytes:
    return f"event:{event}\ndata:{json.dumps(data, ensure_ascii=False, separators=(',', ':'))}\n\n".encode()


class FakeCoze:
    def __init__(self, token: str = "pat_test", bot_id: str = "7348293334") -> None:
        self.token = token
        self.bot_id = bot_id
        self.requests: list[CozeRequest] = []
        self.cancelled: list[tuple[str, str]] = []
        self._steps: deque[Step] = deque()
        self._ids = itertools.count(7382000000000000001)
        self._chats: dict[str, dict[str, Any]] = {}  # chat id → chat object (non-stream flow)
        self._polls: dict[str, int] = {}
        self._cancel_events: dict[str, asyncio.Event] = {}
        self.app = Starlette(
            routes=[
                Route("/v3/chat", self._chat, methods=["POST"]),
                Route("/v3/chat/retrieve", self._retrieve, methods=["GET", "POST"]),
                Route("/v3/chat/message/list", self._messages, methods=["GET", "POST"]),
                Route("/v3/chat/cancel", self._cancel, methods=["POST"]),
            ]
        )

    def script(self, *steps: Step) -> None:
        self._steps.extend(steps)

    def _next_id(self) -> str:
        return str(next(self._ids))

    async def _record(self, request: Request) -> dict[str, Any] | None:
        raw = await request.body()
        body = json.loads(raw) if raw else None
        self.requests.append(
            CozeRequest(
                method=request.method,
                path=request.url.path,
                query=dict(request.query_params),
                host=request.headers.get("host", ""),
                headers=dict(request.headers),
                body=body,
            )
        )
        return body

    def _auth_error(self, request: Request) -> Response | None:
        if request.headers.get("authorization") != f"Bearer {self.token}":
            return JSONResponse(
                {"code": 4100, "msg": "authentication is invalid", "detail": {"logid": "202412"}},
                headers={"x-tt-logid": "202412"},
            )
        return None

    def _chat_obj(self, chat_id: str, conversation_id: str, status: str, **extra: Any) -> dict[str, Any]:
        return {
            "id": chat_id,
            "conversation_id": conversation_id,
            "bot_id": self.bot_id,
            "created_at": int(time.time()),
            "last_error": {"code": 0, "msg": ""},
            "status": status,
            "usage": {"token_count": 0, "output_count": 0, "input_count": 0},
            **extra,
        }

    async def _chat(self, request: Request) -> Response:
        body = await self._record(request)
        if (refused := self._auth_error(request)) is not None:
            return refused
        if not isinstance(body, dict) or not body.get("bot_id") or not body.get("user_id"):
            return JSONResponse({"code": 4000, "msg": "invalid parameter: bot_id and user_id are required"})
        if body["bot_id"] != self.bot_id:
            return JSONResponse({"code": 4200, "msg": f"bot {body['bot_id']} not found"})
        step = self._steps.popleft() if self._steps else CozeReply()
        if isinstance(step, CozeError):
            return JSONResponse({"code": step.code, "msg": step.msg})
        conversation_id = request.query_params.get("conversation_id") or self._next_id()
        chat_id = self._next_id()
        question = "".join(
            m.get("content", "") for m in body.get("additional_messages") or () if m.get("role") == "user"
        )
        if not body.get("stream"):
            reply = step if isinstance(step, CozeReply) else CozeReply()
            self._chats[chat_id] = {
                "chat": self._chat_obj(chat_id, conversation_id, "in_progress"),
                "reply": reply.text,
            }
            return JSONResponse({"code": 0, "msg": "", "data": self._chats[chat_id]["chat"]})
        return StreamingResponse(
            self._stream(step, chat_id, conversation_id, question),
            media_type="text/event-stream",
            headers={"x-tt-logid": "202412"},
        )

    async def _stream(self, step: Step, chat_id: str, conversation_id: str, question: str) -> Any:
        yield _sse("conversation.chat.created", self._chat_obj(chat_id, conversation_id, "created"))
        yield _sse("conversation.chat.in_progress", self._chat_obj(chat_id, conversation_id, "in_progress"))
        if isinstance(step, CozeHang):
            yield _sse(
                "conversation.message.delta",
                {
                    "id": self._next_id(),
                    "conversation_id": conversation_id,
                    "bot_id": self.bot_id,
                    "role": "assistant",
                    "type": "answer",
                    "content": step.first,
                    "content_type": "text",
                    "chat_id": chat_id,
                },
            )
            cancelled = self._cancel_events.setdefault(chat_id, asyncio.Event())
            await cancelled.wait()
            return
        if isinstance(step, CozeFail):
            yield _sse(
                "conversation.chat.failed",
                self._chat_obj(
                    chat_id,
                    conversation_id,
                    "failed",
                    last_error={"code": step.code, "msg": step.msg},
                    failed_at=int(time.time()),
                ),
            )
            yield _sse("done", "[DONE]")
            return
        if isinstance(step, CozeErrorEvent):
            yield _sse("error", step.data)
            return
        if isinstance(step, CozeRequiresAction):
            yield _sse(
                "conversation.chat.requires_action",
                self._chat_obj(
                    chat_id,
                    conversation_id,
                    "requires_action",
                    required_action={
                        "type": "submit_tool_outputs",
                        "submit_tool_outputs": {
                            "tool_calls": [
                                {
                                    "id": "call_1",
                                    "type": "function",
                                    "function": {"name": "f", "arguments": "{}"},
                                }
                            ]
                        },
                    },
                ),
            )
            yield _sse("done", "[DONE]")
            return
        assert isinstance(step, CozeReply)
        message_id = self._next_id()
        base = {
            "id": message_id,
            "conversation_id": conversation_id,
            "bot_id": self.bot_id,
            "role": "assistant",
            "type": "answer",
            "content_type": "text",
            "chat_id": chat_id,
        }
        size = max(1, -(-len(step.text) // max(1, step.chunks)))
        for i in range(0, len(step.text), size):
            yield _sse("conversation.message.delta", {**base, "content": step.text[i : i + size]})
        yield _sse("conversation.message.completed", {**base, "content": step.text})
        if step.verbose:
            yield _sse(
                "conversation.message.completed",
                {
                    **base,
                    "id": self._next_id(),
                    "type": "verbose",
                    "content": json.dumps({"msg_type": "generate_answer_finish", "data": ""}),
                },
            )
        if step.follow_up:
            yield _sse(
                "conversation.message.completed",
                {**base, "id": self._next_id(), "type": "follow_up", "content": step.follow_up},
            )
        yield _sse(
            "conversation.chat.completed",
            self._chat_obj(
                chat_id,
                conversation_id,
                "completed",
                completed_at=int(time.time()),
                usage={
                    "token_count": len(question) + len(step.text),
                    "output_count": len(step.text),
                    "input_count": len(question),
                },
            ),
        )
        yield _sse("done", "[DONE]")

    async def _retrieve(self, request: Request) -> Response:
        await self._record(request)
        if (refused := self._auth_error(request)) is not None:
            return refused
        chat_id = request.query_params.get("chat_id", "")
        chat = self._chats.get(chat_id)
        if chat is None:
            return JSONResponse({"code": 4000, "msg": f"chat {chat_id} not found"})
        self._polls[chat_id] = self._polls.get(chat_id, 0) + 1
        if self._polls[chat_id] >= 2:
            chat["chat"] = {**chat["chat"], "status": "completed", "completed_at": int(time.time())}
        return JSONResponse({"code": 0, "msg": "", "data": chat["chat"]})

    async def _messages(self, request: Request) -> Response:
        await self._record(request)
        if (refused := self._auth_error(request)) is not None:
            return refused
        chat_id = request.query_params.get("chat_id", "")
        chat = self._chats.get(chat_id)
        if chat is None:
            return JSONResponse({"code": 4000, "msg": f"chat {chat_id} not found"})
        c = chat["chat"]
        message = {
            "id": self._next_id(),
            "conversation_id": c["conversation_id"],
            "bot_id": self.bot_id,
            "chat_id": chat_id,
            "role": "assistant",
            "type": "answer",
            "content": chat["reply"],
            "content_type": "text",
        }
        return JSONResponse({"code": 0, "msg": "", "data": [message]})

    async def _cancel(self, request: Request) -> Response:
        body = await self._record(request)
        if (refused := self._auth_error(request)) is not None:
            return refused
        body = body or {}
        chat_id, conversation_id = str(body.get("chat_id")), str(body.get("conversation_id"))
        self.cancelled.append((conversation_id, chat_id))
        self._cancel_events.setdefault(chat_id, asyncio.Event()).set()
        return JSONResponse(
            {"code": 0, "msg": "", "data": self._chat_obj(chat_id, conversation_id, "canceled")}
        )
