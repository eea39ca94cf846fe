"""clawmesh's channel access helpers against OpenClaw 2026.9.6's own decisions, recorded in
tests/fixtures/oracle/channel_access.json by scripts/oracle/channel_access.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from clawmesh.channels import (
    AccessRequest,
    ChannelPolicy,
    Deny,
    decide,
    detect_command,
    normalize_e164,
    normalize_entry,
    unsafe_reason,
)
from clawmesh.channels._mentions import compile_patterns
from clawmesh.channels.access import mention_matcher
from clawmesh.checks import default_checks
from clawmesh.config import parse_config

FIXTURE = json.loads((Path(__file__).parents[1] / "fixtures" / "oracle" / "channel_access.json").read_text())


def test_the_fixture_is_from_the_oracle_version() -> None:
    assert FIXTURE["openclaw"] == "2026.9.6"


@pytest.mark.parametrize("case", FIXTURE["patterns"], ids=lambda c: repr(c["pattern"]))
def test_unsafe_patterns_are_refused_as_openclaw_refuses_them(case: dict[str, Any]) -> None:
    ours = unsafe_reason(case["pattern"])
    if case["reason"] is None:
        # clawmesh may refuse more (polynomial backtracking), never less
        assert ours in (None, "too-many-unbounded-quantifiers")
    else:
        assert ours == case["reason"]


@pytest.mark.parametrize("case", FIXTURE["matches"], ids=lambda c: repr(c["text"]))
def test_mention_patterns_match_as_openclaws(case: dict[str, Any]) -> None:
    assert compile_patterns(case["patterns"]).matches(case["text"]) is case["matched"]


@pytest.mark.parametrize("case", FIXTURE["telegramEntries"], ids=lambda c: repr(c["entry"]))
def test_telegram_allow_from_entries(case: dict[str, Any]) -> None:
    ours = normalize_entry("telegram", case["entry"])
    if case["entry"].strip() == "*":
        assert ours == "*"
    elif case["numeric"]:
        assert ours == case["normalized"]
    else:
        assert ours is None  # never matches a sender, as in OpenClaw


@pytest.mark.parametrize("case", FIXTURE["e164"], ids=lambda c: repr(c["input"]))
def test_whatsapp_numbers_normalise_to_e164(case: dict[str, Any]) -> None:
    assert normalize_e164(case["input"]) == case["output"]


@pytest.mark.parametrize("case", FIXTURE["commands"], ids=lambda c: repr(c["text"]))
def test_control_commands(case: dict[str, Any]) -> None:
    assert detect_command(case["text"], case["bot"]) == case["command"]


_ADMISSION = {
    "group-not-allowed",
    "group-policy-disabled",
    "group-allowlist-empty",
    "sender-not-allowed",
    "no-sender",
    "group-disabled",
}


@pytest.mark.parametrize(
    "case", FIXTURE["groups"], ids=lambda c: f"{json.dumps(c['telegram'])}@{c['chatId']}/{c['senderId']}"
)
def test_telegram_group_admission(case: dict[str, Any]) -> None:
    config = parse_config({"channels": {"telegram": case["telegram"]}}, checks=default_checks())
    policy = ChannelPolicy.resolve(config, "telegram")
    request = AccessRequest(
        channel="telegram",
        chat_type="group",
        sender_id=case["senderId"],
        group_id=case["chatId"],
        was_mentioned=True,
    )
    decision = decide(request, policy)
    admitted = not (isinstance(decision, Deny) and decision.reason in _ADMISSION)
    assert admitted is case["allowed"], (decision, case["reason"])


@pytest.mark.parametrize("case", FIXTURE["validate"], ids=lambda c: json.dumps(c["config"]))
def test_dm_policy_warnings_match_openclaws(case: dict[str, Any]) -> None:
    config = parse_config(case["config"], checks=default_checks())
    ours = [
        {"path": w.path.removeprefix("$."), "message": w.message}
        for w in config.warnings
        if "dmPolicy=" in w.message
    ]
    assert ours == case["warnings"]


@pytest.mark.parametrize(
    "case",
    FIXTURE["agentMentions"],
    ids=lambda c: f"{c['agentId']}/{c['channel']}/{c['conversationId']}/{c['text']!r}",
)
def test_which_mention_patterns_apply_to_the_routed_agent(case: dict[str, Any]) -> None:
    config = parse_config(case["config"], checks=default_checks())
    policy = ChannelPolicy.resolve(config, case["channel"])
    matcher = mention_matcher(policy, case["agentId"], case["conversationId"])
    assert matcher.matches(case["text"]) is case["matched"]
