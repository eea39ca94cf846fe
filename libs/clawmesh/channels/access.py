"""Who may talk to an agent through a channel: OpenClaw's DM and group access policy, decided
before routing by a pure function.

`decide(request, policy, approved)` looks only at its arguments: the inbound message's facts
(`AccessRequest`, filled by the channel adapter), the channel account's resolved settings
(`ChannelPolicy.resolve(config, channel, account)`) and the senders approved by pairing.
`AccessControl` (control.py) adds the KV parts (the approved list, pairing codes).

Order, as OpenClaw evaluates it (`docs/channels/groups.md`, `extensions/telegram/src/*access*`):

- direct: `dmPolicy` (default `pairing`) — `disabled` drops; `open` admits everyone when
  `allowFrom` holds `"*"`, else only the senders it lists (OpenClaw warns at load and does the
  same); `allowlist` admits `allowFrom`; `pairing` admits `allowFrom` plus the senders approved
  by pairing, and asks anybody else for a pairing code. Pairing approvals count for `pairing`
  only (OpenClaw's `mergeDmAllowFromSources`).
- group / channel: `groupPolicy` (the group's or topic's, the account's, `channels.defaults`,
  else `allowlist`) — `disabled` drops; the group allow-list (`groups`, Discord's `guilds` and
  their `channels`, Slack's `channels`; `"*"` matches any) is enforced when the policy is
  `allowlist` or the map is non-empty; `enabled: false` drops; a group's own `allowFrom` (and
  Discord/Slack `users`/`roles`) must match the sender whatever the policy; under `allowlist` the
  sender must be in `groupAllowFrom` (falling back to `allowFrom`; never the pairing approvals)
  unless the group itself is listed and no sender list exists. Then mention gating:
  `requireMention` (topic, group, `"*"`, account; default true) drops a message that neither
  mentions the bot natively nor matches a mention pattern, when mentions can be detected at all.
- commands (`/new`, `/reset`, `/status`, `/stop`) from a sender who passed the checks above
  become `Command`; in groups they skip mention gating unless someone else is mentioned.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal, TypeAlias

import msgspec

from ..config import ChannelAccount, ChannelConfig, ChannelGroup, Config, MentionPatternsPolicy
from ..ids import normalize_account_id
from ._commands import detect_command
from ._mentions import MentionMatcher, compile_patterns, derive_identity_patterns
from ._normalize import EMPTY, AllowList, allow_list

__all__ = [
    "AccessRequest",
    "Admit",
    "ChannelPolicy",
    "ChatType",
    "Command",
    "Decision",
    "Deny",
    "DmPolicy",
    "GroupPolicy",
    "PairingChallenge",
    "PairingRequired",
    "decide",
    "mention_matcher",
]

ChatType = Literal["direct", "group", "channel"]
DmPolicy = Literal["pairing", "allowlist", "open", "disabled"]
GroupPolicy = Literal["allowlist", "open", "disabled"]
WILDCARD: Final = "*"


class AccessRequest(msgspec.Struct, frozen=True, kw_only=True):
    """The facts of one inbound message that access depends on (ids as strings)."""

    channel: str
    account: str = "default"
    chat_type: ChatType
    sender_id: str = ""
    sender_username: str | None = None
    sender_name: str | None = None  # shown to the operator with a pairing request
    group_id: str | None = None  # Telegram chat, WhatsApp group JID, Slack/Discord channel
    thread_id: str | None = None  # Telegram forum topic; Slack: the thread a reply is in
    parent_id: str | None = None  # Discord: a thread's parent channel
    guild_id: str | None = None
    team_id: str | None = None
    member_role_ids: tuple[str, ...] = ()
    was_mentioned: bool = False  # native @mention of the bot, or an implicit one (reply to it)
    mentions_others: bool = False  # mentions someone, not the bot
    can_detect_mention: bool = True  # the adapter knows the bot's identity
    text: str = ""
    is_command: bool = False  # a native slash command (Discord/Slack/Telegram menus)
    bot_username: str | None = None  # `/cmd@bot` addresses this bot
    agent_id: str | None = None  # the routed agent, for its mention patterns


class Admit(msgspec.Struct, frozen=True, tag="admit"):
    """Let the message through to routing; `mentioned` as OpenClaw's `WasMentioned`."""

    mentioned: bool = False


class Deny(msgspec.Struct, frozen=True, tag="deny"):
    """Drop the message silently (counted, published as an event); `reason` says which rule."""

    reason: str


class PairingRequired(msgspec.Struct, frozen=True, tag="pairing-required"):
    """From the pure function: an unknown DM sender under `dmPolicy: pairing`."""


