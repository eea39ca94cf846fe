"""Running the real OpenClaw (the oracle) from the scripts that generate fixtures from it.

OpenClaw 2026.9.6 and its Node 24 runtime are npm packages installed outside the repository
(docs/openclaw-oracle.md); `OPENCLAW_ORACLE_DIR` names the install directory. Every run gets a
throw-away HOME and state dir so the oracle never reads or writes the user's own OpenClaw state.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

__all__ = [
    "ORACLE_VERSION",
    "OracleMismatch",
    "oracle_dir",
    "oracle_env",
    "run_cases",
    "run_node",
    "run_openclaw",
]

ORACLE_VERSION = "2026.9.6"


def oracle_dir() -> Path:
    root = Path(os.environ.get("OPENCLAW_ORACLE_DIR", Path.home() / ".cache" / "openclaw-oracle"))
    if not (root / "node_modules" / ".bin" / "openclaw").exists():
        print(
            f"OpenClaw is not installed at {root}: install it as docs/openclaw-oracle.md says, "
            "or set OPENCLAW_ORACLE_DIR to its npm directory.",
            file=sys.stderr,
        )
        sys.exit(2)
    return root


def oracle_env(home: Path, **extra: str) -> dict[str, str]:
    """A minimal environment: only what Node needs, so no variable of the caller leaks into a
    config's `${VAR}` substitution."""
    node_bin = oracle_dir() / "node_modules" / "node" / "bin"
    return {
        "PATH": f"{node_bin}{os.pathsep}/usr/bin:/bin",
        "HOME": str(home),
        "OPENCLAW_STATE_DIR": str(home / ".openclaw"),
        "NO_COLOR": "1",
        **extra,
    }


def run_openclaw(*args: str, home: Path | None = None, env: dict[str, str] | None = None) -> str:
    """stdout of `openclaw ARGS` (raises on a non-zero exit)."""
    with tempfile.TemporaryDirectory(prefix="openclaw-oracle-") as tmp:
        where = home or Path(tmp)
        result = subprocess.run(
            [str(oracle_dir() / "node_modules" / ".bin" / "openclaw"), *args],
            env={**oracle_env(where), **(env or {})},
            capture_output=True,
            text=True,
            check=True,
        )
    return result.stdout


def run_node(script: str, *args: str, home: Path) -> None:
    """Run an ES module `script` with the oracle's Node; `OC_DIST` names OpenClaw's dist folder."""
    dist = oracle_dir() / "node_modules" / "openclaw" / "dist"
    with tempfile.NamedTemporaryFile("w", suffix=".mjs", dir=home, delete=False) as fh:
        fh.write(script)
    subprocess.run(
        [str(oracle_dir() / "node_modules" / "node" / "bin" / "node"), fh.name, *args],
        env=oracle_env(home, OC_DIST=str(dist)),
        check=True,
    )


class OracleMismatch(Exception):
    """The installed OpenClaw is not the version the fixtures are recorded from."""


def run_cases(script: Path, cases: object) -> dict[str, Any]:
    """Run the oracle's Node on the ES module `script`, which reads the JSON file named by its
    first argument (`cases`) and prints one JSON object with OpenClaw's `version`; that object.
    Raises OracleMismatch for another OpenClaw version."""
    oracle = oracle_dir()
    node = oracle / "node_modules" / "node" / "bin" / "node"
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
        json.dump(cases, fh)
    try:
        done = subprocess.run(
            [str(node), str(script), fh.name],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "OPENCLAW_ORACLE_DIR": str(oracle)},
        )
    finally:
        os.unlink(fh.name)
    answer: dict[str, Any] = json.loads(done.stdout)
    if answer.get("version") != ORACLE_VERSION:
        raise OracleMismatch(f"OpenClaw {answer.get('version')} is not {ORACLE_VERSION}")
    return answer
