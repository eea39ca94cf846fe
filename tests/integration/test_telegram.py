"""Telegram end to end against the fake Bot API (tests/fakes/telegram.py): a message is routed
by the bindings OpenClaw would apply to the right agent and answered in the right chat and
forum topic; a duplicate update is answered once; a streamed answer is a preview edited in
place; a webhook with a wrong secret is refused; a reply that can never be sent is dead-lettered
with the reason, a rate-limited one is retried after `retry_after`; the access policy answers an
unknown sender with a pairing code and drops denied and unmentioned messages; a photo reaches
the model as an image; another poller on the token is a 409 backed off."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import httpx
from nats.aio.client import Client

from clawmesh.sessions import SessionStore, TxUser
from clawmesh.wire import DeadLetter, RouteDecision, Subjects, decode
from clawmesh_ingress.turns import turn_id_for
from tests.fakes.models import FakeModelServer, Hang
from tests.fakes.telegram import Failure, FakeTelegram
from tests.fixtures.gateway import Gateway, run_gateway, wait_until

TOKEN = "7001:test-token"


def _config(tg: FakeTelegram, **telegram: Any) -> dict[str, Any]:
    return {
        "agents": {
            "defaults": {"model": "echo/x"},
            "list": [{"id": "main", "default": True}, {"id": "ops"}, {"id": "topics"}],
        },
        "bindings": [
            # the whole group goes to ops, so its topics do too (parent peer) ...
            {"agentId": "ops", "match": {"channel": "telegram", "peer": {"kind": "group", "id": "-100200"}}},
            # ... except topic 7, bound on its own
            {
                "agentId": "topics",
                "match": {"channel": "telegram", "peer": {"kind": "group", "id": "-100200:topic:7"}},
            },
        ],
        "channels": {
            "telegram": {
                "botToken": TOKEN,
                "apiRoot": tg.api_root,
                # anyone, anywhere, no mention needed: the policy matrix is tested on its own
                "dmPolicy": "open",
                "allowFrom": ["*"],
                "groupPolicy": "open",
                "groups": {"*": {"requireMention": False}},
                **telegram,
            }
        },
    }


async def _decisions(nc: Client) -> dict[str, RouteDecision]:
    seen: dict[str, RouteDecision] = {}

    async def on(msg: Any) -> None:
        d = decode(msg.data, RouteDecision, msg.headers)
        seen[d.turn_id] = d

    await nc.subscribe("cm.route.decided", cb=on)
    return seen


def _turn(update: dict[str, Any]) -> str:
    msg = update["message"]
    return turn_id_for("telegram", "default", f"{msg['chat']['id']}:{msg['message_id']}")


async def _ready(gw: Gateway) -> None:
    adapter = gw.service("ingress").channels.adapters["telegram"]["default"]
    await wait_until(lambda: adapter.bot is not None and (adapter.poller is None or adapter.poller.polling))


async def test_messages_route_by_binding_and_replies_land_in_chat_and_topic(
    nats_url: str, nc: Client, tmp_path: Path
) -> None:
    async with FakeTelegram() as tg:
        bot = tg.add_bot(TOKEN)
        decisions = await _decisions(nc)
        async with run_gateway(nats_url, _config(tg), tmp_path) as gw:
            await _ready(gw)
            dm = tg.private_message(bot, user=42, text="hello")
            forum = tg.chat(-100200, "supergroup", title="team", forum=True)
            in_topic = tg.message(bot, forum, user=43, text="in topic seven", thread=7)
            in_other = tg.message(bot, forum, user=43, text="in topic nine", thread=9)
            in_general = tg.message(bot, forum, user=43, text="in general")
            replies = {
                "dm": (await tg.wait_sent(bot, lambda s: s.chat_id == 42))[0],
                "t7": (await tg.wait_sent(bot, lambda s: s.thread_id == 7))[0],
                "t9": (await tg.wait_sent(bot, lambda s: s.thread_id == 9))[0],
                "general": (await tg.wait_sent(bot, lambda s: s.text == "echo: in general"))[0],
            }
            assert replies["dm"].text == "echo: hello"
            assert replies["t7"].text == "echo: in topic seven" and replies["t7"].chat_id == -100200
            assert replies["t9"].text == "echo: in topic nine"
            # General (topic 1): sends omit message_thread_id (Telegram refuses 1)
            assert replies["general"].thread_id is None and replies["general"].chat_id == -100200
            await wait_until(lambda: all(_turn(u) in decisions for u in (dm, in_topic, in_other, in_general)))
            agent = {
                k: decisions[_turn(u)].agent_id
                for k, u in [("dm", dm), ("t7", in_topic), ("t9", in_other), ("g", in_general)]
            }
            assert agent == {"dm": "main", "t7": "topics", "t9": "ops", "g": "ops"}
            assert decisions[_turn(in_topic)].session_key == "agent:topics:telegram:group:-100200:topic:7"
            assert decisions[_turn(dm)].session_key == "agent:main:main"
            assert len(bot.sent) == 4  # one reply each, nothing else


async def test_a_duplicate_update_is_answered_once(nats_url: str, tmp_path: Path) -> None:
    async with FakeTelegram() as tg:
        bot = tg.add_bot(TOKEN)
        async with run_gateway(nats_url, _config(tg), tmp_path) as gw:
            await _ready(gw)
            first = tg.private_message(bot, user=42, text="once")
            await tg.wait_sent(bot, lambda s: s.text == "echo: once")
            # Telegram delivers the same message again (a new update id, as after a lost confirmation)
            tg.push_update(bot, {"message": first["message"]})
            tg.private_message(bot, user=42, text="after")
            await tg.wait_sent(bot, lambda s: s.text == "echo: after")
            assert [s.text for s in bot.sent] == ["echo: once", "echo: after"]


async def test_streamed_answer_is_a_preview_edited_in_place(nats_url: str, tmp_path: Path) -> None:
    opened = asyncio.Event()
    async with FakeTelegram() as tg, FakeModelServer(reply="one two three four five six", chunks=6) as model:
        bot = tg.add_bot(TOKEN)
        model.script(Hang(seconds=60, after_chunks=2, opened=opened))
        config = _config(tg, streaming={"mode": "partial"})
        config["models"] = {
            "providers": {"fake": {"baseUrl": model.base_url + "/v1", "api": "openai", "apiKey": "k"}}
        }
        config["agents"]["defaults"]["model"] = "fake/m"
        async with run_gateway(nats_url, config, tmp_path) as gw:
            gw.service("ingress").channels.adapters["telegram"]["default"].EDIT_INTERVAL = 0.05
            await _ready(gw)
            tg.private_message(bot, user=42, text="stream please")
            preview = (await tg.wait_sent(bot, lambda s: s.chat_id == 42))[0]
            assert preview.text != "one two three four five six"  # a part of the answer so far
            opened.set()
            await wait_until(lambda: preview.text == "one two three four five six", message="the final edit")
            assert len(bot.sent) == 1  # the final answer replaced the preview, no second message


async def test_webhook_refuses_a_wrong_secret_and_accepts_the_right_one(
    nats_url: str, tmp_path: Path
) -> None:
    async with FakeTelegram() as tg:
        bot = tg.add_bot(TOKEN)
        config = _config(
            tg,
            webhookUrl="http://placeholder/tg",
            webhookSecret="s3cret_token-1",
            webhookPort=0,
            webhookPath="/tg",
        )
        async with run_gateway(nats_url, config, tmp_path) as gw:
            host = gw.service("ingress").channels
            await _ready(gw)
            url = f"http://127.0.0.1:{host.webhook_port('127.0.0.1', 0)}/tg"
            assert bot.webhook_url == "http://placeholder/tg" and bot.webhook_secret == "s3cret_token-1"
            bot.webhook_url = url  # where Telegram would reach this listener
            tg.chat(42, "private")
            update = {
                "update_id": 5,
                "message": {
                    "message_id": 9,
                    "date": 0,
                    "chat": {"id": 42, "type": "private"},
                    "from": {"id": 42, "first_name": "u"},
                    "text": "via webhook",
                },
            }
            async with httpx.AsyncClient(trust_env=False) as client:
                for secret in (None, "wrong", "s3cret_token-"):
                    headers = {"X-Telegram-Bot-Api-Secret-Token": secret} if secret else {}
                    resp = await client.post(url, json=update, headers=headers)
                    assert resp.status_code == 401, secret
                resp = await client.post(
                    url, content=b"{not json", headers={"X-Telegram-Bot-Api-Secret-Token": "s3cret_token-1"}
                )
                assert resp.status_code == 400
            assert bot.sent == []
            tg.push_update(bot, {"message": update["message"]})  # the fake pushes with the right secret
            sent = await tg.wait_sent(bot, lambda s: s.chat_id == 42)
            assert sent[0].text == "echo: via webhook"


async def test_rate_limited_reply_is_retried_and_an_impossible_one_dead_lettered(
    nats_url: str, nc: Client, tmp_path: Path
) -> None:
    async with FakeTelegram() as tg:
        bot = tg.add_bot(TOKEN)
        async with run_gateway(nats_url, _config(tg), tmp_path) as gw:
            await _ready(gw)
            tg.fail_next(bot, "sendMessage", Failure(429, "Too Many Requests: retry after 1", retry_after=1))
            tg.fail_next(bot, "sendMessage", Failure(502, "Bad Gateway"))
            tg.private_message(bot, user=42, text="limited")
            await tg.wait_sent(bot, lambda s: s.text == "echo: limited")
            assert [m for m, _ in bot.calls].count("sendmessage") == 3
            tg.fail_next(bot, "sendMessage", Failure(403, "Forbidden: bot was blocked by the user"))
            tg.private_message(bot, user=42, text="blocked")
            js = nc.jetstream()

            async def letter() -> DeadLetter | None:
                try:
                    msg = await js.get_last_msg("CM_DLQ", "cm.dlq.ingress")
                except Exception:
                    return None
                return decode(msg.data, DeadLetter, msg.headers)

            dead = await wait_until(letter, message="the dead letter")
            assert dead.code == "UNDELIVERABLE" and "bot was blocked by the user" in dead.reason
            assert json.loads(dead.payload)["text"] == "echo: blocked"
            assert [s.text for s in bot.sent] == ["echo: limited"]


async def test_access_policy_denies_dms_sends_a_pairing_code_and_gates_group_mentions(
    nats_url: str, nc: Client, tmp_path: Path
) -> None:
    async with FakeTelegram() as tg:
        bot = tg.add_bot(TOKEN)
        # historyLimit 0: the unmentioned message is not given as context (test_group_history)
        config = _config(
            tg,
            dmPolicy="pairing",
            allowFrom=["42"],
            groups={"-100300": {"requireMention": True}},
            historyLimit=0,
        )
        config["channels"]["telegram"]["groupPolicy"] = "allowlist"
        denied: list[dict[str, Any]] = []

        async def on_denied(msg: Any) -> None:
            denied.append(json.loads(msg.data))

        await nc.subscribe("cm.access.denied.>", cb=on_denied)
        async with run_gateway(nats_url, config, tmp_path) as gw:
            await _ready(gw)
            tg.private_message(bot, user=77, text="let me in")  # unknown: gets a pairing code
            code_msg = (await tg.wait_sent(bot, lambda s: s.chat_id == 77))[0]
            assert "Pairing code" in code_msg.text and "Your Telegram user id: 77" in code_msg.text
            tg.private_message(bot, user=77, text="again")  # pending already: no second reply
            group = tg.chat(-100300, "supergroup", title="allowed")
            other = tg.chat(-100400, "supergroup", title="not allowed")
            tg.message(bot, group, user=42, text="no mention here")
            tg.message(bot, other, user=42, text="@clawbot elsewhere")
            tg.message(bot, group, user=42, text="hey @clawbot answer")
            tg.private_message(bot, user=42, text="allowed dm")
            await tg.wait_sent(bot, lambda s: s.text == "echo: allowed dm")
            await tg.wait_sent(bot, lambda s: s.text == "echo: hey @clawbot answer")
            await wait_until(lambda: len(denied) >= 3, message="three denials")
            assert sorted(d["senderId"] for d in denied) == ["42", "42", "77"]
            assert [s.chat_id for s in bot.sent].count(77) == 1
            assert {s.text for s in bot.sent} == {
                code_msg.text,
                "echo: allowed dm",
                "echo: hey @clawbot answer",
            }
            counters = gw.service("ingress").channels.inbound.access.counters
            assert counters["pairing.challenged"] == 1 and counters["admitted"] == 2


_ALL = ("ingress", "router", "runner", "node-agent")
_NOTE = re.compile(
    r"\[media attached: (media/inbound/openclaw-staged-[0-9a-f]{64}/.+?) \(([^)]+)\) \"([^\"]*)\"\]"
)


async def test_a_photo_reaches_the_model_as_an_image_within_media_max_mb(
    nats_url: str, tmp_path: Path
) -> None:
    async with FakeTelegram() as tg:
        bot = tg.add_bot(TOKEN)
        # 1 MiB at most: the 2 MiB size of the photo is passed over for the 200 KiB one
        async with run_gateway(nats_url, _config(tg, mediaMaxMb=1), tmp_path, services=_ALL) as gw:
            await _ready(gw)
            chat = tg.chat(42, "private")
            sizes = [b"s" * 1000, b"m" * 200_000, b"L" * 2_000_000]
            tg.photo_message(bot, chat, user=42, sizes=sizes, caption="what is this?")
            tg.photo_message(bot, chat, user=42, sizes=[b"L" * 2_000_000])
            replies = await tg.wait_sent(bot, lambda s: s.chat_id == 42, count=2)
            # OpenClaw's note first (the photo staged into the workspace), then the caption,
            # and the picture itself as an image part
            note, rest = replies[0].text.removeprefix("echo: ").split("\n", 1)
            found = _NOTE.fullmatch(note)
            assert found is not None, note
            assert rest == "what is this? [1 image(s): image/jpeg]"
            workspace = gw.holder.current.agent_view("main").workspace
            assert (workspace / found[1]).read_bytes() == sizes[1]
            assert "larger than" in replies[1].text and "image(s)" not in replies[1].text
            downloads = [p["file_id"] for m, p in bot.calls if m == "getfile"]
            assert len(downloads) == 1 and tg.files[downloads[0]][1] == sizes[1]


async def test_documents_and_voice_are_staged_into_the_workspace_with_openclaws_note(
    nats_url: str, nc: Client, tmp_path: Path
) -> None:
    """Files other than photos are kept beside the message (the object store), staged by the
    node into the agent's workspace where OpenClaw stages them, and named in the text the
    model and the transcript see; one above `mediaMaxMb` is named as too large, never fetched;
    a denied sender's file is never downloaded."""
    pdf = b"%PDF-1.7\n" + bytes(range(256)) * 2000  # binary, 512 KB
    voice = b"OggS" + b"\x00\xff" * 5000
    async with FakeTelegram() as tg:
        bot = tg.add_bot(TOKEN)
        config = _config(tg, mediaMaxMb=1)
        config["channels"]["telegram"].update({"dmPolicy": "allowlist", "allowFrom": ["42"]})
        async with run_gateway(nats_url, config, tmp_path, services=_ALL) as gw:
            await _ready(gw)
            chat = tg.chat(42, "private")
            tg.file_message(
                bot,
                chat,
                user=42,
                field="document",
                data=pdf,
                file_name="../Q3 report.pdf",
                mime_type="application/pdf",
                caption="summarise this",
            )
            tg.file_message(bot, chat, user=42, field="voice", data=voice, mime_type="audio/ogg")
            tg.file_message(bot, chat, user=42, field="document", data=b"x" * 2_000_000, file_name="big.bin")
            stranger = tg.chat(77, "private")
            tg.file_message(bot, stranger, user=77, field="document", data=b"secret", file_name="s.txt")
            replies = await tg.wait_sent(bot, lambda s: s.chat_id == 42, count=3)
            workspace = gw.holder.current.agent_view("main").workspace
            doc_note, doc_rest = replies[0].text.removeprefix("echo: ").split("\n", 1)
            doc = _NOTE.fullmatch(doc_note)
            assert doc is not None, doc_note
            assert doc[1].endswith("/input-Q3 report.pdf") and doc[2] == "application/pdf"
            assert doc[3] == "Q3 report.pdf" and doc_rest == "summarise this"
            assert (workspace / doc[1]).read_bytes() == pdf
            gitignore = (workspace / doc[1]).parent / ".gitignore"
            assert gitignore.read_text().endswith("\n*\n")
            voice_note = _NOTE.fullmatch(replies[1].text.removeprefix("echo: "))
            assert voice_note is not None, replies[1].text
            assert voice_note[2] == "audio/ogg" and voice_note[1].endswith(".ogg")
            assert (workspace / voice_note[1]).read_bytes() == voice
            assert (
                replies[2].text == "echo: [a document was sent; it is larger than the 1048576 bytes taken in]"
            )
            # the too-large one and the stranger's were never asked for
            asked = [p["file_id"] for m, p in bot.calls if m == "getfile"]
            assert sorted(tg.files[f][0].split("/")[0] for f in asked) == ["documents", "voices"]
            # the transcript keeps the note: a later turn still knows where the file is
            js = nc.jetstream()
            store = SessionStore(js, Subjects(), await js.key_value("cm_sessions"))
            said = [e.text for e in await store.history("main", "agent:main:main") if isinstance(e, TxUser)]
            assert said[0] == f"{doc_note}\nsummarise this" and said[1] == voice_note[0]


