"""`/approve` from the chat and the prompt that asks for it, against OpenClaw's own functions
(tests/fixtures/oracle/chat_approvals.json, written by scripts/oracle/chat_approvals.py), and
who may approve."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from clawmesh.channels import (
    ApproveCommand,
    ApproveRefused,
    approval_prompt,
    approve_body,
    chat_approvals_enabled,
    detect_command,
    is_approver,
    parse_approve,
)
from clawmesh.config import ChannelAccount, ChannelExecApprovals

ORACLE = json.loads(
    (Path(__file__).resolve().parents[1] / "fixtures" / "oracle" / "chat_approvals.json").read_text()
)


def _ours(text: str) -> dict[str, Any] | None:
    body = approve_body(text, "this_bot")
    if body is None:
        return None
    parsed = parse_approve(body)
    if isinstance(parsed, ApproveCommand):
        return {"ok": True, "decision": parsed.decision, "id": parsed.approval_id}
    assert isinstance(parsed, ApproveRefused)
    return {"ok": False, "error": parsed.answer}


@pytest.mark.parametrize("case", ORACLE["commands"], ids=lambda c: c["text"])
def test_approve_commands_parse_as_openclaw_parses_them(case: dict[str, Any]) -> None:
    assert _ours(case["text"]) == case["parsed"]


@pytest.mark.parametrize("case", ORACLE["prompts"], ids=lambda c: c["approvalId"])
def test_the_prompt_reads_as_openclaws(case: dict[str, Any]) -> None:
    text = approval_prompt(
        approval_id=case["approvalId"],
        command=case["command"],
        host=case["host"],
        node=case["node"],
        cwd=case["cwd"],
        expires_at=case["expiresAt"],
        now=case["now"],
        allow_always=case["allowAlways"],
    )
    assert text == case["text"]


def test_approve_is_a_command_for_mention_gating_and_only_with_a_slash() -> None:
    assert detect_command("/approve abc deny") == "approve"
    assert detect_command("/approve@this_bot abc deny", "this_bot") == "approve"
    assert detect_command("approve abc deny") is None  # plain text stays a message
    assert detect_command("/approved by me") is None
    assert approve_body("/approve@this_bot abc deny", "this_bot") == "/approve abc deny"


def _account(**exec_approvals: Any) -> ChannelAccount:
    return ChannelAccount(exec_approvals=ChannelExecApprovals(**exec_approvals) if exec_approvals else None)


def test_only_listed_approvers_may_approve_and_never_everybody() -> None:
    listed = _account(approvers=["42", "tg:7"])
    assert chat_approvals_enabled(listed)  # "auto"/unset: on once approvers are listed
    assert is_approver("telegram", listed, "42")
    assert is_approver("telegram", listed, "7")
    assert not is_approver("telegram", listed, "43")
    assert not is_approver("telegram", listed, "")
    assert not is_approver("telegram", _account(approvers=["*"], enabled=True), "43")
    assert not is_approver("telegram", _account(approvers=["42"], enabled=False), "42")
    assert not is_approver("telegram", _account(), "42")
    assert not is_approver("telegram", _account(enabled=True, approvers=[]), "42")


def test_an_overlong_id_is_refused_with_the_usage() -> None:
    assert isinstance(parse_approve("/approve " + "a" * 500 + " deny"), ApproveRefused)
