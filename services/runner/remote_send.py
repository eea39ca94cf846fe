"""`sessions_send` to an agent of another gateway of the federation: `agentId: "worker@sg"`.

The message runs as a turn of agent `worker` on gateway `sg` (docs/federation.md: a session of
its own there per calling session), allowed only when this side's `tools.agentToAgent` allows
the pair (the target written as `worker@sg`, or a pattern such as `*@sg`) and the other side
both exposes the agent to this region and admits the sender, `<agent>@<this gateway>`, in its
own `tools.agentToAgent`. The reply comes back as the tool result; `timeoutSeconds: 0` asks sg
whether it would serve (so a refusal is still the result), then sends without waiting (the
reply is dropped: nothing announces it back yet)."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any, Final

from clawmesh.bus import ServiceContext
from clawmesh.config import AgentView, Config
from clawmesh.federation import RemoteTurn, RemoteTurnFailed, remote_turn
from clawmesh.tools.a2a import a2a_refusal
from clawmesh.wire import TurnRequest

from .remote_spawn import parse_remote_target, probe_remote

__all__ = ["is_remote_target", "send_remote"]

# the other gateway's refusals (the rest: it could not be reached, or failed the turn)
_REFUSALS: Final = frozenset({"A2A_FORBIDDEN", "AGENT_NOT_EXPOSED", "GATEWAY_NOT_ALLOWED"})
_UNWAITED: set[asyncio.Task[Any]] = set()  # fire-and-forget sends, kept referenced until done


def is_remote_target(agent_id: str | None) -> bool:
    return bool(agent_id) and "@" in (agent_id or "")


def _result(data: dict[str, Any], error: bool) -> tuple[str, bool]:
    return json.dumps(data, ensure_ascii=False), error


async def _ignore(_: str) -> None:
    pass


def _forget(task: asyncio.Task[Any]) -> None:
    _UNWAITED.discard(task)
    if not task.cancelled():
        task.exception()  # retrieved: an unwaited send that failed is not an asyncio warning


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
    request = RemoteTurn(
        from_gateway=own,
        agent_id=agent_id,
        session=turn.session_key,
        turn_id=run_id,
        text=message,
        stream=False,
        from_agent=agent.id,
        kind="send",
    )
    prefix = ctx.subjects.prefix
    if wait <= 0:
        problem = await probe_remote(ctx, config, agent.id, turn.session_key, parsed, "send")
        if problem is not None:
            status, error = problem
            return _result({"runId": run_id, "status": status, "error": error, "sessionKey": target}, True)
        task = asyncio.create_task(
            remote_turn(
                ctx.nc, prefix, region, request, _ignore, idle_timeout=config.settings.runtime.turn_timeout
            )
        )
        _UNWAITED.add(task)
        task.add_done_callback(_forget)
        return _result({"runId": run_id, "status": "accepted", "sessionKey": target}, False)
    try:
        final = await remote_turn(ctx.nc, prefix, region, request, _ignore, idle_timeout=wait)
    except RemoteTurnFailed as exc:
        status = (
            "forbidden"
            if exc.code in _REFUSALS
            else "timeout"
            if "did not answer within" in exc.message
            else "error"
        )
        return _result({"runId": run_id, "status": status, "error": exc.message, "sessionKey": target}, True)
    return _result(
        {"runId": run_id, "status": "ok", "reply": final.text, "sessionKey": target, "gateway": region}, False
    )
