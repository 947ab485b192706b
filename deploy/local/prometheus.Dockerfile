# Prometheus from Debian's package (2.42), for hosts that cannot pull prom/prometheus
# (deploy/compose.local.yml). wget serves the compose healthcheck, as busybox's does in the
# official image. Build from the repository root:
#   docker build --network host -f deploy/local/prometheus.Dockerfile -t slicetwin/prometheus-local:bookworm .
ARG BASE_IMAGE=slicetwin/base:bookworm
FROM ${BASE_IMAGE}
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus wget \
    && apt-get clean && rm -rf /var/lib/apt/lists/* /usr/share/doc/* /usr/share/man/* \
    && mkdir -p /prometheus && chown prometheus:prometheus /prometheus
WORKDIR /prometheus
USER prometheus
EXPOSE 9090
ENTRYPOINT ["/usr/bin/prometheus"]
CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]
