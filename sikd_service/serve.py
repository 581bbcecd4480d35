"""``sikd serve``: the whole service on one machine, with nothing else to install or start.

It applies the migrations, makes sure the admin token exists (printing it), preloads the SYNTHETIC
demo datasets, then runs the API (uvicorn), one Celery worker (``-Q train,default -c 1``) and, when
``ui/streamlit_app.py`` exists, the dashboard, as child processes. A child that dies is restarted with
exponential backoff while the others keep running (:mod:`sikd_service.supervisor`; ``GET /health`` shows
each component). Ctrl-C or SIGTERM stops them all.

SQLite at ``<storage>/sikd.db`` and the embedded broker are used unless ``DATABASE_URL`` /
``REDIS_URL`` (or their ``SIKD_`` forms) say otherwise.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from sikd_service.bootstrap import admin_token, ensure_admin, ensure_demo_datasets, redispatch_queued
from sikd_service.config import Settings, set_settings
from sikd_service.db import upgrade_database
from sikd_service.storage import ensure_layout
from sikd_service.supervisor import STATUS_FILE, Supervisor

log = logging.getLogger("sikd.serve")

UI_APP = Path(__file__).resolve().parents[1] / "ui" / "streamlit_app.py"
#: What ``streamlit run`` is given: the dashboard behind its address rules (unknown addresses say "not found").
UI_SERVER = UI_APP.with_name("server.py")


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """Linux: the child gets SIGTERM when ``sikd serve`` dies, even from SIGKILL."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _start(cmd: list[str], env: dict[str, str], name: str, pass_fds: tuple[int, ...] = ()) -> subprocess.Popen:
    log.info("starting %s: %s", name, " ".join(cmd))
    preexec = _die_with_parent if sys.platform.startswith("linux") else None
    return subprocess.Popen(cmd, env=env, start_new_session=True, preexec_fn=preexec,  # noqa: PLW1509
                            pass_fds=pass_fds)


def listen_socket(host: str, port: int) -> socket.socket:
    """The API's listening socket, opened by ``sikd serve`` itself and handed to each API process (uvicorn
    ``--fd``): while a killed API process is replaced, the kernel keeps accepting connections into the
    backlog, so clients wait for the new process instead of being refused. Raises ``OSError`` (e.g. the port
    is in use) before anything starts."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET  # as uvicorn binds --host (localhost: IPv4)
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def stop_children(children: dict[str, subprocess.Popen], grace: float = 8.0, worker_grace: float = 3.0) -> None:
    """SIGTERM everyone; a worker still busy with a training job gets SIGQUIT after ``worker_grace`` (cold
    shutdown: its job goes back to the queue and its stage resumes from the last checkpoint at the next
    start) instead of finishing the job first; whatever remains is killed."""
    for proc in children.values():
        if proc.poll() is None:
            _signal_group(proc, signal.SIGTERM)
    start = time.monotonic()
    for name, proc in children.items():
        wait = (worker_grace if name == "worker" else grace) - (time.monotonic() - start)
        try:
            proc.wait(timeout=max(0.1, wait))
        except subprocess.TimeoutExpired:
            _signal_group(proc, signal.SIGQUIT if name == "worker" else signal.SIGKILL)
    for proc in children.values():
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            _signal_group(proc, signal.SIGKILL)
            proc.wait(timeout=5)
    for proc in children.values():  # grandchildren (e.g. the worker's pool process)
        _signal_group(proc, signal.SIGKILL)


def _reset_embedded_control(settings: Settings) -> None:
    """Before our worker starts: forget broadcast bindings of workers that died without unbinding, and
    drop messages that are not jobs (pings and replies nobody will read)."""
    control = settings.broker_dir / "control"
    if control.is_dir():
        for f in control.iterdir():
            f.unlink(missing_ok=True)
    jobs = {f"{settings.train_queue}.msg", f"{settings.default_queue}.msg"}
    queue = settings.broker_dir / "queue"
    if queue.is_dir():
        for f in queue.iterdir():
            if f.name.partition(".")[2] not in jobs:
                f.unlink(missing_ok=True)


def _wait_http(url: str, timeout: float, procs: dict[str, subprocess.Popen]) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(p.poll() is not None for p in procs.values()):
            return False
        with contextlib.suppress(OSError):
            with urllib.request.urlopen(url, timeout=2) as r:  # noqa: S310 - our own local URL
                if r.status == 200:
                    return True
        time.sleep(0.3)
    return False


# The three component commands. `sikd serve` runs them as children; `sikd api|worker|ui` (the container
# entry points of docker-compose.yml) exec exactly the same command lines.
def api_command(host: str, port: int, fd: int | None = None) -> list[str]:
    """``fd``: serve on this inherited listening socket (``sikd serve``) instead of binding ``host:port``."""
    where = ["--fd", str(fd)] if fd is not None else ["--host", host, "--port", str(port)]
    return [sys.executable, "-m", "uvicorn", "api.main:create_app", "--factory", *where, "--log-level", "warning"]


def worker_command(settings: Settings, queues: str | None = None, concurrency: int | None = None,
                   name: str | None = None) -> list[str]:
    """``concurrency`` None: ``settings.worker_stages_per_gpu`` (``SIKD_WORKER_STAGES_PER_GPU``)."""
    jobs = concurrency or settings.worker_stages_per_gpu
    return [sys.executable, "-m", "celery", "-A", "worker.app", "worker", "-Q",
            queues or f"{settings.train_queue},{settings.default_queue}", "-c", str(jobs),
            "-n", name or f"sikd@{socket.gethostname()}", "--loglevel", "INFO"]


def ui_command(port: int, host: str | None = None) -> list[str]:
    cmd = [sys.executable, "-m", "streamlit", "run", str(UI_SERVER), "--server.port", str(port),
           "--server.headless", "true", "--browser.gatherUsageStats", "false", "--client.toolbarMode", "minimal"]
    return cmd + (["--server.address", host] if host else [])


def _settings(args: argparse.Namespace) -> Settings:
    overrides = {"storage_dir": Path(args.storage)} if getattr(args, "storage", None) else {}
    settings = Settings(**overrides)  # storage: --storage, else SIKD_STORAGE_DIR, else ./sikd_data
    set_settings(settings)
    ensure_layout(settings)
    return settings


def _bootstrap(settings: Settings) -> tuple[str, bool]:
    """Migrations, the admin token and the demo datasets (idempotent)."""
    upgrade_database(settings)
    token, generated = admin_token(settings)
    admin_id = ensure_admin(settings, token)
    if settings.demo_data:
        ensure_demo_datasets(settings, admin_id)
    redispatch_queued(settings)
    return token, generated


def _child_env(settings: Settings) -> dict[str, str]:
    env = dict(os.environ, SIKD_STORAGE_DIR=str(settings.storage_dir), PYTHONUNBUFFERED="1")
    env.pop("SIKD_ADMIN_TOKEN", None)  # the database holds its hash; children need no secret
    root = Path(__file__).resolve().parents[1]
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(root), env.get("PYTHONPATH", "")) if p)
    return env


def run_component(args: argparse.Namespace) -> int:
    """``sikd api`` / ``sikd worker`` / ``sikd ui``: one part of the service in the foreground (exec)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.component == "ui":
        if not UI_APP.is_file():
            print(f"the dashboard is not installed ({UI_APP} is missing)", file=sys.stderr)
            return 1
        cmd = ui_command(args.port, args.host)
        os.execvpe(cmd[0], cmd, dict(os.environ))
    settings = _settings(args)
    env = _child_env(settings)
    if args.component == "api":
        token, generated = _bootstrap(settings)
        if generated:
            print(f"Admin token (new, saved in {settings.admin_token_file}): {token}", flush=True)
        cmd = api_command(args.host, args.port)
    else:
        if settings.embedded_broker:
            _reset_embedded_control(settings)
        cmd = worker_command(settings, args.queues, args.concurrency, args.name)
    os.execvpe(cmd[0], cmd, env)
    return 0  # pragma: no cover - exec does not return


