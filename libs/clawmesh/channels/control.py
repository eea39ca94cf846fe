"""`AccessControl`: the one call a channel adapter makes per inbound message.

    control = AccessControl(config, kv=buckets["pairing"], publish=nc.publish)
    decision = await control.check(AccessRequest(channel="telegram", chat_type="direct", ...))
    match decision:
        case Admit() | Command(): ...            # route it (a Command is handled, not sent to a model)
        case PairingChallenge(reply=text): ...   # send `text` to the sender, drop the message
        case Deny(): ...                         # drop it; already counted and published

It resolves the account's policy from the config (cached per config), reads the senders
approved by pairing only when the config alone does not admit the sender, creates pairing
requests, counts every decision (`counters`, reported in the ingress status) and publishes each
denial as an `AccessDenied` event on `cm.access.denied.<channel>.<account>` (docs/subjects.md).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable

import msgspec
from nats.js.kv import KeyValue

from ..config import Config
from ..routing import AgentSelectionRequired, resolve_route
from ..wire import Subjects
from .access import (
    AccessRequest,
    Admit,
    ChannelPolicy,
    Command,
    Decision,
    Deny,
    PairingChallenge,
    PairingRequired,
    decide,
)
from .pairing import PairingStore, pairing_reply

__all__ = ["AccessControl", "AccessDenied"]

log = logging.getLogger("clawmesh.channels")

Publish = Callable[[str, bytes], Awaitable[None]]


class AccessDenied(msgspec.Struct, kw_only=True, rename="camel"):
    """Published for every message access control dropped (never its text)."""

    channel: str
    account: str
    chat_type: str
    sender_id: str
    group_id: str | None = None
    reason: str
    at: float


class AccessControl:
    def __init__(
        self,
        config: Config,
        kv: KeyValue | None = None,
        *,
        publish: Publish | None = None,
        subjects: Subjects | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._config = config
        self._policies: dict[tuple[str, str], ChannelPolicy] = {}
        self._store = PairingStore(kv, clock=clock) if kv is not None else None
        self._publish = publish
        self._subjects = subjects or Subjects()
        self._clock = clock
        self.counters: Counter[str] = Counter()

    @property
    def store(self) -> PairingStore | None:
        return self._store

    def update_config(self, config: Config) -> None:
        """A reloaded config: policies are resolved again on next use."""
        self._config = config
        self._policies = {}

    def policy(self, channel: str, account: str) -> ChannelPolicy:
        key = (channel, account)
        found = self._policies.get(key)
        if found is None:
            found = self._policies[key] = ChannelPolicy.resolve(self._config, channel, account)
        return found

    async def check(self, request: AccessRequest) -> Decision:
        policy = self.policy(request.channel, request.account)
        if request.chat_type != "direct" and request.agent_id is None:
            request = msgspec.structs.replace(request, agent_id=self._routed_agent(request, policy.account))
        verdict = decide(request, policy)
        if isinstance(verdict, PairingRequired) and self._store is not None:
            # Only now is the KV read: senders the config admits never cost one.
            approved = await self._store.approved(request.channel, policy.account)
            if approved:
                verdict = decide(request, policy, approved)
        decision = await self._finish(request, policy.account, verdict)
        self._count(decision)
        if isinstance(decision, Deny):
            await self._announce(request, policy.account, decision)
        return decision

    async def _finish(
        self, request: AccessRequest, account: str, verdict: Admit | Deny | PairingRequired | Command
    ) -> Decision:
        if not isinstance(verdict, PairingRequired):
            return verdict
        if self._store is None:
            return Deny("pairing-unavailable")
        meta = {"username": request.sender_username or "", "name": request.sender_name or ""}
        code = await self._store.challenge(request.channel, account, request.sender_id, meta)
        if code is None:
            return Deny("pairing-pending")
        return PairingChallenge(code, pairing_reply(request.channel, request.sender_id, code))

    def _routed_agent(self, request: AccessRequest, account: str) -> str | None:
        """The agent a group message will be routed to, whose mention patterns apply."""
        peer_id = request.group_id or ""
        parent = None
        if request.thread_id is not None and request.channel == "telegram":
            parent = {"kind": "group", "id": peer_id}
            peer_id = f"{peer_id}:topic:{request.thread_id}"
        elif request.parent_id is not None:
            parent = {"kind": request.chat_type, "id": request.parent_id}
        try:
            route = resolve_route(
                self._config,
                channel=request.channel,
                account_id=account,
                peer={"kind": request.chat_type, "id": peer_id},
                parent_peer=parent,
                guild_id=request.guild_id,
                team_id=request.team_id,
                member_role_ids=request.member_role_ids,
            )
        except AgentSelectionRequired:
            return None
        return route.agent_id

    def _count(self, decision: Decision) -> None:
        if isinstance(decision, Deny):
            self.counters["denied"] += 1
            self.counters[f"denied.{decision.reason}"] += 1
        elif isinstance(decision, PairingChallenge):
            self.counters["denied"] += 1
            self.counters["pairing.challenged"] += 1
        elif isinstance(decision, Command):
            self.counters["commands"] += 1
        else:
            self.counters["admitted"] += 1

    async def _announce(self, request: AccessRequest, account: str, decision: Deny) -> None:
        if self._publish is None:
            return
        event = AccessDenied(
            channel=request.channel,
            account=account,
            chat_type=request.chat_type,
            sender_id=request.sender_id,
            group_id=request.group_id,
            reason=decision.reason,
            at=self._clock(),
        )
        try:
            await self._publish(
                self._subjects.access_denied(request.channel, account), msgspec.json.encode(event)
            )
        except Exception:  # the event is informational: losing it must not drop the decision
            log.warning("could not publish an access denial", exc_info=True)
