"""Every agent as a Synadia Agent Protocol (v0.3) agent on NATS: discoverable with
`$SRV.INFO.agents`, promptable on `agents.prompt.clawmesh.<owner>.<agentId>`, its reply streamed
as `response` chunks after a leading `ack` (repeated as a keep-alive), ended by an empty,
header-less terminator, and a heartbeat on `agents.hb.clawmesh.<owner>.<agentId>`.

`owner` is the deployment's subject prefix (`cm` by default), so two deployments on one bus do
not answer for each other. Each ingress instance registers one NATS micro service `agents` per
agent configured when it starts; several instances share prompts through the protocol's
`agents` queue group. A prompt is one turn of the agent's NATS session
(`agent:<agentId>:synadia:<owner>`), as OpenClaw's NATS plugin makes every prompt a DM from one
remote peer. See docs/interop.md.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
import mimetypes
from datetime import UTC, datetime
from typing import Any, Final

from nats import micro
from nats.micro.request import Request as MicroRequest
from nats.micro.service import Service

from clawmesh import __version__
from clawmesh.bus import ServiceContext
from clawmesh.ids import DEFAULT_AGENT_ID
from clawmesh.wire import (
    Attachment,
    InboundMessage,
    Peer,
    RouteDecision,
    TextDeltaEvent,
    TurnError,
    TurnFinal,
    now,
)

from .turns import MessageTooLarge, TurnClient, Unavailable, turn_id_for

__all__ = ["AGENT_TOKEN", "HEARTBEAT_INTERVAL", "KEEPALIVE_INTERVAL", "PROTOCOL_VERSION", "AgentProtocolHost"]

log = logging.getLogger("clawmesh.ingress.agent_protocol")

PROTOCOL_VERSION: Final = "0.3"
AGENT_TOKEN: Final = "clawmesh"  # the harness id, the subjects' {agent} token
HEARTBEAT_INTERVAL: Final = 30
# under the callers' 60 s inactivity timeout, as OpenClaw's plugin (20 s)
KEEPALIVE_INTERVAL: Final = 20.0
_QUEUE: Final = "agents"
_ACK: Final = b'{"type":"status","data":"ack"}'


class _Rejected(Exception):
    def __init__(self, code: str, error: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.error = error
        self.message = message


def _one_line(text: str) -> str:
    return " ".join(text.split())[:200]


def _parse(data: bytes, limit: int) -> tuple[str, list[Attachment]]:
    """The prompt and attachments of a request (§5), or _Rejected (400)."""
    if not data:
        raise _Rejected("400", "empty_prompt", "the request is empty")
    if len(data) > limit:
        raise _Rejected("400", "payload_too_large", f"the request is {len(data)} bytes; at most {limit}")
    if not data.lstrip().startswith(b"{"):
        try:
            return data.decode("utf-8"), []
        except UnicodeDecodeError:
            raise _Rejected("400", "invalid_envelope", "a text prompt must be UTF-8") from None
    try:
        envelope = json.loads(data)
    except (ValueError, RecursionError):
        raise _Rejected("400", "invalid_envelope", "the request starts with '{' but is not JSON") from None
    prompt = envelope.get("prompt") if isinstance(envelope, dict) else None
    if not isinstance(prompt, str) or not prompt:
        raise _Rejected("400", "invalid_envelope", "`prompt` must be a non-empty string")
    attachments: list[Attachment] = []
    raw = envelope.get("attachments") or []
    if not isinstance(raw, list):
        raise _Rejected("400", "invalid_envelope", "`attachments` must be a list")
    for i, item in enumerate(raw):
        name = item.get("filename") if isinstance(item, dict) else None
        content = item.get("content") if isinstance(item, dict) else None
        if not isinstance(name, str) or not isinstance(content, str):
            raise _Rejected(
                "400", "invalid_envelope", f"attachments[{i}] needs string `filename` and `content`"
            )
        try:
            blob = base64.b64decode(content, validate=True)
        except (binascii.Error, ValueError):
            raise _Rejected(
                "400", "invalid_base64", f"attachments[{i}].content is not valid base64"
            ) from None
        mime = mimetypes.guess_type(name)[0] or "application/octet-stream"
        attachments.append(Attachment(name=name, mime=mime, data=blob))
    return prompt, attachments


def _chunk(text: str) -> bytes:
    return json.dumps({"type": "response", "data": text}, ensure_ascii=False).encode()


class _Instance:
    """One registered agent: its micro service and its identity."""

    def __init__(self, agent_id: str, owner: str, service: Service) -> None:
        self.agent_id = agent_id
        self.owner = owner
        self.service = service

    def heartbeat(self) -> bytes:
        return json.dumps(
            {
                "agent": AGENT_TOKEN,
                "owner": self.owner,
                "session": self.agent_id,
                "instance_id": self.service.id,
                "ts": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "interval_s": HEARTBEAT_INTERVAL,
                "protocol_version": PROTOCOL_VERSION,
            }
        ).encode()


class AgentProtocolHost:
    """Registers the agents, answers their prompts and status requests, sends heartbeats."""

    def __init__(self, ctx: ServiceContext, turns: TurnClient) -> None:
        self.ctx = ctx
        self.turns = turns
        self.owner = ctx.subjects.prefix
        self._instances: list[_Instance] = []
        self._work: set[asyncio.Task[None]] = set()
        self._beat: asyncio.Task[None] | None = None

    def subject(self, verb: str, agent_id: str) -> str:
        return self.ctx.subjects.agent_protocol(verb, agent_id)

    async def start(self) -> None:
        config = self.ctx.holder.current
        limit = self.ctx.nc.max_payload
        for agent_id in config.agent_ids or (DEFAULT_AGENT_ID,):
            service = await micro.add_service(
                self.ctx.nc,
                name="agents",
                version=__version__,
                description=f"clawmesh agent {agent_id}",
                metadata={
                    "agent": AGENT_TOKEN,
                    "owner": self.owner,
                    "session": agent_id,
                    "protocol_version": PROTOCOL_VERSION,
                },
            )
            instance = _Instance(agent_id, self.owner, service)
            await service.add_endpoint(
                name="prompt",
                subject=self.subject("prompt", agent_id),
                queue_group=_QUEUE,
                handler=self._on_prompt(agent_id, limit),
                metadata={"max_payload": f"{limit}B", "attachments_ok": "true"},
            )
            await service.add_endpoint(
                name="status",
                subject=self.subject("status", agent_id),
                queue_group=_QUEUE,
                handler=self._on_status(instance),
            )
            self._instances.append(instance)
        self._beat = asyncio.create_task(self._heartbeats())

    async def stop(self) -> None:
        if self._beat is not None:
            self._beat.cancel()
        for task in list(self._work):
            task.cancel()
        for instance in self._instances:
            with contextlib.suppress(Exception):
                await instance.service.stop()
        self._instances.clear()

    async def _heartbeats(self) -> None:
        while True:
            for instance in self._instances:
                with contextlib.suppress(Exception):  # the bus may be reconnecting: next beat
                    await self.ctx.nc.publish(self.subject("hb", instance.agent_id), instance.heartbeat())
            await asyncio.sleep(HEARTBEAT_INTERVAL)

    def _on_status(self, instance: _Instance) -> Any:
        async def handle(request: MicroRequest) -> None:
            try:
                await request.respond(instance.heartbeat())
            except Exception as exc:  # a builder failure is a 500 (§8)
                await request.respond_error("500", _one_line(f"status failed: {exc}"))

        return handle

    def _on_prompt(self, agent_id: str, limit: int) -> Any:
        # a subscription's callbacks run one at a time: a turn must not hold up the next prompt
        async def handle(request: MicroRequest) -> None:
            task = asyncio.create_task(self._answer(agent_id, request, limit))
            self._work.add(task)
            task.add_done_callback(self._work.discard)

        return handle

    async def _answer(self, agent_id: str, request: MicroRequest, limit: int) -> None:
        try:
            text, attachments = _parse(request.data, limit)
        except _Rejected as exc:
            await self._fail(request, exc)
            return
        await request.respond(_ACK)
        keepalive = asyncio.create_task(self._keepalive(request))
        try:
            await self._turn(agent_id, request, text, attachments)
        except _Rejected as exc:
            await self._fail(request, exc)
        except Exception as exc:  # a malformed event must not leave the caller waiting
            log.exception("agent protocol prompt for %s failed", agent_id)
            await self._fail(request, _Rejected("500", "internal", f"handler error: {exc}"))
        finally:
            keepalive.cancel()

    async def _keepalive(self, request: MicroRequest) -> None:
        while True:
            await asyncio.sleep(KEEPALIVE_INTERVAL)
            await request.respond(_ACK)

    async def _fail(self, request: MicroRequest, exc: _Rejected) -> None:
        body = json.dumps({"error": exc.error, "message": exc.message}).encode()
        await request.respond_error(exc.code, _one_line(exc.message), data=body)
        await request.respond(b"")

    async def _turn(
        self, agent_id: str, request: MicroRequest, text: str, attachments: list[Attachment]
    ) -> None:
        turn_id = turn_id_for("nats", self.owner, None)
        inbound = InboundMessage(
            id=turn_id,
            channel="api",
            account_id="default",
            peer=Peer(kind="direct", id="remote"),
            text=text,
            attachments=attachments,
            agent_id=agent_id,
            session_key=f"agent:{agent_id}:synadia:{self.owner}",
            received_at=now(),
            reply_subject=self.turns.reply_subject,
            reply_events="all",
            metadata={"api": "synadia-agent-protocol", "messageChannel": "nats"},
        )
        try:
            turn = await self.turns.submit(inbound, f"in:{turn_id}", request.headers)
        except (Unavailable, MessageTooLarge) as exc:
            raise _Rejected("500", "unavailable", str(exc)) from None
        with contextlib.closing(turn):
            decision = await turn.decision(self.turns.route_wait())
            if decision is not None and not decision.ok:
                raise _decision_error(decision)
            streamed = False
            try:
                async for item in turn.events(self.turns.turn_timeout()):
                    if isinstance(item, TextDeltaEvent) and item.text:
                        await request.respond(_chunk(item.text))
                        streamed = True
                    elif isinstance(item, RouteDecision) and not item.ok:
                        raise _decision_error(item)
                    elif isinstance(item, TurnError):
                        raise _Rejected("500", item.code.lower(), f"{item.code}: {item.message}")
                    elif isinstance(item, TurnFinal) and not streamed and item.text:
                        await request.respond(_chunk(item.text))
            except TimeoutError:
                raise _Rejected("500", "timeout", "the agent did not answer in time") from None
        await request.respond(b"")


def _decision_error(decision: RouteDecision) -> _Rejected:
    code = "404" if decision.error_code == "UNKNOWN_AGENT" else "409"
    return _Rejected(
        code, (decision.error_code or "routing_failed").lower(), decision.error_message or "routing failed"
    )
