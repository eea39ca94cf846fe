"""`runnerType: synadia`: the turn goes to an agent on the bus that speaks the Synadia Agent
Protocol (v0.3; docs/interop.md), found by its identity (`agent`, `owner`, `session`) through
`$SRV.INFO.agents` and prompted on the subject its record names (the protocol forbids building
it). Only the turn's message is sent: the remote agent keeps its own conversation.

No agent with that identity answering discovery, or silence for 60 s after the last chunk,
is failover-worthy; an error frame is the remote agent's answer (`429`/`5xx` failover-worthy)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any, Final

from nats.aio.client import Client
from nats.aio.msg import Msg

from clawmesh.config import SynadiaSettings

from ._base import BackendError, OnDelta, ProxyResult, ProxyTurn

__all__ = ["SynadiaBackend"]

# the protocol's discovery: collect INFO replies until this long without a new one (§4, as
# Synadia's client does), at most _DISCOVER_CAP in all
_DISCOVER_QUIET: Final = 0.75
_DISCOVER_CAP: Final = 2.0
_INACTIVITY: Final = 60.0  # the protocol's recommended caller timeout since the last chunk


def _prompt_subject(record: dict[str, Any], want: SynadiaSettings) -> str | None:
    meta = record.get("metadata") or {}
    if record.get("name") != "agents" or meta.get("agent") != want.agent or meta.get("owner") != want.owner:
        return None
    for endpoint in record.get("endpoints") or []:
        subject = endpoint.get("subject") or ""
        tokens = subject.split(".")
        if endpoint.get("name") == "prompt" and len(tokens) == 5 and tokens[4] == want.session:
            return str(subject)
    return None


class SynadiaBackend:
    kind = "synadia"

    def __init__(self, nc: Client) -> None:
        self._nc = nc

    async def aclose(self) -> None:
        pass

    async def _discover(self, want: SynadiaSettings) -> str:
        replies: asyncio.Queue[bytes] = asyncio.Queue()

        async def on_reply(msg: Msg) -> None:
            replies.put_nowait(msg.data)

        inbox = self._nc.new_inbox()
        sub = await self._nc.subscribe(inbox, cb=on_reply)
        loop = asyncio.get_running_loop()
        try:
            await self._nc.publish("$SRV.INFO.agents", b"", reply=inbox)
            deadline = loop.time() + _DISCOVER_CAP
            while (remaining := deadline - loop.time()) > 0:
                try:
                    data = await asyncio.wait_for(replies.get(), min(_DISCOVER_QUIET, remaining))
                except TimeoutError:
                    break
                with contextlib.suppress(ValueError):
                    record = json.loads(data)
                    if isinstance(record, dict) and (subject := _prompt_subject(record, want)):
                        return subject
        finally:
            await sub.unsubscribe()
        raise BackendError(
            f"no Synadia Agent Protocol agent {want.agent}.{want.owner}.{want.session} answered discovery",
            reason="unreachable",
            failover=True,
            hint="check that the agent is running and registered (nats req '$SRV.INFO.agents' '')",
        )

    async def run(self, turn: ProxyTurn, on_delta: OnDelta) -> ProxyResult:
        settings = turn.settings
        assert isinstance(settings, SynadiaSettings)
        subject = await self._discover(settings)
        stream: asyncio.Queue[Msg] = asyncio.Queue()

        async def on_msg(msg: Msg) -> None:
            stream.put_nowait(msg)

        inbox = self._nc.new_inbox()
        # unsubscribing is the protocol's only cancel: a cancelled turn leaves here
        sub = await self._nc.subscribe(inbox, cb=on_msg)
        text: list[str] = []
        try:
            await self._nc.publish(subject, json.dumps({"prompt": turn.text}).encode(), reply=inbox)
            while True:
                try:
                    msg = await asyncio.wait_for(stream.get(), _INACTIVITY)
                except TimeoutError:
                    raise BackendError(
                        f"{subject}: nothing for {_INACTIVITY:g}s", reason="timeout", failover=True
                    ) from None
                headers = msg.headers or {}
                if "Nats-Service-Error-Code" in headers:
                    code = headers["Nats-Service-Error-Code"]
                    worthy = code == "429" or code.startswith("5")
                    raise BackendError(
                        f"{subject} answered {code}: {headers.get('Nats-Service-Error', '')}",
                        reason="rate_limit" if code == "429" else ("server" if worthy else "remote_error"),
                        failover=worthy,
                    )
                if not msg.data and not msg.headers:
                    break  # the terminator
                chunk = _chunk_text(msg.data)
                if chunk:
                    text.append(chunk)
                    await on_delta(chunk)
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        return ProxyResult(
            text="".join(text),
            model=f"synadia:{settings.agent}.{settings.owner}.{settings.session}",
            extra={"subject": subject},
        )


def _chunk_text(data: bytes) -> str:
    """The text of a `response` chunk; other chunk types (status, query) carry none for us."""
    try:
        chunk = json.loads(data)
    except ValueError:
        return ""
    if not isinstance(chunk, dict) or chunk.get("type") != "response":
        return ""
    body = chunk.get("data")
    if isinstance(body, str):
        return body
    if isinstance(body, dict) and isinstance(body.get("text"), str):
        return str(body["text"])
    return ""
