# clawmesh-testbox: a ~2 MB image for fast sandbox tests, FROM scratch with Debian's static
# busybox (applets installed as symlinks in /bin: sh, sleep, cat, id, ls, echo, timeout, ...).
# Built by `scripts/images.sh test`; the build context holds only `busybox` (from busybox-static).
# With a registry one could start from the public image instead:
#   --build-arg BASE_IMAGE=busybox:1.36
ARG BASE_IMAGE=scratch
FROM ${BASE_IMAGE}
COPY busybox /bin/busybox
RUN ["/bin/busybox", "sh", "-c", "set -e; /bin/busybox --install -s /bin; mkdir -p /tmp /workspace /root /usr/bin /etc; chmod 1777 /tmp; ln -sf /bin/env /usr/bin/env; printf 'root:x:0:0:root:/root:/bin/sh\\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\\n' >/etc/passwd; printf 'root:x:0:\\nnogroup:x:65534:\\n' >/etc/group"]
ENV PATH=/bin:/usr/bin
WORKDIR /workspace
CMD ["/bin/sh"]
