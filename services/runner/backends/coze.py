"""`runnerType: coze`: Coze chat API v3, streamed (api.coze.cn or api.coze.com).

Plain httpx rather than the `cozepy` SDK: the whole exchange is one streamed POST (plus a
cancel), the SDK's pinned pydantic models would only be re-parsed here, and its import costs
more than the turn overhead this runner is allowed. One Coze conversation per clawmesh
session: the first turn starts one, its id is kept with the session (the transcript's
`backend.session`) and every later turn passes it as `conversation_id`.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, Final

import httpx
import msgspec

from clawmesh.config import ConfigError, CozeSettings, secret_value

from ._base import BackendError, OnDelta, ProxyResult, ProxyTurn, failover_worthy_status
from ._sse import sse_events

__all__ = ["CozeBackend"]

# Coze error codes (HTTP 200 + `code`) that mean "try again later" rather than "fix the request".
_RATE_LIMIT_CODES: Final = frozenset({4013, 4019, 4020, 4028})
_AUTH_CODES: Final = frozenset({4100, 4101, 700012006})
_CANCEL_TIMEOUT: Final = 5.0


def _classify(code: int, msg: str, where: str) -> BackendError:
    if code in _RATE_LIMIT_CODES:
        return BackendError(f"Coze {where}: {msg} (code {code})", reason="rate_limit", failover=True)
    if code in _AUTH_CODES:
        return BackendError(
            f"Coze {where}: {msg} (code {code})",
            reason="auth",
            failover=False,
            hint="check the agent's coze.<region>.apiKey (a personal access token of that site)",
        )
    if 5000 <= code < 6000:
        return BackendError(f"Coze {where}: {msg} (code {code})", reason="server", failover=True)
    return BackendError(f"Coze {where}: {msg} (code {code})", reason="coze_error", failover=False)


def _envelope_error(body: bytes, status: int) -> BackendError:
    """A JSON answer where a stream was asked for: Coze's `{code, msg}` envelope (HTTP 200)."""
    try:
        doc = msgspec.json.decode(body)
    except msgspec.DecodeError:
        doc = None
    if isinstance(doc, dict) and isinstance(doc.get("code"), int) and doc["code"] != 0:
        return _classify(doc["code"], str(doc.get("msg") or ""), "refused the chat")
    return BackendError(
        f"Coze answered HTTP {status} without a stream: {body[:200]!r}",
        reason="server" if failover_worthy_status(status) else "coze_error",
        failover=failover_worthy_status(status),
    )


