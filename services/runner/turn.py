"""One turn of the `local` runner: history + system prompt → model (with failover) ↔ tools → reply."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import msgspec

from clawmesh.config import AgentView, Config
from clawmesh.errors import ClawmeshError
from clawmesh.providers import (
    AssistantMessage,
    AuthProfiles,
    ChatMessage,
    Failover,
    Image,
    ProviderError,
    StreamStop,
    TextDelta,
    ToolCall,
    ToolResultMessage,
    ToolSpec,
    UserMessage,
    resolve_target,
    stream_with_failover,
)
from clawmesh.sessions import TranscriptEntry, TxAssistant, TxTool, TxUser
from clawmesh.wire import (
    ClientToolCall,
    FailoverEvent,
    TextDeltaEvent,
    TurnEvent,
    TurnOptions,
    TurnRequest,
)
from clawmesh.workspace import build_system_prompt

from .backends import Backend
from .chat_history import with_history
from .events import stamp
from .proxy import run_proxy_turn
from .tools import ToolBox

__all__ = ["TurnOutcome", "execute_turn", "to_chat_messages", "user_text"]

Emit = Callable[[TurnEvent], Awaitable[None]]


def user_text(error: ClawmeshError) -> str:
    """What the user reads when their turn failed (the reply text)."""
    return f"⚠️ {error.message}" + (f" — {error.hint}" if error.hint else "")


@dataclass
class TurnOutcome:
    text: str = ""
    model: str = ""
    usage: tuple[int, int] = (0, 0)
    # a turn that ends in an error the user is told about (never a crashed service)
    error: ClawmeshError | None = None
    stop_reason: str = ""
    # the model called tools the caller runs (TurnOptions.tools): the turn ends with them
    tool_calls: tuple[ClientToolCall, ...] = ()
    # the answer is kept where it was made, under the turn's id (`ProxyResult.kept`): asking
    # again gives the same, so the caller may have it before this gateway has recorded it
    kept: bool = False

    @classmethod
    def failed(cls, error: ClawmeshError) -> TurnOutcome:
        return cls(error=error)


def to_chat_messages(entries: Sequence[TranscriptEntry], limit: int) -> list[ChatMessage]:
    """Transcript → model context: the last `limit` messages, never starting inside a tool
    exchange (the APIs reject a tool result whose call is missing)."""
    out: list[ChatMessage] = []
    for e in reversed(entries):  # newest first: only the last `limit` are converted
        if limit and len(out) >= limit:
            break
        if isinstance(e, TxUser):
            out.append(UserMessage(text=e.text))
        elif isinstance(e, TxAssistant):
            calls = tuple(
                ToolCall(id=c["id"], name=c["name"], arguments=c.get("arguments") or {}) for c in e.tool_calls
            )
            out.append(AssistantMessage(text=e.text, tool_calls=calls))
        elif isinstance(e, TxTool):
            out.append(
                ToolResultMessage(
                    tool_call_id=e.tool_call_id, name=e.name, content=e.content, is_error=e.is_error
                )
            )
    out.reverse()
    start = 0
    while start < len(out) and not isinstance(out[start], UserMessage):
        start += 1
    return out[start:]


_AUTH: OrderedDict[str, AuthProfiles] = OrderedDict()
_AUTH_LIMIT: Final = 1024  # without a roster any agent id is an agent: bound what we keep


def _auth_for(agent: AgentView) -> AuthProfiles:
    """One per agentDir, the most recently used kept: it remembers credential cooldowns."""
    key = str(agent.agent_dir)
    auth = _AUTH.get(key)
    if auth is None:
        auth = _AUTH[key] = AuthProfiles.for_agent(agent)
        if len(_AUTH) > _AUTH_LIMIT:
            _AUTH.popitem(last=False)
    else:
        _AUTH.move_to_end(key)
    return auth


async def execute_turn(
    turn: TurnRequest,
    agent: AgentView,
    config: Config,
    history: list[TranscriptEntry],
    entries: list[TranscriptEntry],
    emit: Emit,
    tools: ToolBox,
    *,
    gateway: Backend | None = None,
    synadia: Backend | None = None,
    caller: str = "",
    again: bool = False,
) -> TurnOutcome:
    """Run the turn; append what it produced (assistant messages, tool results) to `entries`.
    A proxy agent's turn goes to its backend (`proxy.py`); when that is down the agent's
    fallbacks answer here, as a local turn. `caller`, `again`: see `ProxyTurn`."""
    if agent.runner_type != "local":
        answered, fallback = await run_proxy_turn(
            turn,
            agent,
            config,
            history,
            entries,
            emit,
            gateway=gateway,
            synadia=synadia,
            caller=caller,
            again=again,
        )
        if answered is not None:
            return TurnOutcome(
                text=answered.text,
                model=answered.model,
                usage=answered.usage,
                stop_reason="end_turn",
                kept=answered.kept,
            )
        assert fallback is not None
        agent = fallback
    return await _model_turn(turn, agent, config, history, entries, emit, tools)


async def _model_turn(
    turn: TurnRequest,
    agent: AgentView,
    config: Config,
    history: list[TranscriptEntry],
    entries: list[TranscriptEntry],
    emit: Emit,
    tools: ToolBox,
) -> TurnOutcome:
    """A turn answered by the agent's models: model calls and tool runs until the model ends
    it (or `tool_iterations` are used up)."""
    max_iterations = agent.tool_iterations
    options = turn.inbound.options or _NO_OPTIONS
    system, messages = _prompt(turn, agent, history, config.settings.runtime.history_limit, options)
    auth = _auth_for(agent)
    chain = (options.model,) if options.model else agent.models
    specs, client = _offered_tools(tools.specs, options)
    used_model = chain[0]
    usage_in = usage_out = 0
    for _ in range(max_iterations):
        text, stop, used_model = await _model_reply(
            turn,
            chain,
            agent,
            config,
            messages,
            auth=auth,
            system=system,
            specs=specs,
            emit=emit,
            model=used_model,
            options=options,
        )
        usage_in += stop.usage.input_tokens
        usage_out += stop.usage.output_tokens
        calls = stop.tool_calls
        if any(c.name in client for c in calls):
            return _client_calls(turn, text, calls, client, entries, used_model, (usage_in, usage_out))
        entries.append(
            TxAssistant(
                turn_id=turn.turn_id,
                seq=turn.seq,
                text=text,
                tool_calls=[{"id": c.id, "name": c.name, "arguments": c.arguments} for c in calls],
                model=used_model,
                api=_api_of(config, used_model),
                stop_reason=stop.stop_reason,
                input_tokens=stop.usage.input_tokens,
                output_tokens=stop.usage.output_tokens,
            )
        )
        messages.append(AssistantMessage(text=text, tool_calls=calls))
        if not calls:
            if client and options.tool_choice not in (None, "auto"):
                # OpenClaw's contract: a required or pinned client tool must be called
                raise ClawmeshError(
                    "MODEL_ERROR",
                    f"tool_choice {options.tool_choice!r} requires a call of a client tool; "
                    "the model answered without one",
                )
            return TurnOutcome(
                text=text, model=used_model, usage=(usage_in, usage_out), stop_reason=stop.stop_reason
            )
        for result in await tools.run(calls, emit):
            entries.append(
                TxTool(
                    turn_id=turn.turn_id,
                    seq=turn.seq,
                    tool_call_id=result.tool_call_id,
                    name=result.name,
                    content=result.content,
                    is_error=result.is_error,
                )
            )
            messages.append(result)
    raise ClawmeshError(
        "TOOL_LOOP_LIMIT",
        f"stopped after {max_iterations} model/tool round trips",
        "raise tools.maxIterations (per agent or global) or runtime.toolIterations",
    )


def _prompt(
    turn: TurnRequest, agent: AgentView, history: list[TranscriptEntry], limit: int, options: TurnOptions
) -> tuple[str, list[ChatMessage]]:
    """The system prompt (the agent's, then the caller's `system`) and the messages: the
    session's history within `limit`, then the turn's text (after the group's chatter since the
    last answer, when ingress kept some) with its images."""
    identity = agent.entry.identity
    system = build_system_prompt(
        agent.workspace,
        identity_name=identity.name if identity else None,
        identity_emoji=identity.emoji if identity else None,
        override=agent.entry.system_prompt_override,
    )
    if options.system:
        system = f"{system}\n\n{options.system}" if system else options.system
    images = tuple(
        Image(mime=a.mime, data=a.data)
        for a in turn.inbound.attachments
        if a.data is not None and a.mime.startswith("image/")
    )
    text = with_history(turn.inbound.text, turn.inbound.history)
    return system, [*to_chat_messages(history, limit), UserMessage(text=text, images=images)]


_NO_OPTIONS: Final = TurnOptions()


def _api_of(config: Config, ref: str) -> str:
    """The provider API that answered (kept in the transcript: exports to OpenClaw name it)."""
    try:
        return resolve_target(config, ref).api
    except ProviderError:
        return ""


def _offered_tools(own: Sequence[ToolSpec], options: TurnOptions) -> tuple[list[ToolSpec], frozenset[str]]:
    """The agent's tools and the caller's (`tool_choice: none` offers none of the caller's, a
    pinned function only that one), and the names of the caller's tools offered."""
    if not options.tools or options.tool_choice == "none":
        return list(own), frozenset()
    pinned = options.tool_choice not in (None, "auto", "required")
    client = [t for t in options.tools if not pinned or t.name == options.tool_choice]
    clash = {t.name for t in own} & {t.name for t in client}
    if clash:
        raise ClawmeshError(
            "INVALID_REQUEST",
            f"client tools {', '.join(sorted(clash))} have the names of the agent's own tools",
            "rename them",
        )
    specs = [
        ToolSpec(
            name=t.name,
            description=t.description,
            parameters=t.parameters or {"type": "object", "properties": {}},
        )
        for t in client
    ]
    return [*own, *specs], frozenset(t.name for t in client)


