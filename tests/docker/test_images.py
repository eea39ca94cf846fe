"""The locally built images (scripts/images.sh) do what the rest of clawmesh expects of them.

The fast ones (`scripts/images.sh test`: clawmesh-testbox, clawmesh-nats) must exist: a missing one
fails with the command to run. The slow ones (clawmesh-python, clawmesh-sandbox, clawmesh; built by
`scripts/images.sh all`) are only checked when present, and skipped with a reason otherwise.

Every container started here carries the label org.clawmesh.test=1 (plus a per-session id) and is
removed in a finally block; a session finalizer sweeps any that escaped.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import docker
import docker.errors
import httpx
import nats
import pytest
from docker.models.containers import Container

from tests.fixtures.gateway import wait_until

pytestmark = pytest.mark.docker

TESTBOX = "clawmesh-testbox:latest"
NATS = "clawmesh-nats:latest"
PYTHON = "clawmesh-python:bookworm"
SANDBOX = "clawmesh-sandbox:bookworm"
SERVICE = "clawmesh:latest"

SESSION = uuid.uuid4().hex[:12]
LABELS = {"org.clawmesh.test": "1", "org.clawmesh.test.session": SESSION}
TIMEOUT = 60  # seconds, for any single container to finish or become ready


@pytest.fixture(scope="module")
def client() -> Iterator[docker.DockerClient]:
    c = docker.from_env(timeout=TIMEOUT)
    try:
        yield c
    finally:
        # anything a failed test left behind (each test also removes its own containers)
        mine = {"label": f"org.clawmesh.test.session={SESSION}"}
        for leftover in c.containers.list(all=True, filters=mine):
            leftover.remove(force=True, v=True)
        c.close()


def require_image(client: docker.DockerClient, ref: str) -> None:
    """The fast images are part of the test setup: fail with the command that builds them."""
    try:
        client.images.get(ref)
    except docker.errors.ImageNotFound:
        pytest.fail(f"image {ref} missing: run `scripts/images.sh test` first")


def image_or_skip(client: docker.DockerClient, ref: str) -> None:
    """The slow images are only checked when they were built."""
    try:
        client.images.get(ref)
    except docker.errors.ImageNotFound:
        reason = f"{ref} not built (slow; `scripts/images.sh all` builds it)"
        print(f"skipping: {reason}")
        pytest.skip(reason)


def run_once(
    client: docker.DockerClient, image: str, command: list[str] | None, **kwargs: Any
) -> tuple[int, str]:
    """Run a container to completion; return (exit code, stdout+stderr). Always removes it."""
    container: Container = client.containers.create(image, command=command, labels=LABELS, **kwargs)
    try:
        container.start()
        status = container.wait(timeout=TIMEOUT)
        output = container.logs(stdout=True, stderr=True).decode(errors="replace")
        return int(status["StatusCode"]), output
    finally:
        container.remove(force=True, v=True)


def exec_ok(container: Container, cmd: list[str], **kwargs: Any) -> str:
    result = container.exec_run(cmd, **kwargs)
    output = result.output.decode(errors="replace")
    assert result.exit_code == 0, f"{cmd} -> exit {result.exit_code}: {output}"
    return output


def host_port(container: Container, port: str) -> int:
    """The random loopback port docker published for `port` (polls: it appears once started)."""
    deadline = time.monotonic() + TIMEOUT
    while True:
        container.reload()
        bindings = (container.attrs["NetworkSettings"]["Ports"] or {}).get(port)
        if bindings:
            assert bindings[0]["HostIp"] == "127.0.0.1"
            return int(bindings[0]["HostPort"])
        if container.status == "exited" or time.monotonic() > deadline:
            raise AssertionError(f"{port} not published; logs:\n{container.logs().decode(errors='replace')}")


def test_images_carry_the_build_labels(client: docker.DockerClient) -> None:
    for ref, name in [(TESTBOX, "testbox"), (NATS, "nats")]:
        require_image(client, ref)
        labels = client.images.get(ref).labels
        assert labels.get("org.clawmesh.image") == name
        assert len(labels.get("org.clawmesh.hash", "")) == 64


def test_testbox_runs_a_shell(client: docker.DockerClient) -> None:
    require_image(client, TESTBOX)
    code, out = run_once(client, TESTBOX, ["sh", "-c", "echo ok"])
    assert (code, out) == (0, "ok\n")


def test_testbox_has_the_tools_sandbox_tests_use(client: docker.DockerClient) -> None:
    require_image(client, TESTBOX)
    tools = "sh sleep cat id ls echo timeout touch mkdir head wc"
    script = f"for t in {tools}; do command -v $t >/dev/null || echo missing: $t; done; id -u; ls -d /tmp"
    code, out = run_once(client, TESTBOX, ["sh", "-c", script], network_mode="none")
    assert code == 0, out
    assert out == "0\n/tmp\n", out


async def _connect_when_ready(url: str) -> nats.NATS:
    """Poll until the server accepts a client (the container may still be starting)."""

    async def connected() -> nats.NATS | None:
        try:
            return await nats.connect(url, connect_timeout=1, allow_reconnect=False, max_reconnect_attempts=0)
        except Exception:
            return None

    client: nats.NATS = await wait_until(connected, timeout=TIMEOUT, message=f"NATS at {url}")
    return client


async def test_nats_image_serves_clients_and_jetstream(client: docker.DockerClient) -> None:
    require_image(client, NATS)
    container: Container = client.containers.run(
        NATS,
        detach=True,
        labels=LABELS,
        environment={"NATS_SERVER_NAME": "test-nats"},
        ports={"4222/tcp": ("127.0.0.1", None), "8222/tcp": ("127.0.0.1", None)},
    )
    try:
        url = f"nats://127.0.0.1:{host_port(container, '4222/tcp')}"
        nc = await _connect_when_ready(url)
        try:
            js = nc.jetstream()
            info = await js.account_info()
            assert info.limits is not None
            # JetStream really stores: a stream on /data takes a message
            await js.add_stream(name="IMGTEST", subjects=["imgtest.>"])
            ack = await js.publish("imgtest.one", b"hello")
            assert (ack.stream, ack.seq) == ("IMGTEST", 1)

            # plain request/reply through the server (a subject outside the stream)
            async def echo(msg: Any) -> None:
                await msg.respond(msg.data)

            sub = await nc.subscribe("echo.imgtest", cb=echo)
            reply = await nc.request("echo.imgtest", b"ping", timeout=5)
            assert reply.data == b"ping"
            await sub.unsubscribe()
        finally:
            await nc.close()

        # monitoring on 8222; the server name comes from NATS_SERVER_NAME
        monitor = f"http://127.0.0.1:{host_port(container, '8222/tcp')}"
        async with httpx.AsyncClient(timeout=5) as http:
            varz = (await http.get(f"{monitor}/varz")).json()
            assert varz["server_name"] == "test-nats"
            assert varz["jetstream"]["config"]["store_dir"].startswith("/data")
            health = await http.get(f"{monitor}/healthz", params={"js-enabled-only": "true"})
            assert health.status_code == 200, health.text
    finally:
        container.remove(force=True, v=True)


def test_python_image(client: docker.DockerClient) -> None:
    image_or_skip(client, PYTHON)
    code, out = run_once(
        client, PYTHON, ["python3", "-c", "import sys, venv, ensurepip, ssl; print(sys.version_info[:2])"]
    )
    assert (code, out) == (0, "(3, 11)\n"), out
    code, out = run_once(client, PYTHON, ["python3", "--version"])
    assert code == 0 and out.startswith("Python 3.11"), out


def test_sandbox_image_locked_down(client: docker.DockerClient) -> None:
    """Started the way the runner starts sandboxes: default CMD, no network, read-only root."""
    image_or_skip(client, SANDBOX)
    assert client.images.get(SANDBOX).attrs["Config"]["Cmd"] == ["sleep", "infinity"]
    container: Container = client.containers.run(
        SANDBOX,
        detach=True,
        labels=LABELS,
        network_mode="none",
        read_only=True,
        cap_drop=["ALL"],
        security_opt=["no-new-privileges"],
        mem_limit="256m",
        memswap_limit="256m",
        pids_limit=64,
        tmpfs={"/tmp": "rw,size=16m,mode=1777", "/workspace": "rw,size=16m,mode=1777"},
    )
    try:
        assert exec_ok(container, ["python3", "--version"]).startswith("Python 3.11")
        assert exec_ok(container, ["git", "--version"]).startswith("git version 2.")
        assert exec_ok(container, ["sh", "-c", "echo hi | tr a-z A-Z; ls / >/dev/null"]) == "HI\n"
        # git works in the writable workspace, as the non-root user too
        commits = exec_ok(
            container,
            [
                "sh",
                "-c",
                "git init -q repo && cd repo && echo x >f && git add f "
                "&& git -c user.email=a@b -c user.name=t commit -qm m && git log --oneline | wc -l",
            ],
            workdir="/workspace",
            user="1000:1000",
            environment={"HOME": "/tmp"},
        )
        assert commits == "1\n"
    finally:
        container.remove(force=True, v=True)


def test_service_image(client: docker.DockerClient) -> None:
    image_or_skip(client, SERVICE)
    labels = client.images.get(SERVICE).labels
    assert labels.get("org.clawmesh.image") == "service"
    code, out = run_once(client, SERVICE, ["clawmesh", "--help"], network_mode="none")
    assert code == 0, out
    code, out = run_once(
        client,
        SERVICE,
        ["sh", "-c", "id -u && touch /var/lib/clawmesh/probe && command -v nats-server"],
        network_mode="none",
    )
    assert (code, out) == (0, "10001\n/opt/clawmesh/bin/nats-server\n"), out
