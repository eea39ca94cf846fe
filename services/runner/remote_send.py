"""`sessions_send` to an agent of another gateway of the federation: `agentId: "worker@sg"`.

The message runs as a turn of agent `worker` on gateway `sg` (docs/federation.md: a session of
its own there per calling session), allowed only when this side's `tools.agentToAgent` allows
the pair (the target written as `worker@sg`, or a pattern such as `*@sg`) and the other side
both exposes the agent to this region and admits the sender, `<agent>@<this gateway>`, in its
own `tools.agentToAgent`. The reply comes back as the tool result; `timeoutSeconds: 0` asks sg
whether it would serve (so a refusal is still the result), then sends without waiting.

Either way the exchange goes on as a local one does (OpenClaw's ping-pong): the first reply is
stored as step 0's reply in `cm.out.a2a.*`, where the exchange driver (`followups.py`) takes
it, and each of the target's steps is a remote turn again (`remote_step`), its reply stored the
same way. A waited send runs its first step itself (it waits for it); an unwaited one stores it
as a request the driver sends (`FIRST_STEP_REQUEST`). Each step's turn id is the same on every
try, so a runner that dies while sg answers leaves the step to another, whose request sg
answers from the first (it runs once there).
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from typing import Any, Final

from clawmesh.bus import ServiceContext, inject
from clawmesh.config import AgentView, Config
from clawmesh.federation import (
    RemoteFinal,
    RemoteTurn,
    RemoteTurnFailed,
    region_silence,
    remote_session_key,
    remote_turn,
)
from clawmesh.sessions import A2ARecord
from clawmesh.tools.a2a import MAX_PING_PONG_TURNS, a2a_refusal
from clawmesh.wire import OutboundMessage, TurnRequest, encode_json

from .internal_turns import A2A_CHANNEL, a2a_turn_id
from .remote_spawn import parse_remote_target, probe_remote

__all__ = ["FIRST_STEP_REQUEST", "is_remote_target", "remote_step", "send_remote"]

# The step name of an unwaited send's stored first step (`<run id>-r0` in `cm.out.a2a.*`):
# the exchange driver runs it as step 0 on the other gateway.
FIRST_STEP_REQUEST: Final = "r0"

log = logging.getLogger("clawmesh.runner")

# the other gateway's refusals (the rest: it could not be reached, or failed the turn)
_REFUSALS: Final = frozenset({"A2A_FORBIDDEN", "AGENT_NOT_EXPOSED", "GATEWAY_NOT_ALLOWED"})
# first steps a waited send's wait ran out on: they go on, kept referenced until done
_UNWAITED: set[asyncio.Task[Any]] = set()


def is_remote_target(agent_id: str | None) -> bool:
    return bool(agent_id) and "@" in (agent_id or "")


def _result(data: dict[str, Any], error: bool) -> tuple[str, bool]:
    return json.dumps(data, ensure_ascii=False), error


async def _ignore(_: str) -> None:
    pass


def _forget(task: asyncio.Task[Any]) -> None:
    _UNWAITED.discard(task)
    if not task.cancelled() and (exc := task.exception()) is not None:
        # the tool's answer said so when it still waited; else this is the only trace
        log.info("runner: a sessions_send to another gateway ended: %s", exc)


async def send_remote(
    ctx: ServiceContext,
    config: Config,
    agent: AgentView,
    turn: TurnRequest,
    target: str,
    message: str,
    wait: float,
) -> tuple[str, bool]:
    run_id = uuid.uuid4().hex
    parsed = parse_remote_target(target)
    if parsed is None:
        return _result(
            {"runId": run_id, "status": "error", "error": f"not an agent@gateway address: {target[:100]!r}"},
            True,
        )
    agent_id, region = parsed
    own = config.settings.gateway.region
    if own is None:
        return _result(
            {
                "runId": run_id,
                "status": "error",
                "error": f"{target}: this gateway is not part of a federation (gateway.region is unset)",
            },
            True,
        )
    if region == own:
        return _result(
            {
                "runId": run_id,
                "status": "error",
                "error": f"{target} is this gateway: use agentId {agent_id!r}",
            },
            True,
        )
    why = a2a_refusal(config, agent.id, f"{agent_id}@{region}")
    if why is not None:
        return _result({"runId": run_id, "status": "forbidden", "error": why, "sessionKey": target}, True)
    record = A2ARecord(
        run_id=run_id,
        requester_session_key=turn.session_key,
        requester_agent_id=agent.id,
        requester_channel=turn.route.channel,
        target_session_key=remote_session_key(agent_id, own, turn.session_key),
        target_agent_id=f"{agent_id}@{region}",
        target_channel="gateway",
        original=message,
        max_turns=MAX_PING_PONG_TURNS,
    )
    if wait <= 0:
        problem = await probe_remote(ctx, config, agent.id, turn.session_key, parsed, "send")
        if problem is not None:
            status, error = problem
            return _result({"runId": run_id, "status": status, "error": error, "sessionKey": target}, True)
        await ctx.sessions.put_a2a(record)
        # nobody waits: the exchange driver runs the first step from a stored request, so a
        # runner that dies meanwhile leaves it to another
        await _store(ctx, record, FIRST_STEP_REQUEST, message, turn.route.account_id, is_error=False)
        return _result({"runId": run_id, "status": "accepted", "sessionKey": target}, False)
    await ctx.sessions.put_a2a(record)
    # the first step runs on its own: the exchange goes on after a wait that ran out
    first = asyncio.create_task(_first_step(ctx, own, record, message, turn.route.account_id))
    _UNWAITED.add(first)
    first.add_done_callback(_forget)
    try:
        final = await asyncio.wait_for(asyncio.shield(first), wait)
    except TimeoutError:
        return _result(
            {
                "runId": run_id,
                "status": "timeout",
                "error": f"no reply within {wait:g}s; the message was delivered and the exchange goes on",
                "sessionKey": target,
            },
            False,
        )
    except RemoteTurnFailed as exc:
        status = "forbidden" if exc.code in _REFUSALS else "error"
        return _result({"runId": run_id, "status": status, "error": exc.message, "sessionKey": target}, True)
    return _result(
        {"runId": run_id, "status": "ok", "reply": final.text, "sessionKey": target, "gateway": region}, False
    )


async def _first_step(
    ctx: ServiceContext, region_of_caller: str, record: A2ARecord, message: str, account: str
) -> RemoteFinal:
    """Step 0 on the other gateway, for a send that waits for it; its reply (not a failure,
    which is the tool's answer and ends the exchange) is stored for the exchange driver."""
    final = await _ask(ctx, region_of_caller, record, "0", message)
    await _store(ctx, record, "0", final.text, account, is_error=False)
    return final


async def remote_step(
    ctx: ServiceContext,
    region_of_caller: str,
    record: A2ARecord,
    step: str,
    text: str,
    account: str,
    *,
    again: bool = False,
) -> None:
    """A target's step when the target is an agent of another gateway (for a ping-pong step,
    its instructions travel in `text`: another gateway does not take additions to its agent's
    system prompt): its reply — or its failure, which ends the exchange — stored as the step's
    reply."""
    try:
        final = await _ask(ctx, region_of_caller, record, step, text, again=again)
    except RemoteTurnFailed as exc:
        await _store(ctx, record, step, f"⚠️ {exc.message}", account, is_error=True)
        return
    await _store(ctx, record, step, final.text, account, is_error=False)


async def _ask(
    ctx: ServiceContext,
    region_of_caller: str,
    record: A2ARecord,
    step: str,
    text: str,
    *,
    again: bool = False,
) -> RemoteFinal:
    """One step of the exchange as a remote turn of the target, on behalf of the requester
    (its turn id the same on every try: the other gateway runs it once). RemoteTurnFailed."""
    parsed = parse_remote_target(record.target_agent_id)
    assert parsed is not None, record.target_agent_id
    agent_id, region = parsed
    gateway = ctx.holder.current.settings.gateway
    request = RemoteTurn(
        from_gateway=region_of_caller,
        agent_id=agent_id,
        session=record.requester_session_key,
        turn_id=a2a_turn_id(record.run_id, step),
        text=text,
        stream=False,
        from_agent=record.requester_agent_id,
        kind="send",
        keepalive=gateway.keepalive_seconds,
        again=again,
    )
    return await remote_turn(
        ctx.nc,
        ctx.subjects.prefix,
        region,
        request,
        _ignore,
        idle_timeout=gateway.idle_timeout_seconds,
        silence=lambda: region_silence(ctx.kv["gateways"], region),
    )


async def _store(
    ctx: ServiceContext, record: A2ARecord, step: str, text: str, account: str, *, is_error: bool
) -> None:
    """A step's reply where a local step's runner stores it, with the same dedupe id (once per
    step); or, as `FIRST_STEP_REQUEST`, the message of a first step nobody waits for."""
    turn_id = a2a_turn_id(record.run_id, step)
    reply = OutboundMessage(
        turn_id=turn_id,
        agent_id=record.target_agent_id,
        session_key=record.target_session_key,
        channel=A2A_CHANNEL,
        account_id=account,
        text=text,
        is_error=is_error,
    )
    data, headers = encode_json(reply)
    headers["Nats-Msg-Id"] = f"out:{turn_id}"
    await ctx.publish(ctx.subjects.outbound(A2A_CHANNEL, account), data, inject(headers))
