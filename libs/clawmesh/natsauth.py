"""Per-service NATS users with subject permissions (`clawmesh deploy nats-config`).

Each service gets a user that may publish and subscribe only where its job needs: ingress
publishes inbound messages and `POST /tools/invoke` requests, and reads events; the router
reads inbound and writes turns; runners read turns and tool requests and write events, replies,
transcripts, node invocations and internal inbound turns (sub-agent runs, sessions_send,
announces); each
node-agent answers only its own node's subject and writes only its own presence key; an
integration user may only subscribe to events. A credential used outside its permissions is
refused by the server (`Permissions Violation`).

JetStream needs its API subjects: every service user may use `$JS.API.>` except the
destructive verbs (deleting or purging streams, account-level changes), so the services can
provision their streams and consumers on start without being able to destroy data.

`clawmesh up` uses the same users for its embedded nats-server: `embedded_users` generates
them on the first start and keeps them under the state dir (`nats-auth/users.json`, directory
0700, file 0600) so a restart reuses the passwords; the CLI reads the `admin` user from there.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from .wire import Subjects, encode_token

# the chat platforms ingress has adapters for (services/ingress/channels)
_CHAT_PLATFORMS = ("discord", "slack", "telegram", "whatsapp")

__all__ = [
    "EMBEDDED_AUTH_DIR",
    "NatsAuthError",
    "NatsUser",
    "embedded_admin",
    "embedded_users",
    "nats_users",
    "render_auth_conf",
    "render_env",
    "service_user",
]

EMBEDDED_AUTH_DIR = "nats-auth"  # under the state dir
_USERS_FILE = "users.json"


class NatsAuthError(RuntimeError):
    """The stored embedded credentials cannot be used (unreadable or malformed file)."""


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


def _ingress_permissions(s: Subjects) -> tuple[list[str], list[str]]:
    """What `cm-ingress` may publish and subscribe to."""
    # approvals: the HTTP API answers exec approval requests; pairing: channel adapters
    # create DM pairing requests (approving one is the operator's, with admin creds);
    # tools.invoke: POST /tools/invoke asks a runner (it never reaches a node itself)
    publish = [
        s.inbound_all,
        s.tools_invokes_all,
        s.dead_letter("ingress"),
        s.access_all,
        s.kv("turns"),
        s.kv("sessions"),
        s.kv("approvals"),
        s.kv("pairing"),
        # channels: poller leases, getUpdates offsets, replies sent (CM_OUTBOUND delivery)
        s.kv("leases"),
        s.kv("channels"),
        s.kv("delivered"),
        # channels: the files of chat messages, kept for their turns (clawmesh.media)
        s.objects("media"),
        # channels: the answer to an `/approve` typed into a chat, delivered like a reply
        # (the chat platforms' outbound subjects only: never the HTTP API's replies)
        *(f"{s.prefix}.out.{encode_token(ch)}.>" for ch in _CHAT_PLATFORMS),
        # federation: its own catalogue broadcast, the other regions' catalogues kept
        f"{s.prefix}.gwcast.>",
        # federation: another region stopped its side of a remote turn running here
        s.stop,
        s.kv("gateways"),
        # the events of a remote turn answer a request that crossed the hub: its reply
        # subject is the hub's response mapping (`_R_.…`), and allow_responses admits
        # one reply only
        "_R_.>",
        # the Synadia Agent Protocol: heartbeats, and a prompt's reply is a stream of
        # messages to the caller's inbox (allow_responses admits one reply only)
        s.agent_protocol_all("hb"),
        "_INBOX.>",
    ]
    subscribe = [
        s.agent_protocol_all("prompt"),
        s.agent_protocol_all("status"),
        s.replies_all,
        s.events_all,
        s.outbound_all,
        s.control_all,
        f"{s.prefix}.gw.>",
        f"{s.prefix}.gwcast.>",
    ]
    return publish, subscribe


def _router_permissions(s: Subjects) -> tuple[list[str], list[str]]:
    """What `cm-router` may publish and subscribe to."""
    publish = [
        s.turns_all,
        s.route_decided,
        s.replies_all,
        s.dead_letter("router"),
        s.stop,  # `/stop` stops a session's running turn and its sub-agent runs
        s.kv("sessions"),
        s.kv("leases"),
        s.kv("turns"),
        # federation failover (no live runner here): the turn asked of another region, and
        # its reply stored where this region's replies go
        f"{s.prefix}.gw.*.turn.>",
        s.outbound_all,
    ]
    subscribe = [s.control_all]
    return publish, subscribe


def _runner_permissions(s: Subjects) -> tuple[list[str], list[str]]:
    """What `cm-runner` may publish and subscribe to."""
    publish = [
        s.events_all,
        s.outbound_all,
        s.replies_all,
        s.transcripts_all,
        s.dead_letter("runner"),
        s.node_invokes_all,
        s.a2a_all,
        "agents.prompt.>",  # runnerType synadia: any Synadia Agent Protocol agent on the bus
        f"{s.prefix}.gw.>",  # federation: turns of agents on other gateways
        s.inbound_all,  # sub-agent runs, sessions_send and announces are inbound turns
        s.stop,  # a child past its runTimeoutSeconds stops its own children
        s.kv("sessions"),
        s.kv("leases"),
        s.kv("turns"),
    ]
    # tools.invoke: serves POST /tools/invoke (queue group), answering on the inbox
    subscribe = [s.replies_all, s.tools_invokes_all, s.control_all]
    return publish, subscribe


_SERVICES: Final = (
    ("ingress", _ingress_permissions),
    ("router", _router_permissions),
    ("runner", _runner_permissions),
)


def nats_users(
    prefix: str = "cm",
    *,
    nodes: Sequence[str] = ("local",),
    passwords: Mapping[str, str] | None = None,
    admin: bool = True,
) -> list[NatsUser]:
    """The users of a deployment; `passwords` (name → password) override generated ones."""
    s = Subjects(prefix)
    given = dict(passwords or {})

    def pw(name: str) -> str:
        return given.get(name) or secrets.token_urlsafe(24)

    def svc(name: str, publish: list[str], subscribe: list[str]) -> NatsUser:
        return NatsUser(
            name=name,
            user=f"{s.prefix}-{name}",
            password=pw(name),
            publish=[*publish, *_COMMON_PUB],
            subscribe=[*subscribe, *_COMMON_SUB],
            publish_deny=list(_JS_DENY),
        )

    users = [svc(name, *permissions(s)) for name, permissions in _SERVICES]
    for node in nodes:
        token = encode_token(node)
        users.append(
            svc(
                f"node-{token}",
                # its own approval requests only: a node cannot decide another node's
                publish=[
                    s.replies_all,
                    # federation: a remote exec's live output and result answer a request that
                    # crossed the hub, on its response mapping (allow_responses admits one reply)
                    "_R_.>",
                    s.dead_letter("node-agent"),
                    s.kv("nodes", token),
                    s.kv("approvals", f"{token}.>"),
                ],
                # federation: its own invocations from other regions, when its gateway exposes it
                subscribe=[s.node_invoke(node), f"{s.prefix}.gw.*.node.{token}.invoke", s.control_all],
            )
        )
    users.append(
        NatsUser(
            name="integration",
            user=f"{s.prefix}-integration",
            password=pw("integration"),
            publish=[],
            subscribe=[s.events_all, s.route_decided, s.outbound_all, s.access_all, s.a2a_all],
            publish_deny=[">"],
            allow_responses=False,
        )
    )
    if admin:
        # The operator's CLI (status, sessions, reload): everything.
        users.append(
            NatsUser(
                name="admin", user=f"{s.prefix}-admin", password=pw("admin"), publish=[">"], subscribe=[">"]
            )
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


def service_user(users: Sequence[NatsUser], service: str, *, node_id: str = "local") -> NatsUser:
    """The user a service connects as: by its name (`node_agent` → `node-<its node>`)."""
    key = service.replace("_", "-")
    name = f"node-{encode_token(node_id)}" if key == "node-agent" else key
    for u in users:
        if u.name == name:
            return u
    raise NatsAuthError(f"no NATS user for service {service!r} (looked for {name!r})")


def _private_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.chmod(0o700)  # mkdir's mode is masked by the umask and ignored for an existing dir
    return path


def _read_passwords(path: Path) -> dict[str, str]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise NatsAuthError(
            f"{path}: cannot read the embedded NATS credentials ({exc}); delete the file to generate new ones"
        ) from exc
    users = data.get("users") if isinstance(data, dict) else None
    if not isinstance(users, dict) or not all(
        isinstance(v, dict) and isinstance(v.get("password"), str) and v["password"] for v in users.values()
    ):
        raise NatsAuthError(
            f'{path}: expected {{"users": {{name: {{"user": ..., "password": ...}}}}}}; '
            "delete the file to generate new credentials"
        )
    return {str(name): v["password"] for name, v in users.items()}


def _write_private(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    os.replace(tmp, path)


def embedded_users(
    state_dir: Path, prefix: str = "cm", *, nodes: Sequence[str] = ("local",)
) -> list[NatsUser]:
    """The users of `clawmesh up`'s embedded nats-server: generated on the first start, the
    passwords reused on every later one (a new node gets a new user, the others keep theirs).
    Permissions are always recomputed from `nats_users`, never read from the file."""
    folder = _private_dir(state_dir / EMBEDDED_AUTH_DIR)
    path = folder / _USERS_FILE
    stored = _read_passwords(path)
    users = nats_users(prefix, nodes=nodes, passwords=stored)
    merged = {**stored, **{u.name: u.password for u in users}}
    by_name = {u.name: u.user for u in users}
    if merged != stored:  # always so without a file: `stored` is empty, `users` never is
        doc = {
            "comment": "clawmesh up: embedded nats-server users. Private (0600).",
            "users": {
                n: {"user": by_name.get(n, f"{prefix}-{n}"), "password": pw} for n, pw in merged.items()
            },
        }
        _write_private(path, json.dumps(doc, indent=2) + "\n")
    elif path.stat().st_mode & 0o077:
        path.chmod(0o600)
    return users


def embedded_admin(state_dir: Path, prefix: str = "cm") -> tuple[str, str] | None:
    """(user, password) of the embedded server's `admin` user, for the CLI; None before the
    first `clawmesh up` (nothing is generated here)."""
    path = state_dir / EMBEDDED_AUTH_DIR / _USERS_FILE
    password = _read_passwords(path).get("admin")
    return (f"{Subjects(prefix).prefix}-admin", password) if password else None
