"""`clawmesh pairing` and `clawmesh channels` against a real nats-server and the fake platforms:
listing and approving pairing codes, status with and without ingress, the live probes (Telegram
getMe, Discord, Slack auth.test and apps.connections.open, the WhatsApp Graph API number), and
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
from tests.fakes.slack import FakeSlack
from tests.fakes.telegram import FakeTelegram
from tests.fakes.whatsapp import FakeWhatsApp

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
    async with FakeTelegram() as tg, FakeSlack(signing_secret="s") as slack:
        tg.add_bot(TOKEN, username="probed_bot")
        slack.add_app("xoxb-x", app_token="xapp-x")
        config = tmp_path / "c.json"
        config.write_text(
            json.dumps(
                {
                    "channels": {
                        "telegram": {
                            "apiRoot": tg.api_root,
                            "accounts": {"default": {"botToken": TOKEN}, "bad": {"botToken": "9:wrong"}},
                        },
                        "slack": {"botToken": "xoxb-x", "appToken": "xapp-x", "apiBaseUrl": slack.api_base},
                        "signal": {"account": "+15550001111"},  # no adapter, so no probe
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
        assert data["channels"]["slack"]["accounts"][0]["probe"]["ok"] is True
        assert data["channels"]["signal"]["accounts"][0]["probe"] == {
            "ok": None,
            "error": "probe not available for this channel in this version",
        }
        text = await asyncio.to_thread(cli, config, "channels", "status", "--probe", "--nats-url", dead)
        assert "ingress unreachable: config-only summary" in text.stdout
        assert "probe ok (@probed_bot)" in text.stdout
        assert "- Signal default: enabled, token=none, no adapter in this version, probe not available" in (
            text.stdout
        )
        for out in (res.stdout, text.stdout, text.stderr):
            assert TOKEN not in out and "wrong" not in out and "xoxb-x" not in out


async def test_status_probes_slack_with_auth_test_and_the_app_token(tmp_path: Path) -> None:
    async with FakeSlack(signing_secret="s") as slack:
        app = slack.add_app("xoxb-good", team_id="T42", bot_user_id="UBOT7", app_token="xapp-good")
        config = tmp_path / "c.json"
        config.write_text(
            json.dumps(
                {
                    "channels": {
                        "slack": {
                            "apiBaseUrl": slack.api_base,
                            "accounts": {
                                "default": {"botToken": "xoxb-good", "appToken": "xapp-good"},
                                "badbot": {"botToken": "xoxb-wrong", "appToken": "xapp-good"},
                                "badapp": {"botToken": "xoxb-good", "appToken": "xapp-wrong"},
                                "web": {"mode": "http", "botToken": "xoxb-good", "signingSecret": "sig-s"},
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
        probes = {a["accountId"]: a["probe"] for a in json.loads(res.stdout)["channels"]["slack"]["accounts"]}
        # OpenClaw's shape (bot and team as auth.test names them), the app token beside it
        assert probes["default"] == {
            "ok": True,
            "mode": "socket",
            "bot": {"id": "UBOT7", "name": "clawbot"},
            "team": {"id": "T42", "name": "Fake"},
            "appToken": {"ok": True},
            "apiBaseUrl": slack.api_base,
        }
        # a refused token is HTTP 200 `ok: false`: Slack's code, not "ok"
        assert probes["badbot"] == {
            "ok": False,
            "mode": "socket",
            "errorCode": "invalid_auth",
            "appToken": {"ok": True},
            "error": "auth.test: invalid_auth",
            "apiBaseUrl": slack.api_base,
        }
        assert probes["badapp"]["ok"] is False and probes["badapp"]["bot"]["id"] == "UBOT7"
        assert probes["badapp"]["appToken"] == {
            "ok": False,
            "error": "apps.connections.open: invalid_auth",
            "errorCode": "invalid_auth",
        }
        assert probes["badapp"]["error"] == "apps.connections.open: invalid_auth"
        assert probes["web"] == {
            "ok": True,
            "mode": "http",
            "bot": {"id": "UBOT7", "name": "clawbot"},
            "team": {"id": "T42", "name": "Fake"},
            "apiBaseUrl": slack.api_base,
        }
        # the Socket Mode URLs the probe got were left unused: no connection was opened
        assert app.calls.count("apps.connections.open") == 2 and app.sockets == []

        text = await asyncio.to_thread(cli, config, "channels", "status", "--probe", "--nats-url", dead)
        assert text.exit_code == 0, (text.output, text.exception)
        lines = {line.split(":")[0]: line for line in text.stdout.splitlines()}
        assert lines["- Slack default"].endswith("probe ok (@clawbot in Fake (T42)), app token ok")
        assert lines["- Slack badbot"].endswith("probe failed: auth.test: invalid_auth")
        assert lines["- Slack badapp"].endswith("probe failed: apps.connections.open: invalid_auth")
        assert lines["- Slack web"].endswith("probe ok (@clawbot in Fake (T42))")
        for out in (res.stdout, res.stderr, text.stdout, text.stderr):
            for secret in ("xoxb-good", "xoxb-wrong", "xapp-good", "xapp-wrong", "sig-s", "ticket="):
                assert secret not in out


async def test_status_probes_a_whatsapp_number_on_the_graph_api(tmp_path: Path) -> None:
    async with FakeWhatsApp(app_secret="app-s") as wa:
        number = wa.add_number("106540352242922", token="EAAG-good", display="15550783881")
        number.verified_name = "Claw Mesh"
        config = tmp_path / "c.json"
        config.write_text(
            json.dumps(
                {
                    "channels": {
                        "whatsapp": {
                            "apiBaseUrl": wa.api_base,
                            "accounts": {
                                "default": {
                                    "phoneNumberId": "106540352242922",
                                    "accessToken": "EAAG-good",
                                    "appSecret": "app-s",
                                },
                                "bad": {
                                    "phoneNumberId": "106540352242922",
                                    "accessToken": "EAAG-wrong",
                                    "appSecret": "app-s",
                                },
                                "other": {
                                    "phoneNumberId": "999",
                                    "accessToken": "EAAG-good",
                                    "appSecret": "app-s",
                                },
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
        probes = {
            a["accountId"]: a["probe"] for a in json.loads(res.stdout)["channels"]["whatsapp"]["accounts"]
        }
        assert probes["default"] == {
            "ok": True,
            "phoneNumber": {
                "id": "106540352242922",
                "displayPhoneNumber": "15550783881",
                "verifiedName": "Claw Mesh",
                "qualityRating": "GREEN",
            },
            "apiBaseUrl": wa.api_base,
            "apiVersion": "v21.0",
        }
        # a wrong token: Graph's 401, code 190
        assert probes["bad"] == {
            "ok": False,
            "error": "HTTP 401: Invalid OAuth access token - Cannot parse access token (code 190)",
            "errorCode": 190,
            "apiBaseUrl": wa.api_base,
            "apiVersion": "v21.0",
        }
        assert probes["other"]["ok"] is False and probes["other"]["errorCode"] == 100
        assert probes["other"]["error"].startswith("HTTP 400: Unsupported get request. Object with ID '999'")

        text = await asyncio.to_thread(cli, config, "channels", "status", "--probe", "--nats-url", dead)
        lines = {line.split(":")[0]: line for line in text.stdout.splitlines()}
        assert lines["- WhatsApp default"].endswith("probe ok (Claw Mesh, 15550783881)")
        assert lines["- WhatsApp bad"].endswith(
            "probe failed: HTTP 401: Invalid OAuth access token - Cannot parse access token (code 190)"
        )
        assert number.sent == []
        for out in (res.stdout, res.stderr, text.stdout, text.stderr):
            assert "EAAG-good" not in out and "EAAG-wrong" not in out and "app-s" not in out


async def test_probes_report_timeouts_dead_servers_and_non_json_per_account(tmp_path: Path) -> None:
    """A server that never answers, one that is down and one answering an HTML error page: each
    account says what happened, the command goes on and exits 0, no traceback."""

    done = asyncio.Event()
    handlers: set[asyncio.Task[Any]] = set()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        handlers.add(task)
        head = await reader.readuntil(b"\r\n\r\n")
        if b" /slow/" in head:
            await done.wait()  # never answers in time
        else:
            page = b"<html><body>502 Bad Gateway</body></html>"
            writer.write(
                b"HTTP/1.1 502 Bad Gateway\r\ncontent-type: text/html\r\n"
                + f"content-length: {len(page)}\r\nconnection: close\r\n\r\n".encode()
                + page
            )
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    here, dead_port = f"http://127.0.0.1:{port}", "http://127.0.0.1:9"
    slack = {"botToken": "xoxb-secret", "appToken": "xapp-secret"}
    wa = {"phoneNumberId": "1065", "accessToken": "EAAG-secret", "appSecret": "app-s"}
    config = tmp_path / "c.json"
    config.write_text(
        json.dumps(
            {
                "channels": {
                    "slack": {
                        "accounts": {
                            "slow": {**slack, "apiBaseUrl": f"{here}/slow/api"},
                            "html": {**slack, "apiBaseUrl": f"{here}/html/api"},
                            "down": {**slack, "apiBaseUrl": f"{dead_port}/api"},
                            "nourl": {**slack, "apiBaseUrl": "slack.example/api"},
                        }
                    },
                    "whatsapp": {
                        "accounts": {
                            "slow": {**wa, "apiBaseUrl": f"{here}/slow"},
                            "html": {**wa, "apiBaseUrl": f"{here}/html"},
                        }
                    },
                }
            }
        )
    )
    try:
        args = ("channels", "status", "--probe", "--timeout", "300", "--nats-url", "nats://127.0.0.1:9")
        res = await asyncio.to_thread(cli, config, *args, "--json")
        text = await asyncio.to_thread(cli, config, *args)
    finally:
        done.set()
        server.close()
        await asyncio.gather(*handlers, return_exceptions=True)
    assert res.exit_code == 0, (res.output, res.exception)
    assert text.exit_code == 0, (text.output, text.exception)
    channels = json.loads(res.stdout)["channels"]
    sl = {a["accountId"]: a["probe"] for a in channels["slack"]["accounts"]}
    assert sl["slow"] == {
        "ok": False,
        "mode": "socket",
        "error": f"auth.test: timed out after 300 ms talking to {here}/slow/api",
        "apiBaseUrl": f"{here}/slow/api",
    }  # no answer: the app token is not tried (no second wait)
    assert sl["html"]["error"] == (
        "auth.test: HTTP 502: not a Slack Web API answer; apps.connections.open: HTTP 502: not a Slack Web API answer"
    )
    assert sl["down"]["ok"] is False
    assert sl["down"]["error"] == f"auth.test: ConnectError talking to {dead_port}/api"
    assert sl["nourl"] == {
        "ok": False,
        "error": "$.channels.slack.accounts.nourl.apiBaseUrl: expected an http(s) URL, got 'slack.example/api'",
    }
    wp = {a["accountId"]: a["probe"] for a in channels["whatsapp"]["accounts"]}
    assert wp["slow"]["error"] == f"timed out after 300 ms talking to {here}/slow"
    assert wp["html"]["error"] == "HTTP 502: not a Graph API answer"
    for out in (res.stdout, res.stderr, text.stdout, text.stderr):
        assert "Traceback" not in out
        for secret in ("xoxb-secret", "xapp-secret", "EAAG-secret", "app-s"):
            assert secret not in out
    assert "probe failed: auth.test: timed out after 300 ms" in text.stdout


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