class PairingChallenge(msgspec.Struct, frozen=True, tag="pairing"):
    """Send `reply` (it carries the code) to the sender; the message itself is not processed."""

    code: str
    reply: str


class Command(msgspec.Struct, frozen=True, tag="command"):
    """A control command (`new`, `reset`, `status`, `stop`) from an admitted sender."""

    name: str
    mentioned: bool = False


Decision: TypeAlias = Admit | Deny | PairingChallenge | Command


@dataclass(frozen=True, slots=True)
class _Scope:
    """One level of group settings (group, topic, guild, guild channel)."""

    enabled: bool | None
    require_mention: bool | None
    group_policy: GroupPolicy | None
    allow_from: tuple[str | int, ...] | None
    users: tuple[str | int, ...] | None
    roles: tuple[str | int, ...] | None


def _scope(group: ChannelGroup | None) -> _Scope | None:
    if group is None:
        return None
    return _Scope(
        group.enabled,
        group.require_mention,
        group.group_policy,
        None if group.allow_from is None else tuple(group.allow_from),
        None if group.users is None else tuple(group.users),
        None if group.roles is None else tuple(group.roles),
    )


@dataclass(frozen=True, slots=True)
class ChannelPolicy:
    """One channel account's access settings, the account's keys over the channel's."""

    channel: str
    account: str
    dm_policy: DmPolicy
    allow_from: AllowList
    group_policy: GroupPolicy  # effective: account, channel, channels.defaults, then the fallback
    group_policy_mode: GroupPolicy | None  # the account's or channel's own (for the chat allow-list)
    group_allow_from: AllowList | None  # None: not set (falls back to allowFrom)
    groups: Mapping[str, ChannelGroup]  # groups / Slack channels
    guilds: Mapping[str, ChannelGroup]  # Discord
    require_mention: bool | None
    mention_mode: Literal["allow", "deny"] = "allow"
    mention_allow_in: frozenset[str] = frozenset()
    mention_deny_in: frozenset[str] = frozenset()
    matchers: Mapping[str | None, MentionMatcher] | None = None  # agent id → patterns

    @staticmethod
    def resolve(config: Config, channel: str, account: str | None = None) -> ChannelPolicy:
        channels = config.document.channels or {}
        base = channels.get(channel)
        account_id = normalize_account_id(account)
        entry = _account_entry(base, account_id)
        defaults = config.raw.get("channels", {}).get("defaults") if isinstance(config.raw, dict) else None
        default_group_policy = defaults.get("groupPolicy") if isinstance(defaults, dict) else None

        def pick(name: str) -> Any:
            for source in (entry, base):
                value = getattr(source, name, None) if source is not None else None
                if value is not None:
                    return value
            return None

        group_allow = pick("group_allow_from")
        groups = pick("channels") if channel == "slack" else pick("groups")
        if not isinstance(groups, dict):
            groups = None
        patterns = pick("mention_patterns")
        if not isinstance(patterns, MentionPatternsPolicy):
            patterns = None
        return ChannelPolicy(
            channel=channel,
            account=account_id,
            dm_policy=pick("dm_policy") or "pairing",
            allow_from=allow_list(channel, pick("allow_from")),
            group_policy=pick("group_policy")
            or (default_group_policy if base is not None else None)
            or _fallback_group_policy(channel, base is not None),
            group_policy_mode=pick("group_policy"),
            group_allow_from=None if group_allow is None else allow_list(channel, group_allow),
            groups=groups or {},
            guilds=pick("guilds") or {},
            require_mention=pick("require_mention"),
            mention_mode=(patterns.mode if patterns is not None and patterns.mode else "allow"),
            mention_allow_in=frozenset(str(x) for x in (patterns.allow_in or ()))
            if patterns
            else frozenset(),
            mention_deny_in=frozenset(str(x) for x in (patterns.deny_in or ())) if patterns else frozenset(),
            matchers=_matchers(config),
        )


def _fallback_group_policy(channel: str, configured: bool) -> GroupPolicy:
    """No groupPolicy anywhere: Telegram's runtime treats a configured channel as `open`
    (`resolveOpenProviderRuntimeGroupPolicy`; its chat allow-list still applies when `groups` is
    set), the other channels as `allowlist`; a channel with no config block fails closed."""
    return "open" if configured and channel == "telegram" else "allowlist"


def _account_entry(base: ChannelConfig | None, account_id: str) -> ChannelAccount | None:
    if base is None or not base.accounts:
        return None
    for key, value in base.accounts.items():
        if normalize_account_id(key) == account_id:
            return value
    return None


