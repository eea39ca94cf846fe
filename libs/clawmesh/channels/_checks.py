"""What the config loader reports about channel access settings (one of `default_checks()`).

OpenClaw 2026.9.6 accepts `dmPolicy: "open"` without `"*"` and `allowlist` with an empty
`allowFrom` (both drop every DM) and ignores unsafe mention patterns at runtime, so clawmesh
loads such files too — refusing a config OpenClaw runs would break moving to clawmesh — and
says so in warnings with OpenClaw's wording and the path. Unusable mention patterns are never
compiled; the warning names each one.

Streaming: Discord's `progress` preview (OpenClaw's status draft) is not implemented and is
served as `off`, which the loader says once per key that asks for it; the legacy `streamMode`
is read by Discord only (a warning that it is a legacy spelling) and ignored elsewhere, with the
warning every key of older OpenClaw versions gets. Slash commands: `commands.native` and
`slashCommand.ephemeral` are read by Discord only (elsewhere: "not implemented" warnings).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from ..config import ChannelAccount, ChannelConfig, Config, ConfigError, Problem
from . import discord, slack, telegram, whatsapp
from ._mentions import unsafe_reason
from ._normalize import normalize_entry
from .accounts import channel_accounts
from .discord import streaming_source

__all__ = ["config_checks"]

_REASONS = {
    "unsafe-nested-repetition": "unsafe nested repetition (catastrophic backtracking)",
    "invalid-regex": "not a valid regular expression",
    "too-many-unbounded-quantifiers": "more than 2 unbounded quantifiers (*, +, {n,}): matching could take polynomial time",
}


def config_checks(config: Config) -> list[Problem]:
    problems: list[Problem] = []
    for name, channel in (config.document.channels or {}).items():
        base = f"$.channels.{name}" if name.isidentifier() else f"$.channels[{name!r}]"
        _account(problems, name, base, channel, None)
        _history_limit(problems, base, channel.history_limit)
        _streaming(problems, name, base, channel)
        _slash_commands(problems, name, base, channel)
        for account_id, account in (channel.accounts or {}).items():
            path = (
                f"{base}.accounts.{account_id}"
                if account_id.isidentifier()
                else f"{base}.accounts[{account_id!r}]"
            )
            _account(problems, name, path, account, (base, channel))
            _history_limit(problems, path, account.history_limit)
            _streaming(problems, name, path, account)
            _slash_commands(problems, name, path, account)
    _credentials(problems, config)
    messages = config.document.messages
    if messages is not None and messages.group_chat is not None:
        _history_limit(problems, "$.messages.groupChat", messages.group_chat.history_limit)
        _patterns(problems, "$.messages.groupChat.mentionPatterns", messages.group_chat.mention_patterns)
    for agent in config.agents:
        chat = agent.entry.group_chat
        if chat is not None:
            _patterns(problems, f"{agent.path}.groupChat.mentionPatterns", chat.mention_patterns)
    return problems


def _history_limit(problems: list[Problem], path: str, value: int | None) -> None:
    """OpenClaw's schema: a whole number, 0 or more (0 keeps no group history)."""
    if value is not None and value < 0:
        problems.append(Problem(f"{path}.historyLimit", f"must be 0 or more (0 keeps none), got {value}"))


def _discord_credentials(
    settings: ChannelAccount, account_id: str, env: Mapping[str, str], path: str
) -> None:
    discord.resolve_token(settings, account_id, env, path)
    public = discord.resolve_public_key(settings, account_id, env, path)
    if public is not None:
        discord.load_public_key(public, path)


# what ingress resolves when it starts an account (it raises ConfigError naming the key)
_CREDENTIALS: dict[str, Callable[[ChannelAccount, str, Mapping[str, str], str], object]] = {
    "telegram": telegram.resolve_token,
    "slack": slack.resolve_credentials,
    "discord": _discord_credentials,
    "whatsapp": whatsapp.resolve_credentials,
}


def _credentials(problems: list[Problem], config: Config) -> None:
    """The checks ingress makes of an account's credentials when it starts it (a missing Slack
    `appToken` in Socket Mode, a Discord `publicKey` that is not a key, an unreadable token
    file), so `clawmesh config validate` reports them too. Warnings, as at start: that account
    stays off and the gateway runs."""
    channels = config.document.channels
    for channel, resolve in _CREDENTIALS.items():
        for account in channel_accounts(channels, channel):
            if not account.enabled:
                continue
            try:
                resolve(account.settings, account.account_id, config.env, account.path)
            except ConfigError as exc:
                problems.extend(
                    Problem(p.path, f"{p.message} (account '{account.account_id}' will not start)", "warning")
                    for p in exc.problems
                )


