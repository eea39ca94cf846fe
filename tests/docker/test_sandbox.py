"""SandboxManager against the real engine, checked from inside the containers.

Fast: the 2 MB testbox image (`scripts/images.sh test`); only one test uses the default sandbox
image, when it was built. Every test has its own node id (label `clawmesh.node`) and container
prefix, and a fixture removes its containers by that label whatever happens.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import docker
import docker.errors
import pytest

from clawmesh.checks import default_checks
from clawmesh.config import Config, parse_config
from clawmesh.sandbox import (
    DEFAULT_IMAGE,
    EffectiveSandbox,
    ExecResult,
    SandboxError,
    SandboxInfo,
    SandboxManager,
    SandboxUnavailable,
    resolve_sandbox,
)
from tests.fixtures.gateway import wait_until

pytestmark = pytest.mark.docker

TESTBOX = "clawmesh-testbox:latest"
DEADLINE = 10.0  # seconds, for anything polled


@pytest.fixture
def node_id() -> str:
    return "t" + uuid.uuid4().hex[:10]


@pytest.fixture
def client(node_id: str) -> Iterator[docker.DockerClient]:
    c = docker.from_env(timeout=60)
    try:
        c.images.get(TESTBOX)
    except docker.errors.ImageNotFound:
        pytest.fail(f"image {TESTBOX} missing: run `scripts/images.sh test` first")
    try:
        yield c
    finally:
        for leftover in c.containers.list(all=True, filters={"label": f"clawmesh.node={node_id}"}):
            leftover.remove(force=True, v=True)
        c.close()


@pytest.fixture
async def manager(tmp_path: Path, node_id: str, client: docker.DockerClient) -> AsyncIterator[SandboxManager]:
    m = SandboxManager(state_dir=tmp_path / "state", node_id=node_id)
    try:
        yield m
    finally:
        await m.close()


@pytest.fixture
def make_config(tmp_path: Path, node_id: str) -> Callable[..., Config]:
    """A config whose sandboxes use the testbox image and this test's container prefix."""

    def make(sandbox: dict[str, Any] | None = None, *agents: dict[str, Any]) -> Config:
        sb: dict[str, Any] = {"mode": "all", **(sandbox or {})}
        sb["docker"] = {"image": TESTBOX, "containerPrefix": f"cmt-{node_id}-", **sb.get("docker", {})}
        entries = list(agents) or [{"id": "a"}]
        for entry in entries:
            entry.setdefault("workspace", str(tmp_path / f"ws-{entry['id']}"))
        return parse_config(
            {"agents": {"defaults": {"sandbox": sb}, "list": entries}},
            env={"HOME": str(tmp_path)},
            checks=default_checks(),
        )

    return make


async def ensure(m: SandboxManager, cfg: Config, agent: str = "a", session: str = "main") -> SandboxInfo:
    view = cfg.agent_view(agent)
    assert view is not None
    return await m.ensure(
        resolve_sandbox(cfg, agent),
        agent_id=agent,
        session_key=f"agent:{agent}:{session}",
        agent_workspace=view.workspace,
    )


async def sh(m: SandboxManager, info: SandboxInfo, script: str, **kwargs: Any) -> ExecResult:
    result = await m.exec(info, script, **kwargs)
    assert result.exit_code == 0, result
    return result


def mine(client: docker.DockerClient, node_id: str) -> list[Any]:
    return client.containers.list(all=True, filters={"label": f"clawmesh.node={node_id}"})


# -- the container is locked down ----------------------------------------------------------------


