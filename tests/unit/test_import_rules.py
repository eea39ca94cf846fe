"""scripts/check_imports.py: the layering rules hold for the repository, and each rule catches
what it is meant to catch (on small synthetic trees)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "check_imports.py"

PYPROJECT = """
[tool.setuptools]
package-dir = { "clawmesh" = "libs/clawmesh", "clawmesh_a" = "services/a", "clawmesh_b" = "services/b", "clawmesh_gateway" = "gateway" }
"""


def check(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), str(root)], capture_output=True, text=True, timeout=60
    )


def tree(tmp_path: Path, files: dict[str, str]) -> Path:
    (tmp_path / "pyproject.toml").write_text(PYPROJECT)
    base = {
        "libs/clawmesh/__init__.py": "",
        "libs/clawmesh/config/__init__.py": "from ._load import load\n",
        "libs/clawmesh/config/_load.py": "def load(): ...\n",
        "libs/clawmesh/routing/__init__.py": "",
        "libs/clawmesh/routing/_resolve.py": "",
        "services/a/__init__.py": "from .app import A\n",
        "services/a/app.py": "from clawmesh.config import load\nclass A: ...\n",
        "services/b/__init__.py": "",
        "gateway/__init__.py": "",
        "gateway/registry.py": "from clawmesh_a import A\nfrom clawmesh_b import B\n",
    }
    for rel, text in {**base, **files}.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


def test_the_repository_keeps_its_layering() -> None:
    res = check(ROOT)
    assert res.returncode == 0, res.stdout + res.stderr


def test_a_clean_tree_passes(tmp_path: Path) -> None:
    res = check(tree(tmp_path, {}))
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.mark.parametrize(
    ("path", "source", "expected"),
    [
        (
            "libs/clawmesh/gateway.py",
            "def f():\n    import clawmesh_a.app\n",  # lazily, inside a function: still an import
            "libs/clawmesh/gateway.py:2: the library imports clawmesh_a",
        ),
        (
            "libs/clawmesh/cli.py",
            "from clawmesh_gateway import registry\n",
            "libs/clawmesh/cli.py:1: the library imports clawmesh_gateway",
        ),
        ("services/b/app.py", "from clawmesh_a.app import A\n", "service clawmesh_b imports clawmesh_a"),
        ("services/b/app.py", "import clawmesh_gateway\n", "service clawmesh_b imports clawmesh_gateway"),
        (
            "gateway/cli.py",
            "from clawmesh_a import A\n",
            "clawmesh_gateway.cli imports service clawmesh_a (take it from clawmesh_gateway.registry)",
        ),
        (
            "libs/clawmesh/config/_check.py",
            "from ..routing._resolve import x\n",
            "clawmesh.config imports private clawmesh.routing._resolve",
        ),
        (
            "services/a/api.py",
            "from clawmesh.config import _secret\n",
            "clawmesh_a imports private clawmesh.config._secret",
        ),
    ],
)
def test_each_rule_catches_its_violation(tmp_path: Path, path: str, source: str, expected: str) -> None:
    res = check(tree(tmp_path, {path: source}))
    assert res.returncode == 1
    assert expected in res.stdout


def test_private_modules_are_fine_inside_their_own_package(tmp_path: Path) -> None:
    files = {
        "libs/clawmesh/config/_check.py": "from ._load import load\nfrom clawmesh.config._load import load\n",
        "services/a/api.py": "from ._helpers import h\n",
        "services/a/_helpers.py": "def h(): ...\n",
    }
    res = check(tree(tmp_path, files))
    assert res.returncode == 0, res.stdout + res.stderr
