"""Which agents can run host commands that nobody approved: what `clawmesh up` and `clawmesh
status` warn about. An agent is exposed when it is offered `exec`, some of its sessions run
outside a sandbox, its exec host is not `sandbox`, and its effective policy (config, tightened
by this machine's approvals document) is `security` full with `ask` off."""

from __future__ import annotations

import pwd
from dataclasses import dataclass

from ..config import Config
from ..sandbox import resolve_sandbox
from ..tools import effective_tools
from ..tools.specs import IMPLEMENTED_TOOLS
from ._approvals_file import ApprovalsFile, ApprovalsFileError

__all__ = ["HostExecExposure", "exposure_line", "unapproved_host_exec"]


@dataclass(frozen=True)
class HostExecExposure:
    agent_id: str
    runs_as: str  # the user its host commands run as on a node like this one

    def describe(self) -> str:
        return f"{self.agent_id} (as {self.runs_as})"


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def unapproved_host_exec(
    config: Config, approvals: ApprovalsFile | None, *, euid: int
) -> list[HostExecExposure]:
    """The agents whose every command runs on the host unapproved, on a node run by `euid`."""
    exposed = []
    for agent in config.agents:
        settings = agent.exec
        if not settings.unapproved_host_exec:
            continue
        if resolve_sandbox(config, agent.id).mode == "all":
            continue  # every session is sandboxed: never on the host
        if not effective_tools(
            config, agent.id, sandboxed=False, subagent=False, tools=IMPLEMENTED_TOOLS
        ).allows("exec"):
            continue
        if approvals is not None:
            try:
                host = approvals.policy(agent.id)
            except ApprovalsFileError:
                continue  # an unreadable document blocks host exec altogether
            if host.security not in (None, "full") or host.ask not in (None, "off"):
                continue
        runs_as = settings.run_as if euid == 0 and not settings.allow_root else _user_name(euid)
        exposed.append(HostExecExposure(agent.id, runs_as))
    return exposed


def exposure_line(config: Config, approvals: ApprovalsFile | None, *, euid: int) -> str:
    """One line for people: who can run host commands unapproved, or that nobody can."""
    exposed = unapproved_host_exec(config, approvals, euid=euid)
    if not exposed:
        return "no agent runs host commands without approval (tools.exec.mode)"
    return (
        "UNAPPROVED host commands: "
        + ", ".join(e.describe() for e in exposed)
        + " (tools.exec.mode full; set allowlist/ask/deny to gate them)"
    )
