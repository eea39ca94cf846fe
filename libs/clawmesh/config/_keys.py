"""Keys clawmesh reads but does not act on, per config object.

Which keys OpenClaw 2026.9.6 knows comes from its own schema (`openclaw_keys.json`, see
`_catalogue`). `OPENCLAW_ONLY_KEYS` lists keys of *older* OpenClaw versions (drawn from their
configuration reference) that configs written for them still carry: they load with a warning
too. `NOT_ENFORCED_KEYS` are access policies the schema accepts (so an `openclaw.json` loads as
it is) and `clawmesh.channels` decides, but that only an adapter calling it applies: on a channel
whose ingress adapter does not yet enforce them (not in `POLICY_ENFORCED_CHANNELS`) each loads
with a warning saying so, so nobody believes a sender is filtered when it is not.
"""

from __future__ import annotations

from typing import Final

from ._schema import (
    AgentDefaults,
    AgentEntry,
    AgentsSection,
    Binding,
    BindingMatch,
    ChannelAccount,
    ChannelCommands,
    ChannelConfig,
    ChannelDm,
    ChannelExecApprovals,
    ChannelGroup,
    ChannelsDefaults,
    ChannelSlashCommand,
    ConfigFile,
    ExecTools,
    GatewayAuth,
    GatewayEndpoint,
    GatewayHttp,
    GatewaySection,
    GroupChat,
    Identity,
    MessagesSection,
    ModelProvider,
    ModelsSection,
    SandboxConfig,
    SandboxDocker,
    SessionSection,
    SubagentDefaults,
    ToolsSection,
)

__all__ = ["NOT_ENFORCED_KEYS", "OPENCLAW_ONLY_KEYS", "POLICY_ENFORCED_CHANNELS"]

_AGENT_COMMON: Final = frozenset(
    {
        "skills",
        "memorySearch",
        "humanDelay",
        "heartbeat",
        "embeddedPi",
        "embeddedHarness",
        "params",
        "thinkingDefault",
        "verboseDefault",
        "reasoningDefault",
        "fastModeDefault",
        "elevatedDefault",
        "runtime",
        "cwd",
        "utilityModel",
        "tts",
        "models",
        "imageModel",
        "blockStreamingDefault",
        "contextTokens",
    }
)

_CHANNEL_COMMON: Final = frozenset(
    {
        "chunkMode",
        "actions",
        "dmHistoryLimit",
        "configWrites",
        "capabilities",
        "markdown",
        "heartbeat",
        "ackReaction",
        "reactionNotifications",
        "reactionLevel",
        "proxy",
        "retry",
        "network",
        "dms",
        "teams",
        "userToken",
        "userTokenReadOnly",
        "linkPreview",
        "blockStreaming",
        "blockStreamingCoalesce",
        "draftChunk",
        "botTokenFile",
        "threadBindings",
        "thread",
        "intents",
        "pluralkit",
        "customCommands",
        "responsePrefix",
        "selfChatMode",
        "sendReadReceipts",
        "debounceMs",
        "authDir",
        "cliPath",
        "dbPath",
        "service",
        "region",
        "account",
        "httpUrl",
        "httpHost",
        "httpPort",
        "autoStart",
        "homeserver",
        "accessToken",
        "password",
        "deviceName",
        "encryption",
        "autoJoin",
        "appId",
        "appSecret",
        "verificationToken",
        "encryptKey",
        "domain",
        "connectionMode",
        "typingIndicator",
        "renderMode",
        "topicSessionMode",
    }
)

