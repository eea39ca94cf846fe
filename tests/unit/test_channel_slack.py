"""Slack's request signatures, an account's mode and credentials (OpenClaw's: Socket Mode unless
`mode: "http"`), Socket Mode frames, OpenClaw's mapping of Slack events to routing input, and
its Slack plugin's (`@openclaw/slack` 2026.9.6) threads: which `replyToMode` applies, where a
reply goes, which thread has a session of its own; and its preview mode (`streaming`, per
account), what one `chat.update` takes, and the warnings about modes clawmesh serves otherwise;
a message's files as the plugin takes them in (names, types, which can be downloaded, where the
bot token may go, the sign-in page that is not a file, `mediaMaxMb`) and the download itself."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import msgspec
import pytest

from clawmesh.channels.slack import (
    EDIT_TEXT_MAX_BYTES,
    MAX_FILES,
    BotIdentity,
    Envelope,
    Event,
    SlackInbound,
    channel_requires_mention,
    decode_socket_frame,
    edit_text_bytes,
    file_url_refused,
    fit_edit,
    media_budget,
    message_files,
    normalize_event,
    redact_url,
    reply_thread_ts,
    resolve_credentials,
    resolve_reply_to_mode,
    salvage_envelope_id,
    session_thread_ts,
    sign,
    socket_ack,
    socket_payload,
    streaming_mode,
    unexpected_html,
    verify_signature,
)
from clawmesh.checks import default_checks
from clawmesh.config import (
    ChannelAccount,
    ChannelConfig,
    ChannelDm,
    ChannelGroup,
    ConfigError,
    ReplyToModeByChatType,
    parse_config,
)
from clawmesh.wire import Peer
from clawmesh_ingress.channels.media import MediaTooLarge
from clawmesh_ingress.channels.slack.webapi import DownloadError, WebApi

BOT = BotIdentity(user_id="UBOT", team_id="T1")
SECRET = "8f742231b10e8888abcd99yyyzzz85a5"


def _env(**event: object) -> Envelope:
    fields: dict[str, object] = {
        "type": "message",
        "channel": "C1",
        "user": "U7",
        "ts": "1.000001",
        "text": "hi",
    }
    fields.update(event)
    return Envelope(type="event_callback", team_id="T1", event_id="Ev1", event=Event(**fields))  # type: ignore[arg-type]


def test_signature_matches_slacks_documented_example() -> None:
    # docs.slack.dev "Verifying requests from Slack": this secret, timestamp and body
    body = (
        b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V"
        b"&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text="
        b"&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN"
        b"&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c"
    )
    expected = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"
    assert sign(SECRET, "1531420618", body) == expected
    assert verify_signature(SECRET, "1531420618", expected, body, now=1531420618 + 299) is None


def test_a_wrong_signature_a_stale_or_missing_timestamp_is_refused() -> None:
    good = sign(SECRET, "1000", b"{}")
    assert verify_signature(SECRET, "1000", good, b"{} ", now=1000) == "wrong X-Slack-Signature"
    assert verify_signature("other", "1000", good, b"{}", now=1000) == "wrong X-Slack-Signature"
    assert "stale" in (verify_signature(SECRET, "1000", good, b"{}", now=1301) or "")
    assert "stale" in (verify_signature(SECRET, "1000", good, b"{}", now=699) or "")
    assert "timestamp" in (verify_signature(SECRET, "", good, b"{}", now=1000) or "").lower()


@pytest.mark.parametrize(
    ("channel", "channel_type", "peer", "chat_type"),
    [
        ("D1", "im", Peer(kind="direct", id="U7"), "direct"),
        ("D1", None, Peer(kind="direct", id="U7"), "direct"),  # D… is a DM whatever the type says
        ("C1", "channel", Peer(kind="channel", id="C1"), "channel"),
        ("G1", "group", Peer(kind="channel", id="G1"), "channel"),  # a private channel
        ("G2", "mpim", Peer(kind="group", id="G2"), "group"),
    ],
)
def test_peers_as_openclaw_maps_them(
    channel: str, channel_type: str | None, peer: Peer, chat_type: str
) -> None:
    sl = normalize_event(_env(channel=channel, channel_type=channel_type), BOT)
    assert sl is not None and (sl.peer, sl.chat_type) == (peer, chat_type)
    assert sl.platform_message_id == f"{channel}:1.000001"


def test_threads_mentions_and_what_is_dropped() -> None:
    in_thread = normalize_event(_env(thread_ts="0.5", parent_user_id="UBOT"), BOT)
    assert (
        in_thread is not None and in_thread.thread_ts == "0.5" and in_thread.was_mentioned
    )  # reply to the bot
    top = normalize_event(_env(text="<@UBOT> look"), BOT)
    assert top is not None and top.thread_ts is None and not top.is_thread_reply
    assert top.was_mentioned and top.explicit_mention and not top.mentions_others
    other = normalize_event(_env(text="<@U9> look"), BOT)
    assert other is not None and not other.was_mentioned and other.mentions_others
    mention = normalize_event(_env(type="app_mention", text="hey"), BOT)
    assert mention is not None and mention.was_mentioned
    assert normalize_event(_env(type="app_mention", channel="D1", channel_type="im"), BOT) is None
    assert normalize_event(_env(user="UBOT"), BOT) is None  # its own
    assert normalize_event(_env(bot_id="B9"), BOT) is None  # another bot
    assert normalize_event(_env(subtype="message_changed"), BOT) is None
    assert normalize_event(_env(type="reaction_added"), BOT) is None
    other_team = Envelope(
        type="event_callback", team_id="T2", event=Event(type="message", channel="C1", user="U7", ts="1")
    )
    assert normalize_event(other_team, BOT) is None


def test_http_mode_credentials_from_config_or_env_and_a_token_needs_a_secret() -> None:
    env = {"SLACK_BOT_TOKEN": "xoxb-env", "SLACK_SIGNING_SECRET": "s-env"}
    http = ChannelAccount(mode="http")
    creds = resolve_credentials(http, "default", env, "$.channels.slack")
    assert creds is not None and (creds.mode, creds.bot_token, creds.signing_secret) == (
        "http",
        "xoxb-env",
        "s-env",
    )
    assert resolve_credentials(http, "work", env, "$.channels.slack.accounts.work") is None
    with pytest.raises(ConfigError) as err:
        resolve_credentials(
            ChannelAccount(mode="http", bot_token="xoxb-1"), "work", {}, "$.channels.slack.accounts.work"
        )
    assert "$.channels.slack.accounts.work.signingSecret" in str(err.value)


def test_socket_mode_is_the_default_and_needs_an_app_token() -> None:
    # OpenClaw: `mode` defaults to "socket"; SLACK_APP_TOKEN only for the default account
    env = {"SLACK_BOT_TOKEN": "xoxb-env", "SLACK_APP_TOKEN": "xapp-env"}
    creds = resolve_credentials(ChannelAccount(), "default", env, "$.channels.slack")
    assert creds is not None and (creds.mode, creds.bot_token, creds.app_token) == (
        "socket",
        "xoxb-env",
        "xapp-env",
    )
    assert creds.signing_secret == ""
    configured = resolve_credentials(
        ChannelAccount(mode="socket", bot_token="xoxb-1", app_token="xapp-1"), "work", env, "$.x"
    )
    assert configured is not None and configured.app_token == "xapp-1"
    assert "xapp" not in repr(configured) and "xoxb" not in repr(configured)  # never in a repr
    # a signing secret alone (an HTTP-mode account without `mode`): what is missing, by its path
    with pytest.raises(ConfigError) as err:
        resolve_credentials(
            ChannelAccount(bot_token="xoxb-1", signing_secret="s"),
            "work",
            {},
            "$.channels.slack.accounts.work",
        )
    problem = err.value.problems[0]
    assert problem.path == "$.channels.slack.accounts.work.appToken"
    assert "Socket Mode" in problem.message
    assert 'set $.channels.slack.accounts.work.mode to "http"' in problem.message
    # the env's app token is the default account's only
    with pytest.raises(ConfigError) as err:
        resolve_credentials(ChannelAccount(bot_token="xoxb-1"), "work", env, "$.channels.slack.accounts.work")
    assert err.value.problems[0].path == "$.channels.slack.accounts.work.appToken"
    assert "signing secret" not in err.value.problems[0].message


@pytest.mark.parametrize(
    ("mode", "expected"), [("relay", "relay mode is not served"), ("events", "got 'events'")]
)
def test_other_modes_are_refused_naming_the_key(mode: str, expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        resolve_credentials(
            ChannelAccount(mode=mode, bot_token="xoxb-1", app_token="xapp-1"), "default", {}, "$.c"
        )
    assert err.value.problems[0].path == "$.c.mode" and expected in err.value.problems[0].message


def test_socket_mode_frames() -> None:
    # the shapes of the official SDK's mock Socket Mode server
    hello = decode_socket_frame(
        b'{"type":"hello","num_connections":2,"debug_info":{"host":"applink-1"},"connection_info":{"app_id":"A111"}}'
    )
    assert (hello.type, hello.num_connections, hello.envelope_id) == ("hello", 2, None)
    bye = decode_socket_frame('{"type":"disconnect","reason":"refresh_requested","debug_info":{"host":"h"}}')
    assert (bye.type, bye.reason) == ("disconnect", "refresh_requested")
    raw = (
        '{"envelope_id":"ac2cfd40","type":"events_api","accepts_response_payload":false,'
        '"retry_attempt":1,"retry_reason":"timeout","payload":{"token":"t","team_id":"T1",'
        '"api_app_id":"A111","type":"event_callback","event_id":"Ev111","event_time":1610241741,'
        '"event":{"type":"message","text":"<@UBOT> Hi","user":"U222","ts":"1610241741.000200",'
        '"team":"T1","channel":"C111","event_ts":"1610241741.000200","channel_type":"channel"}}}'
    )
    frame = decode_socket_frame(raw)
    assert (frame.envelope_id, frame.type, frame.retry_attempt, frame.retry_reason) == (
        "ac2cfd40",
        "events_api",
        1,
        "timeout",
    )
    envelope = socket_payload(frame)  # the same body the Events API POSTs
    sl = normalize_event(envelope, BOT)
    assert sl is not None and sl.platform_message_id == "C111:1610241741.000200" and sl.was_mentioned
    assert socket_ack("ac2cfd40") == '{"envelope_id":"ac2cfd40"}'


def test_malformed_socket_frames_and_what_can_still_be_acknowledged() -> None:
    for bad in (b"not json", b'{"type": 5}', b'{"envelope_id": 7, "type": "events_api"}', b"[1]"):
        with pytest.raises((msgspec.DecodeError, msgspec.ValidationError)):
            decode_socket_frame(bad)
    assert salvage_envelope_id(b"not json") is None
    assert salvage_envelope_id(b'{"envelope_id": 7}') is None
    assert salvage_envelope_id(b"[1]") is None
    assert salvage_envelope_id(b'{"envelope_id": "e-1", "retry_attempt": "x"}') == "e-1"
    # a valid frame whose payload is no Events API body
    frame = decode_socket_frame(b'{"envelope_id": "e-2", "type": "events_api", "payload": {"event": "oops"}}')
    with pytest.raises(msgspec.ValidationError):
        socket_payload(frame)
    with pytest.raises(msgspec.ValidationError):
        socket_payload(decode_socket_frame(b'{"envelope_id": "e-3", "type": "events_api"}'))


def test_a_socket_url_is_logged_without_its_ticket() -> None:
    url = "wss://wss-primary.slack.com/link/?ticket=1234-secret-ticket&app_id=A111"
    assert redact_url(url, url) == "wss://wss-primary.slack.com/link/"
    text = redact_url(f"InvalidURI: {url} isn't a valid URI; ticket=1234-secret-ticket&app_id=A111", url)
    assert "secret" not in text and text.startswith("InvalidURI: wss://wss-primary.slack.com/link/ ")
    assert redact_url("ws://u:p@127.0.0.1:8/link/?ticket=t", "ws://u:p@127.0.0.1:8/link/?ticket=t") == (
        "ws://127.0.0.1:8/link/"
    )


# --- threads and replyToMode, as @openclaw/slack 2026.9.6 decides them --------------------------


def _sl(**event: object) -> SlackInbound:
    sl = normalize_event(_env(**event), BOT)
    assert sl is not None
    return sl


@pytest.mark.parametrize(
    ("event", "is_reply"),
    [
        ({"thread_ts": "0.5"}, True),  # a reply: thread_ts is its parent's ts
        ({"thread_ts": "1.000001", "parent_user_id": "U9"}, True),  # thread_ts == ts but a parent
        ({"thread_ts": "1.000001"}, False),  # a thread's root (a Slack-managed DM root)
        ({}, False),  # top level
    ],
)
def test_what_is_a_thread_reply(event: dict[str, object], is_reply: bool) -> None:
    # threading.ts resolveSlackThreadContext: hasThreadTs && (thread_ts !== ts || parent_user_id)
    assert _sl(**event).is_thread_reply is is_reply


def test_reply_to_mode_by_chat_type_channel_entry_and_default() -> None:
    # prepare-routing.ts resolveSlackRoutingContext: channelConfig?.replyToMode ??
    # resolveSlackReplyToMode(account, chatType) (session-status.ts); channelConfig only for
    # channels and private channels (prepare.ts resolveSlackConversationContext: isRoom)
    assert resolve_reply_to_mode(ChannelAccount(), "channel", "C1") == "off"  # the default
    account = ChannelAccount(
        reply_to_mode="all",
        reply_to_mode_by_chat_type=ReplyToModeByChatType(direct="off"),
        channels={"C1": ChannelGroup(reply_to_mode="first"), "*": ChannelGroup(reply_to_mode="batched")},
    )
    assert resolve_reply_to_mode(account, "direct", "D1") == "off"  # by chat type
    assert resolve_reply_to_mode(account, "group", "G1") == "all"  # mpim: no channel entry applies
    assert resolve_reply_to_mode(account, "channel", "C1") == "first"  # the channel's own entry
    assert resolve_reply_to_mode(account, "channel", "C2") == "batched"  # the wildcard's
    by_type = ChannelAccount(
        reply_to_mode="off",
        reply_to_mode_by_chat_type=ReplyToModeByChatType(channel="all"),
        channels={"C1": ChannelGroup(require_mention=False)},
    )
    # resolveSlackChannelConfig: firstDefined(entry.replyToMode, wildcard?.replyToMode), else the account's
    assert resolve_reply_to_mode(by_type, "channel", "C1") == "all"
    assert resolve_reply_to_mode(by_type, "direct", "D1") == "off"


def test_channel_entries_match_the_plugins_key_forms() -> None:
    # session-status.ts buildSlackChannelIdCandidates (not enterprise-wide): team-scoped keys,
    # the id as given, lower/upper case, `channel:<id>`; buildSlackChannelPolicyScope: first hit
    for key in ("team:T1:channel:C1", "c1", "channel:C1", "channel:c1"):
        account = ChannelAccount(channels={key: ChannelGroup(reply_to_mode="all", require_mention=False)})
        assert resolve_reply_to_mode(account, "channel", "C1", "T1") == "all", key
        assert channel_requires_mention(account, "C1", "T1") is False, key
    scoped = ChannelAccount(channels={"team:T2:channel:C1": ChannelGroup(reply_to_mode="all")})
    assert resolve_reply_to_mode(scoped, "channel", "C1", "T1") == "off"  # another workspace's


def test_the_legacy_dm_reply_to_mode_is_read_for_dms() -> None:
    # doctor-contract.ts: dm.replyToMode moves to replyToModeByChatType.direct unless that is set
    legacy = ChannelAccount(reply_to_mode="off", dm=ChannelDm(reply_to_mode="all"))
    assert resolve_reply_to_mode(legacy, "direct", "D1") == "all"
    assert resolve_reply_to_mode(legacy, "channel", "C1") == "off"
    shadowed = ChannelAccount(
        dm=ChannelDm(reply_to_mode="all"), reply_to_mode_by_chat_type=ReplyToModeByChatType(direct="first")
    )
    assert resolve_reply_to_mode(shadowed, "direct", "D1") == "first"


def test_a_channel_requires_a_mention_unless_its_entry_or_the_account_says_not() -> None:
    # policy.ts resolveSlackChannelConfig: entry ?? wildcard ?? defaultRequireMention (true)
    assert channel_requires_mention(ChannelAccount(), "C1") is True
    assert channel_requires_mention(ChannelAccount(require_mention=False), "C1") is False
    account = ChannelAccount(
        require_mention=False,
        channels={"C1": ChannelGroup(require_mention=True), "*": ChannelGroup(enabled=True)},
    )
    assert channel_requires_mention(account, "C1") is True
    assert channel_requires_mention(account, "C2") is False


@pytest.mark.parametrize(
    ("event", "mode", "expected"),
    [
        # a thread reply stays in its thread, `off` included (effective mode "all")
        ({"thread_ts": "0.5"}, "off", "0.5"),
        ({"thread_ts": "0.5"}, "first", "0.5"),
        ({"channel": "D1", "channel_type": "im", "thread_ts": "0.5"}, "off", "0.5"),
        # top level: off → the channel itself; first/all/batched → a thread under the message
        ({}, "off", None),
        ({}, "first", "1.000001"),
        ({}, "all", "1.000001"),
        ({}, "batched", "1.000001"),
        ({"channel": "D1", "channel_type": "im"}, "off", None),
        ({"channel": "D1", "channel_type": "im"}, "all", "1.000001"),
        ({"channel": "G2", "channel_type": "mpim"}, "first", "1.000001"),
        ({"thread_ts": "1.000001"}, "all", "1.000001"),  # a root: its existing thread
    ],
)
def test_where_a_reply_goes(event: dict[str, object], mode: str, expected: str | None) -> None:
    # replies.ts createSlackReplyDeliveryPlan → core createReplyReferencePlanner (existingId =
    # thread_ts, startId = ts, the first payload) and dispatch-streaming.ts deliverNormally
    # (`off`, not forced, not a thread reply → no thread_ts)
    assert reply_thread_ts(_sl(**event), mode) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("event", "mode", "require", "mentioned", "expected"),
    [
        # thread replies in channels, private channels and group DMs: their thread, any mode
        ({"thread_ts": "0.5"}, "off", True, True, "0.5"),
        ({"channel": "G1", "channel_type": "group", "thread_ts": "0.5"}, "all", True, True, "0.5"),
        ({"channel": "G2", "channel_type": "mpim", "thread_ts": "0.5"}, "off", False, True, "0.5"),
        # a DM's thread reply stays on the DM's session
        ({"channel": "D1", "channel_type": "im", "thread_ts": "0.5"}, "all", False, True, None),
        ({"channel": "D1", "channel_type": "im"}, "all", False, True, None),
        # a channel root expected to start a visible thread is seeded into its own ts
        ({"type": "app_mention", "text": "hey"}, "all", True, True, "1.000001"),
        ({"text": "<@UBOT> hey"}, "first", True, True, "1.000001"),
        ({"text": "bot, hey"}, "all", True, True, "1.000001"),  # a mention pattern matched
        ({"text": "hey"}, "all", False, False, "1.000001"),  # requireMention false, mode not off
        ({"channel": "G1", "channel_type": "group", "text": "<@UBOT> hey"}, "all", True, True, "1.000001"),
        # … not when the mode is off, nor unmentioned (a control command's bypass), nor in mpims
        ({"type": "app_mention", "text": "hey"}, "off", True, True, None),
        ({"text": "hey"}, "off", False, False, None),
        ({"text": "/status"}, "all", True, False, None),
        ({"channel": "G2", "channel_type": "mpim", "text": "<@UBOT> hey"}, "all", False, True, None),
    ],
)
def test_which_thread_has_a_session_of_its_own(
    event: dict[str, object], mode: str, require: bool, mentioned: bool, expected: str | None
) -> None:
    # prepare-routing.ts resolveSlackRoutingContext (routedThreadId) with prepare.ts
    # prepareSlackMessage's seedTopLevelRoomThread (app_mention, explicit or pattern mention,
    # or isRoom && !requireMention && replyToMode !== "off"; seeding itself needs mode ≠ off)
    sl = _sl(**event)
    got = session_thread_ts(sl, mode, require_mention=require, mentioned=mentioned)  # type: ignore[arg-type]
    assert got == expected


def test_reply_threading_keys_warn_where_they_are_not_read() -> None:
    config = parse_config(
        {
            "channels": {
                "slack": {
                    "botToken": "xoxb-1",
                    "appToken": "xapp-1",
                    "dm": {"replyToMode": "all"},
                    "replyToModeByChatType": {"channel": "first"},
                    "channels": {"C1": {"replyToMode": "all"}},
                    "accounts": {
                        "work": {"dm": {"replyToMode": "all"}, "replyToModeByChatType": {"direct": "off"}}
                    },
                },
                "telegram": {
                    "replyToModeByChatType": {"group": "all"},
                    "groups": {"-100": {"replyToMode": "all"}},
                },
            }
        },
        env={},
        checks=default_checks(),
    )
    warnings = {w.path: w.message for w in config.warnings if w.path.startswith("$.channels")}
    assert warnings["$.channels.slack.dm.replyToMode"].endswith(
        "read for DMs where no replyToModeByChatType.direct is set"
    )
    assert warnings["$.channels.slack.accounts.work.dm.replyToMode"].endswith(
        "ignored: replyToModeByChatType.direct is set too"
    )
    assert "$.channels.slack.replyToModeByChatType" not in warnings
    assert "$.channels.slack.channels.C1.replyToMode" not in warnings
    assert "not implemented" in warnings["$.channels.telegram.replyToModeByChatType"]
    assert "not implemented" in warnings["$.channels.telegram.groups['-100'].replyToMode"]


# --- streamed previews --------------------------------------------------------------------------


def _section(slack: dict[str, Any]) -> ChannelConfig:
    return msgspec.convert(slack, ChannelConfig)


@pytest.mark.parametrize(
    ("slack", "mode"),
    [
        ({}, "progress"),  # Slack's default since OpenClaw 2026.8.1 (resolveSlackStreamingMode)
        ({"streaming": {"mode": "partial"}}, "partial"),
        ({"streaming": {"mode": "block"}}, "block"),
        ({"streaming": {"mode": "off"}}, "off"),
        ({"streaming": {"mode": " Partial "}}, "partial"),  # trimmed, case-folded
        ({"streaming": {}}, "progress"),  # an object without a mode: the default
        ({"streaming": {"mode": "bogus"}}, "progress"),
        # the runtime's other spellings: a bare mode string, a boolean (true partial, false off)
        ({"streaming": "block"}, "block"),
        ({"streaming": "bogus"}, "progress"),
        ({"streaming": True}, "partial"),
        ({"streaming": False}, "off"),
        # the legacy `streamMode` is not read by the plugin's runtime (only its doctor moves it)
        ({"streamMode": "replace"}, "progress"),
        ({"streaming": False, "streamMode": "append"}, "off"),
    ],
)
def test_the_preview_mode_as_the_slack_plugin_reads_it(slack: dict[str, Any], mode: str) -> None:
    assert streaming_mode(_section(slack), "default") == mode


def test_an_accounts_streaming_object_merges_over_the_channels_and_a_scalar_replaces_it() -> None:
    section = _section(
        {
            "streaming": {"mode": "partial"},
            "accounts": {
                "Quiet": {"streaming": {"mode": "off"}},  # its own mode wins
                "merged": {"streaming": {}},  # an object without a mode keeps the channel's
                "flag": {"streaming": False},  # a boolean replaces the channel's setting
                "plain": {"botToken": "xoxb-2"},  # nothing said: the channel's
            },
        }
    )
    assert streaming_mode(section, "quiet") == "off"  # account ids normalised
    assert streaming_mode(section, "merged") == "partial"
    assert streaming_mode(section, "flag") == "off"
    assert streaming_mode(section, "plain") == "partial"
    assert streaming_mode(section, "default") == "partial"
    # a channel's boolean or string gives way to an account's object, mode or not
    scalar = _section({"streaming": True, "accounts": {"a": {"streaming": {}}, "b": {}}})
    assert streaming_mode(scalar, "a") == "progress" and streaming_mode(scalar, "b") == "partial"
    assert streaming_mode(None, "default") == "progress"


def test_what_one_chat_update_takes() -> None:
    assert EDIT_TEXT_MAX_BYTES == 4000
    assert edit_text_bytes("abc") == 3 and edit_text_bytes("é") == 2
    assert edit_text_bytes("a<b>&") == 1 + 4 + 1 + 4 + 5  # counted as Slack escapes them
    assert fit_edit("x" * 4000) == "x" * 4000
    assert fit_edit("x" * 4001) == "x" * 4000
    cut = fit_edit("é" * 2500)  # 5000 bytes: cut at a character boundary
    assert cut == "é" * 2000 and edit_text_bytes(cut) == 4000
    assert fit_edit("&" * 900) == "&" * 800


def _stream_warnings(slack: dict[str, Any]) -> dict[str, str]:
    config = parse_config(
        {"channels": {"slack": {"botToken": "xoxb-1", "appToken": "xapp-1", **slack}}},
        env={},
        checks=default_checks(),
    )
    return {w.path: w.message for w in config.warnings if "stream" in w.path}


def test_modes_served_otherwise_than_openclaw_load_with_one_warning_each() -> None:
    assert _stream_warnings({}) == {}  # the default (progress, served as off) is documented
    assert _stream_warnings({"streaming": {"mode": "off"}}) == {}
    assert _stream_warnings({"streaming": {"mode": "block"}}) == {}  # said once at run time
    found = _stream_warnings({"streaming": {"mode": "progress"}})
    assert list(found) == ["$.channels.slack.streaming.mode"]
    assert found["$.channels.slack.streaming.mode"].startswith("accepted, not implemented by clawmesh")
    assert 'served as "off"' in found["$.channels.slack.streaming.mode"]
    for partial in ({"streaming": {"mode": "partial"}}, {"streaming": True}, {"streaming": "partial"}):
        found = _stream_warnings(partial)
        assert len(found) == 1, found
        (message,) = found.values()
        assert "native text streaming" in message and "chat.update" in message
    found = _stream_warnings({"accounts": {"w": {"botToken": "b", "appToken": "a", "streaming": "bogus"}}})
    assert list(found) == ["$.channels.slack.accounts.w.streaming"]
    assert "read as OpenClaw's default" in found["$.channels.slack.accounts.w.streaming"]
    # Slack's legacy streamMode keeps the warning of a key of older OpenClaw versions
    found = _stream_warnings({"streamMode": "replace"})
    assert (
        list(found) == ["$.channels.slack.streamMode"] and "ignored" in found["$.channels.slack.streamMode"]
    )


# --- files ------------------------------------------------------------------------------------

_HOSTED = "https://files.slack.com/files-pri/T1-F1"


def _with_files(*files: dict[str, object], **event: object) -> Envelope:
    """An envelope decoded from Slack's JSON, as the adapter decodes it."""
    fields: dict[str, object] = {
        "type": "message",
        "subtype": "file_share",
        "channel": "D1",
        "channel_type": "im",
        "user": "U7",
        "ts": "1.000001",
        "text": "",
        "files": list(files),
    }
    fields.update(event)
    body = {"type": "event_callback", "team_id": "T1", "event": fields}
    return msgspec.json.decode(msgspec.json.encode(body), type=Envelope)


