"""WhatsApp Cloud API webhook signatures, the payload's messages as routing input (OpenClaw's
E.164 ids), media messages as the files they carry (named, typed, hashed), the credentials'
sources, and the Graph API client's media node and download against the fake."""

from __future__ import annotations

import base64
import hashlib

import msgspec
import pytest

from clawmesh.channels.whatsapp import (
    Webhook,
    WhatsAppFile,
    normalize_webhook,
    resolve_credentials,
    sha256_matches,
    sign,
    verify_signature,
)
from clawmesh.config import ChannelAccount, ConfigError
from clawmesh.wire import Peer
from clawmesh_ingress.channels.media import MediaTooLarge
from clawmesh_ingress.channels.whatsapp.graphapi import GraphApi, GraphError
from tests.fakes.whatsapp import FakeWhatsApp


def _hook(*messages: dict[str, object], statuses: bool = False) -> Webhook:
    value: dict[str, object] = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550783881", "phone_number_id": "1065"},
        "contacts": [{"profile": {"name": "Sheena Nelson"}, "wa_id": "16505551234"}],
        "messages": list(messages),
    }
    if statuses:
        value["statuses"] = [{"id": "wamid.x", "status": "read", "timestamp": "1", "recipient_id": "1"}]
    raw = {
        "object": "whatsapp_business_account",
        "entry": [{"id": "W", "changes": [{"field": "messages", "value": value}]}],
    }
    return msgspec.convert(raw, Webhook)


def test_signature_is_hmac_of_the_raw_body_in_constant_time() -> None:
    body = b'{"object":"whatsapp_business_account","entry":[]}'
    good = sign("secret", body)
    assert good.startswith("sha256=") and len(good) == 7 + 64
    assert verify_signature("secret", good, body)
    assert verify_signature("secret", good.upper().replace("SHA256=", "sha256="), body)  # hex case
    assert not verify_signature("secret", good, body + b" ")
    assert not verify_signature("other", good, body)
    assert not verify_signature("secret", "", body)


def test_messages_map_to_openclaws_ids() -> None:
    text = {"from": "16505551234", "id": "wamid.A", "timestamp": "1", "type": "text", "text": {"body": "hi"}}
    group = {**text, "id": "wamid.B", "group_id": "120363@g.us"}
    caption = {
        "from": "16505551234",
        "id": "wamid.C",
        "type": "image",
        "image": {"caption": "look", "id": "m"},
    }
    reaction = {
        "from": "16505551234",
        "id": "wamid.D",
        "type": "reaction",
        "reaction": {"message_id": "wamid.A", "emoji": "👍"},
    }
    bsuid = {"user_id": "US.1349", "id": "wamid.E", "type": "text", "text": {"body": "no number"}}
    mention = {**text, "id": "wamid.F", "group_id": "120363@g.us", "text": {"body": "@15550783881 help"}}
    found, ignored = normalize_webhook(_hook(text, group, caption, reaction, bsuid, mention, statuses=True))
    assert ignored == 1  # the reaction; statuses are no messages
    by_id = {m.message_id: m for m in found}
    assert by_id["wamid.A"].peer == Peer(kind="direct", id="+16505551234")
    assert by_id["wamid.A"].sender.id == "+16505551234" and by_id["wamid.A"].sender.name == "Sheena Nelson"
    assert (
        by_id["wamid.B"].peer == Peer(kind="group", id="120363@g.us")
        and by_id["wamid.B"].chat_type == "group"
    )
    assert by_id["wamid.C"].text == "look"
    assert by_id["wamid.E"].peer == Peer(kind="direct", id="US.1349")
    assert by_id["wamid.F"].was_mentioned and not by_id["wamid.B"].was_mentioned
    assert {m.phone_number_id for m in found} == {"1065"}


def test_credentials_need_a_number_a_token_and_an_app_secret() -> None:
    assert (
        resolve_credentials(ChannelAccount(), "default", {}, "$.channels.whatsapp") is None
    )  # WhatsApp Web config
    env = {"WHATSAPP_ACCESS_TOKEN": "t", "WHATSAPP_APP_SECRET": "s", "WHATSAPP_VERIFY_TOKEN": "v"}
    creds = resolve_credentials(ChannelAccount(phone_number_id="1065"), "default", env, "$.channels.whatsapp")
    assert creds is not None and (creds.access_token, creds.app_secret, creds.verify_token) == ("t", "s", "v")
    with pytest.raises(ConfigError) as err:
        resolve_credentials(
            ChannelAccount(phone_number_id="1065"), "biz", env, "$.channels.whatsapp.accounts.biz"
        )
    text = str(err.value)
    assert "$.channels.whatsapp.accounts.biz.accessToken" in text and ".appSecret" in text


def _media(type_: str, body: dict[str, object], **extra: object) -> dict[str, object]:
    # the name of a file without one ends in the wamid's last 12 letters and digits
    return {
        "from": "16505551234",
        "id": f"wamid.HBgLMTY1{type_.upper()}x+/=",
        "type": type_,
        type_: body,
        **extra,
    }


