#!/usr/bin/env python3
"""The import rules that keep clawmesh's layering (run by `make lint`; tests/unit/test_import_rules.py).

Layers, bottom up: the library (`clawmesh`, libs/), the services (`clawmesh_<name>`,
services/<name>/), the composition root (`clawmesh_gateway`, gateway/). Packages and their
directories come from pyproject's [tool.setuptools] package-dir.

1. The library imports no service and not the composition root.
2. A service imports the library and itself: no other service, not the composition root.
3. In the composition root, only `clawmesh_gateway.registry` imports the services (one static
   registry; the commands take the classes from it).
4. No module imports a private (`_name`) module or name of another package: `clawmesh.config`
   may use `clawmesh.routing`'s `__all__`, not `clawmesh.routing._resolve`.

Every import counts, also inside functions and under TYPE_CHECKING.
Usage: check_imports.py [REPO_ROOT]   (exit 1 and one line per violation when a rule is broken)
"""

from __future__ import annotations

import ast
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

LIBRARY = "clawmesh"
ROOT_PACKAGE = "clawmesh_gateway"
REGISTRY = "clawmesh_gateway.registry"

# (importing module, what it must not import): violations that exist and are being removed.
# Keep this empty when you can; every entry needs a reason.
KNOWN: dict[tuple[str, str], str] = {}


@dataclass(frozen=True)
class Module:
    name: str  # dotted import name, e.g. clawmesh.config._load
    path: Path
    is_package: bool  # an __init__.py

    @property
    def package(self) -> str:
        return self.name if self.is_package else self.name.rpartition(".")[0]


@dataclass(frozen=True)
class Violation:
    path: Path
    line: int
    importer: str
    imported: str  # the offending part: a package, or a private module or name
    message: str


def _modules(root: Path) -> Iterator[Module]:
    setup = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]
    for top, where in setup["package-dir"].items():
        base = root / where
        for path in sorted(base.rglob("*.py")):
            rel = path.relative_to(base).with_suffix("")
            parts = [top, *rel.parts]
            is_package = parts[-1] == "__init__"
            if is_package:
                parts.pop()
            yield Module(".".join(parts), path, is_package)


def _top(name: str) -> str:
    return name.partition(".")[0]


def _imports(module: Module) -> Iterator[tuple[int, str]]:
    """(line, absolute dotted name) of everything `module` imports; `from m import x` gives
    `m.x` (x may be a module or a name: the rules treat both alike)."""
    tree = ast.parse(module.path.read_text(), str(module.path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.package.split(".")
                base = base[: len(base) - (node.level - 1)]
                source = ".".join([*base, node.module] if node.module else base)
            else:
                source = node.module or ""
            yield node.lineno, source
            for alias in node.names:
                if alias.name != "*":
                    yield node.lineno, f"{source}.{alias.name}"


def _private_part(imported: str, importer_package: str) -> str | None:
    """The first private component of `imported` that lies outside the importer's package."""
    parts = imported.split(".")
    for i, part in enumerate(parts):
        if part.startswith("_") and not part.startswith("__"):
            owner = ".".join(parts[:i])
            # private to `owner`: fine from `owner` itself or from inside it
            if importer_package == owner or importer_package.startswith(owner + "."):
                return None
            return ".".join(parts[: i + 1])
    return None


def check(root: Path) -> list[Violation]:
    """Every violation in the tree, the KNOWN ones included."""
    modules = list(_modules(root))
    firsts = {_top(m.name) for m in modules}
    services = firsts - {LIBRARY, ROOT_PACKAGE}
    found: dict[tuple[Path, int, str], Violation] = {}
    for module in modules:
        layer = _top(module.name)
        for line, imported in _imports(module):
            target = _top(imported)
            if target not in firsts:
                continue
            message, offending = None, target
            if layer == LIBRARY and target != LIBRARY:
                message = f"the library imports {target} (nothing in libs/ imports a service or the gateway)"
            elif layer in services and target not in (LIBRARY, layer):
                message = f"service {layer} imports {target} (services import only the library)"
            elif layer == ROOT_PACKAGE and target in services and module.name != REGISTRY:
                message = f"{module.name} imports service {target} (take it from {REGISTRY})"
            else:
                private = _private_part(imported, module.package)
                if private is not None:
                    message, offending = f"{module.package} imports private {private}", private
            if message is not None:
                found.setdefault(
                    (module.path, line, offending),
                    Violation(module.path, line, module.name, offending, message),
                )
    return list(found.values())


def main(argv: list[str]) -> int:
    repo = Path(__file__).resolve().parents[1]
    root = Path(argv[1]).resolve() if len(argv) > 1 else repo
    found = check(root)
    violations = [v for v in found if (v.importer, v.imported) not in KNOWN]
    for v in violations:
        print(f"{v.path.relative_to(root)}:{v.line}: {v.message}")
    # KNOWN entries that no longer match an import are deleted, so the rule holds again. KNOWN
    # describes this repository, not another tree given on the command line.
    seen = {(v.importer, v.imported) for v in found}
    stale = [key for key in KNOWN if key not in seen] if root == repo else []
    for importer, imported in stale:
        print(f"scripts/check_imports.py: KNOWN lists {importer} -> {imported}, which is gone: delete it")
    if violations:
        print(f"{len(violations)} import rule violation(s); see scripts/check_imports.py", file=sys.stderr)
    return 1 if violations or stale else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
