"""The runner's side of tool use: which tools the model is offered (tool policy), and running
each call on the agent's node. A denied, invalid or failed call becomes an error *result* the
model sees — it never ends the turn."""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout

from clawmesh.bus import ServiceContext, inject
from clawmesh.config import AgentView, Config, NodeSelector
from clawmesh.errors import best_effort
from clawmesh.nodes import NodeDirectory, pick_node, selector_text
from clawmesh.providers import ToolCall, ToolResultMessage, ToolSpec
from clawmesh.routing import is_subagent_session_key
from clawmesh.sandbox import resolve_sandbox
from clawmesh.tools import ToolPolicyResult, effective_tools, normalize_tool_name
from clawmesh.tools.specs import (
    IMPLEMENTED_TOOLS,
    TOOL_SCHEMAS,
    ExecArgs,
    ToolArgumentError,
    node_capability,
    validate_tool_arguments,
)
from clawmesh.wire import (
    DecodeFailure,
    ExecApprovalNotice,
    ExecApprovalRequested,
    ExecApprovalResolved,
    ToolCallEvent,
    ToolInvocation,
    ToolInvocationResult,
    ToolOutputChunk,
    ToolOutputEvent,
    ToolResultEvent,
    TurnEvent,
    TurnRequest,
    decode,
    encode_json,
)

from .events import stamp

__all__ = ["ToolBox"]

log = logging.getLogger("clawmesh.runner")

Emit = Callable[[TurnEvent], Awaitable[None]]


def _node_spec(agent: AgentView) -> str | dict[str, str] | None:
    node = agent.node
    if isinstance(node, NodeSelector):
        return dict(node.selector)
    return node


_Offer = tuple[ToolPolicyResult, tuple[ToolSpec, ...]]


def _offer(config: Config, agent_id: str, session_key: str, main_session_key: str) -> _Offer:
    """The effective tool policy (it depends on whether the session is sandboxed) and the tools
    offered to the model. Every turn needs them and only a few combinations exist per config
    version."""
    sandbox = config.derived(f"runner.sandbox:{agent_id}", lambda c: resolve_sandbox(c, agent_id))
    sandboxed = sandbox.applies_to(session_key, main_session_key)
    subagent = is_subagent_session_key(session_key)

    def build(c: Config) -> _Offer:
        policy = effective_tools(c, agent_id, sandboxed=sandboxed, subagent=subagent, tools=IMPLEMENTED_TOOLS)
        specs = tuple(
            ToolSpec(name=schema.name, description=schema.description, parameters=schema.parameters)
            for schema in TOOL_SCHEMAS.values()  # in IMPLEMENTED_TOOLS order
            if policy.allows(schema.name)
        )
        return policy, specs

    return config.derived(f"runner.tools:{agent_id}:{sandboxed}:{subagent}", build)


