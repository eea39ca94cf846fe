"""The shared error vocabulary (`ClawmeshError`, `wire.ErrorCode`) and `best_effort`."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from pathlib import Path

import pytest

from clawmesh.errors import ClawmeshError, best_effort
from clawmesh.routing import AGENT_SELECTION_REQUIRED, AgentSelectionRequired
from clawmesh.sandbox import SandboxError, SandboxUnavailable
from clawmesh.tools import UnknownAgentError
from clawmesh.tools.files import FileToolError, Workspace
from clawmesh.tools.specs import ToolArgumentError, validate_tool_arguments
from clawmesh.wire import (
    ERROR_CODES,
    DeadLetter,
    DecodeFailure,
    RouteDecision,
    ToolInvocationResult,
    TurnError,
    decode,
    encode_json,
    encode_msgpack,
)

# --- best_effort ---------------------------------------------------------------------------


def test_best_effort_logs_and_counts_a_failure(caplog: pytest.LogCaptureFixture) -> None:
    counters: Counter[str] = Counter()
    with caplog.at_level(logging.WARNING), best_effort(counters, "turn_status_write"):
        raise ConnectionError("kv unavailable")
    assert counters == {"best_effort_failed.turn_status_write": 1}
    [record] = [r for r in caplog.records if r.name == "clawmesh.best_effort"]
    assert record.levelno == logging.WARNING
    assert "turn_status_write" in record.getMessage()
    assert "ConnectionError: kv unavailable" in record.getMessage()


def test_best_effort_counts_every_failure_per_operation() -> None:
    counters: Counter[str] = Counter({"turns_completed": 3})
    for op in ("lease_release", "lease_release", "unsubscribe"):
        with best_effort(counters, op):
            raise RuntimeError(op)
    assert counters == {
        "turns_completed": 3,
        "best_effort_failed.lease_release": 2,
        "best_effort_failed.unsubscribe": 1,
    }


def test_best_effort_is_silent_when_the_operation_succeeds(caplog: pytest.LogCaptureFixture) -> None:
    counters: Counter[str] = Counter()
    done = []
    with caplog.at_level(logging.DEBUG), best_effort(counters, "write"):
        done.append(True)
    assert done == [True] and counters == {} and caplog.records == []


def test_best_effort_without_counters_still_logs_to_the_given_logger(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log = logging.getLogger("clawmesh.test-errors")
    with caplog.at_level(logging.WARNING), best_effort(None, "http_server_stop", log=log):
        raise OSError("boom")
    [record] = caplog.records
    assert record.name == "clawmesh.test-errors" and "http_server_stop" in record.getMessage()


@pytest.mark.parametrize("exc", [asyncio.CancelledError(), KeyboardInterrupt(), SystemExit(3)])
def test_best_effort_never_swallows_cancellation_or_exit(exc: BaseException) -> None:
    counters: Counter[str] = Counter()
    with pytest.raises(type(exc)), best_effort(counters, "anything"):
        raise exc
    assert counters == {}


async def test_best_effort_around_an_await() -> None:
    counters: Counter[str] = Counter()

    async def failing_write() -> None:
        await asyncio.sleep(0)
        raise TimeoutError("no answer")

    after = []
    with best_effort(counters, "kv_put"):
        await failing_write()
        after.append("not reached")
    after.append("carried on")
    assert after == ["carried on"]
    assert counters["best_effort_failed.kv_put"] == 1


# --- one error type ------------------------------------------------------------------------


def test_clawmesh_error_carries_code_message_and_hint() -> None:
    err = ClawmeshError("UNKNOWN_AGENT", "agent 'x' is not configured", "configured: a, b")
    assert (err.code, err.message, err.hint) == (
        "UNKNOWN_AGENT",
        "agent 'x' is not configured",
        "configured: a, b",
    )
    assert str(err) == "agent 'x' is not configured configured: a, b"
    assert err.to_dict() == {
        "code": "UNKNOWN_AGENT",
        "message": "agent 'x' is not configured",
        "hint": "configured: a, b",
    }
    assert str(ClawmeshError("MODEL_ERROR", "no stop event")) == "no stop event"


def test_specific_errors_are_clawmesh_errors_with_their_code() -> None:
    selection = AgentSelectionRequired("no default agent", hint="set agents.list[].default")
    assert isinstance(selection, ClawmeshError) and selection.code == AGENT_SELECTION_REQUIRED
    assert selection.hint == "set agents.list[].default"
    assert SandboxError("refused").code == "SANDBOX_ERROR"
    assert SandboxUnavailable("no engine").code == "SANDBOX_UNAVAILABLE"
    assert not isinstance(SandboxUnavailable("x"), SandboxError)  # callers tell them apart
    assert UnknownAgentError("zed", ["a"]).code == "UNKNOWN_AGENT"
    with pytest.raises(ToolArgumentError) as bad_args:
        validate_tool_arguments("read", {"path": 3})
    assert bad_args.value.code == "INVALID_ARGUMENTS" and "$.path" in bad_args.value.message


def test_file_tool_codes_are_wire_codes(tmp_path: Path) -> None:
    ws = Workspace(tmp_path)
    with pytest.raises(FileToolError) as err:
        ws.read("missing.txt")
    assert err.value.code == "NOT_FOUND" and err.value.code in ERROR_CODES


# --- codes on the wire ---------------------------------------------------------------------


def test_known_codes_round_trip_in_both_encodings() -> None:
    event = TurnError(turn_id="t1", code="TURN_TIMEOUT", message="too slow", hint="raise the limit")
    for encode in (encode_json, encode_msgpack):
        data, headers = encode(event)
        back = decode(data, TurnError, headers)
        assert (back.code, back.message, back.hint) == ("TURN_TIMEOUT", "too slow", "raise the limit")


@pytest.mark.parametrize(
    ("type_", "payload"),
    [
        (TurnError, b'{"type":"error","turnId":"t","code":"NO_SUCH_CODE","message":"m"}'),
        (RouteDecision, b'{"type":"route","turnId":"t","channel":"c","accountId":"a","errorCode":"oops"}'),
        (ToolInvocationResult, b'{"type":"result","invocationId":"i","ok":false,"errorCode":"EIO"}'),
    ],
)
def test_an_unknown_code_is_refused_naming_the_field(type_: type, payload: bytes) -> None:
    with pytest.raises(DecodeFailure, match=r"at `\$\.(code|errorCode)`"):
        decode(payload, type_, {"Content-Type": "application/json"})


def test_dead_letters_carry_a_code_and_old_letters_still_decode() -> None:
    letter = DeadLetter(service="router", subject="cm.in.x.y", reason="no agent", code="UNKNOWN_AGENT")
    data, headers = encode_json(letter)
    assert decode(data, DeadLetter, headers).code == "UNKNOWN_AGENT"
    old = b'{"type":"dead_letter","service":"runner","subject":"cm.turn.a","reason":"bad"}'
    assert decode(old, DeadLetter).code is None
