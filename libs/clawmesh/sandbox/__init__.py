"""Per-agent Docker sandboxes for agents' tools (OpenClaw `agents.*.sandbox` semantics).

from clawmesh.sandbox import SandboxManager, resolve_sandbox
sandbox = resolve_sandbox(config, "work")              # defaults + precedence applied
if sandbox.applies_to(session_key, main_session_key):
    info = await manager.ensure(sandbox, agent_id="work", session_key=session_key,
                                agent_workspace=config.agent_view("work").workspace)
    result = await manager.exec(info, "ls -la", timeout=30, on_output=relay)

A sandbox that is required but cannot be had raises (`SandboxUnavailable`: no Docker engine;
`SandboxError`: refused or broken); nothing ever falls back to running on the host.
"""

from typing import TYPE_CHECKING

from ._binds import Bind, parse_bind, path_refusal, protected_paths, validate_binds
from ._effective import (
    DEFAULT_CONTAINER_PREFIX,
    DEFAULT_IDLE_HOURS,
    DEFAULT_IMAGE,
    DEFAULT_MAX_AGE_DAYS,
    DEFAULT_TMPFS,
    DEFAULT_WORKDIR,
    EffectiveSandbox,
    Mode,
    Scope,
    WorkspaceAccess,
    resolve_sandbox,
)
from ._errors import SandboxError, SandboxUnavailable
from ._layout import (
    AGENT_MOUNT,
    LABEL_AGENT,
    LABEL_HASH,
    LABEL_NODE,
    LABEL_SANDBOX,
    LABEL_SCOPE,
    LABEL_SESSION,
    Mount,
    container_hash,
    container_name,
    container_workdir,
    host_workspace,
    sandbox_dir,
    workspace_mounts,
)
from ._problems import config_checks, effective_problems

if TYPE_CHECKING:
    from ._containers import SandboxInfo
    from ._exec import ExecResult, OnOutput
    from ._manager import SandboxManager

__all__ = [
    "AGENT_MOUNT",
    "DEFAULT_CONTAINER_PREFIX",
    "DEFAULT_IDLE_HOURS",
    "DEFAULT_IMAGE",
    "DEFAULT_MAX_AGE_DAYS",
    "DEFAULT_TMPFS",
    "DEFAULT_WORKDIR",
    "LABEL_AGENT",
    "LABEL_HASH",
    "LABEL_NODE",
    "LABEL_SANDBOX",
    "LABEL_SCOPE",
    "LABEL_SESSION",
    "Bind",
    "EffectiveSandbox",
    "ExecResult",
    "Mode",
    "Mount",
    "OnOutput",
    "SandboxError",
    "SandboxInfo",
    "SandboxManager",
    "SandboxUnavailable",
    "Scope",
    "WorkspaceAccess",
    "config_checks",
    "container_hash",
    "container_name",
    "container_workdir",
    "effective_problems",
    "host_workspace",
    "parse_bind",
    "path_refusal",
    "protected_paths",
    "resolve_sandbox",
    "sandbox_dir",
    "validate_binds",
    "workspace_mounts",
]


# These need the docker SDK (~0.2 s to import): loaded on first use, so that config checks and
# every CLI command that only reads a config do not pay for it.
_LAZY = {
    "ExecResult": "._exec",
    "OnOutput": "._exec",
    "SandboxInfo": "._containers",
    "SandboxManager": "._manager",
}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