def test_a_messages_files_are_named_and_typed_as_the_plugin_takes_them_in() -> None:
    env = _with_files(
        {  # Slack's file object, more fields than read
            "id": "F1",
            "name": "Q3 report.pdf",
            "title": "Q3",
            "mimetype": "application/pdf",
            "filetype": "pdf",
            "size": 512,
            "mode": "hosted",
            "is_external": False,
            "url_private": f"{_HOSTED}/q3.pdf",
            "url_private_download": f"{_HOSTED}/download/q3.pdf",
            "permalink": "https://team.slack.com/files/U7/F1/q3.pdf",
            "shares": {"private": {"D1": [{"ts": "1.000001"}]}},
        },
        # a clip recorded in Slack is served as video/*: audio, a voice message (the plugin)
        {
            "id": "F2",
            "name": "audio_message.webm",
            "mimetype": "video/webm",
            "subtype": "slack_audio",
            "url_private": f"{_HOSTED}/a.webm",
        },
        # no type: by the name; no name: its title; a picture
        {"id": "F3", "title": "diagram.png", "url_private": f"{_HOSTED}/d"},
        {"id": "F4", "name": "notes", "mimetype": "text/plain; charset=utf-8", "url_private": f"{_HOSTED}/n"},
        {"id": "F5", "mode": "tombstone"},  # deleted since
        {"id": "F6", "mode": "hidden_by_limit"},  # a free workspace's history limit
        {
            "id": "F7",
            "name": "doc",
            "mode": "external",
            "is_external": True,
            "url_private": "https://docs.google.com/document/d/1",
        },
        {"id": "F8", "name": "x.bin", "mimetype": "application/octet-stream"},  # no URL
    )
    assert env.event is not None
    files = message_files(env.event)
    assert [(f.kind, f.file_id, f.name, f.mime, f.size) for f in files[:4]] == [
        ("file", "F1", "Q3 report.pdf", "application/pdf", 512),
        ("voice message", "F2", "audio_message.webm", "audio/webm", None),
        ("picture", "F3", "diagram.png", "image/png", None),
        ("file", "F4", "notes", "text/plain", None),
    ]
    assert files[0].url == f"{_HOSTED}/download/q3.pdf"  # the download URL first
    assert files[1].url == f"{_HOSTED}/a.webm" and not files[1].unavailable  # else url_private
    unavailable = {f.file_id: f.unavailable for f in files[4:]}
    assert unavailable == {
        "F5": "deleted",
        "F6": "hidden by the workspace's history limit",
        "F7": "an external file (not stored by Slack)",
        "F8": "no private download URL",
    }
    assert all(f.url == "" for f in files[4:])  # nothing to fetch, the token goes nowhere
    assert files[4].name == "file-F5.bin"  # a deleted file has no name left
    assert MAX_FILES == 8  # the plugin takes 8 of a message (the adapter names the rest)


