"""Regenerate tests/fixtures/oracle/channel_access.json from the real OpenClaw (`make oracle-fixtures`).

Runs OpenClaw 2026.9.6's own channel access helpers through `channel_access.mjs`:
- `compileSafeRegexDetailed`: which mention patterns it refuses, and why;
- `matchesMentionPatterns` on (patterns, text) pairs;
- `normalizeTelegramAllowFromEntry` and `normalizeE164` on allow-list entries;
- `normalizeCommandBody` + `isAbortTrigger`: which of /new, /reset, /status, /stop a text is;
- Telegram group admission (`evaluateTelegramGroupBaseAccess` + `evaluateTelegramGroupPolicyAccess`
  with `resolveChannelGroupPolicy`, as `shouldSkipTelegramGroupMessage` calls them);
and `openclaw config validate --json` on configs whose DM policy drops everything (the warnings
and their paths). tests/unit/test_oracle_channel_access.py compares clawmesh with the file
without node. Needs OpenClaw 2026.9.6 and Node 24 from npm (docs/openclaw-oracle.md).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

from _run import OracleMismatch, oracle_dir, oracle_env, run_cases

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "tests" / "fixtures" / "oracle" / "channel_access.json"
SCRIPT = Path(__file__).with_suffix(".mjs")

PATTERNS = [
    "(a+)+",
    "(a*)*b",
    "(a|ab)+",
    "(?:x+y)+",
    "(a|b)+",
    "(ab|cd)*",
    "(a{2,})+",
    "(a{2})+",
    "a{1,3}b+",
    "\\bclaw\\b",
    "@?claw(bot)?",
    "[a-z]+@bot",
    "hey\\s+bot",
    "(\\w+\\s?)*$",
    "^(a|a?)+$",
    "x(?:y|z)*w",
    "[(]+",
    "\\(+",
    "[",
    "(",
    "a**",
    "",
    "   ",
]

MATCHES = [
    (["\\bclaw\\b"], "Hey CLAW, do it"),
    (["\\bclaw\\b"], "clawdia"),
    (["hey bot"], "HEY BOT!"),
    (["hey bot"], "hey\u200b bot"),
    (["hey bot"], "hey\u202ebot"),
    (["@?claw(bot)?"], "ping @ClawBot"),
    (["openclaw", "\\+15555550123"], "call +15555550123"),
    (["(a+)+$", "ok"], "aaaa"),
    (["(a+)+$", "ok"], "OK"),
    (["ünïcode"], "ÜNÏCODE here"),
    (["\\d{3}"], "room 101"),
    ([], "anything"),
]

TELEGRAM_ENTRIES = [
    "42",
    "tg:42",
    "TELEGRAM:42",
    " telegram: 42 ",
    "@bob",
    "bob",
    "-100123",
    "4 2",
    "*",
    "tg:*",
]

E164 = [
    "+15551234567",
    "15551234567",
    "whatsapp:+1 (555) 123-4567",
    "tel:555",
    "abc",
    "+",
    "00 44 20 7946 0958",
]

COMMANDS = [
    ("/new", None),
    ("/NEW please", None),
    ("/reset: now", None),
    ("/reset:", None),
    ("/new@mybot hi", "mybot"),
    ("/status@MyBot", "mybot"),
    ("/status@otherbot", "mybot"),
    ("/status@mybot", None),
    ("/stop", None),
    ("/stop now", None),
    ("/STOP", None),
    ("stop!", None),
    ("Please stop.", None),
    ("stop please", None),
    ("停止", None),
    ("/newer", None),
    ("hello /new", None),
    ("/new\nsecond line", None),
    ("  /status  ", None),
    ("/status verbose", None),
    ("/new:hello", None),
    ("abort", None),
    ("stopped", None),
    ("", None),
]

# (telegram section, chat id, sender id) — no per-group topics or "*" overrides that depend on
# how a group entry falls back to "*" (the call above passes the exact entry only)
GROUPS = [
    ({}, "-100", "1"),
    ({"groups": {"-100": {}}}, "-100", "1"),
    ({"groups": {"-100": {}}}, "-200", "1"),
    ({"groups": {"*": {}}}, "-100", "1"),
    ({"groupPolicy": "allowlist"}, "-100", "1"),
    ({"groupPolicy": "allowlist", "groups": {"-100": {}}}, "-100", "1"),
    ({"groupPolicy": "allowlist", "groups": {"*": {}}}, "-100", "1"),
    ({"groupPolicy": "allowlist", "groups": {"*": {}}, "groupAllowFrom": ["1"]}, "-100", "1"),
    ({"groupPolicy": "allowlist", "groups": {"*": {}}, "groupAllowFrom": ["1"]}, "-100", "2"),
    ({"groupPolicy": "allowlist", "groupAllowFrom": ["1"]}, "-100", "1"),
    ({"groupPolicy": "allowlist", "groups": {"-100": {}}, "groupAllowFrom": ["2"]}, "-100", "1"),
    ({"groupPolicy": "allowlist", "groups": {"*": {}}, "allowFrom": ["1"]}, "-100", "1"),
    ({"groupPolicy": "allowlist", "groups": {"*": {}}, "allowFrom": ["tg:1"]}, "-100", "1"),
    ({"groupPolicy": "allowlist", "groups": {"*": {}}, "groupAllowFrom": ["@bob"]}, "-100", "1"),
    ({"groupPolicy": "allowlist", "groups": {"*": {}}, "groupAllowFrom": ["*"]}, "-100", "7"),
    ({"groupPolicy": "open"}, "-100", "1"),
    ({"groupPolicy": "open", "groups": {"-200": {}}}, "-100", "1"),
    ({"groupPolicy": "open", "groups": {"-100": {"allowFrom": ["1"]}}}, "-100", "2"),
    ({"groupPolicy": "open", "groups": {"-100": {"allowFrom": ["1"]}}}, "-100", "1"),
    ({"groupPolicy": "open", "groups": {"-100": {"enabled": False}}}, "-100", "1"),
    ({"groupPolicy": "disabled", "groups": {"*": {}}}, "-100", "1"),
    ({"groupPolicy": "open", "groups": {"-100": {"groupPolicy": "disabled"}}}, "-100", "1"),
    ({"groupPolicy": "allowlist", "groups": {"-100": {"groupPolicy": "open"}}}, "-100", "1"),
]

_AGENTS = {
    "agents": {
        "list": [
            {"id": "main", "default": True, "identity": {"name": "Claw Bot", "emoji": "🦞"}},
            {"id": "ops", "groupChat": {"mentionPatterns": ["opsbot"]}},
            {"id": "quiet", "groupChat": {"mentionPatterns": []}, "identity": {"name": "Quiet"}},
        ]
    }
}
_GLOBAL = {**_AGENTS, "messages": {"groupChat": {"mentionPatterns": ["\\bglobal\\b"]}}}
_SCOPED = {
    **_GLOBAL,
    "channels": {"telegram": {"mentionPatterns": {"mode": "deny", "allowIn": ["-100"], "denyIn": ["-300"]}}},
}
# (config, agent, channel, conversation, text)
AGENT_MENTIONS = [
    (_AGENTS, "main", "telegram", "-100", "hey claw bot, help"),
    (_AGENTS, "main", "telegram", "-100", "hey Claw   Bot!"),
    (_AGENTS, "main", "telegram", "-100", "@claw bot"),
    (_AGENTS, "main", "telegram", "-100", "clawbot"),
    (_AGENTS, "main", "telegram", "-100", "claw botany"),
    (_AGENTS, "main", "telegram", "-100", "🦞 please"),
    (_AGENTS, "main", "telegram", "-100", "nothing here"),
    (_AGENTS, "ops", "telegram", "-100", "opsbot go"),
    (_AGENTS, "ops", "telegram", "-100", "claw bot"),
    (_AGENTS, "quiet", "telegram", "-100", "quiet please"),
    (_GLOBAL, "main", "telegram", "-100", "a global thing"),
    (_GLOBAL, "main", "telegram", "-100", "claw bot"),
    (_GLOBAL, "ops", "telegram", "-100", "a global thing"),
    (_GLOBAL, "ops", "telegram", "-100", "opsbot"),
    (_SCOPED, "main", "telegram", "-100", "global"),
    (_SCOPED, "main", "telegram", "-200", "global"),
    (_SCOPED, "main", "telegram", "-300", "global"),
    (_SCOPED, "main", "slack", "C1", "global"),
]

VALIDATE = [
    {"channels": {"telegram": {"botToken": "1:a", "dmPolicy": "open"}}},
    {"channels": {"telegram": {"botToken": "1:a", "dmPolicy": "open", "allowFrom": ["123"]}}},
    {"channels": {"telegram": {"botToken": "1:a", "dmPolicy": "allowlist"}}},
    {"channels": {"telegram": {"botToken": "1:a", "dmPolicy": "open", "allowFrom": ["*"]}}},
    {
        "channels": {
            "telegram": {"botToken": "1:a", "accounts": {"w": {"botToken": "2:b", "dmPolicy": "open"}}}
        }
    },
]


def _validate(config: dict[str, object], home: Path) -> list[dict[str, str]]:
    path = home / "openclaw.json"
    path.write_text(json.dumps(config))
    done = subprocess.run(
        [str(oracle_dir() / "node_modules" / ".bin" / "openclaw"), "config", "validate", "--json"],
        env=oracle_env(home, OPENCLAW_CONFIG_PATH=str(path)),
        capture_output=True,
        text=True,
    )
    answer = json.loads(done.stdout[done.stdout.index("{") :])
    return [{"path": w["path"], "message": w["message"]} for w in answer.get("warnings", [])]


def main() -> int:
    cases = {
        "patterns": PATTERNS,
        "matches": [{"patterns": p, "text": t} for p, t in MATCHES],
        "telegramEntries": TELEGRAM_ENTRIES,
        "e164": E164,
        "commands": [{"text": t, "bot": b} for t, b in COMMANDS],
        "groups": [{"telegram": c, "chatId": g, "senderId": s} for c, g, s in GROUPS],
        "agentMentions": [
            {"config": c, "agentId": a, "channel": ch, "conversationId": conv, "text": t}
            for c, a, ch, conv, t in AGENT_MENTIONS
        ],
    }
    try:
        answer = run_cases(SCRIPT, cases)
    except OracleMismatch as exc:
        print(exc, file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="openclaw-oracle-") as tmp:
        validate = [{"config": c, "warnings": _validate(c, Path(tmp))} for c in VALIDATE]
    doc = {
        "openclaw": answer["version"],
        "patterns": [{"pattern": p, "reason": r} for p, r in zip(PATTERNS, answer["mentions"], strict=True)],
        "matches": [
            {"patterns": p, "text": t, "matched": m}
            for (p, t), m in zip(MATCHES, answer["matches"], strict=True)
        ],
        "telegramEntries": [
            {"entry": e, **r} for e, r in zip(TELEGRAM_ENTRIES, answer["telegramEntries"], strict=True)
        ],
        "e164": [{"input": e, "output": r} for e, r in zip(E164, answer["e164"], strict=True)],
        "commands": [
            {"text": t, "bot": b, "command": r}
            for (t, b), r in zip(COMMANDS, answer["commands"], strict=True)
        ],
        "groups": [
            {"telegram": c, "chatId": g, "senderId": s, **r}
            for (c, g, s), r in zip(GROUPS, answer["groups"], strict=True)
        ],
        "agentMentions": [
            {"config": c, "agentId": a, "channel": ch, "conversationId": conv, "text": t, "matched": m}
            for (c, a, ch, conv, t), m in zip(AGENT_MENTIONS, answer["agentMentions"], strict=True)
        ],
        "validate": validate,
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
