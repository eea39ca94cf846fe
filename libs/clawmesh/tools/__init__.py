"""Agent tools: the catalog of tool names and OpenClaw's tool policy.

from clawmesh.tools import effective_tools
effective_tools(config, "work", sandboxed=True).allows("exec")
"""

from .catalog import (
    CATALOG,
    CATALOG_NAMES,
    SANDBOX_DEFAULT_ALLOW,
    SANDBOX_DEFAULT_DENY,
    SUBAGENT_DENY_ALWAYS,
    SUBAGENT_DENY_LEAF,
    TOOL_ALIASES,
    TOOL_GROUPS,
    TOOL_PROFILES,
    ToolInfo,
    normalize_tool_name,
    tool_info,
)
from .http_surface import HTTP_DEFAULT_DENY, HTTP_NOT_OFFERED, http_tool_refusal
from .policy import (
    DEFAULT_MAX_SPAWN_DEPTH,
    Removal,
    ToolPolicyResult,
    UnknownAgentError,
    effective_tools,
    expand,
    max_spawn_depth,
)

__all__ = [
    "CATALOG",
    "CATALOG_NAMES",
    "DEFAULT_MAX_SPAWN_DEPTH",
    "HTTP_DEFAULT_DENY",
    "HTTP_NOT_OFFERED",
    "SANDBOX_DEFAULT_ALLOW",
    "SANDBOX_DEFAULT_DENY",
    "SUBAGENT_DENY_ALWAYS",
    "SUBAGENT_DENY_LEAF",
    "TOOL_ALIASES",
    "TOOL_GROUPS",
    "TOOL_PROFILES",
    "Removal",
    "ToolInfo",
    "ToolPolicyResult",
    "UnknownAgentError",
    "effective_tools",
    "expand",
    "http_tool_refusal",
    "max_spawn_depth",
    "normalize_tool_name",
    "tool_info",
]
