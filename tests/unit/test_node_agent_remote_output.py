"""A remote exec's live output is bounded: at most 256 chunks cross to another region, the
last saying so; a local caller's stream is not capped."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from clawmesh.wire import ToolInvocation, ToolOutputChunk, decode
from clawmesh_node_agent.app import NodeAgent

pytestmark = pytest.mark.asyncio


async def _stream(stream_reply: bool, chunks: int) -> list[ToolOutputChunk]:
    sent: list[ToolOutputChunk] = []

    async def publish(subject: str, data: bytes, headers: Any = None) -> None:
        assert subject == "_R_.reply"
        sent.append(decode(data, ToolOutputChunk, headers))

    agent: Any = SimpleNamespace(ctx=SimpleNamespace(nc=SimpleNamespace(publish=publish)))
    inv = ToolInvocation(
        invocation_id="i1",
        tool="exec",
        agent_id="main",
        session_key="agent:main:main",
        output_subject="_R_.reply",
        stream_reply=stream_reply,
    )
    send = NodeAgent._streamer(agent, inv)
    for i in range(chunks):
        await send("stdout", f"line {i}\n")
    return sent


async def test_at_most_256_chunks_cross_to_another_region() -> None:
    sent = await _stream(True, 300)
    assert len(sent) == 256
    assert sent[0].text == "line 0\n"
    assert sent[-1].text.startswith("line 255\n") and "live output ends here" in sent[-1].text


async def test_a_local_stream_is_not_capped() -> None:
    sent = await _stream(False, 300)
    assert len(sent) == 300 and all("live output ends" not in c.text for c in sent)
