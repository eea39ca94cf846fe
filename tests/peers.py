"""Where the real peer programs are (installed by scripts/peers.sh, which `make test` runs):
the OpenCode server and the Claude Code CLI, pinned. Tests that need one skip, saying why,
when it is not there."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

__all__ = ["PEERS_DIR", "claude_binary", "opencode_binary"]

PEERS_DIR = Path(os.environ.get("CLAWMESH_PEERS_DIR") or Path.home() / ".cache" / "clawmesh-peers")


def _binary(path: Path, what: str) -> Path:
    if not (path.is_file() and os.access(path, os.X_OK)):
        pytest.skip(
            f"{what} is not installed at {path} (scripts/peers.sh installs it from npm; `make test` runs it)"
        )
    return path


def opencode_binary() -> Path:
    return _binary(
        PEERS_DIR / "opencode/node_modules/opencode-linux-x64/bin/opencode", "OpenCode (npm opencode-ai)"
    )


def claude_binary() -> Path:
    return _binary(
        PEERS_DIR / "claude/node_modules/@anthropic-ai/claude-code-linux-x64/claude",
        "Claude Code (npm @anthropic-ai/claude-code)",
    )
