"""DM pairing and the AccessControl facade against a real nats-server: codes, the 1 h expiry,
the 3-pending limit, approval, replicas racing on one account, denial events."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import msgspec
from nats.aio.client import Client

from clawmesh.bus import Layout, provision
from clawmesh.channels import (
    CODE_ALPHABET,
    AccessControl,
    AccessDenied,
    AccessRequest,
    Admit,
    Command,
    Deny,
    PairingChallenge,
    PairingStore,
)
from clawmesh.checks import default_checks
from clawmesh.config import parse_config


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def dm(sender: str, text: str = "hi", account: str = "default") -> AccessRequest:
    return AccessRequest(channel="telegram", account=account, chat_type="direct", sender_id=sender, text=text)


async def buckets(nc: Client) -> Any:
    return await provision(nc.jetstream(), Layout())


CONFIG = parse_config(
    {"channels": {"telegram": {"botToken": "1:x", "allowFrom": ["1"]}}}, checks=default_checks()
)


async def test_pairing_flow_code_expiry_limit_and_approval(nc: Client) -> None:
    kv = (await buckets(nc))["pairing"]
    clock = Clock()
    control = AccessControl(CONFIG, kv, clock=clock)

    assert await control.check(dm("1")) == Admit()  # listed in allowFrom: no KV involved
    first = await control.check(dm("42", "hello"))
    assert isinstance(first, PairingChallenge)
    assert re.fullmatch(f"[{CODE_ALPHABET}]{{8}}", first.code)
    assert not set(first.code) & set("0O1I")
    assert "Your Telegram user id: 42" in first.reply
    assert f"clawmesh pairing approve telegram {first.code}" in first.reply
    # the same sender again: no second code, no reply
    assert await control.check(dm("42", "again?")) == Deny("pairing-pending")
    # two more senders fill the account's 3 slots; the fourth gets nothing
    for sender in ("43", "44"):
        assert isinstance(await control.check(dm(sender)), PairingChallenge)
    assert await control.check(dm("45")) == Deny("pairing-pending")
    store = control.store
    assert store is not None
    assert sorted(r.id for r in await store.pending("telegram", "default")) == ["42", "43", "44"]

    # approval admits 42 (and frees its slot); the code works once
    approved = await store.approve("telegram", first.code.lower())
    assert approved is not None and approved.id == "42"
    assert await store.approve("telegram", first.code) is None
    assert await control.check(dm("42", "/status")) == Command("status")
    assert isinstance(await control.check(dm("45")), PairingChallenge)

    # an hour after creation the requests expire (messages in between did not extend them)
    clock.now += 3600
    assert await store.pending("telegram", "default") == []
    again = await control.check(dm("43"))
    assert isinstance(again, PairingChallenge)
    assert control.counters["pairing.challenged"] == 5
    assert control.counters["denied.pairing-pending"] == 2


async def test_limits_are_per_account_and_approvals_do_not_cross_accounts(nc: Client) -> None:
    kv = (await buckets(nc))["pairing"]
    config = parse_config(
        {"channels": {"telegram": {"accounts": {"a": {"botToken": "1:a"}, "b": {"botToken": "2:b"}}}}},
        checks=default_checks(),
    )
    control = AccessControl(config, kv)
    codes = {}
    for account in ("a", "b"):
        for sender in ("1", "2", "3"):
            decision = await control.check(dm(sender, account=account))
            assert isinstance(decision, PairingChallenge), (account, sender, decision)
            codes[account, sender] = decision.code
    store = PairingStore(kv)
    assert await store.accounts("telegram") == ["a", "b"]
    # approve without naming the account: the code's own account is found
    approved = await store.approve("telegram", codes["b", "2"])
    assert approved is not None and approved.account == "b"
    assert isinstance(await control.check(dm("2", account="b")), Admit)
    assert await control.check(dm("2", account="a")) == Deny("pairing-pending")


async def test_replicas_racing_never_exceed_three_pending(nc: Client) -> None:
    kv = (await buckets(nc))["pairing"]
    replicas = [AccessControl(CONFIG, kv) for _ in range(4)]
    decisions = await asyncio.gather(*(replicas[i % 4].check(dm(str(100 + i))) for i in range(12)))
    challenged = [d for d in decisions if isinstance(d, PairingChallenge)]
    assert len(challenged) == 3
    assert len({d.code for d in challenged}) == 3
    pending = await PairingStore(kv).pending("telegram", "default")
    assert sorted(r.code for r in pending) == sorted(d.code for d in challenged)


async def test_denials_are_published_without_the_text(nc: Client) -> None:
    kv = (await buckets(nc))["pairing"]
    got: asyncio.Queue[Any] = asyncio.Queue()

    async def on(msg: Any) -> None:
        await got.put(msg)

    await nc.subscribe("cm.access.denied.>", cb=on)
    config = parse_config({"channels": {"telegram": {"dmPolicy": "disabled"}}}, checks=default_checks())
    control = AccessControl(config, kv, publish=nc.publish)
    assert await control.check(dm("42", "secret words")) == Deny("dm-disabled")
    msg = await asyncio.wait_for(got.get(), timeout=10)
    assert msg.subject == "cm.access.denied.telegram.default"
    assert b"secret" not in msg.data
    event = msgspec.json.decode(msg.data, type=AccessDenied)
    assert (event.sender_id, event.reason, event.chat_type) == ("42", "dm-disabled", "direct")
    assert control.counters["denied.dm-disabled"] == 1


async def test_without_a_bucket_pairing_fails_closed() -> None:
    control = AccessControl(CONFIG, None)
    assert await control.check(dm("42")) == Deny("pairing-unavailable")
    assert await control.check(dm("1")) == Admit()


async def test_group_mentions_use_the_patterns_of_the_agent_the_group_routes_to() -> None:
    config = parse_config(
        {
            "agents": {
                "list": [
                    {"id": "main", "default": True, "groupChat": {"mentionPatterns": ["mainbot"]}},
                    {"id": "ops", "groupChat": {"mentionPatterns": ["opsbot"]}},
                ]
            },
            "bindings": [
                {"agentId": "ops", "match": {"channel": "telegram", "peer": {"kind": "group", "id": "-100"}}}
            ],
            "channels": {"telegram": {"botToken": "1:x", "groupPolicy": "open"}},
        },
        checks=default_checks(),
    )
    control = AccessControl(config, None)

    def group(chat: str, text: str) -> AccessRequest:
        return AccessRequest(channel="telegram", chat_type="group", sender_id="7", group_id=chat, text=text)

    assert await control.check(group("-100", "opsbot, status?")) == Admit(True)
    assert await control.check(group("-100", "mainbot, status?")) == Deny("mention-required")
    assert await control.check(group("-200", "mainbot, status?")) == Admit(True)
    assert control.counters["denied.mention-required"] == 1
