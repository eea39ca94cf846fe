"""Regenerate tests/fixtures/oracle/exec_allowlist.json from the real OpenClaw (`make oracle-fixtures`).

Runs OpenClaw's own POSIX allowlist evaluation (allowlist patterns, default safe bins, safe
builtins, chains and pipelines, refused shell syntax) on the commands below through
`exec_allowlist.mjs`, and stores `{command, allowlist, satisfied}` records. The test suite
(tests/unit/test_oracle_exec_allowlist.py) compares clawmesh's decision with the file without node.
Only commands whose executables are standard on Linux (`/usr/bin`) are used, so the file holds
on any machine that has them.

Needs OpenClaw 2026.9.6 and Node 24 from npm in $OPENCLAW_ORACLE_DIR (default
~/.cache/openclaw-oracle; see docs/openclaw-oracle.md).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from _run import OracleMismatch, run_cases

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "tests" / "fixtures" / "oracle" / "exec_allowlist.json"
SCRIPT = Path(__file__).with_suffix(".mjs")
CWD = "/tmp"
PATH = "/usr/local/bin:/usr/bin:/bin"
ALLOWLISTS = [["ls", "/usr/bin/id", "printf"], ["/usr/bin/*"], ["l?", "i*"], []]
COMMANDS = [
    "ls -la",
    "ls | wc -l",
    "ls | head -n 5",
    "ls | head -5",
    "ls | head -c 10",
    "ls | tail -f",
    "ls | tail -n +2",
    "ls | tail -F",
    "cat x",
    "ls > f",
    "ls >> f",
    "ls < f",
    "ls 2>&1",
    "id",
    "/usr/bin/id",
    "ls && id",
    "ls || id",
    "ls; cat /etc/passwd",
    "echo $(id)",
    "echo `id`",
    "ls | sort",
    "ls | tr a-z A-Z",
    "ls | tr",
    "ls | wc /etc/passwd",
    "ls | grep x",
    "FOO=1 ls",
    "ls $HOME",
    'ls "$HOME"',
    "ls '$HOME'",
    "ls ${HOME}",
    "ls '*.txt'",
    "ls *.txt",
    "ls ~",
    "echo hi",
    "cd /tmp && ls",
    "cd /tmp",
    "true",
    "false",
    ":",
    "pwd",
    "test -f x",
    "[ -f x ]",
    "[ -f x",
    "ls | cut -d: -f1",
    "ls | cut -f1 /etc/passwd",
    "ls | uniq -c",
    "ls | uniq a b",
    "ls &",
    "(ls)",
    "{ ls; }",
    "ls | jq .",
    "ls | sed s/a/b/",
    "ls | awk 1",
    "id -u | wc -l",
    "printf 'a\\nb\\n' | wc -l",
    "ls\nid",
    "ls # comment",
    "ls | wc -l -",
    "ls | wc --lines",
    "ls | wc --files0-from=x",
    "ls | head --lines=3",
    "ls | head -n $N",
    "ls | tr -d a",
    "ls | tr -d a b c",
    "env ls",
    "sh -c ls",
    "bash -lc ls",
    "xargs ls",
    "ls | xargs id",
    "./ls",
    "../bin/ls",
    "/bin/ls",
    "/usr/bin/ls -l",
    "nonexistent-cmd",
    "ls && nonexistent-cmd",
    "ls |",
    "&& ls",
    "ls && && id",
    "id -u; id -g",
    "ls | head -n 5 | wc -l",
    "ls -la /root",
]


def main() -> int:
    cases = [{"command": c, "allowlist": a} for a in ALLOWLISTS for c in COMMANDS]
    try:
        answer = run_cases(SCRIPT, {"cases": cases, "cwd": CWD, "path": PATH})
    except OracleMismatch as exc:
        print(exc, file=sys.stderr)
        return 1
    records = [
        {"command": c["command"], "allowlist": c["allowlist"], "satisfied": r["allowlistSatisfied"]}
        for c, r in zip(cases, answer["results"], strict=True)
    ]
    OUT.parent.mkdir(parents=True, exist_ok=True)
    doc = {"openclaw": answer["version"], "cwd": CWD, "path": PATH, "records": records}
    OUT.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {len(records)} records to {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
