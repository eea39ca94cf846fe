"""The HTTP API end to end: ingress → router → runner(echo) → reply, on a real nats-server."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from clawmesh.wire import DeadLetter, decode
from tests.fixtures.gateway import Gateway, run_gateway, wait_until
from tests.fixtures.sse import sse_events

CONFIG: dict[str, Any] = {
    "agents": {
        "defaults": {"model": "echo/test"},
        "list": [{"id": "home", "default": True}, {"id": "work"}],
    },
    "bindings": [{"agentId": "work", "match": {"channel": "api", "accountId": "work"}}],
    "session": {"dmScope": "per-channel-peer"},
}


@pytest_asyncio.fixture
async def gw(nats_url: str, tmp_path: Path) -> AsyncIterator[Gateway]:
    async with run_gateway(nats_url, CONFIG, tmp_path) as gateway:
        yield gateway


async def test_post_returns_202_with_route_then_reply_is_retrievable(gw: Gateway) -> None:
    async with gw.client() as http:
        r = await http.post("/v1/messages", json={"text": "hello", "peer": {"kind": "direct", "id": "alice"}})
        assert r.status_code == 202, r.text
        body = r.json()
        assert body["agentId"] == "home"
        assert body["sessionKey"] == "agent:home:api:direct:alice"

        async def finished() -> dict[str, Any] | None:
            s = await http.get(f"/v1/turns/{body['turnId']}")
            return s.json() if s.status_code == 200 and s.json()["state"] == "done" else None

        status = await wait_until(finished, message="turn done")
        assert status["text"] == "echo: hello"


async def test_wait_returns_the_reply_and_bindings_apply(gw: Gateway) -> None:
    async with gw.client() as http:
        r = await http.post(
            "/v1/messages?wait=30",
            json={"text": "to work", "accountId": "work", "peer": {"kind": "direct", "id": "bob"}},
        )
        assert r.status_code == 200, r.text
        assert r.json()["agentId"] == "work" and r.json()["text"] == "echo: to work"


async def test_sse_streams_route_deltas_and_final(gw: Gateway) -> None:
    async with gw.client() as http:
        r = await http.post(
            "/v1/messages",
            json={"text": "stream these four words", "peer": {"kind": "direct", "id": "carol"}},
            headers={"Accept": "text/event-stream"},
        )
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    events = sse_events(r.text)
    names = [e for e, _ in events]
    assert names[0] == "route" and names[-1] == "final"
    assert "started" in names
    deltas = "".join(d["text"] for e, d in events if e == "delta")
    final = events[-1][1]
    assert len([e for e in names if e == "delta"]) > 1
    assert deltas == final["text"] == "echo: stream these four words"


async def test_reply_subject_carries_only_what_the_caller_waits_for(gw: Gateway, nc: Any) -> None:
    """A waiting caller gets the decision and the final event on the reply subject; a streaming
    one every event. (The session's own event subject always has them all.)"""
    seen: dict[str, list[str]] = {}

    async def on_reply(msg: Any) -> None:
        item = json.loads(msg.data)
        seen.setdefault(item.get("turnId", ""), []).append(item.get("type", "route"))

    await nc.subscribe(gw.service("ingress").reply_subject, cb=on_reply)
    await nc.flush()
    async with gw.client() as http:
        waited = await http.post(
            "/v1/messages?wait=30", json={"text": "one two three", "peer": {"kind": "direct", "id": "dan"}}
        )
        streamed = await http.post(
            "/v1/messages",
            json={"text": "one two three", "peer": {"kind": "direct", "id": "eve"}},
            headers={"Accept": "text/event-stream"},
        )
    assert waited.status_code == 200 and waited.json()["text"] == "echo: one two three"
    streamed_id = next(d["turnId"] for e, d in sse_events(streamed.text) if e == "final")
    waited_id = waited.json()["turnId"]
    await wait_until(lambda: "final" in seen.get(streamed_id, []), message="streamed turn's final seen")
    assert sorted(seen[waited_id]) == ["final", "route"]
    assert {"route", "started", "delta", "final"} <= set(seen[streamed_id])


async def test_session_events_can_be_followed(gw: Gateway) -> None:
    key = "agent:home:api:direct:dave"
    async with gw.client() as http, http.stream("GET", f"/v1/sessions/{key}/events") as follow:
        assert follow.status_code == 200
        chunks = follow.aiter_text()
        first = await anext(chunks)  # sent once the subscription exists
        assert first.startswith(": following")
        r = await http.post(
            "/v1/messages?wait=30", json={"text": "followed", "peer": {"kind": "direct", "id": "dave"}}
        )
        assert r.status_code == 200
        buffer = ""
        while "event: final" not in buffer:
            buffer += await asyncio.wait_for(anext(chunks), 10)
    events = sse_events(buffer)
    assert [e for e, _ in events if e in ("started", "final")] == ["started", "final"]
    assert events[-1][1]["text"] == "echo: followed"


async def test_openai_client_non_streaming_and_streaming(gw: Gateway) -> None:
    import openai

    client = openai.AsyncOpenAI(base_url=gw.url + "/v1", api_key=gw.token, max_retries=0)
    models = await client.models.list()
    assert {m.id for m in models.data} == {
        "openclaw",
        "openclaw/default",
        "openclaw/home",
        "openclaw/work",
        "clawmesh/home",
        "clawmesh/work",
    }
    completion = await client.chat.completions.create(
        model="clawmesh/work",
        messages=[{"role": "system", "content": "x"}, {"role": "user", "content": "hi there"}],
        user="erin",
    )
    assert completion.choices[0].message.content == "echo: hi there"
    assert completion.choices[0].finish_reason == "stop"
    stream = await client.chat.completions.create(
        model="agent:home", messages=[{"role": "user", "content": "streamed reply"}], stream=True
    )
    parts = [chunk.choices[0].delta.content or "" async for chunk in stream if chunk.choices]
    assert "".join(parts) == "echo: streamed reply"
    with pytest.raises(openai.NotFoundError) as err:
        await client.chat.completions.create(
            model="clawmesh/ghost", messages=[{"role": "user", "content": "x"}]
        )
    assert err.value.code == "model_not_found"
    await client.close()


async def test_agents_health_and_ready(gw: Gateway) -> None:
    async with gw.client() as http:
        agents = (await http.get("/v1/agents")).json()["agents"]
        assert [a["id"] for a in agents] == ["home", "work"]
        assert (await http.get("/healthz")).json() == {"status": "ok"}
        assert (await http.get("/readyz")).json()["ready"] is True


async def test_unknown_routes_and_methods_are_json_errors(gw: Gateway) -> None:
    async with gw.client() as http:
        missing = await http.get("/v1/nope")
        wrong = await http.put("/v1/messages", json={"text": "x"})
    assert missing.status_code == 404
    assert missing.json()["error"] == {"code": "not_found", "message": "no route '/v1/nope'"}
    assert wrong.status_code == 405 and wrong.headers["allow"] == "POST"
    assert wrong.json()["error"] == {
        "code": "method_not_allowed",
        "message": "PUT is not allowed on '/v1/messages'",
    }


async def test_auth_is_required_and_failures_are_rate_limited(nats_url: str, tmp_path: Path) -> None:
    config = {
        **CONFIG,
        "gateway": {
            "auth": {
                "token": "right",
                "rateLimit": {"maxAttempts": 3, "exemptLoopback": False, "lockoutMs": 60000},
            }
        },
    }
    async with run_gateway(nats_url, config, tmp_path) as gw, httpx.AsyncClient(base_url=gw.url) as http:
        r = await http.get("/v1/agents")
        assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
        assert r.headers["www-authenticate"].startswith("Bearer")
        assert (await http.get("/healthz")).status_code == 200  # probes need no token
        # the missing token was failure 1; failure 3 locks the address out
        assert (await http.get("/v1/agents", headers={"Authorization": "Bearer wrong"})).status_code == 401
        locked = await http.get("/v1/agents", headers={"Authorization": "Bearer wrong"})
        assert locked.status_code == 429 and int(locked.headers["retry-after"]) >= 59
        # even the right token is refused from a locked-out address until the lockout ends
        assert (await http.get("/v1/agents", headers={"Authorization": "Bearer right"})).status_code == 429


async def test_body_limit_and_validation_errors(nats_url: str, tmp_path: Path) -> None:
    config = {**CONFIG, "gateway": {"maxBodyBytes": 2000}}
    async with run_gateway(nats_url, config, tmp_path) as gw, gw.client() as http:
        big = await http.post("/v1/messages", json={"text": "x" * 5000})
        assert big.status_code == 413 and big.json()["error"]["code"] == "payload_too_large"
        bad_json = await http.post(
            "/v1/messages", content=b"{not json", headers={"Content-Type": "application/json"}
        )
        assert bad_json.status_code == 400 and bad_json.json()["error"]["code"] == "invalid_json"
        bad_kind = await http.post("/v1/messages", json={"text": "x", "peer": {"kind": "room", "id": "1"}})
        assert bad_kind.status_code == 400
        assert bad_kind.json()["error"]["path"] == "$.peer.kind"
        unknown = await http.post("/v1/messages", json={"text": "x", "tekst": "y"})
        assert unknown.status_code == 400 and "tekst" in unknown.json()["error"]["message"]
        missing = await http.post("/v1/messages", json={"peer": {"kind": "direct", "id": "1"}})
        assert missing.status_code == 400 and "text" in missing.json()["error"]["message"]


async def test_a_body_under_the_limit_that_the_bus_cannot_carry_is_413(gw: Gateway) -> None:
    """1 MiB is both the default body limit and NATS's max_payload: a body just under the
    limit is more than the bus carries once wrapped in its message."""
    async with gw.client() as http:
        r = await http.post("/v1/messages", json={"text": "x" * (1024 * 1024 - 100)})
        assert r.status_code == 413, r.text
        assert r.json()["error"]["code"] == "payload_too_large"
        assert "bytes once encoded" in r.json()["error"]["message"]
        ok = await http.post("/v1/messages?wait=30", json={"text": "still connected"})
        assert ok.status_code == 200 and ok.json()["text"] == "echo: still connected"


async def test_duplicate_message_ids_make_one_turn(gw: Gateway, nc: Any) -> None:
    async with gw.client() as http:
        body = {"text": "once", "peer": {"kind": "direct", "id": "frank"}, "messageId": "m-1"}
        first = await http.post("/v1/messages?wait=30", json=body)
        second = await http.post("/v1/messages", json=body)
        assert first.status_code == 200 and second.status_code == 200
        assert second.json()["duplicate"] is True and second.json()["turnId"] == first.json()["turnId"]
        # a retry that waits gets the reply too, though it went to the first request
        waited = await http.post("/v1/messages?wait=30", json=body)
        assert waited.status_code == 200 and waited.json()["duplicate"] is True
        assert (waited.json()["state"], waited.json()["text"]) == ("done", "echo: once")
    info = await nc.jetstream().stream_info("CM_INBOUND")
    assert info.state.messages == 1


async def test_concurrent_requests_with_one_message_id_both_get_the_reply(gw: Gateway, nc: Any) -> None:
    body = {"text": "twice", "peer": {"kind": "direct", "id": "hank"}, "messageId": "m-2"}
    async with gw.client() as http:
        replies = await asyncio.gather(*(http.post("/v1/messages?wait=30", json=body) for _ in range(2)))
    assert [r.status_code for r in replies] == [200, 200]
    assert [r.json()["text"] for r in replies] == ["echo: twice"] * 2
    assert sorted(bool(r.json().get("duplicate")) for r in replies) == [False, True]
    assert len(gw.service("ingress").waiters) == 0


async def test_routing_error_reaches_caller_and_dead_letters(nats_url: str, tmp_path: Path, nc: Any) -> None:
    config = {"agents": {"list": [{"id": "a", "model": "echo/a"}, {"id": "b", "model": "echo/b"}]}}
    async with run_gateway(nats_url, config, tmp_path) as gw, gw.client() as http:
        r = await http.post(
            "/v1/messages", json={"text": "who gets this?", "channel": "telegram", "accountId": "bot1"}
        )
        assert r.status_code == 422
        err = r.json()["error"]
        assert err["code"] == "AGENT_SELECTION_REQUIRED" and "telegram:bot1" in err["hint"]
        ghost = await http.post("/v1/messages", json={"text": "x", "agentId": "ghost"})
        assert ghost.status_code == 404 and ghost.json()["error"]["code"] == "UNKNOWN_AGENT"
    js = nc.jetstream()
    msg = await js.get_last_msg("CM_DLQ", "cm.dlq.router")
    letter = decode(msg.data, DeadLetter, msg.headers)
    assert letter.service == "router" and letter.code == "UNKNOWN_AGENT"
    # the code is its own field: the reason says what happened, without repeating it
    assert "ghost" in letter.reason and not letter.reason.startswith("UNKNOWN_AGENT")


async def test_malformed_messages_are_dead_lettered_and_services_keep_running(gw: Gateway, nc: Any) -> None:
    js = nc.jetstream()
    await js.publish("cm.in.api.default", b"\x93garbage")
    await js.publish(
        "cm.in.api.default", b'{"type": "inbound", "id": 5}', headers={"Content-Type": "application/json"}
    )
    await js.publish("cm.turn.home", b"not a turn")
    await js.publish(
        "cm.turn.home",
        b'{"type": "future-kind", "turnId": "x"}',
        headers={"Content-Type": "application/json"},
    )
    await nc.publish(gw.service("ingress").reply_subject, b"junk")

    async def letters() -> list[DeadLetter] | None:
        info = await js.stream_info("CM_DLQ")
        if info.state.messages < 4:
            return None
        sub = await js.subscribe("cm.dlq.>", ordered_consumer=True)
        out = [decode((await sub.next_msg(5)).data, DeadLetter) for _ in range(info.state.messages)]
        await sub.unsubscribe()
        return out

    found = await wait_until(letters, message="4 dead letters")
    by_service = sorted((d.service, d.subject) for d in found)
    assert by_service == [("router", "cm.in.api.default")] * 2 + [("runner", "cm.turn.home")] * 2
    reasons = " | ".join(d.reason for d in found)
    assert "Invalid value 'future-kind'" in reasons and "Expected `str`, got `int` - at `$.id`" in reasons
    async with gw.client() as http:
        ok = await http.post(
            "/v1/messages?wait=30", json={"text": "still alive", "peer": {"kind": "direct", "id": "gina"}}
        )
        assert ok.status_code == 200 and ok.json()["text"] == "echo: still alive"


async def test_store_failure_is_a_json_503_and_nothing_is_accepted(gw: Gateway, nc: Any) -> None:
    await nc.jetstream().delete_stream("CM_INBOUND")  # JetStream can no longer store inbound messages
    async with gw.client() as http:
        r = await http.post("/v1/messages", json={"text": "lost?"})
    assert r.status_code == 503 and r.headers["retry-after"] == "5"
    assert (
        r.json()["error"]["code"] == "unavailable" and "nothing was accepted" in r.json()["error"]["message"]
    )


async def _runner_counters(nc: Any) -> dict[str, int]:
    """The runner's counters as `$SRV.STATS` reports them (every endpoint carries them)."""
    reply = await nc.request("$SRV.STATS.clawmesh-runner", b"", timeout=5)
    return dict(json.loads(reply.data)["endpoints"][0]["data"]["counters"])


async def test_failed_turn_status_write_is_counted_in_srv_stats(gw: Gateway, nc: Any) -> None:
    before = await _runner_counters(nc)
    assert "best_effort_failed.turn_status_write" not in before
    await nc.jetstream().delete_stream("KV_cm_turns")  # turn statuses can no longer be written
    async with gw.client() as http:
        r = await http.post(
            "/v1/messages?wait=30", json={"text": "status?", "peer": {"kind": "direct", "id": "hal"}}
        )
        assert r.status_code == 200 and r.json()["text"] == "echo: status?"  # the reply is unaffected

    async def counted() -> dict[str, int] | None:
        counters = await _runner_counters(nc)
        return counters if counters.get("turns_completed", 0) > before.get("turns_completed", 0) else None

    counters = await wait_until(counted, message="turn counted")
    assert counters["best_effort_failed.turn_status_write"] == 1


async def test_public_bind_without_auth_is_refused(nats_url: str, tmp_path: Path) -> None:
    from clawmesh_ingress.app import IngressRefused

    config = {**CONFIG, "gateway": {"bind": "lan", "auth": {"mode": "none"}}}
    with pytest.raises(IngressRefused, match="without authentication"):
        async with run_gateway(nats_url, config, tmp_path, services=("ingress",)):
            pass


@pytest.mark.parametrize("token", ["change-me", "CHANGEME", "secret"])
async def test_public_bind_with_an_example_token_is_refused(
    nats_url: str, tmp_path: Path, token: str
) -> None:
    """The token the old compose default and the docs' examples used is refused off loopback,
    and the error does not echo it."""
    from clawmesh_ingress.app import IngressRefused

    config = {**CONFIG, "gateway": {"bind": "lan", "auth": {"mode": "token", "token": token}}}
    with pytest.raises(IngressRefused, match="example API token") as info:
        async with run_gateway(nats_url, config, tmp_path, services=("ingress",)):
            pass
    assert token not in str(info.value)


async def test_loopback_bind_with_an_example_token_still_serves(nats_url: str, tmp_path: Path) -> None:
    config = {**CONFIG, "gateway": {"auth": {"mode": "token", "token": "change-me"}}}
    async with run_gateway(nats_url, config, tmp_path, services=("ingress",)) as gw:
        async with httpx.AsyncClient(base_url=gw.url) as http:
            r = await http.get("/v1/agents", headers={"Authorization": "Bearer change-me"})
        assert r.status_code == 200, r.text
