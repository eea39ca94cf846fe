"""Streamed reply previews on Discord (`channels.discord.streaming`), end to end against the fake
Discord (tests/fakes/discord.py) and the fake model server, whose answer a test holds mid-stream:
with `partial` a preview message appears while the answer is held and is edited as text
arrives, and the final reply edits that same message (no second message); a reply over 2000
characters ends as the preview edited to its first part plus new messages for the rest; a
preview deleted meanwhile (404 `Unknown Message`) makes the final reply a new message, sent
once; with the default (`off`) and with `progress` (served as `off`) nobody follows the turn:
no preview, no edit; a final edit rate-limited (429) is retried and the reply stored again
later takes nothing over twice."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import msgspec
import pytest
from nats.aio.client import Client
from nats.js.errors import KeyNotFoundError

from clawmesh.channels.text import split_text
from clawmesh.wire import InboundMessage, OutboundMessage, decode, encode_json
from clawmesh_ingress.turns import turn_id_for
from tests.fakes.discord import Bot, FakeDiscord
from tests.fakes.models import FakeModelServer, Hang, ToolCall
from tests.fixtures.gateway import Gateway, run_gateway, wait_until
from tests.fixtures.nats import acked_through

TOKEN = "MTAxOTA.fake-discord-preview-token.x2"
CHUNKS = 6
REPLY = "The answer, streamed: alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november oscar papa"
# the first preview waits for 30 characters (OpenClaw's minInitialChars): two deltas of the answer
assert len(REPLY) // CHUNKS < 30 <= 2 * (len(REPLY) // CHUNKS)


def _config(discord: FakeDiscord, model: FakeModelServer, **settings: Any) -> dict[str, Any]:
    return {
        "agents": {"defaults": {"model": "fake/m"}, "list": [{"id": "main", "default": True}]},
        "models": {
            "providers": {"fake": {"baseUrl": model.base_url + "/v1", "api": "openai", "apiKey": "k"}}
        },
        "channels": {
            "discord": {
                "token": TOKEN,
                "apiBaseUrl": discord.api_base,
                "dmPolicy": "open",
                "allowFrom": ["*"],
                **settings,
            }
        },
    }


async def _ready(gw: Gateway, discord: FakeDiscord, bot: Bot) -> Any:
    adapter = gw.service("ingress").channels.adapters["discord"]["default"]
    await discord.wait_ready(bot)
    await wait_until(lambda: adapter.bot is not None, message="READY handled")
    return adapter


def _turn(msg: dict[str, Any]) -> str:
    return turn_id_for("discord", "default", f"{msg['channel_id']}:{msg['id']}")


def _head(text: str, deltas: int) -> str:
    """The first `deltas` of the fake model's `CHUNKS` deltas of `text` (sizes as it splits)."""
    size, extra = divmod(len(text), CHUNKS)
    return text[: sum(size + (1 if i < extra else 0) for i in range(deltas))]


async def _delivered(nc: Client, turn_id: str) -> bool:
    """The turn's reply is recorded as sent (nothing of it is sent again after this)."""
    kv = await nc.jetstream().key_value("cm_delivered")
    try:
        entry = await kv.get(turn_id)
    except KeyNotFoundError:
        return False
    return bool(msgspec.json.decode(entry.value or b"{}").get("done"))


async def _all_delivered(nc: Client) -> bool:
    """Every reply in CM_OUTBOUND was handled (sent and acked)."""
    info = await nc.jetstream().consumer_info("CM_OUTBOUND", "ingress-out-discord")
    return info.num_pending == 0 and info.num_ack_pending == 0


