"""`sessions_spawn` of an agent of another gateway of the federation: `agentId: "worker@sg"`.

The child runs on sg, as a turn of agent `worker` in a session of its own there; here it is a
sub-agent session of the *parent's* agent (`agent:<parent>:subagent:<uuid>`) whose spawn record
names `worker@sg`. Each turn of that session is a proxy turn to sg (`remote_child_view`: the
runner reads the record, as it does for every sub-agent turn), so the child's reply reaches the
parent through the ordinary announce path: stored once per turn, announced once
(`followups.py`), a runner crash redelivering the turn like any other.

Both gateways decide: this side's `subagents.allowAgents` must list `worker@sg` (or `*@sg`),
and sg's federation settings and `tools.agentToAgent` must admit `<parent agent>@<this
gateway>`. sg's answer is asked first (`probe_remote`), so a refusal is the tool's result.
"""

from __future__ import annotations

import dataclasses
import re
import uuid
from typing import Any, Final

from clawmesh.bus import ServiceContext
from clawmesh.config import AgentView, Config, OpenClawXSettings
from clawmesh.errors import best_effort
from clawmesh.federation import RemoteTurn, RemoteTurnFailed, read_catalogues, region_silence, remote_turn
from clawmesh.tools.a2a import remote_spawn_refusal, subagent_limits

__all__ = [
    "PROBE_TIMEOUT",
    "parse_remote_target",
    "probe_remote",
    "remote_child_view",
    "remote_spawn_targets",
]

_TARGET: Final = re.compile(r"^([a-z0-9][a-z0-9_-]{0,63})@([a-z0-9][a-z0-9-]{0,31})$")
PROBE_TIMEOUT: Final = 10.0  # seconds for the other gateway to say whether it would serve


def parse_remote_target(target: str) -> tuple[str, str] | None:
    """`worker@sg` → ("worker", "sg"); None when it is not an `agent@gateway` address."""
    m = _TARGET.match(target.strip().lower())
    return (m.group(1), m.group(2)) if m else None


async def remote_spawn_targets(ctx: ServiceContext, config: Config, view: AgentView) -> list[dict[str, Any]]:
    """`agents_list` entries for the agents of other gateways `view` may spawn: those the
    other regions' catalogues say they offer, that `subagents.allowAgents` lists (`*@sg`)."""
    if config.settings.gateway.region is None or not subagent_limits(config, view).remote_allow:
        return []
    out: list[dict[str, Any]] = []
    with best_effort(ctx.counters, "catalogue_read"):  # the local agents are listed anyway
        for cat in await read_catalogues(ctx.kv["gateways"]):
            for agent in cat.agents:
                target = f"{agent.id}@{cat.region}"
                if agent.exposed and remote_spawn_refusal(config, view, target) is None:
                    entry: dict[str, Any] = {"id": target, "configured": True, "gateway": cat.region}
                    if agent.name:
                        entry["name"] = agent.name
                    out.append(entry)
    return out


def remote_child_view(agent: AgentView, target: str) -> AgentView:
    """The parent's agent, made a proxy of `target`'s gateway for a remote child's turns. No
    fallbacks: a child that cannot reach its gateway fails; the parent's own model does not
    answer in its place."""
    parsed = parse_remote_target(target)
    assert parsed is not None, target
    agent_id, region = parsed
    return dataclasses.replace(
        agent,
        runner_type="openclawx",
        backend=OpenClawXSettings(
            base_url="", api_key=None, api_key_path="", agent_id=agent_id, gateway=region
        ),
        fallbacks=(),
    )


async def probe_remote(
    ctx: ServiceContext,
    config: Config,
    caller: str,
    session: str,
    target: tuple[str, str],
    kind: str,
) -> tuple[str, str] | None:
    """Ask `target`'s gateway whether it would serve `caller` (an agent of this gateway) for
    `session`: None when it would, else (status, error) for the tool's result (`forbidden`
    for a refusal, `error` when it cannot be reached)."""
    agent_id, region = target
    own = config.settings.gateway.region
    if own is None:
        return (
            "error",
            f"{agent_id}@{region}: this gateway is not part of a federation (gateway.region is unset)",
        )
    if region == own:
        return "error", f"{agent_id}@{region} is this gateway: use agentId {agent_id!r}"
    request = RemoteTurn(
        from_gateway=own,
        agent_id=agent_id,
        session=session,
        turn_id=uuid.uuid4().hex,
        text="",
        stream=False,
        from_agent=caller,
        kind="spawn" if kind == "spawn" else "send",
        probe=True,
    )

    async def _ignore(_: str) -> None:
        pass

    try:
        await remote_turn(
            ctx.nc,
            ctx.subjects.prefix,
            region,
            request,
            _ignore,
            idle_timeout=PROBE_TIMEOUT,
            silence=lambda: region_silence(ctx.kv["gateways"], region),
        )
    except RemoteTurnFailed as exc:
        refused = exc.code in ("A2A_FORBIDDEN", "AGENT_NOT_EXPOSED", "GATEWAY_NOT_ALLOWED")
        return ("forbidden" if refused else "error"), exc.message
    return None