def test_media_messages_carry_their_file_named_and_typed() -> None:
    document = _media(
        "document",
        {
            "id": "1001",
            "mime_type": "application/pdf",
            "sha256": "abc=",
            "caption": "summarise this",
            "filename": "Q3 report.pdf",
        },
    )
    image = _media("image", {"id": "1002", "mime_type": "image/jpeg", "sha256": "def="})
    voice = _media("audio", {"id": "1003", "mime_type": "audio/ogg; codecs=opus", "voice": True})
    audio = _media("audio", {"id": "1004", "mime_type": "audio/mpeg"})
    video = _media("video", {"id": "1005", "mime_type": "video/mp4", "caption": "watch"})
    sticker = _media("sticker", {"id": "1006", "mime_type": "image/webp", "animated": False})
    no_id = _media("image", {"mime_type": "image/jpeg"})  # nothing to fetch, nothing to say
    bare = _media("document", {"id": "1007", "mime_type": "application/x-unknown-thing"})
    found, ignored = normalize_webhook(_hook(document, image, voice, audio, video, sticker, no_id, bare))
    assert ignored == 1
    by_media = {m.files[0].media_id: m for m in found}
    assert by_media["1001"].text == "summarise this"
    assert by_media["1001"].files == (
        WhatsAppFile(
            kind="document", media_id="1001", name="Q3 report.pdf", mime="application/pdf", sha256="abc="
        ),
    )
    assert by_media["1002"].text == "" and by_media["1002"].files[0].name == "image-gLMTY1IMAGEx.jpg"
    assert by_media["1002"].files[0].kind == "image" and by_media["1002"].files[0].sha256 == "def="
    # a voice note is audio with `voice`: its codec parameter is dropped from the type
    assert (by_media["1003"].files[0].kind, by_media["1003"].files[0].mime) == ("voice message", "audio/ogg")
    assert by_media["1003"].files[0].name == "audio-gLMTY1AUDIOx.ogg"
    assert (by_media["1004"].files[0].kind, by_media["1004"].files[0].name) == (
        "audio",
        "audio-gLMTY1AUDIOx.mp3",
    )
    assert by_media["1005"].text == "watch" and by_media["1005"].files[0].name == "video-gLMTY1VIDEOx.mp4"
    assert by_media["1006"].files[0].name == "sticker-MTY1STICKERx.webp"
    assert by_media["1007"].files[0].name == "document-TY1DOCUMENTx"  # no known extension, no filename
    assert all(m.sender.id == "+16505551234" for m in found)


def test_sha256_is_checked_as_graph_writes_it() -> None:
    data = b"%PDF-1.7 hello"
    digest = hashlib.sha256(data).digest()
    assert sha256_matches(digest.hex(), data)  # the media node: hex
    assert sha256_matches(digest.hex().upper(), data)
    assert sha256_matches(base64.b64encode(digest).decode(), data)  # webhooks: base64
    assert sha256_matches(base64.urlsafe_b64encode(digest).decode().rstrip("="), data)
    assert not sha256_matches(hashlib.sha256(b"other").hexdigest(), data)
    assert not sha256_matches(base64.b64encode(hashlib.sha256(b"other").digest()).decode(), data)
    assert not sha256_matches("not a hash", data)
    assert not sha256_matches(base64.b64encode(digest[:16]).decode(), data)  # too short


async def test_graph_media_node_and_download_against_the_fake() -> None:
    async with FakeWhatsApp(app_secret="s") as wa:
        number = wa.add_number("1065", token="good")
        data = bytes(range(256)) * 1000
        media = wa.add_media(number, data, "application/pdf")
        lying = wa.add_media(number, b"x" * 300_000, "video/mp4", file_size=10)
        api = GraphApi(wa.api_base, "v21.0", "1065", "good")
        try:
            info = await api.media(media.media_id)
            assert (info.mime_type, info.file_size) == ("application/pdf", len(data))
            assert sha256_matches(info.sha256, data)
            assert await api.download(info.url, len(data)) == data
            # the node said 10 bytes: the download still stops past the limit
            small = await api.media(lying.media_id)
            assert small.file_size == 10
            with pytest.raises(MediaTooLarge):
                await api.download(small.url, 100_000)
            with pytest.raises(GraphError) as unknown:
                await api.media("424242")
            assert (unknown.value.status, unknown.value.code) == (400, 100)
            # the token never travels in clear text to another host
            with pytest.raises(GraphError):
                await api.download("http://203.0.113.9/whatsapp_business/attachments/?mid=1", 10)
            assert wa.downloads == [media.media_id, lying.media_id]
        finally:
            await api.close()
        bad = GraphApi(wa.api_base, "v21.0", "1065", "wrong")
        try:
            with pytest.raises(GraphError) as refused:
                await bad.media(media.media_id)
            assert (refused.value.status, refused.value.code) == (401, 190)
            with pytest.raises(GraphError) as stolen:
                await bad.download(info.url, len(data))  # a URL alone is not enough
            assert (stolen.value.status, stolen.value.code) == (401, 190)
            with pytest.raises(GraphError):
                await bad.media("../1065/messages")  # never a path
        finally:
            await bad.close()
