"""Regenerate tests/fixtures/oracle/session_export.json: does OpenClaw read what `clawmesh sessions
export` writes (`make oracle-fixtures`)?

Exports clawmesh transcripts (a plain exchange with tokens, a tool call, a failed turn) with
the functions `sessions export` uses, puts them in a throw-away OpenClaw state dir as its
legacy session files, runs the real `openclaw doctor --session-sqlite import`, and reads back
what OpenClaw stored in its SQLite store. Fails unless the models, providers, token counts and
stop reasons survived. The suite (tests/unit/test_oracle_session_export.py) checks that the
export still writes exactly what was proven here, without node.

Needs OpenClaw 2026.9.6 and Node 24 from npm in $OPENCLAW_ORACLE_DIR (default
~/.cache/openclaw-oracle; see docs/openclaw-oracle.md).
"""

from __future__ import annotations

import json
import sqlite3
import sys
import tempfile
from pathlib import Path
from typing import Any

import msgspec
from _run import ORACLE_VERSION, run_openclaw

from clawmesh.migrate import openclaw_index_entry, openclaw_jsonl
from clawmesh.sessions import TranscriptEntry, TxAssistant, TxError, TxTool, TxUser

OUT = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "oracle" / "session_export.json"
T0 = 1793527200.0

SESSIONS: dict[str, tuple[str, str, list[TranscriptEntry]]] = {
    "agent:main:main": (
        "5e550000-0000-4000-8000-000000000001",
        "",
        [
            TxUser(turn_id="t1", seq=1, text="hello", ts=T0 + 1),
            TxAssistant(
                turn_id="t1", seq=1, text="hi!", model="anthropic/claude-sonnet-4-5", api="anthropic",
                stop_reason="end_turn", input_tokens=21, output_tokens=4, ts=T0 + 2,
            ),
            TxUser(turn_id="t2", seq=2, text="list files", ts=T0 + 3),
            TxAssistant(
                turn_id="t2", seq=2, model="anthropic/claude-sonnet-4-5", api="anthropic", stop_reason="tool_use",
                tool_calls=[{"id": "call_1", "name": "ls", "arguments": {"path": "."}}],
                input_tokens=40, output_tokens=12, ts=T0 + 4,
            ),
            TxTool(turn_id="t2", seq=2, tool_call_id="call_1", name="ls", content="a.txt", ts=T0 + 5),
            TxAssistant(
                turn_id="t2", seq=2, text="one file: a.txt", model="anthropic/claude-sonnet-4-5", api="anthropic",
                stop_reason="end_turn", input_tokens=60, output_tokens=6, ts=T0 + 6,
            ),
        ],
    ),
    "agent:main:telegram:direct:42": (
        "5e550000-0000-4000-8000-000000000002",
        "telegram",
        [
            TxUser(turn_id="t1", seq=1, text="ping", ts=T0 + 10),
            TxAssistant(
                turn_id="t1", seq=1, text="pong", model="openai/gpt-5-mini", api="openai",
                stop_reason="end_turn", input_tokens=7, output_tokens=1, ts=T0 + 11,
            ),
            TxUser(turn_id="t2", seq=2, text="again", ts=T0 + 12),
            TxError(turn_id="t2", seq=2, code="MODEL_ERROR", message="429 rate limit", ts=T0 + 13),
        ],
    ),
}  # fmt: skip


def export(sessions_dir: Path) -> dict[str, Any]:
    """What `clawmesh sessions export` writes for SESSIONS, as {file name: content}."""
    files: dict[str, Any] = {}
    index: dict[str, Any] = {}
    for key, (sid, channel, entries) in SESSIONS.items():
        lines = openclaw_jsonl(sid, entries, "/workspace")
        files[f"{sid}.jsonl"] = lines
        index[key] = openclaw_index_entry(
            sid,
            entries,
            updated_at=entries[-1].ts,
            session_file=str(sessions_dir / f"{sid}.jsonl"),
            channel=channel,
        )
    files["sessions.json"] = index
    return files


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="openclaw-export-") as tmp:
        home = Path(tmp)
        state = home / ".openclaw"
        sessions_dir = state / "agents" / "main" / "sessions"
        sessions_dir.mkdir(parents=True)
        files = export(sessions_dir)
        for name, content in files.items():
            text = (
                "".join(json.dumps(line) + "\n" for line in content)
                if name.endswith(".jsonl")
                else json.dumps(content, indent=2) + "\n"
            )
            (sessions_dir / name).write_text(text)
        report = run_openclaw(
            "doctor", "--session-sqlite", "import", "--session-sqlite-all-agents", "--non-interactive",
            home=home, env={"OPENCLAW_STATE_DIR": str(state)},
        )  # fmt: skip
        print(report.strip())
        db = state / "agents" / "main" / "agent" / "openclaw-agent.sqlite"
        with sqlite3.connect(db) as conn:
            stored = {
                key: {"entry": json.loads(entry), "events": []}
                for key, entry in conn.execute("SELECT session_key, entry_json FROM session_nodes")
            }
            for key, sid in conn.execute("SELECT session_key, current_session_id FROM session_nodes"):
                stored[key]["events"] = [
                    json.loads(text)
                    for (text,) in conn.execute(
                        "SELECT event_json FROM transcript_events WHERE session_id = ? ORDER BY seq", (sid,)
                    )
                ]
    problems = []
    for key, (_, _, entries) in SESSIONS.items():
        got = stored.get(key)
        if got is None:
            problems.append(f"{key}: not imported")
            continue
        replies = [e for e in entries if isinstance(e, TxAssistant)]
        want_in = sum(e.input_tokens for e in replies)
        entry = got["entry"]
        if entry.get("inputTokens") != want_in or entry.get("model") != replies[-1].model.partition("/")[2]:
            problems.append(f"{key}: sessions entry lost tokens/model: {entry}")
        messages = [e["message"] for e in got["events"] if e.get("type") == "message"]
        assistant = [m for m in messages if m["role"] == "assistant"]
        if [m.get("usage", {}).get("input") for m in assistant if m.get("stopReason") != "error"] != [
            e.input_tokens for e in replies
        ]:
            problems.append(f"{key}: message usage lost: {assistant}")
        if any(not m.get("provider") or not m.get("api") or not m.get("stopReason") for m in assistant):
            problems.append(f"{key}: provider/api/stopReason lost: {assistant}")
    if problems:
        sys.exit("OpenClaw did not keep what clawmesh exported:\n" + "\n".join(problems))
    fixture = {
        "openclaw": ORACLE_VERSION,
        "sessions": {k: [msgspec.to_builtins(e) for e in v[2]] for k, v in SESSIONS.items()},
        "exported": {k: v for k, v in files.items() if k != "sessions.json"},
        "index": {
            k: {f: x for f, x in v.items() if f != "sessionFile"} for k, v in files["sessions.json"].items()
        },
        "stored": stored,
    }
    OUT.write_text(json.dumps(fixture, indent=1, sort_keys=True) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
