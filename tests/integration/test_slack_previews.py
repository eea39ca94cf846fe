"""Streamed reply previews on Slack (`channels.slack.streaming`), end to end against the fake
Slack (tests/fakes/slack.py, Events API) and the fake model server, whose answer a test holds
mid-stream: with `partial` a preview message is posted while the answer is held and updated
(`chat.update`) as text arrives, and the final reply updates that same message (no second
message); the preview goes where the reply goes (a thread per `replyToMode`, a thread reply's
thread); a reply over 4000 characters ends as the preview updated to its first part plus new
messages; a first part too long for an edit (4000 bytes) is posted anew and the preview deleted;
a preview deleted meanwhile (`message_not_found`) makes the final reply a new message, sent once;
with `off` and OpenClaw's default (`progress`, served as `off`) nobody follows the turn: no
preview, no update; a final update rate-limited (429) is retried and the reply stored again
later takes nothing over twice."""

from __future__ import annotations

import asyncio
import itertools
import logging
from pathlib import Path
from typing import Any

import msgspec
import pytest
from nats.aio.client import Client
from nats.js.errors import KeyNotFoundError

from clawmesh.channels.slack import EDIT_TEXT_MAX_BYTES, edit_text_bytes
from clawmesh.channels.text import split_text
from clawmesh.wire import InboundMessage, OutboundMessage, decode, encode_json
from clawmesh_ingress.turns import turn_id_for
from tests.fakes.models import FakeModelServer, Hang, ToolCall
from tests.fakes.slack import App, FakeSlack, Posted
from tests.fixtures.gateway import Gateway, run_gateway, wait_until
from tests.fixtures.nats import acked_through

TOKEN = "xoxb-preview-test-token"
SECRET = "preview-test-signing-secret"
CHUNKS = 6
REPLY = "The answer, streamed: alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november oscar papa"
THREAD = "1700000000.000101"


def _config(slack: FakeSlack, model: FakeModelServer, **settings: Any) -> dict[str, Any]:
    return {
        "agents": {"defaults": {"model": "fake/m"}, "list": [{"id": "main", "default": True}]},
        "models": {
            "providers": {"fake": {"baseUrl": model.base_url + "/v1", "api": "openai", "apiKey": "k"}}
        },
        "channels": {
            "slack": {
                "mode": "http",
                "botToken": TOKEN,
                "signingSecret": SECRET,
                "apiBaseUrl": slack.api_base,
                "dmPolicy": "open",
                "allowFrom": ["*"],
                "groupPolicy": "open",
                "channels": {"*": {"requireMention": False}},
                **settings,
            }
        },
    }


async def _ready(gw: Gateway) -> tuple[Any, str]:
    adapter = gw.service("ingress").channels.adapters["slack"]["default"]
    await wait_until(lambda: adapter.bot is not None, message="auth.test done")
    return adapter, f"{gw.service('ingress').url}{adapter.path}"


async def _send(slack: FakeSlack, url: str, envelope: dict[str, Any]) -> None:
    assert (await slack.deliver(url, envelope)).status_code == 200


def _turn(envelope: dict[str, Any]) -> str:
    ev = envelope["event"]
    return turn_id_for("slack", "default", f"{ev['channel']}:{ev['ts']}")


def _head(text: str, deltas: int) -> str:
    """The first `deltas` of the fake model's `CHUNKS` deltas of `text` (sizes as it splits)."""
    size, extra = divmod(len(text), CHUNKS)
    return text[: sum(size + (1 if i < extra else 0) for i in range(deltas))]


async def _delivered(nc: Client, turn_id: str) -> bool:
    """The turn's reply is recorded as sent (nothing of it is sent again after this)."""
    kv = await nc.jetstream().key_value("cm_delivered")
    try:
        entry = await kv.get(turn_id)
    except KeyNotFoundError:
        return False
    return bool(msgspec.json.decode(entry.value or b"{}").get("done"))


async def _all_delivered(nc: Client) -> bool:
    """Every reply in CM_OUTBOUND was handled (sent and acked)."""
    info = await nc.jetstream().consumer_info("CM_OUTBOUND", "ingress-out-slack")
    return info.num_pending == 0 and info.num_ack_pending == 0


async def _first_post(slack: FakeSlack, app: App, channel: str) -> Posted:
    return (await slack.wait_sent(app, lambda p: p.channel == channel))[0]


