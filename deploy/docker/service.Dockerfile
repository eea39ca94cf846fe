# clawmesh:<version> / clawmesh:latest: ONE image holding the installed project for every service;
# the command picks the service (e.g. `clawmesh service router`). Built by
# `scripts/images.sh services` with `docker build --network none`: the context holds only
# `wheels/`, a wheelhouse prepared on the host (the project wheel from `pip wheel --no-deps .` plus
# the binary wheels of the runtime dependencies from `pip download --only-binary=:all:` for cp311
# manylinux), so nothing is fetched during the build.
# Locally FROM clawmesh-python:bookworm (Debian's python 3.11). With a registry:
#   --build-arg BASE_IMAGE=python:3.11-slim-bookworm
ARG BASE_IMAGE=clawmesh-python:bookworm

# Stage 1: install into a venv. A separate stage keeps the wheelhouse out of the final layers.
FROM ${BASE_IMAGE} AS build
# lets scripts/images.sh prune this stage's image (the legacy builder keeps it as a dangling image)
LABEL org.clawmesh.build-stage=service
COPY wheels /wheels
RUN python3 -m venv /opt/clawmesh \
 && /opt/clawmesh/bin/pip install --no-cache-dir --no-index --find-links /wheels \
      --disable-pip-version-check --no-warn-script-location clawmesh \
 && /opt/clawmesh/bin/python -c 'import clawmesh, clawmesh_gateway.registry'

# Stage 2: the runtime image (same base, same venv path, so the venv's scripts stay valid).
FROM ${BASE_IMAGE}
COPY --from=build /opt/clawmesh /opt/clawmesh
RUN groupadd --gid 10001 clawmesh \
 && useradd --uid 10001 --gid 10001 --home-dir /var/lib/clawmesh --no-create-home \
      --shell /usr/sbin/nologin clawmesh \
 && install -d -o clawmesh -g clawmesh -m 0750 /var/lib/clawmesh
ENV PATH=/opt/clawmesh/bin:$PATH \
    VIRTUAL_ENV=/opt/clawmesh \
    LANG=C.UTF-8 \
    PYTHONUNBUFFERED=1
USER clawmesh
WORKDIR /var/lib/clawmesh
CMD ["clawmesh", "--help"]
