"""Telegram without I/O: updates as OpenClaw's routing input, mentions, the bot token's
sources and their order, accounts merged as OpenClaw merges them, reply splitting."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import msgspec
import pytest

from clawmesh.channels.accounts import channel_accounts, default_account_id
from clawmesh.channels.telegram import (
    BotIdentity,
    PhotoSize,
    Update,
    chat_of,
    media_budget,
    normalize_update,
    pick_photo,
    resolve_token,
    split_text,
    streaming_mode,
    text_chunk_limit,
)
from clawmesh.config import ChannelAccount, ChannelConfig, ChannelStreaming, ConfigError
from clawmesh.wire import Peer

BOT = BotIdentity(id=999, username="ClawBot")


def _update(chat: dict[str, Any], text: str = "hi", **msg: Any) -> Update:
    body = {
        "update_id": 1,
        "message": {
            "message_id": 5,
            "chat": chat,
            "from": {"id": 42, "first_name": "Ann"},
            "text": text,
            **msg,
        },
    }
    return msgspec.convert(body, Update)


def test_private_chat_peer_is_the_sender() -> None:
    tg = normalize_update(_update({"id": 42, "type": "private"}), BOT)
    assert tg is not None
    assert tg.peer == Peer(kind="direct", id="42") and tg.parent_peer is None
    assert tg.platform_message_id == "42:5" and tg.sender.name == "Ann" and not tg.is_group


def test_forum_topic_peer_has_the_group_as_parent_and_general_is_topic_one() -> None:
    forum = {"id": -1001, "type": "supergroup", "is_forum": True}
    tg = normalize_update(_update(forum, message_thread_id=7), BOT)
    assert tg is not None
    assert tg.peer == Peer(kind="group", id="-1001:topic:7")
    assert tg.parent_peer == Peer(kind="group", id="-1001")
    assert tg.reply_thread_id == 7 and tg.topic == 7
    general = normalize_update(_update(forum), BOT)
    assert general is not None and general.peer.id == "-1001:topic:1"
    assert general.reply_thread_id is None  # sends to General omit message_thread_id


def test_non_forum_group_ignores_the_thread_id() -> None:
    tg = normalize_update(_update({"id": -5, "type": "group"}, message_thread_id=3), BOT)
    assert tg is not None
    assert tg.peer == Peer(kind="group", id="-5") and tg.parent_peer is None and tg.reply_thread_id is None


def test_own_messages_edits_and_empty_messages_are_dropped() -> None:
    assert normalize_update(_update({"id": 1, "type": "private"}, **{"from": {"id": 999}}), BOT) is None
    edited = msgspec.convert(
        {
            "update_id": 2,
            "edited_message": {"message_id": 1, "chat": {"id": 1, "type": "private"}, "text": "x"},
        },
        Update,
    )
    assert normalize_update(edited, BOT) is None
    assert normalize_update(_update({"id": 1, "type": "private"}, text=""), BOT) is None
    assert normalize_update(_update({"id": 1, "type": "channel"}), BOT) is None


def test_channel_post_is_a_group_message_from_the_posting_chat() -> None:
    body = {
        "update_id": 3,
        "channel_post": {
            "message_id": 1,
            "chat": {"id": -100, "type": "channel", "title": "news"},
            "text": "post",
        },
    }
    tg = normalize_update(msgspec.convert(body, Update), BOT)
    assert tg is not None and tg.is_channel_post and tg.chat_type == "supergroup"
    assert tg.peer == Peer(kind="group", id="-100") and tg.sender.id == "-100"


@pytest.mark.parametrize(
    ("text", "entities", "explicit", "any_mention"),
    [
        ("hey @clawbot!", [], True, False),
        ("hey @ClawBot_x", [], False, False),  # another handle that starts alike
        ("mail a@clawbot", [], False, False),
        ("😀 @clawbot", [{"type": "mention", "offset": 3, "length": 8}], True, True),  # UTF-16 offsets
        ("@someone", [{"type": "mention", "offset": 0, "length": 8}], False, True),
    ],
)
def test_mentions(text: str, entities: list[dict[str, Any]], explicit: bool, any_mention: bool) -> None:
    tg = normalize_update(_update({"id": -5, "type": "group"}, text=text, entities=entities), BOT)
    assert tg is not None
    assert (tg.was_mentioned, tg.has_any_mention) == (explicit, any_mention)


def test_reply_to_the_bot_is_an_implicit_mention_and_commands_are_seen() -> None:
    reply = {"message_id": 1, "chat": {"id": -5, "type": "group"}, "from": {"id": 999, "is_bot": True}}
    tg = normalize_update(
        _update(
            {"id": -5, "type": "group"},
            text="/status@ClawBot",
            reply_to_message=reply,
            entities=[{"type": "bot_command", "offset": 0, "length": 15}],
        ),
        BOT,
    )
    assert tg is not None and tg.implicit_mention and tg.is_command


def test_chat_of_a_reply() -> None:
    assert chat_of(Peer(kind="group", id="-100:topic:7"), "-100:55") == -100
    assert chat_of(Peer(kind="direct", id="42"), None) == 42
    assert chat_of(Peer(kind="group", id="-100:topic:7"), None) == -100
    assert chat_of(None, None) is None


def test_token_sources_in_openclaw_order(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("from-file\n")
    env = {"TELEGRAM_BOT_TOKEN": "from-env"}
    both = ChannelAccount(token_file=str(token_file), bot_token="from-config")
    assert resolve_token(both, "default", env, "$.channels.telegram") == "from-file"
    assert resolve_token(ChannelAccount(bot_token="from-config"), "default", env, "$") == "from-config"
    assert resolve_token(ChannelAccount(), "default", env, "$") == "from-env"
    assert resolve_token(ChannelAccount(), "work", env, "$") is None  # env is the default account's only
    link = tmp_path / "link"
    os.symlink(token_file, link)
    with pytest.raises(ConfigError) as err:
        resolve_token(ChannelAccount(token_file=str(link)), "default", env, "$.channels.telegram")
    assert "$.channels.telegram.tokenFile" in str(err.value) and "symlink" in str(err.value)
    assert "from-file" not in str(err.value)


def test_accounts_merge_over_the_channel_and_never_inherit_its_token() -> None:
    section = ChannelConfig(
        bot_token="root-token",
        text_chunk_limit=100,
        accounts={
            "Work": ChannelAccount(bot_token="work-token"),
            "alerts": ChannelAccount(text_chunk_limit=50),
        },
        default_account="work",
    )
    accounts = {a.account_id: a for a in channel_accounts({"telegram": section}, "telegram")}
    assert set(accounts) == {"work", "alerts", "default"}  # the root's own token is the default account
    assert accounts["work"].settings.text_chunk_limit == 100 and accounts["work"].is_default
    assert (
        accounts["alerts"].settings.bot_token is None and accounts["alerts"].settings.text_chunk_limit == 50
    )
    assert accounts["default"].settings.bot_token == "root-token"
    assert default_account_id(ChannelConfig(accounts={"b": ChannelAccount(), "a": ChannelAccount()})) == "a"
    assert channel_accounts({}, "telegram") == []


def test_streaming_and_chunk_settings() -> None:
    assert streaming_mode(ChannelAccount()) == "progress"
    assert streaming_mode(ChannelAccount(streaming=ChannelStreaming(mode="partial"))) == "partial"
    assert streaming_mode(ChannelAccount(streaming=True)) == "partial"
    assert streaming_mode(ChannelAccount(streaming=False)) == "off"
    assert text_chunk_limit(ChannelAccount(text_chunk_limit=10_000)) == 4096
    assert text_chunk_limit(ChannelAccount(text_chunk_limit=100)) == 100


def test_split_text_within_the_limit_at_natural_breaks() -> None:
    assert split_text("short") == ["short"]
    assert split_text("   ") == ["…"]
    pieces = split_text("para one\n\n" + "x" * 30 + "\n" + "y" * 30, 50)
    assert pieces == ["para one\n\n" + "x" * 30, "y" * 30]
    hard = split_text("z" * 120, 50)
    assert [len(p) for p in hard] == [50, 50, 20] and "".join(hard) == "z" * 120
    emoji = split_text("😀" * 30, 50)  # two UTF-16 units each, as Telegram counts
    assert [len(p) for p in emoji] == [25, 5]


def test_the_largest_photo_size_that_fits_is_picked() -> None:
    sizes = (
        PhotoSize(file_id="s", file_size=10),
        PhotoSize(file_id="m", file_size=500),
        PhotoSize(file_id="l"),
    )
    assert pick_photo(sizes, 1000) == sizes[1]  # a size of unknown weight is never guessed to fit
    assert pick_photo(sizes, 100) == sizes[0]
    assert pick_photo(sizes, 5) is None
    assert media_budget(ChannelAccount(media_max_mb=1)) == 1024 * 1024
    assert media_budget(ChannelAccount()) == 100 * 1024 * 1024  # OpenClaw's default for Telegram


def test_files_other_than_photos_are_named_and_typed_as_sent_or_by_kind() -> None:
    private = {"id": 1, "type": "private"}
    doc = normalize_update(
        _update(
            private,
            document={"file_id": "d", "file_name": "a.pdf", "mime_type": "application/pdf", "file_size": 9},
        ),
        BOT,
    )
    assert doc is not None and [(f.kind, f.name, f.mime, f.size) for f in doc.files] == [
        ("document", "a.pdf", "application/pdf", 9)
    ]
    # no caption, no text: still a message to answer (its file is what was said)
    voice = normalize_update(_update(private, text=None, voice={"file_id": "v", "duration": 3}), BOT)
    assert voice is not None and voice.text == ""
    assert [(f.kind, f.name, f.mime) for f in voice.files] == [("voice message", "voice-5.ogg", "audio/ogg")]
    sticker = normalize_update(_update(private, text=None, sticker={"file_id": "s", "is_video": True}), BOT)
    assert sticker is not None and [(f.name, f.mime) for f in sticker.files] == [
        ("sticker-5.webm", "video/webm")
    ]
    note = normalize_update(_update(private, text=None, video_note={"file_id": "n", "length": 240}), BOT)
    assert note is not None and [(f.kind, f.name) for f in note.files] == [("video note", "video-note-5.mp4")]
