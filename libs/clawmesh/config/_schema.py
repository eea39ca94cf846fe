"""The config file's shape: OpenClaw's `openclaw.json` keys clawmesh implements, plus clawmesh's own.

Field names are snake_case in Python and camelCase in the file (`rename="camel"`), exactly as
OpenClaw spells them. Keys OpenClaw knows but clawmesh does not implement are not fields here;
`_keys.py` lists them so that loading warns about them instead of failing.
"""

from __future__ import annotations

import ipaddress
from typing import Any, Literal, TypeAlias

import msgspec
from msgspec import UNSET, UnsetType

__all__ = [
    "A2ARunner",
    "AgentDefaults",
    "AgentEntry",
    "AgentToAgent",
    "AgentsSection",
    "Binding",
    "BindingMatch",
    "BindingPeer",
    "BindingSession",
    "ChannelAccount",
    "ChannelCommands",
    "ChannelConfig",
    "ChannelDm",
    "ChannelExecApprovals",
    "ChannelGroup",
    "ChannelSlashCommand",
    "ChannelStreaming",
    "ChannelsDefaults",
    "ClaudeCodeRunner",
    "ConfigFile",
    "CozeRunner",
    "CozeSite",
    "DmPolicy",
    "DmScope",
    "EnvSection",
    "ExecAsk",
    "ExecMode",
    "ExecSecurity",
    "ExecTools",
    "GatewayAuth",
    "GatewayEndpoint",
    "GatewayEndpoints",
    "GatewayHttp",
    "GatewayRateLimit",
    "GatewaySection",
    "GatewayTools",
    "GroupChat",
    "GroupPolicy",
    "GroupScope",
    "HookMapping",
    "HookMatch",
    "HooksSection",
    "Identity",
    "LocalNode",
    "MentionPatternsPolicy",
    "MessagesSection",
    "ModelProvider",
    "ModelSpec",
    "ModelsSection",
    "NatsSection",
    "NodeSelector",
    "NodesSection",
    "OpenClawXRunner",
    "OpenCodeRunner",
    "PeerKind",
    "ReplyToMode",
    "ReplyToModeByChatType",
    "RunnerType",
    "RuntimeSection",
    "SafeBinProfile",
    "SandboxConfig",
    "SandboxDocker",
    "SandboxPrune",
    "Secret",
    "SecretRef",
    "SessionMaintenance",
    "SessionSection",
    "SessionsTools",
    "SubagentDefaults",
    "ToolPolicy",
    "ToolsSection",
    "ToolsStage",
    "WebFetchSsrfPolicy",
    "WebFetchTools",
    "WebTools",
]

PeerKind = Literal["direct", "group", "channel", "dm"]
DmScope = Literal["main", "per-peer", "per-channel-peer", "per-account-channel-peer"]
GroupScope = Literal["main", "per-group"]
DmPolicy = Literal["pairing", "allowlist", "open", "disabled"]
GroupPolicy = Literal["allowlist", "open", "disabled"]
ReplyToMode = Literal["off", "first", "all", "batched"]
RunnerType = Literal["local", "coze", "openclawx", "opencode", "claude_code", "synadia", "a2a"]
ToolProfile = Literal["minimal", "coding", "messaging", "full"]
Id = str | int


class _Base(msgspec.Struct, kw_only=True, rename="camel", omit_defaults=True, forbid_unknown_fields=True):
    pass


# --- models --------------------------------------------------------------------------------


class SecretRef(_Base):
    """OpenClaw's SecretInput object, accepted wherever a secret may be given: `{source: "env",
    id: "VAR"}` names an environment variable (clawmesh resolves those where the secret is
    used, see `secret_value`); other sources (`file`, `exec`, `store`) are accepted but not read by clawmesh."""

    source: str  # "env", "file", "exec", "store", …
    id: str
    provider: str | None = None


# A secret: a string (possibly a `${VAR}`) or a SecretRef.
Secret: TypeAlias = str | SecretRef


class ModelSpec(_Base):
    """`{primary, fallbacks}`. `fallbacks` is UNSET when the key is absent (OpenClaw: Object.hasOwn)."""

    primary: str | None = None
    fallbacks: list[str] | UnsetType = UNSET


