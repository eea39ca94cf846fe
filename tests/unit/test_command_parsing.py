"""Control commands: the command and its arguments as OpenClaw reads them, and the router's mark
(`command`/`commandArgs` in the metadata) that every surface's messages get."""

from __future__ import annotations

import pytest

from clawmesh.channels import parse_command
from clawmesh.wire import InboundMessage
from clawmesh_router.app import _mark_command


@pytest.mark.parametrize(
    ("text", "bot", "expected"),
    [
        ("/new", None, ("new", "")),
        ("/NEW  hello there ", None, ("new", "hello there")),
        ("/reset: start over\nsecond line", None, ("reset", "start over")),
        ("/status@clawbot", "clawbot", ("status", "")),
        ("/stop@otherbot", "clawbot", None),  # a command for another bot
        ("/stop now", None, None),  # /stop takes no arguments
        ("/newer", None, None),
        ("please stop!", None, ("stop", "")),
        ("tell me about /new", None, None),
    ],
)
def test_parse_command(text: str, bot: str | None, expected: tuple[str, str] | None) -> None:
    assert parse_command(text, bot) == expected


def _msg(text: str, **metadata: str) -> InboundMessage:
    return InboundMessage(id="t", channel="api", text=text, metadata=metadata)


def test_the_router_marks_commands_and_clears_a_stale_mark() -> None:
    assert _mark_command(_msg("/new hi", source="x")).metadata == {
        "source": "x",
        "command": "new",
        "commandArgs": "hi",
    }
    # an adapter's mark (it knew the bot's name) is kept
    marked = _msg("/stop@clawbot", command="stop", commandArgs="")
    assert _mark_command(marked) is marked
    # a message that is no command carries no mark, whatever it came with
    assert _mark_command(_msg("hello", command="bogus", commandArgs="x", keep="1")).metadata == {"keep": "1"}
    plain = _msg("hello")
    assert _mark_command(plain) is plain