async def test_another_poller_on_the_token_is_a_conflict_backed_off_not_fought(
    nats_url: str, tmp_path: Path
) -> None:
    """A second getUpdates poller (another gateway, a script) aborts ours with 409: ours backs
    off instead of taking the token back at once, and polls again afterwards."""
    async with FakeTelegram() as tg:
        bot = tg.add_bot(TOKEN)
        async with run_gateway(nats_url, _config(tg), tmp_path) as gw:
            adapter = gw.service("ingress").channels.adapters["telegram"]["default"]
            await _ready(gw)
            await wait_until(lambda: bot.poll_waiter is not None, message="our long poll waiting")
            async with httpx.AsyncClient(trust_env=False, timeout=10) as client:
                resp = await client.post(f"{tg.api_root}/bot{TOKEN}/getUpdates", json={"timeout": 0})
            assert resp.status_code == 200
            await wait_until(lambda: adapter.poller.conflicts == 1, message="the conflict seen")
            tg.private_message(bot, user=42, text="after the conflict")
            await tg.wait_sent(bot, lambda s: s.text == "echo: after the conflict", timeout=60)
            assert adapter.poller.conflicts == 1


async def test_a_long_reply_is_split_and_a_failed_part_is_retried_without_resending_the_others(
    nats_url: str, tmp_path: Path
) -> None:
    async with FakeTelegram() as tg:
        bot = tg.add_bot(TOKEN)
        async with run_gateway(nats_url, _config(tg, textChunkLimit=40), tmp_path) as gw:
            await _ready(gw)
            tg.fail_next(bot, "sendMessage", Failure(200 + 300, "Internal Server Error: try again"))
            text = " ".join(f"word{i:02d}" for i in range(20))  # "echo: " + 139 characters
            tg.private_message(bot, user=42, text=text)
            await wait_until(lambda: len(bot.sent) >= 4, message="four parts")
            parts = [s.text for s in bot.sent]
            assert all(len(p) <= 40 for p in parts)
            assert " ".join(parts) == f"echo: {text}"
            assert len(parts) == 4
            assert [m for m, _ in bot.calls].count("sendmessage") == 5  # one failed try, each part once


