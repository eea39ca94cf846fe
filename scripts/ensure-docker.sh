#!/usr/bin/env bash
# Make sure a Docker engine and a compose are usable on this machine; install/start them if not.
#
# Idempotent and non-interactive, for a fresh Debian 12 machine without systemd (CI) as well as a
# developer box where everything is already there (then it only checks, in well under a second):
#   1. apt-installs what is missing: docker.io (dockerd + CLI), debootstrap and busybox-static
#      (both needed by scripts/images.sh, which builds every image locally: no Docker Hub here);
#   2. starts dockerd in the background when `docker info` fails (log: .ci-logs/dockerd.log),
#      removing a stale pidfile first, and waits until the engine answers (deadline: 60 s,
#      CLAWMESH_DOCKER_TIMEOUT overrides);
#   3. makes sure a compose is available: `docker compose` v2 preferred (on bookworm the CLI
#      plugins come from Debian 13 "trixie" packages, fetched with a private apt state so the
#      system's apt state is untouched, see docs: ci-environment.md §6), else `docker-compose` v1;
#   4. on bookworm, also installs Debian's `docker-compose` v1.29 next to the v2 plugin, so the
#      compose tests (tests/docker/test_compose.py) can check the deployment with both
#      (CLAWMESH_COMPOSE_V1=0 skips this).
# Prints one `==> ...` line per action. CLAWMESH_SKIP_DOCKER=1 skips everything (exit 0).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)

say() { echo "==> $*"; }
die() { echo "error: $*" >&2; exit 1; }

if [ "${CLAWMESH_SKIP_DOCKER:-0}" = 1 ]; then
  say "docker: skipped (CLAWMESH_SKIP_DOCKER=1)"
  exit 0
fi

TIMEOUT=${CLAWMESH_DOCKER_TIMEOUT:-60}
PLUGIN_DIR=${CLAWMESH_DOCKER_PLUGIN_DIR:-/usr/local/lib/docker/cli-plugins}
LOG_DIR="$REPO/.ci-logs"

can_apt=0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then can_apt=1; fi

apt_updated=0
apt_install() {
  if [ "$apt_updated" = 0 ]; then
    apt-get update -qq >/dev/null
    apt_updated=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o Dpkg::Use-Pty=0 "$@" >/dev/null
}

# A static busybox is what the testbox image is made of (a dynamic one would not run FROM scratch).
static_busybox() {
  local bb
  for bb in /bin/busybox /usr/bin/busybox; do
    [ -x "$bb" ] || continue
    # ldd exits non-zero with "not a dynamic executable" for a static binary
    if ! ldd "$bb" >/dev/null 2>&1; then return 0; fi
  done
  return 1
}

# ---------------------------------------------------------------------------------------------
# 1. packages
missing=()
if ! command -v dockerd >/dev/null 2>&1 || ! command -v docker >/dev/null 2>&1; then missing+=(docker.io); fi
command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
static_busybox || missing+=(busybox-static)

