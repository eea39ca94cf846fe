"""Control commands, answered by the runner in the session's order (OpenClaw's chat commands).

The router recognises them for every surface (`command`/`commandArgs` in the message's
metadata) and acts on `/stop` at once (`stops.py`); here each is the turn's answer, stored and
replied like any turn's, exactly once:
- `/stop`: `⚙️ Agent was aborted.` (+ how many sub-agent runs were stopped).
- `/new`, `/reset`: the model context starts empty (the router gave the session a new id; the
  transcript keeps the old session's records); `✅ New session started.` / `✅ Session reset.`,
  or, with a text (`/new hello`), that text is the new session's first message to the model.
- `/status`: the session's agent, model, id, messages and tokens, without calling the model.
Commands answered without the model stay out of the model's context.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgspec

from clawmesh.config import AgentView
from clawmesh.sessions import SessionStore, TxAssistant
from clawmesh.wire import TurnRequest

from .finish import Completion
from .turn import TurnOutcome

__all__ = ["CommandResult", "answer_command"]


@dataclass(frozen=True)
class CommandResult:
    """`outcome`: the command's answer (no model call); else run `turn` (its text may be the
    command's argument now) from `previous` (its context emptied by a reset)."""

    turn: TurnRequest
    previous: Completion
    outcome: TurnOutcome | None = None


def _stopped_text(turn: TurnRequest) -> str:
    try:
        count = int(turn.inbound.metadata.get("stoppedSubagents", "0") or 0)
    except ValueError:
        count = 0
    text = "⚙️ Agent was aborted."
    if count > 0:
        text += f" Stopped {count} {'sub-agent' if count == 1 else 'sub-agents'}."
    return text


async def _status_text(store: SessionStore, turn: TurnRequest, agent: AgentView, previous: Completion) -> str:
    found = await store.get_session(turn.session_key)
    session_id = found[0].session_id if found is not None else "?"
    started = found[0].started_seq if found is not None else 0
    model = agent.models[0] if agent.backend is None and agent.models else agent.runner_type
    assistant = [e for e in previous[0].context if isinstance(e, TxAssistant)]
    tokens_in = sum(e.input_tokens for e in assistant)
    tokens_out = sum(e.output_tokens for e in assistant)
    return "\n".join(
        (
            f"🤖 Agent: {agent.id} · Model: {model}",
            f"🧵 Session: {turn.session_key}",
            f"🆔 Session id: {session_id}",
            # the messages before this one since the session began (commands included)
            f"💬 Messages: {max(turn.seq - started - 1, 0)}",
            f"🧮 Tokens in context: {tokens_in} in / {tokens_out} out",
        )
    )


async def answer_command(
    store: SessionStore, turn: TurnRequest, agent: AgentView, previous: Completion
) -> CommandResult | None:
    """What a command turn becomes; None for a message that is no command."""
    metadata = turn.inbound.metadata
    command = metadata.get("command")
    if command == "stop":
        return CommandResult(turn, previous, TurnOutcome(text=_stopped_text(turn), stop_reason="stop"))
    if command == "status":
        text = await _status_text(store, turn, agent, previous)
        return CommandResult(turn, previous, TurnOutcome(text=text, stop_reason="stop"))
    if command in ("new", "reset"):
        done, revision = previous
        fresh = (msgspec.structs.replace(done, context=[], has_context=True), revision)
        args = metadata.get("commandArgs", "")
        if args:
            return CommandResult(
                msgspec.structs.replace(turn, inbound=msgspec.structs.replace(turn.inbound, text=args)), fresh
            )
        text = "✅ Session reset." if command == "reset" else "✅ New session started."
        return CommandResult(turn, fresh, TurnOutcome(text=text, stop_reason="stop"))
    return None
