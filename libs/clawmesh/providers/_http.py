"""The HTTP layer both model APIs share: pooled httpx clients, SSE frames, error responses.

The providers speak the wire protocols directly (httpx + msgspec) rather than through the
official SDKs: the SDKs cost 2-4 ms of CPU per call on top of the HTTP round trip (building
pydantic models for every stream chunk, their own request pipeline); see docs/architecture.md.

Connections belong to the event loop that opened them, so there is one client per loop (kept
weakly: a finished loop, e.g. one per test, takes its client with it). Credentials are headers
of each request, so every key shares that client's connection pool.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Final

import httpx
import msgspec

from ._errors import parse_retry_after, reason_for
from ._types import ProviderError

# The SDKs' pool limits: httpx's own (100 connections, 20 kept alive) would queue a busy
# runner's calls and reconnect for most of them.
POOL_LIMITS: Final = httpx.Limits(max_connections=1000, max_keepalive_connections=100)

__all__ = [
    "POOL_LIMITS",
    "LoopClients",
    "ServerSentEvent",
    "error_fields",
    "iter_sse",
    "post_stream",
    "status_error",
    "stream_error",
]


class LoopClients:
    """One `httpx.AsyncClient` per running event loop, made by `make` on first use."""

    def __init__(self, make: Callable[[], httpx.AsyncClient]) -> None:
        self._make = make
        self._loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient]
        self._loops = weakref.WeakKeyDictionary()

    def get(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        client = self._loops.get(loop)
        if client is None:
            client = self._loops[loop] = self._make()
        return client

    async def aclose(self) -> None:
        """Close the running loop's connection pool."""
        client = self._loops.pop(asyncio.get_running_loop(), None)
        if client is not None:
            await client.aclose()


ServerSentEvent = tuple[str, bytes]  # (event name, "" when unnamed; data lines joined by "\n")


async def iter_sse(chunks: AsyncIterator[bytes]) -> AsyncIterator[ServerSentEvent]:
    """Server-sent events from a byte stream (the WHATWG rules the APIs need: `event:` and
    `data:` fields, comments and other fields ignored, CRLF or LF line ends)."""
    buffer = b""
    event = ""
    data: list[bytes] = []
    async for chunk in chunks:
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            if line.endswith(b"\r"):
                line = line[:-1]
            if not line:
                if data:
                    yield event, b"\n".join(data)
                event, data = "", []
                continue
            name, _, value = line.partition(b":")
            if value.startswith(b" "):
                value = value[1:]
            if name == b"data":
                data.append(value)
            elif name == b"event":
                event = value.decode("utf-8", "replace")
    # A last event without its blank line (the server closed right after it).
    line = buffer.rstrip(b"\r")
    if line.startswith(b"data:"):
        data.append(line[6:] if line.startswith(b"data: ") else line[5:])
    if data:
        yield event, b"\n".join(data)


class _ErrorObject(msgspec.Struct):
    message: object = None
    type: object = None
    code: object = None


class _ErrorEnvelope(msgspec.Struct):
    # Both APIs: {"error": {"type", "message", ("code")}} (Anthropic adds "type": "error" outside).
    error: _ErrorObject | None = None


_ENVELOPE: Final = msgspec.json.Decoder(_ErrorEnvelope)


def error_fields(raw: bytes) -> tuple[str | None, str | None, str | None]:
    """(type, code, message) of an API error body; Nones when the body is not one."""
    try:
        error = _ENVELOPE.decode(raw).error
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None, None, None
    if error is None:
        return None, None, None

    def text(value: object) -> str | None:
        return value if isinstance(value, str) and value else None

    return text(error.type), text(error.code), text(error.message)


def status_error(
    status: int, headers: Mapping[str, str], raw: bytes, *, provider: str, model: str
) -> ProviderError:
    """The classified error for an HTTP error response (status ≥ 400) and its body."""
    error_type, code, message = error_fields(raw)
    if message is None:
        body = raw.decode("utf-8", "replace").strip()[:500]
        message = f"Error code: {status}" + (f" - {body}" if body else "")
    return ProviderError(
        reason_for(status, error_type, code, message),
        message,
        provider=provider,
        model=model,
        status=status,
        retry_after=parse_retry_after(headers),
    )


@asynccontextmanager
async def post_stream(
    client: httpx.AsyncClient,
    url: str,
    body: bytes,
    headers: Mapping[str, str],
    timeout: float,
    *,
    provider: str,
    model: str,
) -> AsyncIterator[tuple[httpx.Response, bytes | None]]:
    """POST a streamed request. An error status raises its classified `ProviderError`; else the
    response, and the whole body when the server answered one JSON document instead of a stream
    (a proxy or server that ignored `stream: true`)."""
    async with client.stream("POST", url, content=body, headers=headers, timeout=timeout) as response:
        if response.status_code >= 400:
            raw = await response.aread()
            raise status_error(response.status_code, response.headers, raw, provider=provider, model=model)
        whole = None
        if response.headers.get("content-type", "").startswith("application/json"):
            whole = await response.aread()
        yield response, whole


def stream_error(raw: bytes, *, provider: str, model: str) -> ProviderError:
    """The classified error for an error event inside a 200 stream."""
    error_type, code, message = error_fields(raw)
    message = message or "An error occurred during streaming"
    return ProviderError(reason_for(None, error_type, code, message), message, provider=provider, model=model)
