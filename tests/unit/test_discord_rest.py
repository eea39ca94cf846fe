"""The Discord REST client: errors typed from Discord's answers, 429's `retry_after` from the
body or the headers, a bucket reported empty holding the next request on its route, the token
only in the Authorization header, and a message edit (a streamed preview): its shape, a deleted
message's 404 `Unknown Message`, a rate-limited edit. Interactions: the deferred answer edited
and follow-ups sent through the interaction's webhook without the bot token, the interaction
token in no error and no log line, an expired token's 404 `Unknown Webhook`; commands put."""

from __future__ import annotations

import logging
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from clawmesh_ingress.channels.discord import rest
from clawmesh_ingress.channels.discord.rest import UNKNOWN_MESSAGE, UNKNOWN_WEBHOOK, RestApi, RestError

TOKEN = "secret-bot-token"


def _api(handler: Any) -> RestApi:
    api = RestApi("http://discord.test/api/v10", TOKEN)
    api._client = httpx.AsyncClient(
        base_url="http://discord.test/api/v10/",
        headers={"authorization": f"Bot {TOKEN}"},
        transport=httpx.MockTransport(handler),
    )
    return api


async def test_a_message_is_posted_with_the_token_in_the_header_only() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"id": "55"})

    api = _api(handler)
    assert await api.create_message("123", "hi", reply_to="9") == "55"
    request = seen[0]
    assert request.url.path == "/api/v10/channels/123/messages"
    assert request.headers["authorization"] == f"Bot {TOKEN}" and TOKEN not in str(request.url)
    body = httpx.Response(200, content=request.content).json()
    assert body["message_reference"] == {"message_id": "9", "channel_id": "123", "fail_if_not_exists": False}
    assert body["allowed_mentions"] == {"parse": []}


@pytest.mark.parametrize(
    ("response", "retry_after"),
    [
        (httpx.Response(429, json={"message": "You are being rate limited.", "retry_after": 0.25}), 0.25),
        (httpx.Response(429, json={"message": "limited"}, headers={"Retry-After": "2"}), 2.0),
        (httpx.Response(429, text="<html>", headers={"X-RateLimit-Reset-After": "1.5"}), 1.5),
    ],
)
async def test_a_429_is_transient_with_its_retry_after(response: httpx.Response, retry_after: float) -> None:
    api = _api(lambda request: response)
    with pytest.raises(RestError) as err:
        await api.create_message("1", "x")
    assert err.value.status == 429 and err.value.transient and err.value.retry_after == retry_after
    assert TOKEN not in str(err.value)


async def test_errors_carry_discords_code_and_only_5xx_is_transient() -> None:
    api = _api(lambda request: httpx.Response(403, json={"message": "Missing Permissions", "code": 50013}))
    with pytest.raises(RestError) as err:
        await api.create_message("1", "x")
    assert (err.value.code, err.value.transient) == (50013, False)
    assert "Missing Permissions" in str(err.value)
    api = _api(lambda request: httpx.Response(502, text="Bad Gateway"))
    with pytest.raises(RestError) as err:
        await api.create_message("1", "x")
    assert err.value.transient and "not a Discord answer (HTTP 502)" in str(err.value)


