"""`sessions export` writes what the real OpenClaw imports with models and tokens intact
(tests/fixtures/oracle/session_export.json, from scripts/oracle/session_export.py, which runs
`openclaw doctor --session-sqlite import` on the export and checks what OpenClaw stored)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec
import pytest

from clawmesh.migrate import openclaw_index_entry, openclaw_jsonl
from clawmesh.sessions import TranscriptEntry

FIXTURE = json.loads(
    (Path(__file__).resolve().parents[1] / "fixtures/oracle/session_export.json").read_text()
)


def _entries(key: str) -> list[TranscriptEntry]:
    return msgspec.convert(FIXTURE["sessions"][key], list[TranscriptEntry])  # type: ignore[arg-type]


@pytest.mark.parametrize("key", sorted(FIXTURE["sessions"]))
def test_the_export_is_what_openclaw_was_shown_to_import(key: str) -> None:
    entries = _entries(key)
    sid = FIXTURE["index"][key]["sessionId"]
    assert openclaw_jsonl(sid, entries, "/workspace") == FIXTURE["exported"][f"{sid}.jsonl"]
    channel = FIXTURE["index"][key].get("lastChannel", "")
    index = openclaw_index_entry(sid, entries, updated_at=entries[-1].ts, session_file="x", channel=channel)
    assert {k: v for k, v in index.items() if k != "sessionFile"} == FIXTURE["index"][key]


@pytest.mark.parametrize("key", sorted(FIXTURE["sessions"]))
def test_openclaw_kept_models_tokens_and_failed_turns(key: str) -> None:
    stored: dict[str, Any] = FIXTURE["stored"][key]
    exported = FIXTURE["index"][key]
    for field in ("model", "modelProvider", "inputTokens", "outputTokens", "totalTokens"):
        assert stored["entry"][field] == exported[field]
    replies = [e["message"] for e in stored["events"] if e.get("message", {}).get("role") == "assistant"]
    assert all(m["api"] and m["provider"] and m["stopReason"] for m in replies)
    failed = [e for e in _entries(key) if type(e).__struct_config__.tag == "error"]
    assert len([m for m in replies if m["stopReason"] == "error"]) == len(failed)