def test_a_file_without_text_is_what_was_said_and_gating_is_unchanged() -> None:
    pdf = {"id": "F1", "name": "a.pdf", "mimetype": "application/pdf", "url_private": f"{_HOSTED}/a"}
    only = normalize_event(_with_files(pdf), BOT)
    assert only is not None and only.text == "" and [f.name for f in only.files] == ["a.pdf"]
    # a file Slack no longer serves is still something said (named in the text by the adapter)
    assert normalize_event(_with_files({"id": "F9", "mode": "tombstone"}), BOT) is not None
    # neither text nor a file: nothing to answer (the plugin drops an empty body)
    assert normalize_event(_env(text=""), BOT) is None
    assert normalize_event(_env(text="  \n"), BOT) is None
    # in a channel, a file does not mention the bot: mention gating applies as to text
    room = normalize_event(_with_files(pdf, channel="C1", channel_type="channel", text="fyi"), BOT)
    assert room is not None and room.is_room and not room.was_mentioned and not room.mentions_others
    asked = normalize_event(_with_files(pdf, channel="C1", channel_type="channel", text="<@UBOT> this"), BOT)
    assert asked is not None and asked.was_mentioned and len(asked.files) == 1
    assert normalize_event(_with_files(pdf, user="UBOT"), BOT) is None  # its own upload
    assert normalize_event(_with_files(pdf, bot_id="B9"), BOT) is None  # another bot's
    plain = normalize_event(_env(), BOT)
    assert plain is not None and plain.files == ()


