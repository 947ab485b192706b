# SliceTwin twin service image: the learned digital twin (LSTM + reward DNN) needs torch (CPU only).
# The twin and trainer Dockerfiles are identical up to the last RUN, so the second build reuses
# the first one's torch layer from the build cache.
#
# Build from the repository root:
#   docker build -f deploy/twin.Dockerfile -t slicetwin/twin:0.1.0 .
# Build arguments (see deploy/controller.Dockerfile for BASE_IMAGE, PIP_INDEX_URL, EXTRA_CA_DIR):
#   TORCH_INDEX_URL  where torch==$TORCH_VERSION comes from: the CPU wheel index (default; no CUDA
#                    libraries) or any plain package index / wheel folder served over HTTP that
#                    holds a CPU wheel. Only torch comes from it; its dependencies from PIP_INDEX_URL.
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}
ARG PIP_INDEX_URL=
ARG PIP_EXTRA_INDEX_URL=
ARG EXTRA_CA_DIR=deploy/certs
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG TORCH_VERSION=2.13.0

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    NUMBA_CACHE_DIR=/tmp/numba-cache \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

WORKDIR /app
COPY ${EXTRA_CA_DIR}/ /tmp/extra-ca/
COPY deploy/docker/pip-install /usr/local/bin/pip-install
# torch alone first (its own cached layer; code changes do not re-download it).
RUN python3 -m venv /opt/venv \
    && pip-install --no-deps --index-url "$TORCH_INDEX_URL" "torch==$TORCH_VERSION"
COPY pyproject.toml README.md ./
COPY slicetwin ./slicetwin
COPY controller ./controller
COPY twin_service ./twin_service
COPY trainer ./trainer
# (/data: the trainer's volume; the same RUN in both files keeps the layer shared.)
# The package with its train extra (torch already satisfied: its dependencies come from the package
# index), then: dependencies consistent, torch is the pinned CPU build, no CUDA library anywhere.
RUN pip-install ".[train]" \
    && pip check \
    && python -c "import torch, sys; v = torch.__version__; assert v.split('+')[0] == sys.argv[1], v; assert torch.version.cuda is None, torch.version.cuda" "$TORCH_VERSION" \
    && python -c "import importlib.metadata as m; bad = sorted({d.metadata['Name'] for d in m.distributions() if d.metadata['Name'].lower().startswith(('nvidia', 'triton'))}); assert not bad, f'CUDA packages in the image: {bad}'" \
    && (id -u slicetwin >/dev/null 2>&1 || useradd --system --create-home --uid 10001 slicetwin) \
    && find /opt/venv/lib -depth -type d -name tests -path '*/site-packages/*' -exec rm -rf {} + \
    && /opt/venv/bin/python -m pip uninstall -y -q pip setuptools \
    && rm -rf /app/build /app/*.egg-info /tmp/extra-ca /root/.cache \
    && mkdir -p /data && chown slicetwin /data

USER slicetwin
EXPOSE 8002
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8002/healthz', timeout=2)"]
CMD ["slicetwin", "twin", "--host", "0.0.0.0", "--port", "8002"]
