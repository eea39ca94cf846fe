"""What is wrong with sandbox settings: for the config loader (`config_checks`, with JSON
paths) and again right before a container is made (`effective_problems`), so a config that slipped
past the loader (or an `EffectiveSandbox` built by hand) still cannot weaken a sandbox."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Final, Protocol

from ..config import Config, Problem, Severity, home_dir
from ._binds import bind_problems
from ._effective import DEFAULT_WORKDIR, EffectiveSandbox, resolve_sandbox
from ._layout import AGENT_MOUNT, container_hash

__all__ = ["config_checks", "effective_problems"]

# Docker's container-name grammar; the prefix is the start of every sandbox's name.
_NAME: Final = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")
_ENV_NAME: Final = re.compile(r"^[^=\x00]+$")
_CREDENTIAL: Final = re.compile(
    r"(api[_-]?key|token|secret|passw(or)?d|credential|private[_-]?key|access[_-]?key)", re.IGNORECASE
)

Finding = tuple[str, str, Severity]  # (path below the docker section, message, severity)


class DockerValues(Protocol):
    """The docker keys as both the config (`SandboxDocker`) and `EffectiveSandbox` carry them."""

    @property
    def container_prefix(self) -> str | None: ...
    @property
    def workdir(self) -> str | None: ...
    @property
    def tmpfs(self) -> Sequence[str] | None: ...
    @property
    def network(self) -> str | None: ...
    @property
    def env(self) -> Mapping[str, str] | None: ...
    @property
    def pids_limit(self) -> int | None: ...
    @property
    def memory(self) -> str | int | None: ...
    @property
    def memory_swap(self) -> str | int | None: ...
    @property
    def cpus(self) -> float | None: ...
    @property
    def ulimits(self) -> Mapping[str, int | str | Mapping[str, int]] | None: ...
    @property
    def binds(self) -> Sequence[str] | None: ...
    @property
    def extra_hosts(self) -> Sequence[str] | None: ...
    @property
    def seccomp_profile(self) -> str | None: ...
    @property
    def apparmor_profile(self) -> str | None: ...


def network_problem(network: str) -> str | None:
    lowered = network.strip().lower()
    if lowered == "host" or lowered.startswith("container:"):
        return f"network '{network}' is refused: it escapes the sandbox"
    return None


def _bytes_problem(value: str | int) -> str | None:
    # docker's own parser, so the check agrees with the engine; imported here because the docker
    # SDK (~0.2 s) would otherwise load with every config check, i.e. every CLI command.
    import docker.errors
    import docker.utils

    try:
        parsed = docker.utils.parse_bytes(value)
    except docker.errors.DockerException as exc:
        return f"not a size: {exc}"
    return None if parsed > 0 or str(value).strip() == "-1" else "must be a positive size like '512m'"


def _ulimit_problem(value: int | str | Mapping[str, int]) -> str | None:
    if isinstance(value, Mapping):
        if set(value) - {"soft", "hard"} or not value:
            return "expected {soft, hard}"
        if not all(isinstance(v, int) for v in value.values()):
            return "soft and hard must be integers"
        return None
    if isinstance(value, int):
        return None
    if re.fullmatch(r"-?\d+(:-?\d+)?", value.strip()):
        return None
    return f"expected a number, 'soft:hard' or {{soft, hard}}, got {value!r}"


def _docker_findings(
    d: DockerValues, *, home: Path, reserved: Iterable[str], extra_protected: Iterable[Path]
) -> list[Finding]:
    out: list[Finding] = []
    if d.container_prefix is not None and not _NAME.match(d.container_prefix):
        out.append(("containerPrefix", "must start with a letter or digit, then [a-zA-Z0-9_.-]", "error"))
    if d.workdir is not None and (not d.workdir.startswith("/") or d.workdir.strip("/") == ""):
        out.append(("workdir", "must be an absolute container path other than '/'", "error"))
    for i, entry in enumerate(d.tmpfs or ()):
        if not entry.split(":", 1)[0].startswith("/"):
            out.append((f"tmpfs[{i}]", f"{entry!r} is not an absolute container path", "error"))
    if d.network is not None and (why := network_problem(d.network)):
        out.append(("network", why, "error"))
    for key in d.env or {}:
        if not _ENV_NAME.match(key):
            out.append((f"env.{key}", "not a valid environment variable name", "error"))
        elif _CREDENTIAL.search(key):
            out.append(
                (
                    f"env.{key}",
                    "looks like a credential: every command the agent runs in the sandbox can read it",
                    "warning",
                )
            )
    if d.pids_limit is not None and d.pids_limit <= 0:
        out.append(("pidsLimit", "must be a positive number of processes", "error"))
    for key, value in (("memory", d.memory), ("memorySwap", d.memory_swap)):
        if value is not None and (why := _bytes_problem(value)):
            out.append((key, why, "error"))
    if d.memory_swap is not None and d.memory is None:
        out.append(("memorySwap", "needs memory to be set as well", "error"))
    if d.cpus is not None and d.cpus <= 0:
        out.append(("cpus", "must be a positive number", "error"))
    for name, limit in (d.ulimits or {}).items():
        if why := _ulimit_problem(limit):
            out.append((f"ulimits.{name}", why, "error"))
    for i, entry in enumerate(d.extra_hosts or ()):
        host, sep, addr = entry.partition(":")
        if not (sep and host and addr):
            out.append((f"extraHosts[{i}]", f"expected 'host:ip', got {entry!r}", "error"))
    for key, value in (("seccompProfile", d.seccomp_profile), ("apparmorProfile", d.apparmor_profile)):
        if value is not None and value.strip().lower() == "unconfined":
            out.append((key, "'unconfined' is refused: it removes a layer of the sandbox", "error"))
    reserved = tuple(reserved)
    extra = tuple(extra_protected)
    for i, spec in enumerate(d.binds or ()):
        for why in bind_problems(spec, home=home, reserved_targets=reserved, extra_protected=extra):
            out.append((f"binds[{i}]", f"bind {spec!r}: {why}", "error"))
    return out


def effective_problems(sandbox: EffectiveSandbox, *, extra_protected: Iterable[Path] = ()) -> list[str]:
    """Errors that make `ensure()` refuse this sandbox before any container exists."""
    findings = _docker_findings(
        sandbox,
        home=sandbox.home,
        reserved=(sandbox.workdir, AGENT_MOUNT),
        extra_protected=extra_protected,
    )
    return [f"docker.{path}: {msg}" for path, msg, severity in findings if severity == "error"]


def _protected_state(config: Config) -> list[Path]:
    """clawmesh's own secrets: auth profiles and session transcripts, and the config file."""
    out = [config.state_dir / "agents", config.state_dir / "credentials"]
    if config.source is not None:
        out.append(Path(os.path.abspath(config.source)))
    return out