def test_the_bot_token_goes_only_to_slacks_hosts_or_the_web_apis_origin() -> None:
    api = "https://slack.com/api"
    for url in (
        "https://files.slack.com/files-pri/T1-F1/download/a.pdf",
        "https://slack.com/x",
        "https://a.slack-edge.com/x",
        "https://files.slack-files.com/x",
        "https://files.slack-gov.com/x",
        "https://FILES.SLACK.COM/x",
    ):
        assert file_url_refused(url, api) is None, url
    for url, why in (
        ("http://files.slack.com/x", "neither"),  # not over TLS
        ("https://slack.com.evil.example/x", "neither"),
        ("https://evilslack.com/x", "neither"),
        ("https://docs.google.com/d/1", "neither"),
        ("https://user:pw@files.slack.com/x", "not an http(s) URL"),
        ("ftp://files.slack.com/x", "not an http(s) URL"),
        ("file:///etc/passwd", "not an http(s) URL"),
        ("https://files.slack.com:notaport/x", "not an http(s) URL"),
    ):
        assert why in (file_url_refused(url, api) or ""), url
    # a Slack-compatible endpoint (or a test double): its own origin, scheme and port included
    local = "http://127.0.0.1:8080/api"
    assert file_url_refused("http://127.0.0.1:8080/files-pri/T1-F1/a", local) is None
    assert file_url_refused("http://127.0.0.1:8081/files-pri/T1-F1/a", local) is not None
    assert file_url_refused("https://127.0.0.1:8080/files-pri/T1-F1/a", local) is not None