async def test_locked_down_from_inside(manager: SandboxManager, make_config: Callable[..., Config]) -> None:
    cfg = make_config({"docker": {"memory": "64m", "pidsLimit": 24}})
    info = await ensure(manager, cfg)
    assert info.status == "running" and info.agent_id == "a" and info.scope == "agent"

    net = await sh(manager, info, "ls /sys/class/net")
    assert net.stdout.split() == ["lo"]  # network "none": no interface but loopback

    ro = await manager.exec(info, "touch /etc/x")
    assert ro.exit_code != 0 and "Read-only file system" in ro.stderr
    await sh(manager, info, "touch /tmp/ok /var/tmp/ok /run/ok && ls /tmp/ok")

    status = await sh(manager, info, "grep -E '^(CapEff|CapPrm|CapBnd|NoNewPrivs):' /proc/self/status")
    fields = dict(line.split(":\t") for line in status.stdout.strip().splitlines())
    assert fields == {"CapPrm": "0" * 16, "CapEff": "0" * 16, "CapBnd": "0" * 16, "NoNewPrivs": "1"}

    mem = await sh(
        manager,
        info,
        "cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max",
    )
    assert mem.stdout.strip() == str(64 * 1024 * 1024)
    swap = await manager.exec(info, "cat /sys/fs/cgroup/memory/memory.memsw.limit_in_bytes")
    if swap.exit_code == 0:  # only with swap accounting: memory+swap = memory, i.e. no swap
        assert swap.stdout.strip() == str(64 * 1024 * 1024)

    # pids limit: more background sleeps than allowed → fork fails
    forks = await manager.exec(
        info, "i=0; while [ $i -lt 40 ]; do sleep 30 </dev/null >/dev/null 2>&1 & i=$((i+1)); done"
    )
    assert "fork" in forks.stderr, forks


async def test_only_the_workspace_and_binds_are_mounted(
    manager: SandboxManager, make_config: Callable[..., Config], tmp_path: Path
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "in.txt").write_text("from host\n")
    cfg = make_config({"docker": {"binds": [f"{data}:/data:ro"]}})
    info = await ensure(manager, cfg)
    mountinfo = (await sh(manager, info, "cat /proc/self/mountinfo")).stdout
    host_mounts = {}
    for line in mountinfo.splitlines():
        pre, _, post = line.partition(" - ")
        fstype = post.split()[0]
        if fstype in {"overlay", "proc", "sysfs", "tmpfs", "devpts", "mqueue", "cgroup", "cgroup2"}:
            continue
        parts = pre.split()
        host_mounts[parts[4]] = parts[5].split(",")[0]  # mount point → ro/rw
    engine_files = {"/etc/resolv.conf", "/etc/hostname", "/etc/hosts", "/sbin/docker-init"}
    assert set(host_mounts) - engine_files == {"/workspace", "/data"}, host_mounts
    assert all(host_mounts[p] == "ro" for p in engine_files & set(host_mounts))
    assert (host_mounts["/workspace"], host_mounts["/data"]) == ("rw", "ro")

    # workspace writes appear on the host, in the sandbox's own directory (access "none")
    await sh(manager, info, "echo made-inside > /workspace/out.txt")
    host_dir, writable = manager.host_workspace(
        resolve_sandbox(cfg, "a"), agent_id="a", session_key="agent:a:main", agent_workspace=tmp_path / "ws-a"
    )
    assert writable and (host_dir / "out.txt").read_text() == "made-inside\n"
    assert host_dir.parent == cfg.state_dir / "sandboxes"
    assert (await sh(manager, info, "cat /data/in.txt")).stdout == "from host\n"
    assert (await manager.exec(info, "touch /data/x")).exit_code != 0


async def test_workspace_access_rw_and_ro(
    manager: SandboxManager, make_config: Callable[..., Config], tmp_path: Path
) -> None:
    cfg = make_config(
        {},
        {"id": "rw", "sandbox": {"workspaceAccess": "rw"}},
        {"id": "ro", "sandbox": {"workspaceAccess": "ro"}},
    )
    (tmp_path / "ws-ro").mkdir()
    (tmp_path / "ws-ro" / "notes.md").write_text("agent notes\n")
    rw, ro = await asyncio.gather(ensure(manager, cfg, "rw"), ensure(manager, cfg, "ro"))

    await sh(manager, rw, "echo hello > /workspace/hello.txt")
    assert (tmp_path / "ws-rw" / "hello.txt").read_text() == "hello\n"

    assert (await sh(manager, ro, "cat /agent/notes.md")).stdout == "agent notes\n"
    denied = await manager.exec(ro, "echo x > /agent/notes.md")
    assert denied.exit_code != 0 and "Read-only" in denied.stderr
    await sh(manager, ro, "echo scratch > /workspace/s.txt")  # its own workspace stays writable
    assert (tmp_path / "ws-ro" / "notes.md").read_text() == "agent notes\n"
    sandbox = resolve_sandbox(cfg, "ro")
    assert manager.host_workspace(
        sandbox, agent_id="ro", session_key="agent:ro:main", agent_workspace=tmp_path / "ws-ro"
    ) == (tmp_path / "ws-ro", False)


