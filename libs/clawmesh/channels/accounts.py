"""The accounts of a channel as OpenClaw reads them (`channels.<ch>` and
`channels.<ch>.accounts.<id>`): each account is the channel's own settings overridden key by
key by the account's, ids normalised; `defaultAccount` picks the default one."""

from __future__ import annotations

from dataclasses import dataclass

import msgspec

from ..config import ChannelAccount, ChannelConfig
from ..ids import DEFAULT_ACCOUNT_ID, normalize_account_id

__all__ = ["AccountSettings", "channel_accounts", "default_account_id"]

# keys of ChannelConfig that are not account settings
_CHANNEL_ONLY = frozenset({"accounts", "default_account"})
# credentials are never inherited: a named account without its own token has none (two
# accounts polling one bot token would take each other's updates)
_CREDENTIALS = (
    "bot_token",
    "token_file",
    "token",
    "app_token",
    "signing_secret",
    "webhook_secret",
    "access_token",
    "app_secret",
    "verify_token",
    "phone_number_id",
)


@dataclass(frozen=True)
class AccountSettings:
    """One account of a channel: `settings` merged (the account's keys win), `path` where the
    account's own keys sit in the config (for error messages)."""

    channel: str
    account_id: str
    settings: ChannelAccount
    path: str
    is_default: bool

    @property
    def enabled(self) -> bool:
        return self.settings.enabled is not False


def _base(section: ChannelConfig) -> ChannelAccount:
    fields = {f: getattr(section, f) for f in ChannelAccount.__struct_fields__ if f not in _CHANNEL_ONLY}
    return ChannelAccount(**fields)


def _merged(base: ChannelAccount, account: ChannelAccount) -> ChannelAccount:
    inherited = msgspec.structs.replace(base, **dict.fromkeys(_CREDENTIALS))
    overrides = {f: getattr(account, f) for f in account.__struct_fields__ if getattr(account, f) is not None}
    return msgspec.structs.replace(inherited, **overrides)


def default_account_id(section: ChannelConfig | None) -> str:
    """`defaultAccount` when it names a configured account, else `default` when present, else the
    first account id in sorted order (OpenClaw's fallback); `default` with no accounts."""
    ids = sorted(normalize_account_id(k) for k in (section.accounts or {})) if section else []
    if not ids:
        return DEFAULT_ACCOUNT_ID
    wanted = normalize_account_id(section.default_account) if section and section.default_account else None
    if wanted in ids:
        return wanted
    return DEFAULT_ACCOUNT_ID if DEFAULT_ACCOUNT_ID in ids else ids[0]


def channel_accounts(channels: dict[str, ChannelConfig] | None, channel: str) -> list[AccountSettings]:
    """Every account of `channel`, enabled or not (see `AccountSettings.enabled`). With no
    `accounts` map the channel itself is the `default` account; with one, each entry is an
    account, plus the channel itself as `default` when it carries its own token."""
    section = (channels or {}).get(channel)
    if section is None:
        return []
    base = _base(section)
    default = default_account_id(section)
    prefix = f"$.channels.{channel}"
    if not section.accounts:
        return [AccountSettings(channel, DEFAULT_ACCOUNT_ID, base, prefix, True)]
    accounts: list[AccountSettings] = []
    for raw_id, account in sorted(section.accounts.items()):
        account_id = normalize_account_id(raw_id)
        merged = _merged(base, account)
        if section.enabled is False:
            merged = msgspec.structs.replace(merged, enabled=False)
        accounts.append(
            AccountSettings(channel, account_id, merged, f"{prefix}.accounts.{raw_id}", account_id == default)
        )
    ids = {a.account_id for a in accounts}
    own = (section.bot_token, section.token_file, section.token, section.phone_number_id)
    if DEFAULT_ACCOUNT_ID not in ids and any(v is not None for v in own):
        accounts.append(
            AccountSettings(channel, DEFAULT_ACCOUNT_ID, base, prefix, default == DEFAULT_ACCOUNT_ID)
        )
    return accounts
