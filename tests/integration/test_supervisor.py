"""`sikd serve` heals itself: SIGKILL of the worker's main process leaves the API answering, the supervisor
restarts the worker (with backoff), ``/health`` reports the restart, and the experiment finishes."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.service_helpers import descendants, free_port, kill_tree, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow(seconds=23)]


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _serve_env(*, demo_data: bool = False) -> dict[str, str]:
    """The test's environment without the session's SIKD_/database/broker settings: `sikd serve`'s own defaults."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIKD_") and k not in ("DATABASE_URL", "REDIS_URL")}
    env["PYTHONUNBUFFERED"] = "1"
    if not demo_data:
        env["SIKD_DEMO_DATA"] = "false"
    return env


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM `sikd serve` (it stops its children); SIGKILL the tree, and fail, if it is not gone in 60 s."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            kill_tree(proc, signal.SIGKILL)
            raise


def _worker_main(serve_pid: int) -> int | None:
    """The celery worker's main process: the child of ``sikd serve`` running ``celery ... worker``."""
    for pid in descendants(serve_pid):
        try:
            ppid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if ppid == serve_pid and " celery " in f" {_cmdline(pid)} " and " worker " in _cmdline(pid):
            return pid
    return None


@pytest.mark.timeout(420)
def test_killing_the_worker_keeps_the_api_up_and_the_experiment_finishes(tmp_path):
    port = free_port()
    storage = tmp_path / "sikd_data"
    env = dict(_serve_env(demo_data=True), OMP_NUM_THREADS="1", SIKD_STALE_HEARTBEAT_SECONDS="20",
               SIKD_CHECKPOINT_INTERVAL_SECONDS="1")
    sikd = Path(sys.executable).with_name("sikd")
    proc = subprocess.Popen([str(sikd), "serve", "--no-ui", "--storage", str(storage), "--port", str(port)],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True).start()
    try:
        token_line = wait_for(lambda: next((ln for ln in lines if "Admin token" in ln), None) or proc.poll(),
                              180, 0.3, what="sikd serve to start")
        assert isinstance(token_line, str), "".join(lines)
        token = re.search(r": (\S+)\s*$", token_line).group(1)
        api = httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {token}"},
                           timeout=30)
        health = wait_for(lambda: (h := api.get("/health").json())["status"] == "ok" and h, 90, 0.5,
                          what="a worker to answer")
        assert health["components"]["worker"]["state"] == "up" and health["components"]["worker"]["restarts"] == 0
        assert health["components"]["api"]["state"] == "up"
        ids = [d["id"] for d in api.get("/datasets").json()["data"]]
        spec = {"name": "heal", "train_dataset": ids[0], "eval_datasets": ids[1:2], "image_size": 32,
                "network_kwargs": {"widths": [4, 8, 16]}, "epochs": 3, "batch_size": 8, "seeds": [0],
                "methods": ["baseline"], "feature_maps": 0}
        r = api.post("/experiments", json=spec)
        assert r.status_code == 201, r.text
        eid = r.json()["id"]
        wait_for(lambda: api.get(f"/experiments/{eid}").json()["status"] == "running", 120, 0.5,
                 what="the experiment to start")
        worker = _worker_main(proc.pid)
        assert worker is not None, [(p, _cmdline(p)) for p in descendants(proc.pid)]
        os.kill(worker, signal.SIGKILL)
        # the API keeps answering while the worker is down and restarted
        t_end = time.monotonic() + 5
        while time.monotonic() < t_end:
            assert api.get(f"/experiments/{eid}").status_code == 200
            time.sleep(0.2)
        assert proc.poll() is None, "".join(lines[-30:])
        healed = wait_for(lambda: (c := api.get("/health").json()["components"]["worker"])["restarts"] >= 1
                          and c["state"] == "up" and c, 60, 0.5, what="the worker to be restarted")
        assert healed["last_exit"] == -signal.SIGKILL
        assert _worker_main(proc.pid) not in (None, worker)

        def done():
            e = api.get(f"/experiments/{eid}").json()
            return e if e["status"] not in ("queued", "running") else None

        exp = wait_for(done, 240, 1.0, what="the experiment to finish after the worker was killed")
        assert exp["status"] == "succeeded", (exp, "".join(lines[-60:]))
        assert any("worker stopped unexpectedly" in ln and "restarting it" in ln for ln in lines), "".join(lines[-40:])
    finally:
        _stop(proc)


def _api_process(serve_pid: int) -> int | None:
    """The API: the child of ``sikd serve`` running uvicorn."""
    for pid in descendants(serve_pid):
        if " uvicorn " in f" {_cmdline(pid)} ":
            return pid
    return None




@pytest.mark.timeout(240)
def test_a_request_sent_while_the_api_restarts_waits_for_it_instead_of_being_refused(tmp_path):
    """`sikd serve` holds the API's listening socket: a request sent right after the API process is SIGKILLed
    queues in the socket's backlog and is answered by the new process; nothing is refused. The new process
    serves on the inherited socket (uvicorn --fd), and a second `sikd serve` on the same port says why it cannot
    start."""
    port = free_port()
    sikd = Path(sys.executable).with_name("sikd")
    proc = subprocess.Popen([str(sikd), "serve", "--no-ui", "--no-worker", "--storage", str(tmp_path / "data"),
                             "--port", str(port)], cwd=tmp_path, env=_serve_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True).start()
    url = f"http://127.0.0.1:{port}/health"
    try:
        wait_for(lambda: any("Admin token" in ln for ln in lines) or proc.poll() is not None, 180, 0.3,
                 what="sikd serve to start")
        assert proc.poll() is None, "".join(lines)
        api = wait_for(lambda: _api_process(proc.pid), 10, what="the API process")
        assert " --fd " in _cmdline(api), _cmdline(api)
        for _ in range(2):
            os.kill(api, signal.SIGKILL)
            t = time.monotonic()
            r = httpx.get(url, timeout=60)  # no retry: a refused connection raises ConnectError
            assert r.status_code == 200, r.text
            assert time.monotonic() - t < 30
            new = _api_process(proc.pid)
            assert new not in (None, api), "the answer must come from a new API process"
            api = new
        assert any("api stopped unexpectedly" in ln for ln in lines), "".join(lines[-30:])

        second = subprocess.run([str(sikd), "serve", "--no-ui", "--no-worker", "--storage", str(tmp_path / "other"),
                                 "--port", str(port)], cwd=tmp_path, env=_serve_env(), capture_output=True,
                                text=True, timeout=120)
        assert second.returncode == 1
        assert f"cannot listen on 127.0.0.1:{port}" in second.stderr and "--port" in second.stderr, second.stderr
    finally:
        _stop(proc)
