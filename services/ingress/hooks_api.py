"""OpenClaw's inbound webhooks (its docs/automation/cron-jobs/webhooks.md, config-hooks.md):

POST <hooks.path>/wake     {text, mode?, agentId?, sessionKey?}      → 200 {ok, mode, eventOutcome}
POST <hooks.path>/agent    {message, name?, agentId?, sessionKey?, sessionMode?, deliver?, channel?,
                            to?, accountId?, model?, thinking?, timeoutSeconds?, waitForCompletion?}
                                                                      → 200 {ok, runId[, completion]}
POST <hooks.path>/<name>   the first matching `hooks.mappings` entry (then presets): 200, 204 when
                           it produced nothing, 404 when none matches

Off unless `hooks.enabled` with a `hooks.token` (then every hook path is a 404). The token comes
in `Authorization: Bearer` or `x-openclaw-token`, never in the query (400), and is compared in
constant time; 20 failures from one client in 60 s lock it out for 60 s (429, loopback
included). Every hook action becomes a turn like any other message (turns.py): on the agent's
main session for a wake, on `agent:<id>:hook:<uuid>` (or the policy's key) for an agent action.
The message of an agent action is wrapped as untrusted external content. Delivery fields are
checked as OpenClaw checks them and recorded with the turn; with a concrete `channel` + `to`
the turn is that chat's, so the channel's adapter delivers its reply.

Errors are JSON `{"ok": false, "error": "<OpenClaw's message>"}`, also where OpenClaw answers
plain text (401, 404, 405, 429, the query-token 400): same status, same words.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Final

import msgspec
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Match, NoMatchFound
from starlette.types import Receive, Scope, Send

from clawmesh.bus import ServiceContext
from clawmesh.hooks import (
    AgentAction,
    Delivery,
    HookPayloadError,
    HookPolicyError,
    HooksConfigError,
    HooksPolicy,
    MappingContext,
    TransformUnsupported,
    WakeAction,
    agent_payload,
    apply_rules,
    hook_idempotency_key,
    resolve_hooks,
    wake_payload,
    wrap_external_content,
)
from clawmesh.ids import js_trim, normalize_account_id
from clawmesh.routing import to_agent_store_session_key
from clawmesh.wire import InboundMessage, Peer, TurnFinal, TurnOptions, now

from .http import BodyTimeout, BodyTooLarge, read_body
from .security import client_address
from .turns import MessageTooLarge, PendingTurn, TurnClient, Unavailable

__all__ = ["HOOK_CHANNEL", "HookFailureLimiter", "HooksAPI"]

log = logging.getLogger("clawmesh.ingress")

HOOK_CHANNEL: Final = "hook"  # the channel of a hook's turns
_BODY_TIMEOUT: Final = 30.0
_AUTH_FAILURES: Final = 20
_AUTH_WINDOW: Final = 60.0
_MAX_TRACKED: Final = 10_000
_QUERY_TOKEN: Final = (
    "Hook token must be provided via Authorization: Bearer <token> or X-OpenClaw-Token header "
    "(query parameters are not allowed)."
)


def _fail(status: int, message: str, headers: dict[str, str] | None = None, **extra: Any) -> JSONResponse:
    return JSONResponse({"ok": False, "error": message, **extra}, status_code=status, headers=headers)


class HookFailureLimiter:
    """OpenClaw's hook auth limiter: 20 failures per client in 60 s, then 429 for 60 s; no
    loopback exemption; a valid token resets the client."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._failures: dict[str, deque[float]] = {}
        self._locked: dict[str, float] = {}

    def retry_after(self, client: str) -> float | None:
        """Seconds until `client` may fail again, None when it is not throttled."""
        now_ = self._clock()
        until = self._locked.get(client, 0.0)
        if until > now_:
            return until - now_
        window = self._failures.get(client)
        while window and window[0] <= now_ - _AUTH_WINDOW:
            window.popleft()
        if window is not None and len(window) >= _AUTH_FAILURES:
            self._locked[client] = now_ + _AUTH_WINDOW
            del self._failures[client]
            return _AUTH_WINDOW
        return None

    def failed(self, client: str) -> None:
        self._failures.setdefault(client, deque()).append(self._clock())
        for table in (self._failures, self._locked):
            while len(table) > _MAX_TRACKED:
                del table[next(iter(table))]

    def reset(self, client: str) -> None:
        self._failures.pop(client, None)
        self._locked.pop(client, None)


