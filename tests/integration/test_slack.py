"""Slack end to end against the fake Slack (tests/fakes/slack.py), events POSTed signed to
ingress's own HTTP server: a message is routed by the bindings OpenClaw would apply (peer,
then team) to the right agent and answered in the right channel and thread; `url_verification`
is answered; a wrong signature or a stale timestamp is refused with 401; a retried event and the
`message` + `app_mention` pair of one mention are answered once; a sender the policy denies never
reaches the model; a rate-limited reply is sent after `Retry-After`; two accounts each answer
with their own token."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
from nats.aio.client import Client

from clawmesh.wire import RouteDecision, decode
from clawmesh_ingress.turns import turn_id_for
from tests.fakes.slack import App, FakeSlack
from tests.fixtures.gateway import Gateway, run_gateway, wait_until

TOKEN = "xoxb-test-token"
SECRET = "8f742231b10e8888abcd99yyyzzz85a5"


def _config(slack: FakeSlack, **settings: Any) -> dict[str, Any]:
    return {
        "agents": {
            "defaults": {"model": "echo/x"},
            "list": [{"id": "main", "default": True}, {"id": "ops"}, {"id": "team"}],
        },
        "bindings": [
            {"agentId": "ops", "match": {"channel": "slack", "peer": {"kind": "channel", "id": "C200"}}},
            {"agentId": "team", "match": {"channel": "slack", "teamId": "T111"}},
        ],
        "channels": {
            "slack": {
                "mode": "http",
                "botToken": TOKEN,
                "signingSecret": SECRET,
                "apiBaseUrl": slack.api_base,
                "dmPolicy": "open",
                "allowFrom": ["*"],
                "groupPolicy": "open",
                "channels": {"*": {"requireMention": False}},
                **settings,
            }
        },
    }


async def _decisions(nc: Client) -> dict[str, RouteDecision]:
    seen: dict[str, RouteDecision] = {}

    async def on(msg: Any) -> None:
        d = decode(msg.data, RouteDecision, msg.headers)
        seen[d.turn_id] = d

    await nc.subscribe("cm.route.decided", cb=on)
    return seen


def _turn(envelope: dict[str, Any], account: str = "default") -> str:
    ev = envelope["event"]
    return turn_id_for("slack", account, f"{ev['channel']}:{ev['ts']}")


async def _ready(gw: Gateway, account: str = "default") -> str:
    adapter = gw.service("ingress").channels.adapters["slack"][account]
    await wait_until(lambda: adapter.bot is not None)
    return f"{gw.service('ingress').url}{adapter.path}"


async def test_messages_route_by_binding_and_replies_land_in_channel_and_thread(
    nats_url: str, nc: Client, tmp_path: Path
) -> None:
    async with FakeSlack(signing_secret=SECRET) as slack:
        app = slack.add_app(TOKEN, team_id="T111")
        decisions = await _decisions(nc)
        async with run_gateway(nats_url, _config(slack), tmp_path) as gw:
            url = await _ready(gw)
            dm = slack.message_event(app, channel="D100", user="U42", text="hello")
            room = slack.message_event(app, channel="C200", user="U43", text="in the room")
            threaded = slack.message_event(
                app, channel="C300", user="U43", text="in a thread", thread_ts="1700000000.000100"
            )
            for envelope in (dm, room, threaded):
                assert (await slack.deliver(url, envelope)).status_code == 200
            replies = {
                "dm": (await slack.wait_sent(app, lambda p: p.channel == "D100"))[0],
                "room": (await slack.wait_sent(app, lambda p: p.channel == "C200"))[0],
                "thread": (await slack.wait_sent(app, lambda p: p.channel == "C300"))[0],
            }
            assert replies["dm"].text == "echo: hello" and replies["dm"].thread_ts is None
            # replyToMode `off` (OpenClaw's default): a channel is answered in the channel; a
            # thread reply in its thread (tests/integration/test_slack_threads.py: the other modes)
            assert replies["room"].thread_ts is None
            assert replies["thread"].thread_ts == "1700000000.000100"
            await wait_until(lambda: all(_turn(e) in decisions for e in (dm, room, threaded)))
            agents = [decisions[_turn(e)].agent_id for e in (dm, room, threaded)]
            assert agents == ["team", "ops", "team"]  # peer binding first, then the team's
            assert len(app.sent) == 3


async def test_signatures_are_checked_and_url_verification_answered(nats_url: str, tmp_path: Path) -> None:
    async with FakeSlack(signing_secret=SECRET) as slack:
        app = slack.add_app(TOKEN)
        async with run_gateway(nats_url, _config(slack), tmp_path) as gw:
            url = await _ready(gw)
            challenge = {"token": "x", "challenge": "3eZbrw1aBm2rZ", "type": "url_verification"}
            resp = await slack.deliver(url, challenge)
            assert resp.status_code == 200 and resp.text == "3eZbrw1aBm2rZ"
            assert (await slack.deliver(url, challenge, secret="not-the-secret")).status_code == 401
            envelope = slack.message_event(app, channel="D100", user="U42", text="forged")
            refused = [
                await slack.deliver(url, envelope, secret="not-the-secret"),
                await slack.deliver(url, envelope, timestamp=int(time.time()) - 301),
                await slack.deliver(url, envelope, signature="v0=" + "0" * 64),
            ]
            assert [r.status_code for r in refused] == [401, 401, 401]
            assert "stale" in refused[1].json()["error"]
            after = slack.message_event(app, channel="D100", user="U42", text="genuine")
            assert (await slack.deliver(url, after)).status_code == 200
            await slack.wait_sent(app, lambda p: p.text == "echo: genuine")
            assert [p.text for p in app.sent] == ["echo: genuine"]


async def test_retries_and_the_mention_pair_are_answered_once(nats_url: str, tmp_path: Path) -> None:
    async with FakeSlack(signing_secret=SECRET) as slack:
        app = slack.add_app(TOKEN, bot_user_id="UBOT")
        async with run_gateway(nats_url, _config(slack), tmp_path) as gw:
            url = await _ready(gw)
            first = slack.message_event(app, channel="C500", user="U42", text="<@UBOT> once")
            # the same message again as `app_mention` (its own event id), and Slack's retries of both
            mention = slack.message_event(
                app,
                channel="C500",
                user="U42",
                text="<@UBOT> once",
                kind="app_mention",
                ts=first["event"]["ts"],
            )
            for envelope, retry in ((first, 0), (mention, 0), (first, 1), (mention, 2)):
                assert (await slack.deliver(url, envelope, retry=retry)).status_code == 200
            later = slack.message_event(app, channel="C500", user="U42", text="after")
            await slack.deliver(url, later)
            await slack.wait_sent(app, lambda p: p.text == "echo: after")
            assert [p.text for p in app.sent] == ["echo: <@UBOT> once", "echo: after"]


async def test_a_denied_sender_never_reaches_the_model(nats_url: str, nc: Client, tmp_path: Path) -> None:
    async with FakeSlack(signing_secret=SECRET) as slack:
        app = slack.add_app(TOKEN)
        decisions = await _decisions(nc)
        config = _config(slack, dmPolicy="allowlist", allowFrom=["U1"], groupPolicy="allowlist", channels={})
        async with run_gateway(nats_url, config, tmp_path) as gw:
            url = await _ready(gw)
            denied_dm = slack.message_event(app, channel="D100", user="U666", text="let me in")
            denied_room = slack.message_event(app, channel="C900", user="U1", text="not an allowed channel")
            allowed = slack.message_event(app, channel="D101", user="U1", text="hi")
            for envelope in (denied_dm, denied_room, allowed):
                assert (await slack.deliver(url, envelope)).status_code == 200
            await slack.wait_sent(app, lambda p: p.text == "echo: hi")
            await wait_until(lambda: _turn(allowed) in decisions)
            assert _turn(denied_dm) not in decisions and _turn(denied_room) not in decisions
            assert [p.text for p in app.sent] == ["echo: hi"]
            assert gw.service("ingress").ctx.counters["channel_denied"] == 2


async def test_a_rate_limited_reply_is_sent_after_retry_after(nats_url: str, tmp_path: Path) -> None:
    async with FakeSlack(signing_secret=SECRET) as slack:
        app = slack.add_app(TOKEN)
        async with run_gateway(nats_url, _config(slack), tmp_path) as gw:
            url = await _ready(gw)
            slack.fail_next(app, "chat.postMessage", 429, "ratelimited", retry_after=1)
            await slack.deliver(url, slack.message_event(app, channel="D100", user="U42", text="busy"))
            await slack.wait_sent(app, lambda p: p.text == "echo: busy")
            assert app.calls.count("chat.postMessage") == 2
            assert len(app.sent) == 1


async def test_two_accounts_answer_each_with_their_own_app(nats_url: str, tmp_path: Path) -> None:
    async with FakeSlack(signing_secret=SECRET) as slack:
        one: App = slack.add_app("xoxb-one", team_id="T111", bot_user_id="UONE")
        two: App = slack.add_app("xoxb-two", team_id="T222", bot_user_id="UTWO")
        config = _config(slack)
        del config["channels"]["slack"]["botToken"], config["channels"]["slack"]["signingSecret"]
        config["channels"]["slack"]["accounts"] = {
            "one": {"botToken": "xoxb-one", "signingSecret": SECRET, "webhookPath": "/slack/one"},
            "two": {"botToken": "xoxb-two", "signingSecret": "other-secret", "webhookPath": "/slack/two"},
        }
        async with run_gateway(nats_url, config, tmp_path) as gw:
            url_one, url_two = await _ready(gw, "one"), await _ready(gw, "two")
            await slack.deliver(url_one, slack.message_event(one, channel="D1", user="U42", text="to one"))
            # each account checks its own signing secret
            event_two = slack.message_event(two, channel="D2", user="U42", text="to two")
            assert (await slack.deliver(url_two, event_two)).status_code == 401
            assert (await slack.deliver(url_two, event_two, secret="other-secret")).status_code == 200
            await slack.wait_sent(one, lambda p: p.text == "echo: to one")
            await slack.wait_sent(two, lambda p: p.text == "echo: to two")
            assert [p.text for p in one.sent] == ["echo: to one"]
            assert [p.text for p in two.sent] == ["echo: to two"]


async def test_two_accounts_on_one_path_serve_the_first_and_say_why_not_the_second(
    nats_url: str, tmp_path: Path, caplog: Any
) -> None:
    async with FakeSlack(signing_secret=SECRET) as slack:
        one = slack.add_app("xoxb-one", team_id="T111", bot_user_id="UONE")
        slack.add_app("xoxb-two", team_id="T222", bot_user_id="UTWO")
        config = _config(slack)
        del config["channels"]["slack"]["botToken"], config["channels"]["slack"]["signingSecret"]
        config["channels"]["slack"]["accounts"] = {
            "one": {"botToken": "xoxb-one", "signingSecret": SECRET},
            "two": {"botToken": "xoxb-two", "signingSecret": "other-secret"},
        }
        async with run_gateway(nats_url, config, tmp_path) as gw:
            url = await _ready(gw, "one")
            assert "slack two: webhook path /slack/events is already served" in caplog.text
            await slack.deliver(url, slack.message_event(one, channel="D1", user="U42", text="to one"))
            await slack.wait_sent(one, lambda p: p.text == "echo: to one")
            # the API's own routes are still the API's
            async with httpx.AsyncClient(trust_env=False) as client:
                assert (await client.get(f"{gw.service('ingress').url}/healthz")).status_code == 200
