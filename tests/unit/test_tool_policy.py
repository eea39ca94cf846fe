"""OpenClaw's tool policy (`clawmesh.tools.effective_tools`): every stage, group and rule, as tables."""

from __future__ import annotations

from typing import Any

import pytest

from clawmesh.checks import default_checks
from clawmesh.config import Config, parse_config
from clawmesh.tools import (
    CATALOG,
    CATALOG_NAMES,
    DEFAULT_MAX_SPAWN_DEPTH,
    SANDBOX_DEFAULT_ALLOW,
    SANDBOX_DEFAULT_DENY,
    SUBAGENT_DENY_ALWAYS,
    SUBAGENT_DENY_LEAF,
    TOOL_GROUPS,
    TOOL_PROFILES,
    Removal,
    UnknownAgentError,
    effective_tools,
    expand,
    normalize_tool_name,
    tool_info,
)
from clawmesh.tools.catalog import CATALOG_IMPLEMENTED, CHANNEL_TOOL_IDS

# The expected sets are written out literally (not taken from the library's constants), so that
# any change to a security default (what a sandboxed session or a sub-agent may use) is a visible
# diff here. Sources: shared/reference/openclaw-behaviour.md §4.1, §4.3, §5.2, and OpenClaw's
# docs `tools/subagents.md` for the sub-agent deny list.

# Every tool the policy knows, in catalog order.
CATALOG_ORDER = (
    "read",
    "write",
    "edit",
    "apply_patch",
    "ls",
    "glob",
    "exec",
    "process",
    "code_execution",
    "sessions_list",
    "sessions_history",
    "sessions_send",
    "sessions_spawn",
    "sessions_yield",
    "subagents",
    "session_status",
    "agents_list",
    "memory_search",
    "memory_get",
    "web_search",
    "web_fetch",
    "browser",
    "canvas",
    "cron",
    "gateway",
    "message",
    "nodes",
    "image",
    "tts",
)
ALL = frozenset(CATALOG_ORDER)
FS = frozenset({"read", "write", "edit", "apply_patch", "ls", "glob"})
RUNTIME = frozenset({"exec", "process", "code_execution"})
SESSIONS = frozenset(
    {
        "sessions_list",
        "sessions_history",
        "sessions_send",
        "sessions_spawn",
        "sessions_yield",
        "subagents",
        "session_status",
    }
)
MEMORY = frozenset({"memory_search", "memory_get"})
CODING = FS | RUNTIME | SESSIONS | MEMORY | {"image"}
MESSAGING = frozenset({"message", "sessions_list", "sessions_history", "sessions_send", "session_status"})
CHANNELS = frozenset({"telegram", "whatsapp", "discord", "irc", "googlechat", "slack", "signal", "imessage"})
# OpenClaw's DEFAULT_TOOL_ALLOW (§5.2), plus clawmesh's read-only `ls` and `glob` next to `read`.
SANDBOX_ALLOW = frozenset(
    {
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
    }
)
# OpenClaw's DEFAULT_TOOL_DENY (§5.2): browser, canvas, nodes, cron, gateway and every channel id.
SANDBOX_DENY = frozenset({"browser", "canvas", "nodes", "cron", "gateway"}) | CHANNELS
# Every sub-agent loses the session and system tools (OpenClaw `tools/subagents.md`) …
SUB_ALWAYS = frozenset(
    {"sessions_send", "session_status", "agents_list", "gateway", "cron", "memory_search", "memory_get"}
)
# … and a leaf (depth ≥ maxSpawnDepth) also the orchestration tools: "leaves get no session tools" (§4.1).
SUB_LEAF = frozenset({"sessions_spawn", "subagents", "sessions_list", "sessions_history", "sessions_yield"})


def config(tools: dict[str, Any] | None = None, agent: dict[str, Any] | None = None, **extra: Any) -> Config:
    """Agent `a` (model anthropic/claude-x) with `agent` as its `tools`, and `tools` as the global."""
    data: dict[str, Any] = {
        "agents": {
            "list": [{"id": "a", "model": "anthropic/claude-x", **({"tools": agent} if agent else {})}]
        },
        **extra,
    }
    if tools is not None:
        data["tools"] = tools
    return parse_config(data, env={}, checks=default_checks())


def allowed(cfg: Config, **kw: Any) -> frozenset[str]:
    return frozenset(effective_tools(cfg, "a", **kw).allowed)


def removal(cfg: Config, tool: str, **kw: Any) -> tuple[str, str]:
    found = effective_tools(cfg, "a", **kw).removal(tool)
    assert found is not None, f"{tool} is allowed"
    return found.stage, found.rule