@pytest.mark.parametrize("mode", ["partial", "block"])
async def test_a_preview_appears_while_the_answer_streams_grows_and_is_replaced_by_the_final_reply(
    mode: str, nats_url: str, nc: Client, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="clawmesh.ingress.discord")
    released = asyncio.Event()
    looking = "Let me look that up for you, one moment please. "
    async with FakeDiscord() as discord, FakeModelServer(reply=REPLY, chunks=CHUNKS) as model:
        bot = discord.add_bot(TOKEN)
        # a first model call says something and calls a tool (not one the agent has: its error
        # goes back to the model); the second streams two deltas of the answer, then waits
        model.script(
            ToolCall("no_such_tool", {}, text_before=looking),
            Hang(seconds=120, after_chunks=2, opened=released),
        )
        config = _config(discord, model, streaming={"mode": mode})
        async with run_gateway(nats_url, config, tmp_path) as gw:
            adapter = await _ready(gw, discord, bot)
            adapter.EDIT_INTERVAL = 0.05
            dm = await discord.direct_message(bot, user="42", content="stream please")
            preview = (await discord.wait_sent(bot, lambda p: p.channel_id == dm["channel_id"]))[0]
            # while the answer is held: the preview is edited up to the text so far
            so_far = looking + _head(REPLY, 2)
            await wait_until(
                lambda: preview.content == so_far, message="the preview edited to the text so far"
            )
            assert bot.edits and all(e.message_id == preview.id for e in bot.edits)
            assert len(bot.sent) == 1
            released.set()
            await wait_until(lambda: preview.content == REPLY, message="the final reply in the preview")
            await wait_until(lambda: _delivered(nc, _turn(dm)), message="the reply recorded")
            # the final reply took the preview over: no second message, nobody pinged
            assert bot.sent == [preview]
            assert bot.edits[-1].content == REPLY and bot.edits[-1].message_id == preview.id
            assert all(e.allowed_mentions == {"parse": []} for e in bot.edits)
            assert preview.allowed_mentions == {"parse": []} and preview.flags == 4  # SUPPRESS_EMBEDS
            assert preview.reply_to is None  # replyToMode: OpenClaw's default off
            assert gw.service("ingress").ctx.counters["discord_preview_updates"] >= 2
    served = caplog.text.count('streaming mode "block" is served as "partial"')
    assert served == (1 if mode == "block" else 0)


async def test_a_long_reply_ends_as_the_preview_edited_to_its_first_part_plus_new_messages(
    nats_url: str, nc: Client, tmp_path: Path
) -> None:
    released = asyncio.Event()
    words = " ".join(f"word{i:04d}" for i in range(330))  # 2969 characters, one line
    part1, part2 = split_text(words, 2000)
    async with FakeDiscord() as discord, FakeModelServer(reply=words, chunks=CHUNKS) as model:
        bot = discord.add_bot(TOKEN)
        model.script(Hang(seconds=120, after_chunks=5, opened=released))  # ~2470 characters, held
        config = _config(discord, model, streaming={"mode": "partial"}, replyToMode="first")
        async with run_gateway(nats_url, config, tmp_path) as gw:
            adapter = await _ready(gw, discord, bot)
            adapter.EDIT_INTERVAL = 0.05
            dm = await discord.direct_message(bot, user="42", content="a long one")
            preview = (await discord.wait_sent(bot, lambda p: p.channel_id == dm["channel_id"]))[0]
            # the preview shows at most the reply's first message, though more text has arrived
            await wait_until(lambda: preview.content == part1, message="the preview at the first part")
            assert len(_head(words, 5)) > 2000
            assert preview.reply_to == dm["id"]  # replyToMode first: the first part quotes
            edits_before = len(bot.edits)
            released.set()
            rest = await discord.wait_sent(bot, lambda p: p.id != preview.id)
            await wait_until(lambda: _delivered(nc, _turn(dm)), message="the reply recorded")
            assert [p.content for p in bot.sent] == [part1, part2]
            assert rest[0].reply_to is None
            assert len(bot.edits) > edits_before  # the final reply edited the preview to part 1
            assert bot.edits[-1].message_id == preview.id and bot.edits[-1].content == part1
            assert all(len(e.content) <= 2000 for e in bot.edits)


async def test_a_preview_deleted_meanwhile_makes_the_final_reply_a_new_message_sent_once(
    nats_url: str, nc: Client, tmp_path: Path
) -> None:
    released = asyncio.Event()
    async with FakeDiscord() as discord, FakeModelServer(reply=REPLY, chunks=CHUNKS) as model:
        bot = discord.add_bot(TOKEN)
        model.script(Hang(seconds=120, after_chunks=2, opened=released))
        async with run_gateway(
            nats_url, _config(discord, model, streaming={"mode": "partial"}), tmp_path
        ) as gw:
            adapter = await _ready(gw, discord, bot)
            adapter.EDIT_INTERVAL = 0.05
            dm = await discord.direct_message(bot, user="42", content="then delete it")
            preview = (await discord.wait_sent(bot, lambda p: p.channel_id == dm["channel_id"]))[0]
            assert REPLY.startswith(preview.content)
            discord.delete(bot, preview)  # a moderator removes it while the answer is held
            edits_before = len(bot.edits)
            released.set()
            final = (await discord.wait_sent(bot, lambda p: p.id != preview.id))[0]
            await wait_until(lambda: _delivered(nc, _turn(dm)), message="the reply recorded")
            await wait_until(lambda: _all_delivered(nc), message="the delivery done")
            assert final.content == REPLY and final.channel_id == dm["channel_id"]
            assert bot.sent == [preview, final]  # the final reply once, as a new message
            # the final reply tried the preview (404 Unknown Message), then sent anew
            assert f"PATCH /channels/{dm['channel_id']}/messages/{preview.id}" in bot.calls
            assert len(bot.edits) == edits_before


