"""`POST /tools/invoke` on the runner's side: one tool call for an agent's session from outside a
turn. The ingress resolves agent and session and asks on `cm.tools.<agent>.invoke`; the runners
answer as a queue group, so the ingress itself never reaches a node (its NATS permissions stay
narrow). The call goes through the same gates as a model's call — the agent's tool policy in
that session (profiles, allow/deny, provider, sandbox and sub-agent stages), argument
validation, the node's sandbox and exec policy (an exec that asks waits for an operator) — plus
the HTTP surface's deny list (`clawmesh.tools.http_tool_refusal`)."""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any, Final

from nats.aio.msg import Msg
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout

from clawmesh.bus import ServiceContext, inject
from clawmesh.errors import best_effort
from clawmesh.nodes import NodeDirectory
from clawmesh.tools import http_tool_refusal, normalize_tool_name
from clawmesh.tools.specs import (
    IMPLEMENTED_TOOLS,
    RUNNER_TOOLS,
    ExecArgs,
    ToolArgumentError,
    node_capability,
    validate_tool_arguments,
)
from clawmesh.wire import (
    DecodeFailure,
    DirectToolInvocation,
    DirectToolOutcome,
    DirectToolResult,
    ErrorCode,
    ToolInvocation,
    ToolInvocationResult,
    decode,
    encode_json,
)

from .tools import session_tool_policy

__all__ = ["DirectTools"]

log = logging.getLogger("clawmesh.runner")

QUEUE: Final = "runner"
# A node's refusal that is the caller's to fix (400, OpenClaw's ToolInputError), and one that is
# a policy decision (403 tool_call_blocked); anything else is a 500.
_INPUT_ERRORS: Final[frozenset[str]] = frozenset(
    {
        "INVALID_ARGUMENTS",
        "INVALID_REQUEST",
        "INVALID_PATH",
        "OUTSIDE_WORKSPACE",
        "READ_ONLY",
        "IS_DIRECTORY",
        "NOT_A_DIRECTORY",
        "NOT_FOUND",
        "BINARY",
        "NO_MATCH",
        "AMBIGUOUS",
        "INVALID_PATTERN",
        "NOT_REGULAR",
        "PATH_CHANGED",
        "ALREADY_EXISTS",
    }
)
_BLOCKED: Final[frozenset[str]] = frozenset({"EXEC_DENIED", "APPROVAL_DENIED", "APPROVAL_TIMEOUT"})


def _not_available(request: DirectToolInvocation, tool: str) -> DirectToolResult:
    return DirectToolResult(
        request_id=request.request_id, outcome="not_found", message=f"Tool not available: {tool}"
    )