# --- catalog and groups ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("group", "members"),
    [
        ("group:fs", FS),
        ("group:runtime", RUNTIME),
        ("group:sessions", SESSIONS),
        ("group:agents", {"agents_list"}),
        ("group:memory", MEMORY),
        ("group:web", {"web_search", "web_fetch"}),
        ("group:ui", {"browser", "canvas"}),
        ("group:automation", {"cron", "gateway"}),
        ("group:messaging", {"message"}),
        ("group:nodes", {"nodes"}),
        ("group:media", {"image", "tts"}),
        ("group:openclaw", ALL),
    ],
)
def test_every_group_as_allow_and_deny(group: str, members: set[str]) -> None:
    assert set(TOOL_GROUPS[group]) == set(members)
    assert allowed(config({"allow": [group]})) == members
    assert allowed(config({"deny": [group]})) == ALL - members
    assert expand([group]) == set(members)


def test_every_group_is_covered_and_every_tool_is_grouped() -> None:
    assert set(TOOL_GROUPS) == {
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
        "group:openclaw",
    }
    for info in CATALOG:
        assert info.groups, info.name
        assert info.name == info.name.lower() and info.description
    assert len(set(CATALOG_NAMES)) == len(CATALOG_NAMES)


def test_catalog_and_security_defaults_are_the_documented_lists() -> None:
    # The library's public constants must be exactly the literal lists above; a tool added to or
    # removed from a default shows up here as a diff, not only as a changed expectation.
    assert CATALOG_NAMES == CATALOG_ORDER
    assert frozenset(SANDBOX_DEFAULT_ALLOW) == SANDBOX_ALLOW
    assert len(SANDBOX_DEFAULT_ALLOW) == len(SANDBOX_ALLOW)
    assert frozenset(SANDBOX_DEFAULT_DENY) == SANDBOX_DENY
    assert frozenset(CHANNEL_TOOL_IDS) == CHANNELS
    assert frozenset(SUBAGENT_DENY_ALWAYS) == SUB_ALWAYS
    assert frozenset(SUBAGENT_DENY_LEAF) == SUB_LEAF
    assert DEFAULT_MAX_SPAWN_DEPTH == 5
    for members in TOOL_PROFILES.values():
        assert expand(members or ()) <= ALL


@pytest.mark.parametrize(
    ("kw", "expected"),
    [
        # a sandboxed session, with no tool policy configured
        (
            {"sandboxed": True},
            {
                "read",
                "write",
                "edit",
                "apply_patch",
                "ls",
                "glob",
                "exec",
                "process",
                "sessions_list",
                "sessions_history",
                "sessions_send",
                "sessions_spawn",
                "sessions_yield",
                "subagents",
                "session_status",
                "image",
            },
        ),
        # a depth-1 sub-agent (an orchestrator under the default maxSpawnDepth 5)
        (
            {"subagent": True},
            {
                "read",
                "write",
                "edit",
                "apply_patch",
                "ls",
                "glob",
                "exec",
                "process",
                "code_execution",
                "sessions_list",
                "sessions_history",
                "sessions_spawn",
                "sessions_yield",
                "subagents",
                "web_search",
                "web_fetch",
                "browser",
                "canvas",
                "message",
                "nodes",
                "image",
                "tts",
            },
        ),
        # a leaf sub-agent: no session tools at all
        (
            {"subagent": True, "spawn_depth": 5},
            {
                "read",
                "write",
                "edit",
                "apply_patch",
                "ls",
                "glob",
                "exec",
                "process",
                "code_execution",
                "web_search",
                "web_fetch",
                "browser",
                "canvas",
                "message",
                "nodes",
                "image",
                "tts",
            },
        ),
        # a sandboxed leaf sub-agent
        (
            {"sandboxed": True, "subagent": True, "spawn_depth": 5},
            {"read", "write", "edit", "apply_patch", "ls", "glob", "exec", "process", "image"},
        ),
    ],
)
def test_default_tool_sets_written_out(kw: dict[str, Any], expected: set[str]) -> None:
    assert allowed(config(), **kw) == expected


def test_implemented_tools() -> None:
    assert {
        "exec",
        "read",
        "write",
        "edit",
        "ls",
        "glob",
        "sessions_spawn",
        "sessions_send",
        "sessions_list",
        "sessions_history",
        "session_status",
        "agents_list",
        "web_fetch",
        "apply_patch",
        "message",
        "process",
    } == CATALOG_IMPLEMENTED
    info = tool_info("BASH")
    assert info is not None and info.name == "exec" and info.implemented
    assert tool_info("nosuch") is None