def _client_calls(
    turn: TurnRequest,
    text: str,
    calls: Sequence[ToolCall],
    client: frozenset[str],
    entries: list[TranscriptEntry],
    model: str,
    usage: tuple[int, int],
) -> TurnOutcome:
    """The model called the caller's tools: the turn ends, they go back to the caller, who
    sends their results in its next request. The transcript keeps the calls as text (their
    results come back as text too, see the ingress' prompt): a call without its result
    would make the next model call invalid. Calls of the agent's own tools in the same
    response are not run."""
    mine = [c for c in calls if c.name in client]
    out = tuple(
        ClientToolCall(id=c.id, name=c.name, arguments=msgspec.json.encode(c.arguments).decode())
        for c in mine
    )
    rendered = "\n".join(f"tool_call id={c.id} name={c.name} arguments={c.arguments}" for c in out)
    entries.append(
        TxAssistant(
            turn_id=turn.turn_id,
            seq=turn.seq,
            text="\n".join(part for part in (text, rendered) if part),
            tool_calls=[],
            model=model,
        )
    )
    return TurnOutcome(text=text, model=model, usage=usage, stop_reason="tool_use", tool_calls=out)


async def _model_reply(
    turn: TurnRequest,
    chain: Sequence[str],
    agent: AgentView,
    config: Config,
    messages: list[ChatMessage],
    *,
    auth: AuthProfiles,
    system: str,
    specs: Sequence[ToolSpec],
    emit: Emit,
    model: str,
    options: TurnOptions,
) -> tuple[str, StreamStop, str]:
    """One model call (with failover), its text and failovers emitted as they stream: the reply
    text, how the stream stopped, and the model now answering (`model` unless it failed over)."""
    parts: list[str] = []
    stop: StreamStop | None = None
    try:
        async for event in stream_with_failover(
            chain,
            messages,
            config=config,
            auth=auth,
            system=system,
            tools=specs,
            timeout=agent.model_timeout,
            **_sampling(options),
        ):
            if isinstance(event, TextDelta):
                parts.append(event.text)
                await emit(TextDeltaEvent(**stamp(turn), text=event.text))
            elif isinstance(event, Failover):
                model = event.to_ref
                await emit(
                    FailoverEvent(
                        **stamp(turn),
                        from_model=event.from_ref,
                        to_model=event.to_ref,
                        reason=event.reason,
                        message=event.message,
                    )
                )
            elif isinstance(event, StreamStop):
                stop = event
    except ProviderError as exc:
        raise ClawmeshError("MODEL_ERROR", str(exc), _hint_for(exc)) from None
    if stop is None:
        raise ClawmeshError("MODEL_ERROR", "the model stream ended without a stop event")
    return "".join(parts), stop, model


def _sampling(options: TurnOptions) -> dict[str, Any]:
    """The caller's sampling fields for `stream_with_failover`, only those it set."""
    fields: dict[str, Any] = {
        "temperature": options.temperature,
        "top_p": options.top_p,
        # `none` withholds the caller's tools only; the agent keeps its own
        "tool_choice": None if options.tool_choice == "none" else options.tool_choice,
    }
    if options.max_tokens is not None:
        fields["max_tokens"] = options.max_tokens
    if options.stop:
        fields["stop"] = tuple(options.stop)
    return fields


def _hint_for(exc: ProviderError) -> str:
    if exc.reason == "auth":
        return "check the API key (env ANTHROPIC_API_KEY / OPENAI_API_KEY or the agent's auth-profiles.json)"
    if exc.reason == "model_not_found":
        return "check the model id in the agent's model setting"
    if exc.reason in ("rate_limit", "overloaded", "timeout", "connection", "server"):
        return "add fallbacks to the agent's model ({primary, fallbacks}) to fail over automatically"
    return ""