@pytest.mark.parametrize("mode", ["partial", "block"])
async def test_a_preview_appears_while_the_answer_streams_grows_and_is_replaced_by_the_final_reply(
    mode: str, nats_url: str, nc: Client, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="clawmesh.ingress.slack")
    released = asyncio.Event()
    looking = "Let me look that up for you, one moment please. "
    async with (
        FakeSlack(signing_secret=SECRET) as slack,
        FakeModelServer(reply=REPLY, chunks=CHUNKS) as model,
    ):
        app = slack.add_app(TOKEN)
        # a first model call says something and calls a tool (not one the agent has: its error
        # goes back to the model); the second streams two deltas of the answer, then waits
        model.script(
            ToolCall("no_such_tool", {}, text_before=looking),
            Hang(seconds=120, after_chunks=2, opened=released),
        )
        async with run_gateway(nats_url, _config(slack, model, streaming={"mode": mode}), tmp_path) as gw:
            adapter, url = await _ready(gw)
            adapter.EDIT_INTERVAL = 0.05
            dm = slack.message_event(app, channel="D100", user="U42", text="stream please")
            await _send(slack, url, dm)
            preview = await _first_post(slack, app, "D100")
            assert preview.thread_ts is None  # a top-level DM, replyToMode off: no thread
            # while the answer is held: the preview is updated up to the text so far
            so_far = (looking + _head(REPLY, 2)).rstrip()
            await wait_until(lambda: preview.text == so_far, message="the preview at the text so far")
            assert app.updates and all(u.ts == preview.ts and u.channel == "D100" for u in app.updates)
            assert len(app.sent) == 1
            released.set()
            await wait_until(lambda: preview.text == REPLY, message="the final reply in the preview")
            await wait_until(lambda: _delivered(nc, _turn(dm)), message="the reply recorded")
            # the final reply took the preview over: no second message
            assert app.sent == [preview]
            assert app.updates[-1].text == REPLY and app.updates[-1].ts == preview.ts
            # an update is made only when the text changed
            texts = [preview.edits[0], *(u.text for u in app.updates)]
            assert all(a != b for a, b in itertools.pairwise(texts))
            assert gw.service("ingress").ctx.counters["slack_preview_updates"] >= 2
    served = caplog.text.count('streaming mode "block" is served as "partial"')
    assert served == (1 if mode == "block" else 0)


@pytest.mark.parametrize(
    ("reply_to_mode", "thread_reply"),
    [("all", False), ("off", True)],
    ids=["replyToMode-all", "thread-reply"],
)
async def test_the_preview_goes_into_the_thread_the_reply_goes_to(
    reply_to_mode: str, thread_reply: bool, nats_url: str, nc: Client, tmp_path: Path
) -> None:
    released = asyncio.Event()
    async with (
        FakeSlack(signing_secret=SECRET) as slack,
        FakeModelServer(reply=REPLY, chunks=CHUNKS) as model,
    ):
        app = slack.add_app(TOKEN)
        model.script(Hang(seconds=120, after_chunks=2, opened=released))
        config = _config(slack, model, streaming={"mode": "partial"}, replyToMode=reply_to_mode)
        async with run_gateway(nats_url, config, tmp_path) as gw:
            adapter, url = await _ready(gw)
            adapter.EDIT_INTERVAL = 0.05
            if thread_reply:  # a reply in someone's thread: answered in that thread, whatever the mode
                msg = slack.message_event(
                    app,
                    channel="C300",
                    user="U43",
                    text="in a thread",
                    thread_ts=THREAD,
                    parent_user_id="U40",
                )
            else:  # a top-level channel message, replyToMode all: answered in a thread under it
                msg = slack.message_event(app, channel="C300", user="U43", text="top level")
            await _send(slack, url, msg)
            thread = THREAD if thread_reply else msg["event"]["ts"]
            preview = await _first_post(slack, app, "C300")
            assert preview.thread_ts == thread
            await wait_until(
                lambda: preview.text == _head(REPLY, 2).rstrip(), message="the preview at the text so far"
            )
            released.set()
            await wait_until(lambda: preview.text == REPLY, message="the final reply in the preview")
            await wait_until(lambda: _delivered(nc, _turn(msg)), message="the reply recorded")
            assert app.sent == [preview] and preview.thread_ts == thread
            assert all(u.ts == preview.ts for u in app.updates)


