# maintainer: the always-on backup and maintenance container.
#
#   docker build -t maintainer .
#   docker build --build-arg BASE_IMAGE=maintainer-test/python:3.11 -t maintainer .   # the test bed
#
# Offline build (no PyPI from inside the build): put the wheels of maintainer's
# dependencies (and setuptools, wheel) in ./wheels and add --build-arg PIP_NO_INDEX=1.

# The official image, pinned by digest: same bytes on every build.
ARG BASE_IMAGE=python:3.11.10-slim-bookworm@sha256:5148c0e4bbb64271bca1d3322360ebf4bfb7564507ae32dd639322e4952a6b16

# ---------------------------------------------------------------- builder
FROM ${BASE_IMAGE} AS builder
ARG PIP_NO_INDEX
ARG PIP_FIND_LINKS=/src/wheels
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY . /src
# The wheel is built from the sources, then installed with its dependencies
# into a venv that the runtime stage copies whole. botocore ships the API
# models of every AWS service; maintainer talks to S3 (and STS for role
# credentials) only, so the other models are dropped, as is zstandard's unused
# cffi backend. Bytecode is compiled here: the runtime user cannot write it, and
# every `maintainer healthcheck` would otherwise compile pydantic again.
RUN set -eux; \
    mkdir -p /src/wheels; \
    python3 -m venv /opt/maintainer; \
    /opt/maintainer/bin/pip install --upgrade setuptools wheel; \
    /opt/maintainer/bin/pip wheel --no-deps --wheel-dir /tmp/dist /src; \
    /opt/maintainer/bin/pip install /tmp/dist/maintainer-*.whl; \
    /opt/maintainer/bin/pip uninstall -y setuptools wheel pip; \
    data=$(echo /opt/maintainer/lib/python3*/site-packages/botocore/data); \
    find "$data" -mindepth 1 -maxdepth 1 -type d ! -name s3 ! -name sts ! -name sso ! -name sso-oidc -exec rm -rf {} +; \
    rm -f "$data"/../../zstandard/_cffi.*.so "$data"/../../zstandard/backend_cffi.py; \
    find /opt/maintainer -name tests -type d -path '*site-packages/*/tests' -prune -exec rm -rf {} +; \
    find /opt/maintainer -name '__pycache__' -type d -prune -exec rm -rf {} +; \
    /opt/maintainer/bin/python -m compileall -q -j 0 /opt/maintainer/lib >/dev/null; \
    /opt/maintainer/bin/python -c "import maintainer.cli.main, zstandard, boto3; boto3.session.Session().client('s3', region_name='us-east-1')"

# ---------------------------------------------------------------- runtime
FROM ${BASE_IMAGE}
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="maintainer" \
      org.opencontainers.image.description="Backups, restore drills and Docker maintenance for PostgreSQL deployments" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.source="https://github.com/contrivance/maintainer" \
      org.opencontainers.image.documentation="https://github.com/contrivance/maintainer/blob/main/docs/daemon.md"

# pg_dump/pg_restore 15 (bookworm's); a base that already has them skips apt.
RUN set -eux; \
    if ! command -v pg_dump >/dev/null; then \
        apt-get update; \
        apt-get install -y --no-install-recommends postgresql-client-15 ca-certificates; \
        rm -rf /var/lib/apt/lists/* /var/cache/apt/*; \
    fi; \
    groupadd --system --gid 10001 maintainer; \
    useradd --system --uid 10001 --gid maintainer --home-dir /var/lib/maintainer --no-create-home \
        --shell /usr/sbin/nologin maintainer; \
    mkdir -p /var/lib/maintainer/state /etc/maintainer; \
    chown -R maintainer:maintainer /var/lib/maintainer

COPY --from=builder /opt/maintainer /opt/maintainer
# The shipped schedule and the restore drills' checks, where the shipped schedule
# looks for them; mount your own /etc/maintainer/schedules.yaml over it.
COPY schedules.yaml /etc/maintainer/schedules.yaml
COPY restore/checks/ /etc/maintainer/checks/

ENV PATH=/opt/maintainer/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    MAINTAINER_CONFIG=/etc/maintainer/schedules.yaml

# Not root. The Docker socket is reached through its group, given at run time:
#   docker run --group-add "$(stat -c %g /var/run/docker.sock)" ...   (compose: group_add)
USER maintainer:maintainer
WORKDIR /var/lib/maintainer
EXPOSE 9187

HEALTHCHECK --interval=30s --timeout=15s --start-period=20s --retries=3 CMD ["maintainer", "healthcheck"]

ENTRYPOINT ["maintainer"]
CMD ["daemon"]