def _matchers(config: Config) -> dict[str | None, MentionMatcher]:
    """Mention patterns per agent (None: no routed agent known), OpenClaw's precedence:
    `agents.list[].groupChat.mentionPatterns` when the key exists, else
    `messages.groupChat.mentionPatterns` when it exists, else derived from `identity`."""
    messages = config.document.messages
    global_chat = messages.group_chat if messages is not None else None
    global_patterns = global_chat.mention_patterns if global_chat is not None else None
    out: dict[str | None, MentionMatcher] = {
        None: compile_patterns(global_patterns or ()),
    }
    for agent in config.agents:
        chat = agent.entry.group_chat
        if chat is not None and chat.mention_patterns is not None:
            out[agent.id] = compile_patterns(chat.mention_patterns)
        elif global_patterns is not None:
            out[agent.id] = out[None]
        else:
            identity = agent.entry.identity
            derived = derive_identity_patterns(
                identity.name if identity else None, identity.emoji if identity else None
            )
            out[agent.id] = compile_patterns(derived, trusted=True)
    if global_patterns is None and config.default_agent_id in out:
        out[None] = out[config.default_agent_id]
    return out


def mention_matcher(
    policy: ChannelPolicy, agent_id: str | None, conversation_id: str | None
) -> MentionMatcher:
    """The patterns that apply to `agent_id` in this conversation (`mentionPatterns` mode/allowIn/denyIn)."""
    allowed = conversation_id is not None and conversation_id in policy.mention_allow_in
    denied = conversation_id is not None and conversation_id in policy.mention_deny_in
    enabled = not denied if policy.mention_mode == "allow" else allowed and not denied
    if not enabled or policy.matchers is None:
        return MentionMatcher()
    return policy.matchers.get(agent_id) or policy.matchers.get(None) or MentionMatcher()


# --- the decision -------------------------------------------------------------------------


def decide(
    request: AccessRequest, policy: ChannelPolicy, approved: Iterable[str] = ()
) -> Admit | Deny | PairingRequired | Command:
    """The access decision for one inbound message. `approved`: senders approved by pairing
    for this channel account."""
    if request.chat_type == "direct":
        verdict = _direct(request, policy, approved)
        if verdict is not None:
            return verdict
        return _command_or_admit(request, mentioned=False)
    return _group(request, policy)


def _direct(
    request: AccessRequest, policy: ChannelPolicy, approved: Iterable[str]
) -> Deny | PairingRequired | None:
    mode = policy.dm_policy
    if mode == "disabled":
        return Deny("dm-disabled")
    if not request.sender_id:
        return Deny("no-sender")
    allow = policy.allow_from
    if mode == "pairing":
        allow = allow_list(policy.channel, _entries(allow), approved)
    if allow.allows(policy.channel, request.sender_id):
        return None
    if mode == "pairing":
        return PairingRequired()
    return Deny("dm-not-allowed")


def _entries(allow: AllowList) -> list[str]:
    return [*allow.entries, *([WILDCARD] if allow.wildcard else [])]


def _command_or_admit(request: AccessRequest, *, mentioned: bool) -> Admit | Command:
    name = detect_command(request.text, request.bot_username)
    if name is not None:
        return Command(name, mentioned)
    return Admit(mentioned)


@dataclass(frozen=True, slots=True)
class _GroupView:
    listed: bool  # the allow-list admits this conversation
    allowlist_enabled: bool
    explicit: bool  # the conversation itself (not `"*"`) is listed
    scopes: tuple[_Scope, ...]  # most specific first
    conversation_id: str | None


def _lookup(table: Mapping[str, ChannelGroup], *keys: str | None) -> ChannelGroup | None:
    for key in keys:
        if key is not None and key in table:
            return table[key]
    return None