class CozeBackend:
    kind = "coze"

    def __init__(self, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._client = httpx.AsyncClient(
            transport=transport, timeout=httpx.Timeout(30.0, read=300.0), trust_env=False
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def run(self, turn: ProxyTurn, on_delta: OnDelta) -> ProxyResult:
        settings = turn.settings
        assert isinstance(settings, CozeSettings)
        try:
            token = secret_value(settings.api_key, turn.env, settings.api_key_path)
        except ConfigError as exc:
            raise BackendError(str(exc.problems[0]), reason="config", failover=False) from None
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        body = {
            "bot_id": settings.bot_id,
            "user_id": turn.session_key,
            "additional_messages": [
                {"role": "user", "type": "question", "content": turn.text, "content_type": "text"}
            ],
            "stream": True,
            "auto_save_history": True,
        }
        params = {"conversation_id": turn.remote_session} if turn.remote_session else None
        state = _ChatState(conversation_id=turn.remote_session)
        try:
            async with self._client.stream(
                "POST",
                f"{settings.base_url}/v3/chat",
                params=params,
                content=msgspec.json.encode(body),
                headers=headers,
            ) as resp:
                if resp.status_code != 200 or "text/event-stream" not in resp.headers.get("content-type", ""):
                    raise _envelope_error(await resp.aread(), resp.status_code)
                async for event, data in sse_events(resp.aiter_lines()):
                    # read on past `done` to the end: a response left unread closes its
                    # keep-alive connection, and a new one per turn costs more than the turn
                    if not state.done and await state.feed(event, data, on_delta):
                        state.done = True
        except asyncio.CancelledError:
            await self._cancel(settings, headers, state)
            raise
        except httpx.TimeoutException as exc:
            raise BackendError(f"Coze timed out: {exc!r}", reason="timeout", failover=True) from None
        except httpx.TransportError as exc:
            raise BackendError(
                f"Coze is unreachable at {settings.base_url}: {exc!r}", reason="connection", failover=True
            ) from None
        if not state.completed:
            raise BackendError(
                "Coze's stream ended before the chat completed", reason="timeout", failover=True
            )
        return ProxyResult(
            text="".join(state.parts),
            remote_session=state.conversation_id,
            usage=state.usage,
            model=f"coze/{settings.bot_id}",
        )

    async def _cancel(self, settings: CozeSettings, headers: dict[str, str], state: _ChatState) -> None:
        """The turn was cancelled: cancel the chat at Coze too (bounded, best effort)."""
        if not (state.chat_id and state.conversation_id):
            return
        with contextlib.suppress(Exception):
            await asyncio.shield(
                asyncio.wait_for(
                    self._client.post(
                        f"{settings.base_url}/v3/chat/cancel",
                        json={"conversation_id": state.conversation_id, "chat_id": state.chat_id},
                        headers=headers,
                    ),
                    _CANCEL_TIMEOUT,
                )
            )


class _ChatState:
    """What one chat's events said so far."""

    def __init__(self, conversation_id: str | None) -> None:
        self.conversation_id = conversation_id
        self.chat_id: str | None = None
        self.parts: list[str] = []
        self.streamed: set[str] = set()  # answer messages whose deltas were seen
        self.usage = (0, 0)
        self.completed = False
        self.done = False

    async def feed(self, event: str, data: str, on_delta: OnDelta) -> bool:
        """Take one event; True when the stream is done."""
        if event == "done":
            return True
        obj: Any = None
        if data and data != '"[DONE]"':
            try:
                obj = msgspec.json.decode(data)
            except msgspec.DecodeError:
                obj = None
        if not isinstance(obj, dict):
            obj = {}
        if event.startswith("conversation.chat."):
            self.chat_id = obj.get("id") or self.chat_id
            self.conversation_id = obj.get("conversation_id") or self.conversation_id
            if event == "conversation.chat.completed":
                usage = obj.get("usage") or {}
                self.usage = (int(usage.get("input_count") or 0), int(usage.get("output_count") or 0))
                self.completed = True
            elif event == "conversation.chat.failed":
                error = obj.get("last_error") or {}
                raise _classify(
                    int(error.get("code") or 5000), str(error.get("msg") or "chat failed"), "chat failed"
                )
            elif event == "conversation.chat.requires_action":
                raise BackendError(
                    "the Coze bot asked for a tool output (a local plugin); clawmesh does not provide them",
                    reason="coze_error",
                    failover=False,
                    hint="give the bot cloud plugins only",
                )
        elif event in ("conversation.message.delta", "conversation.message.completed"):
            if obj.get("type", "answer") != "answer" or obj.get("role", "assistant") != "assistant":
                return False  # verbose, follow_up, function_call, … are not the reply
            content = obj.get("content") or ""
            if not isinstance(content, str) or not content:
                return False
            msg_id = str(obj.get("id") or "")
            if event == "conversation.message.delta":
                self.streamed.add(msg_id)
            elif msg_id in self.streamed:
                return False  # the full text of deltas already forwarded
            self.parts.append(content)
            await on_delta(content)
        elif event == "error":
            code = obj.get("code")
            raise _classify(
                int(code) if isinstance(code, int) else 5000, str(obj.get("msg") or "stream error"), "error"
            )
        return False
