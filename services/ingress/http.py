"""HTTP helpers every API surface shares: JSON errors, bounded body reading and parsing, the
guard in front of each handler (auth, rate limit, the common error answers), SSE framing."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, Literal, TypeVar

import msgspec
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from clawmesh.config import Config
from clawmesh.wire import ErrorCode

from .security import AuthGate
from .turns import MessageTooLarge, Unavailable

__all__ = [
    "DEFAULT_BODY_TIMEOUT",
    "EXCEPTION_HANDLERS",
    "NO_CACHE",
    "OPENAI_PATHS",
    "BadRequest",
    "BodyTimeout",
    "BodyTooLarge",
    "ErrorRenderer",
    "Handler",
    "InvalidBody",
    "RequestGuard",
    "body_limit",
    "decode_body",
    "error",
    "http_exception",
    "openai_error",
    "read_body",
    "render_openai_error",
    "routing_error_status",
    "sse",
    "sse_comment",
    "sse_data",
    "sse_response",
]

T = TypeVar("T")
Handler = Callable[[Request], Awaitable[Response]]

# How long a client may take to send a request's body (after its headers).
DEFAULT_BODY_TIMEOUT = 60.0
NO_CACHE = {"Cache-Control": "no-cache"}
_AT_PATH = re.compile(r" - at `(\$[^`]*)`")


# --- errors ----------------------------------------------------------------------------------


def error(
    status: int,
    code: ErrorCode,
    message: str,
    *,
    path: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    """`{"error": {code, message, path?, …extra}}`: the clawmesh API's error shape."""
    body: dict[str, Any] = {"code": code, "message": message, **extra}
    if path:
        body["path"] = path
    return JSONResponse({"error": body}, status_code=status, headers=headers)


_STATUS_CODES: dict[int, ErrorCode] = {404: "not_found", 405: "method_not_allowed"}

# Paths of the OpenAI-compatible surface: their errors, even Starlette's own 404/405, are in
# OpenAI's shape, which OpenAI client libraries turn into their exceptions.
OPENAI_PATHS = ("/v1/chat/", "/v1/models", "/v1/responses", "/v1/embeddings", "/v1/completions", "/tools/")
_OPENAI_TYPES: dict[int, str] = {
    401: "authentication_error",
    403: "permission_error",
    404: "invalid_request_error",
    429: "rate_limit_error",
}


