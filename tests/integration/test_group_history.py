"""OpenClaw's `historyLimit`: group messages the bot is not asked to answer (mention gating)
are kept per conversation and given to the model, oldest first, with the next message it
answers there; then they are gone. Through Telegram's fake Bot API, two ingress-side decisions
apart: what is kept (only the newest `historyLimit`, only from senders the policy admits, per
group) and what the model sees (the echo provider answers with the text it was given)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nats.aio.client import Client

from clawmesh.sessions import SessionStore, TxUser
from clawmesh.wire import Subjects
from tests.fakes.telegram import FakeTelegram
from tests.fixtures.gateway import run_gateway, wait_until

TOKEN = "7001:history"


def _config(tg: FakeTelegram, **telegram: Any) -> dict[str, Any]:
    return {
        "agents": {"defaults": {"model": "echo/x"}, "list": [{"id": "main", "default": True}]},
        "channels": {
            "telegram": {
                "botToken": TOKEN,
                "apiRoot": tg.api_root,
                "groupPolicy": "allowlist",
                "groupAllowFrom": ["42", "43"],
                "groups": {"*": {"requireMention": True}},
                **telegram,
            }
        },
    }


async def test_unanswered_group_messages_reach_the_model_with_the_next_mention(
    nats_url: str, nc: Client, tmp_path: Path
) -> None:
    async with FakeTelegram() as tg:
        bot = tg.add_bot(TOKEN)
        async with run_gateway(nats_url, _config(tg, historyLimit=3), tmp_path) as gw:
            adapter = gw.service("ingress").channels.adapters["telegram"]["default"]
            await wait_until(lambda: adapter.bot is not None and adapter.poller.polling)
            group = tg.chat(-100300, "supergroup", title="team")
            other = tg.chat(-100400, "supergroup", title="elsewhere")
            for i in range(3):
                tg.message(bot, group, user=42 if i % 2 else 43, text=f"chatter {i}")
            # a photo nobody asked about: its type is kept, it is never downloaded
            tg.photo_message(bot, group, user=43, sizes=[b"jpeg"], caption="chatter 3")
            tg.message(bot, group, user=99, text="from a sender the policy refuses")
            tg.message(bot, other, user=42, text="in another group")
            counters = gw.service("ingress").channels.inbound.access.counters
            await wait_until(lambda: counters["denied"] == 6, message="six messages not answered")
            tg.message(bot, group, user=42, text="@clawbot what did they say?")
            (first,) = await tg.wait_sent(bot, lambda s: s.chat_id == -100300)
            lines = first.text.removeprefix("echo: ").split("\n")
            assert lines[0] == "Chat history since last reply: ⟦openclaw:ctx⟧"
            # the newest three of the four kept, oldest first; nobody else's, no other group's
            assert [line.split(": ", 1)[1] for line in lines[1:4]] == [
                "chatter 1",
                "chatter 2",
                "chatter 3 [image/jpeg]",
            ]
            assert not [c for c in bot.calls if c[0] == "getfile"]
            assert lines[1].startswith("#") and " UTC " in lines[1]
            assert lines[4:] == ["", "@clawbot what did they say?"]
            # "since last reply": the next answer there starts afresh
            tg.message(bot, group, user=43, text="@clawbot again")
            await tg.wait_sent(bot, lambda s: s.text == "echo: @clawbot again")
            # the chatter reached the model, not the transcript
            js = nc.jetstream()
            store = SessionStore(js, Subjects(), await js.key_value("cm_sessions"))
            said = [
                e.text
                for e in await store.history("main", "agent:main:telegram:group:-100300")
                if isinstance(e, TxUser)
            ]
            assert said == ["@clawbot what did they say?", "@clawbot again"]


async def test_history_limit_zero_keeps_nothing(nats_url: str, tmp_path: Path) -> None:
    async with FakeTelegram() as tg:
        bot = tg.add_bot(TOKEN)
        config = _config(tg)
        config["messages"] = {"groupChat": {"historyLimit": 0}}  # the global key, no channel key
        async with run_gateway(nats_url, config, tmp_path) as gw:
            adapter = gw.service("ingress").channels.adapters["telegram"]["default"]
            await wait_until(lambda: adapter.bot is not None and adapter.poller.polling)
            group = tg.chat(-100300, "supergroup", title="team")
            tg.message(bot, group, user=43, text="chatter")
            tg.message(bot, group, user=42, text="@clawbot hi")
            (reply,) = await tg.wait_sent(bot, lambda s: s.chat_id == -100300)
            assert reply.text == "echo: @clawbot hi"


async def test_on_slack_a_thread_keeps_its_own_history(nats_url: str, tmp_path: Path) -> None:
    """OpenClaw's `thread.historyScope` default: chatter in a thread is context for a mention in
    that thread, the channel's top-level chatter for a top-level mention."""
    from tests.fakes.slack import FakeSlack

    secret = "history-signing-secret"
    async with FakeSlack(signing_secret=secret) as slack:
        app = slack.add_app("xoxb-history", team_id="T1", bot_user_id="UBOT")
        config = {
            "agents": {"defaults": {"model": "echo/x"}, "list": [{"id": "main", "default": True}]},
            "channels": {
                "slack": {
                    "mode": "http",
                    "botToken": "xoxb-history",
                    "signingSecret": secret,
                    "apiBaseUrl": slack.api_base,
                    "groupPolicy": "open",
                    "replyToMode": "all",
                }
            },
        }
        async with run_gateway(nats_url, config, tmp_path) as gw:
            adapter = gw.service("ingress").channels.adapters["slack"]["default"]
            await wait_until(lambda: adapter.bot is not None)
            url = f"{gw.service('ingress').url}{adapter.path}"
            msg = slack.message_event
            thread = "1700000000.000100"
            for envelope in (
                msg(app, channel="C1", user="U1", text="top chatter"),
                msg(
                    app, channel="C1", user="U2", text="thread chatter", thread_ts=thread, parent_user_id="U1"
                ),
                msg(
                    app,
                    channel="C1",
                    user="U2",
                    text="<@UBOT> in thread",
                    thread_ts=thread,
                    parent_user_id="U1",
                ),
            ):
                assert (await slack.deliver(url, envelope)).status_code == 200
            (in_thread,) = await slack.wait_sent(app, lambda p: p.text.endswith("<@UBOT> in thread"))
            assert in_thread.text.split("\n")[1].endswith("thread chatter")
            assert "top chatter" not in in_thread.text
            top = msg(app, channel="C1", user="U1", text="<@UBOT> at the top")
            assert (await slack.deliver(url, top)).status_code == 200
            (at_top,) = await slack.wait_sent(app, lambda p: p.text.endswith("<@UBOT> at the top"))
            assert at_top.text.split("\n")[1].endswith("top chatter")
            assert "thread chatter" not in at_top.text
