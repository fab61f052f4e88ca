# The sidecar-injector image: the webhook server and the certificate bootstrap Job.
#
# Two stages: the build stage installs the package and its dependencies into a virtual
# environment, from requirements.lock (every dependency pinned with its hashes: reproducible),
# then slims it (scripts/slim-runtime: unused CEL extension modules removed, native modules
# stripped; bench/runtime_size.py measures it); the final stage copies only that environment
# onto a fresh slim Python, so no compiler, binutils, pip cache or source tree ships. No certificate or key is baked in: the serving
# certificate comes from the Secret the bootstrap Job (or cert-manager) fills, mounted at run time.
#
#   docker build -t sidecar-injector:0.1.0 \
#     --build-arg REVISION="$(git rev-parse HEAD)" --build-arg VERSION=0.1.0 .
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# binutils: `strip` for scripts/slim-runtime (build stage only).
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends binutils \
 && rm -rf /var/lib/apt/lists/*
# The locked dependencies first: a source-only change reuses this layer.
COPY requirements.lock ./
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-cache-dir --require-hashes -r requirements.lock
COPY pyproject.toml README.md LICENSE ./
COPY src ./src
COPY scripts/slim-runtime ./scripts/
RUN /opt/venv/bin/pip install --no-cache-dir --no-deps . \
 && sh scripts/slim-runtime /opt/venv/lib/python3.11/site-packages \
 && /opt/venv/bin/sidecar-injector --version

FROM ${PYTHON_IMAGE}
ARG VERSION=0.1.0
ARG REVISION=unknown
# The repository URL: --build-arg SOURCE=https://...
ARG SOURCE=""
LABEL org.opencontainers.image.title="sidecar-injector" \
      org.opencontainers.image.description="Kubernetes mutating admission webhook that injects sidecars" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# A numeric non-root user (65532, "nonroot"), so `runAsNonRoot` can verify it without a
# passwd lookup; the manifests set the same UID and a read-only root filesystem.
USER 65532:65532
EXPOSE 8443 8080
ENTRYPOINT ["sidecar-injector"]
CMD ["serve", "--config", "/etc/sidecar-injector/config", \
     "--tls-cert", "/etc/sidecar-injector/tls/tls.crt", "--tls-key", "/etc/sidecar-injector/tls/tls.key", \
     "--port", "8443", "--metrics-port", "8080"]
