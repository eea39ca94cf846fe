"""Slack's request signatures and OpenClaw's mapping of Slack events to routing input."""

from __future__ import annotations

import pytest

from clawmesh.channels.slack import (
    BotIdentity,
    Envelope,
    Event,
    normalize_event,
    resolve_credentials,
    sign,
    verify_signature,
)
from clawmesh.config import ChannelAccount, ConfigError
from clawmesh.wire import Peer

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
    assert top is not None and top.thread_ts == "1.000001" and top.was_mentioned and not top.mentions_others
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


def test_credentials_from_config_or_env_and_a_token_needs_a_secret() -> None:
    env = {"SLACK_BOT_TOKEN": "xoxb-env", "SLACK_SIGNING_SECRET": "s-env"}
    creds = resolve_credentials(ChannelAccount(), "default", env, "$.channels.slack")
    assert creds is not None and (creds.bot_token, creds.signing_secret) == ("xoxb-env", "s-env")
    assert resolve_credentials(ChannelAccount(), "work", env, "$.channels.slack.accounts.work") is None
    with pytest.raises(ConfigError) as err:
        resolve_credentials(ChannelAccount(bot_token="xoxb-1"), "work", {}, "$.channels.slack.accounts.work")
    assert "$.channels.slack.accounts.work.signingSecret" in str(err.value)
