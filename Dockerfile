# govloop production image: the `govloop` CLI with the PostgreSQL driver.
#
#   docker build -t govloop .
#   docker run --rm govloop --help
#   docker run --rm -e GOVLOOP_KAFKA=... -e GOVLOOP_REDIS_URL=... -e GOVLOOP_DB_URL=... govloop worker
#
# Two stages: `build` compiles into a virtualenv (with a compiler at hand for any
# dependency that has no wheel for the target platform), `runtime` copies only
# that virtualenv onto a clean slim image and runs as an unprivileged user.

ARG PYTHON_VERSION=3.11

FROM python:${PYTHON_VERSION}-slim AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential \
 && rm -rf /var/lib/apt/lists/*

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src

# 1. Third-party dependencies only, read from pyproject.toml: this layer is
#    rebuilt when pyproject.toml changes, not on every source edit.  They include
#    cramjam, without which aiokafka cannot read a snappy, lz4 or zstd batch: the
#    build fails here if any codec Kafka defines is missing.
COPY pyproject.toml ./
RUN python -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; print('\n'.join(p['dependencies'] + p['optional-dependencies']['postgres']))" \
        > /tmp/requirements.txt \
 && pip install -r /tmp/requirements.txt \
 && python -c "import aiokafka.codec as c; assert all((c.has_gzip(), c.has_snappy(), c.has_lz4(), c.has_zstd()))"

# 2. govloop itself (dependencies are already there).
COPY README.md ./
COPY src ./src
RUN pip install --no-deps ".[postgres]" \
 && govloop --help > /dev/null


FROM python:${PYTHON_VERSION}-slim AS runtime

LABEL org.opencontainers.image.title="govloop" \
      org.opencontainers.image.description="Event-driven governance loop for ML models in production" \
      org.opencontainers.image.licenses="Apache-2.0"

RUN groupadd --system --gid 10001 govloop \
 && useradd --system --uid 10001 --gid govloop --home-dir /var/lib/govloop \
            --create-home --shell /usr/sbin/nologin govloop

COPY --from=build /opt/venv /opt/venv

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    GOVLOOP_HOME=/var/lib/govloop

WORKDIR /var/lib/govloop
USER 10001:10001

# No HEALTHCHECK: a worker serves no HTTP unless GOVLOOP_WORKER_WEB_PORT is set,
# and a worker that fails exits, which the orchestrator's restart policy handles.
ENTRYPOINT ["govloop"]
CMD ["worker"]
