"""Every id becomes a short subject token of a fixed alphabet; ids are bounded where they enter."""

from __future__ import annotations

import re

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clawmesh.ids import MAX_ID_LENGTH, IdTooLong, check_id
from clawmesh.wire import (
    MAX_TOKEN_LENGTH,
    InboundMessage,
    Subjects,
    ToolInvocation,
    decode_token,
    encode_token,
)

ALPHABET = re.compile(r"^[a-z0-9_=-]+$")  # [a-z0-9_-] plus the escape character
# every code point, lone surrogates (valid in a JSON string) included
ANY_TEXT = st.text(st.characters(codec=None, exclude_categories=()), max_size=3000)
HUGE = ["." * 1400, "ü" * 10_000, "x" * 10_000, "\ud800" * 2000, "a.b" * 3000, "=" * 5000, "😀" * 3000]


def _check(value: str) -> str:
    token = encode_token(value)
    assert 0 < len(token) <= MAX_TOKEN_LENGTH, (len(token), value[:40])
    assert ALPHABET.match(token), token
    if "==" not in token:  # not shortened: reversible
        assert decode_token(token) == value
    return token


@given(ANY_TEXT)
@settings(max_examples=500)
def test_any_id_gives_a_short_token_of_the_subject_alphabet(value: str) -> None:
    _check(value)


@given(
    st.text(st.characters(codec=None, exclude_categories=()), min_size=MAX_TOKEN_LENGTH // 3, max_size=20_000)
)
@settings(max_examples=200)
def test_long_ids_are_shortened_readably_and_stay_distinct(value: str) -> None:
    token = _check(value)
    assert encode_token(value + "x") != token and encode_token("x" + value) != token


@pytest.mark.parametrize("value", HUGE, ids=lambda v: f"{v[:3]!r}x{len(v)}")
def test_huge_ids(value: str) -> None:
    token = _check(value)
    assert "==" in token and len(token) == MAX_TOKEN_LENGTH
    with pytest.raises(ValueError, match="shortened"):
        decode_token(token)
    # the whole subject, and a SUB/PUB control line with it, stays far below nats-server's 4096 bytes
    subject = Subjects("cm").events(value, value)
    assert len(subject.split(".")) == 4 and len(f"SUB {subject} queue-group 123\r\n") < 1024


def test_short_ids_keep_their_readable_reversible_form() -> None:
    assert encode_token("main") == "main"
    assert encode_token("agent:main:direct:Bob") == "agent=3amain=3adirect=3a=42ob"
    assert encode_token("") == "="
    long_plain = "a" * MAX_TOKEN_LENGTH
    assert encode_token(long_plain) == long_plain
    shortened = encode_token("agent:main:" + "x" * 500)
    assert shortened.startswith("agent=3amain=3axxx") and "==" in shortened


def test_ids_are_bounded_where_they_enter() -> None:
    assert check_id("x" * MAX_ID_LENGTH, "agentId") == "x" * MAX_ID_LENGTH
    with pytest.raises(
        IdTooLong, match=rf"agentId is {MAX_ID_LENGTH + 1} characters long; .* at most {MAX_ID_LENGTH}"
    ):
        check_id("x" * (MAX_ID_LENGTH + 1), "agentId")
    long = "x" * (MAX_ID_LENGTH + 1)
    base = {"type": "inbound", "id": "t1", "channel": "api"}
    for extra, path in (
        ({"agentId": long}, "$.agentId"),
        ({"channel": long}, "$.channel"),
        ({"peer": {"kind": "direct", "id": long}}, "$.peer.id"),
        ({"memberRoleIds": ["r", long]}, "$.memberRoleIds[1]"),
    ):
        with pytest.raises(
            msgspec.ValidationError, match=re.escape(f"length <= {MAX_ID_LENGTH} - at `{path}`")
        ):
            msgspec.json.decode(msgspec.json.encode({**base, **extra}), type=InboundMessage)
    invoke = {"type": "invoke", "invocationId": "i", "tool": "ls", "agentId": long, "sessionKey": "k"}
    with pytest.raises(msgspec.ValidationError, match=r"at `\$.agentId`"):
        msgspec.json.decode(msgspec.json.encode(invoke), type=ToolInvocation)
