"""The runner's side of tool use: which tools the model is offered (tool policy), and running
each call on the agent's node. A denied, invalid or failed call becomes an error *result* the
model sees — it never ends the turn."""

from __future__ import annotations

import asyncio
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
from clawmesh.federation import pick_remote_node, read_catalogues, remote_node_subject
from clawmesh.nodes import NodeDirectory, selector_text
from clawmesh.providers import ToolCall, ToolResultMessage, ToolSpec
from clawmesh.routing import get_subagent_depth, is_subagent_session_key
from clawmesh.sandbox import resolve_sandbox
from clawmesh.sessions import SpawnRecord
from clawmesh.tools import ToolPolicyResult, effective_tools, max_spawn_depth, normalize_tool_name
from clawmesh.tools.specs import (
    IMPLEMENTED_TOOLS,
    RUNNER_TOOLS,
    TOOL_SCHEMAS,
    ExecArgs,
    ToolArgumentError,
    node_capability,
    validate_tool_arguments,
)
from clawmesh.tools.web_fetch import fetch_settings
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

from .approval_prompt import ask_in_chat
from .events import stamp
from .message_tool import run_message
from .session_tools import SessionTools
from .web_tools import run_web_fetch

__all__ = ["ToolBox", "session_tool_policy"]

log = logging.getLogger("clawmesh.runner")

Emit = Callable[[TurnEvent], Awaitable[None]]


def _process_owner(name: str, arguments: dict[str, Any]) -> str | None:
    """The node a `process` call's session runs on: the node-agent puts its id in the session
    id (`<node>~<id>`)."""
    session_id = arguments.get("sessionId") if name == "process" else None
    if isinstance(session_id, str) and "~" in session_id:
        return session_id.rsplit("~", 1)[0] or None
    return None


def _node_spec(agent: AgentView) -> str | dict[str, str] | None:
    node = agent.node
    if isinstance(node, NodeSelector):
        return dict(node.selector)
    return node


_Offer = tuple[ToolPolicyResult, tuple[ToolSpec, ...]]


def _sandboxed(config: Config, agent_id: str, session_key: str, main_session_key: str) -> bool:
    sandbox = config.derived(f"runner.sandbox:{agent_id}", lambda c: resolve_sandbox(c, agent_id))
    return sandbox.applies_to(session_key, main_session_key)


def _offer(config: Config, agent_id: str, session_key: str, main_session_key: str, depth: int) -> _Offer:
    """The effective tool policy (it depends on whether the session is sandboxed, and on a
    sub-agent's depth) and the tools offered to the model. Every turn needs them and only a few
    combinations exist per config version."""
    sandboxed = _sandboxed(config, agent_id, session_key, main_session_key)
    subagent = is_subagent_session_key(session_key)
    depth = max(1, depth) if subagent else 0

    def build(c: Config) -> _Offer:
        policy = effective_tools(
            c, agent_id, sandboxed=sandboxed, subagent=subagent, spawn_depth=depth, tools=IMPLEMENTED_TOOLS
        )
        specs = tuple(
            ToolSpec(name=schema.name, description=schema.description, parameters=schema.parameters)
            for schema in TOOL_SCHEMAS.values()  # in IMPLEMENTED_TOOLS order
            if policy.allows(schema.name)
            and (schema.name != "web_fetch" or fetch_settings(c, agent_id).enabled)
        )
        return policy, specs

    return config.derived(f"runner.tools:{agent_id}:{sandboxed}:{subagent}:{depth}", build)


def session_tool_policy(
    config: Config, agent_id: str, session_key: str, main_session_key: str
) -> ToolPolicyResult:
    """The tool policy of a model's call in this session (`POST /tools/invoke` applies the same);
    a sub-agent session's depth is read from its key."""
    return _offer(config, agent_id, session_key, main_session_key, get_subagent_depth(session_key))[0]