def _account(
    problems: list[Problem],
    channel: str,
    path: str,
    account: ChannelAccount,
    parent: tuple[str, ChannelConfig] | None,
) -> None:
    policy = account.dm_policy or (parent[1].dm_policy if parent else None)
    if account.dm_policy is None and parent is not None and account.allow_from is None:
        return  # the channel's own settings (checked there) apply unchanged
    allow = (
        account.allow_from if account.allow_from is not None else (parent[1].allow_from if parent else None)
    )
    entries = [str(x).strip() for x in allow or ()]
    where = f"{path}.allowFrom"
    dotted = where.removeprefix("$.")
    if policy == "open" and "*" not in entries:
        if parent is not None and account.allow_from is None:
            parent_dotted = f"{parent[0].removeprefix('$.')}.allowFrom"
            message = (
                f'{path.removeprefix("$.")}.dmPolicy="open" but {dotted} is unset and {parent_dotted} does not '
                f'include "*"; all DMs will be dropped. Add "*" to {dotted} or {parent_dotted} or set '
                f'{path.removeprefix("$.")}.dmPolicy to "pairing"/"allowlist".'
            )
        else:
            message = (
                f'{path.removeprefix("$.")}.dmPolicy="open" but {dotted} does not include "*"; all DMs will be '
                f'dropped. Add "*" to {dotted} or set {path.removeprefix("$.")}.dmPolicy to "pairing"/"allowlist".'
            )
        problems.append(Problem(where, message, "warning"))
    elif policy == "allowlist" and not entries:
        problems.append(
            Problem(
                where,
                f'{path.removeprefix("$.")}.dmPolicy="allowlist" but {dotted} is empty; all DMs will be dropped. '
                f"Add at least one sender ID to {dotted} or change {path.removeprefix('$.')}.dmPolicy.",
                "warning",
            )
        )
    for key, values in (("allowFrom", account.allow_from), ("groupAllowFrom", account.group_allow_from)):
        for i, raw in enumerate(values or ()):
            if str(raw).strip() and normalize_entry(channel, raw) is None:
                problems.append(Problem(f"{path}.{key}[{i}]", _unusable(channel, raw), "warning"))


def _streaming(problems: list[Problem], channel: str, path: str, level: ChannelAccount) -> None:
    """One config level's streaming keys: Discord's `progress` is served as `off`; `streamMode`
    is Discord's legacy spelling and an ignored key of older OpenClaw versions elsewhere."""
    if channel != "discord":
        if level.stream_mode is not None:
            problems.append(
                Problem(
                    f"{path}.streamMode",
                    "a key of older OpenClaw versions (not in OpenClaw 2026.9.6), not implemented by "
                    "clawmesh; ignored",
                    "warning",
                )
            )
        return
    found = streaming_source(level)
    if found is None:
        return
    mode, key = found
    if mode == "progress":
        problems.append(
            Problem(
                f"{path}.{key}",
                'accepted, not implemented by clawmesh: Discord\'s "progress" status draft is served '
                'as "off" (no preview; the final reply only)',
                "warning",
            )
        )
    legacy = level.stream_mode
    if legacy is None or (mode == "progress" and key == "streamMode"):
        return
    if key == "streamMode":
        how = "read as such"
    elif legacy.strip().lower() not in ("off", "partial", "block", "progress"):
        how = f"{legacy!r} is not one of off|partial|block|progress; ignored"
    else:
        how = f"ignored: {key} is set too"
    problems.append(
        Problem(
            f"{path}.streamMode",
            f"the legacy spelling of streaming.mode (OpenClaw's `doctor --fix` moves it); {how}",
            "warning",
        )
    )


def _slash_commands(problems: list[Problem], channel: str, path: str, level: ChannelAccount) -> None:
    """`commands.native` and `slashCommand.ephemeral` are read by Discord only (its slash
    commands); elsewhere they load with the warning of any key OpenClaw has and clawmesh does not
    implement."""
    if channel == "discord":
        return
    found = []
    if level.commands is not None and level.commands.native is not None:
        found.append("commands.native")
    if level.slash_command is not None and level.slash_command.ephemeral is not None:
        found.append("slashCommand.ephemeral")
    for key in found:
        problems.append(Problem(f"{path}.{key}", "accepted, not implemented by clawmesh; ignored", "warning"))


def _unusable(channel: str, raw: str | int) -> str:
    if channel == "telegram":
        return (
            f"{raw!r} never matches: Telegram sender allow-lists take numeric user ids only "
            "(an @username is not resolved; a negative chat id belongs under channels.telegram.groups)"
        )
    if channel == "whatsapp":
        return f"{raw!r} never matches: WhatsApp senders are phone numbers (E.164, e.g. +15551234567)"
    return f"{raw!r} never matches"


def _patterns(problems: list[Problem], path: str, patterns: list[str] | None) -> None:
    for i, pattern in enumerate(patterns or ()):
        reason = unsafe_reason(pattern.replace("\b", "\\b"))
        if reason is not None and reason != "empty":
            problems.append(
                Problem(
                    f"{path}[{i}]",
                    f"mention pattern {pattern!r} refused: {_REASONS.get(reason, reason)}; it is never used",
                    "warning",
                )
            )