async def test_reply_settings_follow_a_config_reload(nats_url: str, tmp_path: Path) -> None:
    async with FakeTelegram() as tg:
        bot = tg.add_bot(TOKEN)
        config = _config(tg)
        async with run_gateway(nats_url, config, tmp_path) as gw:
            await _ready(gw)
            tg.private_message(bot, user=42, text="one two three four five six")
            await tg.wait_sent(bot, lambda s: s.text == "echo: one two three four five six")
            config["channels"]["telegram"]["textChunkLimit"] = 20
            written = json.loads(gw.config_path.read_text())
            written["channels"] = config["channels"]
            gw.config_path.write_text(json.dumps(written))
            assert (await gw.holder.reload_async()).ok
            tg.private_message(bot, user=42, text="one two three four five six")
            parts = await tg.wait_sent(bot, lambda s: len(s.text) <= 20, count=2)
            assert " ".join(p.text for p in parts) == "echo: one two three four five six"


async def test_two_accounts_route_by_account_and_answer_through_their_own_bot(
    nats_url: str, nc: Client, tmp_path: Path
) -> None:
    async with FakeTelegram() as tg:
        main_bot = tg.add_bot(TOKEN)
        work_bot = tg.add_bot("7003:work-token", username="workbot")
        config = _config(tg)
        telegram = config["channels"]["telegram"]
        del telegram["botToken"]
        telegram["accounts"] = {"default": {"botToken": TOKEN}, "Work": {"botToken": "7003:work-token"}}
        config["bindings"].append({"agentId": "ops", "match": {"channel": "telegram", "accountId": "work"}})
        decisions = await _decisions(nc)
        async with run_gateway(nats_url, config, tmp_path) as gw:
            adapters = gw.service("ingress").channels.adapters["telegram"]
            assert set(adapters) == {"default", "work"}
            await wait_until(
                lambda: all(a.poller is not None and a.poller.polling for a in adapters.values())
            )
            to_main = tg.private_message(main_bot, user=42, text="to main")
            to_work = tg.private_message(work_bot, user=42, text="to work")
            await tg.wait_sent(main_bot, lambda s: s.text == "echo: to main")
            await tg.wait_sent(work_bot, lambda s: s.text == "echo: to work")
            assert [s.text for s in main_bot.sent] == ["echo: to main"]
            assert [s.text for s in work_bot.sent] == ["echo: to work"]
            work_turn = turn_id_for("telegram", "work", f"42:{to_work['message']['message_id']}")
            await wait_until(lambda: _turn(to_main) in decisions and work_turn in decisions)
            assert decisions[_turn(to_main)].agent_id == "main"
            assert decisions[work_turn].agent_id == "ops" and decisions[work_turn].account_id == "work"


async def test_channel_posts_are_answered_only_for_channels_configured_by_id(
    nats_url: str, tmp_path: Path
) -> None:
    async with FakeTelegram() as tg:
        bot = tg.add_bot(TOKEN)
        config = _config(tg)
        config["channels"]["telegram"]["groups"]["-100900"] = {"requireMention": False}
        async with run_gateway(nats_url, config, tmp_path) as gw:
            await _ready(gw)
            for chat_id, text in ((-100800, "not configured"), (-100900, "configured")):
                chat = tg.chat(chat_id, "channel", title="news")
                post = {"message_id": 1, "date": 0, "chat": chat, "sender_chat": chat, "text": text}
                tg.push_update(bot, {"channel_post": post})
            sent = await tg.wait_sent(bot, lambda s: s.chat_id == -100900)
            assert sent[0].text == "echo: configured"
            counters = gw.service("ingress").ctx.counters
            await wait_until(lambda: counters["telegram_channel_posts_unconfigured"] == 1)
            assert [s.chat_id for s in bot.sent] == [-100900]
