# syntax=docker/dockerfile:1
# Racksmith image: one image for every process; the command picks it
#   docker run IMAGE api | worker scanner | worker registrar | worker inventory | migrate
# Build: docker build -t racksmith:0.1.0 .   (BuildKit; the tag follows pyproject's version)

# ---- builder: wheels for the project and every dependency, installed into a venv ------------
FROM python:3.11.11-slim-bookworm AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# A compiler only for a dependency without a binary wheel for the target platform (today every
# one has wheels for amd64 and arm64); it stays in this stage and never reaches the final image.
# Debian's package versions move with the pinned base image, so they are not pinned again here.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /src
COPY pyproject.toml README.md ./
COPY services ./services
COPY shared ./shared
COPY bmclab ./bmclab

# Wheels first (the build step), then a venv from those wheels only: the final stage copies the
# venv, so it needs neither pip resolution nor network nor build tools.
RUN pip wheel --wheel-dir /wheels . \
    && python -m venv /opt/racksmith \
    && /opt/racksmith/bin/pip install --no-index --find-links=/wheels /wheels/*.whl

# ---- final: runtime only ----------------------------------------------------------------------
FROM python:3.11.11-slim-bookworm

# Numeric UID/GID so Kubernetes can verify runAsNonRoot without reading /etc/passwd.
ARG UID=10001
ARG GID=10001
RUN groupadd --system --gid "${GID}" racksmith \
    && useradd --system --uid "${UID}" --gid "${GID}" --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin racksmith \
    && mkdir -p /var/lib/racksmith \
    && chown "${UID}:${GID}" /var/lib/racksmith

COPY --from=builder /opt/racksmith /opt/racksmith

# Read-only root filesystem: bytecode was compiled at install time and is never written at run
# time; the state dir and /tmp are the only writable paths (emptyDir volumes in Kubernetes).
ENV PATH=/opt/racksmith/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    RACKSMITH_STATE_DIR=/var/lib/racksmith \
    RACKSMITH_HOST=0.0.0.0 \
    RACKSMITH_LOG_FORMAT=json

USER ${UID}:${GID}
WORKDIR /var/lib/racksmith
VOLUME ["/var/lib/racksmith"]
# API (RACKSMITH_PORT) and worker probes (RACKSMITH_WORKER_HEALTH_PORT).
EXPOSE 8000 8081

# racksmith handles SIGTERM itself (drains for RACKSMITH_SHUTDOWN_TIMEOUT_S) and starts no child
# processes in api/worker/migrate, so it runs as PID 1 without an init shim.
ENTRYPOINT ["racksmith"]
CMD ["api"]