def test_implemented_tools_match_the_tool_specs() -> None:
    specs = pytest.importorskip("clawmesh.tools.specs")
    assert set(specs.IMPLEMENTED_TOOLS) == CATALOG_IMPLEMENTED


def test_expand() -> None:
    assert expand(["exe*", "Group:UI", "Bash", "apply-patch", "nosuch", " ", ""]) == {
        "exec",
        "browser",
        "canvas",
        "apply_patch",
        "nosuch",
    }
    assert expand(["*"]) == ALL
    assert expand(["memory_*"]) == MEMORY
    assert expand(["zz*"]) == set()
    assert normalize_tool_name("  BaSh ") == "exec"


# --- profiles -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("profile", "expected"),
    [
        ("minimal", {"session_status"}),
        ("coding", CODING),
        ("messaging", MESSAGING),
        ("full", ALL),
        (None, ALL),
    ],
)
def test_profiles(profile: str | None, expected: set[str]) -> None:
    tools = {"profile": profile} if profile else {}
    assert allowed(config(tools)) == expected
    assert allowed(config(agent=tools or None)) == expected


def test_profile_removal_names_the_profile() -> None:
    assert removal(config({"profile": "coding"}), "browser") == ("tools.profile", "not in profile 'coding'")
    assert removal(config(agent={"profile": "minimal"}), "read") == (
        "agents.list[0].tools.profile",
        "not in profile 'minimal'",
    )


@pytest.mark.parametrize(
    ("tools", "agent", "expected"),
    [
        # the agent's profile replaces the global one, `full` included
        ({"profile": "minimal"}, {"profile": "full"}, ALL),
        ({"profile": "full"}, {"profile": "minimal"}, {"session_status"}),
        ({"profile": "coding"}, {"profile": "messaging"}, MESSAGING),
        # a global profile still applies when the agent sets none
        ({"profile": "minimal"}, {"deny": ["exec"]}, {"session_status"}),
    ],
)
def test_agent_profile_replaces_global(
    tools: dict[str, Any], agent: dict[str, Any], expected: set[str]
) -> None:
    assert allowed(config(tools, agent)) == expected


@pytest.mark.parametrize(
    ("tools", "agent", "expected"),
    [
        # allow cannot re-grant what the profile removed
        ({"profile": "coding", "allow": ["read", "web_search"]}, None, {"read"}),
        ({"profile": "minimal"}, {"allow": ["read", "session_status"]}, {"session_status"}),
        # profile ∩ allow
        ({"profile": "coding", "allow": ["group:fs", "group:web"]}, None, FS),
        # the profile narrows an agent allow-list too
        ({"profile": "messaging"}, {"allow": ["*"]}, MESSAGING),
    ],
)
def test_profile_and_allow_interplay(
    tools: dict[str, Any], agent: dict[str, Any] | None, expected: set[str]
) -> None:
    assert allowed(config(tools, agent)) == expected


def test_profile_vs_allow_removal_stage() -> None:
    cfg = config({"profile": "coding", "allow": ["read"]})
    assert removal(cfg, "web_search") == ("tools.profile", "not in profile 'coding'")
    assert removal(cfg, "write") == ("tools.allow", "not in allow-list")


# --- alsoAllow ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tools", "agent", "expected"),
    [
        # adds to the profile's allow-list
        ({"profile": "coding", "alsoAllow": ["web_search"]}, None, CODING | {"web_search"}),
        (
            {"profile": "minimal", "alsoAllow": ["group:web", "Bash"]},
            None,
            {"session_status", "web_search", "web_fetch", "exec"},
        ),
        # alone it restricts nothing
        ({"alsoAllow": ["web_search"]}, None, ALL),
        # adds to the stage's allow-list
        ({"allow": ["read"], "alsoAllow": ["exec"]}, None, {"read", "exec"}),
        (None, {"allow": ["read"], "alsoAllow": ["exec"]}, {"read", "exec"}),
        # the agent's alsoAllow replaces the global one for the profile
        (
            {"profile": "minimal", "alsoAllow": ["read"]},
            {"alsoAllow": ["write"]},
            {"session_status", "write"},
        ),
        ({"profile": "minimal", "alsoAllow": ["read"]}, {"deny": ["cron"]}, {"session_status", "read"}),
        # the agent's profile takes the global alsoAllow when it has none of its own
        ({"alsoAllow": ["read"]}, {"profile": "minimal"}, {"session_status", "read"}),
        # deny still wins over alsoAllow
        ({"profile": "minimal", "alsoAllow": ["read"], "deny": ["read"]}, None, {"session_status"}),
        # alsoAllow does not re-grant across stages
        ({"allow": ["read"]}, {"alsoAllow": ["exec"]}, {"read"}),
    ],
)
def test_also_allow(tools: dict[str, Any] | None, agent: dict[str, Any] | None, expected: set[str]) -> None:
    assert allowed(config(tools, agent)) == expected