async def test_runs_as_the_configured_user_and_can_write_its_workspace(
    manager: SandboxManager, make_config: Callable[..., Config]
) -> None:
    cfg = make_config({"docker": {"user": "1000:1000"}})
    info = await ensure(manager, cfg)
    out = await sh(manager, info, "id -u; echo x > /workspace/f; ls -n /workspace/f")
    uid, listing = out.stdout.splitlines()
    assert uid == "1000" and listing.split()[2] == "1000"


# -- lifecycle ----------------------------------------------------------------------------------


async def test_setup_command_runs_exactly_once(
    manager: SandboxManager, make_config: Callable[..., Config]
) -> None:
    cfg = make_config({"docker": {"setupCommand": "echo ran >> /workspace/setup.log"}})
    first = await ensure(manager, cfg)
    for _ in range(3):
        again = await ensure(manager, cfg)
        assert again.id == first.id
    assert (await sh(manager, first, "cat /workspace/setup.log")).stdout == "ran\n"
    # a restarted manager (same state dir) knows it ran
    restarted = SandboxManager(state_dir=manager.state_dir, node_id=manager.node_id)
    try:
        assert (await ensure(restarted, cfg)).id == first.id
    finally:
        await restarted.close()
    # recreated → runs again, once
    assert await manager.remove(agent_id="a") == 1
    fresh = await ensure(manager, cfg)
    assert fresh.id != first.id
    assert (await sh(manager, fresh, "cat /workspace/setup.log")).stdout == "ran\nran\n"


async def test_failing_setup_command_leaves_no_container(
    manager: SandboxManager, make_config: Callable[..., Config], client: docker.DockerClient, node_id: str
) -> None:
    cfg = make_config({"docker": {"setupCommand": "echo broken-setup >&2; exit 3"}})
    with pytest.raises(SandboxError, match=r"setupCommand exited 3 .*broken-setup"):
        await ensure(manager, cfg)
    assert mine(client, node_id) == []


@pytest.mark.parametrize(("scope", "expected"), [("agent", 2), ("session", 4), ("shared", 1)])
async def test_container_count_per_scope(
    manager: SandboxManager,
    make_config: Callable[..., Config],
    client: docker.DockerClient,
    node_id: str,
    scope: str,
    expected: int,
) -> None:
    cfg = make_config({"scope": scope}, {"id": "a"}, {"id": "b"})
    pairs = [(agent, session) for agent in ("a", "b") for session in ("main", "group-1")]
    infos = await asyncio.gather(*(ensure(manager, cfg, a, s) for a, s in pairs))
    assert len({i.id for i in infos}) == expected
    assert len(mine(client, node_id)) == expected
    listed = await manager.list()
    assert sorted(i.id for i in listed) == sorted({i.id for i in infos})
    assert {i.scope for i in listed} == {scope}
    if scope == "session":
        assert {i.session_key for i in listed} == {f"agent:{a}:{s}" for a, s in pairs}
    if scope == "shared":
        assert listed[0].agent_id is None


async def test_concurrent_ensure_makes_one_container(
    manager: SandboxManager, make_config: Callable[..., Config], client: docker.DockerClient, node_id: str
) -> None:
    cfg = make_config()
    infos = await asyncio.gather(*(ensure(manager, cfg) for _ in range(5)))
    assert len({i.id for i in infos}) == 1 and len(mine(client, node_id)) == 1


async def test_recreated_when_the_config_changes(
    manager: SandboxManager, make_config: Callable[..., Config], client: docker.DockerClient
) -> None:
    before = await ensure(manager, make_config({"docker": {"memory": "64m"}}))
    same = await ensure(manager, make_config({"docker": {"memory": "64m"}, "prune": {"idleHours": 1}}))
    assert same.id == before.id  # prune settings do not shape the container
    t0 = time.monotonic()
    after = await ensure(manager, make_config({"docker": {"memory": "96m"}}))
    print(f"recreate: {time.monotonic() - t0:.3f}s")
    assert after.id != before.id and after.name == before.name
    assert after.config_hash != before.config_hash
    with pytest.raises(docker.errors.NotFound):
        client.containers.get(before.id)