OPENCLAW_ONLY_KEYS: Final[dict[type, frozenset[str]]] = {
    ConfigFile: frozenset(
        {
            "$schema",
            "meta",
            "wizard",
            "diagnostics",
            "logging",
            "update",
            "browser",
            "ui",
            "auth",
            "acp",
            "skills",
            "plugins",
            "commands",
            "approvals",
            "web",
            "discovery",
            "canvasHost",
            "talk",
            "cron",
            "broadcast",
            "memory",
            "secrets",
            "mcp",
            "media",
            "audio",
            "cli",
            "nodeHost",
        }
    ),
    AgentsSection: frozenset(),
    AgentDefaults: _AGENT_COMMON
    | frozenset(
        {
            "repoRoot",
            "skipBootstrap",
            "bootstrapMaxChars",
            "bootstrapTotalMaxChars",
            "userTimezone",
            "timeFormat",
            "blockStreamingBreak",
            "blockStreamingChunk",
            "blockStreamingCoalesce",
            "typingIntervalSeconds",
            "typingMode",
            "compaction",
            "contextPruning",
            "cliBackends",
            "mediaMaxMb",
            "envelopeTimezone",
            "envelopeTimestamp",
            "envelopeElapsed",
            "heartbeat",
        }
    ),
    AgentEntry: _AGENT_COMMON,
    Binding: frozenset(),
    BindingMatch: frozenset(),
    SessionSection: frozenset(
        {
            "scope",
            "reset",
            "resetByType",
            "resetByChannel",
            "resetTriggers",
            "idleMinutes",
            "store",
            "typingIntervalSeconds",
            "typingMode",
            "agentToAgent",
            "sendPolicy",
            "threadBindings",
            "parentForkMaxTokens",
        }
    ),
    ChannelConfig: _CHANNEL_COMMON,
    ChannelAccount: _CHANNEL_COMMON,
    ChannelExecApprovals: frozenset({"agentFilter", "sessionFilter", "target", "cleanupAfterResolve"}),
    # `dm` of older versions (OpenClaw 2026.9.6's own keys per channel come from its catalogue)
    ChannelDm: frozenset(
        {"enabled", "policy", "allowFrom", "groupEnabled", "groupChannels", "sessionScope", "threadReplies"}
    ),
    ChannelGroup: frozenset({"skills", "systemPrompt", "tools", "toolsBySender"}),
    # only `native` / `ephemeral` are read (Discord); the rest, on a channel of older versions
    ChannelCommands: frozenset({"nativeSkills", "callbackPath", "callbackUrl"}),
    ChannelSlashCommand: frozenset({"enabled", "name", "sessionPrefix"}),
    ChannelsDefaults: frozenset({"heartbeat"}),
    ToolsSection: frozenset(
        {"elevated", "media", "links", "message", "browser", "loopDetection", "fs", "alsoDeny"}
    ),
    ExecTools: frozenset(
        {
            "pathPrepend",
            "strictInlineEval",
            "reviewer",
            "approvalRunningNoticeMs",
            "commandHighlighting",
            "grantExpiryDays",
            "backgroundMs",
            "cleanupMs",
            "notifyOnExit",
            "applyPatch",
        }
    ),
    GatewaySection: frozenset({"controlUi", "remote", "tailscale", "reload", "tls", "nodes", "push"}),
    GatewayHttp: frozenset({"securityHeaders"}),
    GatewayEndpoint: frozenset({"images", "maxUrlParts", "files"}),
    GatewayAuth: frozenset({"allowTailscale", "trustedProxy"}),
    SandboxConfig: frozenset({"browser", "ssh"}),
    SandboxDocker: frozenset({"dangerouslyAllowContainerNamespaceJoin"}),
    SubagentDefaults: frozenset({"thinking", "delegationMode", "announce"}),
    Identity: frozenset(),
    GroupChat: frozenset(),
    ModelsSection: frozenset({"bedrockDiscovery"}),
    ModelProvider: frozenset({"auth", "authHeader"}),
    MessagesSection: frozenset(
        {
            "responsePrefix",
            "ackReaction",
            "ackReactionScope",
            "removeAckAfterReply",
            "queue",
            "inbound",
            "tts",
            "statusReactions",
            "suppressToolErrors",
        }
    ),
}

_CHANNEL_POLICIES: Final = frozenset(
    {
        "dmPolicy",
        "allowFrom",
        "groupPolicy",
        "groupAllowFrom",
        "requireMention",
        "guilds",
        "channels",
        "mentionPatterns",
    }
)

NOT_ENFORCED_KEYS: Final[dict[type, frozenset[str]]] = {
    ChannelConfig: _CHANNEL_POLICIES,
    ChannelAccount: _CHANNEL_POLICIES,
    ChannelGroup: frozenset({"requireMention", "groupPolicy", "allowFrom", "users", "roles"}),
    ChannelsDefaults: frozenset({"groupPolicy"}),
}

# Channels whose ingress adapter calls `clawmesh.channels.AccessControl` on every inbound
# message: their policy keys load without the "not enforced" warning. An adapter adds its
# channel here in the change that wires the check.
POLICY_ENFORCED_CHANNELS: Final[frozenset[str]] = frozenset({"telegram", "slack", "whatsapp", "discord"})
