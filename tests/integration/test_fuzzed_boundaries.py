"""Seeded mutations of well-formed messages and requests, thrown at the running services.

Each boundary must refuse what it cannot use with a reason and go on: no HTTP 5xx, no error
logged, no service stopped, and a plain turn answered afterwards. The mutations keep a
message's shape and change a few values deep inside it (wrong types, empty, huge, control
characters, subject wildcards, NaN), which is where hand-written checks miss things: this is
how a `user` beyond ASCII was found to end in a 500 after its turn had run, and
`"all": "false"` to remove every sandbox. Seeds are fixed, so a failure repeats.
"""

from __future__ import annotations

import copy
import json
import logging
import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import nats
import pytest
import pytest_asyncio

from tests.fixtures.gateway import Gateway, run_gateway, wait_until

pytestmark = pytest.mark.slow

CONFIG: dict[str, Any] = {
    "agents": {
        "defaults": {"model": "echo/test"},
        "list": [{"id": "home", "default": True}, {"id": "work"}],
    },
    "bindings": [{"agentId": "work", "match": {"channel": "api", "accountId": "work"}}],
    "session": {"dmScope": "per-channel-peer"},
    "hooks": {"enabled": True, "token": "hook-token-0123456789", "allowedAgentIds": ["home"]},
}
HOOK_TOKEN = "hook-token-0123456789"

# values a mutation puts where another value was
PALETTE: tuple[Any, ...] = (
    "", " ", ".", ">", "*", "a.b", "=zz", "a" * 300, "x" * 5000, "\x00", "line\nbreak", "\x1b[2J",
    "é😀", "\u202e", -1, 0, 1, 2**63 - 1, -(2**63), 1.5, float("nan"), float("inf"), -0.0,
    [], {}, None, True, False, ["a"], {"a": 1}, {"kind": "direct", "id": "u"}, {"kind": "", "id": ""},
)  # fmt: skip


def mutate(rng: random.Random, value: Any, times: int) -> Any:
    """`value` with `times` changes somewhere inside it: a field or item replaced by a value of
    PALETTE, removed, or (in a list) repeated."""
    value = copy.deepcopy(value)
    for _ in range(times):
        node = value
        for _ in range(rng.randint(0, 5)):  # walk down to a container
            children = (
                list(node.values()) if isinstance(node, dict) else node if isinstance(node, list) else []
            )
            inner = [c for c in children if isinstance(c, dict | list) and c]
            if not inner or rng.random() < 0.3:
                break
            node = rng.choice(inner)
        new = copy.deepcopy(rng.choice(PALETTE))
        if isinstance(node, dict) and node:
            key = rng.choice(list(node))
            if rng.random() < 0.75:
                node[key] = new
            else:
                del node[key]
        elif isinstance(node, list) and node:
            i = rng.randrange(len(node))
            if rng.random() < 0.75:
                node[i] = new
            else:
                node.append(copy.deepcopy(node[i]))
        elif isinstance(node, dict):
            node[rng.choice(("extra", "id", "type"))] = new
    return value


def encode(rng: random.Random, value: Any) -> tuple[bytes, dict[str, str]]:
    """msgpack, JSON (NaN and all), or a few random bytes, with a Content-Type that may lie."""
    roll = rng.random()
    if roll < 0.45:
        return msgspec.msgpack.encode(value), {"Content-Type": "application/msgpack"}
    if roll < 0.9:
        return json.dumps(value).encode(), {"Content-Type": "application/json"}
    junk = bytes(rng.randrange(256) for _ in range(rng.randint(0, 40)))
    return junk, rng.choice(
        ({}, {"Content-Type": "application/json"}, {"Content-Type": "application/msgpack"})
    )


async def _answer(nc: Any, subject: str, data: bytes, headers: dict[str, str]) -> bytes | None:
    try:
        return bytes((await nc.request(subject, data, headers=headers, timeout=10)).data)
    except TimeoutError:
        return None


def _errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [f"{r.name}: {r.getMessage()[:300]}" for r in caplog.records if r.levelno >= logging.ERROR]


