# syntax=docker/dockerfile:1
#
# iobench images. One Dockerfile, three targets:
#
#   app       (the default, last stage)  the FastAPI service:        docker build -t iobench .
#   loadtest  the harness + ApacheBench (ab):                        docker build --target loadtest -t iobench-load .
#   pgbouncer Debian 12's PgBouncer 1.18, transaction pooling:       docker build --target pgbouncer -t iobench-pgbouncer .
#
# The app image installs [project].dependencies alone: the server being measured carries no
# matplotlib/numpy and no embedded Postgres. The loadtest image adds the `bench` extra (the
# harness). docker-compose.yml builds both from here (build.target); both run the same code.

ARG PYTHON_IMAGE=python:3.11-slim

# ---------------------------------------------------------------------------------------------
# runtime: what both images start from: the interpreter, the service user, the work dir.
FROM ${PYTHON_IMAGE} AS runtime

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

# The app runs as this unprivileged user. (The loadtest runs as whoever owns your checkout:
# see docker/loadtest-entrypoint.sh.)
ARG APP_UID=1000
ARG APP_GID=1000
RUN groupadd --gid "${APP_GID}" iobench \
 && useradd --uid "${APP_UID}" --gid iobench --home-dir /srv/iobench --no-create-home \
        --shell /usr/sbin/nologin iobench

# The source tree lives here (alembic.ini's script_location and db/migrate.py both resolve
# migrations/ next to the code); data/ (the seeded files) and runs/ are relative to it.
WORKDIR /srv/iobench

# ---------------------------------------------------------------------------------------------
# deps: a virtualenv with the service's pinned dependencies. From pyproject + constraints only,
# so editing the code reinstalls no wheel. (Every pin comes from constraints.txt, as in `make`.)
FROM runtime AS deps

RUN python -m venv "${VIRTUAL_ENV}"
COPY pyproject.toml constraints.txt ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
 && pip install -c constraints.txt -r /tmp/requirements.txt

# ---------------------------------------------------------------------------------------------
# build: the project installed into that virtualenv (no deps: they are all there). alembic.ini
# and migrations/ must be in the image: `serve` migrates on start, and `alembic upgrade head`
# works from a shell in it. README.md and LICENSE: pyproject.toml names them.
FROM deps AS build