def test_slacks_sign_in_page_is_not_a_file() -> None:
    env = _with_files(
        {"id": "F1", "name": "a.pdf", "mimetype": "application/pdf", "url_private": f"{_HOSTED}/a"},
        {"id": "F2", "name": "page.html", "mimetype": "text/html", "url_private": f"{_HOSTED}/p"},
    )
    assert env.event is not None
    pdf, page = message_files(env.event)
    html = b"\n  <!DOCTYPE html><html><title>Sign in | Slack</title></html>"
    assert unexpected_html("text/html; charset=utf-8", html, pdf)
    assert unexpected_html("application/pdf", html, pdf)  # whatever the type said
    assert unexpected_html("", b"<HTML><body>", pdf)
    assert not unexpected_html("application/pdf", b"%PDF-1.7\n", pdf)
    assert not unexpected_html("text/html", html, page)  # an HTML file is one


def test_media_max_mb_is_the_plugins_20_unless_set() -> None:
    assert media_budget(ChannelAccount()) == 20 * 1024 * 1024
    assert media_budget(ChannelAccount(media_max_mb=1.5)) == 1536 * 1024


async def test_a_download_follows_redirects_only_where_the_token_may_go_and_stops_past_the_limit() -> None:
    seen: list[tuple[str, str]] = []

    async def endless() -> AsyncIterator[bytes]:
        while True:
            yield b"z" * 65536

    def serve(request: httpx.Request) -> httpx.Response:
        seen.append((str(request.url), request.headers.get("authorization", "")))
        path = request.url.path
        if path == "/file":
            return httpx.Response(200, content=b"bytes", headers={"content-type": "application/pdf"})
        if path == "/moved":
            return httpx.Response(302, headers={"location": "/file"})  # relative, same host
        if path == "/away":
            return httpx.Response(302, headers={"location": "https://collector.example/steal"})
        if path == "/scheme":
            return httpx.Response(302, headers={"location": "file:///etc/passwd"})
        if path == "/loop":
            return httpx.Response(302, headers={"location": "/loop"})
        if path == "/endless":
            return httpx.Response(200, content=endless())
        return httpx.Response(404)

    base = "https://files.slack.com"
    api = WebApi("https://slack.com/api", "xoxb-secret", transport=httpx.MockTransport(serve))

    def refused(url: str) -> str | None:
        return file_url_refused(url, "https://slack.com/api")

    try:
        assert await api.download(f"{base}/moved", 100, refused) == (b"bytes", "application/pdf")
        assert seen == [(f"{base}/moved", "Bearer xoxb-secret"), (f"{base}/file", "Bearer xoxb-secret")]
        seen.clear()
        for path, why in (
            ("/away", "collector.example is neither"),
            ("/scheme", "not an http(s) URL"),
            ("/loop", "more than 5 redirects"),
            ("/missing", "HTTP 404"),
        ):
            with pytest.raises(DownloadError, match=re.escape(why)):
                await api.download(f"{base}{path}", 1_000_000, refused)
        with pytest.raises(MediaTooLarge, match="more than 1000000 bytes"):  # given up, never held whole
            await api.download(f"{base}/endless", 1_000_000, refused)
        # the token was never sent anywhere else
        assert all(url.startswith(f"{base}/") for url, _ in seen)
        with pytest.raises(DownloadError, match="neither"):
            await api.download("https://attacker.example/f", 100, refused)
    finally:
        await api.close()
