"""Bind mounts (`docker.binds`: `src:dst[:ro|rw]`) and the host paths a sandbox must never see.

OpenClaw's `validate-sandbox-security.ts` refuses relative sources, `/`, docker.sock and system
directories, re-checked after resolving symlinks. clawmesh does the same and one thing more: a
source that *contains* a protected path is refused too (`/var` holds `/var/run/docker.sock`, `~`
holds `~/.ssh`), because mounting a parent exposes the child just as well.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

__all__ = ["Bind", "bind_problems", "parse_bind", "path_refusal", "protected_paths", "validate_binds"]

# Host system paths: configuration, kernel interfaces, devices, root's home, runtime sockets
# (/run and /var/run hold docker.sock), and the engine's own data (every container's files).
SYSTEM_PROTECTED: Final = (
    "/etc",
    "/proc",
    "/sys",
    "/dev",
    "/boot",
    "/root",
    "/run",
    "/var/run",
    "/var/lib/docker",
    "/var/lib/containerd",
)
# Credentials under the user's home.
HOME_PROTECTED: Final = (
    ".ssh",
    ".aws",
    ".gnupg",
    ".docker",
    ".kube",
    ".azure",
    ".config/gcloud",
    ".netrc",
    ".git-credentials",
)
# Container paths a bind may not cover: kernel interfaces, and `/` itself.
_TARGET_FORBIDDEN: Final = ("/proc", "/sys", "/dev")


@dataclass(frozen=True, slots=True)
class Bind:
    """One parsed bind: `source` is absolute and normalised (`~` expanded), not yet symlink-resolved."""

    source: str
    target: str
    read_only: bool


def _expand_home(path: str, home: Path) -> str:
    if path == "~" or path.startswith("~/"):
        return str(home) + path[1:]
    return path


def protected_paths(home: Path, extra: Iterable[os.PathLike[str] | str] = ()) -> tuple[str, ...]:
    """Every protected path, literal and symlink-resolved (e.g. `/var/run` → `/run`)."""
    raw = [*SYSTEM_PROTECTED, *(str(home / p) for p in HOME_PROTECTED), *(os.fspath(p) for p in extra)]
    out: dict[str, None] = {}
    for p in raw:
        norm = posixpath.normpath(p)
        out[norm] = None
        out[os.path.realpath(norm)] = None
    return tuple(out)


def _refusal(path: str, protected: tuple[str, ...], home: Path) -> str | None:
    """Why `path` (absolute, normalised) may not be mounted, or None."""
    if path == "/":
        return "the host root '/' exposes everything"
    if path.endswith("docker.sock"):
        return "the Docker socket gives full control of the host"
    for p in protected:
        shown = _shown(p, home)
        if path == p:
            return f"{shown} is protected"
        if path.startswith(p + "/"):
            return f"it is inside {shown}, which is protected"
        if p.startswith(path + "/"):
            return f"it contains {shown}, which is protected"
    return None


def _shown(path: str, home: Path) -> str:
    h = str(home).rstrip("/")
    return "~" + path[len(h) :] if h and path.startswith(h + "/") else path


def parse_bind(spec: str, *, home: Path) -> tuple[Bind | None, list[str]]:
    """Parse `src:dst[:ro|rw]` (`~` in src is the user's home). Returns the bind or the problems."""
    parts = spec.split(":")
    if len(parts) not in (2, 3) or not parts[0] or not parts[1]:
        return None, ["expected 'source:target' or 'source:target:ro|rw'"]
    problems = []
    mode = parts[2] if len(parts) == 3 else "rw"
    if mode not in ("ro", "rw"):
        problems.append(f"mode {mode!r} is not allowed (use ro or rw)")
    source = _expand_home(parts[0], home)
    if not posixpath.isabs(source):
        problems.append(
            f"source {parts[0]!r} is not an absolute host path (relative paths and named volumes are refused)"
        )
    target = parts[1]
    if not posixpath.isabs(target):
        problems.append(f"target {target!r} is not an absolute container path")
    else:
        norm_target = posixpath.normpath(target)
        if norm_target == "/" or any(
            norm_target == t or norm_target.startswith(t + "/") for t in _TARGET_FORBIDDEN
        ):
            problems.append(f"target {target!r} would cover a system path inside the container")
        target = norm_target
    if problems:
        return None, problems
    return Bind(posixpath.normpath(source), target, mode == "ro"), []


def path_refusal(
    path: str | os.PathLike[str],
    *,
    home: Path,
    extra_protected: Iterable[os.PathLike[str] | str] = (),
    allow_home: bool = False,
) -> str | None:
    """Why this host path may not be mounted into a sandbox (None when it may): checked as written
    and again after resolving symlinks, so a link in /tmp pointing at /etc is refused.

    `allow_home`: for the workspaces clawmesh mounts itself. When clawmesh runs as root its home,
    state dir and workspaces are under /root, which binds may not touch (OpenClaw's rule); the
    home's credentials (~/.ssh, …) stay protected either way.
    """
    literal = posixpath.normpath(os.fspath(path))
    protected = protected_paths(home, extra_protected)
    if allow_home:
        homes = {posixpath.normpath(str(home)), os.path.realpath(home)}
        protected = tuple(p for p in protected if not any(h == p or h.startswith(p + "/") for h in homes))
    why = _refusal(literal, protected, home)
    if why is None:
        resolved = os.path.realpath(literal)
        if resolved != literal:
            why = _refusal(resolved, protected, home)
            if why is not None:
                why = f"it resolves to {resolved}: {why}"
    return why


def bind_problems(
    spec: str,
    *,
    home: Path,
    reserved_targets: Iterable[str] = (),
    extra_protected: Iterable[os.PathLike[str] | str] = (),
) -> list[str]:
    """Problems with one bind (empty when it may be mounted)."""
    bind, problems = parse_bind(spec, home=home)
    if bind is None:
        return problems
    if bind.target in {posixpath.normpath(t) for t in reserved_targets}:
        problems.append(f"target {bind.target!r} is where the sandbox mounts its workspace")
    why = path_refusal(bind.source, home=home, extra_protected=extra_protected)
    if why is not None:
        problems.append(f"source {bind.source!r} is refused: {why}")
    return problems


def validate_binds(
    binds: Iterable[str],
    *,
    home: Path,
    reserved_targets: Iterable[str] = (),
    extra_protected: Iterable[os.PathLike[str] | str] = (),
) -> list[str]:
    """Human-readable problems with `binds`, one line each and naming the bind; `[]` when all are fine."""
    reserved = tuple(reserved_targets)
    extra = tuple(extra_protected)
    out = []
    for spec in binds:
        for problem in bind_problems(spec, home=home, reserved_targets=reserved, extra_protected=extra):
            out.append(f"bind {spec!r}: {problem}")
    return out
