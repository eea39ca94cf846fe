"""Discord attachments end to end against the fake Discord (tests/fakes/discord.py) and its CDN:
a message's files are downloaded from the CDN (its signed `url`, never with the bot token) once
the access policy admitted the message, staged by the node into the agent's workspace with
OpenClaw's `[media attached: …]` note in front of the text, pictures also given to the model as
image parts; a file without text is answered too. A file over `mediaMaxMb` is named as too large
and never asked for, one the CDN refuses (or that turns out larger than it said) as not received,
the turn still answered; a denied sender's files and an unmentioned guild message's are never
downloaded."""

from __future__ import annotations

import re
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

import pytest

from clawmesh_ingress.channels.discord.cdn import Cdn
from clawmesh_ingress.channels.media import MediaError
from tests.fakes.discord import Bot, FakeDiscord
from tests.fixtures.gateway import Gateway, run_gateway, wait_until

TOKEN = "MTAxODk.fake-discord-bot-token.files"
GUILD, GENERAL = "5300", "5301"
_ALL = ("ingress", "router", "runner", "node-agent")
_NOTE = re.compile(
    r"\[media attached: (media/inbound/openclaw-staged-[0-9a-f]{64}/.+?) \(([^)]+)\) \"([^\"]*)\"\]"
)
# a PNG's first bytes and some more: the model gets what was sent
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 40
PDF = b"%PDF-1.7\n" + bytes(range(256)) * 2000  # binary, 512 KB


def _config(discord: FakeDiscord, **settings: Any) -> dict[str, Any]:
    return {
        "agents": {"defaults": {"model": "echo/x"}, "list": [{"id": "main", "default": True}]},
        "channels": {
            "discord": {
                "token": TOKEN,
                "apiBaseUrl": discord.api_base,
                "dmPolicy": "allowlist",
                "allowFrom": ["42"],
                "groupPolicy": "allowlist",
                "guilds": {GUILD: {"requireMention": True, "users": ["42"]}},
                **settings,
            }
        },
    }


def _fake() -> FakeDiscord:
    discord = FakeDiscord()
    discord.add_channel(GUILD, GENERAL)
    return discord


async def _ready(gw: Gateway, discord: FakeDiscord, bot: Bot) -> None:
    adapter = gw.service("ingress").channels.adapters["discord"]["default"]
    await discord.wait_ready(bot)
    await wait_until(lambda: adapter.bot is not None, message="READY handled")


async def _answer(discord: FakeDiscord, bot: Bot, sending: Awaitable[dict[str, Any]]) -> str:
    """The text of the answer to the message `sending` sends: the first message in its channel
    after it was sent."""
    before = len(bot.sent)
    msg = await sending
    found = await discord.wait_sent(
        bot, lambda p: p.channel_id == msg["channel_id"] and any(p is q for q in bot.sent[before:])
    )
    return found[0].content


async def _said(discord: FakeDiscord, bot: Bot, content: str, *attachments: dict[str, Any]) -> str:
    """User 42's DM with `attachments`, and the answer's text."""
    return await _answer(
        discord, bot, discord.direct_message(bot, user="42", content=content, attachments=attachments)
    )


def _noted(text: str) -> tuple[re.Match[str], str]:
    """OpenClaw's note (the echo's first line) and the rest of the text."""
    note, _, rest = text.removeprefix("echo: ").partition("\n")
    found = _NOTE.fullmatch(note)
    assert found is not None, text
    return found, rest


async def test_files_reach_the_workspace_with_openclaws_note_and_pictures_the_model(
    nats_url: str, tmp_path: Path
) -> None:
    async with _fake() as discord:
        bot = discord.add_bot(TOKEN)
        async with run_gateway(nats_url, _config(discord), tmp_path, services=_ALL) as gw:
            await _ready(gw, discord, bot)
            workspace = gw.holder.current.agent_view("main").workspace
            dm = discord.dm_channel("42")
            pdf = discord.attachment(dm, "Q3 report.pdf", PDF, content_type="application/pdf")
            doc, rest = _noted(await _said(discord, bot, "summarise this", pdf))
            assert doc[1].endswith("/input-Q3 report.pdf") and doc[2] == "application/pdf"
            assert doc[3] == "Q3 report.pdf" and rest == "summarise this"
            assert (workspace / doc[1]).read_bytes() == PDF
            assert ((workspace / doc[1]).parent / ".gitignore").read_text().endswith("\n*\n")

            # a picture: staged, and an image part the model sees
            png = discord.attachment(dm, "shot.png", PNG, content_type="image/png")
            pic, rest = _noted(await _said(discord, bot, "what is this?", png))
            assert pic[2] == "image/png" and rest == "what is this? [1 image(s): image/png]"
            assert (workspace / pic[1]).read_bytes() == PNG

            # no text, only a file: answered (the file is what was said); no declared type: by its name
            notes = discord.attachment(dm, "notes.md", b"# todo\n- ship it\n")
            md, rest = _noted(await _said(discord, bot, "", notes))
            assert md[2] == "text/markdown" and rest == ""
            assert (workspace / md[1]).read_bytes() == b"# todo\n- ship it\n"

            # a voice message (flags 8192, no text): audio/ogg as OpenClaw types it
            voice = b"OggS" + b"\x00\xff" * 5000
            said, rest = _noted(
                await _answer(
                    discord, bot, discord.voice_message(bot, channel_id=dm, author="42", data=voice)
                )
            )
            assert said[2] == "audio/ogg" and said[1].endswith("/input-voice-message.ogg") and rest == ""
            assert (workspace / said[1]).read_bytes() == voice
            (spoken,) = [a.id for a in discord.attachments.values() if a.filename == "voice-message.ogg"]

            # two files in one message: OpenClaw's count line, then one line each, in order
            a = discord.attachment(dm, "a.txt", b"first", content_type="text/plain; charset=utf-8")
            b = discord.attachment(dm, "a.txt", b"second", content_type="text/plain; charset=utf-8")
            lines = (await _said(discord, bot, "both", a, b)).removeprefix("echo: ").split("\n")
            assert lines[0] == "[media attached: 2 files]" and lines[3] == "both"
            paths = [
                re.fullmatch(r"\[media attached \d/2: (\S+) \(text/plain\) \"a.txt\"\]", x)
                for x in lines[1:3]
            ]
            assert all(paths) and [(workspace / p[1]).read_bytes() for p in paths if p] == [
                b"first",
                b"second",
            ]

            # each from the CDN URL (signed query kept), never the media proxy, never with the token
            fetched = [r.attachment_id for r in discord.cdn_requests]
            assert fetched == [pdf["id"], png["id"], notes["id"], spoken, a["id"], b["id"]]
            assert all(
                r.path.startswith("/cdn/attachments/") and "hm=" in r.query for r in discord.cdn_requests
            )
            assert all("authorization" not in r.headers for r in discord.cdn_requests)
            assert not any(TOKEN in v for r in discord.cdn_requests for v in r.headers.values())


