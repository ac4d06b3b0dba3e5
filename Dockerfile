# syntax=docker/dockerfile:1
#
# iobench images. One Dockerfile, two targets that share every Python layer:
#
#   app       (the default, last stage)  the FastAPI service:  docker build -t iobench .
#   loadtest  the same environment + ApacheBench (ab):          docker build --target loadtest -t iobench-load .
#             (a stage rather than loadtests/Dockerfile: one build context, one dependency install)
#
# docker-compose.yml builds both from here (build.target), so the Python dependencies are
# resolved and installed once, in the `build` stage, and both images run the exact same code.

ARG PYTHON_IMAGE=python:3.11-slim

# ---------------------------------------------------------------------------------------------
# runtime: what both images start from: the interpreter, the unprivileged user, the work dir.
FROM ${PYTHON_IMAGE} AS runtime

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

# uid/gid 1000 by default: the loadtest container writes reports into the ./runs bind mount,
# and 1000 is the first user on most Linux hosts, so the files come out owned by you.
ARG APP_UID=1000
ARG APP_GID=1000
RUN groupadd --gid "${APP_GID}" iobench \
 && useradd --uid "${APP_UID}" --gid iobench --home-dir /srv/iobench --no-create-home \
        --shell /usr/sbin/nologin iobench

# The source tree lives here (alembic.ini's script_location and db/migrate.py both resolve
# migrations/ next to the code); data/ (the seeded files) is relative to it.
WORKDIR /srv/iobench

# ---------------------------------------------------------------------------------------------
# build: the virtualenv with the pinned dependencies and the project.
FROM runtime AS build

RUN python -m venv "${VIRTUAL_ENV}"

# Dependencies first, from pyproject + constraints only, so editing the code does not
# reinstall ~150 MB of wheels. (Every pin comes from constraints.txt, as in `make`.)
COPY pyproject.toml constraints.txt ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
 && pip install -c constraints.txt -r /tmp/requirements.txt

# Then the project itself (no deps: they are all there). alembic.ini and migrations/ must be in
# the image: `serve` migrates on start, and `alembic upgrade head` works from a shell in it.
COPY alembic.ini ./
COPY app ./app
COPY db ./db
COPY loadtests ./loadtests
COPY migrations ./migrations
RUN pip install --no-deps -c constraints.txt . \
 && pip check \
 && rm -rf build ./*.egg-info

# ---------------------------------------------------------------------------------------------
# loadtest: the harness and ab. It targets 127.0.0.1:8000 because compose runs it inside the
# app container's network namespace (network_mode: service:app): the harness refuses any
# target that is not this machine, on purpose.
FROM runtime AS loadtest

# apache2-utils is the Debian package that ships `ab`; nothing else from apt is needed.
RUN apt-get update \
 && apt-get install -y --no-install-recommends apache2-utils \
 && rm -rf /var/lib/apt/lists/*

COPY --from=build /opt/venv /opt/venv
COPY --from=build /srv/iobench /srv/iobench
# runs/: the harness writes each run to runs/<UTC stamp>-<profile>/ (plus a runs/latest link)
# relative to the work dir; compose bind-mounts ./runs here. data/: the seeded files, written
# when the harness starts a service itself (no --target).
RUN install -d -o iobench -g iobench /srv/iobench/runs /srv/iobench/data

USER iobench
ENTRYPOINT ["python", "-m", "loadtests"]
# No --out: the harness's --out is the run folder itself, so a fixed one would mix every
# run's results.jsonl; the default gives each run its own stamped folder under runs/.
CMD ["--target", "http://127.0.0.1:8000", "--profile", "default"]

# ---------------------------------------------------------------------------------------------
# app: the service. Last stage, so a plain `docker build .` builds it.
FROM runtime AS app

COPY --from=build /opt/venv /opt/venv
# Code stays root-owned (read-only to the service); only data/ (seeded files) and .iobench/
# (embedded Postgres, unused when DATABASE_URL is set) are writable by the service user.
COPY --from=build /srv/iobench /srv/iobench
RUN install -d -o iobench -g iobench /srv/iobench/data /srv/iobench/.iobench

USER iobench
EXPOSE 8000

# slim has no curl: probe /ping with the standard library (urlopen raises on non-2xx -> exit 1).
# start-period covers `serve` migrating and seeding 100k rows before uvicorn listens.
HEALTHCHECK --interval=10s --timeout=5s --start-period=180s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/ping', timeout=4)"]

# `serve` creates/migrates/seeds the database named by DATABASE_URL, then starts uvicorn.
# --host 0.0.0.0: inside the container; compose publishes the port on the host's loopback only.
CMD ["python", "-m", "app", "serve", "--host", "0.0.0.0", "--port", "8000"]
