"""The blocking side of sandbox containers (docker SDK calls, run in worker threads): find,
reuse, start, create, set up, describe and remove this node's sandbox containers."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Final

import docker
import docker.errors
from docker.models.containers import Container

from ._binds import parse_bind
from ._docker import create_kwargs
from ._effective import DEFAULT_IDLE_HOURS, DEFAULT_MAX_AGE_DAYS, EffectiveSandbox
from ._errors import SandboxError
from ._exec import run_exec_blocking
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
    effective_user,
    sandbox_dir,
)
from ._usage import UsageStore

__all__ = ["SETUP_TIMEOUT", "Containers", "SandboxInfo"]

log = logging.getLogger(__name__)

SETUP_TIMEOUT: Final = 600.0  # seconds; setupCommand typically installs things


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


def _warn_if_unwritable(path: Path, user: str) -> None:
    """We do not chown the user's own workspace; say so when the sandbox uid cannot write it (root
    in the sandbox has no CAP_DAC_OVERRIDE either)."""
    uid, gid = _numeric_user(user)
    if uid is None:
        return
    st = path.stat()
    if (
        (st.st_uid == uid and st.st_mode & 0o200)
        or (gid is not None and st.st_gid == gid and st.st_mode & 0o020)
        or st.st_mode & 0o002
    ):
        return
    log.warning(
        "agent workspace %s (owner %d:%d, mode %o) is not writable by the sandbox user %s: writes from "
        "the sandbox will fail; set docker.user to its owner or make it writable",
        path,
        st.st_uid,
        st.st_gid,
        st.st_mode & 0o7777,
        user,
    )


class Containers:
    """This node's sandbox containers, blocking. Labels say which are ours (`clawmesh.node`)."""

    def __init__(self, *, node_id: str, usage: UsageStore, clock: Callable[[], float]) -> None:
        self.node_id = node_id
        self._usage = usage
        self._clock = clock

    def filters(self, agent_id: str | None = None) -> dict[str, str | list[str] | bool]:
        labels = [f"{LABEL_SANDBOX}=1", f"{LABEL_NODE}={self.node_id}"]
        if agent_id is not None:
            labels.append(f"{LABEL_AGENT}={agent_id}")
        return {"label": labels}

    def mine(self, client: docker.DockerClient, agent_id: str | None = None) -> list[Container]:
        return client.containers.list(all=True, filters=self.filters(agent_id), ignore_removed=True)

    def info(self, container: Container) -> SandboxInfo:
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

    def ensure(
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
        return self.info(container)

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
                if not mount.read_only:
                    _warn_if_unwritable(mount.host, user)
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

    def get_info(self, client: docker.DockerClient, name: str) -> SandboxInfo:
        try:
            container = client.containers.get(name)
        except docker.errors.NotFound:
            raise SandboxError(f"sandbox container {name} does not exist (ensure() it first)") from None
        if container.labels.get(LABEL_SANDBOX) != "1":
            raise SandboxError(f"container {name} is not a clawmesh sandbox")
        return self.info(container)

    def find(self, client: docker.DockerClient, container_id: str) -> SandboxInfo | None:
        try:
            return self.info(client.containers.get(container_id))
        except docker.errors.NotFound:
            return None

    def remove(self, client: docker.DockerClient, info: SandboxInfo) -> None:
        try:
            client.api.remove_container(info.id, force=True, v=True)
        except docker.errors.NotFound:
            pass
        self._usage.forget(info.name)