COPY README.md LICENSE alembic.ini ./
COPY app ./app
COPY db ./db
COPY loadtests ./loadtests
COPY migrations ./migrations
RUN pip install --no-deps -c constraints.txt . \
 && pip check \
 && rm -rf build ./*.egg-info

# ---------------------------------------------------------------------------------------------
# build-bench: the same, plus the harness's dependencies (the `bench` extra) and Locust's engine (the
# `locust` extra: `--engine locust` and the locust-worker service of docker-compose.yml).
FROM deps AS build-bench

RUN python -c "import tomllib; e = tomllib.load(open('pyproject.toml', 'rb'))['project']['optional-dependencies']; print('\n'.join(e['bench'] + e['locust']))" \
        > /tmp/requirements.txt \
 && pip install -c constraints.txt -r /tmp/requirements.txt
COPY --from=build /srv/iobench /srv/iobench
RUN pip install --no-deps -c constraints.txt . \
 && pip check \
 && rm -rf build ./*.egg-info

# ---------------------------------------------------------------------------------------------
# loadtest: the harness and ab. It targets 127.0.0.1:8000 because compose runs it inside the
# app container's network namespace (network_mode: service:app): the harness refuses any
# target that is not this machine, on purpose.
FROM runtime AS loadtest

# apache2-utils is the Debian package that ships `ab`; nothing else from apt is needed.
# Unpinned (hadolint DL3008): Debian's archive keeps only a release's current version, so a
# pinned one breaks the build at its next point release; the base image tag fixes the release.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends apache2-utils \
 && rm -rf /var/lib/apt/lists/*

COPY --from=build-bench /opt/venv /opt/venv
COPY --from=build-bench /srv/iobench /srv/iobench

# Matplotlib's config and font cache: built once here, so no run rebuilds it, in a folder that
# whatever uid runs the harness can write (sticky, as /tmp), else matplotlib warns and makes a
# temporary one on every run.
ENV MPLCONFIGDIR=/var/cache/matplotlib
RUN install -d -m 1777 "${MPLCONFIGDIR}" \
 && python -c "import matplotlib.font_manager" \
 && chmod -R a+rX "${MPLCONFIGDIR}"

# runs/: the harness writes each run to runs/<UTC stamp>-<profile>/ (plus a runs/latest link)
# relative to the work dir; compose bind-mounts ./runs here. data/: the seeded files, written
# when the harness starts a service itself (no --target). The entrypoint gives both to the
# owner of the mounted checkout and runs the harness as that user, so it starts as root.
RUN install -d -o iobench -g iobench /srv/iobench/runs /srv/iobench/data
COPY --chmod=0755 docker/loadtest-entrypoint.sh /usr/local/bin/loadtest-entrypoint

ENTRYPOINT ["loadtest-entrypoint", "python", "-m", "loadtests"]
# No --out: the harness's --out is the run folder itself, so a fixed one would mix every
# run's results.jsonl; the default gives each run its own stamped folder under runs/.
CMD ["--target", "http://127.0.0.1:8000", "--profile", "default"]

# ---------------------------------------------------------------------------------------------
# pgbouncer: Debian 12's PgBouncer (1.18.0, the version whose driver compatibility iobench
# measured), configured from the environment by its entrypoint (docker/pgbouncer-entrypoint.sh).
FROM debian:bookworm-slim AS pgbouncer

# Unpinned (hadolint DL3008): Debian's archive keeps only a release's current version, so a
# pinned one breaks the build at its next point release; the base image tag fixes the release.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends pgbouncer \
 && rm -rf /var/lib/apt/lists/*

COPY --chmod=0755 docker/pgbouncer-entrypoint.sh /usr/local/bin/pgbouncer-entrypoint
# PgBouncer refuses to run as root. nobody:nogroup, numeric (hadolint DL3066): Debian fixes both
# at 65534. It writes its config to /tmp only.
USER 65534:65534
EXPOSE 5432
# The same TCP connect as the app's: no client process, nothing for PgBouncer to answer.
HEALTHCHECK --interval=30s --timeout=3s --start-period=10s --start-interval=1s --retries=3 \
    CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/5432"]
ENTRYPOINT ["pgbouncer-entrypoint"]

# ---------------------------------------------------------------------------------------------
# app: the service. Last stage, so a plain `docker build .` builds it.
FROM runtime AS app

COPY --from=build /opt/venv /opt/venv
# Code stays root-owned (read-only to the service); only data/ (the seeded files) is writable
# by the service user.
COPY --from=build /srv/iobench /srv/iobench
RUN install -d -o iobench -g iobench /srv/iobench/data

# Numeric, so that runtimes that check "not root" without reading /etc/passwd can (hadolint DL3066).
ARG APP_UID=1000
ARG APP_GID=1000
USER ${APP_UID}:${APP_GID}
EXPOSE 8000

# A TCP connect from bash (no curl in slim, and no Python process): the kernel completes it
# from the listen backlog, so it costs the server under load nothing, and a blocked event loop
# (the async-blocking cases) does not fail it. uvicorn listens only once `serve` has migrated
# and seeded and the app has started. Every 30 s once healthy; every 1 s during the start
# period (Docker Engine 25+; older engines probe every 30 s from the start).
HEALTHCHECK --interval=30s --timeout=3s --start-period=180s --start-interval=1s --retries=3 \
    CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/8000"]

# `serve` creates/migrates/seeds the database named by DATABASE_URL, then starts uvicorn.
# --host 0.0.0.0: inside the container; compose publishes the port on the host's loopback only.
CMD ["python", "-m", "app", "serve", "--host", "0.0.0.0", "--port", "8000"]