class ModelProvider(_Base):
    """`models.providers.<id>`: a custom or OpenAI-compatible endpoint (Ollama, vLLM, LM Studio)."""

    base_url: str | None = None
    api_key: Secret | None = None
    api: str | None = None  # "openai-completions" | "anthropic-messages" | …
    headers: dict[str, str] = {}
    models: list[dict[str, Any]] = []
    timeout_seconds: float | None = None


class ModelsSection(_Base):
    mode: Literal["merge", "replace"] = "merge"
    providers: dict[str, ModelProvider] = {}


# --- tools ---------------------------------------------------------------------------------


class ToolPolicy(_Base):
    """One stage of tool filtering: a profile and allow/deny/alsoAllow lists."""

    profile: ToolProfile | None = None
    allow: list[str] | None = None
    also_allow: list[str] | None = None
    deny: list[str] | None = None


class ToolsStage(_Base):
    """`tools.sandbox` / `tools.subagents`: a nested `{tools: {allow, deny, alsoAllow}}`."""

    tools: ToolPolicy | None = None


class SafeBinProfile(_Base):
    """`tools.exec.safeBinProfiles.<bin>`: the argv a custom safe bin accepts (OpenClaw's shape)."""

    min_positional: int | None = None
    max_positional: int | None = None
    allowed_value_flags: list[str] | None = None
    denied_flags: list[str] | None = None


ExecMode = Literal["deny", "allowlist", "ask", "auto", "full"]
ExecSecurity = Literal["deny", "allowlist", "full"]
ExecAsk = Literal["off", "on-miss", "always"]


class ExecTools(_Base):
    """`tools.exec` and `agents.list[].tools.exec`: where `exec` runs and OpenClaw's policy of
    host exec (`mode`, or the legacy `security`/`ask` pair), plus clawmesh's own limits."""

    host: Literal["auto", "sandbox", "gateway", "node"] | None = None
    node: str | None = None
    mode: ExecMode | None = None
    security: ExecSecurity | None = None
    ask: ExecAsk | None = None
    safe_bins: list[str] | None = None
    safe_bin_trusted_dirs: list[str] | None = None
    safe_bin_profiles: dict[str, SafeBinProfile] | None = None
    timeout_sec: float | None = None
    max_output_bytes: int | None = None
    # clawmesh
    approval_timeout_seconds: float | None = None  # how long an ask waits for a decision
    run_as: str | None = None  # the user host commands run as when the node-agent is root
    allow_root: bool | None = None  # run host commands as root when the node-agent is root


class AgentToAgent(_Base):
    enabled: bool | None = None
    allow: list[str] = []


class SessionsTools(_Base):
    visibility: Literal["self", "tree", "agent", "all"] | None = None


class WebFetchSsrfPolicy(_Base):
    """`tools.web.fetch.ssrfPolicy`: which private/internal targets `web_fetch` may reach."""

    dangerously_allow_private_network: bool | None = None
    allowed_hostnames: list[str] | None = None
    blocked_hostnames: list[str] | None = None


class WebFetchTools(_Base):
    """`tools.web.fetch` (OpenClaw's names and defaults, see `clawmesh.tools.web_fetch`)."""

    enabled: bool | None = None
    max_chars: int | None = None
    max_chars_cap: int | None = None
    max_response_bytes: int | None = None
    timeout_seconds: float | None = None
    max_redirects: int | None = None
    user_agent: str | None = None
    ssrf_policy: WebFetchSsrfPolicy | None = None


class WebTools(_Base):
    fetch: WebFetchTools | None = None


class ToolsSection(_Base):
    """`tools` (global) and `agents.list[].tools` (per agent)."""

    profile: ToolProfile | None = None
    allow: list[str] | None = None
    also_allow: list[str] | None = None
    deny: list[str] | None = None
    by_provider: dict[str, ToolPolicy] = {}
    sandbox: ToolsStage | None = None
    subagents: ToolsStage | None = None
    exec: ExecTools | None = None
    agent_to_agent: AgentToAgent | None = None
    sessions: SessionsTools | None = None
    web: WebTools | None = None
    max_iterations: int | None = None  # clawmesh: tool-loop cap per turn


# --- sandbox -------------------------------------------------------------------------------


