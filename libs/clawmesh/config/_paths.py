"""Where clawmesh keeps things, resolved exactly like OpenClaw resolves its own paths.

OpenClaw: state dir `OPENCLAW_STATE_DIR` or `~/.openclaw`; the default agent's workspace is
`~/.openclaw/workspace` (`workspace-<profile>` with `OPENCLAW_PROFILE`), other agents get
`<stateDir>/workspace-<id>`; agentDir `<stateDir>/agents/<id>/agent`. clawmesh uses the same
rules with its own names (`CLAWMESH_*`, `~/.clawmesh`). When the clawmesh variables are unset,
OpenClaw's own (`OPENCLAW_STATE_DIR`, `OPENCLAW_CONFIG_PATH`) are honoured, so an OpenClaw
user's environment points clawmesh at the same files: a state dir named by
`OPENCLAW_STATE_DIR` keeps OpenClaw's layout (`openclaw.json`, `<stateDir>/workspace`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

__all__ = [
    "CONFIG_FILENAME",
    "OPENCLAW_CONFIG_FILENAME",
    "config_env",
    "config_path",
    "default_workspace",
    "home_dir",
    "resolve_user_path",
    "state_dir",
]

CONFIG_FILENAME = "clawmesh.json"
OPENCLAW_CONFIG_FILENAME = "openclaw.json"


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


def _openclaw_state(env: Mapping[str, str]) -> str:
    """`OPENCLAW_STATE_DIR` when it decides the state dir (no `CLAWMESH_STATE_DIR`), else ''."""
    if env.get("CLAWMESH_STATE_DIR", "").strip():
        return ""
    return env.get("OPENCLAW_STATE_DIR", "").strip()


def state_dir(env: Mapping[str, str] | None = None) -> Path:
    """`CLAWMESH_STATE_DIR` > `OPENCLAW_STATE_DIR` > `~/.clawmesh`."""
    env = os.environ if env is None else env
    explicit = env.get("CLAWMESH_STATE_DIR", "").strip() or _openclaw_state(env)
    if explicit:
        return resolve_user_path(explicit, env)
    return home_dir(env) / ".clawmesh"


def config_env(env: Mapping[str, str]) -> str:
    """The config path the environment names: `CLAWMESH_CONFIG_PATH`, else
    `OPENCLAW_CONFIG_PATH` (with neither clawmesh variable set), else ''."""
    from_env = env.get("CLAWMESH_CONFIG_PATH", "").strip()
    if from_env:
        return from_env
    if env.get("CLAWMESH_STATE_DIR", "").strip():
        return ""
    return env.get("OPENCLAW_CONFIG_PATH", "").strip()


def config_path(explicit: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None) -> Path:
    """`--config PATH` > `CLAWMESH_CONFIG_PATH` > `OPENCLAW_CONFIG_PATH` > `<stateDir>/clawmesh.json`
    (`<stateDir>/openclaw.json` when the state dir is `OPENCLAW_STATE_DIR`)."""
    env = os.environ if env is None else env
    if explicit:
        return resolve_user_path(os.fspath(explicit), env)
    from_env = config_env(env)
    if from_env:
        return resolve_user_path(from_env, env)
    name = OPENCLAW_CONFIG_FILENAME if _openclaw_state(env) else CONFIG_FILENAME
    return state_dir(env) / name


def default_workspace(env: Mapping[str, str] | None = None) -> Path:
    """The default agent's workspace when nothing is configured (home-based, like OpenClaw;
    `<stateDir>/workspace` in a state dir named by `OPENCLAW_STATE_DIR`, as OpenClaw does)."""
    env = os.environ if env is None else env
    if _openclaw_state(env):
        return state_dir(env) / "workspace"
    profile = env.get("CLAWMESH_PROFILE", "").strip()
    name = f"workspace-{profile}" if profile and profile.lower() != "default" else "workspace"
    return home_dir(env) / ".clawmesh" / name
