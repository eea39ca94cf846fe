"""Regenerate tests/fixtures/oracle/chat_approvals.json from the real OpenClaw (`make oracle-fixtures`).

Runs OpenClaw 2026.9.6's own `/approve` parser (`parseApproveCommand`, commands-approve.ts) and
exec-approval prompt (`buildExecApprovalPendingReplyPayload`, exec-approval-reply.ts) through
`chat_approvals.mjs`. tests/unit/test_chat_approve_command.py compares clawmesh with the file without
node. Needs OpenClaw 2026.9.6 and Node 24 from npm (docs/openclaw-oracle.md).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from _run import OracleMismatch, run_cases

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "tests" / "fixtures" / "oracle" / "chat_approvals.json"
SCRIPT = Path(__file__).with_suffix(".mjs")

COMMANDS = [
    "/approve 0123456789abcdef allow-once",
    "/approve 0123456789abcdef allow-always",
    "/approve 0123456789abcdef deny",
    "/approve deny 0123456789abcdef",
    "/approve allow 0123456789abcdef",
    "/approve 0123456789abcdef once",
    "/approve 0123456789abcdef always",
    "/approve 0123456789abcdef reject",
    "/approve 0123456789abcdef block",
    "/approve 0123456789abcdef ALLOWONCE",
    "/APPROVE 0123456789abcdef Deny",
    "/approve 0123456789abcdef deny please",
    "/approve 0123456789abcdef",
    "/approve",
    "/approve   ",
    "/approve 0123456789abcdef maybe",
    "/approve maybe later",
    "/approve@other_bot 0123456789abcdef deny",
    "/approvex 0123456789abcdef deny",
    "/approve\t0123456789abcdef\tdeny",
]

PROMPTS = [
    {
        "approvalId": "0123456789abcdef",
        "command": "rm -rf /tmp/build",
        "host": "gateway",
        "node": None,
        "cwd": "/home/bob/work",
        "expiresAt": 1_800_000_125.0,
        "now": 1_800_000_000.0,
        "allowAlways": True,
    },
    {
        "approvalId": "fedcba9876543210",
        "command": "echo ```fenced``` && ls",
        "host": "node",
        "node": "laptop",
        "cwd": "/srv/app",
        "expiresAt": 1_800_007_322.0,
        "now": 1_800_000_000.0,
        "allowAlways": False,
    },
    {
        "approvalId": "00000000000000aa",
        "command": "make test",
        "host": "gateway",
        "node": "n1",
        "cwd": None,
        "expiresAt": 1_800_000_030.0,
        "now": 1_800_000_000.0,
        "allowAlways": True,
    },
    {
        "approvalId": "00000000000000bb",
        "command": "uptime",
        "host": "gateway",
        "node": None,
        "cwd": "/Users/ann/../etc",
        "expiresAt": 1_800_000_299.5,
        "now": 1_800_000_000.0,
        "allowAlways": True,
    },
]


def main() -> int:
    try:
        answer = run_cases(SCRIPT, {"commands": COMMANDS, "prompts": PROMPTS})
    except OracleMismatch as exc:
        print(exc, file=sys.stderr)
        return 1
    doc = {
        "openclaw": answer["version"],
        "commands": [{"text": t, "parsed": p} for t, p in zip(COMMANDS, answer["parsed"], strict=True)],
        "prompts": [{**p, "text": t} for p, t in zip(PROMPTS, answer["prompts"], strict=True)],
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
