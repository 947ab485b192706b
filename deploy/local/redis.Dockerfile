# Redis from Debian's package, for hosts that cannot pull redis:7.2-alpine (deploy/compose.local.yml).
# Build from the repository root (apt needs the network: `--network host` where the default
# bridge is off):
#   docker build --network host -f deploy/local/redis.Dockerfile -t slicetwin/redis-local:bookworm .
ARG BASE_IMAGE=slicetwin/base:bookworm
FROM ${BASE_IMAGE}
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends redis-server \
    && apt-get clean && rm -rf /var/lib/apt/lists/* /usr/share/doc/* /usr/share/man/* \
    && mkdir -p /data && chown redis:redis /data
WORKDIR /data
USER redis
EXPOSE 6379
CMD ["redis-server", "--protected-mode", "no"]
