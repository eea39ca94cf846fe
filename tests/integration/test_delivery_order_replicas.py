"""Two ingress replicas (real processes) share a channel's replies: one chat's replies still go
out in the order the turns answered, even when the first waits out a 429 `retry_after` while
the next is ready. One replica sends a channel's replies at a time (the lease
`delivery.<channel>`); the other takes over when it stops."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from nats.aio.client import Client

from tests.fakes.telegram import Failure, FakeTelegram
from tests.fixtures.gateway import ServiceProcess, run_gateway, wait_until

TOKEN = "7003:order-token"
CHATS = 4


def _config(tg: FakeTelegram) -> dict[str, Any]:
    return {
        "agents": {"defaults": {"model": "echo/x"}, "list": [{"id": "main", "default": True}]},
        "runtime": {"turnLeaseSeconds": 3},
        "session": {"dmScope": "per-peer"},
        "channels": {
            "telegram": {"botToken": TOKEN, "apiRoot": tg.api_root, "dmPolicy": "open", "allowFrom": ["*"]}
        },
    }


async def _delivery_holder(nc: Client) -> bytes | None:
    kv = await nc.jetstream().key_value("cm_leases")
    try:
        return (await kv.get("delivery.telegram")).value
    except Exception:
        return None


@pytest.mark.timeout(180)
async def test_a_chats_replies_keep_their_order_across_replicas(
    nats_url: str, nc: Client, tmp_path: Path
) -> None:
    async with FakeTelegram() as tg:
        bot = tg.add_bot(TOKEN)
        async with run_gateway(nats_url, _config(tg), tmp_path, services=("router", "runner")) as gw:
            replicas = [
                ServiceProcess("ingress", gw.config_path, nats_url, gw.env, tmp_path / f"ingress-{i}.log")
                for i in range(2)
            ]
            try:
                await wait_until(lambda: any(m == "getupdates" for m, _ in bot.calls), message="a poller")
                await wait_until(lambda: _delivery_holder(nc), message="a delivery lease holder")
                # every chat's first reply waits out a 429 while its second is answered
                for _ in range(CHATS):
                    tg.fail_next(
                        bot, "sendMessage", Failure(429, "Too Many Requests: retry after 3", retry_after=3)
                    )
                for chat in range(CHATS):
                    tg.private_message(bot, user=500 + chat, text="first")
                await wait_until(
                    lambda: sum(1 for m, _ in bot.calls if m == "sendmessage") >= CHATS,
                    message="the first replies refused with 429",
                )
                # The scenario, not a synchronisation: the first replies have been waiting for
                # longer than a pull request lasts (0.5 s), so the replicas' open requests have
                # taken turns at the head of JetStream's queue when the second replies come.
                # Before one replica held the channel's delivery, this sent every run at least
                # one chat's "second" before its "first".
                await asyncio.sleep(1.5)
                for chat in range(CHATS):
                    tg.private_message(bot, user=500 + chat, text="second")
                await tg.wait_sent(bot, lambda s: s.text == "echo: second", count=CHATS, timeout=60)
                await tg.wait_sent(bot, lambda s: s.text == "echo: first", count=CHATS, timeout=60)
                for chat in range(CHATS):
                    texts = [s.text for s in bot.sent if s.chat_id == 500 + chat]
                    assert texts == ["echo: first", "echo: second"], (chat, texts)

                # the holder stops: the other replica takes the lease over and sends what comes next
                sending = [p for p in replicas if "this replica sends the replies" in p.log.read_text()]
                assert len(sending) == 1, [p.log.read_text()[-2000:] for p in replicas]
                assert await asyncio.to_thread(sending[0].terminate) == 0
                tg.private_message(bot, user=500, text="third")
                await tg.wait_sent(bot, lambda s: s.text == "echo: third", timeout=60)
                assert [s.text for s in bot.sent if s.chat_id == 500] == [
                    "echo: first",
                    "echo: second",
                    "echo: third",
                ]
            finally:
                for p in replicas:
                    p.kill()