async def test_too_large_refused_and_unadmitted_files_are_named_or_never_fetched(
    nats_url: str, tmp_path: Path
) -> None:
    async with _fake() as discord:
        bot = discord.add_bot(TOKEN)
        config = _config(discord, mediaMaxMb=1)
        async with run_gateway(nats_url, config, tmp_path, services=_ALL) as gw:
            await _ready(gw, discord, bot)
            counters = gw.service("ingress").ctx.counters
            # a stranger's DM (dmPolicy allowlist) and an unmentioned guild message: refused by
            # the policy before any download
            stranger = discord.attachment(
                discord.dm_channel("77"), "s.txt", b"secret", content_type="text/plain"
            )
            await discord.direct_message(bot, user="77", content="", attachments=[stranger])
            chatter = discord.attachment(GENERAL, "c.png", PNG, content_type="image/png")
            await discord.message(bot, channel_id=GENERAL, author="42", content="", attachments=[chatter])
            await wait_until(lambda: counters["channel_denied"] == 2, message="both refused")

            dm = discord.dm_channel("42")
            # larger than mediaMaxMb by what Discord says: named, never asked for
            big = discord.attachment(dm, "big.bin", b"x" * 2_000_000)
            too_large = "[a file was sent; it is larger than the 1048576 bytes taken in]"
            assert await _said(discord, bot, "", big) == f"echo: {too_large}"
            # the CDN refuses (403, 500): not received, the text still answered
            refused = discord.attachment(dm, "r.pdf", PDF[:1000], content_type="application/pdf")
            discord.fail_download(refused, 403)
            assert await _said(discord, bot, "look at this", refused) == (
                "echo: look at this\n[a file was sent; it could not be received]"
            )
            broken = discord.attachment(dm, "v.mp4", b"\x00" * 100, content_type="video/mp4")
            discord.fail_download(broken, 500)
            assert await _said(discord, bot, "and this", broken) == (
                "echo: and this\n[a video was sent; it could not be received]"
            )
            # said to be small, streamed larger than mediaMaxMb: cut off, named as too large
            liar = discord.attachment(dm, "l.bin", b"y" * 2_000_000, size=1000)
            discord.chunked(liar)
            assert await _said(discord, bot, "", liar) == (
                "echo: [a file was sent; it is larger than the 1048576 bytes taken in]"
            )

            assert discord.downloads(stranger) == [] and discord.downloads(chatter) == []
            assert discord.downloads(big) == []
            assert [len(discord.downloads(a)) for a in (refused, broken, liar)] == [1, 1, 1]
            assert counters["media_too_large"] == 2 and counters["media_failed"] == 2
            assert len(bot.sent) == 4  # neither refused message was answered


async def test_the_cdn_client_stops_past_the_limit_and_fetches_only_allowed_urls() -> None:
    async with _fake() as discord:
        cdn = Cdn(discord.api_base)
        try:
            att = discord.attachment(GENERAL, "a.bin", b"z" * 300_000)
            assert await cdn.download(att["url"], 300_000) == b"z" * 300_000
            # a Content-Length over the limit: refused before the body
            with pytest.raises(MediaError, match="at most 1000"):
                await cdn.download(att["url"], 1000)
            # no length said: the body is read up to the limit and no further
            discord.chunked(att)
            with pytest.raises(MediaError, match="more than 1000 bytes"):
                await cdn.download(att["url"], 1000)
            # an unsigned URL or an unknown file: Discord's 404
            with pytest.raises(MediaError, match="HTTP 404"):
                await cdn.download(att["url"].split("?")[0], 1_000_000)
            # neither Discord's CDN nor the REST origin: never asked
            asked = len(discord.cdn_requests)
            other_port = att["url"].replace(discord.origin, "http://127.0.0.1:9")
            for url in (other_port, "http://169.254.169.254/latest", "file:///etc/passwd"):
                with pytest.raises(MediaError, match="URL refused"):
                    await cdn.download(url, 1_000_000)
            assert len(discord.cdn_requests) == asked
        finally:
            await cdn.close()