def _group_view(request: AccessRequest, policy: ChannelPolicy) -> _GroupView:
    """The conversation's entry in the group allow-list. The list is enforced when the account's
    (or channel's) own groupPolicy is `allowlist` or the map is not empty (OpenClaw's
    `resolveChannelGroupPolicy`: neither `channels.defaults` nor a per-group policy counts)."""
    group_id = request.group_id
    mode = policy.group_policy_mode
    if policy.channel == "discord" and request.guild_id is not None:
        guilds = policy.guilds
        guild = _lookup(guilds, request.guild_id)
        guild_default = guilds.get(WILDCARD)
        chosen_guild = guild or guild_default
        channels = (chosen_guild.channels if chosen_guild is not None else None) or {}
        channel = _lookup(channels, group_id, request.parent_id)
        channel_default = channels.get(WILDCARD)
        enabled = mode == "allowlist" or bool(guilds)
        listed = chosen_guild is not None and (
            not channels or channel is not None or channel_default is not None
        )
        scopes = tuple(s for s in (_scope(channel or channel_default), _scope(chosen_guild)) if s is not None)
        return _GroupView(
            listed or not enabled,
            enabled,
            guild is not None and (not channels or channel is not None),
            scopes,
            group_id,
        )
    table = policy.groups
    group = _lookup(table, group_id)
    default = table.get(WILDCARD)
    topic = None
    if group is not None and group.topics and request.thread_id is not None:
        topic = group.topics.get(request.thread_id)
    has_groups = bool(table)
    enabled = mode == "allowlist" or has_groups
    # allowlist without a group map but with a sender list: the sender list decides (OpenClaw's
    # `senderFilterBypass`, which Telegram's runtime does not ask for).
    sender_filter = (
        policy.channel != "telegram"
        and mode == "allowlist"
        and not has_groups
        and _group_allow(policy, None).has_entries
    )
    listed = not enabled or default is not None or group is not None or sender_filter
    scopes = tuple(s for s in (_scope(topic), _scope(group), _scope(default)) if s is not None)
    conversation = group_id if topic is None else f"{group_id}:topic:{request.thread_id}"
    return _GroupView(listed, enabled, group is not None, scopes, conversation)


def _group_allow(policy: ChannelPolicy, scopes: tuple[_Scope, ...] | None) -> AllowList:
    for scope in scopes or ():
        if scope.allow_from is not None:
            return allow_list(policy.channel, scope.allow_from)
    if policy.group_allow_from is not None:
        return policy.group_allow_from
    return policy.allow_from if policy.allow_from.has_entries else EMPTY


def _first(scopes: tuple[_Scope, ...], name: str) -> Any:
    for scope in scopes:
        value = getattr(scope, name)
        if value is not None:
            return value
    return None


def _group(request: AccessRequest, policy: ChannelPolicy) -> Admit | Deny | Command:
    view = _group_view(request, policy)
    mode: GroupPolicy = _first(view.scopes, "group_policy") or policy.group_policy
    if mode == "disabled":
        return Deny("group-policy-disabled")
    if view.allowlist_enabled and not view.listed:
        return Deny("group-not-allowed")
    if any(scope.enabled is False for scope in view.scopes[:2] if scope is not None):
        return Deny("group-disabled")
    # A group's own sender list (allowFrom, users, roles) applies whatever the policy.
    override = next((s for s in view.scopes if s.allow_from is not None), None)
    if override is not None and not allow_list(policy.channel, override.allow_from).allows(
        policy.channel, request.sender_id
    ):
        return Deny("sender-not-allowed")
    users = _first(view.scopes, "users")
    roles = _first(view.scopes, "roles")
    if users is not None or roles is not None:
        by_user = users is not None and allow_list(policy.channel, users).allows(
            policy.channel, request.sender_id
        )
        role_ids = {str(r) for r in (roles or ())}
        by_role = bool(role_ids & set(request.member_role_ids))
        if not (by_user or by_role):
            return Deny("sender-not-allowed")
    if mode == "allowlist" and override is None and users is None and roles is None:
        allow = _group_allow(policy, ())
        if not request.sender_id:
            return Deny("no-sender")
        if not (view.explicit or allow.has_entries):
            return Deny("group-allowlist-empty")
        if not ((view.explicit and not allow.has_entries) or allow.allows(policy.channel, request.sender_id)):
            return Deny("sender-not-allowed")
    return _gate_mentions(request, policy, view)


def _gate_mentions(request: AccessRequest, policy: ChannelPolicy, view: _GroupView) -> Admit | Deny | Command:
    require = _first(view.scopes, "require_mention")
    if require is None:
        require = policy.require_mention
    if require is None:
        require = True
    matcher = mention_matcher(policy, request.agent_id, view.conversation_id)
    mentioned = request.was_mentioned or matcher.matches(request.text)
    if mentioned or not require:
        return _command_or_admit(request, mentioned=mentioned)
    command = detect_command(request.text, request.bot_username)
    # Control commands bypass gating unless the message mentions someone else (OpenClaw's
    # `bypass`); native slash commands are addressed to the bot by construction.
    if request.is_command or (command is not None and not request.mentions_others):
        return Command(command, False) if command is not None else Admit(False)
    can_detect = request.can_detect_mention or bool(matcher.regexes)
    if not can_detect:
        return Admit(False)
    return Deny("mention-required")
