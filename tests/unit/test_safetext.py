"""Text from outside in log lines and stored reasons: one line each, escaped, bounded."""

from __future__ import annotations

import logging
import subprocess
import sys

import msgspec
import pytest

from clawmesh.bus import OneLineFormatter
from clawmesh.safetext import for_terminal, one_line
from clawmesh.wire import DecodeFailure, InboundMessage, decode


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("plain text, é and 😀", "plain text, é and 😀"),
        ("one\nWARNING forged line", "one\\nWARNING forged line"),
        ("cr\rtab\tnul\x00", "cr\\rtab\\tnul\\x00"),
        ("\x1b[31mred\x1b[0m", "\\x1b[31mred\\x1b[0m"),  # would drive the terminal
        ("abc\u202edcba", "abc\\u202edcba"),  # right-to-left override: reads otherwise
        ("zero\u200bwidth\u2028sep\ufeff", "zero\\u200bwidth\\u2028sep\\ufeff"),
        ("c1\x85next", "c1\\x85next"),  # NEL, a line break to some readers
    ],
)
def test_control_and_invisible_characters_are_escaped(text: str, shown: str) -> None:
    assert one_line(text) == shown


def test_a_long_text_keeps_both_ends_and_says_how_much_is_left_out() -> None:
    text = "START " + "x" * 10_000 + " END"
    short = one_line(text, 400)
    assert short.startswith("START ") and short.endswith(" END")
    assert f"…[{len(text) - 400} characters left out]…" in short
    assert len(short) < 450
    assert one_line("y" * 400, 400) == "y" * 400  # at the limit: whole


def _format(message: str, *args: object, exc: bool = False) -> str:
    formatter = OneLineFormatter("%(levelname)s %(name)s: %(message)s")
    exc_info = None
    if exc:
        try:
            raise ValueError("boom")
        except ValueError:
            exc_info = sys.exc_info()
    record = logging.LogRecord("clawmesh.test", logging.WARNING, __file__, 1, message, args, exc_info)
    return formatter.format(record)


def test_the_formatter_writes_one_line_per_record_whatever_the_arguments_hold() -> None:
    line = _format("ignoring %s from %s", "a reply\n2026-12-05 ERROR clawmesh.router: forged", "x\x1b[2J")
    assert "\n" not in line
    assert (
        line
        == "WARNING clawmesh.test: ignoring a reply\\n2026-12-05 ERROR clawmesh.router: forged from x\\x1b[2J"
    )


def test_a_traceback_still_follows_on_its_own_lines() -> None:
    lines = _format("failed on %r", "in\nput", exc=True).splitlines()
    assert lines[0] == "WARNING clawmesh.test: failed on 'in\\nput'"
    assert lines[1] == "Traceback (most recent call last):" and lines[-1] == "ValueError: boom"


def test_services_log_through_it() -> None:
    """`configure_logging` (what `clawmesh up` and `clawmesh service` call) installs it."""
    code = (
        "import logging; from clawmesh.bus import configure_logging; configure_logging('INFO'); "
        "logging.getLogger('clawmesh.x').warning('text: %s', 'a\\nb\\x1b[0m')"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stderr.count("\n") == 1 and done.stderr.rstrip().endswith("clawmesh.x: text: a\\nb\\x1b[0m")


def test_a_decode_failure_quotes_the_bad_value_escaped_and_bounded() -> None:
    """msgspec quotes a wrong tag's value whole: a megabyte of it must not become a megabyte of
    reason (kept in a dead letter and logged), nor a second log line."""
    huge = msgspec.json.encode({"type": "x" * 500_000, "id": "t", "channel": "api"})
    with pytest.raises(DecodeFailure) as caught:
        decode(huge, InboundMessage)
    reason = str(caught.value)
    assert reason.startswith("invalid message: Invalid value 'xxx") and reason.endswith("- at `$.type`")
    assert len(reason) < 1100
    forged = msgspec.json.encode({"type": "inbound\nERROR forged", "id": "t", "channel": "api"})
    with pytest.raises(DecodeFailure, match=r"'inbound\\nERROR forged'") as caught:
        decode(forged, InboundMessage)
    assert "\n" not in str(caught.value)


def test_for_the_terminal_lines_and_tabs_stay_and_the_rest_is_escaped() -> None:
    assert for_terminal("two\nlines\tand a tab, é 😀") == "two\nlines\tand a tab, é 😀"
    assert for_terminal("windows\r\nline") == "windows\nline"
    assert for_terminal("over\rwrite \x1b[2J \x07 \x9b \u202e") == "over\\rwrite \\x1b[2J \\x07 \\x9b \\u202e"
    assert for_terminal("x" * 10_000) == "x" * 10_000  # not bounded