async def test_stopped_container_is_started_again(
    manager: SandboxManager, make_config: Callable[..., Config], client: docker.DockerClient
) -> None:
    cfg = make_config()
    info = await ensure(manager, cfg)
    client.containers.get(info.id).kill()
    again = await ensure(manager, cfg)
    assert again.id == info.id and again.status == "running"
    await sh(manager, again, "true")


async def test_refused_settings_raise_before_any_container_exists(
    manager: SandboxManager,
    make_config: Callable[..., Config],
    client: docker.DockerClient,
    node_id: str,
    tmp_path: Path,
) -> None:
    (tmp_path / "innocent").symlink_to("/etc")
    cfg = make_config()
    base = resolve_sandbox(cfg, "a")
    bad = [
        {"binds": ("/etc:/host-etc:ro",)},
        {"binds": (f"{tmp_path}/innocent:/data:ro",)},
        {"binds": ("/var/run/docker.sock:/var/run/docker.sock",)},
        {"binds": ("~/.ssh:/keys",)},
        {"network": "host"},
        {"network": "container:whatever"},
        {"seccomp_profile": "unconfined"},
    ]
    for change in bad:
        sandbox = dataclasses.replace(base, **change)  # type: ignore[arg-type]
        with pytest.raises(SandboxError, match="refused"):
            await manager.ensure(
                sandbox, agent_id="a", session_key="agent:a:main", agent_workspace=tmp_path / "ws"
            )
    # a workspace that would expose the home directory (and ~/.ssh in it)
    rw = dataclasses.replace(base, workspace_access="rw")
    with pytest.raises(SandboxError, match="cannot be mounted"):
        await manager.ensure(rw, agent_id="a", session_key="agent:a:main", agent_workspace=tmp_path)
    assert mine(client, node_id) == []


async def test_missing_image_is_not_pulled(
    manager: SandboxManager, make_config: Callable[..., Config], client: docker.DockerClient, node_id: str
) -> None:
    cfg = make_config({"docker": {"image": "clawmesh-does-not-exist:latest"}})
    with pytest.raises(SandboxError, match=r"not found locally; build it with `make images`"):
        await ensure(manager, cfg)
    assert mine(client, node_id) == []


# -- exec ---------------------------------------------------------------------------------------


async def test_exec_exit_code_streams_env_and_cwd(
    manager: SandboxManager, make_config: Callable[..., Config]
) -> None:
    info = await ensure(manager, make_config({"docker": {"env": {"FROM_CONFIG": "cfg"}}}))
    await sh(manager, info, "mkdir -p /workspace/sub")
    result = await manager.exec(
        info.name,  # by name works too
        ["sh", "-c", 'echo "$FOO $FROM_CONFIG"; pwd; echo oops >&2; exit 7'],
        env={"FOO": "bar"},
        cwd="sub",
    )
    assert (result.exit_code, result.stdout, result.stderr) == (7, "bar cfg\n/workspace/sub\n", "oops\n")
    assert not result.timed_out and not result.truncated


async def test_exec_timeout_kills_the_whole_tree(
    manager: SandboxManager, make_config: Callable[..., Config]
) -> None:
    info = await ensure(manager, make_config())
    t0 = time.monotonic()
    # a background job, and a subtree that scrubbed its environment (found by its session)
    result = await manager.exec(info, "sleep 30 & env -i sh -c 'sleep 31 & sleep 32'", timeout=1)
    elapsed = time.monotonic() - t0
    assert result.timed_out and result.exit_code == 137, result
    # not before the timeout, and without waiting for the 30 s sleeps (a loaded machine may be
    # slow to kill and report, hence no tighter upper bound; speed belongs to `make bench`)
    assert 0.9 <= elapsed < 25, elapsed

    # nothing left inside (orphans are reaped by the init process, so poll briefly)
    async def all_gone() -> bool:
        return "sleep 3" not in (await sh(manager, info, "ps -o args")).stdout

    await wait_until(all_gone, timeout=DEADLINE, message="the timed-out processes to be gone")


