"""docker-compose.yml, the Dockerfile and .env.example, checked against the code they configure.

No Docker engine is needed: the files are parsed here, and their settings, commands and
options are checked against app.settings, app.cli, app.catalogue and the loadtests CLI.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import typer
import yaml

from app.catalogue import DRIVERS
from app.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
ENV_EXAMPLE = ROOT / ".env.example"
DOCKERIGNORE = ROOT / ".dockerignore"

#: Variables that configure compose itself (interpolation), not the app.
COMPOSE_ONLY_VARIABLES = {"POSTGRES_PASSWORD"}
#: Connections Postgres must have beyond the pools: superuser_reserved_connections (3),
#: the migration/seed connections of `serve`, and a psql session or two.
CONNECTION_HEADROOM = 10
POOLED_DRIVERS = [driver.name for driver in DRIVERS if driver.pooled]


# --- parsing helpers --------------------------------------------------------------------------

_VARIABLE = re.compile(r"\$(?:\$|\{(?P<braced>[^}]*)\}|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))")
_BRACED = re.compile(r"^(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>.*))?$", re.DOTALL)


def interpolate(value: Any, variables: dict[str, str]) -> Any:
    """Compose's ``${VAR}``, ``${VAR:-default}``, ``${VAR-default}``, ``${VAR:?err}`` and ``$$``."""
    if isinstance(value, dict):
        return {key: interpolate(item, variables) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item, variables) for item in value]
    if not isinstance(value, str):
        return value

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        if match.group("bare"):
            return variables.get(match.group("bare"), "")
        parsed = _BRACED.match(match.group("braced"))
        assert parsed, f"unsupported compose interpolation {match.group(0)!r}"
        name, op, arg = parsed["name"], parsed["op"], parsed["arg"] or ""
        current = variables.get(name)
        if op in (":-", "-"):
            unset = current is None or (op == ":-" and current == "")
            return arg if unset else current  # type: ignore[return-value]
        if op in (":?", "?"):
            assert current, f"{name} is required: {arg}"
            return current
        if op in (":+", "+"):
            return arg if current else ""
        return current or ""

    return _VARIABLE.sub(replace, value)


def interpolation_defaults(text: str) -> dict[str, str]:
    """``{VAR: default}`` for every ``${VAR:-default}`` in ``text``."""
    return dict(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*):?-([^}]*)\}", text))


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=value lines of a .env file (comments and blank lines skipped, quotes stripped)."""
    env = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        assert sep, f"{path.name}: not KEY=value: {line!r}"
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        env[key.strip().removeprefix("export ").strip()] = value
    return env


ENV_EXAMPLE_VALUES = read_env_file(ENV_EXAMPLE)


def compose(variables: dict[str, str] | None = None) -> dict[str, Any]:
    """docker-compose.yml, interpolated with ``variables`` (default: every ``${VAR:-default}`` unset)."""
    return interpolate(yaml.safe_load(COMPOSE_FILE.read_text()), variables or {})


def service(name: str, variables: dict[str, str] | None = None) -> dict[str, Any]:
    return compose(variables)["services"][name]


def environment(svc: dict[str, Any]) -> dict[str, str]:
    env = svc.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.partition("=")[::2] for item in env)
    return {key: "" if value is None else str(value) for key, value in env.items()}


def as_argv(command: str | list[str]) -> list[str]:
    return command.split() if isinstance(command, str) else [str(part) for part in command]


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
    if "command" in svc:
        return as_argv(svc["command"])
    cmd = effective(build_target(name), "CMD")
    assert cmd, f"the {name} image has no CMD"
    return exec_form(cmd)


def build_target(name: str) -> str:
    """The Dockerfile stage a compose service builds (the last stage when it names none)."""
    build = service(name)["build"]
    if isinstance(build, dict):
        assert Path(build.get("context", ".")).resolve() == ROOT or build.get("context", ".") == "."
        assert build.get("dockerfile", "Dockerfile") == "Dockerfile"
        if "target" in build:
            return build["target"]
    return list(dockerfile_stages())[-1]


def published_ports(svc: dict[str, Any]) -> list[tuple[str | None, int, int]]:
    """``(host_ip, host_port, container_port)`` for each entry of a service's ``ports``."""
    result = []
    for entry in svc.get("ports", []):
        if isinstance(entry, dict):
            result.append((entry.get("host_ip"), int(entry["published"]), int(entry["target"])))
            continue
        entry = str(entry).split("/")[0]
        parts = entry.rsplit(":", 2)
        assert len(parts) == 3, f"publish with an explicit host IP, e.g. 127.0.0.1:8000:8000, not {entry!r}"
        result.append((parts[0].strip("[]"), int(parts[1]), int(parts[2])))
    return result


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
        return Settings(_env_file=None)  # type: ignore[call-arg]
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


