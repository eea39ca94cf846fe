"""The ingress's shared HTTP pieces: body parsing errors, the request guard, SSE framing."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Literal

import httpx
import msgspec
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from clawmesh.checks import default_checks
from clawmesh.config import ConfigError, GatewayRateLimit, load_config
from clawmesh.httpserver import EmbeddedHTTPServer
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
from clawmesh_ingress.security import AuthGate, client_address
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


def test_invalid_utf8_names_its_offset_in_the_body() -> None:
    with pytest.raises(InvalidBody) as err:
        decode_body(b'{"text": "ok \xff"}', Body)
    assert err.value.code == "invalid_json"
    assert err.value.message == "body is not valid UTF-8 (byte 13)"


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


def test_routing_errors_are_404_for_an_unknown_agent_502_when_given_up_else_422() -> None:
    assert routing_error_status("UNKNOWN_AGENT") == 404
    assert routing_error_status("AGENT_SELECTION_REQUIRED") == 422
    assert routing_error_status(None) == 422
    assert routing_error_status("DELIVERY_LIMIT") == 502  # the router gave up: a server-side failure


# --- server-sent events --------------------------------------------------------------------


def test_sse_frames() -> None:
    assert sse("delta", {"text": "é"}) == 'event: delta\ndata: {"text": "é"}\n\n'.encode()
    assert sse("final", b'{"type":"final"}') == b'event: final\ndata: {"type":"final"}\n\n'
    assert sse_data({"a": 1}) == b'data: {"a": 1}\n\n'
    assert sse_data(b"[DONE]") == b"data: [DONE]\n\n"
    assert sse_comment("keep-alive") == b": keep-alive\n\n"


# --- who the client is -----------------------------------------------------------------------


def request_from(peer: str, **headers: str) -> Request:
    raw = [(k.replace("_", "-").lower().encode(), v.encode()) for k, v in headers.items()]
    return Request({"type": "http", "method": "GET", "path": "/", "headers": raw, "client": (peer, 1)})


def test_forwarding_headers_are_believed_only_from_a_trusted_proxy() -> None:
    spoofed = request_from("127.0.0.1", x_forwarded_for="203.0.113.7")
    assert client_address(spoofed, []) == "127.0.0.1"
    assert client_address(spoofed, ["10.0.0.0/8"]) == "127.0.0.1"
    assert client_address(spoofed, ["127.0.0.1"]) == "203.0.113.7"
    # the right-most address that is not a trusted proxy: the left ones are the client's to forge
    chained = request_from("10.1.1.1", x_forwarded_for="198.51.100.1, 203.0.113.7, 10.2.2.2")
    assert client_address(chained, ["10.0.0.0/8"]) == "203.0.113.7"
    assert client_address(request_from("10.1.1.1", x_real_ip="203.0.113.9"), ["10.0.0.0/8"]) == "203.0.113.9"
    assert client_address(request_from("10.1.1.1", x_forwarded_for="not-an-ip"), ["10.0.0.0/8"]) == "10.1.1.1"
    assert client_address(request_from("10.1.1.1"), ["10.0.0.0/8"]) == "10.1.1.1"


def test_the_limiter_forgets_expired_failures_and_lockouts() -> None:
    now = [0.0]
    limits = GatewayRateLimit(max_attempts=2, window_ms=60_000, lockout_ms=300_000, exempt_loopback=False)
    gate = AuthGate(lambda: "secret", lambda: limits, lambda: ["127.0.0.1"], clock=lambda: now[0])
    for i in range(100):
        assert gate.check(request_from("127.0.0.1", x_forwarded_for=f"203.0.113.{i}")) is not None
    gate.check(request_from("127.0.0.1", x_forwarded_for="198.51.100.1"))
    gate.check(request_from("127.0.0.1", x_forwarded_for="198.51.100.1"))  # locked out
    assert gate.tracked() == 101
    now[0] = 120.0  # the failure windows are over, the lockout is not
    assert gate.check(request_from("127.0.0.1", authorization="Bearer secret")) is None
    assert gate.tracked() == 1
    now[0] = 400.0
    assert gate.check(request_from("127.0.0.1", authorization="Bearer secret")) is None
    assert gate.tracked() == 0


async def claimed_statuses(trusted: Sequence[str]) -> list[int]:
    """Over a real server: three wrong tokens, then the right one, all claiming to be forwarded
    for 203.0.113.7 (two failures lock an address out; loopback is exempt)."""
    limits = GatewayRateLimit(max_attempts=2, exempt_loopback=True)
    guard = RequestGuard(AuthGate(lambda: "secret", lambda: limits, lambda: trusted), lambda: 64)

    async def ok(request: Request) -> Response:
        return JSONResponse({})

    server = EmbeddedHTTPServer(Starlette(routes=[Route("/", guard(ok))]), "127.0.0.1", 0)
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as http:
            statuses = []
            for token in ("wrong", "wrong", "wrong", "secret"):
                headers = {"X-Forwarded-For": "203.0.113.7", "Authorization": f"Bearer {token}"}
                statuses.append((await http.get("/", headers=headers)).status_code)
            return statuses
    finally:
        await server.stop()


async def test_a_loopback_peer_cannot_lock_out_another_address_by_claiming_it() -> None:
    """Without gateway.trustedProxies, X-Forwarded-For is the client's own claim (uvicorn would
    otherwise rewrite the client address from it for any loopback peer)."""
    assert await claimed_statuses([]) == [401, 401, 401, 200]  # loopback, exempt: the header changes nothing
    assert await claimed_statuses(["127.0.0.1"]) == [401, 429, 429, 429]  # a trusted proxy's word is taken


def test_trusted_proxies_are_ips_or_cidrs(tmp_path: Path) -> None:
    path = tmp_path / "clawmesh.json"
    path.write_text(json.dumps({"gateway": {"trustedProxies": ["10.0.0.0/8", "::1"]}}))
    config = load_config(path, env={"HOME": str(tmp_path)}, checks=default_checks())
    assert config.document.gateway is not None
    assert config.document.gateway.trusted_proxies == ["10.0.0.0/8", "::1"]
    assert not [w for w in config.warnings if "trustedProxies" in w.path]
    path.write_text(json.dumps({"gateway": {"trustedProxies": ["10.0.0.0/8", "proxy.lan"]}}))
    with pytest.raises(ConfigError, match=r"'proxy.lan' is not an IP address or CIDR"):
        load_config(path, env={"HOME": str(tmp_path)}, checks=default_checks())


# --- slow clients ----------------------------------------------------------------------------

SLOW_HEADERS = b"POST /read HTTP/1.1\r\nHost: t\r\nX-Slow: "
SLOW_BODY = (
    b"POST /read HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer secret\r\n"
    b"Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n"
)


async def trickle(port: int, headers: bytes) -> bytes:
    """Send `headers` (a request's start, or all of its headers) and then one byte every
    0.05 s for ever, as a slow-loris client would; what the server sent before it closed."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(headers)
    received = b""
    try:
        while True:
            writer.write(b"a")
            try:
                await writer.drain()
                chunk = await asyncio.wait_for(reader.read(4096), 0.05)
            except TimeoutError:
                continue  # still open: next byte
            except ConnectionError:
                return received
            if not chunk:
                return received
            received += chunk
    finally:
        writer.close()


@pytest.mark.parametrize("start", [SLOW_HEADERS, SLOW_BODY], ids=["headers", "body"])
async def test_connections_sending_too_slowly_are_closed(start: bytes) -> None:
    guard = RequestGuard(AuthGate(lambda: "secret", GatewayRateLimit), lambda: 1 << 20, body_timeout=1.0)

    async def read(request: Request) -> Response:
        body = await guard.read(request, Body)
        return JSONResponse({"text": body.text})

    app = Starlette(routes=[Route("/read", guard(read), methods=["POST"])])
    server = EmbeddedHTTPServer(app, "127.0.0.1", 0, header_timeout=1.0)
    await server.start()
    try:
        # generous: each is closed a second or so after it started
        answers = await asyncio.wait_for(
            asyncio.gather(*(trickle(server.port, start) for _ in range(20))), 60
        )
    finally:
        await server.stop()
    if start is SLOW_HEADERS:
        assert answers == [b""] * 20  # nothing to answer: no request yet
    else:
        assert {a.split(b"\r\n", 1)[0] for a in answers} == {b"HTTP/1.1 408 Request Timeout"}
        assert all(b'"code":"request_timeout"' in a for a in answers)