def _token(request: Request) -> str | None:
    auth = js_trim(request.headers.get("authorization", ""))
    if auth.lower().startswith("bearer "):
        token = js_trim(auth[7:])
        if token:
            return token
    return js_trim(request.headers.get("x-openclaw-token", "")) or None


def _same_secret(given: str | None, expected: str) -> bool:
    if given is None:
        return False
    return hmac.compare_digest(
        given.encode("utf-8", "surrogatepass"), expected.encode("utf-8", "surrogatepass")
    )


class _HooksRoute(BaseRoute):
    """Everything under the hooks base path of the current config (it can change on reload)."""

    def __init__(self, api: HooksAPI) -> None:
        self.api = api

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] != "http":
            return Match.NONE, {}
        policy = self.api.policy()
        if policy is None:
            return Match.NONE, {}
        path: str = scope["path"]
        if path == policy.base_path or path.startswith(policy.base_path + "/"):
            return Match.FULL, {"hooks_policy": policy}
        return Match.NONE, {}

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        response = await self.api.handle(request, scope["hooks_policy"])
        await response(scope, receive, send)

    def url_path_for(self, name: str, /, **path_params: Any) -> Any:
        raise NoMatchFound(name, path_params)


@dataclass(frozen=True)
class _Dispatched:
    run_id: str
    pending: PendingTurn | None  # kept only when the caller waits for the completion


