"""node-agent: lends one machine's capabilities (exec, files, Docker sandboxes) to agents.

It announces itself in the `nodes` KV bucket (capabilities, labels, resources, sandboxes) at
every heartbeat and answers tool invocations on `cm.node.<node>.invoke`. Where a tool runs is
decided here, from this node's copy of the config: in the agent's sandbox when its sandbox
mode applies to the session — and then never on the host, whatever fails — else on the host,
confined to the agent's workspace.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shlex
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Final, assert_never

import msgspec
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.micro.request import Request

from clawmesh import __version__
from clawmesh.bus import ServiceContext, consumer_span, inject, wait_for_stop
from clawmesh.config import AgentView, Config
from clawmesh.errors import best_effort
from clawmesh.execpolicy import (
    ApprovalRecord,
    ApprovalsFile,
    ApprovalsFileError,
    ApprovalStore,
    Verdict,
    allow_always_entries,
    evaluate,
    new_approval_id,
)
from clawmesh.federation import remote_node_subject
from clawmesh.ids import Id
from clawmesh.media import STAGE_MEDIA_TOOL, StageMediaArgs, media_store
from clawmesh.nodes import NodeAnnouncement, read_resources
from clawmesh.routing import build_agent_main_session_key
from clawmesh.sandbox import (
    EffectiveSandbox,
    SandboxError,
    SandboxInfo,
    SandboxManager,
    SandboxUnavailable,
    container_workdir,
    resolve_sandbox,
)
from clawmesh.tools.files import FileToolError, Workspace
from clawmesh.tools.host_exec import blocked_env_name, host_environment, resolve_run_as, run_on_host
from clawmesh.tools.processes import ProcessRegistry
from clawmesh.tools.specs import (
    ApplyPatchArgs,
    EditArgs,
    ExecArgs,
    FileToolArgs,
    GlobArgs,
    LsArgs,
    ProcessArgs,
    ReadArgs,
    RunnerToolArgs,
    ToolArgs,
    ToolArgumentError,
    WriteArgs,
    node_capability,
    validate_tool_arguments,
)
from clawmesh.wire import (
    DecodeFailure,
    ErrorCode,
    ExecApprovalNotice,
    ToolInvocation,
    ToolInvocationResult,
    ToolOutputChunk,
    decode,
    encode_json,
    encode_token,
)

from .background import process_action, start_background
from .media import stage_files

__all__ = ["NodeAgent", "NodeAgentOptions"]

log = logging.getLogger("clawmesh.node-agent")


class _SandboxRecreate(msgspec.Struct, kw_only=True, rename="camel"):
    """`clawmesh sandbox recreate`'s request on `cm.ctl.sandbox.recreate`: one agent's
    sandboxes, or all of this node's."""

    agent_id: Id | None = None
    all: bool = False


# Live exec output streamed to another region: at most this many chunks per call
_REMOTE_CHUNKS: Final = 256
_REMOTE_CHUNKS_NOTE: Final = "\n[live output ends here; the result has all of it]\n"

MAX_EXEC_TIMEOUT = 1800.0
DEFAULT_CAPABILITIES = ("exec", "files", "sandbox")


@dataclass(frozen=True)
class NodeAgentOptions:
    """Settings of one node-agent that come from its command line, not the config: `clawmesh up`
    makes the local machine node `local`; `clawmesh service node-agent --node-id … --label k=v`
    name their own."""

    node_id: str | None = None  # None: nodes.local.id, else the hostname
    labels: Mapping[str, str] = field(default_factory=dict)  # added to (and override) nodes.local.labels