class SandboxDocker(_Base):
    image: str | None = None
    container_prefix: str | None = None
    workdir: str | None = None
    read_only_root: bool | None = None
    tmpfs: list[str] | None = None
    network: str | None = None
    user: str | None = None
    cap_drop: list[str] | None = None
    env: dict[str, str] | None = None
    setup_command: str | None = None
    pids_limit: int | None = None
    memory: str | int | None = None
    memory_swap: str | int | None = None
    cpus: float | None = None
    ulimits: dict[str, int | str | dict[str, int]] | None = None
    binds: list[str] | None = None
    seccomp_profile: str | None = None
    apparmor_profile: str | None = None
    dns: list[str] | None = None
    extra_hosts: list[str] | None = None


class SandboxPrune(_Base):
    idle_hours: float | None = None
    max_age_days: float | None = None


class SandboxConfig(_Base):
    mode: Literal["off", "non-main", "all"] | None = None
    scope: Literal["agent", "session", "shared"] | None = None
    per_session: bool | None = None  # legacy: true -> scope session, false -> shared
    workspace_access: Literal["none", "ro", "rw"] | None = None
    workspace_root: str | None = None
    backend: str | None = None  # only "docker" is implemented; others warn (see _validate.py)
    docker: SandboxDocker | None = None
    prune: SandboxPrune | None = None
    session_tools_visibility: Literal["spawned", "all"] | None = None


# --- agents --------------------------------------------------------------------------------


class Identity(_Base):
    name: str | None = None
    theme: str | None = None
    emoji: str | None = None
    avatar: str | None = None


class GroupChat(_Base):
    mention_patterns: list[str] | None = None
    history_limit: int | None = None


class SubagentDefaults(_Base):
    allow_agents: list[str] | None = None
    model: str | ModelSpec | None = None
    require_agent_id: bool | None = None
    max_spawn_depth: int | None = None
    max_children_per_agent: int | None = None
    max_concurrent: int | None = None
    run_timeout_seconds: float | None = None
    archive_after_minutes: float | None = None


class NodeSelector(_Base):
    """`agents.list[].node: {selector: {region: "sg"}}` — labels a node must carry."""

    selector: dict[str, str]


class SystemAgent(_Base):
    agent_id: str | None = None


# --- proxy runners (the seed's per-agent keys beside `runnerType`) --------------------------


class CozeSite(_Base):
    """`coze.cn` / `coze.com`: the bot on that site and the token that may call it."""

    bot_id: str | None = None
    api_key: Secret | None = None


class CozeRunner(_Base):
    """`runnerType: coze`: chat API v3 on api.coze.cn or api.coze.com (`region`)."""

    region: Literal["cn", "com"] | None = None
    cn: CozeSite | None = None
    com: CozeSite | None = None
    base_url: str | None = None  # clawmesh: the API at another address (a proxy, a test fake)


class OpenClawXRunner(_Base):
    """`runnerType: openclawx`: another gateway (clawmesh or OpenClaw) by its OpenAI-compatible API."""

    base_url: str | None = None
    api_key: Secret | None = None
    agent_id: str | None = None  # clawmesh: the remote agent (default: the remote's default agent)
    # clawmesh: a gateway of this federation (its region), reached over NATS instead of baseUrl
    gateway: str | None = None


class SynadiaRunner(_Base):
    """`runnerType: synadia`: a Synadia Agent Protocol agent on the bus, by its identity."""

    agent: str | None = None
    owner: str | None = None
    session: str | None = None


class A2ARunner(_Base):
    """`runnerType: a2a`: a remote A2A agent, by its card (or base URL) or its JSON-RPC endpoint."""

    url: str | None = None
    token: Secret | None = None  # Bearer, as OpenClaw's A2A peers' `outboundToken`


class OpenCodeRunner(_Base):
    """`runnerType: opencode`: an `opencode serve` server, started by clawmesh (`local`) or not."""

    mode: Literal["local", "remote"] | None = None
    port: int | None = None
    address: str | None = None
    password: Secret | None = None
    working_directory: str | None = None
    model: str | None = None
    command: str | None = None  # clawmesh: the `opencode` executable for mode local


class ClaudeCodeRunner(_Base):
    """`runnerType: claude_code`: the local `claude` CLI, one CLI session per clawmesh session."""

    working_directory: str | None = None
    command: str | None = None  # clawmesh: the `claude` executable (default: `claude` on PATH)
    model: str | None = None  # clawmesh: `--model`
    permission_mode: str | None = None  # clawmesh: `--permission-mode`


