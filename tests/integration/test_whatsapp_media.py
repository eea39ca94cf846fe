"""WhatsApp Cloud API media end to end against the fake Graph API (tests/fakes/whatsapp.py): a
document, a voice note and an image a user sends are fetched (media node, then its URL, with the
access token) once the access policy admitted the message, kept beside it, staged by the node
into the agent's workspace with OpenClaw's `[media attached: …]` note in front of the caption,
and an image also reaches the model as an image part; a file over `mediaMaxMb` is refused on
its node's size, never downloaded; a denied sender's media are never asked for; an unknown
media id or bytes whose SHA-256 is not the one sent are named as not received, and the turn is
answered all the same."""

from __future__ import annotations

import base64
import hashlib
import logging
import re
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.whatsapp import FakeWhatsApp, Number
from tests.fixtures.gateway import Gateway, run_gateway

PNID = "106540352242922"
TOKEN = "EAAG-test-access-token"
SECRET = "app-secret-1"
FRIENDS = ("16505551001", "16505551002", "16505551003", "16505551004", "16505551005", "16505551006")
STRANGER = "4915112345678"

_ALL = ("ingress", "router", "runner", "node-agent")
_NOTE = re.compile(
    r"\[media attached: (media/inbound/openclaw-staged-[0-9a-f]{64}/.+?) \(([^)]+)\) \"([^\"]*)\"\]"
)


def _config(wa: FakeWhatsApp, **settings: Any) -> dict[str, Any]:
    return {
        "agents": {"defaults": {"model": "echo/x"}, "list": [{"id": "main", "default": True}]},
        "channels": {
            "whatsapp": {
                "phoneNumberId": PNID,
                "accessToken": TOKEN,
                "appSecret": SECRET,
                "apiBaseUrl": wa.api_base,
                "dmPolicy": "allowlist",
                "allowFrom": [f"+{n}" for n in FRIENDS],
                **settings,
            }
        },
    }


def _url(gw: Gateway) -> str:
    adapter = gw.service("ingress").channels.adapters["whatsapp"]["default"]
    return f"{gw.service('ingress').url}{adapter.path}"


async def _reply(wa: FakeWhatsApp, number: Number, to: str) -> str:
    sent = await wa.wait_sent(number, lambda m: m.to == to)
    return sent[0].text.removeprefix("echo: ")


