"""Which tools `POST /tools/invoke` may reach, on top of the agent's own tool policy.

OpenClaw 2026.9.6 denies a fixed list over HTTP (its `DEFAULT_GATEWAY_HTTP_TOOL_DENY`: command
execution, file mutation outside the workspace tools, session orchestration, control planes) and
does not offer its coding tools (`read`, `write`, `edit`, `exec`, …) on the HTTP surface at all
(they exist only inside a turn). clawmesh denies both sets by default, so an OpenClaw config
behaves the same; `gateway.tools.allow` takes names off the list (in clawmesh that also opens
the coding tools, which run on the agent's node under its sandbox and exec policy), and
`gateway.tools.deny` adds names.
"""

from __future__ import annotations

from typing import Final

from ..config import Config
from .catalog import normalize_tool_name

__all__ = ["HTTP_DEFAULT_DENY", "HTTP_NOT_OFFERED", "http_tool_refusal"]

# OpenClaw's DEFAULT_GATEWAY_HTTP_TOOL_DENY (dist/dangerous-tools-*.mjs), in its order.
HTTP_DEFAULT_DENY: Final[tuple[str, ...]] = (
    "exec",
    "spawn",
    "shell",
    "fs_write",
    "fs_delete",
    "fs_move",
    "apply_patch",
    "terminal",
    "portal",
    "sessions_spawn",
    "sessions_send",
    "conversations_list",
    "conversations_send",
    "conversations_turn",
    "automations",
    "cron",  # OpenClaw's permanent alias of `automations`
    "gateway",
    "plugins",
    "nodes",
    "computer",
    "mobile_ui",
    "openclaw",
)
# Turn-only tools in OpenClaw (its "base-coding" family is built for a turn, never for HTTP).
HTTP_NOT_OFFERED: Final[tuple[str, ...]] = ("read", "write", "edit", "ls", "glob", "process")


def http_tool_refusal(config: Config, tool: str) -> str | None:
    """Why `tool` may not be invoked over HTTP (None: the agent's policy decides)."""
    name = normalize_tool_name(tool)
    gateway = config.document.gateway
    tools = gateway.tools if gateway else None
    allowed = {normalize_tool_name(t) for t in (tools.allow if tools else None) or ()}
    denied = {normalize_tool_name(t) for t in (tools.deny if tools else None) or ()}
    if name in denied:
        return "gateway.tools.deny"
    if name in allowed:
        return None
    if name in HTTP_DEFAULT_DENY:
        return "the HTTP deny list (gateway.tools.allow lifts it)"
    if name in HTTP_NOT_OFFERED:
        return "not offered over HTTP (gateway.tools.allow offers it)"
    return None
