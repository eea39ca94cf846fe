"""The bot token never shows: httpx's request log lines are redacted, and a malformed `apiRoot`
is refused by name before a URL with the token in it is built."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from clawmesh.channels.accounts import AccountSettings
from clawmesh.config import ChannelAccount, ConfigError
from clawmesh_ingress.channels.telegram import TelegramAdapter
from clawmesh_ingress.channels.telegram.botapi import BotApi

TOKEN = "123456:SECRET-token-value"


def test_httpx_request_log_lines_do_not_show_the_token(caplog: pytest.LogCaptureFixture) -> None:
    BotApi("http://127.0.0.1:9", TOKEN)  # importing the module installs the filter
    with caplog.at_level(logging.INFO, logger="httpx"):
        logging.getLogger("httpx").info(
            'HTTP Request: %s %s "%s %d %s"',
            "POST",
            f"http://127.0.0.1:9/bot{TOKEN}/getUpdates",
            "HTTP/1.1",
            200,
            "OK",
        )
    assert "SECRET" not in caplog.text and "/bot<redacted>/getUpdates" in caplog.text


def test_a_malformed_api_root_is_refused_by_key_without_the_token() -> None:
    account = AccountSettings(
        "telegram", "default", ChannelAccount(api_root="localhost:8081"), "$.channels.telegram", True
    )
    ctx: Any = None  # never reached: the check comes first
    with pytest.raises(ConfigError) as err:
        TelegramAdapter(ctx, account, TOKEN, None)  # type: ignore[arg-type]
    assert "$.channels.telegram.apiRoot" in str(err.value) and "SECRET" not in str(err.value)


@pytest.mark.parametrize(
    ("secret", "why"), [(None, "required with webhookUrl"), ("has spaces", "A-Z a-z 0-9")]
)
def test_a_webhook_needs_a_valid_secret(secret: str | None, why: str) -> None:
    settings = ChannelAccount(webhook_url="https://example.com/tg", webhook_secret=secret)
    account = AccountSettings("telegram", "default", settings, "$.channels.telegram", True)

    class _Holder:
        current = type("C", (), {"env": {}})()

    ctx: Any = type("Ctx", (), {"holder": _Holder()})()
    with pytest.raises(ConfigError) as err:
        TelegramAdapter(ctx, account, TOKEN, None)  # type: ignore[arg-type]
    assert "$.channels.telegram.webhookSecret" in str(err.value) and why in str(err.value)
