#!/usr/bin/env bash
# Test dependencies outside PyPI: the real OpenCode server and Claude Code CLI (npm packages
# with native binaries), pinned, installed once under ~/.cache/clawmesh-peers (override with
# CLAWMESH_PEERS_DIR). tests/peers.py finds them there; without them those tests skip saying why.
# npm comes from apt when missing (as root). Prints the reason and exits 0 when npm cannot be
# had or the registry is unreachable: the rest of the suite does not depend on them.
set -uo pipefail
DIR=${CLAWMESH_PEERS_DIR:-$HOME/.cache/clawmesh-peers}
OC_VER=1.18.33
CC_VER=2.1.329
OPENCODE=$DIR/opencode/node_modules/opencode-linux-x64/bin/opencode
CLAUDE=$DIR/claude/node_modules/@anthropic-ai/claude-code-linux-x64/claude

if ! command -v npm > /dev/null && [ "$(id -u)" = 0 ] && command -v apt-get > /dev/null; then
  # npm only fetches the packages: the programs are native binaries, any Node will do
  echo "==> installing npm (apt) for the real OpenCode / Claude Code tests"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq npm) > /dev/null 2>&1 ||
    echo "==> apt-get install npm failed"
fi
if ! command -v npm > /dev/null; then
  echo "==> npm not found and not installable here: the real OpenCode / Claude Code tests will be skipped"
  exit 0
fi
install() { # dir package@version binary
  [ -x "$3" ] && return 0
  mkdir -p "$1"
  echo "==> installing $2 into $1 (npm, once)"
  # the platform binary is used directly, so the postinstall link step is not needed
  (cd "$1" && npm install --no-fund --no-audit --no-save --ignore-scripts "$2" > npm.log 2>&1) ||
    echo "==> could not install $2 (see $1/npm.log): its tests will be skipped"
}
install "$DIR/opencode" "opencode-ai@$OC_VER" "$OPENCODE"
install "$DIR/claude" "@anthropic-ai/claude-code@$CC_VER" "$CLAUDE"
exit 0