if [ ${#missing[@]} -gt 0 ]; then
  if [ "$can_apt" = 1 ]; then
    say "installing ${missing[*]} (apt)"
    apt_install "${missing[@]}"
  else
    die "missing: ${missing[*]}. As root on Debian: apt-get update && apt-get install -y ${missing[*]}" \
        "(then run this script again, or start dockerd yourself)"
  fi
fi

# ---------------------------------------------------------------------------------------------
# 2. engine
if docker info >/dev/null 2>&1; then
  say "docker engine is running ($(docker version -f '{{.Server.Version}}' 2>/dev/null || echo '?'))"
else
  if [ -n "${DOCKER_HOST:-}" ]; then
    die "DOCKER_HOST=$DOCKER_HOST does not answer (docker info failed); not starting a local dockerd"
  fi
  [ "$(id -u)" = 0 ] || die "the docker engine is not running and only root can start it: sudo dockerd &" \
                            "(or run this script as root)"
  pidfile=${CLAWMESH_DOCKERD_PIDFILE:-/var/run/docker.pid}
  dockerd_pid=""
  if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile" 2>/dev/null)" 2>/dev/null; then
    # It is starting (or hanging): waiting for it is right, a second dockerd would fight over
    # /var/lib/docker and docker0.
    dockerd_pid=$(cat "$pidfile")
    say "dockerd (pid $dockerd_pid) is running but not answering yet; waiting up to ${TIMEOUT}s"
  else
    if [ -f "$pidfile" ]; then
      # left behind by an unclean stop: dockerd refuses to start while it exists
      say "removing stale $pidfile"
      rm -f "$pidfile"
    fi
    mkdir -p "$LOG_DIR"
    say "starting dockerd (log: ${LOG_DIR#"$REPO"/}/dockerd.log)"
    # setsid: own session, so it outlives this script and the caller's process group.
    if command -v setsid >/dev/null 2>&1; then
      setsid nohup dockerd >>"$LOG_DIR/dockerd.log" 2>&1 </dev/null &
    else
      nohup dockerd >>"$LOG_DIR/dockerd.log" 2>&1 </dev/null &
    fi
    dockerd_pid=$!
  fi
  start=$SECONDS
  until docker info >/dev/null 2>&1; do
    if ! kill -0 "$dockerd_pid" 2>/dev/null; then
      echo "---- last lines of $LOG_DIR/dockerd.log" >&2
      tail -n 40 "$LOG_DIR/dockerd.log" >&2 2>/dev/null || true
      die "dockerd exited before it became ready (see above)"
    fi
    if [ $((SECONDS - start)) -ge "$TIMEOUT" ]; then
      echo "---- last lines of $LOG_DIR/dockerd.log" >&2
      tail -n 40 "$LOG_DIR/dockerd.log" >&2 2>/dev/null || true
      die "the docker engine did not answer within ${TIMEOUT}s (dockerd pid $dockerd_pid)"
    fi
    sleep 0.25
  done
  say "docker engine ready after $((SECONDS - start))s ($(docker version -f '{{.Server.Version}}' 2>/dev/null || echo '?'))"
fi

# ---------------------------------------------------------------------------------------------
# 3. compose
# Debian 12 ships only compose v1 (python). Debian 13 (trixie) packages the v2 plugin (and
# buildx); both binaries are static Go and run on bookworm. We download the two .debs with a
# private apt configuration (sources = the system's, bookworm renamed to trixie) and extract
# only the plugin binaries. On trixie or later `apt-get install docker-compose` is already v2.
install_compose_v2() (
  # a subshell, so the EXIT trap cleans the temp dir however this ends
  codename=$(. /etc/os-release 2>/dev/null && echo "${VERSION_CODENAME:-}")
  if [ "$codename" != bookworm ]; then
    apt_install docker-compose && docker compose version >/dev/null 2>&1
    exit
  fi
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  mkdir -p "$tmp/parts" "$tmp/lists/partial" "$tmp/archives/partial" "$tmp/x"
  : >"$tmp/sources.list"
  if [ -s /etc/apt/sources.list.d/debian.sources ]; then
    sed -E 's/\bbookworm\b/trixie/g' /etc/apt/sources.list.d/debian.sources >"$tmp/parts/trixie.sources"
  elif [ -s /etc/apt/sources.list ]; then
    grep -E '^[[:space:]]*deb[[:space:]]' /etc/apt/sources.list | sed -E 's/\bbookworm\b/trixie/g' >"$tmp/sources.list"
  else
    echo "no apt sources found" >&2
    exit 1
  fi
  arch=$(dpkg --print-architecture)
  apt=(-o Dir::Etc::sourcelist="$tmp/sources.list" -o Dir::Etc::sourceparts="$tmp/parts"
       -o Dir::State::lists="$tmp/lists" -o Dir::Cache::archives="$tmp/archives"
       -o Dir::State::status=/dev/null -o APT::Architecture="$arch" -o APT::Sandbox::User=root)
  apt-get "${apt[@]}" update -qq >/dev/null || exit 1
  (cd "$tmp" && apt-get "${apt[@]}" download docker-compose docker-buildx >/dev/null) || exit 1
  for d in "$tmp"/*.deb; do dpkg-deb -x "$d" "$tmp/x" || exit 1; done
  install -D -m 0755 "$tmp/x/usr/libexec/docker/cli-plugins/docker-compose" "$PLUGIN_DIR/docker-compose" || exit 1
  install -D -m 0755 "$tmp/x/usr/libexec/docker/cli-plugins/docker-buildx" "$PLUGIN_DIR/docker-buildx" || exit 1
  docker compose version >/dev/null 2>&1
)

if docker compose version >/dev/null 2>&1; then
  say "compose: $(docker compose version 2>/dev/null | head -n1)"
else
  if [ "$can_apt" = 1 ]; then
    say "installing docker compose v2 + buildx CLI plugins (Debian trixie packages) into $PLUGIN_DIR"
    if install_compose_v2; then
      say "compose: $(docker compose version 2>/dev/null | head -n1)"
    else
      echo "warning: could not install docker compose v2; falling back to docker-compose v1" >&2
    fi
  fi
  if ! docker compose version >/dev/null 2>&1; then
    if command -v docker-compose >/dev/null 2>&1; then
      say "compose: $(docker-compose version --short 2>/dev/null || echo v1) (docker-compose v1)"
    elif [ "$can_apt" = 1 ]; then
      say "installing docker-compose v1 (apt)"
      apt_install docker-compose
      say "compose: $(docker-compose version --short 2>/dev/null || echo v1) (docker-compose v1)"
    else
      die "no compose found. As root on Debian: apt-get install -y docker-compose (v1), or install the" \
          "docker compose v2 plugin into $PLUGIN_DIR"
    fi
  fi
fi

# ---------------------------------------------------------------------------------------------
# 4. compose v1 as well (bookworm): docker-compose.yml must work with both implementations, and
# the tests run it with each one that is installed. On trixie and later Debian's docker-compose
# package is v2, so there is no v1 to add.
if [ "${CLAWMESH_COMPOSE_V1:-1}" != 0 ] && ! command -v docker-compose >/dev/null 2>&1 && [ "$can_apt" = 1 ]; then
  codename=$(. /etc/os-release 2>/dev/null && echo "${VERSION_CODENAME:-}")
  if [ "$codename" = bookworm ]; then
    say "installing docker-compose v1 too (apt), for the compose tests"
    if apt_install docker-compose; then
      say "compose v1: $(docker-compose version --short 2>/dev/null || echo '?')"
    else
      echo "warning: could not install docker-compose v1; the compose tests will skip it" >&2
    fi
  fi
fi
