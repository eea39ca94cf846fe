"""The docker compose deployment (docker-compose.yml + deploy/compose/*), run for real.

Every test gets its own compose project (`cmtest<session><n>`), free host ports
(CLAWMESH_HTTP_PORT, CLAWMESH_NATS_PORT) and a fixture that always runs `down -v
--remove-orphans`, then removes whatever is left with the project's label (containers, networks,
volumes). The compose logs of every project are kept in .ci-logs/compose/<project>.log.

The main, permissions and cluster tests run with each compose implementation: the v2 plugin
(`docker compose`) and v1.29 (`docker-compose`; scripts/ensure-docker.sh installs both on
bookworm); one that is missing is skipped with the reason printed. The load test uses the
preferred one (v2). Deployments go through scripts/compose.sh, as docs/deploy.md tells people to
(CLAWMESH_COMPOSE selects the implementation), which generates each project's NATS users and API
token into its own secrets dir; plain compose is tested for refusing to start without them.
Nothing sleeps to synchronise: everything is polled with a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import docker.errors
import httpx
import json5
import nats
import pytest
from nats.aio.msg import Msg
from typer.testing import CliRunner

from clawmesh.cli import app as cli_app
from tests.fixtures.gateway import wait_until
from tests.fixtures.ports import free_ports

pytestmark = [pytest.mark.docker, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
CLAWMESH = str(Path(sys.executable).with_name("clawmesh"))
SESSION = uuid.uuid4().hex[:6]
TOKEN = "compose-test-token"
SERVICES = ("ingress", "router", "runner", "node-agent")
SRV_NAMES = {"clawmesh-ingress", "clawmesh-router", "clawmesh-runner", "clawmesh-node-agent"}
LOGS = REPO / ".ci-logs" / "compose"


# --- compose implementations -----------------------------------------------------------------
def _works(cmd: list[str]) -> bool:
    try:
        return subprocess.run([*cmd, "version"], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


_IMPLS: dict[str, list[str] | None] = {}


def impl(name: str) -> list[str] | None:
    """`v2` → docker compose, `v1` → docker-compose; None when not installed."""
    if name not in _IMPLS:
        cmd = ["docker", "compose"] if name == "v2" else ["docker-compose"]
        if name == "v1" and shutil.which("docker-compose") is None:
            _IMPLS[name] = None
        else:
            _IMPLS[name] = cmd if _works(cmd) else None
    return _IMPLS[name]


def impl_or_skip(which: str) -> list[str]:
    compose = impl(which)
    if compose is None:
        reason = (
            f"compose {which} is not installed "
            "(scripts/ensure-docker.sh installs the v2 plugin, and docker-compose v1 on bookworm)"
        )
        print(f"skipping: {reason}")
        pytest.skip(reason)
    return compose


def preferred() -> list[str]:
    for name in ("v2", "v1"):
        cmd = impl(name)
        if cmd is not None:
            return cmd
    pytest.fail("no docker compose installed (scripts/ensure-docker.sh installs it)")


# --- helpers ---------------------------------------------------------------------------------
def poll(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.25) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = predicate()
        except Exception as exc:  # not there yet (connection refused, ...)
            last = exc
        else:
            if last:
                return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")
        time.sleep(interval)


async def _stall_report(nc: Any, sent: dict[str, list[tuple[str, str]]], finals: Any) -> str:
    """Where the missing turns are: each stuck session's routed and completed sequence
    numbers, and the turn consumer's counters (for a failure message)."""
    import msgspec

    from clawmesh.sessions import DoneRecord, SessionRecord
    from clawmesh.wire import encode_token

    js = nc.jetstream()
    kv = await js.key_value("cm_sessions")
    lines = []
    for key, turns in sent.items():
        missing = [t for t, _ in turns if t not in finals]
        if not missing:
            continue
        rec = done = None
        with contextlib.suppress(Exception):
            rec = msgspec.json.decode((await kv.get(f"s.{encode_token(key)}")).value, type=SessionRecord)
        with contextlib.suppress(Exception):
            done = msgspec.json.decode((await kv.get(f"d.{encode_token(key)}")).value, type=DoneRecord)
        lines.append(
            f"{key}: {len(missing)} missing (first {missing[0][:8]}), routed seq {rec.seq if rec else '?'}, "
            f"done seq {done.seq if done else 0} turn {done.turn_id[:8] if done else '-'} "
            f"error={done.is_error if done else '-'} text={done.final_text[:60] if done else '-'!r}"
        )
    info = await js.consumer_info("CM_TURNS", "runner")
    leases = await js.key_value("cm_leases")
    with contextlib.suppress(Exception):
        lines.append(f"leases held: {len(await leases.keys())}")
    lines.append(
        f"runner consumer: pending {info.num_pending}, ack pending {info.num_ack_pending}, redelivered {info.num_redelivered}"
    )
    return "; ".join(lines[:40])


async def apoll(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.1) -> Any:
    return await wait_until(predicate, timeout=timeout, interval=interval, message=what)


def cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CLAWMESH, *args], capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})}
    )


