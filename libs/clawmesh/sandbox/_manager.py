"""`SandboxManager`: the node's sandbox containers — made on demand, reused while their config is
unchanged, recreated when it changed, pruned when idle or old, never bypassed.

All docker calls run in a small private thread pool (the SDK blocks). Calls that may create or
remove a container are serialised per container name, so two sessions of one agent cannot both
create its container, and prune cannot remove one that is being ensured.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Final, TypeVar

import docker
import docker.errors

from ..config import Config, ExecSettings
from ._binds import path_refusal
from ._containers import Containers, SandboxInfo
from ._docker import Engine, Unreachable
from ._effective import EffectiveSandbox, resolve_sandbox
from ._errors import SandboxError, SandboxUnavailable
from ._exec import ExecResult, OnOutput, run_exec
from ._layout import Mount, container_hash, container_name, host_workspace, workspace_mounts
from ._problems import effective_problems
from ._usage import UsageStore

__all__ = ["SandboxManager"]

T = TypeVar("T")

_NOT_RUNNING: Final = frozenset({"created", "exited", "dead"})


def _unavailable(what: str, exc: Unreachable) -> SandboxUnavailable:
    return SandboxUnavailable(
        f"{what} but the Docker engine is not reachable ({exc.cause}): refusing to run on the host"
    )


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
        self._containers = Containers(node_id=node_id, usage=self._usage, clock=clock)
        # private pool: the default executor has only cpu+4 workers and is shared with everything
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="sandbox-docker")
        self._locks: dict[str, asyncio.Lock] = {}
        self._busy: Counter[str] = Counter()  # execs in flight per container name
        self._prune_settings: dict[str, tuple[float, float]] = {}  # from the latest ensure()
        self._ensured: dict[str, str] = {}  # container name → hash of its latest ensure()

    # -- plumbing -------------------------------------------------------------------------

    def _lock(self, name: str) -> asyncio.Lock:
        return self._locks.setdefault(name, asyncio.Lock())

    async def _docker(self, what: str, fn: Callable[[docker.DockerClient], T]) -> T:
        """`fn(client)` in the pool; an unreachable engine becomes `SandboxUnavailable`, any other
        engine error `SandboxError` — callers never see docker's own exceptions."""
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._pool, self._engine.call, fn)
        except Unreachable as exc:
            raise _unavailable(what, exc) from exc
        except docker.errors.APIError as exc:
            raise SandboxError(f"{what}: the Docker engine refused: {exc.explanation or exc}") from exc

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
        extra = [self.state_dir / "agents"]  # auth profiles and transcripts
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

        Raises `SandboxError` for refused settings (before anything is created), a missing image
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
            info = await self._docker(
                f"sandbox required for agent '{agent_id}'",
                lambda client: self._containers.ensure(
                    client, sandbox, name, digest, agent_id, session_key, mounts
                ),
            )
        self._ensured[name] = digest
        self._prune_settings[name] = (sandbox.prune_idle_hours, sandbox.prune_max_age_days)
        return info

    # -- exec -----------------------------------------------------------------------------

    async def exec(
        self,
        info_or_name: SandboxInfo | str,
        command: list[str] | str,
        *,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float = ExecSettings.timeout,
        max_output: int = ExecSettings.max_output_bytes,
        on_output: OnOutput | None = None,
    ) -> ExecResult:
        """Run `command` (argv, or a string run as `sh -lc`) in the sandbox. Output is streamed to
        `on_output(stream, text)` ("stdout"/"stderr") as it comes and capped at `max_output`
        characters; at `timeout` seconds the command and everything it started are killed.
        A relative `cwd` is relative to the sandbox's workdir."""
        if isinstance(info_or_name, SandboxInfo):
            info = info_or_name
        else:
            name = info_or_name
            info = await self._docker(
                f"sandbox {name} is needed", lambda c: self._containers.get_info(c, name)
            )
        self._busy[info.name] += 1
        self._usage.touch(info.name, info.id)
        try:
            return await run_exec(
                self._engine,
                self._pool,
                info.id,
                command,
                workdir=info.workdir,
                cwd=cwd,
                env=env,
                timeout=timeout,
                max_output=max_output,
                on_output=on_output,
            )
        except Unreachable as exc:
            raise _unavailable(f"sandbox {info.name} is needed", exc) from exc
        except docker.errors.APIError as exc:
            raise SandboxError(f"exec in sandbox {info.name}: {exc.explanation or exc}") from exc
        finally:
            self._busy[info.name] -= 1
            if self._busy[info.name] <= 0:
                del self._busy[info.name]
            self._usage.touch(info.name, info.id)
            self._usage.flush()

    # -- housekeeping ---------------------------------------------------------------------

    async def list(self) -> list[SandboxInfo]:
        """This node's sandbox containers (by label), running or not."""
        return await self._docker(
            "listing sandboxes", lambda c: [self._containers.info(x) for x in self._containers.mine(c)]
        )

    async def _remove_where(
        self, what: str, doomed: Callable[[SandboxInfo], bool], agent_id: str | None = None
    ) -> int:
        """Remove this node's containers (of `agent_id`) for which `doomed(info)` holds — judged
        again, on fresh data, under the container's lock — unless an exec is running in them."""
        candidates = await self._docker(
            what, lambda c: [self._containers.info(x) for x in self._containers.mine(c, agent_id)]
        )
        removed = 0
        for stale in candidates:
            if self._busy.get(stale.name) or not doomed(stale):
                continue
            async with self._lock(stale.name):
                info = await self._docker(what, partial(self._containers.find, container_id=stale.id))
                if info is None or self._busy.get(info.name) or not doomed(info):
                    continue
                await self._docker(what, partial(self._containers.remove, info=info))
            self._prune_settings.pop(info.name, None)
            self._ensured.pop(info.name, None)
            removed += 1
        self._usage.flush(force=True)
        return removed

    async def remove(self, *, agent_id: str | None = None, all: bool = False) -> int:
        """Remove this node's sandboxes of `agent_id` (agent and session scope; the shared one only
        with all=True), or all of them. The next ensure() creates fresh ones. Returns the count."""
        if agent_id is None and not all:
            raise ValueError("remove() needs agent_id=... or all=True")
        return await self._remove_where("removing sandboxes", lambda _: True, None if all else agent_id)

    async def prune(self) -> int:
        """Remove sandboxes idle longer than prune.idleHours (by last use) or older than
        prune.maxAgeDays; a value <= 0 disables that rule. Sandboxes running a command are kept."""
        now = self._clock()

        def doomed(info: SandboxInfo) -> bool:
            # the settings of the latest ensure() win over those the container was created with
            idle_h, age_d = self._prune_settings.get(
                info.name, (info.prune_idle_hours, info.prune_max_age_days)
            )
            idle = idle_h > 0 and now - info.last_used_at > idle_h * 3600
            old = age_d > 0 and now - info.created_at > age_d * 86400
            return idle or old

        return await self._remove_where("pruning sandboxes", doomed)

    async def reap_stale(self, config: Config | None = None) -> int:
        """At start-up: remove this node's sandboxes that are not running, and those whose config
        hash is not the one their agent's sandbox has in `config` (for sandboxes this manager
        ensured: the one it ensured last). Pass the config: without it only stopped sandboxes and
        those superseded in this process go, there being nothing else to compare hashes with."""
        # agent id ("" for the shared container) → the hashes its containers may have. Per agent:
        # two agents with identical settings have identical hashes.
        expected: dict[str, set[str]] = {}
        if config is not None:
            for view in config.agents:
                sandbox = resolve_sandbox(config, view.id)
                if sandbox.mode != "off":
                    key = "" if sandbox.scope == "shared" else view.id
                    expected.setdefault(key, set()).add(
                        container_hash(sandbox, agent_workspace=view.workspace)
                    )

        def doomed(info: SandboxInfo) -> bool:
            if info.status in _NOT_RUNNING:
                return True
            if info.name in self._ensured:
                return self._ensured[info.name] != info.config_hash
            return config is not None and info.config_hash not in expected.get(info.agent_id or "", ())

        return await self._remove_where("reaping sandboxes", doomed)

    async def close(self) -> None:
        """Save usage times and release the client. Containers stay: they are reused after a restart."""
        self._usage.flush(force=True)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, lambda: self._pool.shutdown(wait=True, cancel_futures=True))
        self._engine.drop()