class AgentEntry(_Base):
    """One agent, from `agents.list[]` (has `id`) or `agents.entries.<id>` (keyed)."""

    id: str | None = None
    default: bool | None = None
    name: str | None = None
    workspace: str | None = None
    agent_dir: str | None = None
    model: str | ModelSpec | None = None
    system_prompt_override: str | None = None
    identity: Identity | None = None
    group_chat: GroupChat | None = None
    subagents: SubagentDefaults | None = None
    sandbox: SandboxConfig | None = None
    tools: ToolsSection | None = None
    max_concurrent: int | None = None
    # clawmesh
    runner_type: RunnerType | None = None
    runner: dict[str, Any] | None = None
    node: str | NodeSelector | None = None
    coze: CozeRunner | None = None
    openclawx: OpenClawXRunner | None = None
    opencode: OpenCodeRunner | None = None
    claude_code: ClaudeCodeRunner | None = None
    synadia: SynadiaRunner | None = None
    a2a: A2ARunner | None = None


class AgentDefaults(_Base):
    workspace: str | None = None
    model: str | ModelSpec | None = None
    max_concurrent: int | None = None
    timeout_seconds: float | None = None
    subagents: SubagentDefaults | None = None
    sandbox: SandboxConfig | None = None
    system_agent: SystemAgent | None = None
    # clawmesh
    runner_type: RunnerType | None = None
    node: str | NodeSelector | None = None


# The field below is named `list` (OpenClaw's key); inside the class body that name shadows the
# builtin when msgspec evaluates the annotations, hence this alias.
_AgentList = list[AgentEntry]


class AgentsSection(_Base):
    defaults: AgentDefaults | None = None
    list: _AgentList | None = None
    entries: dict[str, AgentEntry] | None = None
    ownership: Literal["explicit", "implicit"] | None = None


# --- bindings ------------------------------------------------------------------------------


class BindingPeer(_Base):
    kind: PeerKind
    id: Id


class BindingMatch(_Base):
    channel: str
    account_id: str | None = None
    peer: BindingPeer | None = None
    guild_id: Id | None = None
    team_id: Id | None = None
    roles: list[Id] | None = None


class BindingSession(_Base):
    dm_scope: DmScope | None = None
    group_scope: GroupScope | None = None


class Binding(_Base):
    agent_id: str
    match: BindingMatch
    type: str = "route"
    session: BindingSession | None = None
    comment: str | None = None
    acp: dict[str, Any] | None = None


# --- session -------------------------------------------------------------------------------


class SessionMaintenance(_Base):
    """What `clawmesh sessions cleanup` applies (OpenClaw's other maintenance keys load with a
    warning): `pruneAfter` a duration ("30d") or a number of days, `maxEntries` a cap."""

    mode: Literal["enforce", "warn"] | None = None
    prune_after: str | float | None = None
    max_entries: int | None = None


class SessionSection(_Base):
    dm_scope: DmScope | None = None
    group_scope: GroupScope | None = None
    main_key: str | None = None
    identity_links: dict[str, list[str]] | None = None
    maintenance: SessionMaintenance | None = None


# --- channels ------------------------------------------------------------------------------


class ChannelGroup(_Base):
    """`channels.<ch>.groups.<id|*>` (and a forum's `topics.<id>`), Discord's
    `guilds.<id|*>` with their `channels.<id|*>`, Slack's `channels.<id|*>`: per-group access and
    mention gating (enforced by `clawmesh.channels`)."""

    enabled: bool | None = None
    require_mention: bool | None = None
    group_policy: GroupPolicy | None = None
    allow_from: list[Id] | None = None
    users: list[Id] | None = None
    roles: list[Id] | None = None
    agent_id: str | None = None
    topics: dict[str, ChannelGroup] | None = None
    channels: dict[str, ChannelGroup] | None = None
    # Slack's `channels.<id|*>.replyToMode` (its per-channel override; other channels warn)
    reply_to_mode: ReplyToMode | None = None


class MentionPatternsPolicy(_Base):
    """`channels.<ch>.mentionPatterns`: where regex mention patterns apply (OpenClaw 2026.9)."""

    mode: Literal["allow", "deny"] | None = None
    allow_in: list[Id] | None = None
    deny_in: list[Id] | None = None


class ChannelStreaming(_Base):
    """`channels.<ch>.streaming`: OpenClaw 9.6's object form (`mode`); a boolean or a bare mode
    string is the legacy spelling, read the same way."""

    mode: str | None = None  # each channel has its own modes (Telegram: off|partial|block|progress)


