"""What `clawmesh import openclaw` copies: the config, workspaces and agent dirs, as a plan.

The config is copied byte for byte (clawmesh reads openclaw.json as it is), so each agent's
clawmesh paths are the config's, resolved by clawmesh; OpenClaw's paths are resolved by
OpenClaw's rules against the source state dir (docs/concepts/agent-workspace.md of OpenClaw):
an explicit `workspace`/`agentDir` is the same directory for both; the default agent's
workspace is `agents.defaults.workspace`, else `OPENCLAW_WORKSPACE_DIR`, else
`<state>/workspace`; another agent's is `<agents.defaults.workspace>/<id>`, else
`<state>/workspace-<id>`; an agent dir is `<state>/agents/<id>/agent`.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal

from ..config import AgentView, Config, resolve_user_path
from ._source import AGENT_STORE, Problem, SourceSession, read_sessions

__all__ = ["AgentPlan", "FileCopy", "ImportPlan", "plan_files"]

State = Literal["new", "same", "differs"]

# An agent dir's files that are not clawmesh's to read: OpenClaw's databases (their sessions
# go to JetStream), their journals and locks.
_NOT_COPIED: Final = (AGENT_STORE, ".sqlite", ".sqlite-wal", ".sqlite-shm", ".sqlite-journal", ".lock")


@dataclass(frozen=True, slots=True)
class FileCopy:
    src: Path
    dst: Path
    state: State
    secret: bool  # written 0600: agent dirs hold credentials


@dataclass(slots=True)
class AgentPlan:
    agent_id: str
    # (OpenClaw's directory, clawmesh's): the same path when the config names it
    workspace: tuple[Path, Path]
    agent_dir: tuple[Path, Path]
    files: list[FileCopy] = field(default_factory=list)
    sessions: list[SourceSession] = field(default_factory=list)


@dataclass(slots=True)
class ImportPlan:
    source: Path
    config_src: Path
    config_dst: Path
    config_state: State
    agents: list[AgentPlan] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    def files(self) -> list[FileCopy]:
        return [f for a in self.agents for f in a.files]


def _state(src: Path, dst: Path) -> State:
    try:
        if dst.stat().st_size == src.stat().st_size and dst.read_bytes() == src.read_bytes():
            return "same"
    except FileNotFoundError:
        return "new"
    return "differs"


def _tree(src: Path, dst: Path, *, secret: bool, skip: tuple[str, ...] = ()) -> list[FileCopy]:
    """Every regular file under `src` (symlinks are not followed) and where it goes."""
    if not src.is_dir() or src.resolve() == dst.resolve():
        return []
    out = []
    for root, dirs, files in os.walk(src):
        dirs.sort()
        for name in sorted(files):
            path = Path(root) / name
            if name.endswith(skip) or not stat.S_ISREG(path.lstat().st_mode):
                continue
            target = dst / path.relative_to(src)
            out.append(FileCopy(path, target, _state(path, target), secret))
    return out


def _openclaw_workspace(view: AgentView, config: Config, state: Path, env: Mapping[str, str]) -> Path:
    entry = view.entry
    agents = config.document.agents
    defaults = agents.defaults if agents else None
    root = defaults.workspace.strip() if defaults and defaults.workspace else ""
    if entry.workspace and entry.workspace.strip():
        return resolve_user_path(entry.workspace, env)
    if view.is_default:
        if root:
            return resolve_user_path(root, env)
        explicit = env.get("OPENCLAW_WORKSPACE_DIR", "").strip()
        return resolve_user_path(explicit, env) if explicit else state / "workspace"
    return resolve_user_path(root, env) / view.id if root else state / f"workspace-{view.id}"


def _openclaw_agent_dir(view: AgentView, state: Path, env: Mapping[str, str]) -> Path:
    if view.entry.agent_dir and view.entry.agent_dir.strip():
        return resolve_user_path(view.entry.agent_dir, env)
    return state / "agents" / view.id / "agent"


def plan_files(
    source: Path, config_src: Path, config_dst: Path, config: Config, env: Mapping[str, str]
) -> ImportPlan:
    """Everything to import, with each file's state at the destination; sessions read."""
    config_state: State = (
        "same" if config_src.resolve() == config_dst.resolve() else _state(config_src, config_dst)
    )
    plan = ImportPlan(source, config_src, config_dst, config_state)
    views = list(config.agents)
    known = {v.id for v in views}
    listed = sorted(p.name for p in (source / "agents").glob("*") if p.is_dir() and p.name not in known)
    for agent_id in listed:
        view = config.agent_view(agent_id)
        if view is None:
            plan.problems.append(
                Problem(
                    str(source / "agents" / agent_id),
                    f"agent '{agent_id}' is not in the config; not imported",
                )
            )
            continue
        views.append(view)
    for view in views:
        oc_workspace = _openclaw_workspace(view, config, source, env)
        oc_agent_dir = _openclaw_agent_dir(view, source, env)
        agent = AgentPlan(view.id, (oc_workspace, view.workspace), (oc_agent_dir, view.agent_dir))
        agent.files += _tree(oc_workspace, view.workspace, secret=False)
        agent.files += _tree(oc_agent_dir, view.agent_dir, secret=True, skip=_NOT_COPIED)
        agent.sessions = read_sessions(
            source, view.id, oc_agent_dir, is_default=view.is_default, problems=plan.problems
        )
        plan.agents.append(agent)
    return plan
