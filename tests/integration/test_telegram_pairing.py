"""DM pairing end to end: an unknown Telegram sender gets a code from the running gateway, the
operator approves it with `clawmesh pairing approve --notify`, the sender is told and is
answered from then on (fake Bot API, real nats-server)."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

from nats.aio.client import Client
from typer.testing import CliRunner

from clawmesh.cli import app as cli_app
from tests.fakes.telegram import FakeTelegram
from tests.fixtures.gateway import run_gateway, wait_until

TOKEN = "7002:pairing-token"


async def test_a_code_approved_from_the_cli_lets_the_sender_in(
    nats_url: str, nc: Client, tmp_path: Path
) -> None:
    async with FakeTelegram() as tg:
        bot = tg.add_bot(TOKEN)
        config: dict[str, Any] = {
            "agents": {"defaults": {"model": "echo/x"}, "list": [{"id": "main", "default": True}]},
            "channels": {"telegram": {"botToken": TOKEN, "apiRoot": tg.api_root, "dmPolicy": "pairing"}},
        }
        config_file = tmp_path / "clawmesh.json"
        config_file.write_text(json.dumps(config))
        async with run_gateway(nats_url, config, tmp_path) as gw:
            adapter = gw.service("ingress").channels.adapters["telegram"]["default"]
            await wait_until(
                lambda: adapter.bot is not None and (adapter.poller is None or adapter.poller.polling)
            )
            tg.private_message(bot, user=77, text="hello?")
            challenge = (await tg.wait_sent(bot, lambda s: s.chat_id == 77))[0]
            found = re.search(r"```\n([A-Z2-9]{8})\n```", challenge.text)
            assert found is not None, challenge.text
            code = found.group(1)
            assert f"clawmesh pairing approve telegram {code}" in challenge.text

            def approve() -> Any:
                args = ["--config", str(config_file), "pairing", "approve", "telegram", code, "--notify"]
                return CliRunner().invoke(cli_app, [*args, "--nats-url", nats_url])

            result = await asyncio.to_thread(approve)
            assert result.exit_code == 0, (result.output, result.exception)
            await tg.wait_sent(
                bot, lambda s: s.chat_id == 77 and s.text.startswith("✅ clawmesh access approved")
            )
            tg.private_message(bot, user=77, text="now?")
            await tg.wait_sent(bot, lambda s: s.text == "echo: now?")
            to_sender = [s.text for s in bot.sent if s.chat_id == 77]
            assert to_sender == [
                challenge.text,
                "✅ clawmesh access approved. Send a message to start chatting.",
                "echo: now?",
            ]