class ChannelExecApprovals(_Base):
    """`channels.<ch>.execApprovals`: who may answer an exec approval from the chat
    (`/approve`), and whether the chat the request came from is asked. OpenClaw's other keys
    here (`target`, `agentFilter`, `sessionFilter`, `cleanupAfterResolve`) load with a warning
    that they are not implemented."""

    enabled: bool | Literal["auto"] | None = None
    approvers: list[Id] | None = None


class ChannelCommands(_Base):
    """`channels.<ch>.commands`: `native` (OpenClaw's `true | false | "auto"`) is read by Discord:
    whether its slash commands are registered with Discord (`auto`: yes). OpenClaw's other keys
    here (`nativeSkills`, …) load with a warning that they are not implemented."""

    native: bool | Literal["auto"] | None = None


class ChannelSlashCommand(_Base):
    """`channels.<ch>.slashCommand`: `ephemeral` (Discord; OpenClaw's default true: a slash
    command's answer is shown to its user only). Slack's other keys load with a warning."""

    ephemeral: bool | None = None


class ReplyToModeByChatType(_Base):
    """`channels.<ch>.replyToModeByChatType`: `replyToMode` per chat type (read by Slack)."""

    direct: ReplyToMode | None = None
    group: ReplyToMode | None = None
    channel: ReplyToMode | None = None


class ChannelDm(_Base):
    """`channels.<ch>.dm`: only Slack's legacy `dm.replyToMode` is read (as OpenClaw's `doctor
    --fix` moves it: `replyToModeByChatType.direct` when that is unset); OpenClaw's other keys
    here load with a warning (`_keys.py`)."""

    reply_to_mode: ReplyToMode | None = None


class ChannelAccount(_Base):
    """Per-account settings; the same keys also sit on the channel itself (the base account)."""

    enabled: bool | None = None
    name: str | None = None
    dm_policy: DmPolicy | None = None
    allow_from: list[Id] | None = None
    group_policy: GroupPolicy | None = None
    group_allow_from: list[Id] | None = None
    groups: dict[str, ChannelGroup] | None = None
    guilds: dict[str, ChannelGroup] | None = None  # Discord
    # Slack's channel map; IRC lists the channels to join (a plugin's, not read by clawmesh)
    channels: dict[str, ChannelGroup] | list[Any] | None = None
    require_mention: bool | None = None
    # the scope of regex mention patterns; some plugin channels (clickclack) list patterns here
    mention_patterns: MentionPatternsPolicy | list[str] | None = None
    bot_token: Secret | None = None
    token: Secret | None = None
    app_token: Secret | None = None
    signing_secret: Secret | None = None
    webhook_url: str | None = None
    webhook_secret: Secret | None = None
    webhook_path: str | None = None
    mode: str | None = None
    api_base_url: str | None = None  # clawmesh: point a channel at a local fake/proxy
    # Telegram (OpenClaw's keys): token from a file, another Bot API server, the webhook
    # listener, reply splitting and streamed previews
    token_file: str | None = None
    api_root: str | None = None
    webhook_host: str | None = None
    webhook_port: int | None = None
    text_chunk_limit: int | None = None
    streaming: ChannelStreaming | bool | str | None = None
    # the legacy spelling of `streaming.mode` (older OpenClaw; its `doctor --fix` moves it): Discord
    # reads it as OpenClaw's migration does, the other channels warn that it is ignored
    stream_mode: str | None = None
    reply_to_mode: ReplyToMode | None = None
    reply_to_mode_by_chat_type: ReplyToModeByChatType | None = None  # Slack
    dm: ChannelDm | None = None
    media_max_mb: float | None = None
    # group messages the bot was not asked to answer, kept as context for its next answer there
    # (OpenClaw's key; else `messages.groupChat.historyLimit`, else 50; 0 keeps none)
    history_limit: int | None = None
    # Discord (OpenClaw's keys): tall replies split (default 17 lines), link embeds suppressed
    max_lines_per_message: int | None = None
    suppress_embeds: bool | None = None
    # Discord slash commands: OpenClaw's `applicationId` (commands are registered for it; else
    # read from the token), `commands.native`, `slashCommand.ephemeral`; clawmesh's `publicKey`
    # (the app's Ed25519 key, hex) serves the interactions endpoint on `webhookPath`
    application_id: str | None = None
    commands: ChannelCommands | None = None
    slash_command: ChannelSlashCommand | None = None
    public_key: Secret | None = None
    exec_approvals: ChannelExecApprovals | None = None
    # clawmesh: the WhatsApp Cloud API (OpenClaw's WhatsApp is WhatsApp Web and has no such keys)
    phone_number_id: str | None = None
    access_token: Secret | None = None
    app_secret: Secret | None = None
    verify_token: Secret | None = None
    api_version: str | None = None


