"""WhatsApp Cloud API end to end against the fake Graph API (tests/fakes/whatsapp.py), webhooks
POSTed to ingress's own HTTP server: the verify-token handshake; a message is routed by a
binding written for OpenClaw's WhatsApp ids (`+` E.164) to the right agent and answered to the
right number or group; batched entries are all taken and statuses ignored; a wrong
`X-Hub-Signature-256` is refused with 401; a redelivered notification is answered once; a
sender the policy denies never reaches the model; a throughput-limited reply is retried; two
business numbers answer each with their own token."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nats.aio.client import Client

from clawmesh.wire import RouteDecision, decode
from clawmesh_ingress.turns import turn_id_for
from tests.fakes.whatsapp import FakeWhatsApp
from tests.fixtures.gateway import Gateway, run_gateway, wait_until

PNID = "106540352242922"
TOKEN = "EAAG-test-access-token"
SECRET = "app-secret-1"
VERIFY = "verify-me"


def _config(wa: FakeWhatsApp, **settings: Any) -> dict[str, Any]:
    return {
        "agents": {
            "defaults": {"model": "echo/x"},
            "list": [{"id": "main", "default": True}, {"id": "sales"}, {"id": "family"}],
        },
        "bindings": [
            {
                "agentId": "sales",
                "match": {"channel": "whatsapp", "peer": {"kind": "direct", "id": "+16505551234"}},
            },
            {
                "agentId": "family",
                "match": {"channel": "whatsapp", "peer": {"kind": "group", "id": "G-family"}},
            },
        ],
        "channels": {
            "whatsapp": {
                "phoneNumberId": PNID,
                "accessToken": TOKEN,
                "appSecret": SECRET,
                "verifyToken": VERIFY,
                "apiBaseUrl": wa.api_base,
                "dmPolicy": "open",
                "allowFrom": ["*"],
                "groupPolicy": "open",
                "groups": {"*": {"requireMention": False}},
                **settings,
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


def _turn(change: dict[str, Any], account: str = "default") -> str:
    return turn_id_for("whatsapp", account, change["value"]["messages"][0]["id"])


def _url(gw: Gateway, account: str = "default") -> str:
    adapter = gw.service("ingress").channels.adapters["whatsapp"][account]
    return f"{gw.service('ingress').url}{adapter.path}"


async def test_handshake_routing_batches_and_replies(nats_url: str, nc: Client, tmp_path: Path) -> None:
    async with FakeWhatsApp(app_secret=SECRET, verify_token=VERIFY) as wa:
        number = wa.add_number(PNID, token=TOKEN)
        decisions = await _decisions(nc)
        async with run_gateway(nats_url, _config(wa), tmp_path) as gw:
            url = _url(gw)
            ok = await wa.verify(url)
            assert (ok.status_code, ok.text) == (200, "1158201444")
            assert (await wa.verify(url, token="wrong")).status_code == 403
            assert (await wa.verify(url, mode="unsubscribe")).status_code == 403
            known = wa.message(number, sender="16505551234", text="price?")
            other = wa.message(number, sender="4915112345678", text="hallo")
            in_group = wa.message(number, sender="4915112345678", text="dinner?", group_id="G-family")
            bsuid = wa.message(number, sender=None, user_id="US.13491208655302741918", text="no number")
            receipt = wa.status(number, "wamid.OUT0", "16505551234")
            payload = wa.payload(known, receipt, other, in_group, bsuid, entries=2)
            assert (await wa.deliver(url, payload)).status_code == 200
            to_known = (await wa.wait_sent(number, lambda m: m.to == "16505551234"))[0]
            to_group = (await wa.wait_sent(number, lambda m: m.to == "G-family"))[0]
            to_other = (await wa.wait_sent(number, lambda m: m.to == "4915112345678"))[0]
            assert to_known.text == "echo: price?" and to_known.recipient_type == "individual"
            assert to_group.text == "echo: dinner?" and to_group.recipient_type == "group"
            assert to_other.text == "echo: hallo"
            await wait_until(lambda: all(_turn(c) in decisions for c in (known, other, in_group, bsuid)))
            agents = [decisions[_turn(c)].agent_id for c in (known, other, in_group, bsuid)]
            assert agents == ["sales", "main", "family", "main"]
            # the BSUID-only sender cannot be written to by number: the fake says 131047 (no window)
            assert len(number.sent) == 3


async def test_a_wrong_signature_is_refused_and_a_redelivery_answered_once(
    nats_url: str, tmp_path: Path
) -> None:
    async with FakeWhatsApp(app_secret=SECRET, verify_token=VERIFY) as wa:
        number = wa.add_number(PNID, token=TOKEN)
        async with run_gateway(nats_url, _config(wa), tmp_path) as gw:
            url = _url(gw)
            forged = wa.payload(wa.message(number, sender="16505550000", text="forged"))
            assert (await wa.deliver(url, forged, secret="not-the-secret")).status_code == 401
            assert (await wa.deliver(url, forged, signature="")).status_code == 401
            refused = await wa.deliver(url, forged, signature="sha256=" + "0" * 64)
            assert refused.status_code == 401 and refused.json()["error"]["code"] == 190
            once = wa.payload(wa.message(number, sender="16505550001", text="once"))
            for _ in range(3):  # Meta redelivers what it thinks was not received
                assert (await wa.deliver(url, once)).status_code == 200
            await wa.deliver(url, wa.payload(wa.message(number, sender="16505550001", text="after")))
            await wa.wait_sent(number, lambda m: m.text == "echo: after")
            assert [m.text for m in number.sent] == ["echo: once", "echo: after"]


async def test_a_denied_sender_never_reaches_the_model(nats_url: str, nc: Client, tmp_path: Path) -> None:
    async with FakeWhatsApp(app_secret=SECRET, verify_token=VERIFY) as wa:
        number = wa.add_number(PNID, token=TOKEN)
        decisions = await _decisions(nc)
        # OpenClaw's allowFrom entries are E.164 numbers; any formatting normalises to +digits
        config = _config(wa, dmPolicy="allowlist", allowFrom=["+1 (650) 555-1234"], groupPolicy="disabled")
        async with run_gateway(nats_url, config, tmp_path) as gw:
            url = _url(gw)
            stranger = wa.message(number, sender="4915112345678", text="let me in")
            group = wa.message(number, sender="16505551234", text="group", group_id="G-family")
            friend = wa.message(number, sender="16505551234", text="hi")
            assert (await wa.deliver(url, wa.payload(stranger, group, friend))).status_code == 200
            await wa.wait_sent(number, lambda m: m.text == "echo: hi")
            await wait_until(lambda: _turn(friend) in decisions)
            assert _turn(stranger) not in decisions and _turn(group) not in decisions
            assert [m.text for m in number.sent] == ["echo: hi"]
            assert gw.service("ingress").ctx.counters["channel_denied"] == 2


async def test_a_throughput_limited_reply_is_retried_and_accounts_keep_their_numbers(
    nats_url: str, tmp_path: Path
) -> None:
    async with FakeWhatsApp(app_secret=SECRET, verify_token=VERIFY) as wa:
        one = wa.add_number("111", token="token-one")
        two = wa.add_number("222", token="token-two")
        config = _config(wa)
        section = config["channels"]["whatsapp"]
        for key in ("phoneNumberId", "accessToken"):
            del section[key]
        section["accounts"] = {
            "one": {
                "phoneNumberId": "111",
                "accessToken": "token-one",
                "appSecret": SECRET,
                "webhookPath": "/wa/one",
            },
            "two": {
                "phoneNumberId": "222",
                "accessToken": "token-two",
                "appSecret": SECRET,
                "webhookPath": "/wa/two",
            },
        }
        async with run_gateway(nats_url, config, tmp_path) as gw:
            wa.fail_next(one, 400, 130429, "Rate limit hit")
            await wa.deliver(
                _url(gw, "one"), wa.payload(wa.message(one, sender="16505550002", text="to one"))
            )
            # a notification for another number on this account's path is not taken by it
            stray = wa.payload(wa.message(one, sender="16505550003", text="stray"))
            assert (await wa.deliver(_url(gw, "two"), stray)).status_code == 200
            await wa.deliver(
                _url(gw, "two"), wa.payload(wa.message(two, sender="16505550002", text="to two"))
            )
            await wa.wait_sent(one, lambda m: m.text == "echo: to one")
            await wa.wait_sent(two, lambda m: m.text == "echo: to two")
            assert one.calls == 2  # the 130429 and the retry
            assert [m.text for m in one.sent] == ["echo: to one"]
            assert [m.text for m in two.sent] == ["echo: to two"]
