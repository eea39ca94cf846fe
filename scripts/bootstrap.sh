#!/usr/bin/env bash
# Create .venv and install the project (editable) with its test extras. Idempotent: `make` only
# calls this when pyproject.toml changed or the venv is missing. On a fresh Debian machine it
# first installs Python's venv support from apt (needs root; prints what to run otherwise).
set -euo pipefail
cd "$(dirname "$0")/.."

py=""
for cand in python3.11 python3; do
  if command -v "$cand" >/dev/null 2>&1 && "$cand" -c 'import sys; sys.exit(sys.version_info[:2] < (3, 11))' 2>/dev/null; then
    py=$(command -v "$cand"); break
  fi
done

need_apt=()
[ -n "$py" ] || need_apt+=(python3)
if [ -n "$py" ] && ! "$py" -c 'import venv, ensurepip' >/dev/null 2>&1; then need_apt+=(python3-venv); fi
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "==> installing ${need_apt[*]} (apt)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" python3-venv >/dev/null
    py=$(command -v python3.11 || command -v python3)
  else
    echo "error: need Python >= 3.11 with venv support; install: apt-get install python3 python3-venv" >&2
    exit 1
  fi
fi

if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv with $("$py" --version)"
  "$py" -m venv .venv
fi
# pip's full output goes to a log; the terminal gets one line per package so a first install
# (a minute or more) shows progress. setuptools' "Editable installation" build warning is noise
# for this checkout layout (the packages live under libs/, services/, gateway/), so it is muted.
log=.venv/pip-install.log
: > "$log"
pip_install() {
  PYTHONWARNINGS="ignore:Editable installation" .venv/bin/python -m pip install \
    --disable-pip-version-check --progress-bar off "$@" 2>&1 | tee -a "$log" \
    | grep --line-buffered -E '^(Collecting|Installing collected|Successfully installed|ERROR)' \
    | sed -u -e 's/^/    /' || true
}
echo "==> upgrading pip in .venv"
pip_install --upgrade pip
echo "==> installing clawmesh and its test extras into .venv (one line per package)"
pip_install -e '.[test]'
.venv/bin/python -c 'import clawmesh, nats, msgspec' || {
  echo "error: installation failed; pip's output is in $log:" >&2
  tail -n 30 "$log" >&2
  exit 1
}
echo "==> .venv ready: run .venv/bin/clawmesh, or put it on PATH with: export PATH=\"$PWD/.venv/bin:\$PATH\""
