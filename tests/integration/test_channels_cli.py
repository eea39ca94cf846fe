"""`clawmesh pairing` and `clawmesh channels` against a real nats-server and the fake Bot API:
listing and approving pairing codes, status with and without ingress, the getMe probe, and
add/remove writing OpenClaw's config shape without ever printing a token."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from nats.aio.client import Client
from typer.testing import CliRunner

from clawmesh.bus import Layout, provision
from clawmesh.channels import AccessControl, AccessRequest, PairingChallenge
from clawmesh.checks import default_checks
from clawmesh.cli import app as cli_app
from clawmesh.config import load_config
from tests.fakes.discord import FakeDiscord
from tests.fakes.telegram import FakeTelegram

TOKEN = "123456:secret-token-value"


def cli(config: Path, *args: str, env: dict[str, str] | None = None) -> Any:
    return CliRunner().invoke(cli_app, ["--config", str(config), *args], env=env)


def error(res: Any) -> tuple[int, str]:
    """Exit code and message of a refused command (`clawmesh` prints a CliError as one line)."""
    code = getattr(res.exception, "code", res.exit_code)
    return code, f"{res.stderr}{res.exception or ''}"


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "clawmesh.json"
    path.write_text(json.dumps({"channels": {"telegram": {"botToken": TOKEN}}}))
    return path


async def test_pairing_list_and_approve_over_nats(nc: Client, nats_url: str, config_file: Path) -> None:
    kv = (await provision(nc.jetstream(), Layout()))["pairing"]
    control = AccessControl(load_config(str(config_file), checks=default_checks()), kv)
    request = AccessRequest(channel="telegram", chat_type="direct", sender_id="4242", sender_username="ann")
    challenge = await control.check(request)
    assert isinstance(challenge, PairingChallenge)

    listed = await asyncio.to_thread(cli, config_file, "pairing", "list", "--json", "--nats-url", nats_url)
    assert listed.exit_code == 0, (listed.output, listed.exception)
    data = json.loads(listed.stdout)
    assert data["channel"] == "telegram"
    [entry] = data["requests"]
    assert (entry["id"], entry["code"], entry["meta"]) == (
        "4242",
        challenge.code,
        {"username": "ann", "accountId": "default"},
    )
    assert entry["createdAt"].endswith("Z")

    text = await asyncio.to_thread(cli, config_file, "pairing", "list", "telegram", "--nats-url", nats_url)
    assert challenge.code in text.stdout and "4242" in text.stdout

    wrong = await asyncio.to_thread(
        cli, config_file, "pairing", "approve", "telegram", "ZZZZZZZZ", "--nats-url", nats_url
    )
    assert error(wrong)[0] == 1
    assert 'no pending pairing request found for code "ZZZZZZZZ"' in error(wrong)[1]

    ok = await asyncio.to_thread(
        cli,
        config_file,
        "pairing",
        "approve",
        "telegram",
        challenge.code.lower(),
        "--notify",
        "--nats-url",
        nats_url,
    )
    assert ok.exit_code == 0, (ok.output, ok.exception)
    assert "Approved telegram sender 4242" in ok.stdout
    # --notify: a reply to the sender in CM_OUTBOUND, for the account's adapter to send
    stored = await nc.jetstream().get_last_msg("CM_OUTBOUND", "cm.out.telegram.default")
    notice = json.loads(stored.data or b"{}")
    assert notice["peer"] == {"kind": "direct", "id": "4242"}
    assert notice["text"] == "✅ clawmesh access approved. Send a message to start chatting."
    assert (await control.check(request)).__class__.__name__ == "Admit"
    empty = await asyncio.to_thread(cli, config_file, "pairing", "list", "--nats-url", nats_url)
    assert "No pending telegram pairing requests." in empty.stdout


def test_pairing_refuses_an_unconfigured_channel_and_a_blank_account(config_file: Path) -> None:
    res = cli(config_file, "pairing", "list", "slack")
    assert error(res)[0] == 2 and "channel 'slack' is not configured (configured: telegram)" in error(res)[1]
    res = cli(config_file, "pairing", "list", "--account", " ")
    assert error(res)[0] == 2 and "--account must not be blank" in error(res)[1]


async def test_status_probes_a_discord_bot_at_its_rest_base(tmp_path: Path) -> None:
    async with FakeDiscord() as discord:
        discord.add_bot("discord-secret-token", user_id="900", username="probed_discord")
        config = tmp_path / "c.json"
        config.write_text(
            json.dumps(
                {
                    "channels": {
                        "discord": {
                            "apiBaseUrl": discord.api_base,
                            "accounts": {
                                "default": {"token": "discord-secret-token"},
                                "bad": {"token": "discord-wrong-token"},
                            },
                        }
                    }
                }
            )
        )
        dead = "nats://127.0.0.1:9"
        res = await asyncio.to_thread(
            cli, config, "channels", "status", "--probe", "--json", "--nats-url", dead
        )
        assert res.exit_code == 0, (res.output, res.exception)
        section = json.loads(res.stdout)["channels"]["discord"]
        accounts = {a["accountId"]: a for a in section["accounts"]}
        assert section["adapter"] is True
        assert accounts["default"]["probe"] == {
            "ok": True,
            "bot": {"id": "900", "username": "probed_discord"},
            "apiBaseUrl": discord.api_base,
        }
        assert accounts["bad"]["probe"]["ok"] is False
        assert "HTTP 401: 401: Unauthorized" in accounts["bad"]["probe"]["error"]
        assert "discord-secret-token" not in res.stdout and "discord-wrong-token" not in res.stdout


async def test_status_is_config_only_without_ingress_and_probes_getme(tmp_path: Path) -> None:
    async with FakeTelegram() as tg:
        tg.add_bot(TOKEN, username="probed_bot")
        config = tmp_path / "c.json"
        config.write_text(
            json.dumps(
                {
                    "channels": {
                        "telegram": {
                            "apiRoot": tg.api_root,
                            "accounts": {"default": {"botToken": TOKEN}, "bad": {"botToken": "9:wrong"}},
                        },
                        "slack": {"botToken": "xoxb-x", "appToken": "xapp-x"},
                    }
                }
            )
        )
        dead = "nats://127.0.0.1:9"  # nothing listens: ingress unreachable
        res = await asyncio.to_thread(
            cli, config, "channels", "status", "--probe", "--json", "--nats-url", dead
        )
        assert res.exit_code == 0, (res.output, res.exception)
        data = json.loads(res.stdout)
        assert data["configOnly"] is True and data["ingressReachable"] is False
        accounts = {a["accountId"]: a for a in data["channels"]["telegram"]["accounts"]}
        assert accounts["default"]["probe"] == {
            "ok": True,
            "bot": {"id": 123456, "username": "probed_bot"},
            "apiRoot": tg.api_root,
        }
        assert accounts["bad"]["probe"]["ok"] is False
        assert "HTTP 401: Unauthorized" in accounts["bad"]["probe"]["error"]
        assert data["channels"]["slack"]["accounts"][0]["probe"]["error"].startswith("probe not available")
        text = await asyncio.to_thread(cli, config, "channels", "status", "--probe", "--nats-url", dead)
        assert "ingress unreachable: config-only summary" in text.stdout
        assert "probe ok (@probed_bot)" in text.stdout
        for out in (res.stdout, text.stdout, text.stderr):
            assert TOKEN not in out and "wrong" not in out and "xoxb-x" not in out


async def test_status_reports_what_running_ingress_instances_say(
    nc: Client, nats_url: str, tmp_path: Path
) -> None:
    async def answer(msg: Any) -> None:
        body = {
            "service": "ingress",
            "instance": "i-1",
            "channels": {
                "accounts": [
                    {
                        "channel": "telegram",
                        "account": "default",
                        "mode": "polling",
                        "ready": True,
                        "bot": "clawbot",
                    }
                ],
                "access": {"admitted": 3, "denied": 2},
            },
        }
        await msg.respond(json.dumps(body).encode())

    await nc.subscribe("cm.ctl.status.ingress", cb=answer)
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"channels": {"telegram": {"botToken": TOKEN}}}))
    res = await asyncio.to_thread(cli, config, "channels", "status", "--json", "--nats-url", nats_url)
    assert res.exit_code == 0, (res.output, res.exception)
    data = json.loads(res.stdout)
    assert data["ingressReachable"] is True and data["access"] == {"admitted": 3, "denied": 2}
    [account] = data["channels"]["telegram"]["accounts"]
    assert account["running"] == [{"instance": "i-1", "mode": "polling", "ready": True, "bot": "clawbot"}]
    text = await asyncio.to_thread(cli, config, "channels", "status", "--nats-url", nats_url)
    assert "running on i-1" in text.stdout and "@clawbot (polling)" in text.stdout


def test_add_remove_write_openclaws_shape_and_never_print_tokens(tmp_path: Path) -> None:
    config = tmp_path / "c.json"
    config.write_text("{}")

    def channels() -> Any:
        return json.loads(config.read_text()).get("channels")

    res = cli(config, "channels", "add", "--channel", "telegram", "--token", TOKEN)
    assert res.exit_code == 0, (res.output, res.exception)
    assert res.stdout.strip() == 'Added Telegram account "default".'
    assert channels() == {"telegram": {"enabled": True, "botToken": TOKEN}}
    # a second account moves the channel's token into accounts.default (as OpenClaw does)
    token_file = tmp_path / "tok"
    token_file.write_text("7:file-token\n")
    res = cli(
        config,
        "channels",
        "add",
        "telegram",
        "--account",
        "w2",
        "--token-file",
        str(token_file),
        "--name",
        "W two",
    )
    assert res.exit_code == 0, (res.output, res.exception)
    assert channels() == {
        "telegram": {
            "enabled": True,
            "accounts": {
                "default": {"botToken": TOKEN},
                "w2": {"enabled": True, "tokenFile": str(token_file), "name": "W two"},
            },
        }
    }
    listed = cli(config, "channels", "list")
    assert "- Telegram default: adapter, configured, enabled, token=config" in listed.stdout
    assert "- Telegram w2: adapter, configured, enabled, token=file" in listed.stdout
    assert TOKEN not in listed.stdout + res.stdout
    # --use-env: the default account only, and the variable must be set
    res = cli(
        config,
        "channels",
        "add",
        "--channel",
        "telegram",
        "--account",
        "w3",
        "--use-env",
        env={"TELEGRAM_BOT_TOKEN": "1:x"},
    )
    assert (
        error(res)[0] == 2 and "TELEGRAM_BOT_TOKEN can only be used for the default account." in error(res)[1]
    )
    res = cli(config, "channels", "add", "--channel", "discord", "--use-env", env={"DISCORD_BOT_TOKEN": ""})
    assert error(res)[0] == 2 and "DISCORD_BOT_TOKEN is not set" in error(res)[1]
    res = cli(config, "channels", "add", "--channel", "discord", "--use-env", env={"DISCORD_BOT_TOKEN": "d"})
    assert res.exit_code == 0 and channels()["discord"] == {"enabled": True}
    res = cli(config, "channels", "add", "--channel", "telegram", "--bot-token", "x")
    assert error(res)[0] == 2 and "--bot-token is not a Telegram option" in error(res)[1]
    # remove disables; --delete removes the entries
    res = cli(config, "channels", "remove", "--channel", "telegram", "--account", "w2")
    assert res.exit_code == 0 and res.stdout.strip() == 'Disabled Telegram account "w2".'
    assert channels()["telegram"]["accounts"]["w2"]["enabled"] is False
    res = cli(config, "channels", "remove", "--channel", "telegram", "--account", "w2", "--delete")
    assert channels()["telegram"]["accounts"] == {"default": {"botToken": TOKEN}}
    res = cli(config, "channels", "remove", "--channel", "discord", "--delete")
    assert res.stdout.strip() == 'Deleted Discord account "default".'
    assert "discord" not in channels()
    res = cli(config, "channels", "remove", "--channel", "telegram", "--account", "nope")
    assert error(res)[0] == 2 and 'Telegram has no account "nope"' in error(res)[1]