class ToolBox:
    def __init__(
        self,
        ctx: ServiceContext,
        agent: AgentView,
        turn: TurnRequest,
        config: Config,
        directory: NodeDirectory,
        spawn: SpawnRecord | None = None,
    ) -> None:
        self.ctx = ctx
        self.agent = agent
        self.turn = turn
        self.config = config
        self.directory = directory
        self.spawn = spawn  # the session's own sub-agent run, when it is a child
        depth = spawn.depth if spawn is not None else 1
        self.policy, self.specs = _offer(
            config, agent.id, turn.session_key, turn.route.main_session_key, depth
        )
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
        region: str | None = None  # a node of another region of the federation
        spec = _node_spec(self.agent)
        problem = ""
        if (name in RUNNER_TOOLS and self.policy.allows(name)) or self._depth_refusal(name):
            return await self._run_here(call, name, emit)
        if not self.policy.allows(name):
            removal = self.policy.removal(name)
            why = f" (removed by {removal.stage}: {removal.rule})" if removal else ""
            problem = f"tool '{call.name}' is not available to agent '{self.agent.id}'{why}"
        else:
            capability = node_capability(name)
            owner = _process_owner(name, call.arguments)
            if owner is not None:
                node_id = owner  # a background session lives on the node that started it
            else:
                chosen, why_not = await self.directory.pick(self.agent.node, capability)
                if chosen is not None:
                    node_id = chosen.node.node_id
                elif isinstance(spec, dict) and spec and self.config.settings.gateway.region:
                    # no local node matches: a node another region of the federation exposes may
                    remote, why_remote = pick_remote_node(
                        await read_catalogues(self.ctx.kv["gateways"]), spec, capability
                    )
                    if remote is not None:
                        region, node_id = remote
                    else:
                        problem = f"cannot run {name}: {why_not}; {why_remote}"
                else:
                    problem = f"cannot run {name}: {why_not}"
        shown = f"{node_id}@{region}" if node_id is not None and region is not None else node_id
        await emit(
            ToolCallEvent(**stamp(turn), call_id=call.id, name=name, arguments=call.arguments, node=shown)
        )
        if node_id is not None:
            content, is_error = await self._invoke(node_id, name, call, emit, spec, region=region)
        else:
            content, is_error = problem, True
        await emit(
            ToolResultEvent(**stamp(turn), call_id=call.id, name=name, content=content, is_error=is_error)
        )
        return ToolResultMessage(tool_call_id=call.id, name=call.name, content=content, is_error=is_error)

    def _depth_refusal(self, name: str) -> bool:
        """A leaf sub-agent calling sessions_spawn gets OpenClaw's depth refusal, not the
        policy's (the policy removed the tool for exactly that reason)."""
        if name != "sessions_spawn" or self.spawn is None or self.policy.allows(name):
            return False
        removal = self.policy.removal(name)
        view = self.agent
        return (
            removal is not None
            and removal.rule == "sessions_spawn"
            and self.spawn.depth >= max_spawn_depth(self.config, view)
        )

    async def _run_here(self, call: ToolCall, name: str, emit: Emit) -> ToolResultMessage:
        """A session tool, web_fetch or message: run by this runner (they act on sessions or
        channels on the bus, or on the network, not on a node's files)."""
        turn = self.turn
        await emit(ToolCallEvent(**stamp(turn), call_id=call.id, name=name, arguments=call.arguments))
        if name == "web_fetch":
            content, is_error = await run_web_fetch(self.config, self.agent.id, dict(call.arguments))
        elif name == "message":
            content, is_error = await run_message(self.ctx, self.config, turn, call.id, dict(call.arguments))
        else:
            tools = SessionTools(
                self.ctx,
                self.agent,
                turn,
                self.config,
                spawn=self.spawn,
                sandboxed=_sandboxed(
                    self.config, self.agent.id, turn.session_key, turn.route.main_session_key
                ),
            )
            content, is_error = await tools.run(name, dict(call.arguments))
            self.ctx.counters["session_tool_calls"] += 1
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
        self, node_id: str, name: str, call: ToolCall, emit: Emit, spec: Any, *, region: str | None = None
    ) -> tuple[str, bool]:
        ctx, turn = self.ctx, self.turn
        invocation_id = uuid.uuid4().hex
        timeout = self._exec_timeout(call) if name == "exec" else 60.0
        if name == "process":  # a poll may wait up to its own timeout (ms) first
            wait = call.arguments.get("timeout")
            timeout += min(float(wait), 120_000.0) / 1000 if isinstance(wait, int | float) else 0.0
        arguments = call.arguments
        if name == "exec" and not self.policy.allows("process"):
            # OpenClaw: without `process`, exec runs synchronously and ignores yieldMs/background
            arguments = {k: v for k, v in arguments.items() if k not in ("background", "yieldMs")}
        # a node of another region streams on the request's reply (the only subject that
        # crosses back through the hub), a local one on this runner's own output subject
        streamed = name == "exec" and region is None
        output_subject = ctx.subjects.tool_output(ctx.instance, invocation_id) if streamed else None
        inv = ToolInvocation(
            invocation_id=invocation_id,
            tool=name,
            arguments=arguments,
            agent_id=turn.agent_id,
            session_key=turn.session_key,
            main_session_key=turn.route.main_session_key,
            turn_id=turn.turn_id,
            timeout=timeout,
            output_subject=output_subject,
            stream_reply=name == "exec" and region is not None,
        )

        async def relay_item(item: ToolOutputChunk | ExecApprovalNotice) -> None:
            await emit(_relayed(item, turn, call.id))
            if isinstance(item, ExecApprovalNotice) and item.phase == "requested":
                with best_effort(ctx.counters, "approval_prompt", log=log):
                    await ask_in_chat(ctx, self.config, turn, item, node_id)

        sub = None
        if output_subject is not None:

            async def relay(msg: Any) -> None:
                with contextlib.suppress(DecodeFailure):  # a garbled chunk: the result still comes
                    await relay_item(decode(msg.data, ToolOutputChunk | ExecApprovalNotice, msg.headers))

            sub = await ctx.nc.subscribe(output_subject, cb=relay)
        data, headers = encode_json(inv)
        wait = timeout + self.invoke_margin + (self.approval_wait if name == "exec" else 0.0)
        where = f"node '{node_id}'" + (f" of region {region}" if region else "")
        where += f" ({selector_text(spec)})" if isinstance(spec, dict) else ""
        subject = (
            remote_node_subject(ctx.subjects.prefix, region, node_id)
            if region
            else ctx.subjects.node_invoke(node_id)
        )
        try:
            if inv.stream_reply:
                result = await _streamed_request(ctx, subject, data, inject(headers), wait, relay_item)
            else:
                reply = await ctx.nc.request(subject, data, timeout=wait, headers=inject(headers))
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


async def _streamed_request(
    ctx: ServiceContext,
    subject: str,
    data: bytes,
    headers: dict[str, str],
    wait: float,
    relay: Callable[[ToolOutputChunk | ExecApprovalNotice], Awaitable[None]],
) -> ToolInvocationResult:
    """A request answered by several messages on its reply inbox: live output (relayed), then
    the result. Raises as `nc.request` does (no responders, timeout) and DecodeFailure."""
    inbox = ctx.nc.new_inbox()
    sub = await ctx.nc.subscribe(inbox)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    try:
        await ctx.nc.publish(subject, data, reply=inbox, headers=headers)
        while True:
            left = deadline - loop.time()
            if left <= 0:
                raise TimeoutError
            msg = await sub.next_msg(timeout=left)
            if msg.headers and msg.headers.get("Status") == "503":
                raise NoRespondersError
            item = decode(msg.data, ToolOutputChunk | ExecApprovalNotice | ToolInvocationResult, msg.headers)
            if isinstance(item, ToolInvocationResult):
                return item
            with best_effort(ctx.counters, "tool_output_relay", log=log):
                await relay(item)
    finally:
        with best_effort(ctx.counters, "tool_output_unsubscribe", log=log):
            await sub.unsubscribe()


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
