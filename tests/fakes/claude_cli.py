#!/usr/bin/env python3
"""Fake `claude` CLI (stdlib only; run as a file): `claude -p` with `--output-format stream-json`,
as Claude Code 2.1 prints it — `system/init`, `stream_event` partial messages (with
`--include-partial-messages`), `assistant`, `result` with cost and usage; `--verbose` required;
sessions stored per working directory under `$CLAUDE_CONFIG_DIR/projects/<cwd with
non-alphanumerics as '-'>/<id>.jsonl`, so `--resume` finds only this directory's sessions.

Prompt markers: `FAKE_ERR_529` / `FAKE_ERR_429` → an API error result (rc 1) after an
`api_retry` line; `FAKE_HANG` → writes its pid to `$FAKE_CLAUDE_PIDFILE` and waits forever.
The reply is `pong from fake claude #<n>: <prompt>` where n counts the session's turns.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
import uuid
from pathlib import Path


def out(obj: dict[str, object]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def main(argv: list[str]) -> int:
    args = argv[1:]
    flags = set(a for a in args if a.startswith("-"))

    def value(name: str) -> str | None:
        return args[args.index(name) + 1] if name in args else None

    if "-p" not in flags and "--print" not in flags:
        print("fake claude supports only -p", file=sys.stderr)
        return 2
    if value("--output-format") == "stream-json" and "--verbose" not in flags:
        print("Error: When using --print, --output-format=stream-json requires --verbose", file=sys.stderr)
        return 1
    prompt = sys.stdin.read()
    cwd = os.getcwd()
    config = Path(os.environ.get("CLAUDE_CONFIG_DIR") or Path.home() / ".claude")
    project = config / "projects" / re.sub(r"[^A-Za-z0-9]", "-", cwd)
    resume = value("--resume")
    if resume:
        transcript = project / f"{resume}.jsonl"
        if not transcript.exists():
            print(f"No conversation found with session ID: {resume}", file=sys.stderr)
            out(
                {
                    "type": "result",
                    "subtype": "error_during_execution",
                    "is_error": True,
                    "duration_ms": 1,
                    "duration_api_ms": 0,
                    "num_turns": 0,
                    "session_id": resume,
                    "errors": [],
                }
            )
            return 1
        session = resume
    else:
        session = str(uuid.uuid4())
        transcript = project / f"{session}.jsonl"
    project.mkdir(parents=True, exist_ok=True)
    turns = sum(1 for _ in transcript.open()) if transcript.exists() else 0
    model = value("--model") or "claude-opus-5-5"
    out(
        {
            "type": "system",
            "subtype": "init",
            "cwd": cwd,
            "session_id": session,
            "tools": ["Bash", "Read"],
            "mcp_servers": [],
            "model": model,
            "permissionMode": value("--permission-mode") or "default",
            "apiKeySource": "ANTHROPIC_API_KEY",
            "claude_code_version": "2.1.329",
            "uuid": str(uuid.uuid4()),
        }
    )
    if "FAKE_HANG" in prompt:
        pidfile = os.environ.get("FAKE_CLAUDE_PIDFILE")
        if pidfile:
            Path(pidfile).write_text(str(os.getpid()))
        while True:
            time.sleep(3600)
    status = next((s for s in (529, 429, 500) if f"FAKE_ERR_{s}" in prompt), None)
    if status:
        out(
            {
                "type": "system",
                "subtype": "api_retry",
                "attempt": 1,
                "max_retries": 1,
                "retry_delay_ms": 1,
                "error_status": status,
                "error": "overloaded" if status == 529 else "rate_limit",
                "session_id": session,
            }
        )
        # as the real CLI: a synthetic assistant message carries the error text first
        out(
            {
                "type": "assistant",
                "message": {
                    "id": f"msg_{uuid.uuid4().hex[:12]}",
                    "type": "message",
                    "role": "assistant",
                    "model": "<synthetic>",
                    "content": [{"type": "text", "text": f"API Error: {status} fake {status}"}],
                },
                "parent_tool_use_id": None,
                "session_id": session,
            }
        )
        out(
            {
                "type": "result",
                "subtype": "success",
                "is_error": True,
                "api_error_status": status,
                "duration_ms": 5,
                "duration_api_ms": 2,
                "num_turns": 1,
                "session_id": session,
                "result": f"API Error: {status} fake {status}",
                "total_cost_usd": 0,
                "usage": {},
            }
        )
        return 1
    reply = f"pong from fake claude #{turns + 1}: {prompt}"
    message_id = f"msg_{uuid.uuid4().hex[:12]}"
    if "--include-partial-messages" in flags:
        base = {"type": "stream_event", "session_id": session, "parent_tool_use_id": None}
        out({**base, "event": {"type": "message_start", "message": {"id": message_id, "role": "assistant"}}})
        out(
            {
                **base,
                "event": {
                    "type": "content_block_start",
                    "index": 0,
                    "content_block": {"type": "text", "text": ""},
                },
            }
        )
        words = re.split(r"(?<=\s)(?=\S)", reply)
        for word in words:
            out(
                {
                    **base,
                    "event": {
                        "type": "content_block_delta",
                        "index": 0,
                        "delta": {"type": "text_delta", "text": word},
                    },
                }
            )
    out(
        {
            "type": "assistant",
            "message": {
                "id": message_id,
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [{"type": "text", "text": reply}],
                "stop_reason": None,
                "usage": {},
            },
            "parent_tool_use_id": None,
            "session_id": session,
            "uuid": str(uuid.uuid4()),
        }
    )
    with transcript.open("a") as f:
        f.write(json.dumps({"prompt": prompt, "reply": reply}) + "\n")
    out(
        {
            "type": "result",
            "subtype": "success",
            "is_error": False,
            "api_error_status": None,
            "duration_ms": 12,
            "duration_api_ms": 8,
            "num_turns": 1,
            "result": reply,
            "stop_reason": "end_turn",
            "session_id": session,
            "total_cost_usd": 0.000125,
            "usage": {
                "input_tokens": 3,
                "cache_read_input_tokens": 10,
                "cache_creation_input_tokens": 0,
                "output_tokens": len(reply.split()),
            },
            "modelUsage": {model: {"inputTokens": 3}},
            "permission_denials": [],
            "uuid": str(uuid.uuid4()),
        }
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
