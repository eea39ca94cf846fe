"""The block of group chatter the model sees before the message it answers (OpenClaw's chat
window line format), and `historyLimit`'s resolution."""

from __future__ import annotations

import json

from clawmesh.checks import default_checks
from clawmesh.config import parse_config_text
from clawmesh.wire import HistoryLine
from clawmesh_ingress.channels.history import history_limit
from clawmesh_runner.chat_history import LABEL, with_history


def test_each_message_is_one_line_oldest_first_with_its_media_types() -> None:
    lines = [
        HistoryLine(
            sender="Ann", body="look at\nthis", message_id="12", ts=0.0, media=["image/jpeg", "image/jpeg"]
        ),
        HistoryLine(sender="", body="```rm -rf```", message_id="", ts=86400.0),
        HistoryLine(sender="Bo", body="   "),  # nothing said: left out
    ]
    assert with_history("@bot hi", lines) == (
        f"{LABEL}\n"
        "#12 Ann: look at this [image/jpeg]\n"
        "1970-01-02 00:00:00 UTC unknown sender: `\u200b``rm -rf`\u200b``\n"
        "\n"
        "@bot hi"
    )
    assert with_history("@bot hi", []) == "@bot hi"


def _config(doc: dict[str, object]):  # type: ignore[no-untyped-def]
    return parse_config_text(json.dumps(doc), checks=default_checks())


def test_history_limit_comes_from_the_account_then_the_channel_then_messages_then_50() -> None:
    base = {"botToken": "1:x"}
    assert history_limit(_config({"channels": {"telegram": base}}), "telegram", "default") == 50
    messages = {"messages": {"groupChat": {"historyLimit": 7}}}
    assert history_limit(_config({**messages, "channels": {"telegram": base}}), "telegram", "default") == 7
    channel = {**messages, "channels": {"telegram": {**base, "historyLimit": 3}}}
    assert history_limit(_config(channel), "telegram", "default") == 3
    account = {
        "channels": {
            "telegram": {"historyLimit": 3, "accounts": {"b": {"botToken": "2:y", "historyLimit": 9}}}
        }
    }
    assert history_limit(_config(account), "telegram", "b") == 9
    assert (
        history_limit(
            _config({"channels": {"telegram": {**base, "historyLimit": 5000}}}), "telegram", "default"
        )
        == 200
    )
