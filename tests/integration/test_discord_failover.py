"""Two ingress replicas (real processes) share one Discord bot: only one holds the Gateway
(the token's lease); killed (SIGKILL) while messages arrive, the other takes the lease over,
RESUMEs the session the first one saved, and Discord replays what the dead one had not stored.
No message is lost and none is answered twice, though the successor is sent again what the
dead one stored without recording it.

The runner is stopped while the replica dies, so no reply is being sent at that moment (the
delivery's own crash window is Telegram's test's subject: tests/integration/test_telegram_failover.py)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from nats.aio.client import Client

from tests.fakes.discord import FakeDiscord
from tests.fixtures.gateway import ServiceProcess, run_gateway, wait_until

TOKEN = "MTAxODk.failover-discord-token.x2"
FIRST, SECOND = 10, 30


def _config(discord: FakeDiscord) -> dict[str, Any]:
    return {
        "agents": {"defaults": {"model": "echo/x"}, "list": [{"id": "main", "default": True}]},
        "runtime": {"turnLeaseSeconds": 3},
        "channels": {
            "discord": {
                "token": TOKEN,
                "apiBaseUrl": discord.api_base,
                "dmPolicy": "open",
                "allowFrom": ["*"],
            }
        },
    }


async def _stored(nc: Client) -> int:
    info = await nc.jetstream().stream_info("CM_INBOUND")
    return int(info.state.messages)


async def _all_delivered(nc: Client) -> bool:
    info = await nc.jetstream().consumer_info("CM_OUTBOUND", "ingress-out-discord")
    return info.num_pending == 0 and info.num_ack_pending == 0


@pytest.mark.timeout(180)
async def test_the_gateway_fails_over_by_resuming_and_loses_no_message_nor_answers_one_twice(
    nats_url: str, nc: Client, tmp_path: Path
) -> None:
    async with FakeDiscord() as discord:
        bot = discord.add_bot(TOKEN)
        (tmp_path / "r1").mkdir()
        (tmp_path / "r2").mkdir()
        async with run_gateway(nats_url, _config(discord), tmp_path, services=("router",)) as gw:
            a = ServiceProcess("ingress", gw.config_path, nats_url, gw.env, tmp_path / "ingress-a.log")
            b: ServiceProcess | None = None
            try:
                await discord.wait_ready(bot, timeout=60)
                session = bot.session
                assert session is not None
                b = ServiceProcess("ingress", gw.config_path, nats_url, gw.env, tmp_path / "ingress-b.log")
                async with run_gateway(
                    nats_url, _config(discord), tmp_path / "r1", services=("runner",)
                ) as runner:
                    for i in range(FIRST):
                        await discord.direct_message(bot, user=str(1000 + i), content=f"first {i}")
                    await discord.wait_sent(
                        bot, lambda p: p.content.startswith("echo: first"), count=FIRST, timeout=60
                    )
                    await wait_until(lambda: _all_delivered(nc), message="the first replies acked")
                    await runner.stop()
                # B runs too, yet only A ever connected: one Gateway per bot token
                assert len(bot.identifies) == 1 and bot.resumes == []
                for i in range(SECOND):
                    await discord.direct_message(bot, user=str(2000 + i), content=f"second {i}")

                async def storing() -> bool:
                    return await _stored(nc) > FIRST

                await wait_until(storing, interval=0.005, message="A storing the second batch")
                a.kill()  # usually mid-batch; wherever it lands, nothing may be lost or doubled
                await wait_until(lambda: len(bot.resumes) == 1, timeout=60, message="B resuming")
                async with run_gateway(nats_url, _config(discord), tmp_path / "r2", services=("runner",)):
                    await discord.wait_sent(
                        bot, lambda p: p.content.startswith("echo: second"), count=SECOND, timeout=90
                    )
                    await wait_until(lambda: _all_delivered(nc), message="every reply acked")
                    texts = Counter(p.content for p in bot.sent)
                assert {t for t, n in texts.items() if n > 1} == set()
                assert sorted(texts) == sorted(
                    [f"echo: first {i}" for i in range(FIRST)] + [f"echo: second {i}" for i in range(SECOND)]
                )
                # B resumed A's session: no second IDENTIFY, Discord replayed the rest
                assert len(bot.identifies) == 1
                assert bot.resumes[0]["session_id"] == session.id
                assert bot.paths[-1].startswith("/resume")
            finally:
                a.kill()
                if b is not None:
                    b.kill()
