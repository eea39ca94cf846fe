"""Where clawmesh keeps things, resolved exactly like OpenClaw resolves its own paths.

OpenClaw: state dir `OPENCLAW_STATE_DIR` or `~/.openclaw`; the default agent's workspace is
`~/.openclaw/workspace` (`workspace-<profile>` with `OPENCLAW_PROFILE`), other agents get
`<stateDir>/workspace-<id>`; agentDir `<stateDir>/agents/<id>/agent`. clawmesh uses the same
rules with its own names (`CLAWMESH_*`, `~/.clawmesh`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

__all__ = [
    "CONFIG_FILENAME",
    "config_path",
    "default_workspace",
    "home_dir",
    "resolve_user_path",
    "state_dir",
]

CONFIG_FILENAME = "clawmesh.json"


def home_dir(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    home = env.get("CLAWMESH_HOME") or env.get("HOME") or os.path.expanduser("~")
    return Path(home)


def resolve_user_path(raw: str, env: Mapping[str, str] | None = None) -> Path:
    """Expand a leading `~`, drop NUL bytes (as OpenClaw does) and make the path absolute."""
    text = raw.replace("\x00", "").strip()
    if text == "~" or text.startswith("~/"):
        text = str(home_dir(env)) + text[1:]
    return Path(os.path.abspath(text))


def state_dir(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    explicit = env.get("CLAWMESH_STATE_DIR", "").strip()
    if explicit:
        return resolve_user_path(explicit, env)
    return home_dir(env) / ".clawmesh"


def config_path(explicit: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None) -> Path:
    """`--config PATH` > `CLAWMESH_CONFIG_PATH` > `<stateDir>/clawmesh.json`."""
    env = os.environ if env is None else env
    if explicit:
        return resolve_user_path(os.fspath(explicit), env)
    from_env = env.get("CLAWMESH_CONFIG_PATH", "").strip()
    if from_env:
        return resolve_user_path(from_env, env)
    return state_dir(env) / CONFIG_FILENAME


def default_workspace(env: Mapping[str, str] | None = None) -> Path:
    """The default agent's workspace when nothing is configured (home-based, like OpenClaw)."""
    env = os.environ if env is None else env
    profile = env.get("CLAWMESH_PROFILE", "").strip()
    name = f"workspace-{profile}" if profile and profile.lower() != "default" else "workspace"
    return home_dir(env) / ".clawmesh" / name