async def test_cancelled_exec_is_killed(manager: SandboxManager, make_config: Callable[..., Config]) -> None:
    info = await ensure(manager, make_config())
    started = asyncio.Event()

    async def on_output(stream: str, text: str) -> None:
        started.set()

    task = asyncio.create_task(manager.exec(info, "echo go; sleep 33", on_output=on_output))
    await asyncio.wait_for(started.wait(), DEADLINE)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    async def gone() -> bool:
        return "sleep 33" not in (await sh(manager, info, "ps -o args")).stdout

    await wait_until(gone, timeout=DEADLINE, message="the cancelled process to be gone")


async def test_output_is_streamed_before_the_end(
    manager: SandboxManager, make_config: Callable[..., Config], tmp_path: Path
) -> None:
    cfg = make_config()
    info = await ensure(manager, cfg)
    done_on_host = (
        manager.host_workspace(
            resolve_sandbox(cfg, "a"), agent_id="a", session_key="agent:a:main", agent_workspace=tmp_path
        )[0]
        / "done"
    )
    chunks: list[tuple[str, str, bool]] = []

    async def on_output(stream: str, text: str) -> None:
        chunks.append((stream, text, done_on_host.exists()))

    result = await manager.exec(
        info,
        "for i in 1 2 3; do echo $i; sleep 0.3; done; echo bye >&2; touch /workspace/done",
        on_output=on_output,
    )
    assert result.exit_code == 0 and done_on_host.exists()
    out = [c for c in chunks if c[0] == "stdout"]
    assert len(out) >= 2
    assert out[0][2] is False  # the first chunk arrived while the command was still running
    assert "".join(t for _, t, _ in out) == result.stdout == "1\n2\n3\n"
    assert ("stderr", "bye\n") in [(s, t) for s, t, _ in chunks]


async def test_output_is_capped(manager: SandboxManager, make_config: Callable[..., Config]) -> None:
    info = await ensure(manager, make_config())
    seen: list[str] = []

    async def on_output(stream: str, text: str) -> None:
        seen.append(text)

    result = await manager.exec(info, "yes | head -c 300000", max_output=1000, on_output=on_output)
    assert result.exit_code == 0 and result.truncated
    assert len(result.stdout) == 1000 and "".join(seen) == result.stdout


async def test_exec_in_a_removed_sandbox(manager: SandboxManager, make_config: Callable[..., Config]) -> None:
    info = await ensure(manager, make_config())
    await manager.remove(all=True)
    with pytest.raises(SandboxError, match="does not exist"):
        await manager.exec(info, "true")
    with pytest.raises(SandboxError, match="does not exist"):
        await manager.exec(info.name, "true")


# -- no engine ----------------------------------------------------------------------------------


async def test_no_engine_means_no_run_at_all(
    tmp_path: Path, make_config: Callable[..., Config], monkeypatch: pytest.MonkeyPatch
) -> None:
    witness = tmp_path / "ran-on-the-host"
    cfg = make_config({"docker": {"setupCommand": f"touch {witness}"}})
    unreachable = SandboxManager(
        state_dir=tmp_path / "s1",
        docker_factory=lambda: docker.DockerClient(base_url="unix:///nonexistent.sock"),
    )
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent.sock")
    from_env = SandboxManager(state_dir=tmp_path / "s2")  # the default factory reads DOCKER_HOST
    try:
        for m in (unreachable, from_env):
            with pytest.raises(SandboxUnavailable, match=r"agent 'a' but the Docker engine is not reachable"):
                await ensure(m, cfg)
            with pytest.raises(SandboxUnavailable, match="refusing to run on the host"):
                await m.exec("cmt-sandbox", ["touch", str(witness)])
            with pytest.raises(SandboxUnavailable):
                await m.list()
    finally:
        await unreachable.close()
        await from_env.close()
    assert not witness.exists()


# -- housekeeping -------------------------------------------------------------------------------