# --- allow/deny, deny wins, no re-grant, globs, case, aliases ------------------------------


@pytest.mark.parametrize(
    ("tools", "agent", "expected"),
    [
        ({"allow": ["read", "exec"]}, None, {"read", "exec"}),
        ({"allow": []}, None, ALL),  # empty allow = everything
        ({"deny": []}, None, ALL),
        ({"allow": ["exec"], "deny": ["exec"]}, None, set()),  # deny wins within a stage
        ({"allow": ["group:runtime"], "deny": ["process"]}, None, {"exec", "code_execution"}),
        ({"deny": ["exec"]}, {"allow": ["exec", "read"]}, {"read"}),  # deny wins across stages
        ({"allow": ["read"]}, {"allow": ["read", "exec"]}, {"read"}),  # a later stage never re-grants
        ({"allow": ["read", "exec"]}, {"allow": ["exec", "write"]}, {"exec"}),  # allow-lists intersect
        (None, {"allow": ["read"], "deny": ["read"]}, set()),
        # globs
        ({"deny": ["exe*"]}, None, ALL - {"exec"}),
        ({"allow": ["*"]}, None, ALL),
        ({"deny": ["*"]}, None, set()),
        ({"allow": ["sessions_*"]}, None, {t for t in SESSIONS if t.startswith("sessions_")}),
        ({"allow": ["*_get", "web_*"]}, None, {"memory_get", "web_search", "web_fetch"}),
        ({"deny": ["*e*"]}, None, {t for t in ALL if "e" not in t}),
        # case-insensitive
        ({"allow": ["READ", "Group:Runtime"]}, None, {"read"} | RUNTIME),
        ({"deny": ["EXEC", "GROUP:FS"]}, None, ALL - FS - {"exec"}),
        ({"allow": ["Exe*"]}, None, {"exec"}),
        # aliases
        ({"deny": ["bash"]}, None, ALL - {"exec"}),
        ({"allow": ["BASH", "apply-patch"]}, None, {"exec", "apply_patch"}),
    ],
)
def test_allow_deny(tools: dict[str, Any] | None, agent: dict[str, Any] | None, expected: set[str]) -> None:
    assert allowed(config(tools, agent)) == expected


def test_allows_is_case_insensitive_and_resolves_aliases() -> None:
    result = effective_tools(config({"allow": ["exec", "read"]}), "a")
    assert (
        result.allows("exec") and result.allows("EXEC") and result.allows("bash") and result.allows(" Bash ")
    )
    assert result.allows("Read")
    assert not result.allows("write") and not result.allows("nosuch")
    denied = effective_tools(config({"deny": ["Bash"]}), "a")
    assert not denied.allows("bash") and not denied.allows("exec")
    assert denied.removal("BASH") == Removal("exec", "tools.deny", "Bash")


def test_deny_rule_is_reported_as_written() -> None:
    cfg = config({"deny": ["Exe*", "group:UI"]}, {"deny": ["GROUP:runtime"]})
    assert removal(cfg, "exec") == ("tools.deny", "Exe*")
    assert removal(cfg, "canvas") == ("tools.deny", "group:UI")
    assert removal(cfg, "process") == ("agents.list[0].tools.deny", "GROUP:runtime")


