"""`sikd serve` on a fresh storage root with nothing configured (SQLite, embedded broker, no Redis):
it prints the admin token, preloads the SYNTHETIC demo datasets, and a tiny experiment on them runs to
the end through HTTP. This is the README's first command."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest

from tests.service_helpers import REDIS_URL, alive, descendants, free_port, kill_tree, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow(seconds=37)]
ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(300)
def test_sikd_serve_runs_a_demo_experiment(tmp_path):
    port = free_port()
    storage = tmp_path / "sikd_data"
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("SIKD_") and k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    sikd = Path(sys.executable).with_name("sikd")
    cmd = [str(sikd), "serve", "--no-ui", "--storage", str(storage), "--port", str(port)]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True)
    reader.start()
    tree: list[int] = []
    try:
        token_line = wait_for(lambda: next((ln for ln in lines if "Admin token" in ln), None) or proc.poll(),
                              180, 0.3, what="sikd serve to start")
        assert isinstance(token_line, str), "".join(lines)
        token = re.search(r": (\S+)\s*$", token_line).group(1)
        assert (storage / "admin_token").read_text().strip() == token
        assert oct((storage / "admin_token").stat().st_mode & 0o777) == "0o600"
        assert (storage / "sikd.db").is_file() and (storage / "broker" / "queue").is_dir()
        tree = descendants(proc.pid)
        api = httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {token}"},
                           timeout=30)
        health = wait_for(lambda: (h := api.get("/health").json())["status"] == "ok" and h, 60, 0.5,
                          what="a worker to answer")
        assert "embedded" in health["broker"]["detail"] and health["database"]["detail"].startswith("sqlite")
        demo = api.get("/datasets").json()
        assert demo["count"] == 3 and all("(SYNTHETIC)" in d["name"] and d["synthetic"] for d in demo["data"])
        assert [d["num_pairs"] for d in demo["data"]] == [120, 40, 40]
        ids = [d["id"] for d in demo["data"]]
        spec = {"name": "serve-demo", "train_dataset": ids[0], "eval_datasets": ids[1:], "image_size": 32,
                "network_kwargs": {"widths": [4, 8, 16]}, "epochs": 1, "batch_size": 16, "seeds": [0],
                "feature_maps": 1}
        r = api.post("/experiments", json=spec)
        assert r.status_code == 201, r.text
        eid = r.json()["id"]

        def done():
            e = api.get(f"/experiments/{eid}").json()
            return e if e["status"] not in ("queued", "running") else None

        exp = wait_for(done, 200, 1.0, what="the demo experiment")
        assert exp["status"] == "succeeded", (exp, "".join(lines[-50:]))
        res = api.get(f"/experiments/{eid}/results").json()
        assert {r["dataset"] for r in res["data"]} == {d["name"] for d in demo["data"]}
        tree = sorted(set(tree + descendants(proc.pid)))
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # as Ctrl-C / docker stop would
            try:
                code = proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                kill_tree(proc, signal.SIGKILL)
                raise
        else:
            code = proc.returncode
        wait_for(lambda: not any(alive(p) for p in tree), 20, 0.2, what="serve's children to exit")
    assert code == 0, "".join(lines[-50:])
    assert "SIKD Studio is running" in "".join(lines)


@pytest.mark.timeout(240)
def test_compose_topology_api_worker_ui_as_separate_processes(tmp_path, pg_url, redis_namespace):
    """The containers' entry points (`sikd api`, `sikd worker`, `sikd ui`) as separate processes on the
    real Postgres and Redis, sharing one storage root, as docker-compose.yml runs them."""
    api_port, ui_port = free_port(), free_port()
    storage = tmp_path / "data"
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("SIKD_") and k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1", SIKD_DATABASE_URL=pg_url, SIKD_REDIS_URL=REDIS_URL,
               SIKD_STORAGE_DIR=str(storage), SIKD_CELERY_NAMESPACE=redis_namespace,
               SIKD_TRAIN_QUEUE=f"{redis_namespace}.train", SIKD_DEFAULT_QUEUE=f"{redis_namespace}.default",
               SIKD_ADMIN_TOKEN="compose-admin-token-123456", SIKD_DEMO_DATA="false", SIKD_HEALTH_CACHE_SECONDS="0")
    sikd = str(Path(sys.executable).with_name("sikd"))
    queues = f"{redis_namespace}.train,{redis_namespace}.default"
    cmds = {"api": [sikd, "api", "--host", "127.0.0.1", "--port", str(api_port)],
            "worker": [sikd, "worker", "--queues", queues, "--concurrency", "1", "--name", f"{redis_namespace}@%h"],
            "ui": [sikd, "ui", "--host", "127.0.0.1", "--port", str(ui_port)]}
    procs = {}
    try:
        procs["api"] = subprocess.Popen(cmds["api"], cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.STDOUT, start_new_session=True)
        client = httpx.Client(base_url=f"http://127.0.0.1:{api_port}", timeout=10,
                              headers={"Authorization": "Bearer compose-admin-token-123456"})

        def answers(url: str) -> bool:
            try:
                return httpx.get(url, timeout=3).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(lambda: answers(f"http://127.0.0.1:{api_port}/health"), 90, 0.5, what="`sikd api` to answer")
        for name in ("worker", "ui"):
            procs[name] = subprocess.Popen(cmds[name], cwd=tmp_path, env=dict(env, SIKD_API_URL=f"http://127.0.0.1:{api_port}"),
                                           stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True)
        health = wait_for(lambda: (h := client.get("/health").json())["workers"]["count"] >= 1 and h, 90, 1.0,
                          what="the worker to register")
        assert health["status"] == "ok" and "postgresql" in health["database"]["detail"]
        assert "redis" in health["broker"]["detail"].lower()
        assert client.get("/me").json()["is_admin"] is True
        wait_for(lambda: answers(f"http://127.0.0.1:{ui_port}/_stcore/health"), 90, 1.0, what="`sikd ui` to answer")
    finally:
        for proc in procs.values():
            kill_tree(proc, signal.SIGTERM)
    assert all(p.poll() is not None for p in procs.values())
