"""docker-compose.yml, docker-compose.gpus.yml, Dockerfile and .env.example, checked without a Docker
engine: every service, port, volume, healthcheck, variable and command they name must exist in the
code and settings, and the containers run the same `sikd` commands as the local `sikd serve`."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml

from sikd_core.cli import build_parser
from sikd_service.config import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
GPUS = yaml.safe_load((ROOT / "docker-compose.gpus.yml").read_text())
DOCKERFILE = (ROOT / "Dockerfile").read_text()
ENV_EXAMPLE = dict(
    line.split("=", 1) for line in (ROOT / ".env.example").read_text().splitlines()
    if line.strip() and not line.lstrip().startswith("#")
)
SERVICES = COMPOSE["services"]
UI_ENV = {"SIKD_API_URL", "SIKD_API_TOKEN"}  # read by the dashboard (ui/client.py), not by Settings


def settings_env_names() -> set[str]:
    names = set()
    for name, field in Settings.model_fields.items():
        names.add(f"SIKD_{name.upper()}")
        alias = field.validation_alias
        for choice in getattr(alias, "choices", []) or []:
            if isinstance(choice, str):
                names.add(choice.upper())
    return names


def env_of(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    return dict(env) if isinstance(env, dict) else dict(e.split("=", 1) for e in env)


def test_services_of_the_stack():
    assert set(SERVICES) == {"postgres", "redis", "api", "worker", "worker-light", "ui"}
    for name in ("postgres", "redis", "api", "ui"):
        hc = SERVICES[name]["healthcheck"]
        assert hc["test"] and hc["interval"], name
    assert SERVICES["api"]["depends_on"] == {"postgres": {"condition": "service_healthy"},
                                             "redis": {"condition": "service_healthy"}}
    for name in ("worker", "worker-light"):
        assert SERVICES[name]["depends_on"]["api"]["condition"] == "service_healthy", name


@pytest.mark.parametrize("name", ["api", "worker", "ui"])
def test_commands_are_sikd_cli_verbs(name):
    cmd = SERVICES[name]["command"]
    assert cmd[0] == "sikd"
    args = build_parser().parse_args(cmd[1:])  # raises SystemExit on an unknown verb or option
    assert args.command == name and args.component == name


def test_published_ports_match_the_commands():
    api_args = build_parser().parse_args(SERVICES["api"]["command"][1:])
    ui_args = build_parser().parse_args(SERVICES["ui"]["command"][1:])
    assert SERVICES["api"]["ports"] == ["${SIKD_API_PORT:-8000}:" + str(api_args.port)]
    assert SERVICES["ui"]["ports"] == ["${SIKD_UI_PORT:-8501}:" + str(ui_args.port)]
    assert api_args.host == "0.0.0.0" and ui_args.host == "0.0.0.0"
    assert f":{api_args.port}/health" in " ".join(SERVICES["api"]["healthcheck"]["test"])
    assert env_of(SERVICES["ui"])["SIKD_API_URL"] == f"http://api:{api_args.port}"


def test_every_environment_variable_exists_in_the_settings():
    known = settings_env_names()
    for name in ("api", "worker", "worker-light", "ui"):
        for key in env_of(SERVICES[name]):
            if name == "ui":
                assert key in UI_ENV, key
            else:
                assert key in known, f"{name}: {key} is not a Settings field"
    client = (ROOT / "ui" / "client.py").read_text()
    assert all(f'"{k}"' in client for k in UI_ENV)
    for key in ENV_EXAMPLE:
        if key.startswith("SIKD_") and key not in ("SIKD_API_PORT", "SIKD_UI_PORT"):
            assert key in known, f".env.example: {key} is not a Settings field"


def test_every_compose_variable_is_documented_in_env_example():
    text = (ROOT / "docker-compose.yml").read_text() + (ROOT / "docker-compose.gpus.yml").read_text()
    used = set(re.findall(r"(?<!\$)\$\{([A-Z0-9_]+)", text))
    assert used, "no ${VAR} found"
    missing = used - set(ENV_EXAMPLE)
    assert not missing, f"variables used in compose but not in .env.example: {sorted(missing)}"
    required = set(re.findall(r"\$\{([A-Z0-9_]+):\?", text))
    assert required == {"POSTGRES_PASSWORD", "SIKD_ADMIN_TOKEN"}


def test_volumes_and_storage_root():
    declared = set(COMPOSE["volumes"])
    for name, svc in SERVICES.items():
        for v in svc.get("volumes", []):
            assert v.split(":")[0] in declared, f"{name}: undeclared volume {v}"
    for name in ("api", "worker", "worker-light"):
        storage = env_of(SERVICES[name])["SIKD_STORAGE_DIR"]
        assert f"sikd-data:{storage}" in SERVICES[name]["volumes"], name
    assert "pgdata:/var/lib/postgresql/data" in SERVICES["postgres"]["volumes"]


def test_database_and_broker_point_at_the_stack():
    env = env_of(SERVICES["api"])
    assert env["SIKD_DATABASE_URL"].startswith("postgresql+psycopg://") and "@postgres:5432/" in env["SIKD_DATABASE_URL"]
    assert env["SIKD_REDIS_URL"] == "redis://redis:6379/0"
    assert env_of(SERVICES["worker"])["SIKD_DATABASE_URL"] == env["SIKD_DATABASE_URL"]
    s = Settings(database_url="postgresql+psycopg://u:p@postgres:5432/sikd", redis_url="redis://redis:6379/0")
    assert s.sqlalchemy_url.startswith("postgresql+psycopg://") and not s.embedded_broker


def test_worker_reserves_a_gpu_and_extra_workers_pin_theirs():
    dev = SERVICES["worker"]["deploy"]["resources"]["reservations"]["devices"][0]
    assert dev["driver"] == "nvidia" and dev["capabilities"] == ["gpu"] and dev["device_ids"] == ["0"]
    args = build_parser().parse_args(SERVICES["worker"]["command"][1:])
    assert args.concurrency == 1 and args.queues.split(",") == ["train"]
    extra = GPUS["services"]["worker-gpu1"]
    assert extra["extends"]["service"] == "worker"
    assert extra["deploy"]["resources"]["reservations"]["devices"][0]["device_ids"] == ["1"]
    extra_args = build_parser().parse_args(extra["command"][1:])
    assert extra_args.concurrency == 1 and extra_args.name != args.name and extra_args.queues.split(",") == ["train"]


def test_the_default_queue_has_its_own_light_worker():
    """Deletions (the `default` queue) must not wait behind a training job: no GPU worker takes `default`,
    a CPU worker takes only it, and every queue the settings route to has a consumer."""
    workers = {name: svc for name, svc in {**SERVICES, **GPUS["services"]}.items() if "worker" in name}
    queues = {name: set(build_parser().parse_args(svc["command"][1:]).queues.split(",")) for name, svc in workers.items()}
    light = SERVICES["worker-light"]
    assert queues["worker-light"] == {"default"} and "deploy" not in light and light["image"] == SERVICES["api"]["image"]
    assert all(q == {"train"} for name, q in queues.items() if name != "worker-light"), queues
    assert env_of(light)["SIKD_DATABASE_URL"] == env_of(SERVICES["api"])["SIKD_DATABASE_URL"]
    assert "sikd-data:/data" in light["volumes"]
    s = Settings()
    assert set().union(*queues.values()) == {s.train_queue, s.default_queue}


def test_dockerfile_targets_copies_and_entry_points():
    stages = re.findall(r"^FROM\s+\S+\s+AS\s+(\w+)", DOCKERFILE, flags=re.M)
    assert stages == ["build", "cpu", "gpu"]
    for name in ("api", "worker"):
        assert SERVICES[name]["build"] == {"context": ".", "target": {"api": "cpu", "worker": "gpu"}[name]}
    assert SERVICES["ui"]["image"] == SERVICES["api"]["image"]  # the ui runs the api's cpu image
    for src in re.findall(r"^COPY\s+(?!--from)(\S+)", DOCKERFILE, flags=re.M):
        assert (ROOT / src).exists(), f"Dockerfile copies missing {src}"
    runtime = DOCKERFILE.split(" AS cpu", 1)[1]
    cpu, gpu = runtime.split(" AS gpu", 1)
    assert "[service]" in runtime and "[test" not in runtime and "build-essential" not in runtime
    assert "gcc" not in cpu  # the api/ui image needs no compiler
    assert "gcc" in gpu and "python3-dev" in gpu  # Triton builds its launcher for the compiled teacher
    assert 'torch==${TORCH_VERSION}' in runtime and "ARG TORCH_VERSION=2.13.0" in DOCKERFILE
    for cmd in re.findall(r"^CMD\s+(\[.*\])", DOCKERFILE, flags=re.M):
        argv = yaml.safe_load(cmd)
        assert argv[0] == "sikd"
        build_parser().parse_args(argv[1:])
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert ".venv" in ignored and ".git" in ignored


def test_local_serve_runs_the_same_commands():
    """`sikd serve` starts exactly the command lines the containers exec."""
    from sikd_service import serve

    s = Settings(storage_dir=ROOT / "sikd_data")
    api = serve.api_command("0.0.0.0", 8000)
    assert api[1:4] == ["-m", "uvicorn", "api.main:create_app"]
    worker = serve.worker_command(s, "train,default", 1, "gpu0@%h")
    assert shlex.join(worker[1:]).startswith("-m celery -A worker.app worker -Q train,default -c 1")
    assert serve.ui_command(8501, "0.0.0.0")[1:4] == ["-m", "streamlit", "run"]
    src = (ROOT / "sikd_service" / "serve.py").read_text()
    assert "_start(api_command(" in src and "_start(worker_command(" in src and "_start(ui_command(" in src


def test_worker_stages_per_gpu_sets_the_default_concurrency(tmp_path):
    from sikd_service import serve

    s = Settings(storage_dir=tmp_path, worker_stages_per_gpu=3)
    cmd = serve.worker_command(s, "train")
    assert cmd[cmd.index("-c") + 1] == "3"
    explicit = serve.worker_command(s, "train", 1)  # --concurrency wins
    assert explicit[explicit.index("-c") + 1] == "1"
    assert build_parser().parse_args(["worker"]).concurrency is None


def test_sikd_serve_hands_its_own_listening_socket_to_the_api():
    """`sikd serve` binds the port itself (as uvicorn would: IPv4 for a name, IPv6 for an address with ':') and
    the API serves on the inherited descriptor; a port in use is an OSError before anything starts."""
    import socket

    from sikd_service import serve

    sock = serve.listen_socket("localhost", 0)
    try:
        assert sock.family == socket.AF_INET and sock.get_inheritable()
        cmd = serve.api_command("localhost", 1234, sock.fileno())
        assert cmd[cmd.index("--fd") + 1] == str(sock.fileno()) and "--host" not in cmd and "--port" not in cmd
        with pytest.raises(OSError):
            serve.listen_socket("127.0.0.1", sock.getsockname()[1])
    finally:
        sock.close()
