"""Exec approvals answered from the chat: OpenClaw's `/approve <id> <decision>` and the prompt
that asks for it.

As OpenClaw (`src/auto-reply/reply/commands-approve.ts`, `exec-approval-reply.ts`, 2026.9.6):
- `/approve <id> <decision>` or `/approve <decision> <id>`; decisions `allow-once` (aliases
  `allow`, `once`, `allowonce`), `allow-always` (`always`, `allowalways`), `deny` (`reject`,
  `block`), case-insensitive; anything else is answered with the usage line, and
  `/approve@other_bot` with "targets a different Telegram bot".
- the prompt: "Approval required.", the command to run for allow-once, the pending command,
  the other options, then host, node, working directory, expiry and the full id.
- the answer: `✅ Approval <decision> submitted for <id>.` or `❌ Failed to submit approval: …`.

Who may approve: the senders listed in the account's `execApprovals.approvers` (account keys
win over the channel's), as OpenClaw does for Telegram and Discord. OpenClaw lets any
command-authorized sender of the originating chat approve on other channels, and falls back
to `commands.ownerAllowFrom`; clawmesh asks for the explicit list everywhere (an exec approval
is remote-execution authority) and says so in docs/channels.md.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Final, Literal

from ..config import ChannelAccount
from ._normalize import allow_list

__all__ = [
    "APPROVE_USAGE",
    "NOT_AUTHORIZED",
    "ApproveCommand",
    "ApproveRefused",
    "approval_prompt",
    "chat_approvals_enabled",
    "is_approver",
    "parse_approve",
]

Decision = Literal["allow-once", "allow-always", "deny"]

APPROVE_USAGE: Final = (
    "Usage: /approve <id> <decision> (see the pending approval message for available decisions)"
)
NOT_AUTHORIZED: Final = "❌ You are not authorized to approve this request."
_FOREIGN_BOT: Final = "❌ This /approve command targets a different Telegram bot."

_COMMAND: Final = re.compile(r"^/?approve(?:\s|$)", re.IGNORECASE)
_FOREIGN: Final = re.compile(r"^/approve@([^\s]+)(?:\s|$)", re.IGNORECASE)
_DECISIONS: Final[dict[str, Decision]] = {
    "allow": "allow-once",
    "once": "allow-once",
    "allow-once": "allow-once",
    "allowonce": "allow-once",
    "always": "allow-always",
    "allow-always": "allow-always",
    "allowalways": "allow-always",
    "deny": "deny",
    "reject": "deny",
    "block": "deny",
}
_MAX_ID: Final = 128  # ids are 16 hex characters; anything far longer is not one


@dataclass(frozen=True, slots=True)
class ApproveCommand:
    approval_id: str
    decision: Decision


@dataclass(frozen=True, slots=True)
class ApproveRefused:
    """An `/approve` that cannot be carried out; `answer` says why, in the chat."""

    answer: str


def parse_approve(body: str) -> ApproveCommand | ApproveRefused | None:
    """`body` is the command's normalised first line (`/approve@this_bot` already reduced to
    `/approve`); None when it is not an `/approve` at all."""
    trimmed = body.strip()
    if _FOREIGN.match(trimmed):
        return ApproveRefused(_FOREIGN_BOT)
    found = _COMMAND.match(trimmed)
    if found is None:
        return None
    tokens = trimmed[found.end() :].split()
    if len(tokens) < 2:
        return ApproveRefused(APPROVE_USAGE)
    first, second = tokens[0].lower(), tokens[1].lower()
    if first in _DECISIONS:
        approval_id, decision = " ".join(tokens[1:]).strip(), _DECISIONS[first]
    elif second in _DECISIONS:
        approval_id, decision = tokens[0], _DECISIONS[second]
    else:
        return ApproveRefused(APPROVE_USAGE)
    if len(approval_id) > _MAX_ID:
        return ApproveRefused(APPROVE_USAGE)
    return ApproveCommand(approval_id, decision)


def chat_approvals_enabled(settings: ChannelAccount) -> bool:
    """`execApprovals.enabled`: `true`, or `"auto"`/unset with approvers listed (OpenClaw's
    "auto": on when approvers resolve)."""
    exec_approvals = settings.exec_approvals
    if exec_approvals is None or exec_approvals.enabled is False:
        return False
    return exec_approvals.enabled is True or bool(exec_approvals.approvers)


def is_approver(channel: str, settings: ChannelAccount, sender_id: str) -> bool:
    """The sender is listed in `execApprovals.approvers` (normalised as `allowFrom` is; `"*"`
    is not honoured here: approving is never open to anybody)."""
    if not chat_approvals_enabled(settings) or not sender_id:
        return False
    assert settings.exec_approvals is not None
    approvers = allow_list(
        channel, [a for a in settings.exec_approvals.approvers or () if str(a).strip() != "*"]
    )
    return approvers.allows(channel, sender_id)


def approval_prompt(
    *,
    approval_id: str,
    command: str,
    host: str,
    node: str | None,
    cwd: str | None,
    expires_at: float,
    now: float,
    allow_always: bool = True,
) -> str:
    """The message that asks the chat for a decision (OpenClaw's
    `buildExecApprovalPendingReplyPayload` text)."""
    decisions: list[Decision] = (
        ["allow-once", "allow-always", "deny"] if allow_always else ["allow-once", "deny"]
    )
    commands = [f"/approve {approval_id} {d}" for d in decisions]
    lines = [
        "Approval required.",
        "Run:",
        _fenced(commands[0], "txt"),
        "Pending command:",
        _fenced(command, "sh"),
    ]
    lines += ["Other options:", _fenced("\n".join(commands[1:]), "txt")]
    if not allow_always:
        lines.append("Allow Always is unavailable for this command.")
    info = [f"Host: {host}"]
    if node:
        info.append(f"Node: {node}")
    if cwd:
        info.append(f"CWD: {_display_path(cwd)}")
    info.append(f"Expires in: {_expires_in(expires_at, now)}")
    info.append(f"Full id: `{approval_id}`")
    lines.append("\n".join(info))
    return "\n\n".join(lines)


def _fenced(text: str, language: str) -> str:
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{language}\n{text}\n{fence}"


def _display_path(path: str) -> str:
    normalized = path.strip()
    if not normalized or ".." in normalized.split("/"):
        return normalized
    home = re.match(r"^/(?:home|Users)/([^/]+)(.*)$", normalized)
    if home and home.group(1) not in (".", ".."):
        return "~" + home.group(2)
    return normalized


def _expires_in(expires_at: float, now: float) -> str:
    # JavaScript's Math.round: halves go up
    total = max(0, math.floor(expires_at - now + 0.5)) if math.isfinite(expires_at) else 0
    if total < 60:
        return f"{total}s"
    hours, minutes, seconds = total // 3600, total % 3600 // 60, total % 60
    parts = []
    if hours > 0:
        parts.append(f"{hours}h")
    if minutes > 0:
        parts.append(f"{minutes}m")
    if hours == 0 and minutes < 5 and seconds > 0:
        parts.append(f"{seconds}s")
    return " ".join(parts)
