"""Discord slash commands over HTTP against the fake Discord (tests/fakes/discord.py), with a
real nats-server: the fake signs interactions with an Ed25519 key pair made here and POSTs them
to ingress's Interactions Endpoint URL. PING is answered PONG and the commands are registered
once; a wrong signature, a missing header, a stale or garbled timestamp are refused with 401 and
nothing is stored; a slash command is answered DEFERRED at once and its reply edits the
deferred answer, in the user's slash session (`agent:<agent>:discord:slash:<user>`) of the agent
the conversation routes to, while `/status` acts on the conversation's own session; a denied
user gets OpenClaw's ephemeral refusal and no turn; a redelivered interaction is one turn; a
reply over 2000 characters is the original plus follow-ups; an expired token dead-letters the
reply without printing it."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from nats.aio.client import Client

from clawmesh.wire import DeadLetter, RouteDecision, decode
from clawmesh_ingress.turns import turn_id_for
from tests.fakes.discord import App, Bot, FakeDiscord
from tests.fixtures.gateway import Gateway, run_gateway, wait_until

TOKEN = "MTAxODk.fake-discord-bot-token.x1"  # starts with base64("10189"): the application id
APP_ID = "10189"
GUILD, GENERAL, OPS, THREAD = "5100", "5101", "5102", "5103"
PATH = "/discord/interactions"


def _config(discord: FakeDiscord, app: App, **settings: Any) -> dict[str, Any]:
    return {
        "agents": {
            "defaults": {"model": "echo/x"},
            "list": [{"id": "main", "default": True}, {"id": "ops"}],
        },
        "bindings": [
            {"agentId": "ops", "match": {"channel": "discord", "peer": {"kind": "channel", "id": OPS}}},
        ],
        "channels": {
            "discord": {
                "token": TOKEN,
                "publicKey": app.public_key,
                "apiBaseUrl": discord.api_base,
                "dmPolicy": "allowlist",
                "allowFrom": ["42"],
                "groupPolicy": "allowlist",
                "guilds": {GUILD: {"requireMention": True}},
                **settings,
            }
        },
    }


def _fake() -> tuple[FakeDiscord, Bot, App]:
    discord = FakeDiscord()
    discord.add_channel(GUILD, GENERAL)
    discord.add_channel(GUILD, OPS)
    discord.add_channel(GUILD, THREAD, parent_id=OPS)
    bot = discord.add_bot(TOKEN, user_id=APP_ID)
    return discord, bot, discord.application(bot)


async def _decisions(nc: Client) -> list[RouteDecision]:
    seen: list[RouteDecision] = []

    async def on(msg: Any) -> None:
        seen.append(decode(msg.data, RouteDecision, msg.headers))

    await nc.subscribe("cm.route.decided", cb=on)
    return seen


def _turn(ix: dict[str, Any]) -> str:
    return turn_id_for("discord", "default", f"{ix['channel_id']}:interaction:{ix['id']}")


def _url(gw: Gateway) -> str:
    return gw.url + PATH


async def _stored(nc: Client, gw: Gateway) -> int:
    """Messages in CM_INBOUND."""
    info = await nc.jetstream().stream_info(gw.service("ingress").ctx.subjects.stream("INBOUND"))
    return int(info.state.messages)


async def test_ping_is_pong_and_the_commands_are_registered_once(
    nats_url: str, nc: Client, tmp_path: Path
) -> None:
    discord, bot, app = _fake()
    async with discord:
        config = _config(discord, app)
        async with run_gateway(nats_url, config, tmp_path) as gw:
            resp = await discord.interact(bot, _url(gw), discord.ping(bot))
            assert resp.status_code == 200 and resp.json() == {"type": 1}
            assert resp.headers["content-type"] == "application/json"
            adapter = gw.service("ingress").channels.adapters["discord"]["default"]
            await wait_until(lambda: adapter.commands_registered == APP_ID, message="commands registered")
            assert app.command_puts == 1
            assert [c["name"] for c in app.commands] == ["ask", "new", "reset", "status", "stop"]
            ask, new, stop = app.commands[0], app.commands[1], app.commands[4]
            assert ask["options"] == [
                {"name": "prompt", "description": "What to ask", "type": 3, "required": True}
            ]
            # OpenClaw's native specs: the description, an optional `input` for a command with args
            assert new["description"] == "Start a new session."
            assert new["options"] == [
                {"name": "input", "description": "Command input", "type": 3, "required": False}
            ]
            assert "options" not in stop and stop["type"] == 1 and stop["contexts"] == [0, 1, 2]
            assert adapter.status()["interactions"] == PATH
            assert f"PUT /applications/{APP_ID}/commands" in bot.calls
        # the same set again (another start, another replica): not registered again
        async with run_gateway(nats_url, config, tmp_path) as gw:
            adapter = gw.service("ingress").channels.adapters["discord"]["default"]
            await wait_until(lambda: adapter.commands_registered == APP_ID, message="commands checked")
            assert app.command_puts == 1


async def test_bad_signatures_and_bodies_are_refused_and_nothing_is_stored(
    nats_url: str, nc: Client, tmp_path: Path
) -> None:
    discord, bot, app = _fake()
    async with discord:
        decisions = await _decisions(nc)
        async with run_gateway(nats_url, _config(discord, app, commands={"native": False}), tmp_path) as gw:
            url = _url(gw)
            forged = discord.slash_command(bot, "ask", {"prompt": "forged"}, channel_id=GENERAL)
            other = discord.application(discord.add_bot("other-token", user_id="901"))
            body = json.dumps(forged).encode()
            now = str(int(time.time()))
            stale = str(int(time.time()) - 3600)
            refused = [
                # signed with another app's key
                await discord.interact(bot, url, forged, signature=other.sign(now, body), timestamp=now),
                await discord.interact(bot, url, forged, signature="00" * 64),
                await discord.interact(bot, url, forged, omit=("x-signature-ed25519",)),
                await discord.interact(bot, url, forged, omit=("x-signature-timestamp",)),
                # correctly signed, but an hour old (a replay) or not a timestamp
                await discord.interact(bot, url, forged, timestamp=stale, signature=app.sign(stale, body)),
                await discord.interact(
                    bot, url, forged, timestamp="yesterday", signature=app.sign("yesterday", body)
                ),
                # the body changed after signing
                await discord.interact(
                    bot,
                    url,
                    forged,
                    body=body.replace(b"forged", b"FORGED"),
                    timestamp=now,
                    signature=app.sign(now, body),
                ),
            ]
            assert [r.status_code for r in refused] == [401] * 7
            errors = [r.json()["error"] for r in refused]
            assert errors[0] == "wrong X-Signature-Ed25519" and errors[6] == "wrong X-Signature-Ed25519"
            assert "X-Signature-Ed25519" in errors[2] and "X-Signature-Timestamp" in errors[3]
            assert errors[4].startswith("stale X-Signature-Timestamp") and "malformed" in errors[5]
            # signed, but not JSON, not an interaction, or a type nobody knows
            assert (await discord.interact(bot, url, None, body=b'{"type": 2,')).status_code == 400
            not_one = await discord.interact(
                bot, url, None, body=b'{"type": 2, "id": "../x", "application_id": "1"}'
            )
            assert not_one.status_code == 400 and "not a Discord interaction" in not_one.json()["error"]
            unknown = await discord.interact(bot, url, {"type": 99, "id": "1", "application_id": APP_ID})
            assert unknown.status_code == 400 and "unknown interaction type 99" in unknown.json()["error"]
            # a component of some other software's message, an autocomplete: answered, not run
            button = await discord.interact(
                bot, url, {"type": 3, "id": "2", "application_id": APP_ID, "token": "t"}
            )
            assert button.json()["type"] == 4 and button.json()["data"]["flags"] == 64
            choices = await discord.interact(
                bot, url, {"type": 4, "id": "3", "application_id": APP_ID, "token": "t"}
            )
            assert choices.json() == {"type": 8, "data": {"choices": []}}
            assert await _stored(nc, gw) == 0
            counters = gw.service("ingress").ctx.counters
            assert counters["discord_interactions_refused"] == 7
            # the genuine one after them is the only turn
            genuine = discord.slash_command(bot, "ask", {"prompt": "genuine"}, channel_id=GENERAL)
            assert (await discord.interact(bot, url, genuine)).json()["type"] == 5
            done = await discord.wait_interaction(bot, genuine, lambda i: bool(i.original_edits))
            assert done.original_edits == ["echo: genuine"]
            assert await _stored(nc, gw) == 1
            await wait_until(lambda: len(decisions) == 1)
            assert decisions[0].turn_id == _turn(genuine)
            assert discord.interaction(bot, forged).original is None
            # commands.native false: nothing registered
            assert app.command_puts == 0


async def test_a_slash_command_is_deferred_and_its_reply_edits_the_original_in_the_slash_session(
    nats_url: str, nc: Client, tmp_path: Path
) -> None:
    discord, bot, app = _fake()
    async with discord:
        decisions = await _decisions(nc)
        async with run_gateway(nats_url, _config(discord, app), tmp_path) as gw:
            url = _url(gw)
            asked = {
                "general": discord.slash_command(bot, "ask", {"prompt": "hello there"}, channel_id=GENERAL),
                "ops": discord.slash_command(bot, "ask", {"prompt": "deploy?"}, channel_id=OPS),
                "thread": discord.slash_command(bot, "ask", {"prompt": "in a thread"}, channel_id=THREAD),
                "dm": discord.slash_command(bot, "ask", {"prompt": "privately"}),
            }
            for ix in asked.values():
                resp = await discord.interact(bot, url, ix)
                # DEFERRED at once, ephemeral (OpenClaw's slashCommand.ephemeral default)
                assert resp.status_code == 200 and resp.json() == {"type": 5, "data": {"flags": 64}}
            replies = {
                k: await discord.wait_interaction(bot, ix, lambda i: bool(i.original_edits))
                for k, ix in asked.items()
            }
            assert replies["general"].original_edits == ["echo: hello there"]
            assert replies["ops"].original is not None and replies["ops"].original.content == "echo: deploy?"
            assert replies["thread"].original_edits == ["echo: in a thread"]
            assert replies["dm"].original_edits == ["echo: privately"]
            for done in replies.values():
                assert done.original is not None and done.original.flags & 64  # still ephemeral
                assert done.original.allowed_mentions == {"parse": []} and not done.followups
                assert done.webhook_auth == [""]  # the bot token never goes with a webhook call
            await wait_until(lambda: {d.turn_id for d in decisions} >= {_turn(ix) for ix in asked.values()})
            by_turn = {d.turn_id: d for d in decisions}
            d = {k: by_turn[_turn(ix)] for k, ix in asked.items()}
            # the user's slash session of the agent the conversation routes to
            assert (d["general"].agent_id, d["general"].session_key) == (
                "main",
                "agent:main:discord:slash:42",
            )
            assert (d["ops"].agent_id, d["ops"].session_key) == ("ops", "agent:ops:discord:slash:42")
            assert d["thread"].session_key == "agent:ops:discord:slash:42"  # the thread's parent binding
            assert d["dm"].session_key == "agent:main:discord:slash:42"
            assert not bot.sent  # nothing posted into the channels
            # a control command acts on the conversation's session (OpenClaw's command target)
            status = discord.slash_command(bot, "status", channel_id=OPS)
            assert (await discord.interact(bot, url, status)).json()["type"] == 5
            done = await discord.wait_interaction(bot, status, lambda i: bool(i.original_edits))
            assert f"Session: agent:ops:discord:channel:{OPS}" in done.original_edits[0]
            await wait_until(lambda: any(x.turn_id == _turn(status) for x in decisions))
            decided = next(x for x in decisions if x.turn_id == _turn(status))
            assert decided.session_key == f"agent:ops:discord:channel:{OPS}"


async def test_a_denied_user_gets_an_ephemeral_refusal_and_no_turn(
    nats_url: str, nc: Client, tmp_path: Path
) -> None:
    discord, bot, app = _fake()
    async with discord:
        decisions = await _decisions(nc)
        async with run_gateway(nats_url, _config(discord, app), tmp_path) as gw:
            url = _url(gw)
            refused = [
                discord.slash_command(bot, "ask", {"prompt": "let me in"}, user="66", channel_id=GENERAL),
                discord.slash_command(bot, "ask", {"prompt": "let me in"}, user="66"),
                discord.slash_command(bot, "reset", user="66", channel_id=OPS),
            ]
            for ix in refused:
                resp = await discord.interact(bot, url, ix)
                assert resp.json() == {
                    "type": 4,
                    "data": {
                        "content": "You are not authorized to use this command.",
                        "allowed_mentions": {"parse": []},
                        "flags": 64,
                    },
                }
            # a channel the guild allow-list does not name, a group DM: OpenClaw's answers
            discord.add_channel("5999", "5998")
            elsewhere = discord.slash_command(bot, "ask", {"prompt": "hi"}, channel_id="5998")
            assert (await discord.interact(bot, url, elsewhere)).json()["data"]["content"] == (
                "This channel is not allowed."
            )
            group_dm = discord.slash_command(bot, "ask", {"prompt": "hi"})
            group_dm["channel"]["type"] = 3
            answer = (await discord.interact(bot, url, group_dm)).json()
            assert answer["data"]["content"] == "Discord group DMs are disabled."
            assert await _stored(nc, gw) == 0
            allowed = discord.slash_command(bot, "ask", {"prompt": "me"}, user="42", channel_id=GENERAL)
            assert (await discord.interact(bot, url, allowed)).json()["type"] == 5
            await discord.wait_interaction(bot, allowed, lambda i: i.original_edits == ["echo: me"])
            await wait_until(lambda: len(decisions) == 1)
            assert decisions[0].turn_id == _turn(allowed)
            assert gw.service("ingress").channels.inbound.access.counters["denied.sender-not-allowed"] >= 2


async def test_a_redelivered_interaction_is_one_turn(nats_url: str, nc: Client, tmp_path: Path) -> None:
    discord, bot, app = _fake()
    async with discord:
        decisions = await _decisions(nc)
        async with run_gateway(nats_url, _config(discord, app), tmp_path) as gw:
            url = _url(gw)
            ix = discord.slash_command(bot, "ask", {"prompt": "only once"}, channel_id=GENERAL)
            first = await discord.interact(bot, url, ix)
            again = await discord.interact(bot, url, ix)
            assert first.json()["type"] == 5 and again.json()["type"] == 5
            assert await _stored(nc, gw) == 1
            done = await discord.wait_interaction(bot, ix, lambda i: bool(i.original_edits))
            # a later command's answer: the pipeline has handled everything before it
            later = discord.slash_command(bot, "ask", {"prompt": "later"}, channel_id=GENERAL)
            await discord.interact(bot, url, later)
            await discord.wait_interaction(bot, later, lambda i: bool(i.original_edits))
            await wait_until(lambda: any(d.turn_id == _turn(later) for d in decisions))
            assert [d.turn_id for d in decisions].count(_turn(ix)) == 1
            assert done.original_edits == ["echo: only once"] and not done.followups


async def test_a_long_reply_is_the_original_plus_follow_ups(
    nats_url: str, nc: Client, tmp_path: Path
) -> None:
    discord, bot, app = _fake()
    async with discord:
        async with run_gateway(nats_url, _config(discord, app), tmp_path) as gw:
            url = _url(gw)
            words = " ".join(f"word{i:04d}" for i in range(450))  # "echo: …" is over 4000 characters
            ix = discord.slash_command(bot, "ask", {"prompt": words}, channel_id=GENERAL)
            assert (await discord.interact(bot, url, ix)).json()["type"] == 5
            done = await discord.wait_interaction(bot, ix, lambda i: len(i.followups) == 2)
            assert done.original is not None and len(done.original_edits) == 1
            parts = [done.original.content, *(f.content for f in done.followups)]
            assert all(len(p) <= 2000 for p in parts)
            assert " ".join(parts) == f"echo: {words}"
            # ephemeral like the deferred answer, links not unfurled
            assert [f.flags for f in done.followups] == [64 | 4, 64 | 4]
        # slashCommand.ephemeral false: the answer and its follow-ups are the channel's
        async with run_gateway(
            nats_url, _config(discord, app, slashCommand={"ephemeral": False}), tmp_path
        ) as gw:
            ix = discord.slash_command(bot, "ask", {"prompt": words}, channel_id=GENERAL)
            assert (await discord.interact(bot, _url(gw), ix)).json() == {"type": 5}
            done = await discord.wait_interaction(bot, ix, lambda i: len(i.followups) == 2)
            assert done.original is not None and done.original.flags == 4
            assert [f.flags for f in done.followups] == [4, 4]


async def test_an_expired_token_dead_letters_the_reply_without_showing_the_token(
    nats_url: str, nc: Client, tmp_path: Path, caplog: Any
) -> None:
    caplog.set_level(logging.DEBUG)
    discord, bot, app = _fake()
    async with discord, run_gateway(nats_url, _config(discord, app), tmp_path) as gw:
        ix = discord.slash_command(bot, "ask", {"prompt": "too late"}, channel_id=GENERAL)
        discord.expire(bot, ix)  # the token is gone by the time the reply comes
        assert (await discord.interact(bot, _url(gw), ix)).json()["type"] == 5
        js = nc.jetstream()

        async def letter() -> DeadLetter | None:
            try:
                msg = await js.get_last_msg("CM_DLQ", "cm.dlq.ingress")
            except Exception:
                return None
            return decode(msg.data, DeadLetter, msg.headers)

        dead = await wait_until(letter, message="the dead letter")
        assert dead.code == "UNDELIVERABLE" and "expired" in dead.reason and "10015" in dead.reason
        assert ix["token"] not in dead.reason
        assert json.loads(dead.payload)["text"] == "echo: too late"
        assert ix["token"] not in caplog.text and app.public_key not in caplog.text
        assert discord.interaction(bot, ix).original_edits == []


async def test_what_is_not_stored_within_discords_3_seconds_is_deferred_and_finished_afterwards(
    nats_url: str, nc: Client, tmp_path: Path
) -> None:
    discord, bot, app = _fake()
    async with discord, run_gateway(nats_url, _config(discord, app), tmp_path) as gw:
        adapter = gw.service("ingress").channels.adapters["discord"]["default"]
        adapter.ACK_BUDGET = 0  # every command outlasts it: answered DEFERRED before it is stored
        allowed = discord.slash_command(bot, "ask", {"prompt": "slowly"}, channel_id=GENERAL)
        refused = discord.slash_command(bot, "ask", {"prompt": "slowly"}, user="66", channel_id=GENERAL)
        for ix in (allowed, refused):
            assert (await discord.interact(bot, _url(gw), ix)).json() == {"type": 5, "data": {"flags": 64}}
        done = await discord.wait_interaction(bot, allowed, lambda i: bool(i.original_edits))
        assert done.original_edits == ["echo: slowly"]
        # the refusal, when it comes, replaces the deferred answer
        late = await discord.wait_interaction(bot, refused, lambda i: bool(i.original_edits))
        assert late.original_edits == ["You are not authorized to use this command."]
        assert gw.service("ingress").ctx.counters["discord_commands_late"] == 2
        assert await _stored(nc, gw) == 1
