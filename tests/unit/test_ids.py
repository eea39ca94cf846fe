"""Agent and account id normalisation (OpenClaw probes, identical on 4.12 and 9.6)."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from clawmesh.routing import (
    is_valid_agent_id,
    normalize_account_id,
    normalize_agent_id,
    normalize_optional_account_id,
)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Main", "main"),
        ("  Coder  ", "coder"),
        ("my agent!", "my-agent"),
        ("--x--", "x"),
        ("ÄÖÜ", "main"),
        ("../../etc/passwd", "etc-passwd"),
        ("a" * 70, "a" * 64),
        ("a.b", "a-b"),
        ("_x", "_x"),
        ("", "main"),
        ("   ", "main"),
        (None, "main"),
    ],
)
def test_normalize_agent_id_matches_openclaw_probes(raw: str | None, expected: str) -> None:
    assert normalize_agent_id(raw) == expected


@pytest.mark.parametrize(
    ("raw", "valid"),
    [
        ("main", True),
        ("Main", True),
        (" ops ", True),
        ("_x", False),
        ("a.b", False),
        ("", False),
        ("a" * 65, False),
    ],
)
def test_is_valid_agent_id(raw: str, valid: bool) -> None:
    assert is_valid_agent_id(raw) is valid


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (None, "default"),
        ("", "default"),
        ("  ", "default"),
        ("Work", "work"),
        ("Bot Main", "bot-main"),
        ("  bot_1 ", "bot_1"),
        ("__proto__", "default"),
        ("constructor", "default"),
        ("prototype", "default"),
        ("!!!", "default"),
        ("x" * 80, "x" * 64),
        ("Ünïcode Bot", "n-code-bot"),
    ],
)
def test_normalize_account_id(raw: str | None, expected: str) -> None:
    assert normalize_account_id(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (None, None),
        ("", None),
        ("!!!", None),
        ("__proto__", None),
        ("Bot Main", "bot-main"),
        ("work", "work"),
    ],
)
def test_normalize_optional_account_id(raw: str | None, expected: str | None) -> None:
    assert normalize_optional_account_id(raw) == expected


@given(st.text(max_size=80))
def test_agent_id_normalisation_is_idempotent_and_valid(raw: str) -> None:
    once = normalize_agent_id(raw)
    assert normalize_agent_id(once) == once
    assert is_valid_agent_id(once) or once.startswith(("_", "-"))


@given(st.text(max_size=80))
def test_account_id_normalisation_is_idempotent(raw: str) -> None:
    once = normalize_account_id(raw)
    assert normalize_account_id(once) == once
    assert once == once.lower() and 0 < len(once) <= 64
