# clawmesh-sandbox:bookworm: the default agent sandbox image (tools run in it, locked down by
# the runner: no network, read-only root, cap_drop ALL, ...). Debian 12 minbase with sh,
# coreutils, python3 and git. Locally it builds FROM the rootfs made by scripts/images.sh
# (the python rootfs + `apt-get install git` in a chroot), imported as
# clawmesh-rootfs:sandbox-bookworm. With a registry:
#   docker build --build-arg BASE_IMAGE=debian:bookworm-slim -f deploy/docker/sandbox.Dockerfile .
# (then python3/git are installed from apt below; that needs network).
# The image runs as root by default (the workspace bind mount is owned by the host user); a
# non-root user `sandbox` (uid/gid 1000) exists for runners that pass user="1000:1000".
ARG BASE_IMAGE=clawmesh-rootfs:sandbox-bookworm
FROM ${BASE_IMAGE}
RUN if ! command -v python3 >/dev/null 2>&1 || ! command -v git >/dev/null 2>&1; then \
      apt-get update \
      && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
           python3 git ca-certificates \
      && rm -rf /var/lib/apt/lists/*; \
    fi \
 && (getent passwd 1000 >/dev/null || useradd --uid 1000 --user-group --create-home --shell /bin/sh sandbox) \
 && mkdir -p /workspace && chmod 1777 /workspace \
 && python3 --version && git --version
ENV LANG=C.UTF-8 PYTHONUNBUFFERED=1
WORKDIR /workspace
CMD ["sleep", "infinity"]