class ChannelConfig(ChannelAccount):
    accounts: dict[str, ChannelAccount] | None = None
    default_account: str | None = None


class ChannelsDefaults(_Base):
    group_policy: GroupPolicy | None = None


# --- gateway, nats, nodes, messages --------------------------------------------------------


class GatewayRateLimit(_Base):
    max_attempts: int = 10
    window_ms: int = 60_000
    lockout_ms: int = 300_000
    exempt_loopback: bool = True


class GatewayAuth(_Base):
    mode: Literal["token", "password", "none", "trusted-proxy"] | None = None
    token: Secret | None = None
    password: Secret | None = None
    rate_limit: GatewayRateLimit | None = None


class GatewayEndpoint(_Base):
    """One optional HTTP endpoint (`gateway.http.endpoints.<name>`). `enabled` unset: clawmesh
    serves it (OpenClaw's default is off; clawmesh always served its OpenAI API)."""

    enabled: bool | None = None


class GatewayEndpoints(_Base):
    chat_completions: GatewayEndpoint | None = None
    responses: GatewayEndpoint | None = None


class GatewayHttp(_Base):
    endpoints: GatewayEndpoints | None = None


class GatewayFailover(_Base):
    """clawmesh: where this region's turns go when it has no live runner."""

    region: str
    agents: list[str] | None = None  # the agents that may run there (patterns); none by default


class GatewayFederation(_Base):
    """clawmesh: what this gateway offers the other regions of its federation."""

    # agents other gateways may run here (`["*"]`: all); none by default
    expose_agents: list[str] | None = None
    # nodes of this gateway other regions' agents may run tools on (`["*"]`: all); none by default
    expose_nodes: list[str] | None = None
    # regions whose requests are served (`["*"]`: every region of the federation)
    allow_gateways: list[str] | None = None
    catalog_seconds: float | None = None  # how often the catalogue is broadcast (10)
    # this gateway's remote turns: how often it asks the serving region for a keep-alive (5),
    # and how long without any message from it before the region counts as dropped (30)
    keepalive_seconds: float | None = None
    idle_timeout_seconds: float | None = None
    failover: GatewayFailover | None = None


class GatewayTools(_Base):
    """`gateway.tools`: what `POST /tools/invoke` may reach beyond the agent's tool policy.
    `deny` adds to the HTTP deny list, `allow` takes names off it (OpenClaw's defaults)."""

    allow: list[str] | None = None
    deny: list[str] | None = None


class GatewaySection(_Base):
    port: int | None = None
    bind: Literal["loopback", "lan", "tailnet", "auto", "custom"] | None = None
    custom_bind_host: str | None = None
    mode: Literal["local", "remote"] | None = None
    auth: GatewayAuth | None = None
    max_body_bytes: int | None = None  # clawmesh: HTTP request body limit (1 MiB default)
    name: str | None = None  # a display name
    # clawmesh: this gateway's region in a federation (`cm.gw.<region>.…`, its JetStream domain)
    region: str | None = None
    federation: GatewayFederation | None = None
    # IPs/CIDRs of reverse proxies whose X-Forwarded-For / X-Real-IP name the client
    trusted_proxies: list[str] | None = None
    http: GatewayHttp | None = None
    tools: GatewayTools | None = None

    def __post_init__(self) -> None:
        for entry in self.trusted_proxies or ():
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(f"trustedProxies: {entry!r} is not an IP address or CIDR") from None


class NatsSection(_Base):
    """clawmesh: how services reach NATS, and how `clawmesh up` runs its embedded server."""

    url: str | list[str] | None = None
    subject_prefix: str | None = None
    port: int | None = None
    store_dir: str | None = None
    user: str | None = None
    password: str | None = None
    token: str | None = None
    creds_file: str | None = None
    replicas: int | None = None
    inbound_max_bytes: int | None = None
    sessions_max_bytes: int | None = None
    dead_letters_max_bytes: int | None = None
    media_max_bytes: int | None = None