def make_supervisor(settings: Settings) -> Supervisor:
    """The supervisor of ``sikd serve``, its backoff from ``SIKD_RESTART_BACKOFF_SECONDS``,
    ``SIKD_RESTART_BACKOFF_CAP_SECONDS`` and ``SIKD_RESTART_STABLE_SECONDS``."""
    return Supervisor(settings.storage_dir / STATUS_FILE, base=settings.restart_backoff_seconds,
                      cap=settings.restart_backoff_cap_seconds, stable_after=settings.restart_stable_seconds)


def serve(args: argparse.Namespace) -> int:
    """Run the service until Ctrl-C / SIGTERM; returns the exit code."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("sikd.serve").setLevel(logging.INFO)  # restarts are news even when `sikd` runs quiet
    settings = _settings(args)
    token, generated = _bootstrap(settings)
    if settings.embedded_broker:
        _reset_embedded_control(settings)

    env = _child_env(settings)
    host, port = args.host, int(args.port)
    api_url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}"
    sup = make_supervisor(settings)
    children = sup.procs  # refreshed after every poll (a restarted child is a new process)
    stopping = {"signal": None}

    def on_signal(signum: int, _frame: object) -> None:
        stopping["signal"] = signum

    try:
        listener = listen_socket(host, port)
    except OSError as e:
        print(f"SIKD Studio cannot listen on {host}:{port}: {e.strerror or e} (is another service using the "
              "port? choose another with --port)", file=sys.stderr)
        return 1
    fd = listener.fileno()
    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    code = 0
    try:
        sup.add("api", lambda: _start(api_command(host, port, fd), env, "api", pass_fds=(fd,)))
        if not args.no_worker:
            def start_worker() -> subprocess.Popen:
                if settings.embedded_broker:
                    _reset_embedded_control(settings)
                return _start(worker_command(settings), env, "worker")

            sup.add("worker", start_worker)
        if not args.no_ui and UI_APP.is_file():
            ui_env = dict(env, SIKD_API_URL=api_url, SIKD_API_TOKEN=token)
            sup.add("ui", lambda: _start(ui_command(args.ui_port), ui_env, "ui"))
        children = sup.procs
        if not _wait_http(f"{api_url}/health", 60, children):
            dead = [n for n, p in children.items() if p.poll() is not None]
            print(f"SIKD Studio failed to start ({', '.join(dead) or 'the API did not answer'})", file=sys.stderr)
            return 1
        lines = [f"SIKD Studio is running. API: {api_url}  (docs: {api_url}/docs)"]
        if "ui" in children:
            lines.append(f"Dashboard: http://{host}:{args.ui_port}")
        lines.append(f"Admin token{' (new, saved in ' + str(settings.admin_token_file) + ')' if generated else ''}: "
                     f"{token}")
        lines.append(f"Storage: {settings.storage_dir}   Database: "
                     f"{'SQLite' if settings.sqlalchemy_url.startswith('sqlite') else 'external'}   Broker: "
                     f"{'embedded' if settings.embedded_broker else 'Redis'}   Ctrl-C stops everything.")
        print("\n".join(lines), flush=True)
        while stopping["signal"] is None:  # a dead component is restarted (backoff); the others keep running
            sup.poll()
            children = sup.procs
            time.sleep(0.2)
    finally:
        stop_children(sup.procs)
        listener.close()
        sup.clear()
        for s, h in old.items():
            signal.signal(s, h)
    return code