# --- byProvider -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("by_provider", "kw", "expected"),
    [
        # keyed by provider (the agent's primary model is anthropic/claude-x)
        ({"anthropic": {"deny": ["exec"]}}, {}, ALL - {"exec"}),
        ({"Anthropic": {"deny": ["exec"]}}, {}, ALL - {"exec"}),  # keys are case-insensitive
        ({"openai": {"deny": ["exec"]}}, {}, ALL),
        ({"openai": {"deny": ["exec"]}}, {"provider": "openai"}, ALL - {"exec"}),
        ({"openai": {"deny": ["exec"]}}, {"model": "openai/gpt-5"}, ALL - {"exec"}),
        ({"openai": {"deny": ["exec"]}}, {"provider": "OpenAI", "model": "gpt-5"}, ALL - {"exec"}),
        # keyed by provider/model: the specific entry wins outright (no merge)
        ({"anthropic": {"deny": ["exec"]}, "anthropic/claude-x": {"deny": ["read"]}}, {}, ALL - {"read"}),
        ({"anthropic": {"deny": ["exec"]}, "Anthropic/Claude-X": {"deny": ["read"]}}, {}, ALL - {"read"}),
        (
            {"anthropic": {"deny": ["exec"]}, "anthropic/claude-x": {"deny": ["read"]}},
            {"model": "anthropic/claude-y"},
            ALL - {"exec"},
        ),
        # allow-lists and profiles
        ({"anthropic": {"allow": ["read", "exec"]}}, {}, {"read", "exec"}),
        ({"anthropic": {"allow": ["read"], "alsoAllow": ["write"]}}, {}, {"read", "write"}),
        ({"anthropic": {"profile": "minimal"}}, {}, {"session_status"}),
        ({"anthropic": {"profile": "minimal", "alsoAllow": ["read"]}}, {}, {"session_status", "read"}),
        ({"anthropic": {"profile": "full"}}, {}, ALL),
    ],
)
def test_by_provider(by_provider: dict[str, Any], kw: dict[str, Any], expected: set[str]) -> None:
    assert allowed(config({"byProvider": by_provider}), **kw) == expected
    assert allowed(config(agent={"byProvider": by_provider}), **kw) == expected


def test_by_provider_labels() -> None:
    cfg = config(
        {"byProvider": {"anthropic": {"deny": ["exec"]}, "anthropic/claude-x": {"profile": "coding"}}}
    )
    assert removal(cfg, "browser") == (
        "tools.byProvider['anthropic/claude-x'].profile",
        "not in profile 'coding'",
    )
    cfg = config({"byProvider": {"anthropic": {"deny": ["exec"], "allow": ["exec", "read"]}}})
    assert removal(cfg, "exec") == ("tools.byProvider.anthropic.deny", "exec")
    assert removal(cfg, "write") == ("tools.byProvider.anthropic.allow", "not in allow-list")
    cfg = config(agent={"byProvider": {"anthropic": {"deny": ["group:fs"]}}})
    assert removal(cfg, "ls") == ("agents.list[0].tools.byProvider.anthropic.deny", "group:fs")


def test_provider_profile_after_profile_and_agent_provider_profile_first() -> None:
    # the global profile is applied first; the provider profile narrows it further
    cfg = config({"profile": "coding", "byProvider": {"anthropic": {"profile": "minimal"}}})
    assert allowed(cfg) == {"session_status"}
    assert removal(cfg, "browser")[0] == "tools.profile"
    assert removal(cfg, "read")[0] == "tools.byProvider.anthropic.profile"
    # the agent's provider profile replaces the global provider profile
    cfg = config(
        {"byProvider": {"anthropic": {"profile": "minimal"}}},
        {"byProvider": {"anthropic": {"profile": "coding"}}},
    )
    assert allowed(cfg) == CODING


# --- removed names the first stage ----------------------------------------------------------


@pytest.mark.parametrize(
    ("tools", "agent", "kw", "tool", "stage", "rule"),
    [
        (
            {"profile": "coding", "deny": ["browser"]},
            None,
            {},
            "browser",
            "tools.profile",
            "not in profile 'coding'",
        ),
        (
            {"deny": ["exec"], "byProvider": {"anthropic": {"deny": ["exec"]}}},
            {"deny": ["exec"]},
            {},
            "exec",
            "tools.deny",
            "exec",
        ),
        (
            {"byProvider": {"anthropic": {"deny": ["exec"]}}},
            {"deny": ["exec"]},
            {},
            "exec",
            "tools.byProvider.anthropic.deny",
            "exec",
        ),
        (
            None,
            {"deny": ["exec"], "byProvider": {"anthropic": {"deny": ["exec"]}}},
            {},
            "exec",
            "agents.list[0].tools.deny",
            "exec",
        ),
        (
            {"byProvider": {"anthropic": {"profile": "minimal"}}, "deny": ["read"]},
            None,
            {},
            "read",
            "tools.byProvider.anthropic.profile",
            "not in profile 'minimal'",
        ),
        (
            {"sandbox": {"tools": {"deny": ["exec"]}}},
            {"byProvider": {"anthropic": {"deny": ["exec"]}}},
            {"sandboxed": True},
            "exec",
            "agents.list[0].tools.byProvider.anthropic.deny",
            "exec",
        ),
        (
            {"sandbox": {"tools": {"deny": ["exec"]}}, "subagents": {"tools": {"deny": ["exec"]}}},
            None,
            {"sandboxed": True, "subagent": True},
            "exec",
            "tools.sandbox.tools.deny",
            "exec",
        ),
        (None, None, {"sandboxed": True, "subagent": True}, "cron", "sandbox defaults (deny)", "cron"),
        (
            None,
            None,
            {"sandboxed": True, "subagent": True},
            "memory_get",
            "sandbox defaults (allow)",
            "not in allow-list",
        ),
        (None, None, {"subagent": True}, "memory_get", "sub-agent defaults (deny)", "memory_get"),
    ],
)
def test_removed_names_the_first_stage(
    tools: dict[str, Any] | None,
    agent: dict[str, Any] | None,
    kw: dict[str, Any],
    tool: str,
    stage: str,
    rule: str,
) -> None:
    assert removal(config(tools, agent), tool, **kw) == (stage, rule)


