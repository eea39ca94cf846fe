#!/usr/bin/env bash
# docker compose for clawmesh's scale-out deployment (docker-compose.yml), with its variants.
#
#   scripts/compose.sh up -d                                 # nats + ingress, router, runner, node-agent
#   scripts/compose.sh up -d --scale runner=3 --scale router=2
#   scripts/compose.sh --profile cluster up -d               # 3 NATS servers, 3 replicas per stream
#   scripts/compose.sh --profile sandbox up -d               # + node-agent with the Docker socket
#   scripts/compose.sh --profile cluster down -v             # same variant flags for every command
#   scripts/compose.sh ps | logs -f runner | exec ... | down -v ...
#   scripts/compose.sh cli status | send "hi" | sessions list # the host's clawmesh, as admin
#   scripts/compose.sh token                                 # print the HTTP API token
#
# Credentials (always): NATS users with per-service permissions (auth.conf for nats-server,
# credentials.env for the services, `clawmesh deploy nats-config`) and a random HTTP API token
# are generated on first use into $CLAWMESH_SECRETS_DIR (default deploy/compose/secrets,
# git-ignored, files 0600), and every compose command gets --env-file <secrets>/credentials.env.
# A CLAWMESH_GATEWAY_TOKEN in the environment wins over the generated token.
#
# Everything is passed through to compose, except these pseudo-profiles, which select files:
#   cluster  adds -f deploy/compose/cluster.yml
#   sandbox  a real compose profile; also creates $CLAWMESH_SANDBOX_DIR (default
#            /var/lib/clawmesh-sandbox, owned by uid 10001) and sets CLAWMESH_DOCKER_GID to the
#            group of /var/run/docker.sock
#   secure   accepted for compatibility: per-service users are now the default
# They can also come from COMPOSE_PROFILES (comma separated).
# Two pseudo-commands do not go to compose: `cli ARGS` runs the host's clawmesh against the
# published ports (CLAWMESH_NATS_PORT, CLAWMESH_HTTP_PORT) with the admin NATS user and the API
# token; `token` prints the API token.
#
# Compose implementation: `docker compose` (v2) when available, else `docker-compose` (v1.29);
# CLAWMESH_COMPOSE="docker-compose" (or "docker compose") forces one.
# Before up/create/run/start/restart the images are built if needed (`scripts/images.sh nats
# services`, plus `sandbox` with the sandbox profile; a no-op when they are up to date);
# CLAWMESH_COMPOSE_SKIP_IMAGES=1 skips that.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)

say() { echo "==> $*" >&2; }
die() { echo "error: $*" >&2; exit 1; }

# --- which compose --------------------------------------------------------------------------
if [ -n "${CLAWMESH_COMPOSE:-}" ]; then
  read -r -a COMPOSE <<<"$CLAWMESH_COMPOSE"
elif docker compose version >/dev/null 2>&1; then
  COMPOSE=(docker compose)
elif command -v docker-compose >/dev/null 2>&1; then
  COMPOSE=(docker-compose)
else
  die "no docker compose found: run scripts/ensure-docker.sh (installs the v2 plugin, or apt-get install docker-compose)"
fi

# --- split the global options from the command ----------------------------------------------
variants=()
globals=()
rest=()
user_files=0
add_variant() {
  local v
  for v in ${1//,/ }; do
    case "$v" in
      cluster | secure) variants+=("$v") ;;
      sandbox) variants+=("$v"); globals+=(--profile sandbox) ;;
      "") ;;
      *) globals+=(--profile "$v") ;;
    esac
  done
}
if [ -n "${COMPOSE_PROFILES:-}" ]; then
  # compose reads COMPOSE_PROFILES itself: hand it only the real profiles
  profiles=$COMPOSE_PROFILES
  unset COMPOSE_PROFILES
  add_variant "$profiles"
fi
[ -n "${COMPOSE_FILE:-}" ] && user_files=1
while [ $# -gt 0 ]; do
  case "$1" in
    --profile) [ $# -ge 2 ] || die "--profile needs a value"; add_variant "$2"; shift 2 ;;
    --profile=*) add_variant "${1#--profile=}"; shift ;;
    -f | --file) [ $# -ge 2 ] || die "$1 needs a value"; globals+=("$1" "$2"); user_files=1; shift 2 ;;
    --file=*) globals+=("$1"); user_files=1; shift ;;
    -p | --project-name | --env-file | --project-directory | --ansi | --progress | --parallel | \
      -H | --host | -c | --context | --log-level | --tlscacert | --tlscert | --tlskey)
      [ $# -ge 2 ] || die "$1 needs a value"; globals+=("$1" "$2"); shift 2 ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed -e '/^set -euo/d' -e 's/^# \{0,1\}//'; exit 0 ;;
    -*) globals+=("$1"); shift ;;
    *) break ;;
  esac