async def test_documents_voice_notes_and_images_reach_the_workspace_with_openclaws_note(
    nats_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="clawmesh.ingress.channels")
    pdf = b"%PDF-1.7\n" + bytes(range(256)) * 2000  # binary, 512 KB
    voice = b"OggS" + b"\x00\xff" * 5000
    jpeg = b"\xff\xd8\xff\xe0" + b"\x10JFIF" * 2000
    async with FakeWhatsApp(app_secret=SECRET) as wa:
        number = wa.add_number(PNID, token=TOKEN)
        doc_media = wa.add_media(number, pdf, "application/pdf")
        voice_media = wa.add_media(number, voice, "audio/ogg; codecs=opus")
        image_media = wa.add_media(number, jpeg, "image/jpeg")
        big_media = wa.add_media(number, b"v" * 2_000_000, "video/mp4")
        secret_media = wa.add_media(number, b"secret", "text/plain")
        async with run_gateway(nats_url, _config(wa, mediaMaxMb=1), tmp_path, services=_ALL) as gw:
            url = _url(gw)
            doc_msg = wa.media_message(
                number,
                doc_media,
                sender=FRIENDS[0],
                type="document",
                caption="summarise this",
                filename="../Q3 report.pdf",
            )
            voice_msg = wa.media_message(number, voice_media, sender=FRIENDS[1], type="audio", voice=True)
            image_msg = wa.media_message(
                number, image_media, sender=FRIENDS[2], type="image", caption="what is this?"
            )
            big_msg = wa.media_message(number, big_media, sender=FRIENDS[3], type="video", caption="too big")
            denied = wa.media_message(
                number, secret_media, sender=STRANGER, type="document", filename="s.txt"
            )
            for change in (denied, doc_msg, voice_msg, image_msg, big_msg):
                assert (await wa.deliver(url, wa.payload(change))).status_code == 200
            workspace = gw.holder.current.agent_view("main").workspace

            doc_note, doc_rest = (await _reply(wa, number, FRIENDS[0])).split("\n", 1)
            doc = _NOTE.fullmatch(doc_note)
            assert doc is not None, doc_note
            assert doc[1].endswith("/input-Q3 report.pdf") and doc[2] == "application/pdf"
            assert doc[3] == "Q3 report.pdf" and doc_rest == "summarise this"
            assert (workspace / doc[1]).read_bytes() == pdf

            voice_text = await _reply(wa, number, FRIENDS[1])
            voice_note = _NOTE.fullmatch(voice_text)
            assert voice_note is not None, voice_text
            assert voice_note[2] == "audio/ogg" and voice_note[3].startswith("audio-")
            assert voice_note[1].endswith(".ogg")
            assert (workspace / voice_note[1]).read_bytes() == voice

            image_note, image_rest = (await _reply(wa, number, FRIENDS[2])).split("\n", 1)
            image = _NOTE.fullmatch(image_note)
            assert image is not None, image_note
            assert image[2] == "image/jpeg" and image[3].startswith("image-") and image[3].endswith(".jpg")
            assert image_rest == "what is this? [1 image(s): image/jpeg]"  # and an image part
            assert (workspace / image[1]).read_bytes() == jpeg

            # over mediaMaxMb by its node's file_size: the URL is never read
            assert await _reply(wa, number, FRIENDS[3]) == (
                "too big\n[a video was sent; it is larger than the 1048576 bytes taken in]"
            )
            assert "2000000 bytes; at most 1048576 are taken" in caplog.text
            assert big_media.media_id in wa.media_lookups
            assert big_media.media_id not in wa.downloads

            # the stranger was denied: their file was never looked up, let alone downloaded
            assert secret_media.media_id not in wa.media_lookups + wa.downloads
            assert sorted(wa.downloads) == sorted(m.media_id for m in (doc_media, voice_media, image_media))
            assert {m.to for m in number.sent} == set(FRIENDS[:4])
            counters = gw.service("ingress").ctx.counters
            assert counters["channel_denied"] == 1 and counters["media_in"] == 3


async def test_a_file_that_cannot_be_received_is_named_and_the_turn_still_answered(
    nats_url: str, tmp_path: Path
) -> None:
    data = b"%PDF-1.7 quarterly numbers"
    async with FakeWhatsApp(app_secret=SECRET) as wa:
        number = wa.add_number(PNID, token=TOKEN)
        tampered = wa.add_media(number, data, "application/pdf")
        lying_node = wa.add_media(number, data, "application/pdf", sha256=hashlib.sha256(b"x").hexdigest())
        fine = wa.add_media(number, data, "application/pdf")
        async with run_gateway(nats_url, _config(wa), tmp_path, services=_ALL) as gw:
            url = _url(gw)
            other_hash = base64.b64encode(hashlib.sha256(b"something else").digest()).decode()
            changes = [
                # Meta no longer knows the id (400, code 100)
                wa.media_message(number, "999999", sender=FRIENDS[0], type="document", caption="gone?"),
                # the webhook's hash is not the bytes'
                wa.media_message(
                    number, tampered, sender=FRIENDS[1], type="document", caption="hash?", sha256=other_hash
                ),
                # the node's hash is not the bytes'
                wa.media_message(number, lying_node, sender=FRIENDS[2], type="document", caption="node?"),
                wa.media_message(number, fine, sender=FRIENDS[3], type="document", caption="fine"),
            ]
            assert (await wa.deliver(url, wa.payload(*changes))).status_code == 200
            for sender, caption in zip(FRIENDS, ("gone?", "hash?", "node?"), strict=False):
                assert await _reply(wa, number, sender) == (
                    f"{caption}\n[a document was sent; it could not be received]"
                )
            note, rest = (await _reply(wa, number, FRIENDS[3])).split("\n", 1)
            assert _NOTE.fullmatch(note) is not None and rest == "fine"
            assert "999999" in wa.media_lookups and "999999" not in wa.downloads
            counters = gw.service("ingress").ctx.counters
            assert counters["media_failed"] == 3 and counters["media_in"] == 1
            assert counters["whatsapp_media_hash_mismatch"] == 2
