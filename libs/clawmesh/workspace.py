"""Agent workspaces: the bootstrap files OpenClaw uses, and the system prompt built from them."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Final

__all__ = ["BOOTSTRAP_FILES", "build_system_prompt", "ensure_agent_dirs"]

# Read in this order to build the system prompt, as OpenClaw injects its workspace files.
BOOTSTRAP_FILES: Final = ("AGENTS.md", "SOUL.md", "USER.md", "IDENTITY.md", "TOOLS.md")
_MAX_FILE_CHARS: Final = 20_000
# path → (mtime_ns, size, stripped text): the prompt is built for every turn, the files rarely
# change, and an edit shows up at the next turn because the stat no longer matches.
_FILES: dict[Path, tuple[int, int, str]] = {}

_TEMPLATES: Final = {
    "AGENTS.md": (
        "# {name}\n\n"
        "Operating instructions for agent `{id}`. This file is part of the agent's system prompt;\n"
        "describe what the agent is for, how it should work and what it must not do.\n"
    ),
    "SOUL.md": "# Soul\n\nPersona and tone for `{id}`: who it is and how it speaks.\n",
    "USER.md": "# User\n\nWho the agent serves: names, preferences, time zone, anything it should remember.\n",
}


def ensure_agent_dirs(workspace: Path, agent_dir: Path, agent_id: str, name: str | None = None) -> list[Path]:
    """Create the workspace (with template bootstrap files, never overwriting) and the agentDir."""
    created: list[Path] = []
    for d in (workspace, agent_dir):
        if not d.exists():
            d.mkdir(parents=True)
            created.append(d)
    for filename, template in _TEMPLATES.items():
        path = workspace / filename
        if not path.exists():
            path.write_text(template.format(id=agent_id, name=name or agent_id), encoding="utf-8")
            created.append(path)
    return created


def build_system_prompt(
    workspace: Path,
    *,
    identity_name: str | None = None,
    identity_emoji: str | None = None,
    override: str | None = None,
) -> str:
    """The agent's system prompt: `systemPromptOverride`, else identity + the workspace files."""
    if override:
        return override
    parts: list[str] = []
    if identity_name:
        parts.append(f"You are {identity_name}{' ' + identity_emoji if identity_emoji else ''}.")
    for filename in BOOTSTRAP_FILES:
        text = _read_text(workspace / filename)
        if text:
            parts.append(f"## {filename}\n\n{text[:_MAX_FILE_CHARS]}")
    return "\n\n".join(parts)


def _read_text(path: Path) -> str | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    if not stat.S_ISREG(st.st_mode):
        return None
    hit = _FILES.get(path)
    if hit is not None and hit[0] == st.st_mtime_ns and hit[1] == st.st_size:
        return hit[2]
    try:
        text = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None
    if len(_FILES) > 4096:
        _FILES.clear()
    _FILES[path] = (st.st_mtime_ns, st.st_size, text)
    return text