done
rest=("$@")
[ ${#rest[@]} -gt 0 ] || die "no compose command given (e.g. scripts/compose.sh up -d); see --help"
command=${rest[0]}

has() { local v; for v in ${variants[@]+"${variants[@]}"}; do [ "$v" = "$1" ] && return 0; done; return 1; }

files=()
[ "$user_files" = 1 ] || files+=(-f "$REPO/docker-compose.yml")
has cluster && files+=(-f "$REPO/deploy/compose/cluster.yml")

# --- images ---------------------------------------------------------------------------------
case "$command" in
  up | create | run | start | restart)
    if [ "${CLAWMESH_COMPOSE_SKIP_IMAGES:-0}" != 1 ]; then
      targets=(nats services)
      has sandbox && targets+=(sandbox)
      "$REPO/scripts/images.sh" "${targets[@]}" >&2
    fi
    ;;
esac

# --- credentials: generated users, passwords and API token ----------------------------------
clawmesh_cli() {
  # the repository's install, else one on PATH, else the service image (as the calling user)
  if [ -x "$REPO/.venv/bin/clawmesh" ]; then
    "$REPO/.venv/bin/clawmesh" "$@"
  elif command -v clawmesh >/dev/null 2>&1; then
    clawmesh "$@"
  else
    # host network: `cli` reaches the ports published on 127.0.0.1
    local conf=${CLAWMESH_CONFIG_FILE:-$REPO/deploy/compose/clawmesh.json}
    docker run --rm --network host --user "$(id -u):$(id -g)" -e HOME=/tmp \
      -e CLAWMESH_NATS_USER -e CLAWMESH_NATS_PASSWORD -e CLAWMESH_NATS_URL \
      -e CLAWMESH_GATEWAY_URL -e CLAWMESH_GATEWAY_TOKEN \
      -v "$REPO/deploy/compose/clawmesh.json:$REPO/deploy/compose/clawmesh.json:ro" \
      -v "$conf:$conf:ro" -v "$secrets:$secrets" \
      "${CLAWMESH_IMAGE:-clawmesh:latest}" clawmesh "$@"
  fi
}
secrets=${CLAWMESH_SECRETS_DIR:-$REPO/deploy/compose/secrets}
mkdir -p "$secrets"
chmod 0700 "$secrets"
secrets=$(cd "$secrets" && pwd)
export CLAWMESH_SECRETS_DIR=$secrets
if [ ! -s "$secrets/auth.conf" ] || [ ! -s "$secrets/credentials.env" ]; then
  say "generating NATS users and passwords into $secrets (clawmesh deploy nats-config)"
  clawmesh_cli --config "$REPO/deploy/compose/clawmesh.json" \
    deploy nats-config --out "$secrets" --node compose --node sandbox >&2
fi
if ! grep -q '^CLAWMESH_GATEWAY_TOKEN=' "$secrets/credentials.env"; then
  say "generating the HTTP API token (scripts/compose.sh token prints it)"
  token=$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')
  (umask 077 && printf '# the HTTP API token (Authorization: Bearer ...)\nCLAWMESH_GATEWAY_TOKEN=%s\n' "$token" \
    >>"$secrets/credentials.env")
fi
chmod 0600 "$secrets/auth.conf" "$secrets/credentials.env"
# the nats-server container reads auth.conf as root; the services get credentials.env values
files+=(--env-file "$secrets/credentials.env")
cred() { sed -n "s/^$1=//p" "$secrets/credentials.env" | tail -n 1; }

case "$command" in
  token)
    echo "${CLAWMESH_GATEWAY_TOKEN:-$(cred CLAWMESH_GATEWAY_TOKEN)}"
    exit 0
    ;;
  cli)
    CLAWMESH_NATS_USER=$(cred CLAWMESH_NATS_USER_ADMIN)
    CLAWMESH_NATS_PASSWORD=$(cred CLAWMESH_NATS_PASSWORD_ADMIN)
    CLAWMESH_NATS_URL=${CLAWMESH_NATS_URL:-nats://127.0.0.1:${CLAWMESH_NATS_PORT:-14222}}
    CLAWMESH_GATEWAY_URL=${CLAWMESH_GATEWAY_URL:-http://127.0.0.1:${CLAWMESH_HTTP_PORT:-18789}}
    CLAWMESH_GATEWAY_TOKEN=${CLAWMESH_GATEWAY_TOKEN:-$(cred CLAWMESH_GATEWAY_TOKEN)}
    export CLAWMESH_NATS_USER CLAWMESH_NATS_PASSWORD CLAWMESH_NATS_URL CLAWMESH_GATEWAY_URL CLAWMESH_GATEWAY_TOKEN
    clawmesh_cli --config "${CLAWMESH_CONFIG_FILE:-$REPO/deploy/compose/clawmesh.json}" "${rest[@]:1}"
    exit $?
    ;;
esac

# --- sandbox: the host directory mounted at the same path, and the socket's group --------------
if has sandbox; then
  sdir=${CLAWMESH_SANDBOX_DIR:-/var/lib/clawmesh-sandbox}
  case "$sdir" in /*) ;; *) die "CLAWMESH_SANDBOX_DIR must be an absolute path (got $sdir)" ;; esac
  export CLAWMESH_SANDBOX_DIR=$sdir
  if [ ! -d "$sdir" ]; then
    mkdir -p "$sdir" || die "cannot create $sdir (run as root, or set CLAWMESH_SANDBOX_DIR)"
    chown 10001:10001 "$sdir" 2>/dev/null || say "warning: could not chown $sdir to uid 10001 (the node-agent's user)"
    chmod 0750 "$sdir"
  fi
  if [ -z "${CLAWMESH_DOCKER_GID:-}" ]; then
    sock=${DOCKER_HOST:-unix:///var/run/docker.sock}
    sock=${sock#unix://}
    if [ -S "$sock" ]; then
      CLAWMESH_DOCKER_GID=$(stat -c %g "$sock")
      export CLAWMESH_DOCKER_GID
    fi
  fi
fi

exec "${COMPOSE[@]}" ${files[@]+"${files[@]}"} ${globals[@]+"${globals[@]}"} "${rest[@]}"
