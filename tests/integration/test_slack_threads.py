"""Slack threads and `replyToMode` end to end, as OpenClaw's Slack plugin (2026.9.6) has them,
against the fake Slack (tests/fakes/slack.py) over the Events API and a real nats-server: a
thread reply in a channel (or a group DM) has a session of its own (`…:thread:<thread_ts>`) and
is answered in its thread, two threads of a channel are two sessions, and a binding on the
channel still routes its threads; a DM's thread reply stays on the DM's session. A top-level
message stays on its chat's session and is answered per `replyToMode`: `off` (the default) in
the channel, `all`/`first` in a thread under it; a channel root that is expected to start a
thread (an `app_mention`, a mention pattern, or `requireMention: false` with a mode not `off`)
shares one session with the replies in its thread. Session keys are read from the route
decisions (`cm.route.decided`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nats.aio.client import Client

from clawmesh.wire import RouteDecision, decode
from clawmesh_ingress.turns import turn_id_for
from tests.fakes.slack import App, FakeSlack, Posted
from tests.fixtures.gateway import Gateway, run_gateway, wait_until

TOKEN = "xoxb-thread-test-token"
SECRET = "thread-test-signing-secret"
T1, T2, T3, T4, T5 = (f"1700000000.00010{i}" for i in range(1, 6))


def _config(slack: FakeSlack, **settings: Any) -> dict[str, Any]:
    return {
        "agents": {
            "defaults": {"model": "echo/x"},
            "list": [{"id": "main", "default": True}, {"id": "ops"}],
        },
        "bindings": [
            {"agentId": "ops", "match": {"channel": "slack", "peer": {"kind": "channel", "id": "C200"}}},
        ],
        "messages": {"groupChat": {"mentionPatterns": ["\\bclawbot\\b"]}},
        "channels": {
            "slack": {
                "mode": "http",
                "botToken": TOKEN,
                "signingSecret": SECRET,
                "apiBaseUrl": slack.api_base,
                "dmPolicy": "open",
                "allowFrom": ["*"],
                "groupPolicy": "open",
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


def _turn(envelope: dict[str, Any]) -> str:
    ev = envelope["event"]
    return turn_id_for("slack", "default", f"{ev['channel']}:{ev['ts']}")


async def _ready(gw: Gateway) -> str:
    adapter = gw.service("ingress").channels.adapters["slack"]["default"]
    await wait_until(lambda: adapter.bot is not None)
    return f"{gw.service('ingress').url}{adapter.path}"


async def _send(slack: FakeSlack, url: str, *envelopes: dict[str, Any]) -> None:
    for envelope in envelopes:
        assert (await slack.deliver(url, envelope)).status_code == 200


async def _reply(slack: FakeSlack, app: App, text: str) -> Posted:
    return (await slack.wait_sent(app, lambda p: p.text == f"echo: {text}"))[0]


async def _sessions(decisions: dict[str, RouteDecision], *envelopes: dict[str, Any]) -> list[str]:
    await wait_until(lambda: all(_turn(e) in decisions for e in envelopes), message="route decisions")
    return [decisions[_turn(e)].session_key for e in envelopes]


async def test_threads_have_their_own_sessions_and_off_answers_in_the_channel(
    nats_url: str, nc: Client, tmp_path: Path
) -> None:
    async with FakeSlack(signing_secret=SECRET) as slack:
        app = slack.add_app(TOKEN, team_id="T111", bot_user_id="UBOT")
        decisions = await _decisions(nc)
        # replyToMode unset: OpenClaw's `off`; no mention needed in channels
        config = _config(slack, channels={"*": {"requireMention": False}})
        async with run_gateway(nats_url, config, tmp_path) as gw:
            url = await _ready(gw)
            msg = slack.message_event
            top = msg(app, channel="C300", user="U43", text="top level")
            one = msg(app, channel="C300", user="U43", text="thread one", thread_ts=T1, parent_user_id="U40")
            again = msg(app, channel="C300", user="U44", text="one again", thread_ts=T1, parent_user_id="U40")
            two = msg(app, channel="C300", user="U43", text="thread two", thread_ts=T2, parent_user_id="U41")
            bound = msg(
                app, channel="C200", user="U43", text="bound thread", thread_ts=T3, parent_user_id="U4"
            )
            dm_thread = msg(
                app, channel="D100", user="U42", text="dm thread", thread_ts=T4, parent_user_id="U42"
            )
            dm_top = msg(app, channel="D100", user="U42", text="dm top")
            group = msg(
                app,
                channel="G500",
                channel_type="mpim",
                user="U42",
                text="group thread",
                thread_ts=T5,
                parent_user_id="U42",
            )
            mention = msg(app, channel="C300", user="U43", text="<@UBOT> mention", kind="app_mention")
            everything = (top, one, again, two, bound, dm_thread, dm_top, group, mention)
            await _send(slack, url, *everything)
            assert await _sessions(decisions, *everything) == [
                "agent:main:slack:channel:c300",
                f"agent:main:slack:channel:c300:thread:{T1}",
                f"agent:main:slack:channel:c300:thread:{T1}",  # the same thread: the same session
                f"agent:main:slack:channel:c300:thread:{T2}",  # another thread: another session
                f"agent:ops:slack:channel:c200:thread:{T3}",  # the channel's binding
                "agent:main:main",  # a DM's thread reply stays on the DM's session (dmScope main)
                "agent:main:main",
                f"agent:main:slack:group:g500:thread:{T5}",
                "agent:main:slack:channel:c300",  # mode off: an app_mention is not seeded
            ]
            assert decisions[_turn(bound)].agent_id == "ops"
            assert decisions[_turn(bound)].matched_by == "binding.peer"  # bindings see the channel
            where = {
                e["event"]["text"]: (await _reply(slack, app, e["event"]["text"])).thread_ts
                for e in everything
            }
            assert where == {
                "top level": None,  # off: the channel itself
                "thread one": T1,
                "one again": T1,
                "thread two": T2,
                "bound thread": T3,
                "dm thread": T4,  # answered in its thread, on the DM's session
                "dm top": None,
                "group thread": T5,
                "<@UBOT> mention": None,
            }
            assert len(app.sent) == len(everything)


async def test_all_and_first_answer_in_a_thread_and_a_started_thread_is_one_session(
    nats_url: str, nc: Client, tmp_path: Path
) -> None:
    async with FakeSlack(signing_secret=SECRET) as slack:
        app = slack.add_app(TOKEN, team_id="T111", bot_user_id="UBOT")
        decisions = await _decisions(nc)
        config = _config(
            slack,
            replyToMode="all",
            replyToModeByChatType={"direct": "off"},
            channels={
                "*": {"requireMention": True},
                "C700": {"requireMention": False, "replyToMode": "first"},
            },
        )
        async with run_gateway(nats_url, config, tmp_path) as gw:
            url = await _ready(gw)
            msg = slack.message_event
            # an app_mention root (with its `message` twin), then a reply in the thread it opened
            root = msg(app, channel="C300", user="U43", text="<@UBOT> start")
            twin = msg(
                app,
                channel="C300",
                user="U43",
                text="<@UBOT> start",
                kind="app_mention",
                ts=root["event"]["ts"],
            )
            await _send(slack, url, twin, root)
            root_ts = root["event"]["ts"]
            started = await _reply(slack, app, "<@UBOT> start")
            assert started.thread_ts == root_ts  # all: in a thread under the message
            follow = msg(
                app,
                channel="C300",
                user="U44",
                text="<@UBOT> follow",
                thread_ts=root_ts,
                parent_user_id="U43",
            )
            pattern = msg(app, channel="C300", user="U43", text="clawbot, a pattern mention")
            command = msg(app, channel="C300", user="U43", text="/status")  # bypasses the mention gate
            first = msg(app, channel="C700", user="U43", text="first mode")
            group = msg(app, channel="G500", channel_type="mpim", user="U42", text="group top")
            dm = msg(app, channel="D100", user="U42", text="dm top")
            await _send(slack, url, follow, pattern, command, first, group, dm)
            sessions = await _sessions(decisions, root, follow, pattern, command, first, group, dm)
            assert sessions == [
                f"agent:main:slack:channel:c300:thread:{root_ts}",  # seeded: the root's own thread
                f"agent:main:slack:channel:c300:thread:{root_ts}",  # its thread: the same session
                f"agent:main:slack:channel:c300:thread:{pattern['event']['ts']}",
                "agent:main:slack:channel:c300",  # unmentioned: the channel's session
                f"agent:main:slack:channel:c700:thread:{first['event']['ts']}",  # requireMention false
                "agent:main:slack:group:g500",  # group DMs are never seeded
                "agent:main:main",
            ]
            assert (await _reply(slack, app, "<@UBOT> follow")).thread_ts == root_ts
            assert (await _reply(slack, app, "clawbot, a pattern mention")).thread_ts == pattern["event"][
                "ts"
            ]
            status = (await slack.wait_sent(app, lambda p: p.text.startswith("🤖")))[0]
            assert "🧵 Session: agent:main:slack:channel:c300\n" in status.text
            assert status.thread_ts == command["event"]["ts"]  # all: in a thread under the message
            assert (await _reply(slack, app, "first mode")).thread_ts == first["event"]["ts"]  # first
            assert (await _reply(slack, app, "group top")).thread_ts == group["event"]["ts"]
            assert (await _reply(slack, app, "dm top")).thread_ts is None  # replyToModeByChatType.direct off
            assert len(app.sent) == 7