def test_removed_covers_every_other_candidate_in_catalog_order() -> None:
    cfg = config({"profile": "coding", "deny": ["exec"]}, {"deny": ["write"]})
    result = effective_tools(cfg, "a", sandboxed=True, subagent=True)
    removed = [r.tool for r in result.removed]
    assert set(result.allowed).isdisjoint(removed)
    assert set(result.allowed) | set(removed) == ALL
    order = {name: i for i, name in enumerate(CATALOG_ORDER)}
    assert list(result.allowed) == sorted(result.allowed, key=order.__getitem__)
    assert removed == sorted(removed, key=order.__getitem__)


def test_agents_entries_label() -> None:
    cfg = parse_config(
        {"agents": {"entries": {"work": {"tools": {"deny": ["exec"]}}}}}, env={}, checks=default_checks()
    )
    assert effective_tools(cfg, "work").removal("exec") == Removal(
        "exec", "agents.entries.work.tools.deny", "exec"
    )


# --- sandbox --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tools", "agent", "expected"),
    [
        # OpenClaw's DEFAULT_TOOL_ALLOW / DEFAULT_TOOL_DENY (plus clawmesh's ls and glob)
        (None, None, SANDBOX_ALLOW),
        # allow: [] = allow all; the default deny still applies
        ({"sandbox": {"tools": {"allow": []}}}, None, ALL - SANDBOX_DENY),
        ({"sandbox": {"tools": {"allow": [], "deny": []}}}, None, ALL),
        # an explicit allow-list (image is added unless denied)
        ({"sandbox": {"tools": {"allow": ["read", "exec"]}}}, None, {"read", "exec", "image"}),
        ({"sandbox": {"tools": {"allow": ["read"], "deny": ["image"]}}}, None, {"read"}),
        ({"sandbox": {"tools": {"allow": ["read"], "deny": ["IMA*"]}}}, None, {"read"}),
        # an explicit allow entry lifts the matching default deny
        ({"sandbox": {"tools": {"allow": ["read", "browser"]}}}, None, {"read", "browser", "image"}),
        (
            {"sandbox": {"tools": {"allow": ["group:ui", "group:automation"]}}},
            None,
            {"browser", "canvas", "cron", "gateway", "image"},
        ),
        # … but not when deny is configured, and not through a glob
        (
            {"sandbox": {"tools": {"allow": ["read", "browser"], "deny": ["browser"]}}},
            None,
            {"read", "image"},
        ),
        ({"sandbox": {"tools": {"allow": ["*"]}}}, None, ALL - SANDBOX_DENY),
        # alsoAllow extends the (default) allow-list and lifts the default deny
        (
            {"sandbox": {"tools": {"alsoAllow": ["browser", "web_search"]}}},
            None,
            SANDBOX_ALLOW | {"browser", "web_search"},
        ),
        (
            {"sandbox": {"tools": {"allow": ["read"], "alsoAllow": ["nodes"]}}},
            None,
            {"read", "nodes", "image"},
        ),
        # a configured deny replaces the default deny
        ({"sandbox": {"tools": {"deny": ["exec"]}}}, None, SANDBOX_ALLOW - {"exec"}),
        # agents.list[].tools.sandbox.tools replaces the global one, key by key
        (
            {"sandbox": {"tools": {"allow": ["read"]}}},
            {"sandbox": {"tools": {"allow": ["exec"]}}},
            {"exec", "image"},
        ),
        (
            {"sandbox": {"tools": {"deny": ["exec"]}}},
            {"sandbox": {"tools": {"deny": ["read"]}}},
            SANDBOX_ALLOW - {"read"},
        ),
        (
            {"sandbox": {"tools": {"allow": ["read", "exec"]}}},
            {"sandbox": {"tools": {"deny": ["exec"]}}},
            {"read", "image"},
        ),
        (
            {"sandbox": {"tools": {"allow": ["read"]}}},
            {"sandbox": {"tools": {"allow": []}}},
            ALL - SANDBOX_DENY,
        ),
        # the sandbox stage narrows what earlier stages left
        ({"deny": ["exec"]}, None, SANDBOX_ALLOW - {"exec"}),
        ({"profile": "minimal", "sandbox": {"tools": {"allow": ["read"]}}}, None, set()),
    ],
)
def test_sandbox_stage(
    tools: dict[str, Any] | None, agent: dict[str, Any] | None, expected: set[str]
) -> None:
    assert allowed(config(tools, agent), sandboxed=True) == expected