async def test_an_empty_bucket_holds_the_next_request_on_its_route_only(monkeypatch: Any) -> None:
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    monkeypatch.setattr(rest, "asyncio", SimpleNamespace(sleep=sleep))
    headers = {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset-After": "1.5"}
    api = _api(lambda request: httpx.Response(200, json={"id": "1"}, headers=headers))
    await api.create_message("123", "first")
    assert waits == []
    await api.create_message("456", "another channel: another bucket")
    assert waits == []
    await api.create_message("123", "second")
    assert len(waits) == 1 and 0 < waits[0] <= 1.5


async def test_an_edit_patches_the_content_pinging_nobody_and_a_deleted_message_is_unknown() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path.endswith("/gone"):
            return httpx.Response(404, json={"message": "Unknown Message", "code": 10008})
        return httpx.Response(200, json={"id": "55", "content": "new text"})

    api = _api(handler)
    await api.edit_message("123", "55", "new text")
    request = seen[0]
    assert (request.method, request.url.path) == ("PATCH", "/api/v10/channels/123/messages/55")
    body = httpx.Response(200, content=request.content).json()
    assert body == {"content": "new text", "allowed_mentions": {"parse": []}}
    with pytest.raises(RestError) as err:
        await api.edit_message("123", "gone", "x")
    assert (err.value.status, err.value.code, err.value.transient) == (404, UNKNOWN_MESSAGE, False)
    assert "Unknown Message" in str(err.value)


async def test_a_rate_limited_edit_is_transient_and_edits_share_their_channels_bucket(
    monkeypatch: Any,
) -> None:
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    monkeypatch.setattr(rest, "asyncio", SimpleNamespace(sleep=sleep))
    limited = httpx.Response(429, json={"message": "You are being rate limited.", "retry_after": 0.4})
    api = _api(lambda request: limited)
    with pytest.raises(RestError) as err:
        await api.edit_message("1", "2", "x")
    assert err.value.transient and err.value.retry_after == 0.4
    headers = {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset-After": "1.5"}
    api = _api(lambda request: httpx.Response(200, json={"id": "2"}, headers=headers))
    await api.edit_message("123", "2", "first")
    await api.create_message("123", "a post is another bucket")
    assert waits == []
    await api.edit_message("123", "3", "another message of the channel: the same bucket")
    assert len(waits) == 1


IX_TOKEN = "aW50ZXJhY3Rpb246MTIzOnNlY3JldA"


async def test_the_interaction_webhook_is_called_without_the_bot_token() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"id": str(len(seen)), "content": "x"})

    api = _api(handler)
    assert await api.edit_original("10189", IX_TOKEN, "first part", suppress_embeds=True) == "1"
    assert await api.follow_up("10189", IX_TOKEN, "second part", ephemeral=True, suppress_embeds=True) == "2"
    assert await api.follow_up("10189", IX_TOKEN, "public") == "3"
    edit, follow, _ = seen
    assert (edit.method, edit.url.path) == ("PATCH", f"/api/v10/webhooks/10189/{IX_TOKEN}/messages/@original")
    assert (follow.method, follow.url.path) == ("POST", f"/api/v10/webhooks/10189/{IX_TOKEN}")
    assert all("authorization" not in r.headers for r in seen)
    bodies = [httpx.Response(200, content=r.content).json() for r in seen]
    assert bodies[0] == {"content": "first part", "allowed_mentions": {"parse": []}, "flags": 4}
    assert bodies[1] == {"content": "second part", "allowed_mentions": {"parse": []}, "flags": 64 | 4}
    assert bodies[2] == {"content": "public", "allowed_mentions": {"parse": []}}


async def test_an_expired_interaction_token_is_unknown_webhook_and_never_shown(caplog: Any) -> None:
    caplog.set_level(logging.DEBUG)
    logging.getLogger("httpx").info(
        'HTTP Request: PATCH %s "HTTP/1.1 404"', f"http://d/webhooks/1/{IX_TOKEN}/x"
    )
    gone = httpx.Response(404, json={"message": "Unknown Webhook", "code": 10015})
    api = _api(lambda request: gone)
    for call in (api.edit_original("10189", IX_TOKEN, "x"), api.follow_up("10189", IX_TOKEN, "x")):
        with pytest.raises(RestError) as err:
            await call
        assert (err.value.status, err.value.code, err.value.transient) == (404, UNKNOWN_WEBHOOK, False)
        assert IX_TOKEN not in str(err.value) and "webhooks/10189/<token>" in str(err.value)
    assert IX_TOKEN not in caplog.text and "/webhooks/1/<token>/x" in caplog.text


async def test_commands_are_put_for_the_application() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path.endswith("/oauth2/applications/@me"):
            return httpx.Response(200, json={"id": "10189", "name": "clawbot"})
        return httpx.Response(200, json=[{"id": "1", "name": "ask"}])

    api = _api(handler)
    assert await api.application_id() == "10189"
    await api.put_commands("10189", [{"name": "ask", "description": "Ask the agent.", "type": 1}])
    put = seen[1]
    assert (put.method, put.url.path) == ("PUT", "/api/v10/applications/10189/commands")
    assert put.headers["authorization"] == f"Bot {TOKEN}"
