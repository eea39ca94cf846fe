"""Slack files end to end against the fake Slack (tests/fakes/slack.py), with the node that
stages them: a `file_share` message's file is downloaded with the bot token once the access
policy admitted it, staged into the agent's workspace where OpenClaw stages it, and named in
the text with OpenClaw's note (a file without a caption is what was said); one above
`mediaMaxMb` is named as too large and never downloaded, nor is a denied sender's; a deleted
file, Slack's sign-in page in place of a file (a token without `files:read`) and a file larger
than Slack said are each named as not received, and the turn is still answered. Over the
Events API and over Socket Mode (one adapter)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from nats.aio.client import Client

from clawmesh.sessions import SessionStore, TxUser
from clawmesh.wire import Subjects
from tests.fakes.slack import FakeSlack
from tests.fixtures.gateway import Gateway, run_gateway, wait_until

TOKEN = "xoxb-files-bot-token"
APP_TOKEN = "xapp-1-A111-files-app-token"
SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
_ALL = ("ingress", "router", "runner", "node-agent")
_NOTE = re.compile(
    r"\[media attached: (media/inbound/openclaw-staged-[0-9a-f]{64}/.+?) \(([^)]+)\) \"([^\"]*)\"\]"
)
_NOT_RECEIVED = "[a file was sent; it could not be received]"


def _config(slack: FakeSlack, **settings: Any) -> dict[str, Any]:
    return {
        "agents": {"defaults": {"model": "echo/x"}, "list": [{"id": "main", "default": True}]},
        "channels": {
            "slack": {
                "mode": "http",
                "botToken": TOKEN,
                "signingSecret": SECRET,
                "apiBaseUrl": slack.api_base,
                "dmPolicy": "allowlist",
                "allowFrom": ["U42"],
                "groupPolicy": "open",
                "channels": {"*": {"requireMention": True}},
                "mediaMaxMb": 1,
                **settings,
            }
        },
    }


async def _ready(gw: Gateway) -> str:
    adapter = gw.service("ingress").channels.adapters["slack"]["default"]
    await wait_until(lambda: adapter.bot is not None)
    return f"{gw.service('ingress').url}{adapter.path}"


def _workspace(gw: Gateway) -> Path:
    path: Path = gw.holder.current.agent_view("main").workspace
    return path


async def test_shared_files_are_staged_into_the_workspace_with_openclaws_note(
    nats_url: str, nc: Client, tmp_path: Path
) -> None:
    pdf = b"%PDF-1.7\n" + bytes(range(256)) * 2000  # binary, 512 KB
    clip = b"\x00\x00\x00\x18ftypmp42" + b"\x01\xfe" * 4000
    async with FakeSlack(signing_secret=SECRET) as slack:
        app = slack.add_app(TOKEN)
        async with run_gateway(nats_url, _config(slack), tmp_path, services=_ALL) as gw:
            url = await _ready(gw)
            report = slack.add_file(app, pdf, name="Q3 report.pdf", mimetype="application/pdf", title="Q3")
            # an audio clip recorded in Slack: served as video/mp4, taken in as audio (OpenClaw)
            voice = slack.add_file(
                app, clip, name="audio_message.mp4", mimetype="video/mp4", subtype="slack_audio"
            )
            big = slack.add_file(app, b"x" * 2_000_000, name="big.bin", mimetype="application/octet-stream")
            secret = slack.add_file(app, b"not for you", name="s.txt", mimetype="text/plain")
            deleted = slack.add_file(app, b"", name="gone.txt", mimetype="text/plain", mode="tombstone")
            sent = [
                slack.message_event(app, channel="D100", user="U42", text="summarise this", files=[report]),
                slack.message_event(app, channel="D100", user="U42", text="", files=[voice]),
                slack.message_event(app, channel="D100", user="U42", text="and this", files=[big]),
                slack.message_event(app, channel="D177", user="U77", text="take it", files=[secret]),
                # a room message with a file and no mention: gated as before, never downloaded
                slack.message_event(app, channel="C300", user="U42", text="fyi", files=[secret]),
                slack.message_event(app, channel="D100", user="U42", text="look", files=[deleted]),
            ]
            for envelope in sent:
                assert (await slack.deliver(url, envelope)).status_code == 200
            replies = await slack.wait_sent(app, lambda p: p.channel == "D100", count=4)
            workspace = _workspace(gw)

            doc_note, doc_rest = replies[0].text.removeprefix("echo: ").split("\n", 1)
            doc = _NOTE.fullmatch(doc_note)
            assert doc is not None, doc_note
            assert doc[1].endswith("/input-Q3 report.pdf") and doc[2] == "application/pdf"
            assert doc[3] == "Q3 report.pdf" and doc_rest == "summarise this"
            assert (workspace / doc[1]).read_bytes() == pdf

            # no caption: the file is what was said
            clip_note = _NOTE.fullmatch(replies[1].text.removeprefix("echo: "))
            assert clip_note is not None, replies[1].text
            assert clip_note[2] == "audio/mp4" and clip_note[3] == "audio_message.mp4"
            assert (workspace / clip_note[1]).read_bytes() == clip

            assert (
                replies[2].text
                == "echo: and this\n[a file was sent; it is larger than the 1048576 bytes taken in]"
            )
            assert replies[3].text == f"echo: look\n{_NOT_RECEIVED}"

            # only the two files taken in were asked for, each once, with the bot token
            assert [(d.file_id, d.authorized, d.status) for d in slack.downloads] == [
                (report["id"], True, 200),
                (voice["id"], True, 200),
            ]
            assert not [p for p in app.sent if p.channel in ("D177", "C300")]
            # the transcript keeps the note: a later turn still knows where the file is
            js = nc.jetstream()
            store = SessionStore(js, Subjects(), await js.key_value("cm_sessions"))
            said = [e.text for e in await store.history("main", "agent:main:main") if isinstance(e, TxUser)]
            assert said[:2] == [f"{doc_note}\nsummarise this", clip_note[0]]


async def test_a_file_not_received_is_named_and_the_turn_still_answered_over_socket_mode(
    nats_url: str, tmp_path: Path
) -> None:
    """A token without `files:read` gets Slack's sign-in page (a redirect, then 200 text/html):
    not a file. A file whose bytes run past `mediaMaxMb` though Slack said less is given up."""
    async with FakeSlack(signing_secret=SECRET) as slack:
        app = slack.add_app(TOKEN, app_token=APP_TOKEN, files_read=False)
        config = _config(slack, mode="socket", appToken=APP_TOKEN)
        del config["channels"]["slack"]["signingSecret"]
        async with run_gateway(nats_url, config, tmp_path, services=_ALL) as gw:
            adapter = gw.service("ingress").channels.adapters["slack"]["default"]
            await slack.wait_connected(app)
            await wait_until(lambda: adapter.status()["ready"], message="the account ready")
            report = slack.add_file(app, b"%PDF-1.7\n", name="r.pdf", mimetype="application/pdf")
            pushed = await slack.push(
                app, slack.message_event(app, channel="D100", user="U42", text="what is it?", files=[report])
            )
            await slack.wait_acked(pushed)
            reply = (await slack.wait_sent(app, lambda p: p.channel == "D100"))[0]
            assert reply.text == f"echo: what is it?\n{_NOT_RECEIVED}"
            # asked once with the token, sent to the sign-in page, which was read and refused
            assert [(d.file_id, d.authorized, d.status) for d in slack.downloads] == [
                (report["id"], False, 302)
            ]
            assert slack.sign_in_pages == 1
            assert gw.service("ingress").ctx.counters["media_failed"] == 1

            app.files_read = True
            liar = slack.add_file(
                app, b"y" * 3_000_000, name="small.bin", mimetype="application/octet-stream", size=1000
            )
            await slack.push(app, slack.message_event(app, channel="D100", user="U42", text="", files=[liar]))
            second = await slack.wait_sent(app, lambda p: p.channel == "D100", count=2)
            # it said 1000 bytes and streamed more than mediaMaxMb: cut off, named as too large
            assert second[1].text == "echo: [a file was sent; it is larger than the 1048576 bytes taken in]"
            assert [(d.file_id, d.status) for d in slack.downloads[1:]] == [(liar["id"], 200)]
            assert not list(_workspace(gw).glob("media/inbound/*/input-*"))
            counters = gw.service("ingress").ctx.counters
            assert (counters["media_failed"], counters["media_too_large"]) == (1, 1)
