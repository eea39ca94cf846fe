"""`clawmesh up`'s embedded nats-server is authenticated: the attacks of issue #10 (any local
process owning the gateway) are each refused by the server itself.

Every refusal is asserted as the server's own error (`Authorization Violation` on connect,
`Permissions Violation for Publish/Subscription to <subject>`), never as a timeout or "no
responders", which would also pass if nothing were listening."""

from __future__ import annotations

import json
import stat
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import nats
import pytest

from tests.e2e.test_up import Up
from tests.fixtures.gateway import wait_until


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    home = tmp_path_factory.mktemp("up-auth")
    config = home / "clawmesh.json"
    config.write_text(json.dumps({"agents": {"defaults": {"model": "echo/e2e"}, "list": [{"id": "home"}]}}))
    up = Up(home, config)
    try:
        yield up
    finally:
        if up.proc.poll() is None:
            up.stop()


def users_file(up: Up) -> Path:
    return Path(up.env["CLAWMESH_STATE_DIR"]) / "nats-auth" / "users.json"


def credentials(up: Up, name: str) -> tuple[str, str]:
    entry = json.loads(users_file(up).read_text())["users"][name]
    return entry["user"], entry["password"]


async def refusals(up: Up, name: str, action: Callable[[Any], Awaitable[Any]]) -> list[str]:
    """Connect as `name`, run `action`, and return the server's asynchronous errors."""
    errors: list[str] = []

    async def on_error(exc: Exception) -> None:
        errors.append(str(exc).lower())  # nats-py lower-cases some of them; compare lower-case

    user, password = credentials(up, name)
    nc = await nats.connect(
        up.ready["nats"], user=user, password=password, error_cb=on_error, allow_reconnect=False
    )
    try:
        await action(nc)
        await nc.flush()
        await wait_until(lambda: errors, timeout=10, message="the server's permissions violation")
    finally:
        await nc.close()
    return errors


def test_credentials_are_private_files(gateway: Up) -> None:
    path = users_file(gateway)
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


async def test_anonymous_client_is_refused(gateway: Up) -> None:
    with pytest.raises(Exception, match=r"(?i)authorization violation"):
        await nats.connect(gateway.ready["nats"], allow_reconnect=False, max_reconnect_attempts=0)


async def test_wrong_password_is_refused(gateway: Up) -> None:
    user, _ = credentials(gateway, "admin")
    with pytest.raises(Exception, match=r"(?i)authorization violation"):
        await nats.connect(
            gateway.ready["nats"],
            user=user,
            password="guess",
            allow_reconnect=False,
            max_reconnect_attempts=0,
        )


@pytest.mark.parametrize(
    ("attack", "verb", "subject"),
    [
        ("exec on the local node", "pub", "cm.node.local.invoke"),
        ("read transcripts", "sub", "cm.tx.>"),
        ("read transcripts through JetStream", "pub", "$JS.API.CONSUMER.CREATE.CM_SESSIONS"),
        ("overwrite a session record", "pub", "$KV.cm_sessions.d.x"),
        ("watch session records", "sub", "$KV.cm_sessions.>"),
        ("forge an inbound message", "pub", "cm.in.api.default"),
        ("forge a reply", "pub", "cm.reply.someinstance"),
        ("delete a stream", "pub", "$JS.API.STREAM.DELETE.CM_SESSIONS"),
        ("create a stream", "pub", "$JS.API.STREAM.CREATE.EVIL"),
    ],
)
async def test_integration_credentials_cannot_attack(
    gateway: Up, attack: str, verb: str, subject: str
) -> None:
    async def act(nc: Any) -> None:
        if verb == "pub":
            await nc.publish(subject, b"{}")
        else:
            await nc.subscribe(subject)

    errors = await refusals(gateway, "integration", act)
    kind = "publish" if verb == "pub" else "subscription"
    assert any("permissions violation" in e and kind in e and subject.lower() in e for e in errors), (
        attack,
        errors,
    )


@pytest.mark.parametrize("who", ["ingress", "router", "runner", "node-local"])
async def test_service_credentials_cannot_delete_streams(gateway: Up, who: str) -> None:
    subject = "$JS.API.STREAM.DELETE.CM_SESSIONS"
    errors = await refusals(gateway, who, lambda nc: nc.publish(subject, b""))
    assert any("permissions violation" in e and subject.lower() in e for e in errors), errors


async def test_integration_reads_the_documented_subjects(gateway: Up) -> None:
    user, password = credentials(gateway, "integration")
    errors: list[str] = []

    async def on_error(exc: Exception) -> None:
        errors.append(str(exc))

    nc = await nats.connect(gateway.ready["nats"], user=user, password=password, error_cb=on_error)
    try:
        for subject in ("cm.ev.>", "cm.route.decided", "cm.out.>"):
            await nc.subscribe(subject)
        await nc.flush()
        # a later violation proves errors are reported on this connection at all
        await nc.subscribe("cm.in.>")
        await nc.flush()
        await wait_until(lambda: errors, timeout=10, message="the later violation")
    finally:
        await nc.close()
    assert len(errors) == 1 and "cm.in.>" in errors[0], errors


def test_cli_uses_its_admin_credentials(gateway: Up) -> None:
    status = gateway.cli("status", "--nats-url", gateway.ready["nats"], "--json")
    assert status.returncode == 0, status.stderr
    names = {s["name"] for s in json.loads(status.stdout)["services"]}
    assert {"clawmesh-ingress", "clawmesh-router", "clawmesh-runner", "clawmesh-node-agent"} <= names
