"""Every tool name OpenClaw's tool policy knows, its groups and profiles, and which clawmesh runs.

Sources: OpenClaw docs `tools/index.md` (profiles, groups), `tools/multi-agent-sandbox-tools.md`
(sandbox defaults) and `tools/subagents.md` (sub-agent defaults); see also
`shared/reference/openclaw-behaviour.md` §4.3 and §5.2.

The catalog order is the order tool lists are shown and returned in (`ToolPolicyResult.allowed`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from types import MappingProxyType
from typing import Final, Literal

from .specs import IMPLEMENTED_TOOLS

__all__ = [
    "CATALOG",
    "CATALOG_IMPLEMENTED",
    "CATALOG_NAMES",
    "CHANNEL_TOOL_IDS",
    "SANDBOX_DEFAULT_ALLOW",
    "SANDBOX_DEFAULT_DENY",
    "SUBAGENT_DENY_ALWAYS",
    "SUBAGENT_DENY_LEAF",
    "TOOL_ALIASES",
    "TOOL_GROUPS",
    "TOOL_PROFILES",
    "ToolInfo",
    "ToolProfileName",
    "glob_regex",
    "normalize_tool_name",
    "tool_info",
]

ToolProfileName = Literal["minimal", "coding", "messaging", "full"]


@dataclass(frozen=True, slots=True)
class ToolInfo:
    """One known tool: its canonical (lower-case) name, a one-line description, its groups
    (without `group:openclaw`, which holds every catalog tool) and whether clawmesh runs it."""

    name: str
    description: str
    groups: tuple[str, ...]

    @property
    def implemented(self) -> bool:
        return self.name in IMPLEMENTED_TOOLS


CATALOG: Final[tuple[ToolInfo, ...]] = (
    # group:fs — OpenClaw's read, write, edit, apply_patch. clawmesh adds its own read-only `ls`
    # and `glob` to group:fs (and so to the `coding` profile and the sandbox default allow-list,
    # next to `read`): they list what `read` could already open.
    ToolInfo("read", "Read a file from the workspace.", ("group:fs",)),
    ToolInfo("write", "Create or overwrite a file in the workspace.", ("group:fs",)),
    ToolInfo("edit", "Replace exact text in a workspace file.", ("group:fs",)),
    ToolInfo("apply_patch", "Apply a multi-file patch to the workspace.", ("group:fs",)),
    ToolInfo("ls", "List a directory in the workspace (clawmesh).", ("group:fs",)),
    ToolInfo("glob", "Find workspace files by glob pattern (clawmesh).", ("group:fs",)),
    # group:runtime (`bash` is an alias of exec)
    ToolInfo("exec", "Run a shell command (on the gateway, a node or in the sandbox).", ("group:runtime",)),
    ToolInfo("process", "Manage background exec sessions (poll, write, kill).", ("group:runtime",)),
    ToolInfo("code_execution", "Run code in a provider-hosted code interpreter.", ("group:runtime",)),
    # group:sessions (§4.3)
    ToolInfo("sessions_list", "List sessions visible to this session.", ("group:sessions",)),
    ToolInfo("sessions_history", "Read another session's transcript (sanitised).", ("group:sessions",)),
    ToolInfo("sessions_send", "Send a message to another session and optionally wait.", ("group:sessions",)),
    ToolInfo("sessions_spawn", "Start a sub-agent run that announces its result back.", ("group:sessions",)),
    ToolInfo("sessions_yield", "End the turn and wait for spawned sub-agents.", ("group:sessions",)),
    ToolInfo("subagents", "List, steer or kill this session's sub-agents.", ("group:sessions",)),
    ToolInfo("session_status", "Show the session's status card; set a model override.", ("group:sessions",)),
    # group:agents
    ToolInfo("agents_list", "List agent ids this agent may target with sessions_spawn.", ("group:agents",)),
    # group:memory
    ToolInfo("memory_search", "Search the agent's memory files.", ("group:memory",)),
    ToolInfo("memory_get", "Read lines from a memory file.", ("group:memory",)),
    # group:web
    ToolInfo("web_search", "Search the web.", ("group:web",)),
    ToolInfo("web_fetch", "Fetch a URL and extract readable content.", ("group:web",)),
    # group:ui
    ToolInfo("browser", "Drive a browser (navigate, snapshot, act).", ("group:ui",)),
    ToolInfo("canvas", "Present and control the node canvas.", ("group:ui",)),
    # group:automation
    ToolInfo("cron", "Manage scheduled jobs and wake-ups.", ("group:automation",)),
    ToolInfo("gateway", "Inspect, configure and restart the gateway.", ("group:automation",)),
    # group:messaging
    ToolInfo("message", "Send and act on channel messages.", ("group:messaging",)),
    # group:nodes
    ToolInfo("nodes", "Discover and command paired nodes (camera, screen, run).", ("group:nodes",)),
    # group:media: `image` is named by the coding profile and the sandbox defaults; `tts` is
    # OpenClaw's text-to-speech tool. Other media tools are left out until clawmesh needs them.
    ToolInfo("image", "Analyse an image with the image model.", ("group:media",)),
    ToolInfo("tts", "Convert text to speech.", ("group:media",)),
)

CATALOG_NAMES: Final[tuple[str, ...]] = tuple(t.name for t in CATALOG)
CATALOG_IMPLEMENTED: Final[frozenset[str]] = frozenset(t.name for t in CATALOG if t.implemented)

_BY_NAME: Final[Mapping[str, ToolInfo]] = MappingProxyType({t.name: t for t in CATALOG})


def _group(name: str) -> tuple[str, ...]:
    return tuple(t.name for t in CATALOG if name in t.groups)


TOOL_GROUPS: Final[Mapping[str, tuple[str, ...]]] = MappingProxyType(
    {
        **{
            g: _group(g)
            for g in (
                "group:fs",
                "group:runtime",
                "group:sessions",
                "group:agents",
                "group:memory",
                "group:web",
                "group:ui",
                "group:automation",
                "group:messaging",
                "group:nodes",
                "group:media",
            )
        },
        "group:openclaw": CATALOG_NAMES,
    }
)

TOOL_ALIASES: Final[Mapping[str, str]] = MappingProxyType({"bash": "exec", "apply-patch": "apply_patch"})

# `full` is no restriction (None), the same as no profile.
TOOL_PROFILES: Final[Mapping[str, tuple[str, ...] | None]] = MappingProxyType(
    {
        "minimal": ("session_status",),
        "coding": ("group:fs", "group:runtime", "group:sessions", "group:memory", "image"),
        "messaging": (
            "group:messaging",
            "sessions_list",
            "sessions_history",
            "sessions_send",
            "session_status",
        ),
        "full": None,
    }
)

# Channel ids: OpenClaw's sandbox default deny names "every channel id" (channel action tools).
CHANNEL_TOOL_IDS: Final[tuple[str, ...]] = (
    "telegram",
    "whatsapp",
    "discord",
    "irc",
    "googlechat",
    "slack",
    "signal",
    "imessage",
)

# OpenClaw's DEFAULT_TOOL_ALLOW / DEFAULT_TOOL_DENY for sandboxed sessions. clawmesh's `ls` and
# `glob` are added next to `read` (read-only file tools of group:fs).
SANDBOX_DEFAULT_ALLOW: Final[tuple[str, ...]] = (
    "exec",
    "process",
    "read",
    "write",
    "edit",
    "apply_patch",
    "ls",
    "glob",
    "image",
    "sessions_list",
    "sessions_history",
    "sessions_send",
    "sessions_spawn",
    "sessions_yield",
    "subagents",
    "session_status",
)
SANDBOX_DEFAULT_DENY: Final[tuple[str, ...]] = (
    "browser",
    "canvas",
    "nodes",
    "cron",
    "gateway",
    *CHANNEL_TOOL_IDS,
)

# Sub-agent defaults (OpenClaw `tools/subagents.md`, "Tool policy"): every sub-agent loses the
# session/system tools below; a leaf (depth ≥ maxSpawnDepth) also loses the orchestration tools,
# so "leaves get no session tools" while depth-1 orchestrators keep sessions_spawn, subagents,
# sessions_list and sessions_history (and sessions_yield, to wait for their children).
SUBAGENT_DENY_ALWAYS: Final[tuple[str, ...]] = (
    "sessions_send",
    "session_status",
    "agents_list",
    "gateway",
    "cron",
    "memory_search",
    "memory_get",
)
SUBAGENT_DENY_LEAF: Final[tuple[str, ...]] = (
    "sessions_spawn",
    "subagents",
    "sessions_list",
    "sessions_history",
    "sessions_yield",
)


def normalize_tool_name(name: str) -> str:
    """Trimmed, lower-cased, aliases resolved (`Bash` → `exec`)."""
    key = name.strip().lower()
    return TOOL_ALIASES.get(key, key)


def tool_info(name: str) -> ToolInfo | None:
    """The catalog entry for a tool name (any case, aliases resolved), or None."""
    return _BY_NAME.get(normalize_tool_name(name))


@lru_cache(maxsize=256)
def glob_regex(pattern: str) -> re.Pattern[str]:
    """A `*` glob (already normalised) as an anchored regex; `*` matches any run of characters."""
    return re.compile("^" + ".*".join(re.escape(part) for part in pattern.split("*")) + "$")