def test_sandbox_only_when_sandboxed() -> None:
    cfg = config({"sandbox": {"tools": {"allow": ["read"]}}})
    assert allowed(cfg) == ALL
    assert allowed(cfg, sandboxed=True) == {"read", "image"}


def test_sandbox_labels() -> None:
    assert removal(config(), "browser", sandboxed=True) == ("sandbox defaults (deny)", "browser")
    assert removal(config(), "web_fetch", sandboxed=True) == ("sandbox defaults (allow)", "not in allow-list")
    cfg = config({"sandbox": {"tools": {"allow": ["read"], "deny": ["image"]}}})
    assert removal(cfg, "image", sandboxed=True) == ("tools.sandbox.tools.deny", "image")
    assert removal(cfg, "exec", sandboxed=True) == ("tools.sandbox.tools.allow", "not in allow-list")
    cfg = config({"sandbox": {"tools": {"allow": ["read"]}}}, {"sandbox": {"tools": {"allow": ["write"]}}})
    assert removal(cfg, "read", sandboxed=True) == (
        "agents.list[0].tools.sandbox.tools.allow",
        "not in allow-list",
    )


def test_sandbox_default_deny_covers_channel_tools() -> None:
    cfg = config()
    result = effective_tools(cfg, "a", sandboxed=True, tools=["read", "telegram", "Discord"])
    assert result.allowed == ("read",)
    assert result.removal("discord") == Removal("discord", "sandbox defaults (deny)", "discord")


# --- sub-agents -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tools", "agent", "kw", "expected"),
    [
        # a depth-1 sub-agent with the default maxSpawnDepth is an orchestrator
        (None, None, {}, ALL - SUB_ALWAYS),
        # at maxSpawnDepth it is a leaf: no session tools at all
        (None, None, {"spawn_depth": DEFAULT_MAX_SPAWN_DEPTH}, ALL - SUB_ALWAYS - SUB_LEAF),
        ({"deny": []}, None, {"spawn_depth": 99}, ALL - SUB_ALWAYS - SUB_LEAF),
        # configured deny adds to the defaults
        ({"subagents": {"tools": {"deny": ["exec"]}}}, None, {}, ALL - SUB_ALWAYS - {"exec"}),
        # configured allow makes an allow-list and lifts matching default denies
        ({"subagents": {"tools": {"allow": ["read", "exec"]}}}, None, {}, {"read", "exec"}),
        ({"subagents": {"tools": {"allow": ["read", "sessions_send"]}}}, None, {}, {"read", "sessions_send"}),
        (
            {"subagents": {"tools": {"alsoAllow": ["memory_search"]}}},
            None,
            {},
            ALL - SUB_ALWAYS | {"memory_search"},
        ),
        (
            {"subagents": {"tools": {"alsoAllow": ["group:sessions"]}}},
            None,
            {"spawn_depth": 5},
            ALL - (SUB_ALWAYS - SESSIONS),
        ),
        # … but a deny still wins
        ({"subagents": {"tools": {"allow": ["read", "exec"], "deny": ["exec"]}}}, None, {}, {"read"}),
        # the agent's tools.subagents.tools replaces the global one, key by key
        (
            {"subagents": {"tools": {"deny": ["exec"]}}},
            {"subagents": {"tools": {"deny": ["read"]}}},
            {},
            ALL - SUB_ALWAYS - {"read"},
        ),
        (
            {"subagents": {"tools": {"allow": ["read", "write"]}}},
            {"subagents": {"tools": {"deny": ["write"]}}},
            {},
            {"read"},
        ),
        # the sub-agent stage narrows what earlier stages left
        ({"profile": "coding"}, None, {}, CODING - SUB_ALWAYS),
    ],
)
def test_subagent_stage(
    tools: dict[str, Any] | None, agent: dict[str, Any] | None, kw: dict[str, Any], expected: set[str]
) -> None:
    assert allowed(config(tools, agent), subagent=True, **kw) == expected