def config_checks(config: Config) -> list[Problem]:
    """Sandbox problems in a config, each with the JSON path it is about
    (`$.agents.list[1].sandbox.docker.binds[0]`). Errors refuse the config; warnings are advice."""
    problems: list[Problem] = []
    extra = _protected_state(config)
    agents = config.document.agents
    glob = agents.defaults.sandbox if agents and agents.defaults else None
    if glob and glob.docker:
        workdir = glob.docker.workdir or DEFAULT_WORKDIR
        for sub, msg, severity in _docker_findings(
            glob.docker, home=_home(config), reserved=(workdir, AGENT_MOUNT), extra_protected=extra
        ):
            problems.append(Problem(f"$.agents.defaults.sandbox.docker.{sub}", msg, severity))

    shared_users: dict[str, list[str]] = {}
    for view in config.agents:
        effective = resolve_sandbox(config, view.id)
        mine = view.entry.sandbox
        base = f"{view.path}.sandbox"
        if effective.scope == "shared" and effective.mode != "off":
            digest = container_hash(effective, agent_workspace=view.workspace)
            shared_users.setdefault(digest, []).append(view.id)
        if mine is None:
            continue
        if effective.scope == "shared":
            for key, value in (("docker", mine.docker), ("prune", mine.prune)):
                if value is not None:
                    problems.append(
                        Problem(
                            f"{base}.{key}",
                            f"ignored: scope is 'shared' (one container serves every agent, so only agents.defaults.sandbox.{key} applies)",
                            "warning",
                        )
                    )
            continue
        if mine.docker:
            for sub, msg, severity in _docker_findings(
                mine.docker,
                home=_home(config),
                reserved=(effective.workdir, AGENT_MOUNT),
                extra_protected=extra,
            ):
                problems.append(Problem(f"{base}.docker.{sub}", msg, severity))
    if len(shared_users) > 1:
        groups = "; ".join(", ".join(ids) for ids in shared_users.values())
        problems.append(
            Problem(
                "$.agents.defaults.sandbox.scope",
                "scope 'shared' runs one container for all agents, but these agents need different ones "
                f"({groups}: different workspaceAccess, workspace or settings); each would recreate it under the "
                "others. Use scope 'agent' for them",
                "warning",
            )
        )
    return problems


def _home(config: Config) -> Path:
    return home_dir(config.env)
