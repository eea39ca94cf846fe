"""Regenerate tests/fixtures/oracle/openclaw_state.tar.gz from the real OpenClaw (`make oracle-fixtures`).

Builds an OpenClaw 2026.9.6 state directory with OpenClaw's own CLI, as a user's would look:

- `openclaw agents add work --workspace ~/ws-work` writes `openclaw.json` (OpenClaw 9.6's
  `agents.entries` layout, `main` + `work`);
- workspaces with bootstrap files, an `auth-profiles.json` and a `models.json` per agent;
- legacy JSONL transcripts + `sessions.json` (the layout of OpenClaw before its SQLite store:
  a plain exchange, a tool call, a failed turn, a large message), kept as the `legacy/` tree;
- `openclaw doctor --session-sqlite import --session-sqlite-all-agents` turns them into
  `agents/<id>/agent/openclaw-agent.sqlite`, kept as the `sqlite/` tree.

Absolute paths of the throw-away HOME are written as `~` in openclaw.json (OpenClaw expands
it), so the tests can unpack the fixture under any HOME. The suite
(tests/integration/test_import_openclaw.py) reads the archive without node.

Needs OpenClaw 2026.9.6 and Node 24 from npm in $OPENCLAW_ORACLE_DIR (default
~/.cache/openclaw-oracle; see docs/openclaw-oracle.md).
"""

from __future__ import annotations

import io
import json
import shutil
import sqlite3
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any, Final

from _run import ORACLE_VERSION, run_openclaw

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "tests" / "fixtures" / "oracle" / "openclaw_state.tar.gz"

T0 = 1793527200000  # 2026-11-01T10:00:00Z, in ms


