"""WhatsApp Cloud API webhook signatures, the payload's messages as routing input (OpenClaw's
E.164 ids), and the credentials' sources."""

from __future__ import annotations

import msgspec
import pytest

from clawmesh.channels.whatsapp import Webhook, normalize_webhook, resolve_credentials, sign, verify_signature
from clawmesh.config import ChannelAccount, ConfigError
from clawmesh.wire import Peer


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
    sticker = {"from": "16505551234", "id": "wamid.D", "type": "sticker", "sticker": {"id": "s"}}
    bsuid = {"user_id": "US.1349", "id": "wamid.E", "type": "text", "text": {"body": "no number"}}
    mention = {**text, "id": "wamid.F", "group_id": "120363@g.us", "text": {"body": "@15550783881 help"}}
    found, ignored = normalize_webhook(_hook(text, group, caption, sticker, bsuid, mention, statuses=True))
    assert ignored == 1  # the sticker; statuses are no messages
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
