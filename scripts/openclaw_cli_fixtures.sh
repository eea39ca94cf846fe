#!/usr/bin/env bash
# Regenerate tests/fixtures/openclaw_cli/: what the real OpenClaw CLI prints for `agents list
# --json [--bindings]` and `agents bindings --json` on config.json there. Tests compare clawmesh's
# output with these files and need neither node nor openclaw. Needs the oracle install:
# OPENCLAW_ORACLE=~/.cache/openclaw-oracle (node_modules/.bin/openclaw and node_modules/node).
set -euo pipefail
cd "$(dirname "$0")/.."
oracle=${OPENCLAW_ORACLE:-$HOME/.cache/openclaw-oracle}
out=tests/fixtures/openclaw_cli
home=$(mktemp -d)
trap 'rm -rf "$home"' EXIT
mkdir -p "$home/.openclaw"
cp "$out/config.json" "$home/.openclaw/openclaw.json"
run() {
  # the state dir's absolute path becomes <STATE> so the files do not depend on this machine
  env PATH="$oracle/node_modules/node/bin:$PATH" HOME="$home" OPENCLAW_STATE_DIR="$home/.openclaw" \
    "$oracle/node_modules/.bin/openclaw" "$@" 2>/dev/null | sed -e "s#$home/.openclaw#<STATE>#g"
}
run agents list --json > "$out/agents_list.json"
run agents list --json --bindings > "$out/agents_list_bindings.json"
run agents bindings --json > "$out/agents_bindings.json"
echo "wrote $out/agents_list.json, agents_list_bindings.json, agents_bindings.json"
