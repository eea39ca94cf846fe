"""OpenClaw's chat commands end to end (issue 12 §2, 13, 14): `/stop` ends a running turn at
once and the session's next message runs; `/new` and `/reset` start a new session id and the
model no longer sees the old context (`/reset <text>` goes on with the text); `/status` answers
without the model. Over the HTTP API and over Telegram (the fake Bot API). Real nats-server;
the model is the scripted fake, a `Gate` keeping a turn running until the test lets it go."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from nats.aio.client import Client

from clawmesh.wire import TurnError, TurnEvent, TurnStarted, decode
from tests.fakes.models import FakeModelServer, Gate, Text
from tests.fakes.telegram import FakeTelegram
from tests.fixtures.gateway import Gateway, run_gateway, wait_until

TOKEN = "7001:test-token"
PEER = {"kind": "direct", "id": "me"}


def _config(fake: FakeModelServer, tmp_path: Path, **extra: Any) -> dict[str, Any]:
    return {
        "agents": {
            "list": [{"id": "main", "default": True, "model": "openai/m", "workspace": str(tmp_path / "ws")}]
        },
        "models": {"providers": {"openai": {"baseUrl": fake.base_url + "/v1", "apiKey": "sk-test"}}},
        **extra,
    }


@pytest.fixture
async def fake() -> AsyncIterator[FakeModelServer]:
    async with FakeModelServer() as server:
        yield server


@pytest.fixture
async def events(nc: Client) -> list[TurnEvent]:
    seen: list[TurnEvent] = []

    async def on(msg: Any) -> None:
        seen.append(decode(msg.data, TurnEvent, msg.headers))

    await nc.subscribe("cm.ev.>", cb=on)
    return seen


async def _ask(gw: Gateway, text: str) -> str:
    """Send `text` and wait for its reply (the HTTP API's `wait`)."""
    async with gw.client() as http:
        r = await http.post("/v1/messages?wait=60", json={"text": text, "peer": PEER})
        assert r.status_code == 200, r.text
        reply: str = r.json()["text"]
        return reply


async def _send(gw: Gateway, text: str) -> str:
    async with gw.client() as http:
        r = await http.post("/v1/messages", json={"text": text, "peer": PEER})
        assert r.status_code == 202, r.text
        turn_id: str = r.json()["turnId"]
        return turn_id


def _status(text: str) -> dict[str, str]:
    """`/status` lines as {label: value}."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        label, _, value = line.partition(": ")
        out[label.split(" ", 1)[-1]] = value
    return out


def _said(fake: FakeModelServer) -> list[str]:
    """Everything the model was shown, one string per request."""
    return [json.dumps(r.messages, ensure_ascii=False) for r in fake.requests]


async def test_stop_ends_a_running_turn_at_once_and_the_next_message_runs(
    fake: FakeModelServer, events: list[TurnEvent], nats_url: str, tmp_path: Path
) -> None:
    never = asyncio.Event()  # the first model call would never end by itself
    fake.script("m", Gate(never), Text("back again"))
    async with run_gateway(nats_url, _config(fake, tmp_path), tmp_path) as gw:
        long_turn = await _send(gw, "think for ever")
        await wait_until(
            lambda: any(isinstance(e, TurnStarted) and e.turn_id == long_turn for e in events),
            timeout=60,
            message="the long turn started",
        )
        assert await _ask(gw, "/stop") == "⚙️ Agent was aborted."
        ended = await wait_until(
            lambda: next((e for e in events if isinstance(e, TurnError) and e.turn_id == long_turn), None),
            timeout=60,
            message="the long turn ended",
        )
        assert ended.code == "TURN_STOPPED"
        assert await _ask(gw, "next please") == "back again"
        assert not any("/stop" in said for said in _said(fake))
        assert len(fake.requests) == 2


async def test_new_and_reset_start_a_new_session_the_model_no_longer_sees_the_old_one(
    fake: FakeModelServer, nats_url: str, tmp_path: Path
) -> None:
    fake.script("m", Text("noted: apple"), Text("a fresh start"), Text("still fresh"))
    async with run_gateway(nats_url, _config(fake, tmp_path), tmp_path) as gw:
        assert await _ask(gw, "remember the word apple") == "noted: apple"
        before = _status(await _ask(gw, "/status"))
        assert before["Agent"] == "main · Model: openai/m" and before["Session"] == "agent:main:main"
        assert before["Messages"] == "1"
        assert len(fake.requests) == 1  # /status did not call the model

        assert await _ask(gw, "/new") == "✅ New session started."
        after = _status(await _ask(gw, "/status"))
        assert after["Session id"] != before["Session id"] and after["Messages"] == "0"
        assert await _ask(gw, "what word was it?") == "a fresh start"
        shown = _said(fake)[-1]
        assert "what word was it?" in shown and "apple" not in shown and "/new" not in shown

        # /reset with a text: a new session whose first message is that text
        assert await _ask(gw, "/reset: summarise nothing") == "still fresh"
        shown = _said(fake)[-1]
        assert "summarise nothing" in shown and "what word" not in shown and "/reset" not in shown
        last = _status(await _ask(gw, "/status"))
        assert last["Session id"] not in (before["Session id"], after["Session id"])
        assert last["Messages"] == "1"
        assert len(fake.requests) == 3


def _telegram_config(fake: FakeModelServer, tg: FakeTelegram, tmp_path: Path) -> dict[str, Any]:
    return _config(
        fake,
        tmp_path,
        channels={
            "telegram": {
                "botToken": TOKEN,
                "apiRoot": tg.api_root,
                "dmPolicy": "open",
                "allowFrom": ["*"],
            }
        },
    )


def _command(text: str) -> list[dict[str, Any]]:
    """Telegram's bot_command entity for a message starting with a command."""
    return [{"type": "bot_command", "offset": 0, "length": len(text.split()[0])}]


async def test_telegram_commands_addressed_to_the_bot_stop_reset_and_report(
    fake: FakeModelServer, nats_url: str, tmp_path: Path
) -> None:
    never = asyncio.Event()
    fake.script("m", Gate(never), Text("after the stop"), Text("new here"))
    async with FakeTelegram() as tg:
        bot = tg.add_bot(TOKEN, username="clawbot")
        chat = tg.chat(42, "private")
        async with run_gateway(nats_url, _telegram_config(fake, tg, tmp_path), tmp_path) as gw:
            adapter = gw.service("ingress").channels.adapters["telegram"]["default"]
            await wait_until(
                lambda: adapter.bot is not None and adapter.poller is not None and adapter.poller.polling
            )

            def say(text: str) -> None:
                tg.message(bot, chat, user=42, text=text, entities=_command(text) if text[0] == "/" else None)

            say("a long question")
            await asyncio.wait_for(fake.wait_for_requests(1), 60)
            say("/stop@clawbot")
            await tg.wait_sent(bot, lambda s: s.text == "⚙️ Agent was aborted.")
            say("go on")
            await tg.wait_sent(bot, lambda s: s.text == "after the stop")

            say("/status@clawbot")
            status = _status((await tg.wait_sent(bot, lambda s: "Session id" in s.text))[0].text)
            say("/new@clawbot")
            await tg.wait_sent(bot, lambda s: s.text == "✅ New session started.")
            say("hello again")
            await tg.wait_sent(bot, lambda s: s.text == "new here")
            shown = _said(fake)[-1]
            assert "hello again" in shown and "go on" not in shown and "a long question" not in shown

            say("/status")
            await tg.wait_sent(bot, lambda s: "Session id" in s.text and _status(s.text)["Messages"] == "1")
            statuses = [_status(s.text) for s in bot.sent if "Session id" in s.text]
            assert statuses[0]["Session id"] == status["Session id"] != statuses[-1]["Session id"]
            assert len(fake.requests) == 3  # commands never reached the model
            # the stopped turn was answered once (its error), each command once
            assert sum(s.text == "⚙️ Agent was aborted." for s in bot.sent) == 1
