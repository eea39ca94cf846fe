"""OpenClaw's mapping of a Discord `MESSAGE_CREATE` to routing input, the token's sources, the
REST base, the reply limit, and the preview mode (`streaming`, legacy `streamMode`, per account)
with the loader's warnings for what is not served as asked."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from clawmesh.channels.accounts import channel_accounts
from clawmesh.channels.discord import (
    DEFAULT_API_BASE_URL,
    INTENTS,
    BotIdentity,
    DiscordInbound,
    Message,
    api_base_url,
    max_lines,
    normalize_message,
    preview_mode,
    resolve_token,
    streaming_source,
    text_chunk_limit,
)
from clawmesh.channels.text import cap_lines
from clawmesh.checks import default_checks
from clawmesh.config import ChannelAccount, ChannelConfig, ConfigError, SecretRef, parse_config
from clawmesh.wire import Peer, Sender

BOT = BotIdentity(id="900", username="clawbot")


def _msg(**fields: Any) -> Message:
    base: dict[str, Any] = {
        "id": "1001",
        "channel_id": "C1",
        "author": {"id": "42", "username": "ada", "global_name": "Ada"},
        "content": "hi",
        "type": 0,
    }
    base.update(fields)
    return msgspec.convert(base, Message)


def _in(msg: Message, channel_type: int | None = None, parent: str | None = None) -> DiscordInbound:
    got = normalize_message(msg, BOT, channel_type=channel_type, parent_id=parent)
    assert isinstance(got, DiscordInbound), got
    return got


def test_intents_are_guilds_guild_and_direct_messages_and_message_content() -> None:
    assert INTENTS == 37377


def test_a_dm_is_the_author_as_direct_peer_and_needs_no_mention() -> None:
    dc = _in(_msg(channel_type=1), channel_type=1)
    assert dc.peer == Peer(kind="direct", id="42") and dc.parent_peer is None
    assert dc.is_direct and dc.guild_id is None and dc.member_role_ids == ()
    assert dc.sender == Sender(id="42", username="ada", name="Ada")
    assert dc.platform_message_id == "C1:1001"


def test_a_guild_message_is_its_channel_with_the_guild_and_member_roles() -> None:
    msg = _msg(guild_id="G1", member={"roles": ["r1", "r2"]}, mentions=[{"id": "900"}], content="<@900> hi")
    dc = _in(msg, channel_type=0)
    assert dc.peer == Peer(kind="channel", id="C1") and dc.parent_peer is None
    assert dc.guild_id == "G1" and dc.member_role_ids == ("r1", "r2")
    assert dc.was_mentioned and not dc.mentions_others
    assert dc.text == "<@900> hi"  # as OpenClaw, the mention stays in the text


def test_a_thread_message_is_the_thread_with_its_parent_channel_as_parent_peer() -> None:
    dc = _in(_msg(guild_id="G1", channel_id="T9"), channel_type=11, parent="C1")
    assert dc.peer == Peer(kind="channel", id="T9")
    assert dc.parent_peer == Peer(kind="channel", id="C1") and dc.parent_id == "C1"
    # not a thread: a parent (a category) is not a parent peer
    plain = _in(_msg(guild_id="G1"), channel_type=0, parent="CAT")
    assert plain.parent_peer is None and plain.parent_id is None


@pytest.mark.parametrize(
    ("fields", "mentioned", "others"),
    [
        ({"mentions": [{"id": "900"}]}, True, False),
        ({"mentions": [{"id": "901"}]}, False, True),
        ({"mention_roles": ["r1"]}, False, True),
        ({"mention_everyone": True}, True, False),  # @everyone/@here from a person counts
        ({"type": 19, "referenced_message": {"author": {"id": "900", "bot": True}}}, True, False),
        ({"type": 19, "referenced_message": {"author": {"id": "43"}}}, False, False),
        ({}, False, False),
    ],
)
def test_mentions(fields: dict[str, Any], mentioned: bool, others: bool) -> None:
    dc = _in(_msg(guild_id="G1", **fields), channel_type=0)
    assert (dc.was_mentioned, dc.mentions_others) == (mentioned, others)


@pytest.mark.parametrize(
    ("fields", "channel_type", "why"),
    [
        ({"author": {"id": "900", "bot": True}}, 1, "own"),
        ({"author": {"id": "7", "bot": True}}, 1, "bot"),
        ({"webhook_id": "w1"}, 0, "bot"),
        ({"type": 7}, 0, "not-chat"),  # a member joined
        ({"type": 20}, 0, "not-chat"),  # a slash command's message
        ({}, 3, "group-dm"),  # OpenClaw's dm.groupEnabled default
        ({"content": "  "}, 1, "empty"),  # no MESSAGE_CONTENT intent, or only attachments
    ],
)
def test_what_is_dropped(fields: dict[str, Any], channel_type: int, why: str) -> None:
    assert normalize_message(_msg(**fields), BOT, channel_type=channel_type) == why


def test_a_malformed_message_does_not_decode() -> None:
    with pytest.raises(msgspec.ValidationError, match="author"):
        msgspec.json.decode(b'{"id": "1", "channel_id": "2"}', type=Message)


def test_token_from_config_a_secret_ref_or_the_environment_for_the_default_account() -> None:
    path = "$.channels.discord"
    env = {"DISCORD_BOT_TOKEN": " env-token ", "MY_TOKEN": "ref-token"}
    assert resolve_token(ChannelAccount(token="cfg-token"), "default", env, path) == "cfg-token"
    ref = SecretRef(source="env", provider="default", id="MY_TOKEN")
    assert resolve_token(ChannelAccount(token=ref), "work", env, path) == "ref-token"
    assert resolve_token(ChannelAccount(), "default", env, path) == "env-token"
    assert resolve_token(ChannelAccount(), "work", env, f"{path}.accounts.work") is None
    assert resolve_token(ChannelAccount(token="Bot abc"), "default", {}, path) == "abc"
    with pytest.raises(ConfigError, match=r"\$\.channels\.discord\.token: environment variable NOPE"):
        resolve_token(ChannelAccount(token="${NOPE}"), "default", {}, path)


def test_the_channel_token_makes_a_default_account_beside_named_ones() -> None:
    section = msgspec.convert(
        {"token": "t0", "accounts": {"work": {"token": "t1"}}}, ChannelConfig, from_attributes=False
    )
    ids = [a.account_id for a in channel_accounts({"discord": section}, "discord")]
    assert ids == ["work", "default"]
    work = channel_accounts({"discord": section}, "discord")[0]
    assert work.settings.token == "t1"


def test_rest_base_from_the_key_then_openclaws_env_then_discord() -> None:
    path = "$.channels.discord"
    assert api_base_url(ChannelAccount(), {}, path) == DEFAULT_API_BASE_URL
    assert api_base_url(ChannelAccount(), {"DISCORD_API_URL": "http://127.0.0.1:9/api/v10/"}, path) == (
        "http://127.0.0.1:9/api/v10"
    )
    assert api_base_url(ChannelAccount(api_base_url="http://h/api/v10"), {"DISCORD_API_URL": "x"}, path) == (
        "http://h/api/v10"
    )
    with pytest.raises(ConfigError, match=r"\$\.channels\.discord\.apiBaseUrl: expected an http\(s\) URL"):
        api_base_url(ChannelAccount(api_base_url="discord.com"), {}, path)


def test_text_chunk_limit_within_discords_2000() -> None:
    assert text_chunk_limit(ChannelAccount()) == 2000
    assert text_chunk_limit(ChannelAccount(text_chunk_limit=500)) == 500
    assert text_chunk_limit(ChannelAccount(text_chunk_limit=5000)) == 2000


def test_tall_replies_are_cut_at_max_lines_keeping_code_blocks_whole() -> None:
    assert max_lines(ChannelAccount()) == 17 and max_lines(ChannelAccount(max_lines_per_message=5)) == 5
    text = "\n".join(f"l{i}" for i in range(40))
    assert [p.count("\n") + 1 for p in cap_lines(text, 17)] == [17, 17, 6]
    assert cap_lines("short", 17) == ["short"]
    code = "intro\n```py\n" + "\n".join(f"x{i}" for i in range(30)) + "\n```\nafter"
    first, second = cap_lines(code, 17)
    # the block is closed at the cut and opened again, with its language, in the next piece
    assert first.endswith("x14\n```") and first.count("```") == 2
    assert second.startswith("```py\nx15\n") and second.endswith("```\nafter")
    assert cap_lines("a\n\n\n\n", 2) == ["a\n"]  # no piece of blank lines only


def _section(discord: dict[str, Any]) -> ChannelConfig:
    return msgspec.convert(discord, ChannelConfig)


@pytest.mark.parametrize(
    ("discord", "mode"),
    [
        ({}, "off"),  # Discord's default (OpenClaw 2026.9.6)
        ({"streaming": {"mode": "partial"}}, "partial"),
        ({"streaming": {"mode": "block"}}, "block"),
        ({"streaming": {"mode": "progress"}}, "progress"),
        ({"streaming": {"mode": " Partial "}}, "partial"),  # trimmed, case-folded
        ({"streaming": {}}, "off"),  # an object without a mode
        ({"streaming": {"mode": "bogus"}}, "off"),
        # the legacy spellings, as OpenClaw's migration reads them: a bare mode string, then
        # `streamMode`, then a boolean
        ({"streaming": "block"}, "block"),
        ({"streamMode": "partial"}, "partial"),
        ({"streaming": True}, "partial"),
        ({"streaming": False}, "off"),
        ({"streaming": True, "streamMode": "off"}, "off"),
        ({"streaming": {"mode": "partial"}, "streamMode": "off"}, "partial"),
        ({"streaming": "partial", "streamMode": "block"}, "partial"),
        ({"streaming": {"mode": "bogus"}, "streamMode": "block"}, "block"),
    ],
)
def test_the_preview_mode_as_openclaw_reads_it(discord: dict[str, Any], mode: str) -> None:
    assert preview_mode(_section(discord), "default") == mode


def test_an_accounts_own_streaming_keys_override_the_channels_as_a_whole() -> None:
    section = _section(
        {
            "streaming": {"mode": "partial"},
            "accounts": {
                "Quiet": {"streaming": {"mode": "off"}},
                "legacy": {"streamMode": "block"},  # the account's own legacy key wins
                "bare": {"streaming": {}},  # its object replaces the channel's: off
                "inherits": {"token": "t"},
            },
        }
    )
    assert preview_mode(section, "quiet") == "off"  # account ids are normalised
    assert preview_mode(section, "legacy") == "block"
    assert preview_mode(section, "bare") == "off"
    assert preview_mode(section, "inherits") == "partial"
    assert preview_mode(section, "default") == "partial"  # the channel's own token
    assert preview_mode(None, "default") == "off"
    assert streaming_source(ChannelAccount()) is None
    assert streaming_source(ChannelAccount(stream_mode="progress")) == ("progress", "streamMode")


def _warnings(discord: dict[str, Any], channel: str = "discord") -> list[str]:
    config = parse_config({"channels": {channel: discord}}, env={}, checks=default_checks())
    return [str(w) for w in config.warnings if "stream" in w.path]


def test_progress_loads_with_one_warning_that_it_is_served_as_off() -> None:
    served_off = 'Discord\'s "progress" status draft is served as "off"'
    found = _warnings({"token": "t", "streaming": {"mode": "progress"}})
    assert len(found) == 1 and found[0].startswith(
        "$.channels.discord.streaming.mode: accepted, not implemented"
    )
    assert served_off in found[0]
    found = _warnings({"token": "t", "accounts": {"a": {"token": "t", "streamMode": "progress"}}})
    assert len(found) == 1 and found[0].startswith("$.channels.discord.accounts.a.streamMode:")
    assert served_off in found[0]
    assert _warnings({"token": "t", "streaming": {"mode": "partial"}}) == []
    assert _warnings({"token": "t", "streaming": True}) == []


def test_stream_mode_is_discords_legacy_spelling_and_an_ignored_old_key_elsewhere() -> None:
    assert _warnings({"token": "t", "streamMode": "partial"}) == [
        "$.channels.discord.streamMode: the legacy spelling of streaming.mode (OpenClaw's `doctor --fix` "
        "moves it); read as such"
    ]
    assert _warnings({"token": "t", "streaming": {"mode": "off"}, "streamMode": "partial"}) == [
        "$.channels.discord.streamMode: the legacy spelling of streaming.mode (OpenClaw's `doctor --fix` "
        "moves it); ignored: streaming.mode is set too"
    ]
    assert _warnings({"botToken": "t", "streamMode": "partial"}, "telegram") == [
        "$.channels.telegram.streamMode: a key of older OpenClaw versions (not in OpenClaw 2026.9.6), "
        "not implemented by clawmesh; ignored"
    ]