def _iso(ms: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _usage(inp: int, out: int) -> dict[str, Any]:
    zero = {"input": 0, "output": 0, "cacheRead": 0, "cacheWrite": 0, "total": 0}
    return {
        "input": inp,
        "output": out,
        "cacheRead": 0,
        "cacheWrite": 0,
        "totalTokens": inp + out,
        "cost": zero,
    }


def _assistant(text: str, inp: int, out: int, **extra: Any) -> dict[str, Any]:
    content = [{"type": "text", "text": text}] if text else []
    return {
        "role": "assistant",
        "content": content + extra.pop("calls", []),
        "api": "anthropic-messages",
        "provider": "anthropic",
        "model": "claude-sonnet-4-5",
        "usage": _usage(inp, out),
        "stopReason": "stop",
        **extra,
    }


def _user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": [{"type": "text", "text": text}]}


SESSIONS: dict[str, list[tuple[str, str, list[dict[str, Any]]]]] = {
    # agent → [(session key, session id, messages)]
    "main": [
        (
            "agent:main:main",
            "0c1e5e6a-0000-4000-8000-000000000001",
            [
                _user("hello there"),
                _assistant("Hi! How can I help?", 12, 7),
                _user("what is in my notes?"),
                _assistant(
                    "",
                    30,
                    9,
                    calls=[
                        {
                            "type": "toolCall",
                            "id": "call_1",
                            "name": "read",
                            "arguments": {"path": "notes.md"},
                        }
                    ],
                    stopReason="toolUse",
                ),
                {
                    "role": "toolResult",
                    "toolCallId": "call_1",
                    "toolName": "read",
                    "content": [{"type": "text", "text": "buy milk"}],
                    "isError": False,
                },
                _assistant("Your notes say: buy milk.", 45, 8),
                _user("summarise this: " + "lorem ipsum dolor sit amet " * 120),
                {
                    **_assistant("", 0, 0),
                    "stopReason": "error",
                    "errorMessage": "429 rate limit exceeded",
                },
            ],
        ),
        (
            "agent:main:telegram:direct:4242",
            "0c1e5e6a-0000-4000-8000-000000000002",
            [_user("ping"), _assistant("pong", 3, 1)],
        ),
    ],
    "work": [
        (
            "agent:work:main",
            "0c1e5e6a-0000-4000-8000-000000000003",
            [_user("draft the weekly report"), _assistant("Here is a draft: ...", 20, 15)],
        )
    ],
}


def _write_legacy_sessions(state: Path, home: Path) -> None:
    for agent, sessions in SESSIONS.items():
        folder = state / "agents" / agent / "sessions"
        folder.mkdir(parents=True, exist_ok=True)
        index: dict[str, Any] = {}
        for n, (key, sid, messages) in enumerate(sessions):
            start = T0 + n * 3_600_000
            lines: list[dict[str, Any]] = [
                {"type": "session", "version": 3, "id": sid, "timestamp": _iso(start), "cwd": str(home)}
            ]
            parent = None
            in_tokens = out_tokens = 0
            for i, message in enumerate(messages):
                ts = start + (i + 1) * 1000
                entry_id = f"{sid[-4:]}{i:04d}"
                lines.append(
                    {
                        "type": "message",
                        "id": entry_id,
                        "parentId": parent,
                        "timestamp": _iso(ts),
                        "message": {**message, "timestamp": ts},
                    }
                )
                parent = entry_id
                usage = message.get("usage") or {}
                in_tokens += usage.get("input", 0)
                out_tokens += usage.get("output", 0)
            (folder / f"{sid}.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
            index[key] = {
                "sessionId": sid,
                "updatedAt": start + len(messages) * 1000,
                "sessionFile": f"{sid}.jsonl",
                "lastChannel": key.split(":")[2] if key.count(":") > 2 else "webchat",
                "modelProvider": "anthropic",
                "model": "claude-sonnet-4-5",
                "inputTokens": in_tokens,
                "outputTokens": out_tokens,
                "totalTokens": in_tokens + out_tokens,
            }
        (folder / "sessions.json").write_text(json.dumps(index, indent=2) + "\n")


def _write_agent_files(state: Path, home: Path) -> None:
    for agent, workspace in (("main", state / "workspace"), ("work", home / "ws-work")):
        workspace.mkdir(parents=True, exist_ok=True)
        (workspace / "AGENTS.md").write_text(f"# {agent}\n\nThe {agent} agent, imported from OpenClaw.\n")
        (workspace / "memory").mkdir(exist_ok=True)
        (workspace / "memory" / "2026-11-01.md").write_text("- the user likes short answers\n")
        agent_dir = state / "agents" / agent / "agent"
        agent_dir.mkdir(parents=True, exist_ok=True)
        profiles = {
            "version": 1,
            "profiles": {
                f"anthropic:{agent}": {
                    "type": "api_key",
                    "provider": "anthropic",
                    "key": f"sk-fixture-{agent}",
                }
            },
        }
        (agent_dir / "auth-profiles.json").write_text(json.dumps(profiles, indent=2) + "\n")
        (agent_dir / "auth-profiles.json").chmod(0o600)
        models = {
            "providers": {"local": {"baseUrl": "http://127.0.0.1:11434/v1", "api": "openai-completions"}}
        }
        (agent_dir / "models.json").write_text(json.dumps(models, indent=2) + "\n")


def _home_relative(config: Path, home: Path) -> None:
    text = config.read_text()
    config.write_text(text.replace(str(home), "~"))


_SKIPPED: Final = frozenset({"tmp", "state", "session-sqlite-migration-runs", ".cache", "logs", ".git"})


def _copy_tree(src: Path, dst: Path, home: Path) -> None:
    """What the importer reads: config, agent dirs (SQLite checkpointed into one file),
    sessions, workspaces; none of OpenClaw's locks, journals or temporary files."""
    for path in sorted(src.rglob("*")):
        rel = path.relative_to(src)
        if path.is_dir() or _SKIPPED.intersection(rel.parts):
            continue
        if path.name.endswith(("-wal", "-shm", ".key")) or "import-archive" in str(rel):
            continue
        target = dst / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix == ".sqlite":
            # one file with the WAL folded in (VACUUM would need SQLite >= 3.43 for
            # OpenClaw's CHECK constraints; the archive is compressed anyway)
            with sqlite3.connect(path) as source, sqlite3.connect(target) as copy:
                source.backup(copy)
        else:
            shutil.copy2(path, target)


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="openclaw-state-") as tmp:
        home = Path(tmp) / "home"
        state = home / ".openclaw"
        state.mkdir(parents=True)
        env = {"OPENCLAW_STATE_DIR": str(state)}
        run_openclaw(
            "agents", "add", "work", "--workspace", str(home / "ws-work"), "--non-interactive", "--json",
            home=home, env=env,
        )  # fmt: skip
        _write_agent_files(state, home)
        _write_legacy_sessions(state, home)
        out = Path(tmp) / "out"
        _copy_tree(home, out / "legacy", home)
        report = run_openclaw(
            "doctor", "--session-sqlite", "import", "--session-sqlite-all-agents", "--non-interactive",
            home=home, env=env,
        )  # fmt: skip
        print(report.strip())
        if "0 issue(s)" not in report:
            sys.exit(f"OpenClaw's import reported issues:\n{report}")
        _copy_tree(home, out / "sqlite", home)
        for tree in ("legacy", "sqlite"):
            _home_relative(out / tree / ".openclaw" / "openclaw.json", home)
        (out / "VERSION").write_text(ORACLE_VERSION + "\n")
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
            for path in sorted(out.rglob("*")):
                info = tar.gettarinfo(str(path), str(path.relative_to(out)))
                info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
                if path.is_file():
                    with path.open("rb") as fh:
                        tar.addfile(info, fh)
                else:
                    tar.addfile(info)
        OUT.write_bytes(buffer.getvalue())
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