class NodeAgent:
    """One machine's node: announces its presence and capabilities, and runs the tool calls
    that runners send to it (on the host, confined, or in the agent's sandbox)."""

    name: ClassVar[str] = "node-agent"

    def __init__(self, ctx: ServiceContext, options: NodeAgentOptions | None = None) -> None:
        options = options or NodeAgentOptions()
        self.ctx = ctx
        config = ctx.holder.current
        nodes = config.document.nodes
        local = nodes.local if nodes else None
        self.node_id = options.node_id or (local.id if local and local.id else None) or socket.gethostname()
        self.labels = {**(local.labels if local and local.labels else {}), **options.labels}
        region = config.settings.gateway.region
        if region and "region" not in self.labels:  # selectors may name a region: {region: "sg"}
            self.labels["region"] = region
        self.wanted = tuple(local.capabilities) if local and local.capabilities else DEFAULT_CAPABILITIES
        self.heartbeat = config.settings.nodes.heartbeat_seconds
        self.capabilities: list[str] = [c for c in self.wanted if c != "sandbox"]
        self.docker_problem = ""
        self.sandboxes = SandboxManager(state_dir=config.state_dir, node_id=self.node_id)
        # host-local exec policy and allowlists (OpenClaw's exec-approvals.json), and requests
        self.approvals_file = ApprovalsFile(config.state_dir)
        self.approvals = ApprovalStore(ctx.approvals)
        self.processes = ProcessRegistry()  # background exec sessions (the `process` tool)
        self.media = media_store(ctx.js, ctx.subjects.prefix)  # chat files to stage (clawmesh.media)
        self.kv = ctx.presence
        self.key = encode_token(self.node_id)
        self.started_at = time.time()
        self._slots = asyncio.Semaphore(32)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._beat: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._remote_sub: Subscription | None = None  # the federation's subject, when exposed

    # --- lifecycle ----------------------------------------------------------------------
    async def start(self) -> None:
        await self._check_docker()
        if "sandbox" in self.capabilities:
            # stale containers only cost resources; they are reaped again next start
            with best_effort(self.ctx.counters, "sandbox_reap", log=log):
                reaped = await self.sandboxes.reap_stale(self.ctx.holder.current)
                if reaped:
                    log.info("node %s: removed %d stale sandbox container(s)", self.node_id, reaped)
        subject = self.ctx.subjects.node_invoke(self.node_id)
        self._sub = await self.ctx.nc.subscribe(subject, queue=f"node-{self.key}", cb=self._on_invoke)
        gw = self.ctx.holder.current.settings.gateway
        if gw.region and ("*" in gw.expose_nodes or self.node_id in gw.expose_nodes):
            # other regions' agents may run tools here (docs/federation.md); this node's own exec
            # policy and approvals apply to them as to local agents
            remote = remote_node_subject(self.ctx.subjects.prefix, gw.region, self.node_id)
            self._remote_sub = await self.ctx.nc.subscribe(
                remote, queue=f"node-{self.key}", cb=self._on_invoke
            )
        await self.ctx.nc.flush()
        await self._announce()
        self._beat = asyncio.create_task(self._heartbeat_forever(), name="node-heartbeat")
        log.info("node %s serving %s (capabilities: %s)", self.node_id, subject, ",".join(self.capabilities))

    async def stop(self, timeout: float) -> None:
        counters = self.ctx.counters
        self._stopping.set()
        with best_effort(counters, "invoke_unsubscribe", log=log):
            await self._sub.unsubscribe()
            if self._remote_sub is not None:
                await self._remote_sub.unsubscribe()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=timeout)
        if self._beat is not None:
            self._beat.cancel()
        # without the delete the node shows offline after 3 missed beats instead of at once
        with best_effort(counters, "presence_delete", log=log):
            await self.kv.delete(self.key)
        with best_effort(counters, "sandboxes_close", log=log):
            await self.sandboxes.close()
        with best_effort(counters, "processes_close", log=log):
            await self.processes.close()

    def status(self) -> dict[str, Any]:
        return {
            "node": self.node_id,
            "capabilities": ",".join(self.capabilities),
            "in_flight": len(self._tasks),
        }

    def endpoints(self) -> list[tuple[str, str, Any]]:
        """`clawmesh sandbox list|recreate` ask every node-agent."""
        return [
            ("sandbox-list", self.ctx.subjects.control("sandbox.list"), self._sandbox_list),
            ("sandbox-recreate", self.ctx.subjects.control("sandbox.recreate"), self._sandbox_recreate),
        ]

    async def _sandbox_list(self, req: Request) -> None:
        body: dict[str, Any] = {"node": self.node_id, "sandboxes": []}
        try:
            body["sandboxes"] = [
                {
                    "name": s.name,
                    "agentId": s.agent_id,
                    "sessionKey": s.session_key,
                    "scope": s.scope,
                    "status": s.status,
                    "image": s.image,
                    "configHash": s.config_hash,
                }
                for s in await self.sandboxes.list()
            ]
        except SandboxUnavailable as exc:
            body["error"] = str(exc)
        await req.respond(json.dumps(body).encode())

    async def _sandbox_recreate(self, req: Request) -> None:
        body: dict[str, Any] = {"node": self.node_id, "removed": 0}
        try:
            ask = msgspec.json.decode(req.data or b"{}", type=_SandboxRecreate)
        except msgspec.DecodeError as exc:  # `"all": "false"` must not read as all
            body["error"] = f"sandbox recreate: {exc}"
        else:
            try:
                body["removed"] = await self.sandboxes.remove(agent_id=ask.agent_id, all=ask.all)
            except (SandboxUnavailable, ValueError) as exc:
                body["error"] = str(exc)
        await req.respond(json.dumps(body).encode())

    async def _check_docker(self) -> None:
        if "sandbox" not in self.wanted:
            return
        try:
            await self.sandboxes.list()
        except SandboxUnavailable as exc:
            self.docker_problem = str(exc)
            if "sandbox" in self.capabilities:
                self.capabilities.remove("sandbox")
            return
        self.docker_problem = ""
        if "sandbox" not in self.capabilities:
            self.capabilities.append("sandbox")

    async def _announce(self) -> None:
        names: list[str] = []
        if "sandbox" in self.capabilities:
            # the announcement goes out anyway, without the sandbox names
            with best_effort(self.ctx.counters, "sandbox_list", log=log):
                names = [s.name for s in await self.sandboxes.list()]
        announcement = NodeAnnouncement(
            node_id=self.node_id,
            instance=self.ctx.instance,
            version=__version__,
            capabilities=list(self.capabilities),
            labels=self.labels,
            resources=read_resources(),
            sandboxes=names,
            heartbeat_seconds=self.heartbeat,
            started_at=self.started_at,
            last_seen=time.time(),
            hostname=socket.gethostname(),
            docker=self.docker_problem,
        )
        data, _ = encode_json(announcement)
        await self.kv.put(self.key, data)

    async def _heartbeat_forever(self) -> None:
        beats = 0
        while not self._stopping.is_set():
            await wait_for_stop(self._stopping, self.heartbeat)
            if self._stopping.is_set():
                return
            beats += 1
            try:
                if beats % 12 == 0:  # Docker can come and go: look again now and then
                    await self._check_docker()
                if beats % 120 == 0 and "sandbox" in self.capabilities:
                    await self.sandboxes.prune()
                await self._announce()
            except Exception as exc:
                log.warning("node %s: heartbeat failed: %s", self.node_id, exc)

    # --- invocations --------------------------------------------------------------------
    async def _on_invoke(self, msg: Msg) -> None:
        # nats-py runs callbacks one at a time per subscription: run each invocation in a task.
        task = asyncio.create_task(self._serve(msg))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, msg: Msg) -> None:
        async with self._slots:
            try:
                inv = decode(msg.data, ToolInvocation, msg.headers)
            except DecodeFailure as exc:
                await self.ctx.dead_letter(msg.subject, str(exc), msg.data, msg.headers)
                if msg.reply:
                    await self._reply(
                        msg,
                        ToolInvocationResult(
                            invocation_id="",
                            ok=False,
                            error_code="INVALID_REQUEST",
                            content=str(exc),
                            node=self.node_id,
                        ),
                    )
                return
            if msg.subject != self.ctx.subjects.node_invoke(self.node_id):
                # from another region: a subject it names would be one of this region's private
                # ones; its live output goes back only on the request's reply (docs/federation.md)
                inv.output_subject = msg.reply if inv.stream_reply and msg.reply else None
                if inv.tool == STAGE_MEDIA_TOOL:  # this region's chat files are its own
                    if msg.reply:
                        why = "stage_media is served to this region's runners only"
                        await self._reply(msg, self._fail(inv, "PERMISSION_DENIED", why))
                    return
            with consumer_span("cm.node.invoke", msg.subject, msg.headers, **{"clawmesh.tool": inv.tool}):
                started = time.monotonic()
                try:
                    result = await self._invoke(inv)
                except Exception as exc:  # a tool failure is a result, never a crashed node
                    log.exception("node %s: %s failed", self.node_id, inv.tool)
                    result = ToolInvocationResult(
                        invocation_id=inv.invocation_id,
                        ok=False,
                        error_code="INTERNAL_ERROR",
                        content=f"{type(exc).__name__}: {exc}",
                    )
                result.node = self.node_id
                result.duration = time.monotonic() - started
                self.ctx.counters["invocations"] += 1
                if not result.ok:
                    self.ctx.counters["invocation_errors"] += 1
                if msg.reply:
                    await self._reply(msg, result)

    async def _reply(self, msg: Msg, result: ToolInvocationResult) -> None:
        data, headers = encode_json(result)
        await self.ctx.nc.publish(msg.reply, data, headers=inject(headers))

    def _fail(
        self, inv: ToolInvocation, code: ErrorCode, message: str, *, sandboxed: bool = False
    ) -> ToolInvocationResult:
        return ToolInvocationResult(
            invocation_id=inv.invocation_id, ok=False, error_code=code, content=message, sandboxed=sandboxed
        )

    async def _invoke(self, inv: ToolInvocation) -> ToolInvocationResult:
        config = self.ctx.holder.current
        agent = config.agent_view(inv.agent_id)
        if agent is None:
            return self._fail(
                inv, "UNKNOWN_AGENT", f"agent '{inv.agent_id}' is not configured on node {self.node_id}"
            )
        capability = "files" if inv.tool == STAGE_MEDIA_TOOL else node_capability(inv.tool)
        if capability not in self.capabilities:
            return self._fail(inv, "CAPABILITY_MISSING", f"node {self.node_id} does not offer {capability}")
        args: ToolArgs | StageMediaArgs
        try:
            if inv.tool == STAGE_MEDIA_TOOL:  # a turn's chat files, staged where its tools look
                args = msgspec.convert(inv.arguments, StageMediaArgs)
            else:
                args = validate_tool_arguments(inv.tool, inv.arguments)
        except msgspec.ValidationError as exc:
            return self._fail(inv, "INVALID_ARGUMENTS", f"{inv.tool}: {exc}")
        except ToolArgumentError as exc:
            return self._fail(inv, exc.code, str(exc))
        if isinstance(args, RunnerToolArgs):
            return self._fail(inv, "UNKNOWN_TOOL", f"{inv.tool} is run by the runner, not on a node")
        if isinstance(args, ProcessArgs):
            content, is_error = await process_action(self.processes, agent.id, args)
            return ToolInvocationResult(
                invocation_id=inv.invocation_id,
                ok=not is_error,
                content=content,
                error_code="NOT_FOUND" if is_error else None,
            )
        sandbox = resolve_sandbox(config, agent.id)
        main_key = inv.main_session_key or build_agent_main_session_key(
            agent.id, config.settings.session.main_key
        )
        sandboxed = sandbox.applies_to(inv.session_key, main_key)
        if isinstance(args, ExecArgs) and not sandboxed and agent.exec.host == "sandbox":
            # OpenClaw: an explicit host=sandbox fails closed instead of running on the host
            return self._fail(
                inv,
                "SANDBOX_UNAVAILABLE",
                f"agent '{agent.id}' has tools.exec.host 'sandbox' but this session is not sandboxed "
                "(sandbox.mode); refusing to run on the host",
            )
        if sandboxed:
            return await self._in_sandbox(inv, args, agent, sandbox, config)
        # File operations run in a thread: a slow or blocking file must not stall the node.
        await asyncio.to_thread(agent.workspace.mkdir, parents=True, exist_ok=True)
        workspace = Workspace(agent.workspace, writable=True)
        match args:
            case ExecArgs():
                return await self._exec_on_host(inv, args, workspace, config, agent)
            case StageMediaArgs():
                return await self._stage_media(inv, args, workspace, sandboxed=False)
            case _:
                return await asyncio.to_thread(self._file_tool, inv, args, workspace, sandboxed=False)

    async def _stage_media(
        self, inv: ToolInvocation, args: StageMediaArgs, workspace: Workspace, *, sandboxed: bool
    ) -> ToolInvocationResult:
        """A turn's chat files into the workspace this session's tools see
        (`services/node_agent/media.py`)."""
        try:
            staged = await stage_files(self.media, workspace, args)
        except FileToolError as exc:  # the staging directory itself
            return self._fail(inv, exc.code, str(exc), sandboxed=sandboxed)
        return ToolInvocationResult(
            invocation_id=inv.invocation_id,
            ok=True,
            content=msgspec.json.encode(staged).decode(),
            sandboxed=sandboxed,
        )

    async def _in_sandbox(
        self,
        inv: ToolInvocation,
        args: ExecArgs | FileToolArgs | StageMediaArgs,
        agent: AgentView,
        sandbox: EffectiveSandbox,
        config: Config,
    ) -> ToolInvocationResult:
        """Never falls back to the host: no Docker, or any Docker failure, is an error."""
        if "sandbox" not in self.capabilities:
            why = self.docker_problem or "this node does not offer sandboxes"
            return self._fail(
                inv,
                "SANDBOX_UNAVAILABLE",
                f"agent '{agent.id}' must run {inv.tool} in a sandbox, but {why}; refusing to run on the host",
                sandboxed=True,
            )
        try:
            info = await self.sandboxes.ensure(
                sandbox, agent_id=agent.id, session_key=inv.session_key, agent_workspace=agent.workspace
            )
            root, writable = self.sandboxes.host_workspace(
                sandbox, agent_id=agent.id, session_key=inv.session_key, agent_workspace=agent.workspace
            )
            match args:
                case ExecArgs():
                    return await self._exec_in_sandbox(inv, args, info, sandbox, config)
                case StageMediaArgs():
                    workspace = Workspace(root, writable=writable, aliases=(sandbox.workdir,))
                    return await self._stage_media(inv, args, workspace, sandboxed=True)
                case _:
                    workspace = Workspace(root, writable=writable, aliases=(sandbox.workdir,))
                    return await asyncio.to_thread(self._file_tool, inv, args, workspace, sandboxed=True)
        except (SandboxUnavailable, SandboxError) as exc:  # the code tells them apart
            return self._fail(inv, exc.code, str(exc), sandboxed=True)

    async def _exec_in_sandbox(
        self,
        inv: ToolInvocation,
        args: ExecArgs,
        info: SandboxInfo,
        sandbox: EffectiveSandbox,
        config: Config,
    ) -> ToolInvocationResult:
        if args.background or args.yield_ms is not None:
            return self._fail(
                inv,
                "INVALID_ARGUMENTS",
                "background exec (background, yieldMs) runs on the host only in clawmesh; this session is "
                "sandboxed: run the command without them",
                sandboxed=True,
            )
        workdir = container_workdir(sandbox.workdir, args.workdir)
        if workdir is None:
            return self._fail(
                inv,
                "OUTSIDE_WORKSPACE",
                f"workdir {args.workdir!r} must be a relative path inside the workspace",
                sandboxed=True,
            )
        result = await self.sandboxes.exec(
            info,
            args.argv or args.command or "",
            cwd=workdir,
            env=args.env or None,
            timeout=self._timeout(inv, args),
            max_output=self._max_output(config),
            on_output=self._streamer(inv),
        )
        return _exec_result(inv, result, sandboxed=True)

    async def _exec_on_host(
        self, inv: ToolInvocation, args: ExecArgs, workspace: Workspace, config: Config, agent: AgentView
    ) -> ToolInvocationResult:
        try:
            cwd = await asyncio.to_thread(workspace.resolve, args.workdir or ".")
        except FileToolError as exc:
            return self._fail(inv, exc.code, str(exc))
        if not await asyncio.to_thread(cwd.is_dir):
            return self._fail(inv, "NOT_A_DIRECTORY", f"workdir {args.workdir!r} is not a directory")
        command: str | list[str] = args.argv or args.command or ""
        blocked = sorted(k for k in args.env or {} if blocked_env_name(k))
        if blocked:
            return self._fail(
                inv,
                "INVALID_ARGUMENTS",
                f"host exec does not accept {', '.join(blocked)} in env: they choose which binary runs "
                "or inject code before it",
            )
        env = host_environment(args.env, workspace.root)
        # The policy is enforced here, where the command runs: a runner is never trusted with it.
        try:
            host = await asyncio.to_thread(self.approvals_file.policy, agent.id)
        except ApprovalsFileError as exc:
            return self._fail(inv, "EXEC_DENIED", f"{exc}; host exec is refused until it is fixed")
        verdict = await asyncio.to_thread(evaluate, agent.exec, host, command, cwd=cwd, path_env=env["PATH"])
        if verdict.action == "deny":
            return self._fail(inv, "EXEC_DENIED", f"{verdict.reason}; the command was not run")
        if verdict.action == "ask":
            refused = await self._ask(inv, agent, command, cwd, env["PATH"], verdict, config)
            if refused is not None:
                return refused
        try:
            run_as = resolve_run_as(agent.exec.run_as, allow_root=agent.exec.allow_root, euid=os.geteuid())
        except LookupError as exc:
            return self._fail(inv, "EXEC_DENIED", str(exc))
        login = verdict.security == "full" and verdict.ask == "off"
        if args.background or args.yield_ms is not None:
            started = await start_background(
                self.processes,
                agent_id=agent.id,
                node_id=self.node_id,
                command=command,
                cwd=cwd,
                env=env,
                timeout=self._timeout(inv, args),
                max_output=self._max_output(config),
                run_as=run_as,
                login=login,
                yield_ms=None if args.background else args.yield_ms,
            )
            if isinstance(started, dict):
                return ToolInvocationResult(
                    invocation_id=inv.invocation_id, ok=True, content=json.dumps(started), sandboxed=False
                )
            return _exec_result(inv, started, sandboxed=False)
        result = await run_on_host(
            command,
            cwd=cwd,
            env=env,
            timeout=self._timeout(inv, args),
            max_output=self._max_output(config),
            on_output=self._streamer(inv),
            run_as=run_as,
            # Under a gating policy the command text is what was judged: no login shell, whose
            # profile files (the workspace's .profile among them) would run unjudged code first.
            login=login,
        )
        return _exec_result(inv, result, sandboxed=False)

    async def _ask(
        self,
        inv: ToolInvocation,
        agent: AgentView,
        command: str | list[str],
        cwd: Any,
        path_env: str,
        verdict: Verdict,
        config: Config,
    ) -> ToolInvocationResult | None:
        """Asks an operator and waits for the decision (bounded); None when the command may run."""
        # A turn that is over cannot use a late approval: never wait longer than a turn may run.
        wait = min(agent.exec.approval_timeout, config.settings.runtime.turn_timeout)
        now = time.time()
        shown = command if isinstance(command, str) else shlex.join(command)
        record = ApprovalRecord(
            id=new_approval_id(),
            node=self.node_id,
            agent_id=agent.id,
            session_key=inv.session_key,
            turn_id=str(inv.turn_id),
            command=shown,
            cwd=str(cwd),
            host="node" if agent.exec.host == "node" else "gateway",
            security=verdict.security,
            ask=verdict.ask,
            reason=verdict.reason,
            created_at=now,
            expires_at=now + wait,
        )
        await self.approvals.create(record)
        log.info(
            "node %s: exec approval %s requested for agent %s: %s",
            self.node_id,
            record.id,
            agent.id,
            shown[:200],
        )
        await self._notice(
            inv,
            ExecApprovalNotice(
                invocation_id=inv.invocation_id,
                phase="requested",
                approval_id=record.id,
                command=shown,
                cwd=record.cwd,
                host=record.host,
                reason=verdict.reason,
                expires_at=record.expires_at,
                ask=record.ask,
            ),
        )
        # Waiting for a person takes no execution slot (this runs inside `_serve`'s `async with`):
        # pending approvals must not starve the node's other tool calls.
        self._slots.release()
        try:
            decided = await self.approvals.wait(record, wait)
        finally:
            # shielded: if the call is cancelled here, the slot is still taken back before
            # `async with` gives it back, so the count stays right
            await asyncio.shield(self._slots.acquire())
        self.ctx.counters[f"approvals_{decided.status}"] += 1
        await self._notice(
            inv,
            ExecApprovalNotice(
                invocation_id=inv.invocation_id,
                phase="resolved",
                approval_id=record.id,
                decision=decided.status,
                resolved_by=decided.resolved_by,
            ),
        )
        match decided.status:
            case "allow-once":
                return None
            case "allow-always":
                entries = await asyncio.to_thread(allow_always_entries, command, cwd=cwd, path_env=path_env)
                if entries:
                    await asyncio.to_thread(self.approvals_file.add, agent.id, entries)
                return None
            case "deny":
                who = f" by {decided.resolved_by}" if decided.resolved_by else ""
                return self._fail(
                    inv,
                    "APPROVAL_DENIED",
                    f"exec approval {record.id} was denied{who}; the command was not run",
                )
        # expired: OpenClaw's askFallback decides (deny unless the host document says otherwise)
        if verdict.ask_fallback == "full" or (verdict.ask_fallback == "allowlist" and verdict.satisfied):
            return None
        return self._fail(
            inv,
            "APPROVAL_TIMEOUT",
            f"exec approval {record.id} got no decision within {wait:.0f}s; the command was not run",
        )

    async def _notice(self, inv: ToolInvocation, notice: ExecApprovalNotice) -> None:
        if not inv.output_subject:
            return
        data, headers = encode_json(notice)
        # the request stands in the bucket whatever happens to the announcement
        with best_effort(self.ctx.counters, "approval_notice", log=log):
            await self.ctx.nc.publish(inv.output_subject, data, headers=headers)

    def _file_tool(
        self, inv: ToolInvocation, args: FileToolArgs, workspace: Workspace, *, sandboxed: bool
    ) -> ToolInvocationResult:
        try:
            match args:
                case ReadArgs(path=path, offset=offset, limit=limit):
                    content = workspace.read(path, offset, limit)
                case WriteArgs(path=path, content=text):
                    content = workspace.write(path, text)
                case EditArgs(path=path, old_text=old, new_text=new, replace_all=replace_all):
                    content = workspace.edit(path, old, new, replace_all)
                case ApplyPatchArgs(input=patch):
                    content = workspace.apply_patch(patch)
                case LsArgs(path=path):
                    content = workspace.ls(path)
                case GlobArgs(pattern=pattern, path=path):
                    content = workspace.glob(pattern, path)
                case _:
                    assert_never(args)
        except FileToolError as exc:
            return self._fail(inv, exc.code, str(exc), sandboxed=sandboxed)
        except OSError as exc:
            return self._fail(
                inv, "IO_ERROR", f"{inv.tool} failed: {exc.strerror or exc}", sandboxed=sandboxed
            )
        return ToolInvocationResult(
            invocation_id=inv.invocation_id, ok=True, content=content, sandboxed=sandboxed
        )

    def _timeout(self, inv: ToolInvocation, args: ExecArgs) -> float:
        # The runner resolved the default (`tools.exec.timeoutSec`) into the invocation.
        return max(0.1, min(args.timeout or inv.timeout, MAX_EXEC_TIMEOUT))

    def _max_output(self, config: Config) -> int:
        return config.settings.exec.max_output_bytes

    def _streamer(self, inv: ToolInvocation) -> Any:
        subject = inv.output_subject
        if not subject:
            return None
        # across regions every chunk is a message through the hub: the bytes are bounded by
        # exec's output limit already, the count here (the result still carries everything)
        left = [_REMOTE_CHUNKS if inv.stream_reply else -1]

        async def send(stream: str, text: str) -> None:
            if left[0] == 0:
                return
            left[0] -= 1
            if left[0] == 0:
                text += _REMOTE_CHUNKS_NOTE
            data, headers = encode_json(
                ToolOutputChunk(invocation_id=inv.invocation_id, stream=stream, text=text)
            )
            await self.ctx.nc.publish(subject, data, headers=headers)

        return send


def _exec_result(inv: ToolInvocation, result: Any, *, sandboxed: bool) -> ToolInvocationResult:
    parts = [result.stdout.rstrip("\n")] if result.stdout else []
    if result.stderr:
        parts.append("[stderr]\n" + result.stderr.rstrip("\n"))
    if result.truncated:
        parts.append("[output truncated]")
    if result.timed_out:
        parts.append(f"[timed out after {result.duration:.1f}s: the command was killed]")
    else:
        parts.append(f"[exit code {result.exit_code}]")
    return ToolInvocationResult(
        invocation_id=inv.invocation_id,
        ok=not result.timed_out,
        content="\n".join(parts),
        error_code="TIMEOUT" if result.timed_out else None,
        exit_code=result.exit_code,
        truncated=result.truncated,
        timed_out=result.timed_out,
        sandboxed=sandboxed,
    )
