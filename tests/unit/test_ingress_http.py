"""The ingress's shared HTTP pieces: body parsing errors, the request guard, SSE framing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Literal

import httpx
import msgspec
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from clawmesh.config import GatewayRateLimit
from clawmesh_ingress.http import (
    BadRequest,
    InvalidBody,
    RequestGuard,
    decode_body,
    routing_error_status,
    sse,
    sse_comment,
    sse_data,
)
from clawmesh_ingress.security import AuthGate
from clawmesh_ingress.turns import Unavailable


class PeerIn(msgspec.Struct, forbid_unknown_fields=True):
    kind: Literal["direct", "group"]
    id: str


class Body(msgspec.Struct, forbid_unknown_fields=True):
    text: str
    peer: PeerIn | None = None


# --- body parsing ----------------------------------------------------------------------------


def test_a_valid_body_decodes() -> None:
    assert decode_body(b'{"text": "hi", "peer": {"kind": "group", "id": "g"}}', Body) == Body(
        "hi", PeerIn("group", "g")
    )


def test_a_problem_inside_the_body_names_its_json_path() -> None:
    with pytest.raises(InvalidBody) as err:
        decode_body(b'{"text": "hi", "peer": {"kind": "room", "id": "g"}}', Body)
    assert err.value.code == "invalid_request" and err.value.path == "$.peer.kind"
    assert "$.peer.kind" not in err.value.message and "$.peer.kind" in err.value.detail


def test_a_problem_with_the_whole_body_is_at_the_root() -> None:
    with pytest.raises(InvalidBody) as err:
        decode_body(b'{"peer": null}', Body)
    assert err.value.code == "invalid_request" and err.value.path == "$"
    assert "text" in err.value.message


def test_a_body_that_is_not_json_says_so() -> None:
    with pytest.raises(InvalidBody) as err:
        decode_body(b"{not json", Body)
    assert err.value.code == "invalid_json" and err.value.path is None
    assert err.value.message.startswith("body is not valid JSON: ")


# --- the guard ---------------------------------------------------------------------------------


async def unavailable(request: Request) -> Response:
    raise Unavailable("could not store the message")


async def teapot(request: Request) -> Response:
    raise BadRequest(JSONResponse({"short": "stout"}, status_code=418))


def own_invalid(exc: InvalidBody) -> Response:
    return JSONResponse({"mine": exc.detail}, status_code=400)


def client(token: str | None = "secret") -> httpx.AsyncClient:
    """A fresh app (and failure count) per client: token `secret`, two failures lock out."""
    limits = GatewayRateLimit(max_attempts=2, exempt_loopback=False)
    guard = RequestGuard(AuthGate(lambda: "secret", lambda: limits), lambda: 64)

    async def read(request: Request) -> Response:
        body = await guard.read(request, Body)
        return JSONResponse({"text": body.text})

    app = Starlette(
        routes=[
            Route("/read", guard(read), methods=["POST"]),
            Route("/own", guard(read, on_invalid=own_invalid), methods=["POST"]),
            Route("/unavailable", guard(unavailable)),
            Route("/teapot", guard(teapot)),
        ]
    )
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t", headers=headers)


async def test_the_guard_passes_a_good_request_through() -> None:
    async with client() as http:
        r = await http.post("/read", json={"text": "hi"})
    assert r.status_code == 200 and r.json() == {"text": "hi"}


async def test_missing_and_wrong_tokens_are_401_then_429() -> None:
    async with client(token=None) as http:
        missing = await http.post("/read", json={"text": "hi"})
        assert missing.status_code == 401 and missing.json()["error"]["code"] == "unauthorized"
        assert missing.json()["error"]["message"] == "missing bearer token"
        assert missing.headers["www-authenticate"] == 'Bearer realm="clawmesh"'
        locked = await http.post("/read", json={"text": "hi"}, headers={"Authorization": "Bearer wrong"})
        assert locked.status_code == 429 and locked.json()["error"]["code"] == "rate_limited"
        assert int(locked.headers["retry-after"]) == 300


async def test_too_large_bodies_are_413_declared_or_streamed() -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(10):
            yield b'{"text": "0123456789"}'

    async with client() as http:
        declared = await http.post("/read", json={"text": "x" * 100})
        streamed = await http.post("/read", content=chunks())
    for r in (declared, streamed):
        assert r.status_code == 413
        assert r.json()["error"] == {"code": "payload_too_large", "message": "request body exceeds 64 bytes"}
    assert "content-length" not in streamed.request.headers


async def test_an_invalid_body_is_answered_in_the_surface_s_own_shape() -> None:
    async with client() as http:
        standard = await http.post("/read", json={"text": 5})
        own = await http.post("/own", json={"text": 5})
    assert standard.status_code == 400
    assert standard.json()["error"] == {
        "code": "invalid_request",
        "message": "Expected `str`, got `int`",
        "path": "$.text",
    }
    assert own.status_code == 400 and own.json() == {"mine": "Expected `str`, got `int` - at `$.text`"}


async def test_unavailable_is_a_503_to_retry_and_bad_request_carries_its_response() -> None:
    async with client() as http:
        down = await http.get("/unavailable")
        pot = await http.get("/teapot")
    assert down.status_code == 503 and down.headers["retry-after"] == "5"
    assert down.json()["error"] == {"code": "unavailable", "message": "could not store the message"}
    assert pot.status_code == 418 and pot.json() == {"short": "stout"}


def test_routing_errors_are_404_for_an_unknown_agent_else_422() -> None:
    assert routing_error_status("UNKNOWN_AGENT") == 404
    assert routing_error_status("AGENT_SELECTION_REQUIRED") == 422
    assert routing_error_status(None) == 422


# --- server-sent events --------------------------------------------------------------------


def test_sse_frames() -> None:
    assert sse("delta", {"text": "é"}) == 'event: delta\ndata: {"text": "é"}\n\n'.encode()
    assert sse("final", b'{"type":"final"}') == b'event: final\ndata: {"type":"final"}\n\n'
    assert sse_data({"a": 1}) == b'data: {"a": 1}\n\n'
    assert sse_data(b"[DONE]") == b"data: [DONE]\n\n"
    assert sse_comment("keep-alive") == b": keep-alive\n\n"