@pytest.mark.parametrize("settings", [{}, {"streaming": {"mode": "progress"}}], ids=["default", "progress"])
async def test_without_partial_nobody_follows_the_turn_no_preview_no_edit(
    settings: dict[str, Any], nats_url: str, nc: Client, tmp_path: Path
) -> None:
    stored: list[InboundMessage] = []

    async def on(msg: Any) -> None:
        stored.append(decode(msg.data, InboundMessage, msg.headers))

    await nc.subscribe("cm.in.discord.>", cb=on)
    async with FakeDiscord() as discord, FakeModelServer(reply=REPLY, chunks=CHUNKS) as model:
        bot = discord.add_bot(TOKEN)
        async with run_gateway(nats_url, _config(discord, model, **settings), tmp_path) as gw:
            await _ready(gw, discord, bot)
            dm = await discord.direct_message(bot, user="42", content="no preview")
            final = (await discord.wait_sent(bot, lambda p: p.channel_id == dm["channel_id"]))[0]
            await wait_until(lambda: _delivered(nc, _turn(dm)), message="the reply recorded")
            await wait_until(lambda: stored, message="the stored message seen")
            # the turn's events never come back to ingress: nothing could show a preview
            assert stored[0].reply_subject is None and stored[0].reply_events == "final"
            assert final.content == REPLY and bot.sent == [final]
            assert bot.edits == [] and not any(c.startswith("PATCH") for c in bot.calls)
            assert gw.service("ingress").ctx.counters["discord_preview_updates"] == 0


async def test_the_preview_is_taken_over_once_though_the_final_edit_is_retried_and_the_reply_stored_again(
    nats_url: str, nc: Client, tmp_path: Path
) -> None:
    released = asyncio.Event()
    async with FakeDiscord() as discord, FakeModelServer(reply=REPLY, chunks=CHUNKS) as model:
        bot = discord.add_bot(TOKEN)
        model.script(Hang(seconds=120, after_chunks=2, opened=released))
        async with run_gateway(
            nats_url, _config(discord, model, streaming={"mode": "partial"}), tmp_path
        ) as gw:
            adapter = await _ready(gw, discord, bot)
            # no preview edit after the first message: every PATCH below is the final reply's
            adapter.EDIT_INTERVAL = 3600.0
            dm = await discord.direct_message(bot, user="42", content="exactly once")
            preview = (await discord.wait_sent(bot, lambda p: p.channel_id == dm["channel_id"]))[0]
            discord.fail_next(bot, 429, retry_after=0.2, method="PATCH")
            released.set()
            await wait_until(lambda: preview.content == REPLY, message="the final reply in the preview")
            await wait_until(lambda: _delivered(nc, _turn(dm)), message="the reply recorded")
            patches = [c for c in bot.calls if c.startswith("PATCH")]
            assert (
                patches == [f"PATCH /channels/{dm['channel_id']}/messages/{preview.id}"] * 2
            )  # 429, then done
            assert len(bot.edits) == 1 and bot.sent == [preview]
            # the runner's reply stored again (as after a crash before its ack): nothing happens
            js = nc.jetstream()
            stored = await js.get_last_msg("CM_OUTBOUND", "cm.out.discord.default")
            reply = decode(stored.data, OutboundMessage, stored.headers)
            assert reply.turn_id == _turn(dm) and reply.text == REPLY
            data, headers = encode_json(reply)
            headers["Nats-Msg-Id"] = "the-same-reply-again"
            copy = await js.publish("cm.out.discord.default", data, headers=headers)
            await wait_until(
                lambda: acked_through(nc, "CM_OUTBOUND", "ingress-out-discord", copy.seq),
                message="the copy handled",
            )
            assert gw.service("ingress").ctx.counters["replies_already_sent"] == 1
            assert len(bot.edits) == 1 and bot.sent == [preview]
            assert [c for c in bot.calls if c.startswith("PATCH")] == patches