async def test_a_long_reply_ends_as_the_preview_updated_to_its_first_part_plus_new_messages(
    nats_url: str, nc: Client, tmp_path: Path
) -> None:
    released = asyncio.Event()
    words = " ".join(f"word{i:04d}" for i in range(600))  # 5399 characters, one line
    part1, part2 = split_text(words, 4000)
    async with (
        FakeSlack(signing_secret=SECRET) as slack,
        FakeModelServer(reply=words, chunks=CHUNKS) as model,
    ):
        app = slack.add_app(TOKEN)
        model.script(Hang(seconds=120, after_chunks=5, opened=released))  # ~4500 characters, held
        async with run_gateway(
            nats_url, _config(slack, model, streaming={"mode": "partial"}), tmp_path
        ) as gw:
            adapter, url = await _ready(gw)
            adapter.EDIT_INTERVAL = 0.05
            dm = slack.message_event(app, channel="D100", user="U42", text="a long one")
            await _send(slack, url, dm)
            preview = await _first_post(slack, app, "D100")
            # the preview shows at most the reply's first message, though more text has arrived
            await wait_until(lambda: preview.text == part1, message="the preview at the first part")
            assert len(_head(words, 5)) > 4000
            updates_before = len(app.updates)
            released.set()
            rest = await slack.wait_sent(app, lambda p: p.ts != preview.ts)
            await wait_until(lambda: _delivered(nc, _turn(dm)), message="the reply recorded")
            assert [p.text for p in app.sent] == [part1, part2]
            assert rest[0].thread_ts is None and rest[0].channel == "D100"
            # the final reply updated the preview to part 1 (as it already showed), then posted part 2
            assert len(app.updates) == updates_before + 1
            assert app.updates[-1].ts == preview.ts and app.updates[-1].text == part1
            assert "chat.delete" not in app.calls


async def test_a_first_part_too_long_for_an_edit_is_posted_anew_and_the_preview_deleted(
    nats_url: str, nc: Client, tmp_path: Path
) -> None:
    released = asyncio.Event()
    accents = " ".join(["éééé"] * 600)  # 2999 characters (one message), 5399 bytes
    assert len(split_text(accents, 4000)) == 1 and edit_text_bytes(accents) > EDIT_TEXT_MAX_BYTES
    async with (
        FakeSlack(signing_secret=SECRET) as slack,
        FakeModelServer(reply=accents, chunks=CHUNKS) as model,
    ):
        app = slack.add_app(TOKEN)
        model.script(Hang(seconds=120, after_chunks=5, opened=released))
        async with run_gateway(
            nats_url, _config(slack, model, streaming={"mode": "partial"}), tmp_path
        ) as gw:
            adapter, url = await _ready(gw)
            adapter.EDIT_INTERVAL = 0.05
            dm = slack.message_event(app, channel="D100", user="U42", text="accents")
            await _send(slack, url, dm)
            preview = await _first_post(slack, app, "D100")
            # the preview grows to what an edit takes (cut at 4000 bytes), never refused
            await wait_until(
                lambda: edit_text_bytes(preview.text) > EDIT_TEXT_MAX_BYTES - 10,
                message="the preview at the edit limit",
            )
            assert accents.startswith(preview.text)
            assert all(edit_text_bytes(u.text) <= EDIT_TEXT_MAX_BYTES for u in app.updates)
            updates_before = len(app.updates)
            released.set()
            final = (await slack.wait_sent(app, lambda p: p.ts != preview.ts))[0]
            await wait_until(lambda: preview.deleted, message="the stale preview deleted")
            await wait_until(lambda: _delivered(nc, _turn(dm)), message="the reply recorded")
            assert final.text == accents and app.sent == [preview, final] and not final.deleted
            assert len(app.updates) == updates_before  # no update tried: Slack would refuse it
            assert app.calls.count("chat.delete") == 1


async def test_a_preview_deleted_meanwhile_makes_the_final_reply_a_new_message_sent_once(
    nats_url: str, nc: Client, tmp_path: Path
) -> None:
    released = asyncio.Event()
    async with (
        FakeSlack(signing_secret=SECRET) as slack,
        FakeModelServer(reply=REPLY, chunks=CHUNKS) as model,
    ):
        app = slack.add_app(TOKEN)
        model.script(Hang(seconds=120, after_chunks=2, opened=released))
        async with run_gateway(
            nats_url, _config(slack, model, streaming={"mode": "partial"}), tmp_path
        ) as gw:
            adapter, url = await _ready(gw)
            adapter.EDIT_INTERVAL = 0.05
            dm = slack.message_event(app, channel="D100", user="U42", text="then delete it")
            await _send(slack, url, dm)
            preview = await _first_post(slack, app, "D100")
            assert REPLY.startswith(preview.text)
            slack.delete(app, preview)  # someone removes it while the answer is held
            calls_before = app.calls.count("chat.update")
            updates_before = len(app.updates)
            released.set()
            final = (await slack.wait_sent(app, lambda p: p.ts != preview.ts))[0]
            await wait_until(lambda: _delivered(nc, _turn(dm)), message="the reply recorded")
            await wait_until(lambda: _all_delivered(nc), message="the delivery done")
            assert final.text == REPLY and final.channel == "D100" and final.thread_ts is None
            assert app.sent == [preview, final]  # the final reply once, as a new message
            # the final reply tried the preview (message_not_found), then posted anew
            assert app.calls.count("chat.update") > calls_before
            assert len(app.updates) == updates_before
            assert "chat.delete" not in app.calls  # nothing left to clear


