"""The Docker side: one lazily made client, engine failures told apart from refusals, and the
exact `containers.create` arguments of a locked-down sandbox.

Everything here is blocking (the docker SDK is); the manager runs it in worker threads.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Final, TypeVar

import docker
import docker.errors
import docker.types
import requests.exceptions
import urllib3.exceptions

from ._effective import EffectiveSandbox, UlimitValue
from ._errors import SandboxError
from ._layout import Mount

__all__ = ["SLEEP_FOREVER", "Engine", "Unreachable", "create_kwargs", "tmpfs_options", "ulimit_objects"]

T = TypeVar("T")

# busybox `sleep` has no "infinity"; 2^31-1 seconds (68 years) works with busybox and coreutils.
SLEEP_FOREVER: Final = ["sleep", "2147483647"]
_TMPFS_DEFAULT: Final = "rw,nosuid,nodev,size=64m"
_WORLD_WRITABLE: Final = frozenset({"/tmp", "/var/tmp"})


class Unreachable(Exception):
    """Internal: the engine did not answer. The manager turns it into `SandboxUnavailable` with
    the agent or container it was for."""

    def __init__(self, cause: str) -> None:
        super().__init__(cause)
        self.cause = cause


def _cause(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:300]}" if text else type(exc).__name__


def _is_unreachable(exc: BaseException) -> bool:
    # Connection refused, missing socket, engine hung (read timeout), connection dropped mid-call.
    # `docker.errors.APIError` means the engine answered; other DockerExceptions are argument errors.
    return isinstance(
        exc,
        requests.exceptions.ConnectionError
        | requests.exceptions.Timeout
        | urllib3.exceptions.HTTPError
        | ConnectionError
        | FileNotFoundError
        | TimeoutError,
    )


class Engine:
    """The docker client, made on first use and remade after the engine went away."""

    def __init__(self, factory: Callable[[], docker.DockerClient]) -> None:
        self._factory = factory
        self._client: docker.DockerClient | None = None
        self._lock = threading.Lock()

    def client(self) -> docker.DockerClient:
        with self._lock:
            if self._client is None:
                try:
                    # docker.from_env() asks the engine for its API version: this is the call that
                    # fails when there is no engine
                    client = self._factory()
                    client.ping()
                except Exception as exc:  # any failure to get an answering client: no engine
                    raise Unreachable(_cause(exc)) from exc
                self._client = client
            return self._client

    def call(self, fn: Callable[[docker.DockerClient], T]) -> T:
        """Run `fn(client)`; engine gone → `Unreachable`, argument errors → `SandboxError`.
        `APIError` (incl. NotFound) propagates for the caller to interpret."""
        client = self.client()
        try:
            return fn(client)
        except docker.errors.APIError:
            raise
        except docker.errors.DockerException as exc:
            raise SandboxError(_cause(exc)) from exc
        except Exception as exc:
            if _is_unreachable(exc):
                self.drop()
                raise Unreachable(_cause(exc)) from exc
            raise

    def drop(self) -> None:
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            try:
                client.close()
            except Exception:
                pass


def tmpfs_options(entries: tuple[str, ...]) -> dict[str, str]:
    """`/tmp` or `/tmp:opts` → {path: opts}; without opts: no suid/devices, 64 MB, and the sticky
    world-writable mode for /tmp and /var/tmp (any uid may run in the sandbox)."""
    out: dict[str, str] = {}
    for entry in entries:
        path, _, opts = entry.partition(":")
        if not opts:
            opts = _TMPFS_DEFAULT + (",mode=1777" if path.rstrip("/") in _WORLD_WRITABLE else "")
        out[path] = opts
    return out


def _ulimit(name: str, value: UlimitValue) -> docker.types.Ulimit:
    if isinstance(value, Mapping):
        soft = int(value.get("soft", value.get("hard", -1)))
        hard = int(value.get("hard", soft))
    elif isinstance(value, int):
        soft = hard = value
    else:
        first, _, second = value.strip().partition(":")
        soft = int(first)
        hard = int(second) if second else soft
    return docker.types.Ulimit(name=name, soft=soft, hard=hard)


def ulimit_objects(ulimits: Mapping[str, UlimitValue]) -> list[docker.types.Ulimit]:
    return [_ulimit(name, value) for name, value in sorted(ulimits.items())]


def _security_opt(sandbox: EffectiveSandbox) -> list[str]:
    opts = ["no-new-privileges"]  # always: setuid binaries cannot regain what cap_drop removed
    if sandbox.seccomp_profile:
        profile = sandbox.seccomp_profile
        if profile.startswith("/"):
            # the API takes the profile itself, not a path (the docker CLI reads the file for you)
            try:
                profile = json.dumps(json.loads(Path(profile).read_text()), separators=(",", ":"))
            except (OSError, ValueError) as exc:
                raise SandboxError(f"seccomp profile {sandbox.seccomp_profile}: {exc}") from exc
        opts.append(f"seccomp={profile}")
    if sandbox.apparmor_profile:
        opts.append(f"apparmor={sandbox.apparmor_profile}")
    return opts


def create_kwargs(
    sandbox: EffectiveSandbox,
    *,
    name: str,
    labels: Mapping[str, str],
    mounts: tuple[Mount, ...],
    user: str,
) -> dict[str, Any]:
    """Arguments for `client.containers.create` (never `run`: it pulls missing images)."""
    kwargs: dict[str, Any] = {
        "image": sandbox.image,
        "command": list(SLEEP_FOREVER),
        "name": name,
        "labels": dict(labels),
        "detach": True,
        "network_mode": sandbox.network,
        "read_only": sandbox.read_only_root,
        "tmpfs": tmpfs_options(sandbox.tmpfs),
        "cap_drop": list(sandbox.cap_drop),
        "security_opt": _security_opt(sandbox),
        "user": user,
        "working_dir": sandbox.workdir,
        "environment": dict(sandbox.env),
        # `Mount` binds, not `volumes=`: a missing source is an error instead of a directory the
        # engine silently creates as root, and paths may contain ':'
        "mounts": [
            docker.types.Mount(m.container, str(m.host), type="bind", read_only=m.read_only) for m in mounts
        ],
        # docker-init (tini) as PID 1 reaps orphans. With plain `sleep` as PID 1 every orphan —
        # each busybox `timeout` watcher, every killed background job — stays a zombie and
        # counts against pids_limit until the sandbox cannot fork any more (measured).
        "init": True,
    }
    if sandbox.pids_limit is not None:
        kwargs["pids_limit"] = sandbox.pids_limit
    if sandbox.memory is not None:
        kwargs["mem_limit"] = sandbox.memory
        # memory+swap = memory: no swap (cgroup v1 enforces it, see ci-environment.md §4.2)
        kwargs["memswap_limit"] = sandbox.memory_swap or sandbox.memory
    if sandbox.cpus is not None:
        kwargs["nano_cpus"] = int(sandbox.cpus * 1_000_000_000)
    if sandbox.ulimits:
        kwargs["ulimits"] = ulimit_objects(sandbox.ulimits)
    if sandbox.dns:
        kwargs["dns"] = list(sandbox.dns)
    if sandbox.extra_hosts:
        kwargs["extra_hosts"] = dict(entry.split(":", 1) for entry in sandbox.extra_hosts)
    return kwargs