async def test_remove_by_agent(manager: SandboxManager, make_config: Callable[..., Config]) -> None:
    cfg = make_config({}, {"id": "a"}, {"id": "b"})
    await asyncio.gather(ensure(manager, cfg, "a"), ensure(manager, cfg, "b"))
    with pytest.raises(ValueError):
        await manager.remove()
    assert await manager.remove(agent_id="a") == 1
    assert [i.agent_id for i in await manager.list()] == ["b"]
    assert await manager.remove(all=True) == 1
    assert await manager.list() == []


async def test_prune_idle_and_old(
    tmp_path: Path, node_id: str, client: docker.DockerClient, make_config: Callable[..., Config]
) -> None:
    now = [1_000_000.0]
    m = SandboxManager(state_dir=tmp_path / "state", node_id=node_id, clock=lambda: now[0])
    try:
        cfg = make_config({"prune": {"idleHours": 1, "maxAgeDays": 7}}, {"id": "a"}, {"id": "b"})
        a, b = await asyncio.gather(ensure(m, cfg, "a"), ensure(m, cfg, "b"))
        assert await m.prune() == 0
        now[0] += 30 * 60
        await sh(m, b, "true")  # b was used 30 minutes in
        now[0] += 40 * 60  # a idle 70 min, b idle 40 min
        assert await m.prune() == 1
        assert [i.name for i in await m.list()] == [b.name] != [a.name]
        # usage times survive a restart (they are kept in <state_dir>/sandboxes/.usage.json)
        await m.close()
        m = SandboxManager(state_dir=tmp_path / "state", node_id=node_id, clock=lambda: now[0])
        [listed] = await m.list()
        assert listed.last_used_at == 1_000_000.0 + 30 * 60
        # older than maxAgeDays goes even when just used
        now[0] += 8 * 86400
        await sh(m, b, "true")
        assert await m.prune() == 1
        assert await m.list() == []
    finally:
        await m.close()


async def test_reap_stale(
    tmp_path: Path, node_id: str, client: docker.DockerClient, make_config: Callable[..., Config]
) -> None:
    old = make_config({}, {"id": "a"}, {"id": "b"})
    m = SandboxManager(state_dir=tmp_path / "state", node_id=node_id)
    try:
        a, b = await asyncio.gather(ensure(m, old, "a"), ensure(m, old, "b"))
    finally:
        await m.close()
    # restart with a config in which a's sandbox changed: a's container has an unknown hash
    new = make_config({}, {"id": "a", "sandbox": {"docker": {"memory": "64m"}}}, {"id": "b"})
    m = SandboxManager(state_dir=tmp_path / "state", node_id=node_id)
    try:
        assert await m.reap_stale(new) == 1
        assert [i.id for i in await m.list()] == [b.id]
        with pytest.raises(docker.errors.NotFound):
            client.containers.get(a.id)
        client.containers.get(b.id).kill()  # exited containers go too
        assert await m.reap_stale(new) == 1
        assert await m.list() == []
    finally:
        await m.close()


# -- the real default image -------------------------------------------------------------------


async def test_default_image_when_present(
    manager: SandboxManager, make_config: Callable[..., Config], client: docker.DockerClient
) -> None:
    try:
        client.images.get(DEFAULT_IMAGE)
    except docker.errors.ImageNotFound:
        pytest.skip(f"{DEFAULT_IMAGE} not built (slow; `scripts/images.sh sandbox` builds it)")
    cfg = make_config({"docker": {"image": DEFAULT_IMAGE}})
    assert resolve_sandbox(cfg, "a").image == DEFAULT_IMAGE == EffectiveSandbox().image
    info = await ensure(manager, cfg)
    out = await sh(
        manager,
        info,
        "python3 -c 'import sys; print(sys.version_info[:2])' && git --version && "
        "cd /workspace && git init -q r && echo ok > r/f && cat r/f && ls /sys/class/net",
    )
    lines = out.stdout.splitlines()
    assert lines[0] == "(3, 11)" and lines[1].startswith("git version 2.") and lines[2:] == ["ok", "lo"]
    # the busybox-free kill path works with Debian's coreutils/procps too
    timed = await manager.exec(info, "sleep 30 & sleep 31", timeout=1)
    assert timed.timed_out