def openai_error(
    status: int,
    message: str,
    *,
    type_: str | None = None,
    param: str | None = None,
    code: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """`{"error": {message, type, param, code}}`: OpenAI's error shape. `type_` defaults by
    status: `server_error` for a 5xx, else `invalid_request_error` (401, 403, 429 their own)."""
    if type_ is None:
        type_ = _OPENAI_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return JSONResponse(
        {"error": {"message": message, "type": type_, "param": param, "code": code}},
        status_code=status,
        headers=headers,
    )


def render_openai_error(
    status: int, code: ErrorCode, message: str, headers: dict[str, str] | None
) -> Response:
    """The guard's refusals in OpenAI's shape (an `ErrorRenderer`)."""
    return openai_error(status, message, code=code, headers=headers)


async def http_exception(request: Request, exc: Exception) -> Response:
    """Starlette's own refusals (no such route, wrong method) in the JSON error shape."""
    assert isinstance(exc, HTTPException)
    headers = dict(exc.headers) if exc.headers else None  # 405's Allow
    if exc.status_code == 404:
        message = f"no route {request.url.path!r}"
    elif exc.status_code == 405:
        message = f"{request.method} is not allowed on {request.url.path!r}"
    else:
        message = str(exc.detail)
    code = _STATUS_CODES.get(exc.status_code, "invalid_request")
    if request.url.path.startswith(OPENAI_PATHS):
        return openai_error(exc.status_code, message, code=code, headers=headers)
    return error(exc.status_code, code, message, headers=headers)


EXCEPTION_HANDLERS = {HTTPException: http_exception}


class BadRequest(Exception):
    """Answer the request with `response` instead (raised from deep inside a handler)."""

    def __init__(self, response: Response) -> None:
        self.response = response


def routing_error_status(code: ErrorCode | None) -> int:
    """A failed route decision as an HTTP status: an unknown agent is a 404, a message the
    router gave up on (`DELIVERY_LIMIT`) a 502, the rest 422."""
    if code == "DELIVERY_LIMIT":
        return 502
    return 404 if code == "UNKNOWN_AGENT" else 422


# --- request bodies --------------------------------------------------------------------------


class BodyTooLarge(Exception):
    pass


class BodyTimeout(Exception):
    pass


class InvalidBody(Exception):
    """A body that is not JSON (`invalid_json`) or does not fit the expected shape
    (`invalid_request`, with `path`: the JSON path of the problem, `$` for the whole body)."""

    def __init__(
        self, code: Literal["invalid_json", "invalid_request"], message: str, path: str | None, detail: str
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.path = path
        self.detail = detail  # msgspec's own words, the path included


def body_limit(config: Config) -> int:
    """gateway.maxBodyBytes, 1 MiB by default."""
    return config.settings.gateway.max_body_bytes


async def read_body(request: Request, limit: int, timeout: float = DEFAULT_BODY_TIMEOUT) -> bytes:
    """The request body, refusing more than `limit` bytes (declared or actually sent) and a body
    not all there within `timeout` seconds (BodyTimeout: a slow client must not hold a
    connection for ever)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge()
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(timeout):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise BodyTooLarge()
                chunks.append(chunk)
    except TimeoutError:
        raise BodyTimeout() from None
    return b"".join(chunks)


def decode_body(data: bytes, type_: type[T]) -> T:
    """Decode and validate a JSON body; InvalidBody says what is wrong and where."""
    try:
        return msgspec.json.decode(data, type=type_)
    except msgspec.ValidationError as exc:
        text = str(exc)
        found = _AT_PATH.search(text)
        path = found.group(1) if found else "$"
        raise InvalidBody("invalid_request", _AT_PATH.sub("", text), path, text) from None
    except msgspec.DecodeError as exc:
        raise InvalidBody("invalid_json", f"body is not valid JSON: {exc}", None, str(exc)) from None
    except UnicodeDecodeError:
        # msgspec checks a string's UTF-8 only as it builds it, outside its own error types, and
        # its offset is within that string: find the offset in the body (error path only)
        try:
            data.decode("utf-8")
            where = ""
        except UnicodeDecodeError as whole:
            where = f" (byte {whole.start})"
        detail = f"body is not valid UTF-8{where}"
        raise InvalidBody("invalid_json", detail, None, detail) from None
    except RecursionError:
        detail = "body is nested too deeply"
        raise InvalidBody("invalid_request", detail, "$", detail) from None


def _invalid_body(exc: InvalidBody) -> Response:
    return error(400, exc.code, exc.message, path=exc.path)


# status, code, message, headers → the response (a surface's error shape)
ErrorRenderer = Callable[[int, ErrorCode, str, dict[str, str] | None], Response]


def _render_error(status: int, code: ErrorCode, message: str, headers: dict[str, str] | None) -> Response:
    return error(status, code, message, headers=headers)


# --- the guard -------------------------------------------------------------------------------


class RequestGuard:
    """Auth and rate limit in front of a handler, and the answers every surface gives alike:
    401/429 (with WWW-Authenticate / Retry-After), 413, 503 when nothing could be stored.
    How a malformed body is answered is the surface's own (`on_invalid`)."""

    def __init__(
        self, auth: AuthGate, body_limit: Callable[[], int], *, body_timeout: float = DEFAULT_BODY_TIMEOUT
    ) -> None:
        self._auth = auth
        self.body_limit = body_limit  # read per request: the config can change while we run
        self.body_timeout = body_timeout

    async def read(self, request: Request, type_: type[T]) -> T:
        """The request body decoded as `type_` (BodyTooLarge, BodyTimeout, InvalidBody)."""
        return decode_body(await read_body(request, self.body_limit(), self.body_timeout), type_)

    def __call__(
        self,
        handler: Handler,
        *,
        on_invalid: Callable[[InvalidBody], Response] = _invalid_body,
        render: ErrorRenderer = _render_error,
    ) -> Handler:
        """`render` draws the common refusals in the surface's own error shape."""
        error = render

        async def guarded(request: Request) -> Response:
            denied = self._auth.check(request)
            if denied is not None:
                status, message, retry = denied
                if status == 401:
                    headers = {"WWW-Authenticate": 'Bearer realm="clawmesh"'}
                else:
                    headers = {"Retry-After": str(max(1, round(retry or 1)))}
                return error(status, "unauthorized" if status == 401 else "rate_limited", message, headers)
            try:
                return await handler(request)
            except Unavailable as exc:
                return error(503, "unavailable", str(exc), {"Retry-After": "5"})
            except BodyTooLarge:
                return error(
                    413, "payload_too_large", f"request body exceeds {self.body_limit()} bytes", None
                )
            except MessageTooLarge as exc:
                return error(413, "payload_too_large", str(exc), None)
            except BodyTimeout:
                return error(
                    408,
                    "request_timeout",
                    f"request body not received within {self.body_timeout:g} seconds",
                    {"Connection": "close"},
                )
            except InvalidBody as exc:
                return on_invalid(exc)
            except BadRequest as exc:
                return exc.response

        return guarded


# --- server-sent events ----------------------------------------------------------------------


def _json(data: Any) -> bytes:
    return data if isinstance(data, bytes) else json.dumps(data, ensure_ascii=False).encode()


def sse(event: str, data: Any) -> bytes:
    """A named event; `data` is JSON-encoded unless it already is (bytes)."""
    return b"event: " + event.encode() + b"\ndata: " + _json(data) + b"\n\n"


def sse_data(data: Any) -> bytes:
    """An unnamed event (the OpenAI stream's framing)."""
    return b"data: " + _json(data) + b"\n\n"


def sse_comment(text: str) -> bytes:
    """A comment line: clients ignore it; it shows the stream is alive."""
    return b": " + text.encode() + b"\n\n"


class _EventStream(StreamingResponse):
    def __init__(
        self, frames: AsyncIterator[bytes], headers: Mapping[str, str] | None, on_close: Callable[[], None]
    ) -> None:
        super().__init__(frames, media_type="text/event-stream", headers=headers)
        self._on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._on_close()


def sse_response(
    frames: AsyncIterator[bytes],
    headers: Mapping[str, str] | None = None,
    *,
    on_close: Callable[[], None] = lambda: None,
) -> StreamingResponse:
    """`on_close` runs when the response ends however it ends, even when the client went away
    before the first frame was asked for (the generator's own `finally` then never runs)."""
    return _EventStream(frames, headers, on_close)
