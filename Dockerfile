# syntax=docker/dockerfile:1
# SIKD Studio images, built from the project's own files (multi-stage, no build or test tools at run time).
#   target "cpu": the API and the dashboard (PyTorch CPU build)
#   target "gpu": a training worker (CUDA runtime + PyTorch CUDA build)
# docker-compose.yml builds both; the entry points are the `sikd api|worker|ui` commands that
# `sikd serve` runs locally.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG CUDA_IMAGE=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04
ARG TORCH_VERSION=2.13.0
ARG TORCH_CPU_INDEX=https://download.pytorch.org/whl/cpu
ARG TORCH_CUDA_INDEX=https://download.pytorch.org/whl/cu128

# ---------------------------------------------------------------- build: the project wheel
FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
RUN python -m pip install --no-cache-dir --upgrade pip build
COPY pyproject.toml README.md ./
COPY sikd_core ./sikd_core
COPY sikd_service ./sikd_service
COPY api ./api
COPY worker ./worker
COPY ui ./ui
RUN python -m pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

# ---------------------------------------------------------------- cpu: API + dashboard
FROM ${PYTHON_IMAGE} AS cpu
ARG TORCH_VERSION
ARG TORCH_CPU_INDEX
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 SIKD_STORAGE_DIR=/data
RUN python -m pip install --index-url ${TORCH_CPU_INDEX} "torch==${TORCH_VERSION}"
COPY --from=build /wheels /tmp/wheels
RUN python -m pip install "$(ls /tmp/wheels/sikd_studio-*.whl)[service]" && rm -rf /tmp/wheels \
    && useradd --create-home --uid 1000 sikd && mkdir -p /data && chown sikd /data
USER sikd
WORKDIR /home/sikd
EXPOSE 8000 8501
CMD ["sikd", "api", "--host", "0.0.0.0", "--port", "8000"]

# ---------------------------------------------------------------- gpu: training worker
FROM ${CUDA_IMAGE} AS gpu
ARG TORCH_VERSION
ARG TORCH_CUDA_INDEX
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 SIKD_STORAGE_DIR=/data \
    VIRTUAL_ENV=/opt/venv PATH=/opt/venv/bin:$PATH
# gcc and python3-dev: Triton builds its kernel launcher at first use, for the compiled SIKD teacher
# (sikd_core/training/teacher.py; without them training still runs, with the plain teacher and a warning).
RUN apt-get update && apt-get install -y --no-install-recommends python3 python3-venv python3-dev gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/* && python3 -m venv /opt/venv
RUN python -m pip install --index-url ${TORCH_CUDA_INDEX} "torch==${TORCH_VERSION}"
COPY --from=build /wheels /tmp/wheels
# Same uid as the cpu image: api and workers share the storage volume (ubuntu images ship uid 1000 "ubuntu").
RUN python -m pip install "$(ls /tmp/wheels/sikd_studio-*.whl)[service]" && rm -rf /tmp/wheels \
    && (userdel --remove ubuntu 2>/dev/null || true) \
    && useradd --create-home --uid 1000 sikd && mkdir -p /data && chown sikd /data
USER sikd
WORKDIR /home/sikd
CMD ["sikd", "worker", "--queues", "train,default", "--concurrency", "1"]
