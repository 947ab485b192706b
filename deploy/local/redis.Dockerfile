# Redis from Debian's package, for hosts that cannot pull redis:7.2-alpine (deploy/compose.local.yml).
# Build from the repository root (apt needs the network: `--network host` where the default
# bridge is off):
#   docker build --network host -f deploy/local/redis.Dockerfile -t slicetwin/redis-local:bookworm .
# Like the official image's entrypoint, `redis-server` without a config file gets
# `--protected-mode no`: the ACL's default user has no password (it may only PING), and protected
# mode would then refuse every client from another container.
ARG BASE_IMAGE=slicetwin/base:bookworm
FROM ${BASE_IMAGE}
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends redis-server \
    && apt-get clean && rm -rf /var/lib/apt/lists/* /usr/share/doc/* /usr/share/man/* \
    && mkdir -p /data && chown redis:redis /data \
    && printf '%s\n' '#!/bin/sh' 'set -e' \
       'if [ "$1" = redis-server ] && ! [ -f "${2:-}" ]; then shift; set -- redis-server --protected-mode no "$@"; fi' \
       'exec "$@"' > /usr/local/bin/redis-entrypoint \
    && chmod 755 /usr/local/bin/redis-entrypoint
WORKDIR /data
USER redis
EXPOSE 6379
ENTRYPOINT ["/usr/local/bin/redis-entrypoint"]
CMD ["redis-server"]