class DirectTools:
    """Serves `cm.tools.*.invoke` for the runner (queue group `runner`)."""

    def __init__(self, ctx: ServiceContext, directory: NodeDirectory) -> None:
        self.ctx = ctx
        self.directory = directory
        self._tasks: set[asyncio.Task[None]] = set()
        self._sub: Any = None

    async def start(self) -> None:
        self._sub = await self.ctx.nc.subscribe(
            self.ctx.subjects.tools_invokes_all, queue=QUEUE, cb=self._on_request
        )

    async def stop(self, timeout: float) -> None:
        if self._sub is not None:
            with best_effort(self.ctx.counters, "tools_invoke_unsubscribe", log=log):
                await self._sub.unsubscribe()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=timeout)

    async def _on_request(self, msg: Msg) -> None:
        # nats-py runs a subscription's callbacks one at a time: each call runs in its own task
        task = asyncio.create_task(self._serve(msg))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, msg: Msg) -> None:
        try:
            request = decode(msg.data, DirectToolInvocation, msg.headers)
        except DecodeFailure as exc:
            result = DirectToolResult(
                request_id="", outcome="invalid", message=str(exc), error_code="INVALID_MESSAGE"
            )
        else:
            try:
                result = await self.run(request)
            except Exception as exc:  # never leave the caller without an answer
                log.exception("runner: tools.invoke %s failed unexpectedly", request.request_id)
                result = DirectToolResult(
                    request_id=request.request_id,
                    outcome="failed",
                    message=f"tool execution failed ({type(exc).__name__})",
                    error_code="INTERNAL_ERROR",
                )
        if msg.reply:
            data, headers = encode_json(result)
            with best_effort(self.ctx.counters, "tools_invoke_reply", log=log):
                await self.ctx.nc.publish(msg.reply, data, headers=headers)

    async def run(self, request: DirectToolInvocation) -> DirectToolResult:
        config = self.ctx.holder.current
        agent = config.agent_view(request.agent_id)
        name = normalize_tool_name(request.tool)
        if agent is None:
            return DirectToolResult(
                request_id=request.request_id,
                outcome="invalid",
                message=f'Unknown agent id "{request.agent_id}"',
                error_code="UNKNOWN_AGENT",
            )
        refusal = http_tool_refusal(config, name)
        policy = session_tool_policy(
            config, agent.id, request.session_key, request.main_session_key or request.session_key
        )
        # the sessions_* tools run inside a turn (runner/tools.py), not on a node: not over HTTP yet
        node_tool = name in IMPLEMENTED_TOOLS and name not in RUNNER_TOOLS
        if not node_tool or refusal is not None or not policy.allows(name):
            removal = policy.removal(name)
            why = refusal or (
                f"{removal.stage}: {removal.rule}" if removal else "not available over HTTP in clawmesh"
            )
            log.info("tools.invoke: %s refused for agent %s (%s)", name, agent.id, why)
            self.ctx.counters["tools_invoke_refused"] += 1
            return _not_available(request, request.tool)
        try:
            args = validate_tool_arguments(name, request.arguments)
        except ToolArgumentError as exc:
            return DirectToolResult(
                request_id=request.request_id,
                outcome="invalid",
                message=str(exc),
                error_code="INVALID_ARGUMENTS",
            )
        chosen, why_not = await self.directory.pick(agent.node, node_capability(name))
        if chosen is None:
            return DirectToolResult(
                request_id=request.request_id,
                outcome="failed",
                message=f"cannot run {name}: {why_not}",
                error_code="CAPABILITY_MISSING",
            )
        timeout = config.settings.exec.timeout
        if isinstance(args, ExecArgs) and args.timeout:
            timeout = args.timeout
        if name != "exec":
            timeout = 60.0
        approval_wait = (
            min(agent.exec.approval_timeout, config.settings.runtime.turn_timeout) if name == "exec" else 0.0
        )
        return await self._invoke(request, chosen.node.node_id, name, timeout, approval_wait)

    async def _invoke(
        self, request: DirectToolInvocation, node_id: str, name: str, timeout: float, approval_wait: float
    ) -> DirectToolResult:
        ctx = self.ctx
        config = ctx.holder.current
        inv = ToolInvocation(
            invocation_id=uuid.uuid4().hex,
            tool=name,
            arguments=request.arguments,
            agent_id=request.agent_id,
            session_key=request.session_key,
            main_session_key=request.main_session_key,
            turn_id=f"http-{request.request_id}",
            timeout=timeout,
        )
        data, headers = encode_json(inv)
        wait = timeout + config.settings.nodes.invoke_margin + approval_wait
        failure: tuple[str, ErrorCode] | None = None
        try:
            reply = await ctx.nc.request(
                ctx.subjects.node_invoke(node_id), data, timeout=wait, headers=inject(headers)
            )
            result = decode(reply.data, ToolInvocationResult, reply.headers)
        except NoRespondersError:
            failure = (
                f"cannot run {name}: node '{node_id}' is offline (no node-agent answers for it)",
                "CAPABILITY_MISSING",
            )
        except (TimeoutError, NatsTimeout):
            failure = f"cannot run {name}: node '{node_id}' did not answer within {wait:.0f}s", "TIMEOUT"
        except DecodeFailure as exc:
            failure = f"node '{node_id}' sent an invalid reply: {exc}", "INTERNAL_ERROR"
        if failure is not None:
            return DirectToolResult(
                request_id=request.request_id, outcome="failed", message=failure[0], error_code=failure[1]
            )
        ctx.counters["tools_invoked"] += 1
        common: dict[str, Any] = {
            "request_id": request.request_id,
            "node": result.node or node_id,
            "sandboxed": result.sandboxed,
            "exit_code": result.exit_code,
            "truncated": result.truncated,
            "timed_out": result.timed_out,
        }
        if result.ok:
            return DirectToolResult(outcome="ok", content=result.content, **common)
        code = result.error_code or "INTERNAL_ERROR"
        outcome: DirectToolOutcome = (
            "invalid" if code in _INPUT_ERRORS else "blocked" if code in _BLOCKED else "failed"
        )
        return DirectToolResult(outcome=outcome, message=result.content, error_code=code, **common)