class ToolBox:
    def __init__(
        self,
        ctx: ServiceContext,
        agent: AgentView,
        turn: TurnRequest,
        config: Config,
        directory: NodeDirectory,
    ) -> None:
        self.ctx = ctx
        self.agent = agent
        self.turn = turn
        self.directory = directory
        self.policy, self.specs = _offer(config, agent.id, turn.session_key, turn.route.main_session_key)
        self.default_timeout = config.settings.exec.timeout
        self.invoke_margin = config.settings.nodes.invoke_margin
        # An exec may wait for an operator's approval first (the node-agent decides whether it
        # asks, from its own config and approvals document), never longer than a turn may run.
        self.approval_wait = min(agent.exec.approval_timeout, config.settings.runtime.turn_timeout)

    async def run(self, calls: Sequence[ToolCall], emit: Emit) -> list[ToolResultMessage]:
        """Run the calls one after another (their order can matter), streaming events."""
        results = []
        for call in calls:
            result = await self._run_one(call, emit)
            results.append(result)
        return results

    async def _run_one(self, call: ToolCall, emit: Emit) -> ToolResultMessage:
        turn = self.turn
        name = normalize_tool_name(call.name)
        node_id: str | None = None
        spec = _node_spec(self.agent)
        problem = ""
        if not self.policy.allows(name):
            removal = self.policy.removal(name)
            why = f" (removed by {removal.stage}: {removal.rule})" if removal else ""
            problem = f"tool '{call.name}' is not available to agent '{self.agent.id}'{why}"
        else:
            capability = node_capability(name)
            chosen, why_not = pick_node(
                await self.directory.statuses(), spec, capability=capability, prefer="local"
            )
            if chosen is None:
                # the directory is cached for a second: a node that announced itself since (just
                # started, or back after a restart) is not refused on a stale view
                chosen, why_not = pick_node(
                    await self.directory.statuses(fresh=True), spec, capability=capability, prefer="local"
                )
            if chosen is None:
                problem = f"cannot run {name}: {why_not}"
            else:
                node_id = chosen.node.node_id
        await emit(
            ToolCallEvent(**stamp(turn), call_id=call.id, name=name, arguments=call.arguments, node=node_id)
        )
        if node_id is not None:
            content, is_error = await self._invoke(node_id, name, call, emit, spec)
        else:
            content, is_error = problem, True
        await emit(
            ToolResultEvent(**stamp(turn), call_id=call.id, name=name, content=content, is_error=is_error)
        )
        return ToolResultMessage(tool_call_id=call.id, name=call.name, content=content, is_error=is_error)

    def _exec_timeout(self, call: ToolCall) -> float:
        """How long the command may run, to size the wait for the node's answer. Arguments the
        node will reject get the default: the rejection comes back at once anyway."""
        try:
            args = validate_tool_arguments("exec", call.arguments)
        except ToolArgumentError:
            return self.default_timeout
        match args:
            case ExecArgs(timeout=timeout) if timeout:
                return timeout
        return self.default_timeout

    async def _invoke(
        self, node_id: str, name: str, call: ToolCall, emit: Emit, spec: Any
    ) -> tuple[str, bool]:
        ctx, turn = self.ctx, self.turn
        invocation_id = uuid.uuid4().hex
        timeout = self._exec_timeout(call) if name == "exec" else 60.0
        output_subject = ctx.subjects.tool_output(ctx.instance, invocation_id) if name == "exec" else None
        inv = ToolInvocation(
            invocation_id=invocation_id,
            tool=name,
            arguments=call.arguments,
            agent_id=turn.agent_id,
            session_key=turn.session_key,
            main_session_key=turn.route.main_session_key,
            turn_id=turn.turn_id,
            timeout=timeout,
            output_subject=output_subject,
        )
        sub = None
        if output_subject is not None:

            async def relay(msg: Any) -> None:
                with contextlib.suppress(DecodeFailure):  # a garbled chunk: the result still comes
                    item = decode(msg.data, ToolOutputChunk | ExecApprovalNotice, msg.headers)
                    await emit(_relayed(item, turn, call.id))

            sub = await ctx.nc.subscribe(output_subject, cb=relay)
        data, headers = encode_json(inv)
        wait = timeout + self.invoke_margin + (self.approval_wait if name == "exec" else 0.0)
        where = f"node '{node_id}'" + (f" ({selector_text(spec)})" if isinstance(spec, dict) else "")
        try:
            reply = await ctx.nc.request(
                ctx.subjects.node_invoke(node_id),
                data,
                timeout=wait,
                headers=inject(headers),
            )
            result = decode(reply.data, ToolInvocationResult, reply.headers)
        except NoRespondersError:
            return f"cannot run {name}: {where} is offline (no node-agent answers for it)", True
        except (TimeoutError, NatsTimeout):
            return f"cannot run {name}: {where} did not answer within {wait:.0f}s", True
        except DecodeFailure as exc:
            return f"{where} sent an invalid reply: {exc}", True
        finally:
            if sub is not None:
                with best_effort(self.ctx.counters, "tool_output_unsubscribe", log=log):
                    await sub.unsubscribe()
        self.ctx.counters["tool_calls"] += 1
        if not result.ok:
            return f"{result.error_code or 'ERROR'}: {result.content}", True
        return result.content, False


def _relayed(item: ToolOutputChunk | ExecApprovalNotice, turn: TurnRequest, call_id: str) -> TurnEvent:
    """The turn event for what a node-agent streamed about a running call."""
    match item:
        case ExecApprovalNotice(phase="requested"):
            return ExecApprovalRequested(
                **stamp(turn),
                call_id=call_id,
                approval_id=item.approval_id,
                command=item.command,
                cwd=item.cwd,
                host=item.host,
                reason=item.reason,
                expires_at=item.expires_at,
            )
        case ExecApprovalNotice():
            return ExecApprovalResolved(
                **stamp(turn),
                call_id=call_id,
                approval_id=item.approval_id,
                decision=item.decision,
                resolved_by=item.resolved_by,
            )
    return ToolOutputEvent(**stamp(turn), call_id=call_id, stream=item.stream, text=item.text)
