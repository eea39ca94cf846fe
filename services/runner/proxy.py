"""One turn of a proxy agent: the backend answers (streamed as deltas), the transcript records
it like a local turn, and a backend that is down hands the turn to the agent's fallbacks."""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Sequence

from clawmesh.config import (
    A2ASettings,
    AgentView,
    BackendSettings,
    Config,
    CozeSettings,
    OpenClawXSettings,
    OpenCodeSettings,
    SynadiaSettings,
)
from clawmesh.errors import ClawmeshError
from clawmesh.sessions import TranscriptEntry, TxAssistant
from clawmesh.wire import FailoverEvent, TextDeltaEvent, TurnEvent, TurnRequest

from .backends import Backend, BackendError, ProxyResult, ProxyTurn, backend_for
from .events import stamp

__all__ = ["backend_target", "remote_session", "run_proxy_turn"]

Emit = Callable[[TurnEvent], Awaitable[None]]


def backend_target(settings: BackendSettings) -> str:
    """What a remote session id is valid at: another bot, server or directory has other ids."""
    if isinstance(settings, CozeSettings):
        return f"{settings.base_url}#{settings.bot_id}"
    if isinstance(settings, OpenClawXSettings):
        where = f"gateway:{settings.gateway}" if settings.gateway else settings.base_url
        return f"{where}#{settings.agent_id or ''}"
    if isinstance(settings, OpenCodeSettings):
        return f"{settings.base_url}#{settings.working_directory}"
    if isinstance(settings, A2ASettings):
        return f"a2a:{settings.url}"
    if isinstance(settings, SynadiaSettings):
        return f"synadia:{settings.agent}.{settings.owner}.{settings.session}"
    return str(settings.working_directory)


def remote_session(history: Sequence[TranscriptEntry], runner: str, target: str) -> str | None:
    """The backend's session id of this session's latest turn on the same runner and target."""
    for entry in reversed(history):
        if isinstance(entry, TxAssistant) and entry.backend.get("runner") == runner:
            session = entry.backend.get("session")
            if entry.backend.get("target") != target:
                return None  # the agent now runs elsewhere: a new remote session
            return session if isinstance(session, str) and session else None
    return None


def _backend_kind(agent: AgentView) -> str:
    # an openclawx agent on a gateway of the federation goes over NATS, not HTTP
    if isinstance(agent.backend, OpenClawXSettings) and agent.backend.gateway:
        return "gateway"
    return agent.runner_type


async def run_proxy_turn(
    turn: TurnRequest,
    agent: AgentView,
    config: Config,
    history: list[TranscriptEntry],
    entries: list[TranscriptEntry],
    emit: Emit,
    *,
    gateway: Backend | None = None,
    synadia: Backend | None = None,
    caller: str = "",
    again: bool = False,
) -> tuple[ProxyResult | None, AgentView | None]:
    """`(result, None)` when the backend answered (its reply is in `entries`), `(None,
    fallback agent)` when it is down and the agent has fallbacks: the caller runs the turn
    locally with that view. Any other failure raises `ClawmeshError`."""
    settings = agent.backend
    if settings is None:
        raise ClawmeshError(
            "RUNNER_NOT_AVAILABLE",
            f"agent '{agent.id}' uses runnerType '{agent.runner_type}' without its settings",
            f"add the agent's {agent.runner_type} block",
        )
    streamed = False

    async def on_delta(text: str) -> None:
        nonlocal streamed
        streamed = True
        await emit(TextDeltaEvent(**stamp(turn), text=text))

    target = backend_target(settings)
    request = ProxyTurn(
        agent_id=agent.id,
        session_key=turn.session_key,
        turn_id=turn.turn_id,
        text=turn.inbound.text,
        settings=settings,
        env=config.env,
        remote_session=remote_session(history, agent.runner_type, target),
        workspace=agent.workspace,
        timeout=config.settings.runtime.turn_timeout,
        caller=caller,
        again=again,
    )
    try:
        kind = _backend_kind(agent)
        # the backends that use the runner's own NATS connection come from the runner
        on_bus = {"gateway": gateway, "synadia": synadia}.get(kind)
        proxy = on_bus if on_bus is not None else backend_for(kind)
        result = await proxy.run(request, on_delta)
    except BackendError as exc:
        # after part of the reply went out, another answer would contradict it
        if exc.failover and agent.fallbacks and not streamed:
            await emit(
                FailoverEvent(
                    **stamp(turn),
                    from_model=agent.runner_type,
                    to_model=agent.fallbacks[0],
                    reason=exc.reason,
                    message=exc.message,
                )
            )
            return None, dataclasses.replace(agent, runner_type="local", backend=None, models=agent.fallbacks)
        hint = exc.hint or (
            "add fallbacks to the agent's model ({primary, fallbacks}) to answer while it is down"
            if exc.failover
            else ""
        )
        raise ClawmeshError("MODEL_ERROR", f"{agent.runner_type}: {exc.message}", hint) from None
    backend: dict[str, object] = {"runner": agent.runner_type, "target": target}
    if result.remote_session:
        backend["session"] = result.remote_session
    if result.cost_usd is not None:
        backend["costUsd"] = result.cost_usd
    entries.append(
        TxAssistant(
            turn_id=turn.turn_id,
            seq=turn.seq,
            text=result.text,
            model=result.model or agent.runner_type,
            backend=backend,
        )
    )
    return result, None
