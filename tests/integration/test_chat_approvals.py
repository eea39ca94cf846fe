"""Exec approvals answered from the chat, end to end (real nats-server, ingress, router, runner,
node-agent; the fake Bot API): the prompt reaches the chat the turn came from, an approver's
`/approve` decides it while the turn waits, anyone else is told they may not, and a chat whose
account lists no approvers is never asked."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.models import FakeModelServer, Text, ToolCall
from tests.fakes.telegram import Bot, FakeTelegram, Sent
from tests.fixtures.gateway import Gateway, run_gateway, wait_until

TOKEN = "7001:test-token"
SERVICES = ("ingress", "router", "runner", "node-agent")
APPROVER, OTHER = 42, 43


@pytest.fixture
async def model() -> AsyncIterator[FakeModelServer]:
    async with FakeModelServer() as server:
        yield server


def _config(model: FakeModelServer, tg: FakeTelegram, tmp_path: Path, **telegram: Any) -> dict[str, Any]:
    workspace = tmp_path / "ws"
    workspace.mkdir(exist_ok=True)
    workspace.chmod(0o777)  # host commands may run as `nobody` (tests run as root)
    return {
        "agents": {
            "defaults": {"model": "openai/fake-model"},
            "list": [{"id": "main", "default": True, "workspace": str(workspace)}],
        },
        "models": {"providers": {"openai": {"baseUrl": model.base_url + "/v1", "apiKey": "sk-test"}}},
        "nodes": {"heartbeatSeconds": 0.5},
        "tools": {"exec": {"mode": "ask"}},
        "session": {"dmScope": "per-peer"},
        "channels": {
            "telegram": {
                "botToken": TOKEN,
                "apiRoot": tg.api_root,
                "dmPolicy": "open",
                "allowFrom": ["*"],
                **telegram,
            }
        },
    }


async def _ready(gw: Gateway) -> None:
    adapter = gw.service("ingress").channels.adapters["telegram"]["default"]
    await wait_until(lambda: adapter.bot is not None and (adapter.poller is None or adapter.poller.polling))


async def _prompt(tg: FakeTelegram, bot: Bot, chat: int) -> tuple[Sent, str]:
    [prompt] = await tg.wait_sent(
        bot, lambda s: s.chat_id == chat and "Approval required." in s.text, timeout=60
    )
    found = re.search(r"Full id: `([0-9a-f]+)`", prompt.text)
    assert found is not None, prompt.text
    return prompt, found.group(1)


async def test_an_approver_allows_from_the_chat_and_the_command_runs_once(
    model: FakeModelServer, nats_url: str, tmp_path: Path
) -> None:
    model.script(ToolCall("exec", {"command": "echo ran >> count.txt"}), Text("done"))
    async with FakeTelegram() as tg:
        bot = tg.add_bot(TOKEN)
        config = _config(model, tg, tmp_path, execApprovals={"approvers": [str(APPROVER)]})
        async with run_gateway(nats_url, config, tmp_path, services=SERVICES) as gw:
            await _ready(gw)
            tg.private_message(bot, user=APPROVER, text="append a line")
            prompt, approval_id = await _prompt(tg, bot, APPROVER)
            assert "echo ran >> count.txt" in prompt.text
            assert f"/approve {approval_id} allow-once" in prompt.text
            assert not (tmp_path / "ws" / "count.txt").exists()  # nothing runs before the decision
            approve = tg.private_message(bot, user=APPROVER, text=f"/approve {approval_id} allow-once")
            await tg.wait_sent(bot, lambda s: s.text == "done", timeout=60)
            answer = f"✅ Approval allow-once submitted for {approval_id}."
            assert [s.text for s in bot.sent if s.chat_id == APPROVER] == [prompt.text, answer, "done"]
            # the same /approve delivered again (a new update id) is answered once: the answer is
            # stored under the platform message's id, and a decided request stays decided
            tg.push_update(bot, {"message": approve["message"]})
            tg.private_message(bot, user=APPROVER, text="/approve")
            await tg.wait_sent(bot, lambda s: s.text.startswith("Usage: /approve"))
            assert [s.text for s in bot.sent].count(answer) == 1
            async with gw.client() as http:
                r = await http.get(f"/v1/approvals/{approval_id}")
            assert r.json()["status"] == "allow-once" and r.json()["resolvedBy"] == f"telegram:{APPROVER}"
    assert (tmp_path / "ws" / "count.txt").read_text() == "ran\n"
    # the /approve never reached the model: one call for the tool, one after its result
    assert len(model.requests) == 2


async def test_only_listed_approvers_decide_and_bad_commands_get_openclaws_answers(
    model: FakeModelServer, nats_url: str, tmp_path: Path
) -> None:
    model.script(ToolCall("exec", {"command": "touch made-it"}), Text("refused, fine"))
    async with FakeTelegram() as tg:
        bot = tg.add_bot(TOKEN)
        group = tg.chat(-100300, "supergroup", title="ops")
        config = _config(
            model,
            tg,
            tmp_path,
            execApprovals={"approvers": [str(APPROVER)]},
            groupPolicy="open",
            groups={"*": {"requireMention": True}},
        )
        async with run_gateway(nats_url, config, tmp_path, services=SERVICES) as gw:
            await _ready(gw)
            # asked in the group (mentioned), the prompt lands in the group
            tg.message(bot, group, user=OTHER, text="@clawbot please create the file")
            _, approval_id = await _prompt(tg, bot, -100300)

            def in_group(text: str) -> Any:
                return tg.wait_sent(bot, lambda s: s.chat_id == -100300 and s.text == text, timeout=60)

            # a command needs no mention; a sender who is not an approver cannot decide
            tg.message(bot, group, user=OTHER, text=f"/approve {approval_id} allow-once")
            await in_group("❌ You are not authorized to approve this request.")
            tg.message(bot, group, user=APPROVER, text="/approve")
            await in_group(
                "Usage: /approve <id> <decision> (see the pending approval message for available decisions)"
            )
            tg.message(bot, group, user=APPROVER, text="/approve 0123456789abcdef deny")
            await in_group(
                "❌ Failed to submit approval: no approval request 0123456789abcdef "
                "(unknown, or older than a day)"
            )
            async with gw.client() as http:
                pending = (await http.get(f"/v1/approvals/{approval_id}")).json()
            assert pending["status"] == "pending"
            tg.message(bot, group, user=APPROVER, text=f"/approve@clawbot deny {approval_id}")
            await in_group(f"✅ Approval deny submitted for {approval_id}.")
            await in_group("refused, fine")
    assert not (tmp_path / "ws" / "made-it").exists()
    tool_results = [m for m in model.requests[-1].messages if m["role"] == "tool"]
    assert "denied" in tool_results[0]["content"]


async def test_a_chat_without_approvers_is_not_asked_and_cannot_approve(
    model: FakeModelServer, nats_url: str, tmp_path: Path
) -> None:
    model.script(ToolCall("exec", {"command": "touch by-operator"}), Text("after the operator"))
    async with FakeTelegram() as tg:
        bot = tg.add_bot(TOKEN)
        async with run_gateway(nats_url, _config(model, tg, tmp_path), tmp_path, services=SERVICES) as gw:
            await _ready(gw)
            tg.private_message(bot, user=APPROVER, text="make the file")

            async def pending() -> Any:
                async with gw.client() as http:
                    items = (await http.get("/v1/approvals")).json()["approvals"]
                return items[0] if items else None

            record = await wait_until(pending, timeout=60, message="a pending approval")
            tg.private_message(bot, user=APPROVER, text=f"/approve {record['id']} allow-once")
            await tg.wait_sent(bot, lambda s: s.text == "❌ You are not authorized to approve this request.")
            async with gw.client() as http:
                decided = await http.post(f"/v1/approvals/{record['id']}/approve")
            assert decided.status_code == 200
            await tg.wait_sent(bot, lambda s: s.text == "after the operator", timeout=60)
            # replies to one chat are delivered in order: a prompt would have come before these
            assert not [s for s in bot.sent if "Approval required." in s.text]
    assert (tmp_path / "ws" / "by-operator").exists()
