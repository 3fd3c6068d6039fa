"""Static checks of docker/: the compose file, the image's Dockerfile, its entrypoint and lock.

There is no Docker engine on the CI machine, so these read the files as data (YAML via
``yaml.safe_load``, the Dockerfile line by line) and run the entrypoint with real bash for the
paths that need no cluster. The compose file is checked against the rules of docs/cluster.md:
loopback-only ports, credentials only from ``.env``, Ray token auth on every node, named volumes,
health checks, one GPU reservation per worker.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
DOCKER = ROOT / "docker"
COMPOSE = DOCKER / "compose.yaml"
DOCKERFILE = DOCKER / "Dockerfile"
ENTRYPOINT = DOCKER / "entrypoint.sh"
LOCK = DOCKER / "requirements.lock"
SECRET_WORDS = re.compile(r"PASSWORD|TOKEN|SECRET|API_KEY|ACCESS_KEY", re.IGNORECASE)
INTERPOLATION = re.compile(r"^\$\{[A-Z_][A-Z0-9_]*(:?[-?][^}]*)?\}$")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict), f"{COMPOSE} is not a YAML mapping"
    return data


def _services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


def _workers(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {n: s for n, s in _services(compose).items() if n.startswith("ray-worker")}


def _ray_nodes(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {n: s for n, s in _services(compose).items() if n.startswith("ray-")}


def _env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def _dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs with line continuations joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


# ---------------------------------------------------------------- compose.yaml


def test_compose_has_the_services_of_the_topology(compose: dict[str, Any]) -> None:
    services = _services(compose)
    for name in ("postgres", "mlflow", "ray-head"):
        assert name in services, f"{COMPOSE}: service {name!r} missing"
    assert len(_workers(compose)) >= 1, f"{COMPOSE}: no ray-worker* service"
    for name, svc in services.items():
        assert "image" in svc, f"{COMPOSE}: service {name!r} has no image"
        assert re.fullmatch(r"[a-zA-Z0-9._-]+", name)


def test_compose_publishes_ports_on_loopback_only(compose: dict[str, Any]) -> None:
    published = 0
    for name, svc in _services(compose).items():
        for port in svc.get("ports", []):
            published += 1
            if isinstance(port, dict):
                host_ip = port.get("host_ip")
            else:
                ip = re.match(r"^(\d{1,3}(?:\.\d{1,3}){3}):", str(port))
                host_ip = ip[1] if ip else None
            assert host_ip == "127.0.0.1", (
                f"{COMPOSE}: service {name!r} publishes {port!r}; bind it to 127.0.0.1")
    assert published >= 2, "the MLflow server and the Ray dashboard should be reachable"
    assert "ports" not in _services(compose)["postgres"], "PostgreSQL needs no published port"


def test_compose_takes_credentials_from_env_file_only(compose: dict[str, Any]) -> None:
    for name, svc in _services(compose).items():
        for key, value in _env(svc).items():
            if not SECRET_WORDS.search(key):
                continue
            if key.endswith(("_PATH", "_FILE")):
                assert value.startswith("/run/secrets/"), (
                    f"{COMPOSE}: {name}.{key}={value!r} should point at a mounted secret")
            elif key == "RAY_AUTH_MODE":
                continue
            else:
                assert INTERPOLATION.match(value), (
                    f"{COMPOSE}: {name}.{key} holds a literal value; "
                    f"take it from .env as ${{{key}}}")
    pg = _env(_services(compose)["postgres"])
    assert pg["POSTGRES_PASSWORD"].startswith("${POSTGRES_PASSWORD:?"), (
        "a missing password must stop compose with an error, not default to something")


def test_env_example_has_every_variable_and_no_secret(compose: dict[str, Any]) -> None:
    example = DOCKER / ".env.example"
    values = dict(
        line.split("=", 1) for line in example.read_text().splitlines()
        if line.strip() and not line.startswith("#"))
    used = set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*)", COMPOSE.read_text()))
    missing = used - set(values)
    assert not missing, f"{example} does not document {sorted(missing)}"
    for key, value in values.items():
        if SECRET_WORDS.search(key):
            assert value == "", f"{example}: {key} must be left empty, got a value"
    ignored = (DOCKER / ".gitignore").read_text().splitlines()
    assert ".env" in ignored and "secrets/" in ignored, (
        "docker/.env and docker/secrets/ must be git-ignored")


def test_compose_keeps_ray_token_auth_on_every_node(compose: dict[str, Any]) -> None:
    secrets = compose.get("secrets", {})
    nodes = _ray_nodes(compose)
    assert {"ray-head"} < set(nodes)
    for name, svc in nodes.items():
        env = _env(svc)
        assert env.get("RAY_AUTH_MODE") == "token", f"{name}: RAY_AUTH_MODE must be 'token'"
        path = env.get("RAY_AUTH_TOKEN_PATH", "")
        secret = path.removeprefix("/run/secrets/")
        assert path.startswith("/run/secrets/") and secret in svc.get("secrets", []), (
            f"{name}: RAY_AUTH_TOKEN_PATH={path!r} is not one of the service's mounted secrets")
        assert secret in secrets and secrets[secret]["file"].startswith("./secrets/"), (
            f"secret {secret!r} must be read from docker/secrets/ (git-ignored)")


def test_compose_uses_named_volumes_for_state(compose: dict[str, Any]) -> None:
    declared = set(compose.get("volumes") or {})

    def mounts(name: str) -> dict[str, str]:
        out = {}
        for vol in _services(compose)[name].get("volumes", []):
            source, target = str(vol).split(":")[:2]
            out[target] = source
        return out

    pg_source = mounts("postgres").get("/var/lib/postgresql/data")
    assert pg_source in declared, "PostgreSQL's data directory must be a named volume"
    mlflow_env = _env(_services(compose)["mlflow"])
    art_target = mlflow_env["MLFLOW_ARTIFACTS_DESTINATION"]
    assert mounts("mlflow").get(art_target) in declared, (
        f"the MLflow artifacts destination {art_target} must be a named volume")


def test_compose_health_checks_and_start_order(compose: dict[str, Any]) -> None:
    services = _services(compose)
    for name in ("postgres", "mlflow", "ray-head"):
        test = services[name].get("healthcheck", {}).get("test")
        assert test and test[0] in ("CMD", "CMD-SHELL"), f"{name}: no healthcheck test"
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])
    assert services["mlflow"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in _workers(compose):
        assert services[name]["depends_on"]["ray-head"]["condition"] == "service_healthy"


def test_compose_reserves_one_distinct_gpu_per_worker(compose: dict[str, Any]) -> None:
    workers = _workers(compose)
    ids = []
    for name, svc in workers.items():
        devices = svc["deploy"]["resources"]["reservations"]["devices"]
        assert len(devices) == 1, f"{name}: expected one device reservation"
        dev = devices[0]
        assert dev["driver"] == "nvidia" and "gpu" in dev["capabilities"], name
        assert ("device_ids" in dev) != ("count" in dev), f"{name}: device_ids or count, not both"
        ids.extend(dev.get("device_ids", []))
        assert svc["command"] == ["worker"]
        assert int(svc.get("shm_size", "8gb").split("gb")[0].split(":-")[-1]) >= 1
    assert len(ids) == len(set(ids)), f"two workers reserve the same GPU: {ids}"
    head_env = _env(compose["services"]["ray-head"])
    assert head_env["RAY_HEAD_NUM_GPUS"] == "0"


def test_compose_mlflow_serves_artifacts_on_postgres(compose: dict[str, Any]) -> None:
    svc = _services(compose)["mlflow"]
    assert svc["command"] == ["mlflow"]
    script = ENTRYPOINT.read_text()
    for needle in ("postgresql+psycopg2://", "--serve-artifacts", "--artifacts-destination",
                   "--backend-store-uri", "--allowed-hosts"):
        assert needle in script, f"{ENTRYPOINT}: the mlflow role lacks {needle}"
    assert "mlflow" in _env(svc)["MLFLOW_ALLOWED_HOSTS"], (
        "the workers reach the server as http://mlflow:5000; that Host header must be allowed")


# ---------------------------------------------------------------- Dockerfile


def test_dockerfile_runs_as_non_root_user() -> None:
    users = [arg for word, arg in _dockerfile_instructions() if word == "USER"]
    assert users, f"{DOCKERFILE}: no USER instruction"
    assert users[-1] not in ("root", "0", "0:0"), f"{DOCKERFILE}: final USER is {users[-1]}"


def test_dockerfile_bakes_in_no_credentials() -> None:
    for word, arg in _dockerfile_instructions():
        if word in ("ENV", "ARG"):
            names = re.findall(r"([A-Za-z_][A-Za-z0-9_]*)=", arg) or [arg.split("=")[0]]
            bad = [n for n in names if SECRET_WORDS.search(n)]
            assert not bad, f"{DOCKERFILE}: {word} {bad} would bake a credential into the image"
        if word in ("COPY", "ADD"):
            assert ".env" not in shlex.split(arg), f"{DOCKERFILE}: copies a .env file"
            assert "secrets" not in arg, f"{DOCKERFILE}: copies secrets"


def test_dockerfile_pins_the_project_torch_on_cuda_and_python_311() -> None:
    instructions = _dockerfile_instructions()
    args = dict(
        a.split("=", 1) for w, a in instructions if w == "ARG" and "=" in a)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    torch_pin = next(Requirement(d) for d in project["dependencies"]
                     if canonicalize_name(Requirement(d).name) == "torch")
    assert str(torch_pin.specifier) == f"=={args['TORCH_VERSION']}", (
        f"image torch {args['TORCH_VERSION']} != pyproject {torch_pin.specifier}")
    assert re.fullmatch(r"https://download\.pytorch\.org/whl/cu\d+", args["TORCH_INDEX"])
    assert args["CUDA_IMAGE"].startswith("nvidia/cuda:")
    cuda_tag = re.search(r"nvidia/cuda:(\d+)\.(\d+)", args["CUDA_IMAGE"])
    assert args["TORCH_INDEX"].endswith(f"cu{cuda_tag[1]}{cuda_tag[2]}"), (
        "the torch CUDA build and the base image's CUDA version differ")
    assert args["PYTHON_VERSION"] == "3.11"
    assert any(w == "ENTRYPOINT" and "medn-entrypoint" in a for w, a in instructions)
    stages = [a for w, a in instructions if w == "FROM"]
    assert len(stages) >= 3, "expected a build stage and a slim runtime stage"


def test_dockerfile_copies_only_existing_allowed_paths() -> None:
    ignore = (DOCKER / "Dockerfile.dockerignore").read_text().splitlines()
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    assert "*" in ignore, "the build context should be an allow-list"
    for word, arg in _dockerfile_instructions():
        if word != "COPY" or "--from=" in arg:
            continue
        sources = [s for s in shlex.split(arg) if not s.startswith("--")][:-1]
        for src in sources:
            assert src in allowed, f"{DOCKERFILE}: COPY {src} is excluded by the .dockerignore"
            if src != "README.md":  # written by the lead; pyproject.toml names it
                assert (ROOT / src).exists(), f"{DOCKERFILE}: COPY {src}: no such path"


def test_lock_pins_every_runtime_dependency() -> None:
    pins = {}
    for line in LOCK.read_text().splitlines():
        if line and not line.startswith("#"):
            req = Requirement(line)
            spec = list(req.specifier)
            assert len(spec) == 1 and spec[0].operator == "==", f"{LOCK}: {line!r} is not pinned"
            pins[canonicalize_name(req.name)] = spec[0].version
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for dep in project["dependencies"]:
        req = Requirement(dep)
        name = canonicalize_name(req.name)
        if name == "torch":
            assert name not in pins, "torch comes from the CUDA index, not the lock"
            continue
        assert name in pins, f"{LOCK} lacks {name}: run docker/lock_requirements.py"
        assert req.specifier.contains(pins[name], prereleases=True), (
            f"{LOCK}: {name}=={pins[name]} does not satisfy pyproject's {req}")


# ---------------------------------------------------------------- entrypoint.sh


def _entrypoint(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    base = {"PATH": os.environ["PATH"], "HOME": "/nonexistent-medn-home"}
    return subprocess.run(["bash", str(ENTRYPOINT), *args], env={**base, **(env or {})},
                          capture_output=True, text=True, timeout=60)


def test_entrypoint_is_valid_bash() -> None:
    subprocess.run(["bash", "-n", str(ENTRYPOINT)], check=True)


def test_entrypoint_refuses_to_start_ray_without_a_token(tmp_path: Path) -> None:
    for role in ("head", "worker"):
        done = _entrypoint(role, env={"RAY_AUTH_MODE": "token",
                                      "RAY_AUTH_TOKEN_PATH": str(tmp_path / "missing")})
        assert done.returncode == 64, done.stderr
        assert "RAY_AUTH_TOKEN_PATH" in done.stderr and "missing" in done.stderr


def test_entrypoint_mlflow_role_names_the_missing_credential() -> None:
    done = _entrypoint("mlflow", env={"POSTGRES_USER": "u", "POSTGRES_DB": "d"})
    assert done.returncode == 64
    assert "POSTGRES_PASSWORD" in done.stderr
    done = _entrypoint("mlflow", env={"POSTGRES_PASSWORD": "x", "POSTGRES_DB": "d"})
    assert done.returncode != 0 and "POSTGRES_USER" in done.stderr


def test_entrypoint_runs_any_other_command() -> None:
    done = _entrypoint("echo", "hello from medn")
    assert done.returncode == 0 and done.stdout.strip() == "hello from medn"
