"""The chat control commands clawmesh handles before a message reaches a model.

OpenClaw's registry (`src/auto-reply/commands-registry.data.ts`) knows `/new`, `/reset` and
`/status` (arguments allowed) and `/stop` (none); `normalizeCommandBody` reads only the first
line, turns `/cmd: args` into `/cmd args`, drops `@<this bot>` from `/cmd@bot` (a command for
another bot stays unrecognised), and compares case-insensitively. A message that is only an
abort word (`stop`, `abort`, `please stop`, `停止`, …; `isAbortTrigger`) is `/stop` too.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["CONTROL_COMMANDS", "approve_body", "detect_command", "parse_command"]

# command → accepts arguments
CONTROL_COMMANDS: Final[dict[str, bool]] = {"new": True, "reset": True, "status": True, "stop": False}

_TARGETED: Final = re.compile(r"^/([^\s@]+)@([A-Za-z0-9_]+)(?=$|\s|[.!?！？…,，。;；:：'\"’”)\]}])([\s\S]*)$")
_COLON: Final = re.compile(r"^/([^\s:]+)\s*:([\s\S]*)$")
_APPROVE: Final = re.compile(r"^/approve(?:@\S+)?(?:\s|$)", re.IGNORECASE)
_TRAILING_PUNCT: Final = re.compile(r"[.!?！？…,，。;；:：'\"’”)\]}]+$")
_ABORT_TRIGGERS: Final = frozenset(
    {
        "stop",
        "esc",
        "abort",
        "exit",
        "interrupt",
        "detente",
        "deten",
        "detén",
        "arrete",
        "arrête",
        "停止",
        "停下来",
        "暂停",
        "やめて",
        "止めて",
        "रुको",
        "توقف",
        "стоп",
        "остановись",
        "останови",
        "остановить",
        "прекрати",
        "halt",
        "anhalten",
        "aufhören",
        "hoer auf",
        "stopp",
        "pare",
        "stop openclaw",
        "openclaw stop",
        "stop action",
        "stop current action",
        "stop run",
        "stop current run",
        "stop agent",
        "stop the agent",
        "stop don't do anything",
        "stop dont do anything",
        "stop do not do anything",
        "stop doing anything",
        "do not do that",
        "please stop",
        "stop please",
    }
)


def _normalize_body(text: str, bot_username: str | None) -> str:
    trimmed = text.strip()
    if not trimmed.startswith("/"):
        return trimmed
    line = trimmed.split("\n", 1)[0].strip()
    colon = _COLON.match(line)
    if colon:
        rest = colon.group(2).lstrip()
        line = f"/{colon.group(1)} {rest}" if rest else f"/{colon.group(1)}"
    targeted = _TARGETED.match(line)
    if targeted and bot_username and targeted.group(2).lower() == bot_username.strip().lower():
        line = f"/{targeted.group(1)}{targeted.group(3)}"
    return line


# Longer than any abort phrase with room for white space and punctuation: not one. Also keeps
# the trailing-punctuation pattern (quadratic on a long run of punctuation) off long messages.
_ABORT_MAX_LENGTH: Final = 2 * max(len(t) for t in _ABORT_TRIGGERS) + 16


def _is_abort_trigger(text: str) -> bool:
    if len(text) > _ABORT_MAX_LENGTH:
        return False
    normalized = re.sub(r"\s+", " ", text.lower().replace("’", "'").replace("`", "'"))
    return _TRAILING_PUNCT.sub("", normalized).strip() in _ABORT_TRIGGERS


def parse_command(text: str, bot_username: str | None = None) -> tuple[str, str] | None:
    """(`new`|`reset`|`status`|`stop`, its arguments) when `text` is that control command, else
    None. The arguments are what follows the command on its first line (`/new hello` → `hello`)."""
    if not text or not text.strip():
        return None
    body = _normalize_body(text, bot_username)
    lowered = body.lower()
    for name, accepts_args in CONTROL_COMMANDS.items():
        alias = f"/{name}"
        if lowered == alias:
            return name, ""
        if (
            accepts_args
            and lowered.startswith(alias)
            and len(body) > len(alias)
            and body[len(alias)].isspace()
        ):
            return name, body[len(alias) :].strip()
    if _is_abort_trigger(body):
        return "stop", ""
    return None


def approve_body(text: str, bot_username: str | None = None) -> str | None:
    """The normalised first line when `text` is an `/approve` (for this bot, or `/approve@other`
    so that it can be answered as OpenClaw answers it), else None. Unlike the control
    commands it never reaches the router: ingress answers it (`ChannelInbound`)."""
    if not text or not text.lstrip().startswith("/"):
        return None
    body = _normalize_body(text, bot_username)
    return body if _APPROVE.match(body) else None


def detect_command(text: str, bot_username: str | None = None) -> str | None:
    """`new`, `reset`, `status`, `stop` or `approve` when `text` is that command, else None."""
    parsed = parse_command(text, bot_username)
    if parsed is not None:
        return parsed[0]
    return "approve" if approve_body(text, bot_username) is not None else None
