"""`SandboxManager`: the node's sandbox containers — made on demand, reused while their config is
unchanged, recreated when it changed, pruned when idle or old, never bypassed.

All docker calls run in a small private thread pool (the SDK blocks). Calls for one container are
serialised by a per-name lock, so two sessions of one agent cannot both create its container.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Final, ParamSpec, TypeVar

import docker
import docker.errors
from docker.models.containers import Container

from ..config._model import Config
from ._binds import parse_bind, path_refusal
from ._docker import Engine, Unreachable, create_kwargs
from ._effective import DEFAULT_IDLE_HOURS, DEFAULT_MAX_AGE_DAYS, EffectiveSandbox, resolve_sandbox
from ._errors import SandboxError, SandboxUnavailable
from ._exec import ExecResult, OnOutput, run_exec, run_exec_blocking
from ._layout import (
    LABEL_AGENT,
    LABEL_CREATED,
    LABEL_HASH,
    LABEL_NODE,
    LABEL_PRUNE_AGE,
    LABEL_PRUNE_IDLE,
    LABEL_SANDBOX,
    LABEL_SCOPE,
    LABEL_SESSION,
    Mount,
    container_hash,
    container_name,
    effective_user,
    host_workspace,
    sandbox_dir,
    workspace_mounts,
)
from ._problems import effective_problems
from ._usage import UsageStore

__all__ = ["SETUP_TIMEOUT", "SandboxInfo", "SandboxManager"]

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")

SETUP_TIMEOUT: Final = 600.0  # seconds; setupCommand typically installs things
_NOT_RUNNING: Final = frozenset({"created", "exited", "dead"})


@dataclass
class SandboxInfo:
    """One sandbox container as this node sees it."""

    name: str
    id: str
    agent_id: str | None  # None for the shared container
    session_key: str | None  # set for scope "session"
    scope: str
    config_hash: str
    image: str
    status: str
    created_at: float
    last_used_at: float
    workdir: str = "/workspace"
    prune_idle_hours: float = DEFAULT_IDLE_HOURS
    prune_max_age_days: float = DEFAULT_MAX_AGE_DAYS


def _docker_created(container: Container) -> float:
    raw = str(container.attrs.get("Created", ""))
    try:
        # "2026-05-07T10:11:12.123456789Z": Python wants at most 6 fractional digits
        head, _, frac = raw.rstrip("Z").partition(".")
        return datetime.fromisoformat(f"{head}.{(frac or '0')[:6]}+00:00").timestamp()
    except ValueError:
        return 0.0


def _label_float(labels: Mapping[str, str], key: str, default: float) -> float:
    try:
        return float(labels[key])
    except (KeyError, ValueError):
        return default


def _numeric_user(user: str) -> tuple[int | None, int | None]:
    uid, _, gid = user.partition(":")
    return (int(uid) if uid.isdigit() else None, int(gid) if gid.isdigit() else None)


def _prepare_own_dir(path: Path, user: str) -> None:
    """The sandbox-owned workspace must be writable by the uid the sandbox runs as."""
    path.mkdir(parents=True, exist_ok=True)
    uid, gid = _numeric_user(user)
    if uid == os.getuid():
        return
    if uid is not None and os.geteuid() == 0:
        os.chown(path, uid, gid if gid is not None else -1)
    else:
        # a named user (uid unknown here), or we may not chown: let anyone in the sandbox write
        path.chmod(0o777)


class SandboxManager:
    def __init__(
        self,
        *,
        state_dir: Path,
        node_id: str = "local",
        docker_factory: Callable[[], docker.DockerClient] = docker.from_env,
        clock: Callable[[], float] = time.time,
        max_workers: int = 8,
    ) -> None:
        self.state_dir = Path(state_dir)
        self.node_id = node_id
        self._engine = Engine(docker_factory)
        self._clock = clock
        self._usage = UsageStore(self.state_dir / "sandboxes" / ".usage.json", clock)
        # private pool: the default executor has only cpu+4 workers and is shared with everything
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="sandbox-docker")
        self._locks: dict[str, asyncio.Lock] = {}
        self._busy: Counter[str] = Counter()
        self._prune_settings: dict[str, tuple[float, float]] = {}  # from the latest ensure()
        self._ensured: dict[str, str] = {}  # container name → hash of its latest ensure()

    # -- plumbing -------------------------------------------------------------------------

    def _lock(self, name: str) -> asyncio.Lock:
        return self._locks.setdefault(name, asyncio.Lock())

    async def _call(self, what: str, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._pool, lambda: fn(*args, **kwargs))
        except Unreachable as exc:
            raise SandboxUnavailable(
                f"{what} but the Docker engine is not reachable ({exc.cause}): refusing to run on the host"
            ) from exc

    def _filters(self, agent_id: str | None = None) -> dict[str, str | list[str] | bool]:
        labels = [f"{LABEL_SANDBOX}=1", f"{LABEL_NODE}={self.node_id}"]
        if agent_id is not None:
            labels.append(f"{LABEL_AGENT}={agent_id}")
        return {"label": labels}

    def _mine(self, client: docker.DockerClient, agent_id: str | None = None) -> list[Container]:
        return client.containers.list(all=True, filters=self._filters(agent_id), ignore_removed=True)

    def _info(self, container: Container) -> SandboxInfo:
        labels: Mapping[str, str] = container.labels
        created = _label_float(labels, LABEL_CREATED, _docker_created(container))
        cid = str(container.id)
        name = str(container.name)
        config = container.attrs.get("Config") or {}
        return SandboxInfo(
            name=name,
            id=cid,
            agent_id=labels.get(LABEL_AGENT) or None,
            session_key=labels.get(LABEL_SESSION) or None,
            scope=labels.get(LABEL_SCOPE, "agent"),
            config_hash=labels.get(LABEL_HASH, ""),
            image=str(config.get("Image", "")),
            status=str(container.status),
            created_at=created,
            last_used_at=self._usage.last_used(name, cid) or created,
            workdir=str(config.get("WorkingDir") or "/workspace"),
            prune_idle_hours=_label_float(labels, LABEL_PRUNE_IDLE, DEFAULT_IDLE_HOURS),
            prune_max_age_days=_label_float(labels, LABEL_PRUNE_AGE, DEFAULT_MAX_AGE_DAYS),
        )

    # -- ensure ---------------------------------------------------------------------------

    def host_workspace(
        self, sandbox: EffectiveSandbox, *, agent_id: str, session_key: str, agent_workspace: Path
    ) -> tuple[Path, bool]:
        """The host directory the sandbox sees as its workspace and whether it is writable: the
        file tools (read/write/edit run on the node, not in the container) confine themselves to it."""
        return host_workspace(
            sandbox, agent_id=agent_id, session_key=session_key, agent_workspace=agent_workspace
        )

    def _refusals(self, sandbox: EffectiveSandbox, mounts: Iterable[Mount]) -> list[str]:
        extra = [self.state_dir / "agents"]
        problems = effective_problems(sandbox, extra_protected=extra)
        for mount in mounts:
            # a workspace or workspaceRoot of "~" or "/etc" would expose what binds may not
            why = path_refusal(mount.host, home=sandbox.home, extra_protected=extra, allow_home=True)
            if why is not None:
                problems.append(f"workspace {mount.host} cannot be mounted: {why}")
        return problems

    async def ensure(
        self, sandbox: EffectiveSandbox, *, agent_id: str, session_key: str, agent_workspace: Path
    ) -> SandboxInfo:
        """The running container for this agent/session, created (and set up) if needed.

        Raises `SandboxError` for refused settings — before anything is created — a missing image
        or a failed setupCommand; `SandboxUnavailable` when there is no Docker engine.
        """
        mounts = workspace_mounts(
            sandbox, agent_id=agent_id, session_key=session_key, agent_workspace=agent_workspace
        )
        problems = self._refusals(sandbox, mounts)
        if problems:
            raise SandboxError(f"sandbox for agent '{agent_id}' refused: " + "; ".join(problems))
        name = container_name(sandbox, agent_id=agent_id, session_key=session_key)
        digest = container_hash(sandbox, agent_workspace=agent_workspace)
        async with self._lock(name):
            info = await self._call(
                f"sandbox required for agent '{agent_id}'",
                self._engine.call,
                lambda client: self._ensure_sync(
                    client, sandbox, name, digest, agent_id, session_key, mounts
                ),
            )
        self._ensured[name] = digest
        self._prune_settings[name] = (sandbox.prune_idle_hours, sandbox.prune_max_age_days)
        return info

    def _ensure_sync(
        self,
        client: docker.DockerClient,
        sandbox: EffectiveSandbox,
        name: str,
        digest: str,
        agent_id: str,
        session_key: str,
        mounts: tuple[Mount, ...],
    ) -> SandboxInfo:
        try:
            container: Container | None = client.containers.get(name)
        except docker.errors.NotFound:
            container = None
        if container is not None:
            container = self._reuse(container, sandbox, name, digest)
        if container is None:
            container = self._create(client, sandbox, name, digest, agent_id, session_key, mounts)
        self._usage.touch(name, str(container.id))
        self._usage.flush()
        return self._info(container)

    def _reuse(
        self, container: Container, sandbox: EffectiveSandbox, name: str, digest: str
    ) -> Container | None:
        """The existing container if it may serve, started if stopped; None after removing it."""
        labels = container.labels
        if labels.get(LABEL_SANDBOX) != "1" or labels.get(LABEL_NODE) != self.node_id:
            raise SandboxError(
                f"a container named {name} exists but is not a sandbox of node '{self.node_id}' "
                "(remove it, or set another docker.containerPrefix)"
            )
        cid = str(container.id)
        stale = labels.get(LABEL_HASH) != digest
        # setupCommand runs once, right after create; if it never completed (crash, lost state),
        # start over rather than run it twice in one container
        unset_up = bool(sandbox.setup_command) and not self._usage.setup_done(name, cid)
        if stale or unset_up or container.status in ("dead", "removing"):
            log.info("recreating sandbox %s (%s)", name, "config changed" if stale else container.status)
            self._remove_container(container)
            return None
        try:
            if container.status == "paused":
                container.unpause()
            elif container.status != "running":
                container.start()
        except docker.errors.APIError as exc:
            log.warning("sandbox %s does not start again (%s); recreating it", name, exc.explanation)
            self._remove_container(container)
            return None
        container.reload()
        return container

    def _remove_container(self, container: Container) -> None:
        try:
            container.remove(force=True, v=True)
        except docker.errors.NotFound:
            pass
        self._usage.forget(str(container.name))

    def _create(
        self,
        client: docker.DockerClient,
        sandbox: EffectiveSandbox,
        name: str,
        digest: str,
        agent_id: str,
        session_key: str,
        mounts: tuple[Mount, ...],
    ) -> Container:
        try:
            client.images.get(sandbox.image)
        except docker.errors.ImageNotFound:
            raise SandboxError(
                f"image {sandbox.image} not found locally; build it with `make images`"
            ) from None
        user = effective_user(sandbox)
        own = sandbox_dir(sandbox, agent_id=agent_id, session_key=session_key)
        all_mounts = list(mounts)
        for mount in mounts:
            if mount.host == own:
                _prepare_own_dir(mount.host, user)
            else:
                mount.host.mkdir(parents=True, exist_ok=True)  # the agent workspace
        for spec in sandbox.binds:
            bind, _ = parse_bind(spec, home=sandbox.home)
            assert bind is not None  # validated in ensure()
            # mount what the path resolves to *now* (it was checked after resolving too), so
            # re-pointing a symlink later does not change what an existing sandbox sees
            source = Path(os.path.realpath(bind.source))
            if not source.exists():
                raise SandboxError(f"bind {spec!r}: source {source} does not exist")
            all_mounts.append(Mount(source, bind.target, bind.read_only))
        labels = {
            LABEL_SANDBOX: "1",
            LABEL_NODE: self.node_id,
            LABEL_SCOPE: sandbox.scope,
            LABEL_HASH: digest,
            LABEL_CREATED: repr(self._clock()),
            LABEL_PRUNE_IDLE: repr(sandbox.prune_idle_hours),
            LABEL_PRUNE_AGE: repr(sandbox.prune_max_age_days),
        }
        if sandbox.scope != "shared":
            labels[LABEL_AGENT] = agent_id
        if sandbox.scope == "session":
            labels[LABEL_SESSION] = session_key
        kwargs = create_kwargs(sandbox, name=name, labels=labels, mounts=tuple(all_mounts), user=user)
        try:
            container = client.containers.create(**kwargs)
        except docker.errors.ImageNotFound:
            raise SandboxError(
                f"image {sandbox.image} not found locally; build it with `make images`"
            ) from None
        except docker.errors.APIError as exc:
            raise SandboxError(f"cannot create sandbox {name}: {exc.explanation or exc}") from exc
        try:
            container.start()
        except docker.errors.APIError as exc:
            self._remove_container(container)
            raise SandboxError(f"cannot start sandbox {name}: {exc.explanation or exc}") from exc
        container.reload()
        if sandbox.setup_command:
            self._setup(client, container, sandbox, name)
        return container

    def _setup(
        self, client: docker.DockerClient, container: Container, sandbox: EffectiveSandbox, name: str
    ) -> None:
        result = run_exec_blocking(
            client,
            str(container.id),
            sandbox.setup_command or "",
            workdir=sandbox.workdir,
            timeout=SETUP_TIMEOUT,
        )
        if result.exit_code == 0 and not result.timed_out:
            self._usage.mark_setup_done(name, str(container.id))
            return
        # a half set-up sandbox is worse than none: remove it; the next ensure() tries again
        self._remove_container(container)
        how = "timed out" if result.timed_out else f"exited {result.exit_code}"
        output = (result.stdout + result.stderr).strip()[-2000:]
        raise SandboxError(f"setupCommand {how} in sandbox {name}: {output or '(no output)'}")

    # -- exec -----------------------------------------------------------------------------

    async def exec(
        self,
        info_or_name: SandboxInfo | str,
        command: list[str] | str,
        *,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float = 120,
        max_output: int = 200_000,
        on_output: OnOutput | None = None,
    ) -> ExecResult:
        """Run `command` (argv, or a string run as `sh -lc`) in the sandbox. Output is streamed to
        `on_output(stream, text)` ("stdout"/"stderr") as it comes and capped at `max_output`
        characters; at `timeout` seconds the command and everything it started are killed."""
        if isinstance(info_or_name, SandboxInfo):
            name, cid, workdir = info_or_name.name, info_or_name.id, info_or_name.workdir
        else:
            name = info_or_name
            info = await self._call(
                f"sandbox {name} is needed", self._engine.call, lambda c: self._get_info(c, name)
            )
            cid, workdir = info.id, info.workdir
        self._busy[name] += 1
        self._usage.touch(name, cid)
        try:
            return await run_exec(
                self._engine,
                self._pool,
                cid,
                command,
                workdir=workdir,
                cwd=cwd,
                env=env,
                timeout=timeout,
                max_output=max_output,
                on_output=on_output,
            )
        except Unreachable as exc:
            raise SandboxUnavailable(
                f"sandbox {name} is needed but the Docker engine is not reachable ({exc.cause}): "
                "refusing to run on the host"
            ) from exc
        finally:
            self._busy[name] -= 1
            if self._busy[name] <= 0:
                del self._busy[name]
            self._usage.touch(name, cid)
            self._usage.flush()

    def _get_info(self, client: docker.DockerClient, name: str) -> SandboxInfo:
        try:
            container = client.containers.get(name)
        except docker.errors.NotFound:
            raise SandboxError(f"sandbox container {name} does not exist (ensure() it first)") from None
        if container.labels.get(LABEL_SANDBOX) != "1":
            raise SandboxError(f"container {name} is not a clawmesh sandbox")
        return self._info(container)

    # -- housekeeping ---------------------------------------------------------------------

    async def list(self) -> list[SandboxInfo]:
        """This node's sandbox containers (by label), running or not."""
        return await self._call(
            "listing sandboxes", self._engine.call, lambda c: [self._info(x) for x in self._mine(c)]
        )

    async def _remove_where(
        self, what: str, keep: Callable[[SandboxInfo], bool], agent_id: str | None = None
    ) -> int:
        infos = await self._call(
            what, self._engine.call, lambda c: [self._info(x) for x in self._mine(c, agent_id)]
        )
        removed = 0
        for info in infos:
            if keep(info):
                continue
            async with self._lock(info.name):
                await self._call(what, self._engine.call, lambda c, i=info: self._remove_by_id(c, i))
            self._prune_settings.pop(info.name, None)
            self._ensured.pop(info.name, None)
            removed += 1
        self._usage.flush(force=True)
        return removed

    def _remove_by_id(self, client: docker.DockerClient, info: SandboxInfo) -> None:
        try:
            client.api.remove_container(info.id, force=True, v=True)
        except docker.errors.NotFound:
            pass
        self._usage.forget(info.name)

    async def remove(self, *, agent_id: str | None = None, all: bool = False) -> int:
        """Remove this node's sandboxes of `agent_id` (agent and session scope; the shared one only
        with all=True), or all of them. The next ensure() creates fresh ones. Returns the count."""
        if agent_id is None and not all:
            raise ValueError("remove() needs agent_id=... or all=True")
        return await self._remove_where("removing sandboxes", lambda _: False, None if all else agent_id)

    def _is_busy(self, name: str) -> bool:
        return self._busy.get(name, 0) > 0 or self._lock(name).locked()

    async def prune(self) -> int:
        """Remove sandboxes idle longer than prune.idleHours (by last use) or older than
        prune.maxAgeDays; a value <= 0 disables that rule. Busy sandboxes are kept."""
        now = self._clock()

        def keep(info: SandboxInfo) -> bool:
            if self._is_busy(info.name):
                return True
            # settings of the latest ensure() win over those the container was created with
            idle_h, age_d = self._prune_settings.get(
                info.name, (info.prune_idle_hours, info.prune_max_age_days)
            )
            idle = idle_h > 0 and now - info.last_used_at > idle_h * 3600
            old = age_d > 0 and now - info.created_at > age_d * 86400
            return not (idle or old)

        return await self._remove_where("pruning sandboxes", keep)

    async def reap_stale(self, config: Config | None = None) -> int:
        """At start-up: remove this node's sandboxes that are not running, and those whose config
        hash is not the one their agent's sandbox has in `config` (or, for sandboxes this manager
        ensured, the one it ensured last). Without a config only the stopped ones and those
        superseded in this process go: there is nothing else to compare hashes with."""
        # agent id ("" for the shared container) → the hashes its containers may have
        expected: dict[str, set[str]] = {}
        if config is not None:
            for view in config.agents:
                sandbox = resolve_sandbox(config, view.id)
                if sandbox.mode != "off":
                    key = "" if sandbox.scope == "shared" else view.id
                    expected.setdefault(key, set()).add(
                        container_hash(sandbox, agent_workspace=view.workspace)
                    )

        def keep(info: SandboxInfo) -> bool:
            if self._is_busy(info.name):
                return True
            if info.status in _NOT_RUNNING:
                return False
            if info.name in self._ensured:
                return self._ensured[info.name] == info.config_hash
            return config is None or info.config_hash in expected.get(info.agent_id or "", ())

        return await self._remove_where("reaping sandboxes", keep)

    async def close(self) -> None:
        """Save usage times and release the client. Containers stay: they are reused after a restart."""
        self._usage.flush(force=True)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, lambda: self._pool.shutdown(wait=True, cancel_futures=True))
        self._engine.drop()
