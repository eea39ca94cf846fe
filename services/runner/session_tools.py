"""The session tools, run by the runner itself: `sessions_spawn`, `sessions_send`,
`sessions_list`, `sessions_history`, `session_status`, `agents_list` (OpenClaw's semantics,
`shared/reference/openclaw-behaviour.md` §4).

A spawned child and a sent message are turns like any other: an `InboundMessage` that names
its agent and session goes to CM_INBOUND (deduplicated by its id), the router orders it in the
target session and any runner runs it. A child's result comes back through its reply
(`followups.py`). Refusals are JSON results with `status: "forbidden"` or `"error"` and OpenClaw's
texts, marked as errors, so the model reads why.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import re
import time
import uuid
from typing import Any, Final, NamedTuple

import msgspec
from nats.errors import TimeoutError as NatsTimeout

from clawmesh.bus import ServiceContext, inject
from clawmesh.config import AgentView, Config
from clawmesh.federation import remote_session_key
from clawmesh.routing import build_agent_session_key, is_subagent_session_key, parse_agent_session_key
from clawmesh.sandbox import resolve_sandbox
from clawmesh.sessions import (
    A2ARecord,
    ChildIndex,
    SpawnRecord,
    TxAssistant,
    TxError,
    TxTool,
    TxUser,
    descendant_keys,
)
from clawmesh.tools.a2a import (
    MAX_PING_PONG_TURNS,
    a2a_refusal,
    allowed_spawn_targets,
    remote_spawn_refusal,
    spawn_refusal,
    subagent_limits,
    visibility_for,
)
from clawmesh.tools.a2a_text import ACCEPTED_NOTE, a2a_message_prompt, child_task_message, sanitize_history
from clawmesh.tools.specs import (
    AgentsListArgs,
    SessionsHistoryArgs,
    SessionsListArgs,
    SessionsSendArgs,
    SessionsSpawnArgs,
    SessionStatusArgs,
    SpawnAttachment,
    ToolArgumentError,
    validate_tool_arguments,
)
from clawmesh.wire import (
    A2AEvent,
    Attachment,
    DecodeFailure,
    InboundMessage,
    ReplyMessage,
    RouteDecision,
    Sender,
    TurnError,
    TurnFinal,
    TurnOptions,
    TurnRequest,
    decode,
    encode_json,
    encode_msgpack,
)

from .internal_turns import A2A_CHANNEL, SUBAGENT_CHANNEL, a2a_turn_id
from .remote_send import is_remote_target, send_remote
from .remote_spawn import parse_remote_target, probe_remote, remote_spawn_targets

__all__ = [
    "A2A_CHANNEL",
    "SUBAGENT_CHANNEL",
    "SessionTools",
    "a2a_turn_id",
    "publish_a2a_event",
    "submit_inbound",
]

_AGENT_ID: Final = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_ENDED_KEPT: Final = 200  # ended children a session's index remembers (tree visibility)
_CHANNEL_KEYS: Final = (
    "target",
    "transport",
    "channel",
    "to",
    "threadId",
    "thread_id",
    "replyTo",
    "reply_to",
)


def _json(value: dict[str, Any]) -> str:
    return json.dumps(value, ensure_ascii=False)


async def submit_inbound(ctx: ServiceContext, inbound: InboundMessage, dedupe: str) -> None:
    """Store an internal turn in CM_INBOUND (retried across a leader change; `dedupe` keeps a
    retried or repeated submission one turn)."""
    data, headers = encode_msgpack(inbound)
    headers["Nats-Msg-Id"] = dedupe
    await ctx.publish(ctx.subjects.inbound_of(inbound), data, inject(headers))


async def publish_a2a_event(ctx: ServiceContext, event: A2AEvent) -> None:
    data, headers = encode_json(event)
    await ctx.nc.publish(ctx.subjects.a2a_event(event.agent_id, event.kind), data, headers=inject(headers))


class SessionTools:
    """The session tools of one turn (`turn`, of agent `agent`; `spawn`: the turn's session's
    own sub-agent record when it is a child)."""

    def __init__(
        self,
        ctx: ServiceContext,
        agent: AgentView,
        turn: TurnRequest,
        config: Config,
        *,
        spawn: SpawnRecord | None,
        sandboxed: bool,
    ) -> None:
        self.ctx = ctx
        self.agent = agent
        self.turn = turn
        self.config = config
        self.spawn = spawn
        self.sandboxed = sandboxed
        self.depth = spawn.depth if spawn is not None else 0
        self._owned_keys: set[str] | None = None

    async def run(self, name: str, arguments: dict[str, Any]) -> tuple[str, bool]:
        try:
            args = validate_tool_arguments(name, arguments)
        except ToolArgumentError as exc:
            return exc.message, True
        match args:
            case SessionsSpawnArgs():
                return await self._spawn(args, arguments)
            case SessionsSendArgs():
                return await self._send(args)
            case SessionsListArgs():
                return await self._list(args)
            case SessionsHistoryArgs():
                return await self._history(args)
            case SessionStatusArgs():
                return await self._status(args)
            case AgentsListArgs():
                return await self._agents(), False
        return f"unknown session tool {name!r}", True

    # --- sessions_spawn ----------------------------------------------------------------------
    async def _spawn(self, args: SessionsSpawnArgs, raw: dict[str, Any]) -> tuple[str, bool]:
        """`sessions_spawn`: checks, in OpenClaw's order (arguments, target, depth, active
        children, target and sandbox rules, attachments), then the run's record, the child's
        turn and the spawn event; its result as OpenClaw shapes it."""
        why = _spawn_argument_refusal(raw)
        if why is not None:
            return _refused("error", why)
        config, me = self.config, self.agent
        target = args.agent_id.strip().lower() if args.agent_id else None
        # `worker@sg`: an agent of another gateway of the federation (remote_spawn.py)
        remote = parse_remote_target(target) if target is not None and "@" in target else None
        if target is not None and remote is None and not _AGENT_ID.match(target):
            return _refused(
                "error",
                f'Invalid agentId "{args.agent_id}". Agent IDs must match [a-z0-9][a-z0-9_-]{{0,63}}'
                + (" (an agent of another gateway: <agent>@<gateway>)." if "@" in target else "."),
            )
        limits = subagent_limits(config, me)
        if self.depth >= limits.max_spawn_depth:
            return _refused(
                "forbidden",
                f"sessions_spawn is not allowed at this depth (current depth: {self.depth}, max: {limits.max_spawn_depth})",
            )
        index, running, ended = await self._children_now(limits.max_children)
        if len(running) >= limits.max_children:
            return _refused(
                "forbidden",
                f"sessions_spawn has reached max active children for this session ({len(running)}/{limits.max_children})",
            )
        child = await self._spawn_child(args, target, remote)
        if isinstance(child, _Refusal):
            return _refused(child.status, child.error)
        child_agent, child_key = child
        try:
            files = [msgspec.convert(a, SpawnAttachment) for a in args.attachments]
            blobs = [
                base64.b64decode(f.content, validate=True) if f.encoding == "base64" else f.content.encode()
                for f in files
            ]
        except (msgspec.ValidationError, ValueError) as exc:
            return _refused("error", f"invalid attachments: {exc}")
        if remote is not None and any((f.mime_type or "").startswith("image/") for f in files):
            # a remote turn carries text only
            return _refused("error", f"image attachments cannot be sent to {target} (another gateway)")
        child_agent_id = target if remote is not None and target is not None else child_agent.id
        record = self._spawn_record(args, child_key, child_agent_id, limits.run_timeout)
        mode, depth, run_id = record.mode, record.depth, record.run_id
        # another gateway's agent runs on its own models there
        model = None if remote is not None else args.model or subagent_limits(config, child_agent).model
        store = self.ctx.sessions
        # the record before the child's turn (its runner and its announce read it); the index is
        # read only by this session's later turns
        await asyncio.gather(
            store.put_spawn(record),
            store.put_children(
                self.turn.session_key,
                ChildIndex(running=[*running, child_key], ended=[*index.ended, *ended][-_ENDED_KEPT:]),
            ),
        )
        await self._submit_child(
            record,
            child_agent,
            child_task_message(args.task, depth, limits.max_spawn_depth, mode),
            list(zip(files, blobs, strict=True)),
            model,
        )
        await publish_a2a_event(
            self.ctx,
            A2AEvent(
                kind="spawn",
                agent_id=me.id,
                session_key=self.turn.session_key,
                target_session_key=child_key,
                target_agent_id=record.child_agent_id,
                run_id=run_id,
                status="accepted",
                detail=args.label or "",
            ),
        )
        return _json(self._spawn_result(record, remote, model, list(zip(files, blobs, strict=True)))), False

    def _spawn_record(
        self, args: SessionsSpawnArgs, child_key: str, child_agent_id: str, default_timeout: float
    ) -> SpawnRecord:
        """The new run's record: who asked, the child, how its result is announced, and the
        requester's route (where an announce turn, or for announce=channel the result, goes)."""
        mode = args.mode or "run"
        route, inbound = self.turn.route, self.turn.inbound
        return SpawnRecord(
            child_session_key=child_key,
            child_agent_id=child_agent_id,
            run_id=uuid.uuid4().hex,
            parent_session_key=self.turn.session_key,
            parent_agent_id=self.agent.id,
            parent_turn_id=self.turn.turn_id,
            depth=self.depth + 1,
            task=args.task,
            label=args.label or "",
            mode=mode,
            cleanup="keep" if mode == "session" else (args.cleanup or "keep"),
            announce=args.announce or "parent",
            run_timeout=float(args.run_timeout_seconds)
            if args.run_timeout_seconds is not None
            else default_timeout,
            channel=route.channel,
            account_id=route.account_id,
            peer=inbound.peer,
            thread_id=inbound.thread_id,
        )

    async def _children_now(self, max_children: int) -> tuple[ChildIndex, list[str], list[str]]:
        """This session's child index, the children still running and those that ended. Only at
        the limit does it matter which listed children still run: below it, even all of them
        running leaves room. Those that ended are moved to `ended` then, so the list stays about
        as long as the limit and a spawn costs no read per child."""
        store = self.ctx.sessions
        index = await store.get_children(self.turn.session_key)
        if len(index.running) < max_children:
            return index, index.running, []
        records = await asyncio.gather(*(store.get_spawn(k) for k in index.running))
        running = [
            k for k, r in zip(index.running, records, strict=True) if r is not None and r.status == "running"
        ]
        return index, running, [k for k in index.running if k not in running]

    async def _spawn_child(
        self, args: SessionsSpawnArgs, target: str | None, remote: tuple[str, str] | None
    ) -> tuple[AgentView, str] | _Refusal:
        """The child's agent and session key, or why not (status, error): the target must be
        allowed, and a sandboxed requester (or `sandbox: "require"`) needs a sandboxed child."""
        config, me = self.config, self.agent
        uid = uuid.uuid4()
        if remote is not None:
            assert target is not None
            # the child's local record is a sub-agent session of this agent; it runs on `remote`
            child_key = f"agent:{me.id}:subagent:{uid}"
            why = remote_spawn_refusal(config, me, target)
            if why is not None:
                return _Refusal("forbidden", why)
            if self.sandboxed or args.sandbox == "require":
                # how the other gateway sandboxes its agent is its own config: not known here
                return _Refusal(
                    "forbidden",
                    f"Sandboxed sessions cannot spawn {target}: an agent of another gateway is not known to be sandboxed."
                    if self.sandboxed
                    else f'sessions_spawn sandbox="require" needs a sandboxed child session; {target} runs on another gateway, not known to be sandboxed.',
                )
            problem = await probe_remote(self.ctx, config, me.id, child_key, remote, "spawn")
            return _Refusal(*problem) if problem is not None else (me, child_key)
        why = spawn_refusal(config, me, target)
        if why is not None:
            return _Refusal("forbidden", why)
        found = config.agent_view(target) if target else me
        if found is None:
            return _Refusal("error", f"unknown agent '{target}'")
        child_key = f"agent:{found.id}:subagent:{uid}"
        child_main = build_agent_session_key(
            agent_id=found.id, channel=SUBAGENT_CHANNEL, main_key=config.settings.session.main_key
        )
        child_sandboxed = resolve_sandbox(config, found.id).applies_to(child_key, child_main)
        if self.sandboxed and not child_sandboxed:
            return _Refusal(
                "forbidden",
                "Sandboxed sessions cannot spawn unsandboxed subagents. Set a sandboxed target agent or use the same agent runtime.",
            )
        if args.sandbox == "require" and not child_sandboxed:
            return _Refusal(
                "forbidden",
                'sessions_spawn sandbox="require" needs a sandboxed child session; the target agent is not sandboxed.',
            )
        return found, child_key

    async def _submit_child(
        self,
        record: SpawnRecord,
        child_agent: AgentView,
        message: str,
        files: list[tuple[SpawnAttachment, bytes]],
        model: str | None,
    ) -> None:
        """The child's first turn: the task message, text attachments inlined after it, images
        as image parts."""
        texts = [
            f"[Attachment {f.name}]\n{blob.decode('utf-8', 'replace')}"
            for f, blob in files
            if not (f.mime_type or "").startswith("image/")
        ]
        images = [
            Attachment(name=f.name, mime=f.mime_type or "application/octet-stream", data=blob, size=len(blob))
            for f, blob in files
            if (f.mime_type or "application/octet-stream").startswith("image/")
        ]
        await submit_inbound(
            self.ctx,
            InboundMessage(
                id=record.run_id,
                channel=SUBAGENT_CHANNEL,
                account_id=self.turn.route.account_id,
                agent_id=child_agent.id,
                session_key=record.child_session_key,
                sender=Sender(id=self.agent.id, name=self.turn.session_key[:200]),
                text="\n\n".join([message, *texts]),
                attachments=images,
                received_at=time.time(),
                metadata={"parentSessionKey": self.turn.session_key, "spawnDepth": str(record.depth)},
                options=TurnOptions(model=model) if model else None,
            ),
            f"spawn:{record.run_id}",
        )

    def _spawn_result(
        self,
        record: SpawnRecord,
        remote: tuple[str, str] | None,
        model: str | None,
        files: list[tuple[SpawnAttachment, bytes]],
    ) -> dict[str, Any]:
        result: dict[str, Any] = {
            "status": "accepted",
            "childSessionKey": record.child_session_key,
            "runId": record.run_id,
            "mode": record.mode,
            "note": ACCEPTED_NOTE
            if record.announce == "parent"
            else "Quiet run: no completion notification is sent. Do not wait for an announcement.",
            "modelApplied": bool(model),
        }
        own = self.config.settings.gateway.region
        if remote is not None and own is not None:
            result["gateway"] = remote[1]
            result["remoteSessionKey"] = remote_session_key(remote[0], own, record.child_session_key)
        if files:
            result["attachments"] = {
                "count": len(files),
                "totalBytes": sum(len(b) for _, b in files),
                "files": [
                    {"name": f.name, "bytes": len(b), "sha256": hashlib.sha256(b).hexdigest()}
                    for f, b in files
                ],
            }
        return result

    # --- access --------------------------------------------------------------------------------
    async def _owned(self) -> set[str]:
        """Sessions spawned (at any depth) from this one."""
        if self._owned_keys is None:
            self._owned_keys = set(await descendant_keys(self.ctx.sessions, self.turn.session_key))
        return self._owned_keys

    async def _refusal(self, key: str, action: str) -> str | None:
        """Why this session may not reach session `key` with `action` (send, history, status), or None."""
        me = self.turn.session_key
        if key == me:
            return None
        parsed = parse_agent_session_key(key)
        target_agent = parsed.agent_id if parsed else ""
        visibility = visibility_for(self.config, self.agent, sandboxed=self.sandboxed)
        owned = key in await self._owned()
        prefix = "Session list" if action == "list" else f"Session {action}"
        if visibility == "self":
            return (
                f"{prefix} visibility is restricted to the current session (tools.sessions.visibility=self)."
            )
        if visibility == "tree" and not owned:
            return f"{prefix} visibility is restricted to the current session tree (tools.sessions.visibility=tree)."
        if visibility == "agent" and target_agent != self.agent.id:
            return (
                f"{prefix} visibility is restricted. Set tools.sessions.visibility=all to allow cross-agent access; "
                "use tools.agentToAgent to restrict permitted agent pairs."
            )
        if owned:
            return None
        why = a2a_refusal(self.config, self.agent.id, target_agent)
        if why is not None and action != "send":
            why = why.replace("messaging", action).replace("cross-agent sends", "cross-agent access")
        return why

    # --- sessions_send -------------------------------------------------------------------------
    async def _resolve_target(self, args: SessionsSendArgs) -> tuple[str | None, str]:
        if args.session_key and args.label:
            return None, "Provide either sessionKey or label (not both)."
        if args.session_key:
            return args.session_key.strip(), ""
        if args.label:
            wanted = args.label.strip().lower()
            agent = args.agent_id.strip().lower() if args.agent_id else None
            matches = [
                r
                for r in await self.ctx.sessions.list_spawns()
                if r.label.strip().lower() == wanted and (agent is None or r.child_agent_id == agent)
            ]
            if not matches:
                return None, f"No session found with label: {args.label}"
            return max(matches, key=lambda r: r.created_at).child_session_key, ""
        if args.agent_id:
            agent = args.agent_id.strip().lower()
            return build_agent_session_key(
                agent_id=agent, channel=None, main_key=self.config.settings.session.main_key
            ), ""
        return None, "Either sessionKey, label or agentId is required."

    async def _send(self, args: SessionsSendArgs) -> tuple[str, bool]:
        if is_remote_target(args.agent_id) and not args.session_key and not args.label:
            assert args.agent_id is not None
            return await send_remote(
                self.ctx,
                self.config,
                self.agent,
                self.turn,
                args.agent_id,
                args.message,
                args.timeout_seconds,
            )
        run_id = uuid.uuid4().hex
        target = await self._send_target(args, run_id)
        if isinstance(target, str):  # refused: the answer
            return target, True
        key, target_agent = target
        record = await self.ctx.sessions.get_session(key)
        target_channel = record[0].channel if record else ""
        wait = args.timeout_seconds
        reply_subject = f"{self.ctx.subjects.reply(self.ctx.instance)}.a2a.{run_id}" if wait > 0 else None
        await self.ctx.sessions.put_a2a(
            A2ARecord(
                run_id=run_id,
                requester_session_key=self.turn.session_key,
                requester_agent_id=self.agent.id,
                requester_channel=self.turn.route.channel,
                target_session_key=key,
                target_agent_id=target_agent,
                target_channel=target_channel,
                original=args.message,
                max_turns=MAX_PING_PONG_TURNS,
            )
        )
        inbound = InboundMessage(
            id=a2a_turn_id(run_id, 0),
            channel=A2A_CHANNEL,
            account_id=self.turn.route.account_id,
            agent_id=target_agent,
            session_key=key,
            sender=Sender(id=self.agent.id, name=self.turn.session_key[:200]),
            text=a2a_message_prompt(args.message, self.turn.route.channel, target_channel),
            received_at=time.time(),
            reply_subject=reply_subject,
            reply_events="final",
            metadata={"a2aRunId": run_id, "a2aStep": "0"},
        )
        sub = await self.ctx.nc.subscribe(reply_subject) if reply_subject else None
        try:
            await submit_inbound(self.ctx, inbound, f"a2a:{a2a_turn_id(run_id, 0)}")
            await publish_a2a_event(
                self.ctx,
                A2AEvent(
                    kind="send",
                    agent_id=self.agent.id,
                    session_key=self.turn.session_key,
                    target_session_key=key,
                    target_agent_id=target_agent,
                    run_id=run_id,
                    status="accepted",
                ),
            )
            delivery = {"status": "pending", "mode": "announce"}
            if sub is None:
                return _json(
                    {"runId": run_id, "status": "accepted", "sessionKey": key, "delivery": delivery}
                ), False
            event = await _outcome(sub, wait)
            if event is None:
                return _json(
                    {
                        "runId": run_id,
                        "status": "timeout",
                        "error": f"no reply within {wait:g}s; the message was delivered and its reply follows by announce",
                        "sessionKey": key,
                        "delivery": delivery,
                    }
                ), False
        finally:
            if sub is not None:
                await sub.unsubscribe()
        if isinstance(event, RouteDecision):
            return _json(
                {"runId": run_id, "status": "error", "error": event.error_message or "not routed"}
            ), True
        if isinstance(event, TurnError):
            return _json(
                {"runId": run_id, "status": "error", "error": event.message, "sessionKey": key}
            ), True
        return _json(
            {"runId": run_id, "status": "ok", "reply": event.text, "sessionKey": key, "delivery": delivery}
        ), False

    async def _send_target(self, args: SessionsSendArgs, run_id: str) -> tuple[str, str] | str:
        """The session `sessions_send` reaches and its agent, or the refusal's answer (OpenClaw's
        shapes): the target must resolve, be a known agent's other session, and be allowed."""

        def refused(error: str, status: str = "error", **extra: str) -> str:
            return _json({"runId": run_id, "status": status, "error": error, **extra})

        key, problem = await self._resolve_target(args)
        if key is None:
            return refused(problem)
        parsed = parse_agent_session_key(key)
        if parsed is None:
            return refused(f"not a session key: {key[:200]}")
        target_agent = parsed.agent_id
        if self.config.has_roster and self.config.agent(target_agent) is None:
            return refused(f"unknown agent '{target_agent}'")
        if key == self.turn.session_key:
            return refused("sessions_send cannot target the current session.")
        why = await self._refusal(key, "send")
        if why is not None:
            return refused(why, "forbidden", sessionKey=key)
        return key, target_agent

    # --- sessions_list / sessions_history / session_status / agents_list -----------------------
    async def _list(self, args: SessionsListArgs) -> tuple[str, bool]:
        store = self.ctx.sessions
        spawns = {r.child_session_key: r for r in await store.list_spawns()}
        rows: list[dict[str, Any]] = []
        cutoff = time.time() - args.active_minutes * 60 if args.active_minutes else 0.0
        kinds = {k.strip().lower() for k in args.kinds} if args.kinds else None
        for rec in sorted(await store.list_sessions(), key=lambda r: r.updated_at, reverse=True):
            if rec.updated_at < cutoff:
                continue
            kind = _kind(rec.session_key)
            if kinds is not None and kind not in kinds:
                continue
            if await self._refusal(rec.session_key, "list") is not None:
                continue
            row: dict[str, Any] = {
                "key": rec.session_key,
                "kind": kind,
                "agentId": rec.agent_id,
                "sessionId": rec.session_id,
                "channel": rec.channel,
                "updatedAt": int(rec.updated_at * 1000),
                "turns": rec.seq,
            }
            spawn = spawns.get(rec.session_key)
            if spawn is not None:
                row.update(spawnedBy=spawn.parent_session_key, label=spawn.label, status=spawn.status)
            if args.message_limit:
                done = await store.get_done(rec.session_key)
                history = sanitize_history(
                    _rows(done[0].context if done else []), min(args.message_limit, 20), False
                )
                row["messages"] = history["messages"]
            rows.append(row)
            if args.limit and len(rows) >= args.limit:
                break
        return _json({"count": len(rows), "sessions": rows}), False

    async def _history(self, args: SessionsHistoryArgs) -> tuple[str, bool]:
        key = args.session_key.strip()
        if key == "current":
            key = self.turn.session_key
        why = await self._refusal(key, "history")
        if why is not None:
            return _json({"status": "forbidden", "error": why}), True
        done = await self.ctx.sessions.get_done(key)
        if done is None:
            return _json({"status": "error", "error": f"no history for session {key[:200]}"}), True
        return _json(
            {"sessionKey": key, **sanitize_history(_rows(done[0].context), args.limit, args.include_tools)}
        ), False

    async def _status(self, args: SessionStatusArgs) -> tuple[str, bool]:
        key = (args.session_key or "current").strip()
        if key == "current":
            key = self.turn.session_key
        if args.model is not None:
            return _json(
                {"status": "error", "error": "per-session model overrides are not supported by clawmesh"}
            ), True
        why = await self._refusal(key, "status")
        if why is not None:
            return _json({"status": "forbidden", "error": why}), True
        store = self.ctx.sessions
        found = await store.get_session(key)
        if found is None:
            return _json({"status": "error", "error": f"unknown session {key[:200]}"}), True
        rec = found[0]
        done = await store.get_done(key)
        spawn = await store.get_spawn(key)
        card: dict[str, Any] = {
            "sessionKey": key,
            "sessionId": rec.session_id,
            "agentId": rec.agent_id,
            "kind": _kind(key),
            "channel": rec.channel,
            "turns": rec.seq,
            "completedTurns": done[0].seq if done else 0,
            "model": done[0].model if done else "",
            "updatedAt": int(rec.updated_at * 1000),
        }
        if spawn is not None:
            card["subagent"] = {
                "parentSessionKey": spawn.parent_session_key,
                "depth": spawn.depth,
                "label": spawn.label,
                "status": spawn.status,
                "runId": spawn.run_id,
            }
        lines = [f"{k}: {v}" for k, v in card.items() if not isinstance(v, dict)]
        return _json({"status": "ok", "text": "\n".join(lines), "details": card}), False

    async def _agents(self) -> str:
        config = self.config
        out = []
        for agent_id in allowed_spawn_targets(config, self.agent):
            view = config.agent(agent_id)
            entry: dict[str, Any] = {"id": agent_id, "configured": view is not None}
            if view is not None and view.entry.name:
                entry["name"] = view.entry.name
            out.append(entry)
        out.extend(await remote_spawn_targets(self.ctx, config, self.agent))
        return _json({"agents": out})