async def _still_answers(gw: Gateway) -> None:
    async with gw.client() as http:
        for n in range(2):
            r = await http.post(
                "/v1/messages?wait=60",
                json={"text": f"still here {n}", "peer": {"kind": "direct", "id": f"z{n}"}},
            )
            assert (r.status_code, r.json().get("text")) == (200, f"echo: still here {n}"), r.text
    assert not gw.task.done()


@pytest_asyncio.fixture
async def gw(nats_url: str, tmp_path: Path) -> AsyncIterator[Gateway]:
    services = ("ingress", "router", "runner", "node-agent")
    async with run_gateway(nats_url, CONFIG, tmp_path, services=services) as gateway:
        yield gateway


def _inbound(i: int) -> dict[str, Any]:
    return {
        "type": "inbound",
        "id": f"fz{i}",
        "channel": "api",
        "accountId": "default",
        "peer": {"kind": "direct", "id": f"p{i % 7}"},
        "text": "hi",
        "attachments": [{"name": "a.txt", "mime": "text/plain", "size": 3}],
        "history": [{"sender": "s", "body": "b", "ts": 1.0}],
        "metadata": {"k": "v"},
        "replyEvents": "final",
    }


def _turn(i: int) -> dict[str, Any]:
    return {
        "type": "turn",
        "turnId": f"fz{i}",
        "seq": 1,
        "route": {
            "agentId": "home",
            "sessionKey": f"agent:home:api:direct:fz{i}",
            "mainSessionKey": "agent:home:main",
            "matchedBy": "default",
            "channel": "api",
            "accountId": "default",
        },
        "inbound": _inbound(i),
    }