@dataclass
class Deployment:
    """One compose project of the deployment under test."""

    name: str
    compose: list[str]  # the compose implementation
    http_port: int
    nats_port: int
    env: dict[str, str]
    profiles: list[str] = field(default_factory=list)  # scripts/compose.sh (pseudo-)profiles
    via_script: bool = True
    client: docker.DockerClient | None = None
    secrets: Path | None = None  # CLAWMESH_SECRETS_DIR: generated by scripts/compose.sh

    def credentials(self) -> dict[str, str]:
        """credentials.env of this project (after the script's first command)."""
        assert self.secrets is not None
        lines = (self.secrets / "credentials.env").read_text().splitlines()
        return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))

    @property
    def token(self) -> str:
        """The HTTP API token: the environment's, else the one scripts/compose.sh generated."""
        return self.env.get("CLAWMESH_GATEWAY_TOKEN") or self.credentials()["CLAWMESH_GATEWAY_TOKEN"]

    def admin(self) -> dict[str, str]:
        """nats.connect keyword arguments of the admin user."""
        creds = self.credentials()
        return {"user": creds["CLAWMESH_NATS_USER_ADMIN"], "password": creds["CLAWMESH_NATS_PASSWORD_ADMIN"]}

    def admin_env(self) -> dict[str, str]:
        """The CLI's environment with the admin user."""
        creds = self.admin()
        return {"CLAWMESH_NATS_USER": creds["user"], "CLAWMESH_NATS_PASSWORD": creds["password"]}

    def cmd(self, *args: str) -> list[str]:
        if self.via_script:
            profiles = [a for p in self.profiles for a in ("--profile", p)]
            return [str(REPO / "scripts" / "compose.sh"), "-p", self.name, *profiles, *args]
        return [*self.compose, "-p", self.name, *args]

    def run(self, *args: str, timeout: float = 240, check: bool = True) -> str:
        proc = subprocess.run(
            self.cmd(*args), cwd=REPO, env=self.env, capture_output=True, text=True, timeout=timeout
        )
        out = proc.stdout + proc.stderr
        if check and proc.returncode != 0:
            raise AssertionError(f"{' '.join(self.cmd(*args))} failed (exit {proc.returncode}):\n{out}")
        return out

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def nats_url(self) -> str:
        return f"nats://127.0.0.1:{self.nats_port}"

    def containers(self, service: str | None = None, *, all: bool = False) -> list[Any]:
        assert self.client is not None
        labels = [f"com.docker.compose.project={self.name}"]
        if service:
            labels.append(f"com.docker.compose.service={service}")
        return list(self.client.containers.list(all=all, filters={"label": labels}))

    def wait_ready(self, timeout: float = 90) -> None:
        poll(
            lambda: httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200,
            timeout,
            "GET /readyz → 200",
        )

    def wait_healthy(self, counts: dict[str, int], timeout: float = 90) -> None:
        """Poll until each service has `count` running containers whose health check passes."""

        def healthy() -> bool:
            for service, count in counts.items():
                states = []
                for c in self.containers(service):
                    c.reload()
                    states.append((c.attrs["State"].get("Health") or {}).get("Status"))
                if len(states) != count or any(s != "healthy" for s in states):
                    return False
            return True

        poll(healthy, timeout, f"healthy containers {counts}", interval=0.5)

    def send(
        self,
        text: str,
        peer: str = "host",
        *,
        account: str | None = None,
        message_id: str | None = None,
        retry_for: float = 0,
    ) -> dict[str, Any]:
        """POST /v1/messages?wait=30; with `retry_for`, retry server errors (same messageId:
        JetStream dedupes, so a retried accepted message is still one turn)."""
        body: dict[str, Any] = {"text": text, "peer": {"kind": "direct", "id": peer}}
        if account:
            body["accountId"] = account
        body["messageId"] = message_id or uuid.uuid4().hex
        headers = {"Authorization": f"Bearer {self.token}"}

        def attempt() -> dict[str, Any]:
            r = httpx.post(f"{self.url}/v1/messages?wait=30", json=body, headers=headers, timeout=45)
            data = r.json() if r.headers.get("content-type", "").startswith("application/json") else {}
            if r.status_code == 200 and data.get("text") is not None:
                return dict(data)
            if r.status_code == 200 and data.get("duplicate"):
                # a retry of a message that was accepted before: its turn's stored reply
                t = httpx.get(f"{self.url}/v1/turns/{data['turnId']}", headers=headers, timeout=10)
                if t.status_code == 200 and t.json().get("state") == "done":
                    return {**data, **t.json()}
            print(f"no reply to {text!r} yet: HTTP {r.status_code}: {r.text[:300]}")
            return {}

        result: dict[str, Any] = poll(attempt, retry_for, f"a reply to {text!r}", interval=0.5)
        return result

    def status(self, env: dict[str, str] | None = None) -> dict[str, Any]:
        proc = cli(
            "status", "--json", "--nats-url", self.nats_url, env=self.admin_env() if env is None else env
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return dict(json.loads(proc.stdout))

    def restarts(self) -> dict[str, int]:
        out = {}
        for c in self.containers(all=True):
            c.reload()
            out[c.name] = int(c.attrs.get("RestartCount", 0))
        return out


def leftovers(client: docker.DockerClient, project: str) -> dict[str, list[str]]:
    flt = {"label": f"com.docker.compose.project={project}"}
    return {
        "containers": [c.name for c in client.containers.list(all=True, filters=flt)],
        "networks": [n.name for n in client.networks.list(filters=flt)],
        "volumes": [v.name for v in client.volumes.list(filters=flt)],
    }


def sweep(client: docker.DockerClient, project: str) -> None:
    """Remove whatever a project left behind (after `down`), by its compose label."""
    flt = {"label": f"com.docker.compose.project={project}"}
    for c in client.containers.list(all=True, filters=flt):
        with contextlib.suppress(docker.errors.APIError):
            c.remove(force=True, v=True)
    for n in client.networks.list(filters=flt):
        with contextlib.suppress(docker.errors.APIError):
            n.remove()
    for v in client.volumes.list(filters=flt):
        with contextlib.suppress(docker.errors.APIError):
            v.remove(force=True)


# --- fixtures --------------------------------------------------------------------------------
_IMAGES_BUILT = False


@pytest.fixture(scope="session")
def docker_client() -> Iterator[docker.DockerClient]:
    client = docker.from_env(timeout=120)
    try:
        yield client
    finally:
        # anything of this session that escaped a test's own clean-up
        for c in client.containers.list(all=True, filters={"label": "org.clawmesh.compose=1"}):
            if c.labels.get("com.docker.compose.project", "").startswith(f"cmtest{SESSION}"):
                sweep(client, c.labels["com.docker.compose.project"])
        client.close()


@pytest.fixture
def images() -> None:
    """`scripts/images.sh nats services` once per session (a no-op when they are up to date)."""
    global _IMAGES_BUILT
    if _IMAGES_BUILT:
        return
    started = time.monotonic()
    proc = subprocess.run(
        [str(REPO / "scripts" / "images.sh"), "nats", "services"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=1500,
    )
    assert proc.returncode == 0, f"scripts/images.sh nats services failed:\n{proc.stdout}\n{proc.stderr}"
    print(f"images ready in {time.monotonic() - started:.1f}s")
    _IMAGES_BUILT = True


_COUNTER = iter(range(1, 1_000_000))


@pytest.fixture
def deploy(
    images: None, docker_client: docker.DockerClient, tmp_path: Path
) -> Iterator[Callable[..., Deployment]]:
    """A factory of compose projects; every one is taken down and swept afterwards."""
    made: list[Deployment] = []

    def make(
        compose: list[str],
        *,
        profiles: list[str] | None = None,
        via_script: bool = True,
        config: dict[str, Any] | None = None,
        extra_env: dict[str, str] | None = None,
    ) -> Deployment:
        name = f"cmtest{SESSION}{next(_COUNTER)}"
        http_port, nats_port = free_ports(2)
        env = {
            **os.environ,
            "CLAWMESH_HTTP_PORT": str(http_port),
            "CLAWMESH_NATS_PORT": str(nats_port),
            "CLAWMESH_GATEWAY_TOKEN": TOKEN,
            "CLAWMESH_COMPOSE": " ".join(compose),
            "CLAWMESH_COMPOSE_SKIP_IMAGES": "1",  # built once by the `images` fixture
            "CLAWMESH_SECRETS_DIR": str(tmp_path / f"{name}-secrets"),
            **(extra_env or {}),
        }
        for var in ("COMPOSE_FILE", "COMPOSE_PROFILES", "COMPOSE_PROJECT_NAME", "CLAWMESH_CONFIG_FILE"):
            env.pop(var, None)
        if config is not None:
            path = tmp_path / f"{name}.json"
            path.write_text(json.dumps(config, indent=2))
            path.chmod(0o644)  # read by uid 10001 in the containers
            env["CLAWMESH_CONFIG_FILE"] = str(path)
        dep = Deployment(
            name,
            compose,
            http_port,
            nats_port,
            env,
            list(profiles or []),
            via_script,
            docker_client,
            Path(env["CLAWMESH_SECRETS_DIR"]),
        )
        made.append(dep)
        return dep

    try:
        yield make
    finally:
        LOGS.mkdir(parents=True, exist_ok=True)
        for dep in made:
            with contextlib.suppress(Exception):
                (LOGS / f"{dep.name}.log").write_text(
                    dep.run("logs", "--no-color", "--timestamps", timeout=60, check=False)
                )
            with contextlib.suppress(Exception):
                dep.run("down", "-v", "--remove-orphans", "--timeout", "10", timeout=180, check=False)
            sweep(docker_client, dep.name)


def shipped_config(**runtime: Any) -> dict[str, Any]:
    """deploy/compose/clawmesh.json, with `runtime` keys replaced."""
    config = dict(json5.loads((REPO / "deploy" / "compose" / "clawmesh.json").read_text()))
    config["runtime"] = {**config.get("runtime", {}), **runtime}
    return config


# --- tests -----------------------------------------------------------------------------------
@pytest.mark.parametrize("which", ["v2", "v1"])
def test_up_send_status_down(which: str, deploy: Callable[..., Deployment], docker_client: Any) -> None:
    """`scripts/compose.sh up -d` (what docs/deploy.md tells people to run) generates the NATS
    users and a random API token (0600), messages from the host, `clawmesh status` from the host
    as the admin user, then `down -v` leaves nothing behind."""
    dep = deploy(impl_or_skip(which))
    del dep.env["CLAWMESH_GATEWAY_TOKEN"]  # the generated token, as a newcomer gets it
    t0 = time.monotonic()
    dep.run("up", "-d")
    dep.wait_ready()
    dep.wait_healthy({s: 1 for s in SERVICES})
    print(f"{which}: up, ready and healthy in {time.monotonic() - t0:.1f}s")
    assert dep.secrets is not None
    for name in ("auth.conf", "credentials.env"):
        assert (dep.secrets / name).stat().st_mode & 0o077 == 0, name  # private
    token = dep.token
    assert len(token) >= 32 and token != "change-me"
    # `token` prints it; plain compose with the env file sees the same project
    assert dep.run("token").strip() == token
    plain = [*dep.compose, "-p", dep.name, "--env-file", str(dep.secrets / "credentials.env"), "ps"]
    proc = subprocess.run(plain, cwd=REPO, env=dep.env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "ingress" in proc.stdout, proc.stdout + proc.stderr

    # the CLI on the host: `scripts/compose.sh cli` fills in URL, token and admin credentials
    out = dep.run("cli", "send", "hello from the host")
    assert out.strip().splitlines()[-1] == "echo: hello from the host", out
    # the HTTP API: the default agent, and the bound one
    reply = dep.send("first", peer="alice")
    assert (reply["agentId"], reply["text"]) == ("home", "echo: first")
    assert reply["sessionKey"] == "agent:home:api:direct:alice"
    reply = dep.send("to work", peer="alice", account="work")
    assert (reply["agentId"], reply["text"]) == ("work", "echo: to work")
    # a wrong token is refused
    r = httpx.post(f"{dep.url}/v1/messages", json={"text": "x"}, headers={"Authorization": "Bearer nope"})
    assert r.status_code == 401

    # status from the host, through the published NATS port: the four services
    status = dep.status()
    assert {s["name"] for s in status["services"]} == SRV_NAMES, status["services"]
    assert {"CM_INBOUND", "CM_TURNS", "CM_OUTBOUND", "CM_SESSIONS", "CM_DLQ"} <= {
        s["name"] for s in status["streams"]
    }
    # the state volume and the NATS volume exist, with the project's labels
    left = leftovers(docker_client, dep.name)
    assert len(left["containers"]) == 5 and len(left["volumes"]) == 2 and left["networks"], left

    t0 = time.monotonic()
    dep.run("down", "-v")
    print(f"{which}: down -v in {time.monotonic() - t0:.1f}s")
    assert leftovers(docker_client, dep.name) == {"containers": [], "networks": [], "volumes": []}


async def test_scaled_under_load_with_a_killed_runner(deploy: Callable[..., Deployment]) -> None:
    """`--scale runner=3 --scale router=2`, 300 messages over 30 sessions (each session's
    messages sent in order, pipelined: the next is sent once the previous is accepted, not
    answered), one runner SIGKILLed mid-load: every turn is answered exactly once, in order."""
    dep = deploy(preferred(), via_script=True, config=shipped_config(turnLeaseSeconds=3))
    t_up = time.monotonic()
    dep.run("up", "-d", "--scale", "runner=3", "--scale", "router=2")
    dep.wait_ready()
    dep.wait_healthy({"runner": 3, "router": 2, "ingress": 1, "node-agent": 1})
    print(f"scaled deployment up and healthy in {time.monotonic() - t_up:.1f}s")
    status = dep.status()
    names = Counter(s["name"] for s in status["services"])
    assert names == {
        "clawmesh-runner": 3,
        "clawmesh-router": 2,
        "clawmesh-ingress": 1,
        "clawmesh-node-agent": 1,
    }
    routers = [s for s in status["services"] if s["name"] == "clawmesh-router"]
    assert sum("leader=True" in s["details"] for s in routers) == 1, routers  # active/standby

    sessions, per_session = 30, 10
    total = sessions * per_session
    finals: dict[str, list[str]] = defaultdict(list)
    errors: list[dict[str, Any]] = []
    killed: list[str] = []
    kill_at = total // 4

    nc = await nats.connect(dep.nats_url, **dep.admin())

    started: dict[str, list[str]] = defaultdict(list)  # turn id → runner instances that started it
    final_at: dict[str, float] = {}

    async def on_event(msg: Msg) -> None:
        ev = json.loads(msg.data)
        if ev.get("type") == "final":
            finals[ev["turnId"]].append(ev["text"])
            final_at.setdefault(ev["turnId"], time.monotonic())
        elif ev.get("type") == "started":
            started[ev["turnId"]].append(ev.get("runner", ""))
        elif ev.get("type") == "error":
            errors.append(ev)

    await nc.subscribe("cm.ev.>", cb=on_event)
    await nc.flush()

    # runner instance (as in its `started` events) → its container, through the hostname
    host_of = {
        s["metadata"]["instance"]: s["metadata"]["host"]
        for s in status["services"]
        if s["name"] == "clawmesh-runner"
    }
    container_of = {h: c for c in dep.containers("runner") for h in [c.attrs["Config"]["Hostname"]]}
    in_flight_at_kill: list[str] = []

    def in_flight() -> Counter[str]:
        return Counter(runners[-1] for t, runners in list(started.items()) if t not in finals)

    kill_time: list[float] = []

    async def killer() -> None:
        # Mid-load, after a quarter of the replies: the runner with the most turns in flight.
        # An echo turn takes milliseconds, less than a `docker kill` request, so the runners are
        # first frozen (`docker pause`, the cgroup freezer: at once), all three together so that
        # whichever had turns in flight keeps them, and the one with the most is killed; if none
        # had any, they are thawed (a pause far shorter than the lease changes nothing) and
        # another moment is picked. (Freezing one runner at a time, the one that had the most
        # a moment before, could miss until the load had run out: CI, 2026-12-05.)
        await apoll(lambda: len(finals) >= kill_at, 120, f"{kill_at} replies before the kill")
        runners = dep.containers("runner")
        deadline = time.monotonic() + 60
        while True:
            await asyncio.gather(*(asyncio.to_thread(c.pause) for c in runners))
            # what they published before the freeze has reached the server by now; a round trip
            # on our connection delivers whatever the server had queued for us
            await nc.flush()
            held = in_flight()
            if held or time.monotonic() > deadline or len(finals) >= total:
                break
            await asyncio.gather(*(asyncio.to_thread(c.unpause) for c in runners))
        if not held:
            await asyncio.gather(*(asyncio.to_thread(c.unpause) for c in runners))
            raise AssertionError(f"no runner had a turn in flight ({len(finals)}/{total} answered)")
        instance, _ = held.most_common(1)[0]
        victim = container_of[host_of[instance]]
        frozen = [t for t, r in list(started.items()) if t not in finals and r[-1] == instance]
        kill_time.append(time.monotonic())
        in_flight_at_kill.extend(frozen)
        await asyncio.to_thread(victim.kill)  # SIGKILL: no drain, leases and acks just stop
        await asyncio.gather(*(asyncio.to_thread(c.unpause) for c in runners if c.id != victim.id))
        killed.append(victim.name)
        killed.append(f"{len(finals)}/{total} answered at the kill")

    sent: dict[str, list[tuple[str, str]]] = {}  # session key → [(turn id, text)] in send order
    limits = httpx.Limits(max_connections=16)
    t0 = time.monotonic()
    async with httpx.AsyncClient(
        base_url=dep.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30, limits=limits
    ) as http:

        async def session(i: int) -> None:
            peer = f"load-{i}"
            account = "work" if i % 2 else None
            mine: list[tuple[str, str]] = []
            for j in range(per_session):
                text = f"s{i} m{j}"
                body: dict[str, Any] = {
                    "text": text,
                    "peer": {"kind": "direct", "id": peer},
                    "messageId": f"{peer}-{j}",
                }
                if account:
                    body["accountId"] = account

                async def accepted(body: dict[str, Any] = body) -> httpx.Response | None:
                    # a retry is the same message (messageId dedupe)
                    with contextlib.suppress(httpx.HTTPError):
                        r = await http.post("/v1/messages", json=body)
                        if r.status_code in (200, 202):
                            return r
                    return None

                r = await wait_until(accepted, timeout=60, interval=0.25, message=f"{text!r} to be accepted")
                data = r.json()
                mine.append((data["turnId"], text))
                key = data["sessionKey"]
            sent[key] = mine

        kill_task = asyncio.create_task(killer())
        await asyncio.gather(*(session(i) for i in range(sessions)))
        accepted = time.monotonic() - t0
        try:
            await apoll(lambda: len(finals) >= total, 120, f"{total} final replies")
        except AssertionError as exc:
            raise AssertionError(
                f"{exc} (have {len(finals)}); {await _stall_report(nc, sent, finals)}"
            ) from None
        elapsed = time.monotonic() - t0
        await kill_task

        # every turn's stored reply, through the HTTP API
        turn_ids = [t for turns in sent.values() for t, _ in turns]
        texts = {t: text for turns in sent.values() for t, text in turns}
        sem = asyncio.Semaphore(16)

        async def turn_state(tid: str) -> dict[str, Any]:
            async with sem:
                r = await http.get(f"/v1/turns/{tid}")
                assert r.status_code == 200, r.text
                return dict(r.json())

        states = await asyncio.gather(*(turn_state(t) for t in turn_ids))

    # turns the victim had started and that were answered well after it froze: another runner
    # finished them (re-run: `started` again; or answered from the completion record)
    recovered = [t for t in in_flight_at_kill if final_at.get(t, 0) > kill_time[0] + 0.5]
    rerun = [t for t in recovered if len(started[t]) > 1]
    print(
        f"{total} turns over {sessions} sessions: accepted in {accepted:.1f}s, all answered in "
        f"{elapsed:.1f}s ({total / elapsed:.0f} turns/s); killed {killed}; "
        f"{len(in_flight_at_kill)} turn(s) in flight on it, {len(recovered)} finished by another "
        f"runner after the lease expired ({len(rerun)} re-run, {len(recovered) - len(rerun)} answered "
        f"from the completion record)"
    )
    assert killed, "the runner was not killed"
    assert recovered, "no turn of the killed runner was taken over (it had none in flight?)"
    assert len(sent) == sessions and len(turn_ids) == total == len(set(turn_ids))
    assert not errors, errors[:3]
    # one reply per turn, the right one
    for state in states:
        assert state["state"] == "done", state
        assert state["text"] == f"echo: {texts[state['turnId']]}", state
    missing = [t for t in turn_ids if t not in finals]
    assert not missing, f"{len(missing)} turns without a final event"
    wrong = {t: v for t, v in finals.items() if set(v) != {f"echo: {texts[t]}"}}
    assert not wrong, list(wrong.items())[:3]
    doubled = {t: len(v) for t, v in finals.items() if len(v) > 1}
    if doubled:
        # A turn whose runner died after emitting `final` but before acking is replayed from its
        # completion record, and the replay emits `final` again (events are core NATS, not
        # deduplicated); the reply itself (CM_OUTBOUND) stays single. Reported, not failed.
        print(f"note: {len(doubled)} turn(s) had their final event emitted twice (replay): {doubled}")

    # CM_OUTBOUND: exactly one reply message per turn (deduplicated by turn id)
    js = nc.jetstream()
    info = await js.stream_info("CM_OUTBOUND")
    outbound: Counter[str] = Counter()
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        msg = await js.get_msg("CM_OUTBOUND", seq)
        outbound[json.loads(msg.data)["turnId"]] += 1
    await nc.close()
    assert info.state.messages == total
    assert set(outbound) == set(turn_ids) and set(outbound.values()) == {1}

    # per-session order in the transcripts: `clawmesh sessions history KEY --json` from the host.
    # Every session through the command's code in this process (typer's CliRunner: ~40 ms each;
    # a process start costs ~1 s on a busy 2-core machine), two through the installed command.
    keys = sorted(sent)
    t_hist = time.monotonic()

    def history_in_process(key: str) -> list[dict[str, Any]]:
        res = CliRunner().invoke(
            cli_app, ["sessions", "history", key, "--json", "--nats-url", dep.nats_url], env=dep.admin_env()
        )
        assert res.exit_code == 0, (res.output, res.exception)
        return list(json.loads(res.stdout))

    transcripts = await asyncio.to_thread(lambda: [history_in_process(k) for k in keys])
    for key, entries in zip(keys[:2], transcripts[:2], strict=True):
        proc = await asyncio.to_thread(
            cli, "sessions", "history", key, "--json", "--nats-url", dep.nats_url, env=dep.admin_env()
        )
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout) == entries
    print(f"{len(keys)} transcripts read with clawmesh sessions history in {time.monotonic() - t_hist:.1f}s")
    for key, entries in zip(keys, transcripts, strict=True):
        expected = [text for _, text in sent[key]]
        users = [e["text"] for e in entries if e["role"] == "user"]
        replies = [e["text"] for e in entries if e["role"] == "assistant"]
        assert users == expected, (key, users)
        assert replies == [f"echo: {t}" for t in expected], (key, replies)
        assert [e["role"] for e in entries] == ["user", "assistant"] * per_session, key
        assert [e["seq"] for e in entries if e["role"] == "user"] == list(range(1, per_session + 1))

    # the killed runner stays down (a manual kill is not restarted), the other two serve on
    assert len(dep.containers("runner")) == 2
    after = dep.send("after the kill", peer="after")
    assert after["text"] == "echo: after the kill"


async def _violations(url: str, user: str, password: str, action: Callable[[Any], Any]) -> list[str]:
    """Run `action(nc)` as this user; the asynchronous errors the server sent back."""
    errors: list[str] = []

    async def on_error(exc: Exception) -> None:
        errors.append(str(exc))

    nc = await nats.connect(url, user=user, password=password, error_cb=on_error, allow_reconnect=False)
    try:
        await action(nc)
        await nc.flush()
        await apoll(lambda: errors, 10, f"a permissions violation for {user}")
    finally:
        await nc.close()
    return errors


@pytest.mark.parametrize("which", ["v2", "v1"])
def test_plain_compose_without_credentials_starts_nothing(
    which: str, deploy: Callable[..., Deployment], docker_client: Any
) -> None:
    """Plain `compose up -d` with no generated credentials stops before starting anything and
    says how to get them: no service ever connects to NATS anonymously."""
    dep = deploy(impl_or_skip(which), via_script=False)
    del dep.env["CLAWMESH_GATEWAY_TOKEN"]
    out = dep.run("up", "-d", timeout=120, check=False)
    assert "scripts/compose.sh up -d" in out and (
        "no NATS credentials" in out or "no HTTP API token" in out
    ), out
    assert leftovers(docker_client, dep.name)["containers"] == []


@pytest.mark.parametrize("which", ["v2", "v1"])
async def test_per_service_users_by_default(which: str, deploy: Callable[..., Deployment]) -> None:
    """The default deployment: NATS with the users of `clawmesh deploy nats-config` (generated by
    scripts/compose.sh); the pipeline runs with least privilege, credentials are refused
    outside their permissions, anonymous clients are refused."""
    dep = deploy(impl_or_skip(which))
    dep.run("up", "-d")
    secrets = dep.secrets
    assert secrets is not None
    assert (secrets / "auth.conf").is_file() and (secrets / "credentials.env").is_file()
    assert (secrets / "credentials.env").stat().st_mode & 0o077 == 0  # private
    creds = dict(
        line.split("=", 1)
        for line in (secrets / "credentials.env").read_text().splitlines()
        if line and not line.startswith("#")
    )
    dep.wait_ready()
    dep.wait_healthy({s: 1 for s in SERVICES})

    # each service connected as its own user
    for service, user in (("ingress", "INGRESS"), ("router", "ROUTER"), ("runner", "RUNNER")):
        env = dep.containers(service)[0].attrs["Config"]["Env"]
        assert f"CLAWMESH_NATS_USER={creds[f'CLAWMESH_NATS_USER_{user}']}" in env

    # the integration user may watch events
    url = dep.nats_url
    seen: list[dict[str, Any]] = []
    watcher = await nats.connect(
        url,
        user=creds["CLAWMESH_NATS_USER_INTEGRATION"],
        password=creds["CLAWMESH_NATS_PASSWORD_INTEGRATION"],
    )

    async def on_event(msg: Msg) -> None:
        seen.append(json.loads(msg.data))

    await watcher.subscribe("cm.ev.>", cb=on_event)
    await watcher.flush()
    reply = await asyncio.to_thread(dep.send, "locked down", "sec")
    assert reply["text"] == "echo: locked down"
    await apoll(lambda: any(e.get("type") == "final" for e in seen), 10, "the final event, as integration")
    await watcher.close()

    # ... but not publish anything
    async def publish_event(nc: Any) -> None:
        await nc.publish("cm.ev.home.x", b"{}")

    errs = await _violations(
        url,
        creds["CLAWMESH_NATS_USER_INTEGRATION"],
        creds["CLAWMESH_NATS_PASSWORD_INTEGRATION"],
        publish_event,
    )
    assert any("permissions violation" in e.lower() and "cm.ev.home.x" in e for e in errs), errs

    # the ingress user cannot inject turns past the router
    async def publish_turn(nc: Any) -> None:
        await nc.publish("cm.turn.x", b"{}")

    errs = await _violations(
        url, creds["CLAWMESH_NATS_USER_INGRESS"], creds["CLAWMESH_NATS_PASSWORD_INGRESS"], publish_turn
    )
    assert any("permissions violation" in e.lower() and "cm.turn.x" in e for e in errs), errs

    # a runner cannot delete a stream (destructive JetStream API denied to every service user)
    async def delete_stream(nc: Any) -> None:
        await nc.publish("$JS.API.STREAM.DELETE.CM_SESSIONS", b"")

    errs = await _violations(
        url, creds["CLAWMESH_NATS_USER_RUNNER"], creds["CLAWMESH_NATS_PASSWORD_RUNNER"], delete_stream
    )
    assert any("permissions violation" in e.lower() for e in errs), errs

    # anonymous and wrong passwords are refused: the server says so ("Authorization Violation");
    # a NoServersError alone would only mean nothing answered, which proves nothing
    for kwargs in ({}, {"user": "cm-admin", "password": "wrong"}):
        seen: list[str] = []

        async def on_error(exc: Exception, seen: list[str] = seen) -> None:
            seen.append(f"{type(exc).__name__}: {exc}")

        with pytest.raises(Exception) as info:
            await nats.connect(url, allow_reconnect=False, connect_timeout=3, error_cb=on_error, **kwargs)
        said = " | ".join([f"{type(info.value).__name__}: {info.value}", *seen])
        assert "authorization violation" in said.lower(), said

    # the operator's CLI with the admin user
    status = await asyncio.to_thread(
        dep.status,
        {
            "CLAWMESH_NATS_USER": creds["CLAWMESH_NATS_USER_ADMIN"],
            "CLAWMESH_NATS_PASSWORD": creds["CLAWMESH_NATS_PASSWORD_ADMIN"],
        },
    )
    assert {s["name"] for s in status["services"]} == SRV_NAMES


@pytest.mark.parametrize("which", ["v2", "v1"])
async def test_cluster_variant_replicated_streams(which: str, deploy: Callable[..., Deployment]) -> None:
    """`--profile cluster`: three NATS servers, every stream and bucket with 3 replicas; a turn
    round-trips, and still does with one server stopped."""
    dep = deploy(impl_or_skip(which), via_script=True, profiles=["cluster"])
    dep.run("up", "-d")
    assert {c.labels["com.docker.compose.service"] for c in dep.containers()} == {
        "nats",
        "nats2",
        "nats3",
        *SERVICES,
    }
    dep.wait_ready(timeout=120)
    reply = await asyncio.to_thread(dep.send, "clustered", "c1", retry_for=60)
    assert reply["text"] == "echo: clustered"

    nc = await nats.connect(dep.nats_url, **dep.admin())  # nats1, through its published port
    js = nc.jetstream()
    names = {
        "CM_INBOUND",
        "CM_TURNS",
        "CM_OUTBOUND",
        "CM_SESSIONS",
        "CM_DLQ",
        "KV_cm_sessions",
        "KV_cm_leases",
        "KV_cm_turns",
        "KV_cm_nodes",
        "KV_cm_approvals",
        "KV_cm_pairing",
    }
    infos = {name: await js.stream_info(name) for name in names}
    await nc.close()
    for name, info in infos.items():
        assert info.config.num_replicas == 3, (name, info.config.num_replicas)
        assert info.cluster is not None and len(info.cluster.replicas or []) == 2, (name, info.cluster)
        assert {info.cluster.leader, *(r.name for r in info.cluster.replicas or [])} == {
            "nats1",
            "nats2",
            "nats3",
        }

    # one server down: the others elect new stream leaders and the pipeline carries on
    dep.run("stop", "nats2")
    reply = await asyncio.to_thread(dep.send, "one server down", "c2", retry_for=60)
    assert reply["text"] == "echo: one server down"
    print(f"restarts during the cluster test: {dep.restarts()}")


def test_sandbox_profile_runs_tools_in_docker_sandboxes(
    deploy: Callable[..., Deployment], docker_client: docker.DockerClient, tmp_path: Path
) -> None:
    """`--profile sandbox`: the extra node-agent reaches the host's engine through the socket
    and runs an agent's tools in a locked-down sandbox container; the workspace is a host
    directory mounted at the same path (Docker-outside-of-Docker), so the sandbox sees the files
    the node wrote. The default node-agent has no Docker access."""
    try:
        docker_client.images.get("clawmesh-sandbox:bookworm")
    except docker.errors.ImageNotFound:
        pytest.fail("clawmesh-sandbox:bookworm missing: scripts/images.sh sandbox (make images)")
    agent = f"sbx{SESSION}"
    sandbox_dir = tmp_path / "sandbox-state"  # created by scripts/compose.sh, owned by uid 10001
    config = shipped_config()
    config["agents"]["list"].append(
        {
            "id": agent,
            "workspace": f"~/workspace-{agent}",
            "node": "sandbox",
            "sandbox": {"mode": "all", "scope": "agent", "workspaceAccess": "rw"},
        }
    )
    dep = deploy(
        preferred(),
        via_script=True,
        profiles=["sandbox"],
        config=config,
        extra_env={"CLAWMESH_SANDBOX_DIR": str(sandbox_dir)},
    )
    flt = {"label": ["clawmesh.sandbox=1", f"clawmesh.agent={agent}"]}
    try:
        dep.run("up", "-d")
        assert sandbox_dir.stat().st_uid == 10001
        dep.wait_ready()
        dep.wait_healthy({"node-agent": 1, "node-agent-sandbox": 1})

        def node(node_id: str) -> dict[str, Any] | None:
            proc = cli("nodes", "describe", node_id, "--nats-url", dep.nats_url, env=dep.admin_env())
            return dict(json.loads(proc.stdout)) if proc.returncode == 0 else None

        sandbox_node = poll(lambda: node("sandbox"), 30, "node sandbox announced")
        assert "sandbox" in sandbox_node["capabilities"], sandbox_node
        plain = poll(lambda: node("compose"), 30, "node compose announced")
        assert "sandbox" not in plain["capabilities"] and "not reachable" in plain["docker"]

        async def invoke() -> list[dict[str, Any]]:
            nc = await nats.connect(dep.nats_url, **dep.admin())
            out = []
            try:
                for tool, args in (
                    ("write", {"path": "hello.txt", "content": "written by the node"}),
                    (
                        "exec",
                        {
                            "command": "pwd; cat hello.txt; echo; test -e /var/run/docker.sock && echo socket || echo no-socket"
                        },
                    ),
                ):
                    inv = {
                        "type": "invoke",
                        "invocationId": uuid.uuid4().hex,
                        "tool": tool,
                        "arguments": args,
                        "agentId": agent,
                        "sessionKey": f"agent:{agent}:main",
                        "timeout": 60,
                    }
                    reply = await nc.request(
                        "cm.node.sandbox.invoke",
                        json.dumps(inv).encode(),
                        timeout=90,
                        headers={"Content-Type": "application/json"},
                    )
                    out.append(dict(json.loads(reply.data)))
            finally:
                await nc.close()
            return out

        wrote, ran = asyncio.run(invoke())
        assert wrote["ok"] and wrote["sandboxed"], wrote
        assert ran["ok"] and ran["sandboxed"] and ran["node"] == "sandbox", ran
        lines = ran["content"].splitlines()
        assert lines[0] == "/workspace" and lines[1] == "written by the node", ran["content"]
        assert lines[2] == "no-socket", "the sandbox must not see the Docker socket"
        # the file is in the host directory, at the path the node-agent used
        assert (sandbox_dir / f"workspace-{agent}" / "hello.txt").read_text() == "written by the node"
        sandboxes = docker_client.containers.list(filters=flt)
        assert len(sandboxes) == 1
        host_config = sandboxes[0].attrs["HostConfig"]
        assert host_config["NetworkMode"] == "none" and host_config["ReadonlyRootfs"]
    finally:
        # sandbox containers belong to the engine, not to the compose project
        for c in docker_client.containers.list(all=True, filters=flt):
            with contextlib.suppress(docker.errors.APIError):
                c.remove(force=True, v=True)
