"""`runnerType: openclawx`: another gateway (a clawmesh, or OpenClaw) by its OpenAI-compatible
endpoint, `POST <baseUrl>/v1/chat/completions` with SSE.

Only the turn's message is sent: the remote gateway keeps the conversation. One remote session
per local session: the local session key is sent as `user`, which both OpenClaw and clawmesh
turn into the session `agent:<id>:openai-user:<user>`.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import msgspec

from clawmesh.config import ConfigError, OpenClawXSettings, secret_value

from ._base import BackendError, OnDelta, ProxyResult, ProxyTurn, failover_worthy_status
from ._sse import sse_events

__all__ = ["OpenClawXBackend"]


def _http_error(status: int, body: bytes, base_url: str) -> BackendError:
    message = body[:300].decode("utf-8", "replace")
    with_body = f"the gateway at {base_url} answered HTTP {status}: {message}"
    if status in (401, 403):
        return BackendError(
            with_body,
            reason="auth",
            failover=False,
            hint="check the agent's openclawx.apiKey (the remote gateway's token)",
        )
    if failover_worthy_status(status):
        return BackendError(with_body, reason="rate_limit" if status == 429 else "server", failover=True)
    return BackendError(with_body, reason="remote_error", failover=False)


class OpenClawXBackend:
    kind = "openclawx"

    def __init__(self, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._client = httpx.AsyncClient(
            transport=transport, timeout=httpx.Timeout(30.0, read=600.0), trust_env=False
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def run(self, turn: ProxyTurn, on_delta: OnDelta) -> ProxyResult:
        settings = turn.settings
        assert isinstance(settings, OpenClawXSettings)
        try:
            token = secret_value(settings.api_key, turn.env, settings.api_key_path)
        except ConfigError as exc:
            raise BackendError(str(exc.problems[0]), reason="config", failover=False) from None
        headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        user = turn.remote_session or turn.session_key
        body = {
            "model": f"openclaw/{settings.agent_id}" if settings.agent_id else "openclaw",
            "messages": [{"role": "user", "content": turn.text}],
            "stream": True,
            "stream_options": {"include_usage": True},
            "user": user,
        }
        parts: list[str] = []
        usage = (0, 0)
        model = ""
        done = False
        try:
            async with self._client.stream(
                "POST",
                f"{settings.base_url}/v1/chat/completions",
                content=msgspec.json.encode(body),
                headers=headers,
            ) as resp:
                if resp.status_code != 200:
                    raise _http_error(resp.status_code, await resp.aread(), settings.base_url)
                async for _, data in sse_events(resp.aiter_lines()):
                    # read to the end (not only to [DONE]): an unread response closes the
                    # keep-alive connection, and a new one per turn costs more than the turn
                    if done or data == "[DONE]":
                        done = True
                        continue
                    chunk: Any = msgspec.json.decode(data) if data else None
                    if not isinstance(chunk, dict):
                        continue
                    if "error" in chunk:
                        error = chunk["error"] if isinstance(chunk["error"], dict) else {}
                        raise BackendError(
                            f"the gateway at {settings.base_url} failed the turn: {error.get('message') or chunk['error']}",
                            reason="remote_error",
                            failover=error.get("type")
                            in ("overloaded_error", "rate_limit_error", "server_error"),
                        )
                    model = chunk.get("model") or model
                    if isinstance(chunk.get("usage"), dict):
                        u = chunk["usage"]
                        usage = (int(u.get("prompt_tokens") or 0), int(u.get("completion_tokens") or 0))
                    for choice in chunk.get("choices") or ():
                        text = (choice.get("delta") or {}).get("content")
                        if isinstance(text, str) and text:
                            parts.append(text)
                            await on_delta(text)
        except asyncio.CancelledError:
            raise  # leaving the `async with` closed the stream: the remote sees the client go
        except msgspec.DecodeError as exc:
            raise BackendError(
                f"the gateway at {settings.base_url} sent a malformed stream chunk: {exc}",
                reason="remote_error",
                failover=False,
            ) from None
        except httpx.TimeoutException as exc:
            raise BackendError(
                f"the gateway at {settings.base_url} timed out: {exc!r}", reason="timeout", failover=True
            ) from None
        except httpx.TransportError as exc:
            raise BackendError(
                f"the gateway at {settings.base_url} is unreachable: {exc!r}",
                reason="connection",
                failover=True,
            ) from None
        if not done:
            raise BackendError(
                f"the gateway at {settings.base_url} ended its stream without [DONE]",
                reason="timeout",
                failover=True,
            )
        return ProxyResult(text="".join(parts), remote_session=user, usage=usage, model=model or "openclawx")
