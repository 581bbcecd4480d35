"""The real thing: Postgres and Redis of the test machine and Celery workers as subprocesses.

Everything is named per test session (database, Redis key prefix, control exchange, queue names) and
removed at the end; worker processes are stopped with their whole process tree, also when a test fails.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.service_helpers import (
    ADMIN_TOKEN,
    REDIS_URL,
    clear_tables,
    create_pg_database,
    drop_pg_database,
    kill_tree,
    unique,
    wait_for,
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    url = create_pg_database()
    try:
        yield url
    finally:
        drop_pg_database(url)


@pytest.fixture(scope="session")
def redis_namespace() -> Iterator[str]:
    import redis

    ns = unique("sikdit")
    r = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3)
    try:
        r.ping()
    except redis.RedisError as e:
        pytest.fail(f"the integration tests need Redis at {REDIS_URL} (set SIKD_TEST_REDIS_URL): {e}")
    yield ns
    keys = list(r.scan_iter(match=f"{ns}:*", count=1000))  # ours only: the prefix is unique to this session
    if keys:
        r.delete(*keys)
    r.close()


@pytest.fixture
def stack_settings(pg_url, redis_namespace, tmp_path) -> Iterator[Any]:
    from sikd_service.config import Settings, set_settings
    from sikd_service.db import upgrade_database

    s = Settings(database_url=pg_url, redis_url=REDIS_URL, celery_namespace=redis_namespace,
                 train_queue=f"{redis_namespace}.train", default_queue=f"{redis_namespace}.default",
                 storage_dir=tmp_path / "storage", admin_token=ADMIN_TOKEN, heartbeat_seconds=0.5,
                 stale_heartbeat_seconds=6, progress_interval_seconds=0.2, cancel_check_seconds=0.0, checkpoint_interval_seconds=0,
                 worker_ping_timeout=1.0, health_cache_seconds=0, reconcile_seconds=1.0,
                 status_cache_seconds=0)
    upgrade_database(s)
    clear_tables(s)
    set_settings(s)
    yield s
    set_settings(None)


class Worker:
    """``celery worker -c 1`` in its own process group, configured through the environment."""

    def __init__(self, settings: Any, name: str, log: Path):
        self.settings, self.name, self.log = settings, name, log
        self.proc: subprocess.Popen | None = None

    def env(self) -> dict[str, str]:
        s = self.settings
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("SIKD_") and k not in ("DATABASE_URL", "REDIS_URL")}
        env.update(SIKD_DATABASE_URL=s.database_url, SIKD_REDIS_URL=s.redis_url, SIKD_CELERY_NAMESPACE=s.celery_namespace,
                   SIKD_TRAIN_QUEUE=s.train_queue, SIKD_DEFAULT_QUEUE=s.default_queue,
                   SIKD_STORAGE_DIR=str(s.storage_dir), SIKD_HEARTBEAT_SECONDS=str(s.heartbeat_seconds),
                   SIKD_STALE_HEARTBEAT_SECONDS=str(s.stale_heartbeat_seconds),
                   SIKD_PROGRESS_INTERVAL_SECONDS=str(s.progress_interval_seconds),
                   SIKD_CANCEL_CHECK_SECONDS=str(s.cancel_check_seconds),
                   SIKD_CHECKPOINT_INTERVAL_SECONDS=str(s.checkpoint_interval_seconds),
                   SIKD_RECONCILE_SECONDS=str(s.reconcile_seconds), SIKD_MAX_STAGE_ATTEMPTS=str(s.max_stage_attempts),
                   OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
        return env

    def start(self) -> Worker:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        start_mark = self.log.stat().st_size if self.log.exists() else 0
        out = open(self.log, "ab")  # noqa: SIM115 - owned by the process
        cmd = [sys.executable, "-m", "celery", "-A", "worker.app", "worker", "-Q",
               f"{self.settings.train_queue},{self.settings.default_queue}", "-c", "1", "-n", f"{self.name}@%h",
               "-l", "INFO", "--without-mingle", "--without-gossip"]
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=self.env(), stdout=out, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        out.close()

        def ready() -> bool:
            assert self.proc is not None and self.proc.poll() is None, self.tail()
            return b" ready." in self.log.read_bytes()[start_mark:]

        wait_for(ready, 90, 0.2, what=f"worker {self.name} to start")
        return self

    def tail(self, n: int = 60) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:]) if self.log.exists() else ""

    def sigkill(self) -> None:
        """Kill the worker and its pool process at once, as a crash or an OOM kill would."""
        assert self.proc is not None
        kill_tree(self.proc, sig=9, timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            kill_tree(self.proc, timeout=15)
        elif self.proc is not None:
            kill_tree(self.proc, timeout=1)


@pytest.fixture
def start_worker(stack_settings, tmp_path) -> Iterator[Any]:
    """``start_worker(name)`` starts a worker; every one started is stopped at the end of the test."""
    started: list[Worker] = []

    def start(name: str | None = None) -> Worker:
        w = Worker(stack_settings, name or unique("itw"), tmp_path / "worker.log")
        started.append(w)
        return w.start()

    yield start
    for w in started:
        w.stop()


@pytest.fixture
def api(stack_settings) -> Iterator[Any]:
    from fastapi.testclient import TestClient

    from api.main import create_app

    with TestClient(create_app(stack_settings)) as c:
        yield c
