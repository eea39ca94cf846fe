"""The openclawx backend against an OpenAI-compatible endpoint of OpenClaw's shape (the fake
model server's `/v1/chat/completions`: unnamed `data:` chunks ending in `[DONE]`): the
request it sends, streamed deltas, `user` as the remote session, error classification."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from clawmesh.config import OpenClawXSettings
from clawmesh_runner.backends import BackendError, ProxyTurn
from clawmesh_runner.backends.openclawx import OpenClawXBackend
from tests.fakes.models import FakeModelServer, HTTPError, Text


def _turn(base_url: str, remote: str | None = None, agent: str | None = None) -> ProxyTurn:
    return ProxyTurn(
        agent_id="hop",
        session_key="agent:hop:telegram:direct:42",
        turn_id="t1",
        text="hello there",
        settings=OpenClawXSettings(base_url=base_url, api_key="gw-token", api_key_path="$.k", agent_id=agent),
        env={},
        remote_session=remote,
        workspace=Path("/tmp"),
    )


async def test_streams_and_names_the_remote_session() -> None:
    async with FakeModelServer(models=("openclaw", "openclaw/ops")) as fake:
        fake.script(Text("one two three", chunks=3), Text("four", chunks=1))
        backend = OpenClawXBackend()
        deltas: list[str] = []

        async def on_delta(text: str) -> None:
            deltas.append(text)

        try:
            first = await backend.run(_turn(fake.base_url), on_delta)
            second = await backend.run(
                _turn(fake.base_url, remote=first.remote_session, agent="ops"), on_delta
            )
        finally:
            await backend.aclose()
        assert first.text == "one two three" and len(deltas) == 4
        assert first.remote_session == "agent:hop:telegram:direct:42" == second.remote_session
        requests = fake.requests
        assert [r.model for r in requests] == ["openclaw", "openclaw/ops"]
        assert (
            requests[0].body["user"] == "agent:hop:telegram:direct:42" and requests[0].body["stream"] is True
        )
        # only the turn's message: the remote gateway keeps the conversation
        assert [m["content"] for m in requests[1].messages] == ["hello there"]
        assert requests[0].headers["authorization"] == "Bearer gw-token"


@pytest.mark.parametrize(
    ("status", "reason", "failover"),
    [
        (529, "server", True),
        (429, "rate_limit", True),
        (503, "server", True),
        (401, "auth", False),
        (400, "remote_error", False),
    ],
)
async def test_http_errors_are_classified(status: int, reason: str, failover: bool) -> None:
    async with FakeModelServer(models=("openclaw",)) as fake:
        fake.script(HTTPError(status))
        backend = OpenClawXBackend()

        async def on_delta(text: str) -> None:
            raise AssertionError("no text expected")

        try:
            with pytest.raises(BackendError) as caught:
                await backend.run(_turn(fake.base_url), on_delta)
        finally:
            await backend.aclose()
    assert (caught.value.reason, caught.value.failover) == (reason, failover)


ORACLE = Path(__file__).resolve().parents[1] / "fixtures" / "oracle" / "openclawx_stream.json"


async def test_replays_the_real_openclaw_exchange() -> None:
    """OpenClaw 2026.9.6's own answers to this backend (scripts/oracle/openclawx_stream.py ran it
    against the real gateway): read back through the backend, the same turns come out, and
    OpenClaw kept one session for the two turns of the local session."""
    recorded = json.loads(ORACLE.read_text())
    answers = iter(recorded["exchanges"])
    sent: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        exchange = next(answers)
        sent.append(json.loads(request.content))
        return httpx.Response(
            exchange["status"],
            headers={"content-type": exchange["contentType"]},
            content=exchange["body"].encode(),
        )

    backend = OpenClawXBackend(transport=httpx.MockTransport(handler))
    settings = OpenClawXSettings(
        base_url="http://openclaw.test", api_key="t", api_key_path="$", agent_id=None
    )
    remote = None
    try:
        for expected, exchange in zip(recorded["results"], recorded["exchanges"], strict=True):
            deltas: list[str] = []

            async def on_delta(text: str, deltas: list[str] = deltas) -> None:
                deltas.append(text)

            turn = ProxyTurn(
                agent_id="hop",
                session_key=recorded["session"],
                turn_id="t",
                text=exchange["request"]["body"]["messages"][-1]["content"],
                settings=settings,
                env={},
                remote_session=remote,
            )
            result = await backend.run(turn, on_delta)
            remote = result.remote_session
            assert (result.text, result.remote_session, deltas) == (
                expected["text"],
                expected["remoteSession"],
                expected["deltas"],
            )
            assert result.usage[1] > 0  # OpenClaw's trailing usage chunk was read
    finally:
        await backend.aclose()
    # what the backend sends now is what OpenClaw was sent when the fixture was made
    assert sent == [e["request"]["body"] for e in recorded["exchanges"]]
    # OpenClaw: the second model call carried the first exchange (one session per `user`)
    first, second = recorded["modelSaw"]
    assert ["user", "hello"] in first and ["assistant", recorded["results"][0]["text"]] in second
    assert ["user", "again"] in second