@pytest.mark.parametrize(
    "settings", [{}, {"streaming": {"mode": "off"}}, {"streaming": False}], ids=["default", "off", "false"]
)
async def test_without_partial_nobody_follows_the_turn_no_preview_no_update(
    settings: dict[str, Any], nats_url: str, nc: Client, tmp_path: Path
) -> None:
    stored: list[InboundMessage] = []

    async def on(msg: Any) -> None:
        stored.append(decode(msg.data, InboundMessage, msg.headers))

    await nc.subscribe("cm.in.slack.>", cb=on)
    async with (
        FakeSlack(signing_secret=SECRET) as slack,
        FakeModelServer(reply=REPLY, chunks=CHUNKS) as model,
    ):
        app = slack.add_app(TOKEN)
        async with run_gateway(nats_url, _config(slack, model, **settings), tmp_path) as gw:
            _, url = await _ready(gw)
            dm = slack.message_event(app, channel="D100", user="U42", text="no preview")
            await _send(slack, url, dm)
            final = await _first_post(slack, app, "D100")
            await wait_until(lambda: _delivered(nc, _turn(dm)), message="the reply recorded")
            await wait_until(lambda: stored, message="the stored message seen")
            # the turn's events never come back to ingress: nothing could show a preview
            assert stored[0].reply_subject is None and stored[0].reply_events == "final"
            assert final.text == REPLY and app.sent == [final]
            assert app.updates == [] and "chat.update" not in app.calls
            assert gw.service("ingress").ctx.counters["slack_preview_updates"] == 0


async def test_the_preview_is_taken_over_once_though_the_final_update_is_retried_and_the_reply_stored_again(
    nats_url: str, nc: Client, tmp_path: Path
) -> None:
    released = asyncio.Event()
    async with (
        FakeSlack(signing_secret=SECRET) as slack,
        FakeModelServer(reply=REPLY, chunks=CHUNKS) as model,
    ):
        app = slack.add_app(TOKEN)
        model.script(Hang(seconds=120, after_chunks=2, opened=released))
        async with run_gateway(
            nats_url, _config(slack, model, streaming={"mode": "partial"}), tmp_path
        ) as gw:
            adapter, url = await _ready(gw)
            # no preview update after the first message: every chat.update below is the final reply's
            adapter.EDIT_INTERVAL = 3600.0
            dm = slack.message_event(app, channel="D100", user="U42", text="exactly once")
            await _send(slack, url, dm)
            preview = await _first_post(slack, app, "D100")
            slack.fail_next(app, "chat.update", 429, "ratelimited", retry_after=0)
            released.set()
            await wait_until(lambda: preview.text == REPLY, message="the final reply in the preview")
            await wait_until(lambda: _delivered(nc, _turn(dm)), message="the reply recorded")
            assert app.calls.count("chat.update") == 2  # 429, then done
            assert len(app.updates) == 1 and app.sent == [preview]
            # the runner's reply stored again (as after a crash before its ack): nothing happens
            js = nc.jetstream()
            stored = await js.get_last_msg("CM_OUTBOUND", "cm.out.slack.default")
            reply = decode(stored.data, OutboundMessage, stored.headers)
            assert reply.turn_id == _turn(dm) and reply.text == REPLY
            data, headers = encode_json(reply)
            headers["Nats-Msg-Id"] = "the-same-reply-again"
            copy = await js.publish("cm.out.slack.default", data, headers=headers)
            await wait_until(
                lambda: acked_through(nc, "CM_OUTBOUND", "ingress-out-slack", copy.seq),
                message="the copy handled",
            )
            assert gw.service("ingress").ctx.counters["replies_already_sent"] == 1
            assert len(app.updates) == 1 and app.sent == [preview]
            assert app.calls.count("chat.update") == 2
