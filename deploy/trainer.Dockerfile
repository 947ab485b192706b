# SliceTwin trainer worker image: consumes live transitions, calibrates the twin, trains, distils,
# exports ONNX, validates and publishes models; needs torch.
# torch is pinned to 2.13.0 and taken from the CPU-only wheel index (no CUDA libraries).
# Build from the repository root:  docker build -f deploy/trainer.Dockerfile -t slicetwin-trainer .
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    NUMBA_CACHE_DIR=/tmp/numba-cache

WORKDIR /app
RUN pip install --index-url https://download.pytorch.org/whl/cpu "torch==2.13.0"
COPY pyproject.toml README.md ./
COPY slicetwin ./slicetwin
COPY controller ./controller
COPY twin_service ./twin_service
COPY trainer ./trainer
RUN pip install ".[train]" \
    && python -c "import torch; assert torch.__version__.startswith('2.13.0'), torch.__version__" \
    && useradd --system --create-home --uid 10001 slicetwin \
    && mkdir -p /data && chown slicetwin /data

USER slicetwin
VOLUME /data
# No HTTP server: healthy once the worker joined the transitions stream's consumer group.
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=5 \
    CMD ["python", "-c", "import os, redis; r = redis.Redis.from_url(os.environ['SLICETWIN_REDIS_URL'], decode_responses=True); names = [c['name'] for c in r.xinfo_consumers(os.environ.get('SLICETWIN_REGISTRY_PREFIX', 'slicetwin:') + 'transitions', 'trainer')]; assert os.environ.get('SLICETWIN_CONSUMER_NAME', 'trainer-1') in names, names"]
CMD ["slicetwin", "trainer"]