class HooksAPI:
    """The hook endpoints (one `BaseRoute`, as the base path is the config's)."""

    def __init__(
        self, ctx: ServiceContext, turns: TurnClient, trusted_proxies: Callable[[], Sequence[str]]
    ) -> None:
        self.ctx = ctx
        self.turns = turns
        self.limiter = HookFailureLimiter()
        self._trusted_proxies = trusted_proxies
        self._refused_version: str | None = None

    def routes(self) -> list[BaseRoute]:
        return [_HooksRoute(self)]

    def policy(self) -> HooksPolicy | None:
        config = self.ctx.holder.current
        try:
            return resolve_hooks(config)
        except HooksConfigError as exc:
            if self._refused_version != config.version:  # once per config, not per request
                self._refused_version = config.version
                log.error("hooks: not served: %s", exc)
            return None

    async def handle(self, request: Request, policy: HooksPolicy) -> Response:
        if "token" in request.query_params:
            return _fail(400, _QUERY_TOKEN)
        if request.method != "POST":
            return _fail(405, "Method Not Allowed", {"Allow": "POST"})
        client = client_address(request, self._trusted_proxies())
        if not _same_secret(_token(request), policy.token):
            retry = self.limiter.retry_after(client)
            if retry is not None:
                return _fail(429, "Too Many Requests", {"Retry-After": str(max(1, round(retry)))})
            self.limiter.failed(client)
            return _fail(401, "Unauthorized", {"WWW-Authenticate": 'Bearer realm="hooks"'})
        self.limiter.reset(client)
        subpath = request.url.path[len(policy.base_path) :].lstrip("/")
        if not subpath:
            return _fail(404, "Not Found")
        try:
            raw = await read_body(request, policy.body_limit(subpath), _BODY_TIMEOUT)
        except BodyTooLarge:
            return _fail(413, "payload too large")
        except BodyTimeout:
            return _fail(408, "request body timeout", {"Connection": "close"})
        try:
            decoded = msgspec.json.decode(raw) if raw.strip() else {}
        except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as exc:
            return _fail(400, f"body is not valid JSON: {exc}")
        payload: dict[str, Any] = decoded if isinstance(decoded, dict) else {}
        try:
            if subpath == "wake":
                return await self._wake(request, policy, wake_payload(payload), "request")
            if subpath == "agent":
                return await self._direct_agent(request, policy, payload)
            return await self._mapped(request, policy, subpath, payload)
        except (HookPayloadError, HookPolicyError) as exc:
            return _fail(400, str(exc))
        except MessageTooLarge as exc:
            return _fail(413, str(exc))
        except Unavailable as exc:
            return _fail(503, str(exc), {"Retry-After": "5"})

    # --- wake ---------------------------------------------------------------------------
    async def _wake(self, request: Request, policy: HooksPolicy, action: WakeAction, source: str) -> Response:
        outcome = await self._dispatch_wake(request, policy, action, source)
        return JSONResponse({"ok": True, "mode": action.mode, "eventOutcome": outcome})

    async def _dispatch_wake(
        self, request: Request, policy: HooksPolicy, action: WakeAction, source: str
    ) -> str:
        agent = policy.target_agent(action.agent_id, "request" if source == "request" else "mapping")
        config = self.ctx.holder.current
        if action.session_key:
            kind = "request" if source == "request" else action.session_key_source
            logical = policy.session_key(action.session_key, kind)
            session = to_agent_store_session_key(agent, policy.dispatch_key(logical, agent))
        else:
            session = to_agent_store_session_key(agent, None, config.settings.session.main_key)
        metadata = {"hook": "wake", "hookMode": action.mode}
        if action.mapping_id:
            metadata["hookMapping"] = action.mapping_id
        run_id = uuid.uuid4().hex
        # clawmesh has no heartbeat: a wake is a turn on the session now, in either mode
        await self._submit(request, run_id, agent, session, action.text, metadata, wait=False)
        return "queued"

    # --- agent --------------------------------------------------------------------------
    async def _direct_agent(self, request: Request, policy: HooksPolicy, payload: dict[str, Any]) -> Response:
        wait = payload.get("waitForCompletion")
        if wait is not None and not isinstance(wait, bool):
            return _fail(400, "waitForCompletion must be boolean")
        action = agent_payload(payload, policy.channels)
        agent = policy.target_agent(action.agent_id, "request")
        if action.session_mode == "persistent" and not action.session_key:
            return _fail(400, "sessionKey is required when sessionMode is persistent")
        logical = policy.session_key(action.session_key, "request")
        if action.session_mode == "persistent" and not policy.allowed_prefixes:
            return _fail(
                400, "hooks.allowedSessionKeyPrefixes is required when direct hook sessionMode is persistent"
            )
        key = hook_idempotency_key({k.lower(): v for k, v in request.headers.items()}, payload)
        action = replace(action, idempotency_key=key)
        generated = not action.session_key and not policy.default_session_key
        dispatched = await self._dispatch_agent(
            request, policy, action, agent, logical, generated, "agent", wait is True
        )
        body: dict[str, Any] = {"ok": True, "runId": dispatched.run_id}
        if wait is True:
            body["completion"] = await self._completion(dispatched)
        return JSONResponse(body)

    async def _dispatch_agent(
        self,
        request: Request,
        policy: HooksPolicy,
        action: AgentAction,
        agent: str,
        logical: str,
        generated: bool,
        path: str,
        wait: bool,
    ) -> _Dispatched:
        dispatch = policy.dispatch_key(logical, agent)
        scope = {
            "path": path,
            "agentId": agent,
            # the key asked for, not a generated one: a replay must find the same run
            "sessionKey": None if generated else logical,
            "message": action.message,
            "name": action.name,
            "sessionMode": action.session_mode,
            "deliver": action.delivery.deliver,
            "channel": action.delivery.channel,
            "to": action.delivery.to,
            "accountId": action.delivery.account_id,
            "model": action.model,
            "thinking": action.thinking,
            "timeoutSeconds": action.timeout_seconds,
        }
        # OpenClaw's replay scope: the same key with the same dispatch fields is the same run
        run_id = (
            uuid.uuid5(
                uuid.NAMESPACE_URL,
                "clawmesh:hook:" + json.dumps([action.idempotency_key, scope], sort_keys=True),
            ).hex
            if action.idempotency_key
            else uuid.uuid4().hex
        )
        base = to_agent_store_session_key(agent, dispatch)
        # isolated: a fresh session per run, unless the key is already one (a generated hook:<uuid>)
        session = base if action.session_mode == "persistent" or generated else f"{base}:run:{run_id}"
        delivery = action.delivery
        metadata = {
            "hook": "agent",
            "hookName": action.name,
            "hookSessionKey": logical,
            "hookSessionMode": action.session_mode,
            "hookDeliver": "true" if delivery.deliver else "false",
            "hookDeliveryMode": delivery.mode,
            "hookChannel": delivery.channel,
            **({"hookTo": delivery.to} if delivery.to else {}),
            **({"hookAccountId": delivery.account_id} if delivery.account_id else {}),
            **({"hookMapping": action.mapping_id} if action.mapping_id else {}),
            **({"hookModel": action.model} if action.model else {}),
            **({"hookThinking": action.thinking} if action.thinking else {}),
            **({"hookTimeoutSeconds": str(action.timeout_seconds)} if action.timeout_seconds else {}),
        }
        text = (
            action.message
            if action.allow_unsafe_external_content
            else wrap_external_content(
                action.message, source="email" if path == "gmail" else "webhook", task=action.name
            )
        )
        return await self._submit(
            request, run_id, agent, session, text, metadata, wait=wait, model=action.model, delivery=delivery
        )

    async def _completion(self, dispatched: _Dispatched) -> dict[str, Any]:
        """OpenClaw's `completion`: terminal facts only, never the reply's text."""
        if dispatched.pending is None:
            return await self._stored_outcome(dispatched.run_id)
        with contextlib.closing(dispatched.pending) as pending:
            try:
                final = await pending.outcome(self.turns.turn_timeout())
            except TimeoutError:
                return {"status": "error"}
        if isinstance(final, TurnFinal):
            return {"status": "ok", "replyDisposition": "visible" if final.text.strip() else "empty"}
        return {"status": "error"}

    async def _stored_outcome(self, run_id: str) -> dict[str, Any]:
        """A replayed run (same idempotency key): its outcome from the turn store, polled."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.turns.turn_timeout()
        while True:
            status = await self.ctx.sessions.get_turn_status(run_id)
            if status is not None and status.state == "done":
                return {
                    "status": "ok",
                    "replyDisposition": "visible" if (status.text or "").strip() else "empty",
                }
            if status is not None and status.state == "error":
                return {"status": "error"}
            if loop.time() >= deadline:
                return {"status": "error"}
            await asyncio.sleep(1.0)  # polling a store for a state, not synchronising a test

    # --- mapped -------------------------------------------------------------------------
    async def _mapped(
        self, request: Request, policy: HooksPolicy, subpath: str, payload: dict[str, Any]
    ) -> Response:
        if not policy.rules:
            return _fail(404, "Not Found")
        headers = {k.lower(): v for k, v in request.headers.items()}
        ctx = MappingContext(payload=payload, headers=headers, query=dict(request.query_params), path=subpath)
        try:
            mapped = apply_rules(policy.rules, ctx, policy.channels)
        except TransformUnsupported as exc:
            log.warning(
                "hook mapping %s failed: transforms (JS/TS modules) are not supported by clawmesh", exc
            )
            return _fail(500, "hook mapping failed")
        if mapped is None:
            return _fail(404, "Not Found")
        if mapped.dropped:
            log.warning(
                "hook mapping %s fan-out dropped %d items beyond the 200-item cap", subpath, mapped.dropped
            )
        if not mapped.actions:
            return Response(status_code=204)
        key = hook_idempotency_key(headers, payload)
        wake_outcome: str | None = None
        wake_mode = "now"
        prepared: list[tuple[AgentAction, str, str, bool]] = []
        for action in mapped.actions:
            if isinstance(action, WakeAction):
                outcome = await self._dispatch_wake(request, policy, action, action.session_key_source)
                if wake_outcome is None or outcome == "queued":
                    wake_outcome = outcome
                wake_mode = action.mode
                continue
            agent = policy.target_agent(action.agent_id, "mapping")
            if (
                action.session_mode == "persistent"
                and not action.session_key
                and not policy.default_session_key
            ):
                return _fail(
                    400,
                    "sessionKey or hooks.defaultSessionKey is required when mapped hook sessionMode is persistent",
                )
            logical = policy.session_key(action.session_key, action.session_key_source)
            policy.dispatch_key(logical, agent)  # the prefix check, before anything is dispatched
            generated = not action.session_key and not policy.default_session_key
            prepared.append((action, agent, logical, generated))
        wake = {"eventOutcome": wake_outcome} if wake_outcome else {}
        if not prepared:
            return JSONResponse({"ok": True, "mode": wake_mode, **wake})
        run_ids: list[str] = []
        occurrences: dict[str, int] = {}
        for action, agent, logical, generated in prepared:
            if mapped.fanout:
                # items of one batch are told apart even when they render alike (OpenClaw's occurrence)
                fingerprint = json.dumps([agent, logical, action.message, action.name], sort_keys=True)
                occurrence = occurrences.get(fingerprint, 0)
                occurrences[fingerprint] = occurrence + 1
                item_key: str | None = f"{key or 'hook-fanout-item'}:{occurrence}"
            else:
                item_key = key
            dispatched = await self._dispatch_agent(
                request,
                policy,
                replace(action, idempotency_key=item_key),
                agent,
                logical,
                generated,
                subpath,
                False,
            )
            run_ids.append(dispatched.run_id)
        if not mapped.fanout or len(run_ids) == 1:
            return JSONResponse({"ok": True, "runId": run_ids[0], **wake})
        return JSONResponse(
            {"ok": True, "runId": run_ids[0], "runIds": run_ids, "dispatched": len(run_ids), **wake}
        )

    # --- submission ---------------------------------------------------------------------
    async def _submit(
        self,
        request: Request,
        run_id: str,
        agent: str,
        session: str,
        text: str,
        metadata: dict[str, str],
        *,
        wait: bool,
        model: str | None = None,
        delivery: Delivery | None = None,
    ) -> _Dispatched:
        # a concrete destination (`channel` + `to`): the turn is that chat's, so its reply goes
        # out through the channel's adapter like any reply; otherwise it stays on channel `hook`
        channel, account, peer = HOOK_CHANNEL, "default", None
        if delivery is not None and delivery.deliver and delivery.channel != "last" and delivery.to:
            channel, peer = delivery.channel, Peer(kind="direct", id=delivery.to)
            account = normalize_account_id(delivery.account_id)
        inbound = InboundMessage(
            id=run_id,
            channel=channel,
            account_id=account,
            peer=peer,
            text=text,
            agent_id=agent,
            session_key=session,
            received_at=now(),
            reply_subject=self.turns.reply_subject if wait else None,
            reply_events="final",
            metadata=metadata,
            options=TurnOptions(model=model) if model and "/" in model else None,
        )
        pending = await self.turns.submit(inbound, f"in:{HOOK_CHANNEL}:{run_id}", request.headers)
        if pending.duplicate or not wait:
            pending.close()
            return _Dispatched(run_id, None)
        return _Dispatched(run_id, pending)
