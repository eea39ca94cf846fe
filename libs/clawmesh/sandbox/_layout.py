"""Where a sandbox lives: its container name, its host directory, what it mounts, its labels.

One container per agent (scope agent), per agent and session (session) or one for everybody
(shared). Names carry the scope (`<prefix>agent-<id>`, `<prefix>session-<id>-<hash>`,
`<prefix>shared`) so an agent called "shared" cannot collide with the shared container.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Final

from ..ids import normalize_agent_id
from ._effective import EffectiveSandbox

__all__ = [
    "AGENT_MOUNT",
    "LABEL_AGENT",
    "LABEL_CREATED",
    "LABEL_HASH",
    "LABEL_NODE",
    "LABEL_PRUNE_AGE",
    "LABEL_PRUNE_IDLE",
    "LABEL_SANDBOX",
    "LABEL_SCOPE",
    "LABEL_SESSION",
    "Mount",
    "container_hash",
    "container_name",
    "container_workdir",
    "effective_user",
    "host_workspace",
    "sandbox_dir",
    "workspace_mounts",
]

# With workspaceAccess "ro" the agent workspace is mounted read-only here (OpenClaw's path).
AGENT_MOUNT: Final = "/agent"

LABEL_SANDBOX: Final = "clawmesh.sandbox"
LABEL_NODE: Final = "clawmesh.node"
LABEL_AGENT: Final = "clawmesh.agent"
LABEL_SESSION: Final = "clawmesh.session"
LABEL_SCOPE: Final = "clawmesh.scope"
LABEL_HASH: Final = "clawmesh.config-hash"
# Creation time by the manager's clock (tests inject one), and the prune settings in force when
# the container was made, so `prune()` works for containers this process never ensured.
LABEL_CREATED: Final = "clawmesh.created-at"
LABEL_PRUNE_IDLE: Final = "clawmesh.prune-idle-hours"
LABEL_PRUNE_AGE: Final = "clawmesh.prune-max-age-days"


@dataclass(frozen=True, slots=True)
class Mount:
    """A host directory mounted into the sandbox."""

    host: Path
    container: str
    read_only: bool


def _session_hash(session_key: str) -> str:
    return hashlib.sha256(session_key.strip().encode()).hexdigest()[:16]


def _suffix(sandbox: EffectiveSandbox, agent_id: str, session_key: str) -> str:
    if sandbox.scope == "shared":
        return "shared"
    aid = normalize_agent_id(agent_id)
    if sandbox.scope == "session":
        return f"session-{aid}-{_session_hash(session_key)}"
    return f"agent-{aid}"


def container_name(sandbox: EffectiveSandbox, *, agent_id: str, session_key: str) -> str:
    return sandbox.container_prefix + _suffix(sandbox, agent_id, session_key)


def sandbox_dir(sandbox: EffectiveSandbox, *, agent_id: str, session_key: str) -> Path:
    """The sandbox-owned workspace on the host (under workspaceRoot), one per container."""
    return sandbox.workspace_root / _suffix(sandbox, agent_id, session_key)


def workspace_mounts(
    sandbox: EffectiveSandbox, *, agent_id: str, session_key: str, agent_workspace: Path
) -> tuple[Mount, ...]:
    """The workspace mounts (binds come on top): none → the sandbox dir rw at workdir; ro → that
    plus the agent workspace read-only at /agent; rw → the agent workspace rw at workdir."""
    if sandbox.workspace_access == "rw":
        return (Mount(agent_workspace, sandbox.workdir, False),)
    own = Mount(sandbox_dir(sandbox, agent_id=agent_id, session_key=session_key), sandbox.workdir, False)
    if sandbox.workspace_access == "ro":
        return (own, Mount(agent_workspace, AGENT_MOUNT, True))
    return (own,)


def host_workspace(
    sandbox: EffectiveSandbox, *, agent_id: str, session_key: str, agent_workspace: Path
) -> tuple[Path, bool]:
    """The host directory the file tools (read/write/edit, which run on the node) confine
    themselves to, and whether they may write there. `ro` gives the agent workspace read-only:
    OpenClaw disables write/edit/apply_patch in that mode."""
    if sandbox.workspace_access == "rw":
        return agent_workspace, True
    if sandbox.workspace_access == "ro":
        return agent_workspace, False
    return sandbox_dir(sandbox, agent_id=agent_id, session_key=session_key), True


def container_workdir(workdir: str, requested: str | None) -> str | None:
    """Where in the container a command asked to run in `requested` starts: the sandbox's
    `workdir` when nothing was asked, else a path relative to it, or one already spelled under
    it. None for anything that could leave it (absolute elsewhere, or any `..`)."""
    if not requested:
        return workdir
    path = PurePosixPath(requested)
    if str(path).startswith(workdir.rstrip("/") + "/") or str(path) == workdir:
        return str(path) if ".." not in path.parts else None
    if path.is_absolute() or ".." in path.parts:
        return None
    return str(PurePosixPath(workdir) / path)


def effective_user(sandbox: EffectiveSandbox) -> str:
    """`docker.user`, else the node process's own uid:gid. Root in a container with every
    capability dropped cannot write a directory it does not own (no CAP_DAC_OVERRIDE), so running
    as the owner of the workspace is what makes it writable — and files appear on the host owned by
    the user running clawmesh, not by root."""
    return sandbox.user or f"{os.getuid()}:{os.getgid()}"


def container_hash(sandbox: EffectiveSandbox, *, agent_workspace: Path) -> str:
    """The `clawmesh.config-hash` label: the sandbox's config hash plus what else shapes this
    container (the uid it runs as; the agent workspace when it is mounted)."""
    mounted = str(agent_workspace) if sandbox.workspace_access != "none" else None
    canonical = json.dumps([sandbox.config_hash(), effective_user(sandbox), mounted])
    return hashlib.sha256(canonical.encode()).hexdigest()[:24]
