"""Discord end to end against the fake Discord (tests/fakes/discord.py): a real Gateway
WebSocket (HELLO, heartbeats, IDENTIFY with the message-content intent, READY, dispatches,
op 7 / op 9 / a dropped socket and RESUME) and REST. A DM is answered in its DM channel; guild
messages route by the bindings OpenClaw would apply (peer, parent peer of a thread, guild +
roles) and are answered in their channel or thread only when they mention the bot; the bot's
own echoed messages are dropped; a reconnect resumes the session and loses nothing; a 429 is
waited out; a long reply is split at 2000 characters; an impossible reply is dead-lettered; a
refused token stops the account without ever printing it."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from nats.aio.client import Client

from clawmesh.wire import DeadLetter, RouteDecision, decode
from clawmesh_ingress.turns import turn_id_for
from tests.fakes.discord import Bot, FakeDiscord
from tests.fixtures.gateway import Gateway, run_gateway, wait_until

TOKEN = "MTAxODk.fake-discord-bot-token.x1"
GUILD, GENERAL, OPS, THREAD = "5100", "5101", "5102", "5103"
MODS_ROLE = "777"


def _config(discord: FakeDiscord, **settings: Any) -> dict[str, Any]:
    return {
        "agents": {
            "defaults": {"model": "echo/x"},
            "list": [{"id": "main", "default": True}, {"id": "ops"}, {"id": "mods"}],
        },
        "bindings": [
            {"agentId": "ops", "match": {"channel": "discord", "peer": {"kind": "channel", "id": OPS}}},
            {"agentId": "mods", "match": {"channel": "discord", "guildId": GUILD, "roles": [MODS_ROLE]}},
        ],
        "channels": {
            "discord": {
                "token": TOKEN,
                "apiBaseUrl": discord.api_base,
                "dmPolicy": "open",
                "allowFrom": ["*"],
                "groupPolicy": "allowlist",
                "guilds": {GUILD: {"requireMention": True}},
                **settings,
            }
        },
    }


def _fake() -> FakeDiscord:
    discord = FakeDiscord()
    discord.add_channel(GUILD, GENERAL)
    discord.add_channel(GUILD, OPS)
    discord.add_channel(GUILD, THREAD, parent_id=OPS)
    return discord


async def _decisions(nc: Client) -> dict[str, RouteDecision]:
    seen: dict[str, RouteDecision] = {}

    async def on(msg: Any) -> None:
        d = decode(msg.data, RouteDecision, msg.headers)
        seen[d.turn_id] = d

    await nc.subscribe("cm.route.decided", cb=on)
    return seen


def _turn(msg: dict[str, Any]) -> str:
    return turn_id_for("discord", "default", f"{msg['channel_id']}:{msg['id']}")


async def _ready(gw: Gateway, discord: FakeDiscord, bot: Bot) -> None:
    adapter = gw.service("ingress").channels.adapters["discord"]["default"]
    await discord.wait_ready(bot)
    await wait_until(lambda: adapter.bot is not None, message="READY handled")


async def test_dm_and_guild_messages_route_by_binding_and_are_answered_where_they_came_from(
    nats_url: str, nc: Client, tmp_path: Path
) -> None:
    async with _fake() as discord:
        bot = discord.add_bot(TOKEN, user_id="900")
        decisions = await _decisions(nc)
        async with run_gateway(nats_url, _config(discord), tmp_path) as gw:
            await _ready(gw, discord, bot)
            identify = bot.identifies[0]
            assert identify["intents"] & (1 << 15) and identify["intents"] & (1 << 12)
            dm = await discord.direct_message(bot, user="42", content="hello")
            unmentioned = await discord.message(bot, channel_id=GENERAL, author="43", content="chatter")
            other = await discord.message(
                bot, channel_id=GENERAL, author="43", content="<@901> not you", mentions=("901",)
            )
            in_ops = await discord.message(
                bot, channel_id=OPS, author="43", content="<@900> status?", mentions=("900",)
            )
            in_thread = await discord.message(
                bot, channel_id=THREAD, author="43", content="<@900> in a thread", mentions=("900",)
            )
            by_role = await discord.message(
                bot,
                channel_id=GENERAL,
                author="44",
                content="@everyone look",
                mention_everyone=True,
                roles=(MODS_ROLE,),
            )
            replies = {
                "dm": (await discord.wait_sent(bot, lambda p: p.content == "echo: hello"))[0],
                "ops": (await discord.wait_sent(bot, lambda p: p.content == "echo: <@900> status?"))[0],
                "thread": (await discord.wait_sent(bot, lambda p: p.content.endswith("in a thread")))[0],
                "role": (await discord.wait_sent(bot, lambda p: p.content.endswith("\n@everyone look")))[0],
            }
            # the two messages the bot was not asked to answer come as context (historyLimit)
            history = replies["role"].content.removeprefix("echo: ").split("\n")
            assert history[0] == "Chat history since last reply: ⟦openclaw:ctx⟧"
            assert [h.split(": ", 1)[1] for h in history[1:3]] == ["chatter", "<@901> not you"]
            assert replies["dm"].channel_id == dm["channel_id"]
            assert replies["ops"].channel_id == OPS
            assert replies["thread"].channel_id == THREAD
            assert replies["role"].channel_id == GENERAL
            # replyToMode is OpenClaw's default `off`: no native reply reference; nobody pinged
            assert all(p.reply_to is None for p in bot.sent)
            assert all(p.allowed_mentions == {"parse": []} for p in bot.sent)
            assert all(p.flags == 4 for p in bot.sent)  # SUPPRESS_EMBEDS: OpenClaw's suppressEmbeds default
            await wait_until(lambda: all(_turn(m) in decisions for m in (dm, in_ops, in_thread, by_role)))
            d = {
                k: decisions[_turn(m)]
                for k, m in (("dm", dm), ("ops", in_ops), ("t", in_thread), ("r", by_role))
            }
            assert d["dm"].agent_id == "main" and d["dm"].session_key == "agent:main:main"
            assert d["ops"].agent_id == "ops" and d["ops"].matched_by == "binding.peer"
            # a thread: its own peer, the parent channel's binding (parentPeer)
            assert d["t"].agent_id == "ops" and d["t"].session_key == f"agent:ops:discord:channel:{THREAD}"
            assert d["r"].agent_id == "mods"
            # no mention of the bot: never routed
            assert _turn(unmentioned) not in decisions and _turn(other) not in decisions
            assert len(bot.sent) == 4  # the bot's own echoed messages were not answered
            counters = gw.service("ingress").ctx.counters
            assert counters["channel_denied"] == 2
            # the four echoes of its own replies
            await wait_until(
                lambda: counters["discord_messages_ignored"] == 4, message="own messages dropped"
            )


async def test_a_reconnect_resumes_the_session_and_loses_nothing(
    nats_url: str, nc: Client, tmp_path: Path, caplog: Any
) -> None:
    caplog.set_level(logging.DEBUG)  # the frames IDENTIFY and RESUME carry the token
    async with _fake() as discord:
        bot = discord.add_bot(TOKEN)
        async with run_gateway(nats_url, _config(discord), tmp_path) as gw:
            await _ready(gw, discord, bot)
            session = bot.session
            assert session is not None
            await discord.direct_message(bot, user="42", content="before")
            await discord.wait_sent(bot, lambda p: p.content == "echo: before")
            # the socket dies; what is dispatched meanwhile is replayed on RESUME
            await discord.drop(bot)
            await discord.direct_message(bot, user="42", content="while away")
            await discord.direct_message(bot, user="42", content="still away")
            await discord.wait_sent(bot, lambda p: p.content == "echo: still away")
            assert len(bot.resumes) == 1 and len(bot.identifies) == 1
            assert bot.resumes[0]["session_id"] == session.id
            assert bot.resumes[0]["token"] == TOKEN
            assert bot.paths[-1].startswith("/resume")  # READY's resume_gateway_url
            # op 7: reconnect and resume again
            await discord.reconnect(bot)
            await wait_until(lambda: len(bot.resumes) == 2, message="the second RESUME")
            await discord.wait_ready(bot)
            await discord.direct_message(bot, user="42", content="after op 7")
            await discord.wait_sent(bot, lambda p: p.content == "echo: after op 7")
            # op 9 not resumable: a new session by IDENTIFY (after Discord's 1-5 s)
            await discord.invalidate(bot, resumable=False)
            await wait_until(lambda: len(bot.identifies) == 2, message="a new IDENTIFY")
            await discord.wait_ready(bot)
            assert bot.session is not None and bot.session.id != session.id
            await discord.direct_message(bot, user="42", content="new session")
            await discord.wait_sent(bot, lambda p: p.content == "echo: new session")
            texts = [p.content for p in bot.sent]
            assert texts == [
                "echo: before",
                "echo: while away",
                "echo: still away",
                "echo: after op 7",
                "echo: new session",
            ]
            # heartbeats carry the last sequence number; a server's op 1 is answered at once
            beats = len(bot.heartbeats)
            await discord.request_heartbeat(bot)
            await wait_until(lambda: len(bot.heartbeats) > beats, message="a heartbeat on request")
            assert isinstance(bot.heartbeats[-1], int)
            status = gw.service("ingress").channels.adapters["discord"]["default"].status()
            assert status["connected"] and status["resumes"] == 2 and status["identifies"] == 2
            assert "discord default: session resumed" in caplog.text
            # nothing of it in clawmesh's logs (the fake server's own logs aside)
            ours = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("clawmesh"))
            assert TOKEN[:12] not in ours


async def test_a_zombie_connection_is_dropped_and_resumed(nats_url: str, tmp_path: Path) -> None:
    discord = _fake()
    discord.heartbeat_interval_ms = 500
    async with discord:
        bot = discord.add_bot(TOKEN)
        async with run_gateway(nats_url, _config(discord), tmp_path) as gw:
            await _ready(gw, discord, bot)
            await wait_until(lambda: len(bot.heartbeats) >= 2, message="regular heartbeats")
            before = len(bot.resumes)  # (0, unless a loaded machine took a late ACK for a missing one)
            bot.ack_heartbeats = False  # heartbeats go unanswered from now on
            await wait_until(lambda: len(bot.resumes) > before, message="a RESUME after a missing ACK")
            bot.ack_heartbeats = True
            await discord.wait_ready(bot)
            await discord.direct_message(bot, user="42", content="alive again")
            await discord.wait_sent(bot, lambda p: p.content == "echo: alive again")
            assert len(bot.identifies) == 1


async def test_pairing_code_in_the_dm_and_a_new_thread_looked_up_for_its_parent(
    nats_url: str, nc: Client, tmp_path: Path
) -> None:
    async with _fake() as discord:
        bot = discord.add_bot(TOKEN)
        decisions = await _decisions(nc)
        config = _config(discord, dmPolicy="pairing", allowFrom=[])
        async with run_gateway(nats_url, config, tmp_path) as gw:
            await _ready(gw, discord, bot)
            dm = await discord.direct_message(bot, user="77", content="let me in")
            code = (await discord.wait_sent(bot, lambda p: p.channel_id == dm["channel_id"]))[0]
            assert "Your Discord user id: 77" in code.content and "pairing approve discord" in code.content
            # a thread created after READY: not in GUILD_CREATE, so its parent is looked up
            discord.add_channel(GUILD, "5199", parent_id=OPS)
            msg = await discord.message(
                bot,
                channel_id="5199",
                author="43",
                content="<@900> new thread",
                mentions=("900",),
                include_channel_type=False,
            )
            await discord.wait_sent(bot, lambda p: p.channel_id == "5199")
            await wait_until(lambda: _turn(msg) in decisions)
            assert decisions[_turn(msg)].agent_id == "ops"
            assert "GET /channels/5199" in bot.calls
            assert _turn(dm) not in decisions


async def test_rate_limits_and_server_errors_are_retried_and_an_impossible_reply_dead_lettered(
    nats_url: str, nc: Client, tmp_path: Path
) -> None:
    async with _fake() as discord:
        bot = discord.add_bot(TOKEN)
        async with run_gateway(nats_url, _config(discord), tmp_path) as gw:
            await _ready(gw, discord, bot)
            discord.fail_next(bot, 429, retry_after=0.3)
            discord.fail_next(bot, 502)
            dm = await discord.direct_message(bot, user="42", content="limited")
            await discord.wait_sent(bot, lambda p: p.content == "echo: limited")
            posts = f"POST /channels/{dm['channel_id']}/messages"
            assert bot.calls.count(posts) == 3
            discord.fail_next(bot, 403, code=50013, message="Missing Permissions")
            await discord.direct_message(bot, user="42", content="forbidden")
            js = nc.jetstream()

            async def letter() -> DeadLetter | None:
                try:
                    msg = await js.get_last_msg("CM_DLQ", "cm.dlq.ingress")
                except Exception:
                    return None
                return decode(msg.data, DeadLetter, msg.headers)

            dead = await wait_until(letter, message="the dead letter")
            assert dead.code == "UNDELIVERABLE" and "Missing Permissions" in dead.reason
            assert json.loads(dead.payload)["text"] == "echo: forbidden"
            assert [p.content for p in bot.sent] == ["echo: limited"]


async def test_a_long_reply_is_split_at_2000_characters_and_17_lines_and_quotes_per_reply_to_mode(
    nats_url: str, tmp_path: Path
) -> None:
    async with _fake() as discord:
        bot = discord.add_bot(TOKEN)
        async with run_gateway(nats_url, _config(discord, replyToMode="first"), tmp_path) as gw:
            await _ready(gw, discord, bot)
            # a Nitro user may send up to 4000 characters: the echoed answer is over 2000
            words = " ".join(f"word{i:04d}" for i in range(330))
            dm = await discord.direct_message(bot, user="42", content=words)
            parts = await discord.wait_sent(bot, lambda p: p.channel_id == dm["channel_id"], count=2)
            assert all(len(p.content) <= 2000 for p in parts)
            assert " ".join(p.content for p in parts) == f"echo: {words}"
            assert parts[0].reply_to == dm["id"] and parts[1].reply_to is None
            assert len(bot.sent) == 2
            # a tall answer: at most 17 lines a message (maxLinesPerMessage's default)
            tall = "\n".join(f"line {i}" for i in range(40))
            dm = await discord.direct_message(bot, user="43", content=tall)
            parts = await discord.wait_sent(bot, lambda p: p.channel_id == dm["channel_id"], count=3)
            assert [len(p.content.split("\n")) for p in parts] == [17, 17, 6]
            assert "\n".join(p.content for p in parts) == f"echo: {tall}"


async def test_a_refused_token_stops_the_account_and_is_never_printed(
    nats_url: str, tmp_path: Path, caplog: Any
) -> None:
    async with _fake() as discord:
        discord.add_bot("another-token")
        async with run_gateway(nats_url, _config(discord), tmp_path) as gw:
            adapter = gw.service("ingress").channels.adapters["discord"]["default"]
            await wait_until(lambda: adapter.gateway.fatal is not None, message="the token refused")
            assert "refused" in adapter.status()["error"]
            assert TOKEN not in caplog.text
