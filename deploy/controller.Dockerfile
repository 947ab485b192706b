# SliceTwin controller (and fake gNB) image: slim, WITHOUT torch and without the simulator.
# The controller runs the ONNX student with onnxruntime + numpy only, so only the core package and
# controller/ are copied and the package is installed without extras (no `train`, no `sim`).
# The fake gNB is this Dockerfile with EXTRAS=sim (the simulator's numba kernel and gymnasium).
#
# Build from the repository root:
#   docker build -f deploy/controller.Dockerfile -t slicetwin/controller:0.1.0 .
# Build arguments:
#   BASE_IMAGE     python:3.11-slim (official) or a local base with python3 + venv and a user
#                  `slicetwin` (deploy/base/build-local-base.sh makes slicetwin/base:bookworm)
#   PIP_INDEX_URL  package index (empty: pip's default, PyPI)
#   EXTRA_CA_DIR   folder of extra CA certificates (*.crt, *.pem) pip trusts (deploy/certs)
#   EXTRAS         package extras to install (empty: the controller; `sim`: the fake gNB)
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}
ARG PIP_INDEX_URL=
ARG PIP_EXTRA_INDEX_URL=
ARG EXTRA_CA_DIR=deploy/certs
ARG EXTRAS=

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    NUMBA_CACHE_DIR=/tmp/numba-cache \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

WORKDIR /app
COPY ${EXTRA_CA_DIR}/ /tmp/extra-ca/
COPY deploy/docker/pip-install /usr/local/bin/pip-install
COPY pyproject.toml README.md ./
COPY slicetwin ./slicetwin
COPY controller ./controller
# One layer (vfs and overlay both pay per layer): the venv, the package with $EXTRAS only (no
# torch, matplotlib or scipy; the build fails if torch sneaks in, or numba without the sim extra),
# the non-root user, no build leftovers (bundled test suites, pip and setuptools: the image never
# installs anything at run time).
RUN python3 -m venv /opt/venv \
    && pip-install ".${EXTRAS:+[$EXTRAS]}" \
    && python -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('torch') is not None)" \
    && python -c "import importlib.util as u, sys; sys.exit('sim' not in sys.argv[1].split(',') and any(u.find_spec(m) for m in ('numba', 'llvmlite')))" "$EXTRAS" \
    && (id -u slicetwin >/dev/null 2>&1 || useradd --system --create-home --uid 10001 slicetwin) \
    && find /opt/venv/lib -depth -type d -name tests -path '*/site-packages/*' -exec rm -rf {} + \
    && /opt/venv/bin/python -m pip uninstall -y -q pip setuptools \
    && rm -rf /app/build /app/*.egg-info /tmp/extra-ca /root/.cache

USER slicetwin
EXPOSE 8080
# The compose file sets its own healthcheck; this one keeps `docker run` alone useful too.
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2)"]
CMD ["slicetwin", "controller", "--host", "0.0.0.0", "--port", "8080"]
