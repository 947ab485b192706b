# SliceTwin twin service image: the learned digital twin (LSTM + reward DNN) needs torch.
# torch is pinned to 2.13.0 and taken from the CPU-only wheel index (no CUDA libraries).
# Build from the repository root:  docker build -f deploy/twin.Dockerfile -t slicetwin-twin .
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
    && useradd --system --create-home --uid 10001 slicetwin

USER slicetwin
EXPOSE 8002
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8002/healthz', timeout=2)"]
CMD ["slicetwin", "twin", "--host", "0.0.0.0", "--port", "8002"]