def max_connections(command: str | list[str]) -> int:
    match = re.search(r"max_connections=(\d+)", " ".join(as_argv(command)))
    assert match, f"postgres command sets no max_connections: {command!r}"
    return int(match.group(1))


def total_pool_connections(settings: Settings) -> int:
    """The most connections the app can hold: every pooled driver's max, in every worker."""
    return settings.workers * sum(settings.pool_size(name).max for name in POOLED_DRIVERS)


# --- services ---------------------------------------------------------------------------------


def test_the_three_services_exist_and_up_starts_only_postgres_and_app() -> None:
    services = compose()["services"]
    assert {"postgres", "app", "loadtest"} <= set(services)
    assert "profiles" not in services["postgres"]
    assert "profiles" not in services["app"]
    assert services["loadtest"]["profiles"] == ["loadtest"]


def test_postgres_is_internal_and_has_a_healthcheck() -> None:
    postgres = service("postgres")
    assert "ports" not in postgres, "Postgres must stay on the compose network"
    assert postgres.get("network_mode") in (None, "bridge")
    test = as_argv(postgres["healthcheck"]["test"])
    assert "pg_isready" in test
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


@pytest.mark.parametrize("variables", ["compose defaults", ".env.example"])
def test_max_connections_exceeds_the_largest_total_pool(variables: str, clean_env: pytest.MonkeyPatch) -> None:
    values = {} if variables == "compose defaults" else ENV_EXAMPLE_VALUES
    settings = settings_from(environment(service("app", values)), clean_env)
    needed = total_pool_connections(settings) + CONNECTION_HEADROOM
    assert len(POOLED_DRIVERS) >= 1
    assert max_connections(service("postgres", values)["command"]) > needed


def test_max_connections_covers_the_app_and_a_harness_started_service(clean_env: pytest.MonkeyPatch) -> None:
    """Without --target the harness starts its own service (a profile's pool_max, one worker) beside the app."""
    profiles = pytest.importorskip("loadtests.profiles")
    assert environment(service("loadtest")).get("DATABASE_URL") == environment(service("app"))["DATABASE_URL"]
    app = settings_from(environment(service("app")), clean_env)
    largest = max(profile.pool_max for profile in profiles.PROFILES.values())
    harness = settings_from({"IOBENCH_POOL_MAX": str(largest)}, clean_env)
    needed = total_pool_connections(app) + total_pool_connections(harness) + CONNECTION_HEADROOM
    assert max_connections(service("postgres")["command"]) > needed


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
    configured = settings_from(defaults, clean_env)
    builtin = Settings(_env_file=None)  # type: ignore[call-arg]
    for key in defaults:
        field = setting_field(key)
        if key in PROFILE_SHAPED:
            expected = getattr(PROFILES["default"], PROFILE_SHAPED[key])
            assert getattr(configured, field) == expected, f"{key}: compose default differs from the default profile"
        else:
            assert getattr(configured, field) == getattr(builtin, field), f"{key}: compose default differs from Settings"


# --- ports and commands -------------------------------------------------------------------------


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


def test_healthchecks_probe_ping_on_the_served_port() -> None:
    from app.main import create_app

    # Building the app opens no connection (that's the lifespan's job); its schema lists the routes.
    assert "/ping" in create_app(Settings(_env_file=None)).openapi()["paths"]  # type: ignore[call-arg]
    port = option_value(container_argv("app"), "--port")
    image_check = effective(build_target("app"), "HEALTHCHECK")
    assert image_check, "the app image has no HEALTHCHECK"
    image_argv = exec_form(image_check.split(" CMD ", 1)[1]) if " CMD " in image_check else exec_form(image_check.removeprefix("CMD "))
    compose_argv = as_argv(service("app")["healthcheck"]["test"])
    assert compose_argv[0] == "CMD"
    for argv in (image_argv, compose_argv[1:]):
        assert argv[0] == "python", "slim has no curl: probe with python"
        assert f"http://127.0.0.1:{port}/ping" in " ".join(argv)


def test_loadtest_shares_the_app_network_and_targets_localhost() -> None:
    from loadtests.ab import ALLOWED_HOSTS

    loadtest = service("loadtest")
    assert loadtest["network_mode"] == "service:app"
    assert "ports" not in loadtest and "networks" not in loadtest
    argv = container_argv("loadtest")
    target = urlsplit(option_value(argv, "--target") or "")
    assert target.hostname in ALLOWED_HOSTS, "the default command measures the app container, locally"
    assert target.port == published_ports(service("app"))[0][2]
    assert option_value(argv, "--profile") == "default"
    # Runs go to --out, else the harness's runs/ under the work dir: that must be the ./runs bind mount.
    workdir = effective(build_target("loadtest"), "WORKDIR") or "/"
    out = Path(workdir, option_value(argv, "--out") or "runs")
    mounts = {Path(str(volume).split(":")[1]): str(volume).split(":")[0] for volume in loadtest["volumes"]}
    assert any(out == mount or mount in out.parents for mount, source in mounts.items() if source.rstrip("/") == "./runs"), (out, mounts)


