"""The real service in subprocesses for the dashboard tests: ``sikd serve`` on free ports and a temp storage.

``Stack`` starts ``sikd serve`` (API, and optionally the worker and the dashboard) with SQLite and the
embedded broker under its own storage root, waits until the API answers, and stops the whole process tree
(leaving nothing behind, even when a test fails). ``Api`` is a tiny httpx client of that API for creating
test data (the tests create everything through the REST API, as a user would).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.service_helpers import free_port, kill_tree, unique, zip_folder

ROOT = Path(__file__).resolve().parents[2]
ADMIN_TOKEN = "ui-test-admin-token-0123456789"


class Api:
    """A small REST client: ``get``/``post``/``delete`` return the JSON body and check the status."""

    def __init__(self, url: str, token: str):
        self.url, self.token = url, token
        self.http = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=60)

    def call(self, method: str, path: str, expect: int | tuple[int, ...] = (200, 201, 204), **kw: Any) -> Any:
        r = self.http.request(method, path, **kw)
        ok = (expect,) if isinstance(expect, int) else expect
        assert r.status_code in ok, f"{method} {path}: {r.status_code} {r.text[:2000]}"
        return r.json() if r.content and r.headers.get("content-type", "").startswith("application/json") else r

    def get(self, path: str, **kw: Any) -> Any:
        return self.call("GET", path, **kw)

    def post(self, path: str, **kw: Any) -> Any:
        return self.call("POST", path, **kw)

    def delete(self, path: str, **kw: Any) -> Any:
        return self.call("DELETE", path, **kw)

    def new_user(self, prefix: str = "ui") -> Api:
        """A fresh user (as admin): sees only its own experiments and datasets."""
        body = self.post("/users", json={"name": unique(prefix), "is_admin": False})
        return Api(self.url, body["token"])

    def upload(self, data: bytes, name: str) -> dict[str, Any]:
        return self.post("/datasets", files={"file": (f"{name}.zip", data, "application/zip")}, data={"name": name},
                         expect=201)

    def wait_experiment(self, exp_id: int, timeout: float, statuses: tuple[str, ...] = ("succeeded",)) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            exp = self.get(f"/experiments/{exp_id}")
            if exp["status"] in statuses:
                return exp
            if exp["status"] in ("failed", "cancelled") or time.monotonic() > deadline:
                stages = [(s["kind"], s["seed"], s["status"], s["error"]) for s in exp["stages"]]
                pytest.fail(f"experiment {exp_id} is {exp['status']} (waited for {statuses}); "
                            f"error {exp['error']!r}; stages {stages}")
            time.sleep(0.5)

    def close(self) -> None:
        self.http.close()


class Stack:
    """``sikd serve`` in a subprocess (its own process group); ``stop()`` kills the whole tree."""

    def __init__(self, storage: Path, *, worker: bool, ui: bool, log: Path, env: dict[str, str] | None = None):
        self.storage, self.log_path = storage, log
        self.port, self.ui_port = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.ui_url = f"http://127.0.0.1:{self.ui_port}"
        full_env = {k: v for k, v in os.environ.items()
                    if not k.startswith("SIKD_") and k not in ("DATABASE_URL", "REDIS_URL")}
        full_env.update(SIKD_STORAGE_DIR=str(storage), SIKD_ADMIN_TOKEN=ADMIN_TOKEN, SIKD_DEMO_DATA="false",
                        SIKD_MAX_ACTIVE_EXPERIMENTS="1000", SIKD_PROGRESS_INTERVAL_SECONDS="0.2",
                        SIKD_HEALTH_CACHE_SECONDS="1", SIKD_BROKER_POLLING_INTERVAL="0.1",
                        OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
        full_env.update(env or {})
        cmd = [sys.executable, "-m", "sikd_core.cli", "serve", "--port", str(self.port),
               "--ui-port", str(self.ui_port)]
        if not worker:
            cmd.append("--no-worker")
        if not ui:
            cmd.append("--no-ui")
        self._log = open(log, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=full_env, stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        self.admin = Api(self.url, ADMIN_TOKEN)

    def log_tail(self, n: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def wait_ready(self, timeout: float = 90, ui: bool = False) -> Stack:
        deadline = time.monotonic() + timeout
        urls = [f"{self.url}/health"] + ([f"{self.ui_url}/_stcore/health"] if ui else [])
        pending = list(urls)
        while pending:
            if self.proc.poll() is not None:
                pytest.fail(f"sikd serve exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                if httpx.get(pending[0], timeout=2).status_code == 200:
                    pending.pop(0)
                    continue
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"{pending[0]} did not answer within {timeout:.0f}s:\n{self.log_tail()}")
            time.sleep(0.3)
        return self

    def stop(self) -> None:
        try:
            self.admin.close()
            if self.proc.poll() is None:
                kill_tree(self.proc, signal.SIGTERM, timeout=20)
            else:
                kill_tree(self.proc, signal.SIGKILL, timeout=5)
        finally:
            self._log.close()


def phantom_zip(root: Path, domain: str, n: int, seed: int, size: int = 48) -> bytes:
    """A zip of SYNTHETIC phantoms (images/ + masks/ in one folder), made with sikd_core's generator."""
    from sikd_core.data import generate_phantoms

    folder = generate_phantoms(root / f"{domain}_{n}_{seed}_{size}", domain=domain, n=n, seed=seed, size=size)
    return zip_folder(folder, top=domain)


def tiny_spec(train: int | str | list[str], cross: list[int], **kw: Any) -> dict[str, Any]:
    """The smallest experiment that exercises everything (a few seconds on a CPU)."""
    spec: dict[str, Any] = dict(name="tiny", train_dataset=train, eval_datasets=cross, image_size=32, epochs=2,
                                network_kwargs={"widths": [4, 8, 16]}, batch_size=4, lr=5e-3, seeds=[0],
                                device="cpu", feature_maps=1)
    spec.update(kw)
    return spec
