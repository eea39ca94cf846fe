# clawmesh-python:bookworm: Debian 12 + python3 (3.11) + venv + CA certificates; the base of the
# service image. Locally it builds FROM the rootfs that scripts/images.sh makes with
# `debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm` and
# `docker import`s as clawmesh-rootfs:python-bookworm (no registry needed, built --network none).
# With a registry:
#   docker build --build-arg BASE_IMAGE=debian:bookworm-slim -f deploy/docker/python.Dockerfile .
# (then python3 is installed from apt below; that needs network).
ARG BASE_IMAGE=clawmesh-rootfs:python-bookworm
FROM ${BASE_IMAGE}
RUN if ! command -v python3 >/dev/null 2>&1 || ! python3 -c 'import venv, ensurepip' 2>/dev/null; then \
      apt-get update \
      && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
           python3 python3-venv ca-certificates \
      && rm -rf /var/lib/apt/lists/*; \
    fi \
 && python3 -c 'import sys, venv, ensurepip, ssl; assert sys.version_info >= (3, 11), sys.version'
ENV LANG=C.UTF-8 PYTHONUNBUFFERED=1
CMD ["python3"]