def test_subagent_only_for_subagents() -> None:
    cfg = config({"subagents": {"tools": {"allow": ["read"]}}})
    assert allowed(cfg) == ALL
    assert allowed(cfg, subagent=True) == {"read"}
    assert removal(cfg, "exec", subagent=True) == ("tools.subagents.tools.allow", "not in allow-list")


@pytest.mark.parametrize(
    ("defaults", "agent_depth", "spawn_depth", "leaf"),
    [
        (None, None, 1, False),
        (None, None, 4, False),
        (None, None, 5, True),
        (1, None, 1, True),
        (2, None, 1, False),
        (2, None, 2, True),
        (2, 1, 1, True),  # the agent's maxSpawnDepth wins over the defaults'
        (1, 3, 2, False),
        (0, None, 1, True),  # clamped to 1..5
    ],
)
def test_subagent_leaf_depth(
    defaults: int | None, agent_depth: int | None, spawn_depth: int, leaf: bool
) -> None:
    data: dict[str, Any] = {"agents": {"list": [{"id": "a"}]}}
    if defaults is not None:
        data["agents"]["defaults"] = {"subagents": {"maxSpawnDepth": defaults}}
    if agent_depth is not None:
        data["agents"]["list"][0]["subagents"] = {"maxSpawnDepth": agent_depth}
    cfg = parse_config(data, env={}, checks=default_checks())
    result = effective_tools(cfg, "a", subagent=True, spawn_depth=spawn_depth)
    assert result.allows("sessions_spawn") is not leaf
    assert not result.allows("sessions_send")
    removed = result.removal("sessions_spawn")
    assert (removed == Removal("sessions_spawn", "sub-agent defaults (deny)", "sessions_spawn")) is leaf


# --- unknown names and candidates -----------------------------------------------------------


def test_unknown_names_match_nothing_and_are_reported() -> None:
    result = effective_tools(config({"deny": ["nosuch", "zz*", "group:nope"]}), "a")
    assert frozenset(result.allowed) == ALL
    assert result.warnings == (
        "tools.deny: 'nosuch' matches no known tool",
        "tools.deny: 'zz*' matches no known tool",
        "tools.deny: 'group:nope' matches no known tool",
    )
    # an allow-list of unknown names allows nothing
    result = effective_tools(config(agent={"allow": ["nosuch"]}), "a")
    assert result.allowed == ()
    assert result.removal("read") == Removal("read", "agents.list[0].tools.allow", "not in allow-list")
    assert result.warnings == ("agents.list[0].tools.allow: 'nosuch' matches no known tool",)
    assert effective_tools(config({"allow": ["group:fs"]}), "a").warnings == ()


def test_candidate_set() -> None:
    cfg = config({"deny": ["mcp_*"]}, {"allow": ["read", "exec", "mcp_search", "extra"]})
    result = effective_tools(cfg, "a", tools=["extra", "Bash", "read", "mcp_search", "write", "read"])
    assert result.allowed == ("read", "exec", "extra")  # catalog order, then the others as given
    assert [r.tool for r in result.removed] == ["write", "mcp_search"]
    assert result.removal("mcp_search") == Removal("mcp_search", "tools.deny", "mcp_*")
    assert result.warnings == ()  # names in the candidate set are known
    assert effective_tools(cfg, "a", tools=[]).allowed == ()


# --- API ------------------------------------------------------------------------------------


def test_unknown_agent() -> None:
    with pytest.raises(UnknownAgentError, match=r"unknown agent 'zed' \(configured: a\)"):
        effective_tools(config(), "zed")


def test_no_roster_uses_any_agent_id() -> None:
    cfg = parse_config({"tools": {"deny": ["exec"]}}, env={}, checks=default_checks())
    assert frozenset(effective_tools(cfg, "main").allowed) == ALL - {"exec"}
    assert frozenset(effective_tools(cfg, "other").allowed) == ALL - {"exec"}


def test_agent_ids_compare_normalised() -> None:
    cfg = config(agent={"deny": ["exec"]})
    assert not effective_tools(cfg, "A").allows("exec")


def test_results_are_cached_per_config() -> None:
    cfg = config({"deny": ["exec"]})
    first = effective_tools(cfg, "a", sandboxed=True)
    assert effective_tools(cfg, "a", sandboxed=True) is first
    assert effective_tools(cfg, "a") is not first
    assert effective_tools(cfg, "a", tools=["read"]) is not effective_tools(cfg, "a", tools=["exec"])
    other = config({"deny": ["read"]})
    assert effective_tools(other, "a", sandboxed=True).allows("exec")
