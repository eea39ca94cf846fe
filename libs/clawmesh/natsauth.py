"""Per-service NATS users with subject permissions (`clawmesh deploy nats-config`).

Each service gets a user that may publish and subscribe only where its job needs: ingress
publishes inbound messages and reads events; the router reads inbound and writes turns;
runners read turns and write events, replies, transcripts and node invocations; each
node-agent answers only its own node's subject and writes only its own presence key; an
integration user may only subscribe to events. A credential used outside its permissions is
refused by the server (`Permissions Violation`).

JetStream needs its API subjects: every service user may use `$JS.API.>` except the
destructive verbs (deleting or purging streams, account-level changes), so the services can
provision their streams and consumers on start without being able to destroy data.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .wire import Subjects, encode_token

__all__ = ["NatsUser", "nats_users", "render_auth_conf", "render_env"]

_JS_DENY = [
    "$JS.API.STREAM.DELETE.>",
    "$JS.API.STREAM.PURGE.>",
    "$JS.API.ACCOUNT.>",
    "$JS.API.META.>",
    "$JS.API.SERVER.>",
]
# What every service needs: JetStream (minus the destructive API), acks, replies to requests
# it makes (inboxes), and NATS micro discovery ($SRV.*).
_COMMON_PUB = ["$JS.API.>", "$JS.ACK.>", "$JS.FC.>", "$SRV.>"]
_COMMON_SUB = ["_INBOX.>", "$SRV.>"]


@dataclass
class NatsUser:
    name: str  # service name: ingress | router | runner | node-<id> | integration | admin
    user: str
    password: str
    publish: list[str] = field(default_factory=list)
    subscribe: list[str] = field(default_factory=list)
    publish_deny: list[str] = field(default_factory=list)
    allow_responses: bool = True

    def permissions(self) -> dict[str, Any]:
        perms: dict[str, Any] = {}
        if self.publish or self.publish_deny:
            perms["publish"] = {
                "allow": self.publish,
                **({"deny": self.publish_deny} if self.publish_deny else {}),
            }
        if self.subscribe:
            perms["subscribe"] = {"allow": self.subscribe}
        if self.allow_responses:
            perms["allow_responses"] = True
        return perms


def _kv(subjects: Subjects, bucket: str, key: str = ">") -> str:
    return f"$KV.{subjects.bucket(bucket)}.{key}"


def nats_users(
    prefix: str = "cm",
    *,
    nodes: Sequence[str] = ("local",),
    passwords: Mapping[str, str] | None = None,
    admin: bool = True,
) -> list[NatsUser]:
    """The users of a deployment; `passwords` (name → password) override generated ones."""
    s = Subjects(prefix)
    p = s.prefix
    given = dict(passwords or {})

    def pw(name: str) -> str:
        return given.get(name) or secrets.token_urlsafe(24)

    def svc(name: str, publish: list[str], subscribe: list[str]) -> NatsUser:
        return NatsUser(
            name=name,
            user=f"{p}-{name}",
            password=pw(name),
            publish=[*publish, *_COMMON_PUB],
            subscribe=[*subscribe, *_COMMON_SUB],
            publish_deny=list(_JS_DENY),
        )

    users = [
        svc(
            "ingress",
            publish=[f"{p}.in.>", f"{p}.dlq.ingress", _kv(s, "turns"), _kv(s, "sessions")],
            subscribe=[f"{p}.reply.>", f"{p}.ev.>", f"{p}.out.>", f"{p}.ctl.>"],
        ),
        svc(
            "router",
            publish=[
                f"{p}.turn.>",
                f"{p}.route.decided",
                f"{p}.reply.>",
                f"{p}.dlq.router",
                _kv(s, "sessions"),
                _kv(s, "leases"),
                _kv(s, "turns"),
            ],
            subscribe=[f"{p}.ctl.>"],
        ),
        svc(
            "runner",
            publish=[
                f"{p}.ev.>",
                f"{p}.out.>",
                f"{p}.reply.>",
                f"{p}.tx.>",
                f"{p}.dlq.runner",
                f"{p}.node.*.invoke",
                f"{p}.a2a.>",
                _kv(s, "sessions"),
                _kv(s, "leases"),
                _kv(s, "turns"),
            ],
            subscribe=[f"{p}.reply.>", f"{p}.ctl.>"],
        ),
    ]
    for node in nodes:
        token = encode_token(node)
        users.append(
            svc(
                f"node-{token}",
                publish=[f"{p}.reply.>", f"{p}.dlq.node_agent", _kv(s, "nodes", token)],
                subscribe=[f"{p}.node.{token}.invoke", f"{p}.ctl.>"],
            )
        )
    users.append(
        NatsUser(
            name="integration",
            user=f"{p}-integration",
            password=pw("integration"),
            publish=[],
            subscribe=[f"{p}.ev.>", f"{p}.route.decided", f"{p}.out.>"],
            publish_deny=[">"],
            allow_responses=False,
        )
    )
    if admin:
        # The operator's CLI (status, sessions, reload): everything.
        users.append(
            NatsUser(name="admin", user=f"{p}-admin", password=pw("admin"), publish=[">"], subscribe=[">"])
        )
    return users


def _conf_value(value: Any) -> str:
    return json.dumps(value)  # nats-server's config syntax accepts JSON values


def render_auth_conf(users: Sequence[NatsUser]) -> str:
    """An `authorization { users: [...] }` block for nats-server (include it from the main config)."""
    lines = [
        "# Generated by `clawmesh deploy nats-config`: one user per service, least privilege.",
        "# Keep this file private (mode 0600): it holds the passwords.",
        "authorization {",
        "  users: [",
    ]
    for u in users:
        entry = {"user": u.user, "password": u.password, "permissions": u.permissions()}
        lines.append(f"    {_conf_value(entry)}")
    lines += ["  ]", "}", ""]
    return "\n".join(lines)


def render_env(users: Sequence[NatsUser]) -> str:
    """`KEY=value` lines for the services (docker compose `env_file`, systemd, …)."""
    out = ["# Generated by `clawmesh deploy nats-config`. Keep private."]
    for u in users:
        key = u.name.upper().replace("-", "_").replace("=", "_")
        out.append(f"CLAWMESH_NATS_USER_{key}={u.user}")
        out.append(f"CLAWMESH_NATS_PASSWORD_{key}={u.password}")
    return "\n".join(out) + "\n"
