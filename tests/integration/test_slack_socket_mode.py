"""Slack over Socket Mode end to end against the fake Slack (tests/fakes/slack.py): the gateway
opens the connection itself (OpenClaw's default mode, also with `mode` unset), a DM and a
channel mention are routed by binding and answered in the right channel and thread; an envelope
is acknowledged only once stored (one that could not be stored is not, and its redelivery is
answered once); a redelivery, also on another replica's connection, is one turn; on
`refresh_requested` a new connection is opened before the old one is closed and nothing queued
meanwhile is lost; a dropped socket reconnects with a new URL; `link_disabled` and a refused app
token stop the account, saying why; malformed frames and slash commands leave the connection up.
Neither token nor a URL's ticket reaches clawmesh's logs."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from nats.aio.client import Client

from clawmesh.wire import RouteDecision, decode
from clawmesh_ingress.turns import turn_id_for
from tests.fakes.slack import App, FakeSlack
from tests.fixtures.gateway import Gateway, run_gateway, wait_until

TOKEN = "xoxb-socket-bot-token"
APP_TOKEN = "xapp-1-A111-socket-app-token"


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
                # no `mode`: Socket Mode, as OpenClaw
                "botToken": TOKEN,
                "appToken": APP_TOKEN,
                "apiBaseUrl": slack.api_base,
                "dmPolicy": "open",
                "allowFrom": ["*"],
                "groupPolicy": "open",
                "channels": {"*": {"requireMention": True}},
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


def _adapter(gw: Gateway, account: str = "default") -> Any:
    return gw.service("ingress").channels.adapters["slack"][account]


async def _connected(gw: Gateway, slack: FakeSlack, app: App, account: str = "default") -> Any:
    adapter = _adapter(gw, account)
    await slack.wait_connected(app)
    await wait_until(lambda: adapter.status()["ready"], message="the account ready")
    return adapter


def _ours(caplog: Any) -> str:
    """clawmesh's log lines (the fake server's own aside)."""
    return "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("clawmesh"))


def _assert_no_secrets(caplog: Any, app: App) -> None:
    ours = _ours(caplog)
    assert TOKEN not in ours and APP_TOKEN not in ours
    for ticket in app.tickets:
        assert ticket not in ours
    assert "ticket=" not in ours


async def test_socket_mode_is_the_default_and_answers_a_dm_and_a_mention_by_binding(
    nats_url: str, nc: Client, tmp_path: Path, caplog: Any
) -> None:
    caplog.set_level(logging.DEBUG)  # the WebSocket library would log the URL (its ticket) at DEBUG
    async with FakeSlack(signing_secret="unused") as slack:
        app = slack.add_app(TOKEN, team_id="T111", bot_user_id="UBOT", app_token=APP_TOKEN)
        decisions = await _decisions(nc)
        async with run_gateway(nats_url, _config(slack), tmp_path) as gw:
            adapter = await _connected(gw, slack, app)
            assert adapter.webhook_routes() == []  # no Request URL in Socket Mode
            status = adapter.status()
            assert (status["mode"], status["connection"], status["connected"]) == (
                "socket",
                "connected",
                True,
            )
            assert app.calls[:2] == ["auth.test", "apps.connections.open"]
            dm = slack.message_event(app, channel="D100", user="U42", text="hello")
            mention = slack.message_event(app, channel="C200", user="U43", text="<@UBOT> in the room")
            # the same mention as `app_mention` too (its own envelope and event id)
            as_mention = slack.message_event(
                app,
                channel="C200",
                user="U43",
                text="<@UBOT> in the room",
                kind="app_mention",
                ts=mention["event"]["ts"],
            )
            pushed = [await slack.push(app, e) for e in (dm, mention, as_mention)]
            replies = {
                "dm": (await slack.wait_sent(app, lambda p: p.channel == "D100"))[0],
                "room": (await slack.wait_sent(app, lambda p: p.channel == "C200"))[0],
            }
            assert replies["dm"].text == "echo: hello" and replies["dm"].thread_ts is None
            # replyToMode `off` (OpenClaw's default): the channel is answered in the channel
            assert replies["room"].text == "echo: <@UBOT> in the room"
            assert replies["room"].thread_ts is None
            for item in pushed:
                await slack.wait_acked(item)
            await wait_until(lambda: all(_turn(e) in decisions for e in (dm, mention)))
            assert [decisions[_turn(e)].agent_id for e in (dm, mention)] == ["team", "ops"]
            later = slack.message_event(app, channel="D100", user="U42", text="later")
            await slack.push(app, later)
            await slack.wait_sent(app, lambda p: p.text == "echo: later")
            assert [p.text for p in app.sent] == ["echo: hello", "echo: <@UBOT> in the room", "echo: later"]
            assert len(app.sockets) == 1
            _assert_no_secrets(caplog, app)


async def test_an_envelope_is_acknowledged_only_once_stored(
    nats_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with FakeSlack(signing_secret="unused", socket_ack_timeout=0.5, socket_max_retries=None) as slack:
        app = slack.add_app(TOKEN, app_token=APP_TOKEN)
        async with run_gateway(nats_url, _config(slack), tmp_path) as gw:
            await _connected(gw, slack, app)
            ctx = gw.service("ingress").ctx
            real_publish = ctx.publish
            failing = True

            async def publish(subject: str, data: bytes, headers: dict[str, str]) -> Any:
                if failing and ".in.slack." in f".{subject}.":  # JetStream cannot store it
                    raise TimeoutError("no stream answered")
                return await real_publish(subject, data, headers)

            monkeypatch.setattr(ctx, "publish", publish)
            envelope = slack.message_event(app, channel="D100", user="U42", text="stored late")
            item = await slack.push(app, envelope)
            # not stored: not acknowledged, so Slack delivers it again, and again
            first, again = await slack.wait_deliveries(item, 2)
            assert (again.retry_attempt, again.retry_reason) == (1, "timeout")
            await wait_until(lambda: ctx.counters["slack_socket_not_acked"] >= 2, message="two failed stores")
            assert not first.acked and not again.acked and app.sent == []
            failing = False  # storing works again: the next redelivery is stored, then acknowledged
            acked = await slack.wait_acked(item)
            assert acked.retry_attempt >= 1
            await slack.wait_sent(app, lambda p: p.text == "echo: stored late")
            after = slack.message_event(app, channel="D100", user="U42", text="after")
            await slack.push(app, after)
            await slack.wait_sent(app, lambda p: p.text == "echo: after")
            assert [p.text for p in app.sent] == ["echo: stored late", "echo: after"]


async def test_a_redelivered_envelope_is_one_turn_and_one_reply_also_on_another_replica(
    nats_url: str, nc: Client, tmp_path: Path
) -> None:
    async with FakeSlack(signing_secret="unused", socket_ack_timeout=0.5) as slack:
        app = slack.add_app(TOKEN, app_token=APP_TOKEN)
        decisions = await _decisions(nc)
        (tmp_path / "b").mkdir()
        async with run_gateway(nats_url, _config(slack), tmp_path) as gw:
            await _connected(gw, slack, app)
            # the ack is lost: Slack delivers the envelope again, as its retry
            slack.lose_acks(app)
            envelope = slack.message_event(app, channel="D100", user="U42", text="twice sent")
            item = await slack.push(app, envelope)
            acked = await slack.wait_acked(item)
            assert (acked.retry_attempt, acked.retry_reason) == (1, "timeout")
            await slack.wait_sent(app, lambda p: p.text == "echo: twice sent")
            # a second ingress replica connects too: Slack spreads envelopes over both connections
            async with run_gateway(nats_url, _config(slack), tmp_path / "b", services=("ingress",)) as gw2:
                await _connected(gw2, slack, app)
                assert len(app.open_sockets()) == 2
                slack.lose_acks(app)
                spread = slack.message_event(app, channel="D100", user="U42", text="two replicas")
                item2 = await slack.push(app, spread)
                first, retry = await slack.wait_deliveries(item2, 2)
                assert first.connection != retry.connection  # the retry went to the other replica
                await slack.wait_acked(item2)
                await slack.wait_sent(app, lambda p: p.text == "echo: two replicas")
                later = slack.message_event(app, channel="D100", user="U42", text="later")
                await slack.push(app, later)
                await slack.wait_sent(app, lambda p: p.text == "echo: later")
            assert [p.text for p in app.sent] == ["echo: twice sent", "echo: two replicas", "echo: later"]
            await wait_until(lambda: all(_turn(e) in decisions for e in (envelope, spread)))
            stored = (await nc.jetstream().stream_info("CM_INBOUND")).state.messages
            assert stored == 3  # each message once, whatever the deliveries


async def test_refresh_requested_opens_a_new_connection_before_closing_the_old_and_loses_nothing(
    nats_url: str, tmp_path: Path
) -> None:
    # a long ack timeout: a lost envelope would not be rescued by a redelivery within the test
    async with FakeSlack(signing_secret="unused", socket_ack_timeout=600) as slack:
        app = slack.add_app(TOKEN, app_token=APP_TOKEN)
        async with run_gateway(nats_url, _config(slack), tmp_path) as gw:
            adapter = await _connected(gw, slack, app)
            old = await slack.socket_disconnect(app, "refresh_requested")
            # queued right after it, on the connection that is being replaced
            envelope = slack.message_event(app, channel="D100", user="U42", text="during the refresh")
            item = await slack.push(app, envelope, connection=old)
            second = await slack.wait_connected(app, count=2)
            delivered = await slack.wait_acked(item)
            assert (delivered.retry_attempt, delivered.connection) == (0, old)
            await slack.wait_sent(app, lambda p: p.text == "echo: during the refresh")
            await slack.wait_for(lambda: app.sockets[old - 1].closed, what="the old connection closed")
            # the new one said hello before the old one was closed, and by the client
            assert app.socket_log.index(("hello", second.number)) < app.socket_log.index(("closed", old))
            assert app.sockets[old - 1].closed_by == "client" and app.sockets[old - 1].close_code == 1000
            assert app.tickets[0] != app.tickets[1]  # a new URL for the new connection
            after = slack.message_event(app, channel="D100", user="U42", text="after the refresh")
            await slack.push(app, after)
            await slack.wait_sent(app, lambda p: p.text == "echo: after the refresh")
            assert [p.text for p in app.sent] == ["echo: during the refresh", "echo: after the refresh"]
            assert adapter.status()["connection"] == "connected" and adapter.status()["connects"] == 2


async def test_a_dropped_socket_reconnects_with_a_new_url(nats_url: str, tmp_path: Path, caplog: Any) -> None:
    caplog.set_level(logging.DEBUG)
    async with FakeSlack(signing_secret="unused") as slack:
        app = slack.add_app(TOKEN, app_token=APP_TOKEN)
        async with run_gateway(nats_url, _config(slack), tmp_path) as gw:
            adapter = await _connected(gw, slack, app)
            await slack.socket_drop(app)
            second = await slack.wait_connected(app, count=2)
            assert app.sockets[0].closed_by == "dropped"
            assert app.calls.count("apps.connections.open") == 2 and app.tickets[0] != app.tickets[1]
            assert second.ticket == app.tickets[1]
            await wait_until(lambda: adapter.status()["connected"], message="connected again")
            envelope = slack.message_event(app, channel="D100", user="U42", text="back")
            await slack.wait_acked(await slack.push(app, envelope))
            await slack.wait_sent(app, lambda p: p.text == "echo: back")
            assert "reconnecting in" in caplog.text
            _assert_no_secrets(caplog, app)


async def test_link_disabled_stops_the_account_and_status_says_why(
    nats_url: str, tmp_path: Path, caplog: Any
) -> None:
    async with FakeSlack(signing_secret="unused") as slack:
        app = slack.add_app(TOKEN, app_token=APP_TOKEN)
        async with run_gateway(nats_url, _config(slack), tmp_path) as gw:
            adapter = await _connected(gw, slack, app)
            await slack.socket_disconnect(app, "link_disabled")
            await wait_until(
                lambda: adapter.status()["connection"] == "stopped", message="the account stopped"
            )
            status = adapter.status()
            assert "link_disabled" in status["error"] and not status["ready"] and not status["connected"]
            await wait_until(lambda: not adapter.socket.running, message="nothing left that would reconnect")
            assert app.calls.count("apps.connections.open") == 1
            errors = [
                r for r in caplog.records if r.levelno >= logging.ERROR and r.name.startswith("clawmesh")
            ]
            assert any("link_disabled" in r.getMessage() and "stays off" in r.getMessage() for r in errors)
            # the status ingress answers over NATS says it too
            accounts = gw.service("ingress").channels.status()["accounts"]
            assert accounts[0]["connection"] == "stopped" and "link_disabled" in accounts[0]["error"]


async def test_a_wrong_app_token_keeps_the_account_off_with_the_reason(
    nats_url: str, tmp_path: Path, caplog: Any
) -> None:
    async with FakeSlack(signing_secret="unused") as slack:
        app = slack.add_app(TOKEN, app_token=APP_TOKEN)
        config = _config(slack)
        config["channels"]["slack"]["accounts"] = {
            "work": {"botToken": TOKEN, "appToken": "xapp-not-this-one"}
        }
        del config["channels"]["slack"]["botToken"], config["channels"]["slack"]["appToken"]
        async with run_gateway(nats_url, config, tmp_path) as gw:
            adapter = _adapter(gw, "work")
            await wait_until(
                lambda: adapter.status()["connection"] == "stopped", message="the account stopped"
            )
            error = adapter.status()["error"]
            assert "invalid_auth" in error and "$.channels.slack.accounts.work.appToken" in error
            assert app.sockets == [] and not adapter.status()["ready"]
            line = next(
                r
                for r in caplog.records
                if r.name.startswith("clawmesh") and "invalid_auth" in r.getMessage()
            )
            assert line.levelno == logging.ERROR and line.exc_info is None  # a reason, not a traceback
            assert "Traceback" not in caplog.text and "xapp-not-this-one" not in _ours(caplog)


async def test_a_signing_secret_without_an_app_token_says_what_is_missing(
    nats_url: str, tmp_path: Path, caplog: Any
) -> None:
    async with FakeSlack(signing_secret="unused") as slack:
        config = _config(slack)
        del config["channels"]["slack"]["appToken"]
        config["channels"]["slack"]["signingSecret"] = "a-signing-secret"  # an HTTP account without `mode`
        async with run_gateway(nats_url, config, tmp_path) as gw:
            assert "slack" not in gw.service("ingress").channels.adapters
            assert "slack default: not started" in caplog.text
            assert "$.channels.slack.appToken: required for Socket Mode" in caplog.text
            assert 'set $.channels.slack.mode to "http"' in caplog.text


async def test_malformed_frames_and_other_envelopes_leave_the_connection_up(
    nats_url: str, tmp_path: Path, caplog: Any
) -> None:
    async with FakeSlack(signing_secret="unused") as slack:
        app = slack.add_app(TOKEN, app_token=APP_TOKEN)
        async with run_gateway(nats_url, _config(slack), tmp_path) as gw:
            await _connected(gw, slack, app)
            counters = gw.service("ingress").ctx.counters
            await slack.socket_send_raw(app, "this is not JSON")
            await slack.socket_send_raw(app, "[1, 2]")
            # not a frame (retry_attempt is no number), but its envelope id can still be acknowledged
            await slack.socket_send_raw(
                app, '{"envelope_id": "bad-1", "type": "events_api", "retry_attempt": "x"}'
            )
            # a frame whose payload is no Slack event: acknowledged and dropped
            not_event = await slack.push(app, {"type": "event_callback", "event": "oops"})
            # slash commands and interactivity are not served: acknowledged and ignored
            command = await slack.push(app, {"command": "/claw", "text": "hi"}, type="slash_commands")
            click = await slack.push(app, {"type": "block_actions"}, type="interactive")
            for item in (not_event, command, click):
                await slack.wait_acked(item)
            await slack.wait_for(lambda: "bad-1" in app.acks, what="the salvaged ack")
            assert counters["slack_socket_malformed"] == 3 and counters["slack_events_malformed"] == 1
            assert counters["slack_socket_ignored"] == 2
            envelope = slack.message_event(app, channel="D100", user="U42", text="still here")
            await slack.push(app, envelope)
            await slack.wait_sent(app, lambda p: p.text == "echo: still here")
            assert len(app.sockets) == 1 and app.sockets[0].open  # the same connection throughout
            assert [p.text for p in app.sent] == ["echo: still here"]
            assert "a malformed Socket Mode frame" in caplog.text
