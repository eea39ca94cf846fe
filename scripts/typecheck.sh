#!/usr/bin/env bash
# `make lint`'s type check: mypy --strict on every package under its import name.
# The services and the gateway live in directories not named like their packages
# (services/ingress is clawmesh_ingress, gateway/ is clawmesh_gateway) and mypy cannot follow the
# editable install's import hook, so it sees them through symlinks named like the packages,
# rebuilt here from pyproject's package-dir: build/import-roots/clawmesh_ingress -> services/ingress.
set -euo pipefail
cd "$(dirname "$0")/.."
roots=build/import-roots
rm -rf "$roots"
mkdir -p "$roots"
packages=()
while read -r name dir; do
  packages+=(-p "$name")
  # libs/clawmesh is already found through mypy_path (pyproject)
  [ "$(basename "$dir")" = "$name" ] || ln -s "$PWD/$dir" "$roots/$name"
done < <(.venv/bin/python -c '
import tomllib
for name, where in tomllib.load(open("pyproject.toml", "rb"))["tool"]["setuptools"]["package-dir"].items():
    print(name, where)
')
MYPYPATH=$roots exec .venv/bin/mypy "${packages[@]}"
