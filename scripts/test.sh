#!/usr/bin/env bash
# `make test`: make sure Docker and the test images exist (when this machine can have them), then
# run the whole suite. Docker tests skip with a printed reason when no engine is reachable,
# except under CI=true, where a missing engine fails them (tests/conftest.py).
set -uo pipefail
cd "$(dirname "$0")/.."

export TESTCONTAINERS_RYUK_DISABLED=true
export TESTCONTAINERS_HOST_OVERRIDE=127.0.0.1
export TESTCONTAINERS_CONNECTION_MODE=docker_host

ci=$([ "${CI:-}" = "true" ] && echo 1 || echo 0)

if [ "${CLAWMESH_SKIP_DOCKER:-0}" = 1 ]; then
  echo "==> CLAWMESH_SKIP_DOCKER=1: docker tests will be skipped"
elif scripts/ensure-docker.sh; then
  # Cached by content hash: seconds when nothing changed, ~1.5 min from scratch.
  if ! scripts/images.sh all; then
    echo "error: building the images failed (see .ci-logs/images/)" >&2
    [ "$ci" = 1 ] && exit 1
  fi
else
  if [ "$ci" = 1 ]; then
    echo "error: CI=true but no Docker engine could be installed or started" >&2
    exit 1
  fi
  echo "==> no Docker engine here: docker tests will be skipped (with a reason)"
fi

# The real OpenCode server and Claude Code CLI for the proxy-runner tests (npm, cached).
scripts/peers.sh

.venv/bin/python -m pytest --durations=15 "$@"
rc=$?
if [ "$rc" = 5 ]; then
  echo "error: pytest collected no tests (exit 5); that is a failure, not a pass" >&2
  exit 1
fi
exit "$rc"