# --- the Dockerfile ---------------------------------------------------------------------------


def test_dockerfile_copies_only_files_that_exist_and_are_not_ignored() -> None:
    ignored = {line.strip().rstrip("/") for line in DOCKERIGNORE.read_text().splitlines() if line.strip() and not line.startswith("#")}
    copies = [args for stage in dockerfile_stages().values() for name, args in stage if name in ("COPY", "ADD")]
    assert copies
    for args in copies:
        parts = args.split()
        if any(part.startswith("--from=") for part in parts):
            continue
        sources = [part for part in parts if not part.startswith("--")][:-1]
        for source in sources:
            assert list(ROOT.glob(source)), f"COPY {source}: no such file in the repository"
            assert source.rstrip("/") not in ignored, f"COPY {source}: excluded by .dockerignore"


def test_app_image_is_slim_non_root_and_serves_from_srv_iobench() -> None:
    stage = build_target("app")
    assert build_target("app") == list(dockerfile_stages())[-1], "the app is the default (last) target"
    chain = stage_base_chain(stage)
    assert dockerfile_stages()[chain[-1]][0][1].endswith(("python:3.11-slim", "${PYTHON_IMAGE}"))
    assert re.search(r"ARG PYTHON_IMAGE=python:3\.11-slim\b", DOCKERFILE.read_text())
    for target in ("app", "loadtest"):
        user = effective(build_target(target), "USER")
        assert user and user.split(":")[0] not in ("root", "0"), f"{target} image runs as root"
    assert effective(stage, "WORKDIR") == "/srv/iobench"
    text = DOCKERFILE.read_text()
    assert "pip install -c constraints.txt" in text
    for needed in ("alembic.ini", "migrations"):
        assert any(needed in args for args in instructions("build", "COPY") + instructions(stage, "COPY")), needed


def test_loadtest_image_has_ab_and_runs_the_harness() -> None:
    stage = build_target("loadtest")
    runs = " ".join(args for name in stage_base_chain(stage) for args in instructions(name, "RUN"))
    assert re.search(r"apt-get install\b.*\bapache2-utils\b", runs)
    assert exec_form(effective(stage, "ENTRYPOINT") or "[]") == ["python", "-m", "loadtests"]
    assert exec_form(effective(stage, "CMD") or "[]") == ["--target", "http://127.0.0.1:8000", "--profile", "default"]


def test_dockerignore_keeps_local_state_out_of_the_image() -> None:
    ignored = {line.strip().rstrip("/").removeprefix("**/") for line in DOCKERIGNORE.read_text().splitlines()}
    assert {".venv", "runs", ".iobench", "data", "__pycache__", ".git", ".pytest_cache", ".env"} <= ignored


# --- .env.example -----------------------------------------------------------------------------


def test_env_example_keys_are_settings_with_their_default_values(clean_env: pytest.MonkeyPatch) -> None:
    unknown = [key for key in ENV_EXAMPLE_VALUES if setting_field(key) is None and key not in COMPOSE_ONLY_VARIABLES]
    assert not unknown, f".env.example keys that are not settings: {unknown}"
    app_env = {key: value for key, value in ENV_EXAMPLE_VALUES.items() if setting_field(key)}
    documented = settings_from(app_env, clean_env)
    builtin = Settings(_env_file=None)  # type: ignore[call-arg]
    for key in app_env:
        field = setting_field(key)
        assert getattr(documented, field) == getattr(builtin, field), f"{key} is not the default in .env.example"
    # The compose password in .env.example is the one compose falls back to.
    assert interpolation_defaults(COMPOSE_FILE.read_text())["POSTGRES_PASSWORD"] == ENV_EXAMPLE_VALUES["POSTGRES_PASSWORD"]


# --- the loadtests CLI (being written) ----------------------------------------------------------


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


# --- docker compose's own validation (when a compose client is installed) -----------------------


def _compose_client() -> list[str] | None:
    docker = shutil.which("docker")
    if docker:
        probe = subprocess.run([docker, "compose", "version"], capture_output=True, timeout=20, check=False)
        if probe.returncode == 0:
            return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    return [legacy] if legacy else None


def test_docker_compose_config_validates_the_file(tmp_path: Path) -> None:
    client = _compose_client()
    if client is None:
        pytest.skip("no docker compose client (plugin or docker-compose) installed")
    env = {key: value for key, value in os.environ.items() if not key.startswith(("IOBENCH_", "POSTGRES_"))}
    # config parses and validates locally: no engine is contacted.
    result = subprocess.run(
        [*client, "--project-directory", str(ROOT), "-f", str(COMPOSE_FILE), "config", "-q"],
        capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path, check=False,
    )
    assert result.returncode == 0, result.stderr