async def _outcome(sub: Any, wait: float) -> TurnFinal | TurnError | RouteDecision | None:
    """The followed turn's final or error event (or its failed route decision), None when
    nothing ends it within `wait` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    while (left := deadline - loop.time()) > 0:
        try:
            msg = await sub.next_msg(timeout=left)
        except (TimeoutError, NatsTimeout):
            return None
        with contextlib.suppress(DecodeFailure):  # a garbled event: keep waiting for the outcome
            item = decode(msg.data, ReplyMessage, msg.headers)
            if isinstance(item, TurnFinal | TurnError) or (isinstance(item, RouteDecision) and not item.ok):
                return item
    return None


def _kind(key: str) -> str:
    parsed = parse_agent_session_key(key)
    rest = parsed.rest.lower() if parsed else key.lower()
    if is_subagent_session_key(key):
        return "subagent"
    if rest.startswith("cron:"):
        return "cron"
    if rest.startswith("hook:"):
        return "hook"
    if ":group:" in f":{rest}" or ":channel:" in f":{rest}":
        return "group"
    if rest.startswith("node:"):
        return "node"
    return "main" if ":" not in rest else "other"


def _rows(context: list[Any]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for e in context:
        if isinstance(e, TxUser):
            rows.append({"role": "user", "content": e.text, "ts": int(e.ts * 1000)})
        elif isinstance(e, TxAssistant):
            row: dict[str, Any] = {"role": "assistant", "content": e.text, "ts": int(e.ts * 1000)}
            if e.tool_calls:
                row["toolCalls"] = [c.get("name") for c in e.tool_calls]
            rows.append(row)
        elif isinstance(e, TxTool):
            rows.append({"role": "tool", "name": e.name, "content": e.content, "isError": e.is_error})
        elif isinstance(e, TxError):
            rows.append({"role": "error", "content": f"{e.code}: {e.message}"})
    return rows


class _Refusal(NamedTuple):
    """Why a tool call is refused: OpenClaw's `status` and `error`."""

    status: str
    error: str


def _refused(status: str, error: str) -> tuple[str, bool]:
    return _json({"status": status, "error": error}), True


def _spawn_argument_refusal(raw: dict[str, Any]) -> str | None:
    """Arguments `sessions_spawn` refuses by name, with OpenClaw's wording."""
    for key in _CHANNEL_KEYS:
        if key in raw:
            return f'sessions_spawn does not support "{key}"; remove channel-delivery parameters.'
    if "timeoutSeconds" in raw or "timeout_seconds" in raw:
        return (
            'sessions_spawn does not support "timeoutSeconds". Use "runTimeoutSeconds" for a per-run timeout.'
        )
    return None
