"""Ids of any length never break the NATS connection: subject tokens are bounded, and ids
longer than MAX_ID_LENGTH are refused where they enter, naming the field and the limit."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from nats.js.errors import NotFoundError

from clawmesh.ids import MAX_ID_LENGTH
from clawmesh.wire import DeadLetter, decode
from tests.fixtures.gateway import run_gateway

CONFIG: dict[str, Any] = {"agents": {"defaults": {"model": "echo/test"}}}


@pytest.mark.parametrize(
    "body",
    [
        {"channel": "." * 1400},
        {"peer": {"kind": "direct", "id": "x" * 10_000}},
        {"agentId": "a" * 5000},
    ],
    ids=["channel", "peer", "agent"],
)
async def test_huge_ids_are_refused_and_the_gateway_keeps_working(
    nats_url: str, nc: Any, tmp_path: Path, body: dict[str, Any]
) -> None:
    async with run_gateway(nats_url, CONFIG, tmp_path) as gw, gw.client() as http:
        r = await http.post("/v1/messages?wait=3", json={"text": "hi", **body})
        # Refused by ingress before anything is stored, naming the field and the limit.
        assert r.status_code == 400, r.text
        assert f"length <= {MAX_ID_LENGTH}" in r.text, r.text
        assert await _dead_letter(nc) is None
        ok = await http.post("/v1/messages?wait=30", json={"text": "still there?"})
        assert ok.status_code == 200, ok.text
        assert ok.json()["text"] == "echo: still there?"


async def test_a_huge_openai_user_is_refused(nats_url: str, tmp_path: Path) -> None:
    async with run_gateway(nats_url, CONFIG, tmp_path) as gw, gw.client() as http:
        body = {"model": "clawmesh", "user": "u" * 5000, "messages": [{"role": "user", "content": "hi"}]}
        r = await http.post("/v1/chat/completions", json=body)
        assert r.status_code == 400, r.text
        assert r.json()["error"]["type"] == "invalid_request_error"
        assert f"length <= {MAX_ID_LENGTH}" in r.json()["error"]["message"]


async def _dead_letter(nc: Any) -> DeadLetter | None:
    try:
        msg = await nc.jetstream().get_last_msg("CM_DLQ", "cm.dlq.router")
    except NotFoundError:
        return None
    return decode(msg.data, DeadLetter, msg.headers)
