"""OpenClaw's mapping of a Discord `MESSAGE_CREATE` to routing input, the token's sources, the
REST base, the reply limit, and the preview mode (`streaming`, legacy `streamMode`, per account)
with the loader's warnings for what is not served as asked. Slash commands over HTTP: the
Ed25519 signature (right, wrong, stale, garbled), the interaction's ids bounded, a command as
routing input and command text as OpenClaw's native commands map it, the slash session key, the
commands registered, and their keys (`publicKey`, `applicationId`, `commands.native`,
`slashCommand.ephemeral`, `webhookPath`). Attachments as OpenClaw takes them in: named and
typed (declared, else by the name), a voice message's type, `mediaMaxMb`, the CDN URLs
downloaded from."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from clawmesh.channels.accounts import channel_accounts
from clawmesh.channels.discord import (
    DEFAULT_API_BASE_URL,
    INTENTS,
    Attachment,
    BotIdentity,
    DiscordInbound,
    Interaction,
    Message,
    SlashInbound,
    api_base_url,
    application_id_from_token,
    attachment_url_refused,
    command_definitions,
    commands_hash,
    configured_application_id,
    ephemeral_replies,
    interactions_path,
    load_public_key,
    max_lines,
    media_budget,
    message_files,
    native_commands_enabled,
    normalize_interaction,
    normalize_message,
    preview_mode,
    resolve_public_key,
    resolve_token,
    slash_session_key,
    streaming_source,
    text_chunk_limit,
    verify_interaction,
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
        ({"content": "  "}, 1, "empty"),  # no MESSAGE_CONTENT intent (and no file)
    ],
)
def test_what_is_dropped(fields: dict[str, Any], channel_type: int, why: str) -> None:
    assert normalize_message(_msg(**fields), BOT, channel_type=channel_type) == why


def _att(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": "3001",
        "filename": "a.bin",
        "size": 10,
        "url": "https://cdn.discordapp.com/attachments/C1/3001/a.bin?ex=1&is=2&hm=3&",
        "proxy_url": "https://media.discordapp.net/attachments/C1/3001/a.bin?ex=1&is=2&hm=3&",
    }
    base.update(fields)
    return base


def _files(*attachments: dict[str, Any], flags: int = 0) -> list[tuple[str, str, str, int | None]]:
    msg = _msg(attachments=list(attachments), flags=flags)
    return [(f.kind, f.name, f.mime, f.size) for f in message_files(msg)]


def test_attachments_are_named_as_sent_and_typed_as_declared_else_by_their_name() -> None:
    assert _files(_att(filename="Q3 report.pdf", content_type="application/pdf", size=512)) == [
        ("file", "Q3 report.pdf", "application/pdf", 512)
    ]
    # parameters dropped, case folded: what the runner tests for an image part
    assert _files(_att(filename="shot.PNG", content_type="Image/PNG; foo=bar")) == [
        ("picture", "shot.PNG", "image/png", 10)
    ]
    # no content_type (Discord could not tell): by the name, from Python's own table (never the
    # host's mime.types), with what chats send that it lacks
    assert _files(_att(filename="notes.md"), _att(filename="cat.webp"), _att(filename="clip.mov")) == [
        ("file", "notes.md", "text/markdown", 10),
        ("picture", "cat.webp", "image/webp", 10),
        ("video", "clip.mov", "video/quicktime", 10),
    ]
    # a vague declared type says less than the name (OpenClaw's non-definitive types)
    assert _files(_att(filename="song.mp3", content_type="application/octet-stream")) == [
        ("sound file", "song.mp3", "audio/mpeg", 10)
    ]
    # neither: application/octet-stream; a missing name is made from the id
    assert _files(_att(filename="blob")) == [("file", "blob", "application/octet-stream", 10)]
    assert _files(_att(filename="", content_type="application/pdf")) == [
        ("file", "attachment-3001.pdf", "application/pdf", 10)
    ]
    # a size Discord did not give (or a nonsense one) is unknown, not zero
    assert [f.size for f in message_files(_msg(attachments=[_att(size=None), _att(size=-1)]))] == [None, None]
    # the CDN URL (`url`, its signed query kept), not the media proxy's
    (only,) = message_files(_msg(attachments=[_att()]))
    assert only.url == "https://cdn.discordapp.com/attachments/C1/3001/a.bin?ex=1&is=2&hm=3&"
    # Discord sends at most 10
    assert len(message_files(_msg(attachments=[_att(id=str(i)) for i in range(12)]))) == 10


def test_a_voice_message_is_audio_ogg_as_openclaw_infers_it() -> None:
    voice = {"filename": "voice-message.ogg", "duration_secs": 3.5, "waveform": "AAAA"}
    flagged = _files(_att(content_type="audio/ogg", **voice), flags=8192)
    assert flagged == [("voice message", "voice-message.ogg", "audio/ogg", 10)]
    # without its declared type or the flag: its waveform (or duration) still makes it one
    assert _files(_att(**voice)) == [("voice message", "voice-message.ogg", "audio/ogg", 10)]
    assert _files(_att(filename="v", duration_secs=2.0, content_type="application/ogg")) == [
        ("voice message", "v", "audio/ogg", 10)
    ]
    assert _files(_att(filename="", id="9", duration_secs=1.0)) == [
        ("voice message", "voice-message-9.ogg", "audio/ogg", 10)
    ]
    # another audio type declared is kept; a picture with a duration is still a picture
    assert _files(_att(filename="v.m4a", content_type="audio/mp4"), flags=8192)[0][2] == "audio/mp4"
    assert _files(_att(filename="a.gif", content_type="image/gif", duration_secs=1.0))[0][:3] == (
        "picture",
        "a.gif",
        "image/gif",
    )


def test_a_message_with_only_a_file_is_kept_and_still_needs_its_mention_in_a_guild() -> None:
    # the file is what was said: no text is no reason to drop it
    dm = _in(_msg(content="", attachments=[_att(filename="a.pdf")]), channel_type=1)
    assert dm.text == "" and [f.name for f in dm.files] == ["a.pdf"]
    # in a guild, the mention facts are the message's as ever: no mention, not mentioned
    guild = _in(_msg(guild_id="G1", content="", attachments=[_att()]), channel_type=0)
    assert not guild.was_mentioned and not guild.mentions_others
    # the other reasons to drop a message still hold with a file
    own = _msg(author={"id": "900", "bot": True}, content="", attachments=[_att()])
    assert normalize_message(own, BOT, channel_type=1) == "own"
    assert normalize_message(_msg(content="", attachments=[_att()]), BOT, channel_type=3) == "group-dm"
    # text only: no files
    assert _in(_msg(), channel_type=1).files == ()


def test_media_max_mb_is_openclaws_100_by_default() -> None:
    assert media_budget(ChannelAccount()) == 100 * 1024 * 1024
    assert media_budget(ChannelAccount(media_max_mb=1.5)) == 1_572_864
    assert media_budget(ChannelAccount(media_max_mb=0)) == 0


@pytest.mark.parametrize(
    ("url", "api_base", "why"),
    [
        ("https://cdn.discordapp.com/attachments/1/2/a.pdf?ex=1", DEFAULT_API_BASE_URL, None),
        ("https://media.discordapp.net/attachments/1/2/a.png", DEFAULT_API_BASE_URL, None),
        # Discord's CDN whatever the REST base (a REST proxy still gets Discord's URLs)
        ("https://cdn.discordapp.com/x", "http://proxy.internal:8080/api/v10", None),
        # the REST base's own origin: a Discord-compatible endpoint, the tests' fake
        ("http://127.0.0.1:5000/cdn/attachments/1/2/a", "http://127.0.0.1:5000/api/v10", None),
        ("http://127.0.0.1:5001/cdn/a", "http://127.0.0.1:5000/api/v10", "neither"),
        ("https://127.0.0.1:5000/cdn/a", "http://127.0.0.1:5000/api/v10", "neither"),
        ("http://cdn.discordapp.com/x", DEFAULT_API_BASE_URL, "neither"),  # not over TLS
        ("https://cdn.discordapp.com.evil.example/x", DEFAULT_API_BASE_URL, "neither"),
        ("https://evildiscordapp.com/x", DEFAULT_API_BASE_URL, "neither"),
        ("http://169.254.169.254/latest/meta-data", DEFAULT_API_BASE_URL, "neither"),
        ("https://user:pw@cdn.discordapp.com/x", DEFAULT_API_BASE_URL, "not an http(s) URL"),
        ("file:///etc/passwd", DEFAULT_API_BASE_URL, "not an http(s) URL"),
        ("ftp://cdn.discordapp.com/x", DEFAULT_API_BASE_URL, "not an http(s) URL"),
        ("", DEFAULT_API_BASE_URL, "not an http(s) URL"),
        ("https://cdn.discordapp.com:99999/x", DEFAULT_API_BASE_URL, "not an http(s) URL"),
    ],
)
def test_attachments_are_downloaded_from_discords_cdn_or_the_rest_origin_only(
    url: str, api_base: str, why: str | None
) -> None:
    found = attachment_url_refused(url, api_base)
    if why is None:
        assert found is None
    else:
        assert found is not None and why in found


def test_an_attachment_decodes_leniently() -> None:
    raw = (
        b'{"id": "1", "channel_id": "2", "author": {"id": "3"}, "content": "", "flags": 8192,'
        b' "attachments": [{"id": "4", "filename": "voice-message.ogg", "size": 7, "url": "u",'
        b' "proxy_url": "p", "duration_secs": 1.25, "waveform": "AA==", "placeholder": "x",'
        b' "ephemeral": false, "width": null}]}'
    )
    msg = msgspec.json.decode(raw, type=Message)
    assert msg.attachments == [
        Attachment(
            id="4",
            filename="voice-message.ogg",
            size=7,
            url="u",
            proxy_url="p",
            duration_secs=1.25,
            waveform="AA==",
        )
    ]
    assert msg.flags == 8192


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


# --- slash commands over HTTP ---------------------------------------------------------------

PRIVATE = Ed25519PrivateKey.generate()
PUBLIC_HEX = PRIVATE.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex()
NOW = 1_790_000_000.0


def _signed(body: bytes, timestamp: str = str(int(NOW))) -> tuple[str, str]:
    return timestamp, PRIVATE.sign(timestamp.encode() + body).hex()


def test_an_interaction_is_verified_over_the_timestamp_and_the_raw_body() -> None:
    key = load_public_key(PUBLIC_HEX, "$.channels.discord")
    body = b'{"type":1,"id":"1","application_id":"2"}'
    ts, sig = _signed(body)
    assert verify_interaction(key, ts, sig, body, NOW) is None
    assert verify_interaction(key, ts, sig.upper(), body, NOW + 299) is None  # hex in any case
    assert verify_interaction(key, ts, sig, body + b" ", NOW) == "wrong X-Signature-Ed25519"
    other = Ed25519PrivateKey.generate().sign(ts.encode() + body).hex()
    assert verify_interaction(key, ts, other, body, NOW) == "wrong X-Signature-Ed25519"
    # the timestamp is part of what is signed
    assert verify_interaction(key, str(int(NOW) + 1), sig, body, NOW) == "wrong X-Signature-Ed25519"


@pytest.mark.parametrize(
    ("timestamp", "signature", "why"),
    [
        ("", None, "missing or malformed X-Signature-Timestamp"),
        ("17900000O0", None, "missing or malformed X-Signature-Timestamp"),
        ("-1790000000", None, "missing or malformed X-Signature-Timestamp"),
        ("1790000000.5", None, "missing or malformed X-Signature-Timestamp"),
        ("\u0661\u0662", None, "missing or malformed X-Signature-Timestamp"),  # Arabic-Indic digits
        (str(int(NOW) - 301), None, "stale X-Signature-Timestamp (outside the 5-minute window)"),
        (str(int(NOW) + 301), None, "stale X-Signature-Timestamp (outside the 5-minute window)"),
        (str(int(NOW)), "", "missing or malformed X-Signature-Ed25519"),
        (str(int(NOW)), "zz" * 64, "missing or malformed X-Signature-Ed25519"),
        (str(int(NOW)), "00" * 63, "missing or malformed X-Signature-Ed25519"),
        (str(int(NOW)), " ".join(["00"] * 64), "missing or malformed X-Signature-Ed25519"),
    ],
)
def test_a_garbled_or_stale_request_is_refused_before_the_signature(
    timestamp: str, signature: str | None, why: str
) -> None:
    key = load_public_key(PUBLIC_HEX, "$.channels.discord")
    body = b"{}"
    sig = signature if signature is not None else PRIVATE.sign(timestamp.encode() + body).hex()
    assert verify_interaction(key, timestamp, sig, body, NOW) == why


def test_the_public_key_from_config_a_secret_ref_or_the_environment() -> None:
    path = "$.channels.discord"
    env = {"DISCORD_PUBLIC_KEY": f" {PUBLIC_HEX} ", "PK": PUBLIC_HEX}
    assert resolve_public_key(ChannelAccount(public_key="abc"), "default", env, path) == "abc"
    ref = SecretRef(source="env", provider="default", id="PK")
    assert resolve_public_key(ChannelAccount(public_key=ref), "work", env, path) == PUBLIC_HEX
    assert resolve_public_key(ChannelAccount(), "default", env, path) == PUBLIC_HEX
    assert resolve_public_key(ChannelAccount(), "work", env, f"{path}.accounts.work") is None
    with pytest.raises(
        ConfigError, match=r"\$\.channels\.discord\.publicKey: expected the application's"
    ) as err:
        load_public_key("not-a-key", path)
    assert "not-a-key" not in str(err.value)
    with pytest.raises(ConfigError, match="publicKey"):
        load_public_key(PUBLIC_HEX[:-2], path)


def test_the_endpoint_path_and_the_application_id() -> None:
    path = "$.channels.discord"
    assert interactions_path(ChannelAccount(), path) == "/discord/interactions"
    assert interactions_path(ChannelAccount(webhook_path="/hooks/discord"), path) == "/hooks/discord"
    with pytest.raises(ConfigError, match=r"webhookPath: must start with '/'"):
        interactions_path(ChannelAccount(webhook_path="discord"), path)
    # OpenClaw's parseApplicationIdFromToken: the token's first part is base64 of the id
    assert application_id_from_token("MTAxODk.fake.x1") == "10189"
    assert application_id_from_token("MTAxODk") is None
    assert application_id_from_token("bm90LWRpZ2l0cw.x.y") is None  # "not-digits"
    assert application_id_from_token("%%%.x.y") is None
    assert configured_application_id(ChannelAccount(application_id=" 111 "), path) == "111"
    assert configured_application_id(ChannelAccount(), path) is None
    with pytest.raises(ConfigError, match=r"applicationId: expected the application's id"):
        configured_application_id(ChannelAccount(application_id="../../x"), path)


def _ix(**fields: Any) -> Interaction:
    base: dict[str, Any] = {
        "id": "3001",
        "application_id": "10189",
        "type": 2,
        "token": "aW50ZXJhY3Rpb246MzAwMTp4",
        "data": {
            "id": "77",
            "name": "ask",
            "type": 1,
            "options": [{"name": "prompt", "type": 3, "value": " hi "}],
        },
        "guild_id": "5100",
        "channel_id": "5101",
        "channel": {"id": "5101", "type": 0},
        "member": {"user": {"id": "42", "username": "ada", "global_name": "Ada"}, "roles": ["7", "8"]},
    }
    base.update(fields)
    return msgspec.convert(base, Interaction)


def _slash(ix: Interaction) -> SlashInbound:
    got = normalize_interaction(ix)
    assert isinstance(got, SlashInbound), got
    return got


def test_a_slash_command_in_a_guild_is_its_channel_with_the_member_and_roles() -> None:
    sc = _slash(_ix())
    assert sc.peer == Peer(kind="channel", id="5101") and sc.parent_peer is None
    assert sc.guild_id == "5100" and sc.member_role_ids == ("7", "8") and not sc.is_direct
    assert sc.sender == Sender(id="42", username="ada", name="Ada")
    assert sc.text == "hi" and sc.command.name == "ask" and not sc.command.control
    assert sc.platform_message_id == "5101:interaction:3001"
    assert (sc.interaction_id, sc.application_id) == ("3001", "10189")


def test_a_slash_command_in_a_thread_has_its_parent_channel_and_in_a_dm_the_user() -> None:
    sc = _slash(_ix(channel_id="5103", channel={"id": "5103", "type": 11, "parent_id": "5102"}))
    assert sc.peer == Peer(kind="channel", id="5103") and sc.parent_peer == Peer(kind="channel", id="5102")
    assert sc.parent_id == "5102"
    user = {"id": "42", "username": "ada"}
    dm = _slash(_ix(guild_id=None, member=None, user=user, channel_id="9", channel={"id": "9", "type": 1}))
    assert dm.peer == Peer(kind="direct", id="42") and dm.is_direct and dm.member_role_ids == ()
    # no channel object: a DM by the missing guild
    bare = _slash(_ix(guild_id=None, member=None, user=user, channel_id="9", channel=None))
    assert bare.peer == Peer(kind="direct", id="42")


@pytest.mark.parametrize(
    ("name", "options", "text"),
    [
        ("new", [], "/new"),
        ("new", [{"name": "input", "type": 3, "value": " gpt-x  "}], "/new gpt-x"),
        ("reset", [], "/reset"),
        ("status", [{"name": "input", "type": 3, "value": ""}], "/status"),
        ("stop", [], "/stop"),
    ],
)
def test_a_control_command_is_openclaws_command_text(name: str, options: list[Any], text: str) -> None:
    sc = _slash(_ix(data={"name": name, "type": 1, "options": options}))
    assert sc.text == text and sc.command.control


@pytest.mark.parametrize(
    ("fields", "why"),
    [
        ({"data": {"name": "ask", "type": 3}}, "not-chat-input"),  # a message context-menu command
        ({"data": None}, "not-chat-input"),
        ({"data": {"name": "model", "type": 1}}, "unknown-command"),
        ({"token": None}, "no-token"),
        ({"member": None}, "no-user"),
        ({"member": {"user": {"id": "42", "bot": True}}}, "bot"),
        ({"channel": None, "channel_id": None}, "no-channel"),
        (
            {"guild_id": None, "member": None, "user": {"id": "42"}, "channel": {"id": "9", "type": 3}},
            "group-dm",
        ),
        (
            {"data": {"name": "ask", "type": 1, "options": [{"name": "prompt", "type": 3, "value": "  "}]}},
            "empty",
        ),
    ],
)
def test_what_is_not_run(fields: dict[str, Any], why: str) -> None:
    assert normalize_interaction(_ix(**fields)) == why


@pytest.mark.parametrize(
    "fields",
    [
        {"id": "12345678901234567890123"},  # longer than a snowflake
        {"id": "1.5"},
        {"id": "3001\n"},  # a newline would reach a header or a KV key
        {"application_id": "app"},
        {"channel_id": "5101/../x"},
        {"guild_id": "g"},
        {"member": {"user": {"id": "42 "}, "roles": []}},
        {"member": {"user": {"id": "42"}, "roles": ["admin"]}},
        {"token": "a/b"},
        {"token": "abc\n"},
        {"token": "x" * 1025},
        {"token": ""},
        {"channel": {"id": "5101", "type": 11, "parent_id": "p"}},
    ],
)
def test_ids_and_the_token_are_bounded_before_they_are_used(fields: dict[str, Any]) -> None:
    with pytest.raises(msgspec.ValidationError):
        _ix(**fields)


def test_the_prompt_runs_in_the_users_slash_session() -> None:
    assert slash_session_key("ops", "42") == "agent:ops:discord:slash:42"


def test_the_commands_registered() -> None:
    defs = command_definitions()
    assert [d["name"] for d in defs] == ["ask", "new", "reset", "status", "stop"]
    assert all(
        d["type"] == 1 and d["integration_types"] == [0, 1] and d["contexts"] == [0, 1, 2] for d in defs
    )
    assert all(d["default_member_permissions"] is None for d in defs)
    assert defs[0]["options"] == [
        {"name": "prompt", "description": "What to ask", "type": 3, "required": True}
    ]
    assert [d["description"] for d in defs[1:]] == [
        "Start a new session.",
        "Reset the current session.",
        "Show current status.",
        "Stop the current run.",
    ]
    assert "options" not in defs[4]
    assert commands_hash(defs) == commands_hash(command_definitions())
    assert commands_hash(defs) != commands_hash(defs[:4])


def test_native_commands_and_ephemeral_answers_as_openclaw_defaults_them() -> None:
    def account(**keys: Any) -> ChannelAccount:
        return msgspec.convert(keys, ChannelAccount)

    assert native_commands_enabled(account())
    assert native_commands_enabled(account(commands={"native": "auto"}))
    assert native_commands_enabled(account(commands={"native": True}))
    assert not native_commands_enabled(account(commands={"native": False}))
    assert ephemeral_replies(account()) and ephemeral_replies(account(slashCommand={}))
    assert not ephemeral_replies(account(slashCommand={"ephemeral": False}))


def _all_warnings(channels: dict[str, Any]) -> list[str]:
    config = parse_config({"channels": channels}, env={}, checks=default_checks())
    return [str(w) for w in config.warnings if w.path.startswith("$.channels")]


def test_the_slash_command_keys_load_and_are_discords() -> None:
    discord = {
        "token": "t",
        "publicKey": PUBLIC_HEX,
        "applicationId": "10189",
        "webhookPath": "/discord/interactions",
        "commands": {"native": "auto"},
        "slashCommand": {"ephemeral": False},
        "accounts": {"work": {"token": "u", "publicKey": PUBLIC_HEX, "commands": {"native": False}}},
    }
    assert _all_warnings({"discord": discord}) == []
    assert _all_warnings({"discord": {"token": "t", "commands": {"nativeSkills": True}}}) == [
        "$.channels.discord.commands.nativeSkills: accepted, not implemented by clawmesh; ignored"
    ]
    assert _all_warnings({"telegram": {"botToken": "1:x", "commands": {"native": True}}}) == [
        "$.channels.telegram.commands.native: accepted, not implemented by clawmesh; ignored"
    ]
    slack = _all_warnings(
        {"slack": {"botToken": "x", "appToken": "y", "slashCommand": {"enabled": True, "ephemeral": True}}}
    )
    assert sorted(slack) == [
        "$.channels.slack.slashCommand.enabled: accepted, not implemented by clawmesh; ignored",
        "$.channels.slack.slashCommand.ephemeral: accepted, not implemented by clawmesh; ignored",
    ]
