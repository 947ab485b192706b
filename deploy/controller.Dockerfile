# SliceTwin controller (and fake gNB) image: slim, WITHOUT torch.
# The controller runs the ONNX student with onnxruntime + numpy only, so only the core package and
# controller/ are copied and the package is installed without the `train` extra.
# Build from the repository root:  docker build -f deploy/controller.Dockerfile -t slicetwin-controller .
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    NUMBA_CACHE_DIR=/tmp/numba-cache

WORKDIR /app
COPY pyproject.toml README.md ./
COPY slicetwin ./slicetwin
COPY controller ./controller
# No extras: no torch, matplotlib or scipy. Fail the build if torch sneaks in.
RUN pip install . \
    && python -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('torch') is not None)" \
    && useradd --system --create-home --uid 10001 slicetwin

USER slicetwin
EXPOSE 8080
# The compose file sets its own healthcheck; this one keeps `docker run` alone useful too.
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2)"]
CMD ["slicetwin", "controller", "--host", "0.0.0.0", "--port", "8080"]