class LocalNode(_Base):
    enabled: bool | None = None
    id: str | None = None
    labels: dict[str, str] | None = None
    capabilities: list[Literal["exec", "files", "sandbox"]] | None = None


class NodesSection(_Base):
    """clawmesh: the node-agent built into `clawmesh up`, and presence timing."""

    local: LocalNode | None = None
    heartbeat_seconds: float | None = None
    offline_after_missed: int | None = None
    invoke_timeout_seconds: float | None = None


class RuntimeSection(_Base):
    """clawmesh: timing and capacity of the pipeline services (defaults in parentheses)."""

    turn_lease_seconds: float | None = None  # a dead runner's turn moves on after this (10)
    turn_timeout_seconds: float | None = None  # a whole turn, model calls and tools included (600)
    max_turns_in_flight: int | None = None  # per runner process (64)
    history_limit: int | None = None  # transcript messages given to the model as context (50)
    route_wait_seconds: float | None = None  # HTTP callers wait this long for the route decision (5)
    tool_iterations: int | None = None  # model↔tool round trips per turn (16)
    max_deliveries: int | None = (
        None  # tries of an inbound message (or a turn) before it is dead-lettered (5)
    )
    publish_retry_seconds: float | None = (
        None  # a stream publish is retried this long on a leader change (10)
    )
    router_partitions: int | None = None  # inbound partitions, each routed by one router at a time (1)


class MessagesGroupChat(_Base):
    mention_patterns: list[str] | None = None
    history_limit: int | None = None


class MessagesSection(_Base):
    group_chat: MessagesGroupChat | None = None


class HookMatch(_Base):
    path: str | None = None  # the subpath after hooks.path (`gmail` matches /hooks/gmail)
    source: str | None = None  # the payload's string `source` field, exactly


class HookMapping(_Base):
    """`hooks.mappings[]`: a custom hook path's payload → a wake or an agent turn (templates
    `{{payload.field}}`, `{{headers.x}}`, `{{query.x}}`, `{{path}}`, `{{now}}`)."""

    id: str | None = None
    match: HookMatch | None = None
    action: Literal["wake", "agent"] | None = None
    wake_mode: Literal["now", "next-heartbeat"] | None = None
    name: str | None = None
    agent_id: str | None = None
    session_key: str | None = None
    session_mode: Literal["isolated", "persistent"] | None = None
    message_template: str | None = None
    text_template: str | None = None
    for_each: str | None = None
    deliver: bool | None = None
    channel: str | None = None
    to: str | None = None
    model: str | None = None
    thinking: str | None = None
    timeout_seconds: int | None = None
    allow_unsafe_external_content: bool | None = None
    # OpenClaw runs a JS/TS module here; clawmesh cannot: such a mapping answers 500 (warned at load)
    transform: dict[str, Any] | None = None


class HooksSection(_Base):
    """`hooks`: the gateway's inbound webhooks (`POST <path>/wake`, `<path>/agent`, mapped
    `<path>/<name>`), off unless `enabled` with a `token`."""

    enabled: bool | None = None
    token: str | None = None
    path: str | None = None
    allowed_agent_ids: list[str] | None = None
    default_session_key: str | None = None
    allow_request_session_key: bool | None = None
    allowed_session_key_prefixes: list[str] | None = None
    presets: list[str] | None = None
    mappings: list[HookMapping] | None = None


class EnvSection(_Base):
    """`env.vars`: variables the file defines where the environment lacks them (see _load.py)."""

    vars: dict[str, str] | None = None


class ConfigFile(_Base):
    """The whole file. Every section is optional; an empty object is a valid config."""

    agents: AgentsSection | None = None
    bindings: list[Binding] | None = None
    session: SessionSection | None = None
    # `channels.defaults` (a ChannelsDefaults) is taken out before this is checked; see _load.py.
    channels: dict[str, ChannelConfig] | None = None
    tools: ToolsSection | None = None
    gateway: GatewaySection | None = None
    models: ModelsSection | None = None
    messages: MessagesSection | None = None
    nats: NatsSection | None = None
    nodes: NodesSection | None = None
    runtime: RuntimeSection | None = None
    env: EnvSection | None = None
    hooks: HooksSection | None = None