async def test_bus_boundaries_refuse_mutated_messages_and_keep_serving(
    gw: Gateway, nats_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    rng = random.Random(20261205)
    answers: list[bytes | None] = []
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    node = gw.service("node-agent").node_id
    reply_subject = gw.service("ingress").reply_subject
    try:
        for i in range(240):
            kind = i % 8
            if kind in (0, 1):  # the router's input, as if an ingress had stored it
                data, headers = encode(rng, mutate(rng, _inbound(i), rng.randint(1, 4)))
                await js.publish(rng.choice(("cm.in.api.default", "cm.in.api.work")), data, headers=headers)
            elif kind in (2, 3):  # the runners' input, as if the router had published it
                data, headers = encode(rng, mutate(rng, _turn(i), rng.randint(1, 4)))
                await js.publish(rng.choice(("cm.turn.home", "cm.turn.work")), data, headers=headers)
            elif kind == 4:  # a node's tool invocation (read-only tools only)
                call = {
                    "type": "invoke",
                    "invocationId": f"fz{i}",
                    "tool": rng.choice(("ls", "read")),
                    "arguments": {"path": "."},
                    "agentId": "home",
                    "sessionKey": "agent:home:main",
                    "timeout": 5,
                }
                data, headers = encode(rng, mutate(rng, call, rng.randint(1, 3)))
                answers.append(await _answer(nc, f"cm.node.{node}.invoke", data, headers))
            elif kind == 5:  # POST /tools/invoke's request to a runner
                call = {"type": "tools_invoke", "requestId": f"fz{i}", "agentId": "home", "sessionKey": "agent:home:main", "tool": "session_status"}  # fmt: skip
                data, headers = encode(rng, mutate(rng, call, rng.randint(1, 3)))
                answers.append(await _answer(nc, "cm.tools.home.invoke", data, headers))
            elif kind == 6:  # a stop, and the operator's sandbox request
                stop = {"type": "stop", "sessionKey": "agent:home:main", "agentId": "home"}
                data, headers = encode(rng, mutate(rng, stop, rng.randint(1, 3)))
                await nc.publish("cm.ctl.stop", data, headers=headers)
                ask = mutate(rng, {"agentId": "nobody"}, 1)
                answer = await nc.request("cm.ctl.sandbox.recreate", json.dumps(ask).encode(), timeout=10)
                assert json.loads(answer.data)["removed"] == 0
            else:  # what an ingress's reply subject receives
                event = rng.choice(
                    (
                        {"type": "route", "turnId": "x", "channel": "api", "accountId": "default"},
                        {"type": "final", "turnId": "x", "text": "t"},
                        {"type": "delta", "turnId": "x", "text": "t"},
                    )
                )
                data, headers = encode(rng, mutate(rng, event, rng.randint(1, 3)))
                await nc.publish(reply_subject, data, headers=headers)
        await nc.flush()

        async def drained() -> bool:
            pending = 0
            for stream in ("CM_INBOUND", "CM_TURNS"):
                for info in await js.consumers_info(stream):
                    pending += info.num_pending + info.num_ack_pending
            return pending == 0

        await wait_until(drained, 120, message="every mutated message taken")
        # a request is answered, even a malformed one: its caller is not left to time out
        assert None not in answers
        letters = (await js.stream_info("CM_DLQ")).state.messages
        assert letters > 0  # most were refused into the dead-letter stream, with their reasons
    finally:
        await nc.close()
    await _still_answers(gw)
    assert _errors(caplog) == []


HTTP_BODIES: dict[str, dict[str, Any]] = {
    "/v1/messages": {
        "text": "hi",
        "peer": {"kind": "direct", "id": "u"},
        "messageId": "m1",
        "accountId": "default",
    },
    "/v1/chat/completions": {
        "model": "openclaw",
        "messages": [{"role": "user", "content": "hi"}],
        "user": "u",
    },
    "/v1/responses": {"model": "openclaw", "input": "hi", "user": "u"},
    "/tools/invoke": {"tool": "session_status", "args": {}, "sessionKey": "main"},
    "/a2a/v1": {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "message/send",
        "params": {"message": {"role": "user", "parts": [{"kind": "text", "text": "hi"}], "messageId": "m"}},
    },
    "/hooks/agent": {"message": "hi", "agentId": "home", "name": "x"},
    "/hooks/wake": {"text": "hi", "mode": "now"},
    "/v1/approvals/abc/approve": {"decision": "allow-once"},
}
HTTP_GETS = ("/v1/turns/{}", "/v1/approvals/{}", "/v1/models/{}", "/a2a/{}/.well-known/agent-card.json")
PATH_PARTS = (
    "",
    "%00",
    "%2e%2e",
    "..%2f..",
    "a" * 600,
    "%ff%fe",
    "agent:home:main",
    "%C3%A9",
    "*",
    ">",
    "a.b",
)
HEADERS = ("x-openclaw-session-key", "x-openclaw-agent-id", "x-openclaw-message-channel", "x-openclaw-model")


def _json(body: bytes) -> dict[str, Any]:
    try:
        value = json.loads(body)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _raw(headers: dict[str, str]) -> dict[str, bytes]:
    """Header values as UTF-8 bytes: what a client that does not check sends."""
    return {k: v.encode() for k, v in headers.items()}


async def test_http_endpoints_answer_mutated_requests_without_a_5xx(
    gw: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    rng = random.Random(1205)
    failures: list[str] = []
    async with gw.client(timeout=60) as http:
        for i in range(320):
            headers = {"content-type": "application/json"}
            if rng.random() < 0.3:  # printable ASCII: what an HTTP client can send at all
                headers[rng.choice(HEADERS)] = rng.choice(
                    ("main", "agent:work:x", "a" * 600, "subagent:x", "=", "é")
                )
            if i % 5 == 4:
                path = rng.choice(HTTP_GETS).format(rng.choice(PATH_PARTS))
                r = await http.get(path, headers=_raw(headers))
            else:
                path = rng.choice(list(HTTP_BODIES))
                if path.startswith("/hooks"):
                    headers["authorization"] = f"Bearer {HOOK_TOKEN}"
                body = (
                    mutate(rng, HTTP_BODIES[path], rng.randint(1, 4))
                    if rng.random() < 0.9
                    else rng.choice(PALETTE)
                )
                query = rng.choice(("", "?wait=1", "?wait=-1", "?wait=abc", "?wait=1e309", "?wait=nan"))
                r = await http.post(path + query, content=json.dumps(body).encode(), headers=_raw(headers))
            # a 5xx is for what failed behind the API (a model, the bus), said as a JSON error
            if r.status_code == 500 or (r.status_code > 500 and "error" not in _json(r.content)):
                failures.append(f"{r.status_code} {r.request.method} {path}: {r.text[:200]}")
    assert failures == []
    await _still_answers(gw)
    assert _errors(caplog) == []
