"""Fixtures of the service unit tests: every test runs against SQLite AND the real Postgres.

Each backend gets a fresh database per test session (the Postgres one is dropped at the end); each test
gets empty tables, its own storage folder and an app whose enqueued jobs are recorded instead of sent
(``jobs``), so tests can run the worker's task functions themselves on the real rows.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import pytest

from tests.service_helpers import (
    ADMIN_TOKEN,
    clear_tables,
    create_pg_database,
    drop_pg_database,
    new_user,
    unique,
    upload,
)


@pytest.fixture(scope="session", params=["sqlite", "postgres"])
def database_url(request, tmp_path_factory) -> Iterator[str]:
    from sikd_service.config import Settings
    from sikd_service.db import dispose_engines, upgrade_database

    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'sikd.db'}"
        upgrade_database(Settings(database_url=url, storage_dir=tmp_path_factory.mktemp("migrate")))
        yield url
        dispose_engines()
        return
    url = create_pg_database()
    try:
        upgrade_database(Settings(database_url=url, storage_dir=tmp_path_factory.mktemp("migrate")))
        yield url
    finally:
        drop_pg_database(url)


class Jobs(list):
    """Jobs the code under test enqueued, as ``(task name, stage id or args)`` lists per message."""

    def names(self) -> list[list[str]]:
        return [[name for name, _ in msg] for msg in self]


_SERVICE_ENV = ("DATABASE_URL", "REDIS_URL", "SIKD_DATABASE_URL", "SIKD_REDIS_URL", "SIKD_ADMIN_TOKEN")


def make_settings(database_url: str, storage: Any) -> Any:
    """Test settings on ``database_url`` with empty tables and a fresh storage folder, made current."""
    from sikd_service.celery_app import configure
    from sikd_service.config import Settings, set_settings
    from sikd_service.storage import ensure_layout

    s = Settings(database_url=database_url, storage_dir=storage, admin_token=ADMIN_TOKEN,
                 celery_namespace=unique("sikdtest"), train_queue=unique("train"), default_queue=unique("default"),
                 heartbeat_seconds=0.2, progress_interval_seconds=0.0, cancel_check_seconds=0.0, stale_heartbeat_seconds=30,
                 checkpoint_interval_seconds=0,
                 health_cache_seconds=0, worker_ping_timeout=0.3,
                 status_cache_seconds=0)  # reads see every write at once (test_status_reads.py turns it on)
    clear_tables(s)
    ensure_layout(s)
    set_settings(s)
    configure(s)
    return s


@pytest.fixture
def settings(database_url, tmp_path, monkeypatch) -> Iterator[Any]:
    from sikd_service.config import set_settings

    for var in _SERVICE_ENV:
        monkeypatch.delenv(var, raising=False)
    yield make_settings(database_url, tmp_path / "storage")
    set_settings(None)


def record_jobs(monkeypatch: pytest.MonkeyPatch) -> Jobs:
    """Record what would be sent to the broker (ids only) instead of sending it."""
    from celery.canvas import _chain

    from sikd_service import dispatch

    sent = Jobs()

    def record(sig: Any) -> None:
        parts = sig.tasks if isinstance(sig, _chain) else [sig]
        sent.append([(p.task, tuple(p.args)) for p in parts])

    monkeypatch.setattr(dispatch, "_send", record)
    return sent


@contextlib.contextmanager
def module_service(database_url: str, storage: Any) -> Iterator[tuple[Any, Any, Jobs]]:
    """For a module-scoped fixture: ``(settings, client, jobs)`` as the ``settings``, ``client`` and ``jobs``
    fixtures give them (the service's environment cleared, a fresh storage, the broker recorded), kept for
    the whole block; the settings are unset after it."""
    from fastapi.testclient import TestClient

    from api.main import create_app
    from sikd_service.config import set_settings

    with pytest.MonkeyPatch.context() as mp:
        for var in _SERVICE_ENV:
            mp.delenv(var, raising=False)
        settings = make_settings(database_url, storage)
        jobs = record_jobs(mp)
        with TestClient(create_app(settings)) as client:
            yield settings, client, jobs
        set_settings(None)


@pytest.fixture
def jobs(monkeypatch) -> Jobs:
    """Record what would be sent to the broker (ids only) instead of sending it."""
    return record_jobs(monkeypatch)


@pytest.fixture
def client(settings, jobs) -> Iterator[Any]:
    from fastapi.testclient import TestClient

    from api.main import create_app

    with TestClient(create_app(settings)) as c:
        yield c


@pytest.fixture
def admin(client) -> dict[str, str]:
    return {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture
def alice(client, admin) -> dict[str, str]:
    return new_user(client, admin, "alice")


@pytest.fixture
def bob(client, admin) -> dict[str, str]:
    return new_user(client, admin, "bob")


# ---------------------------------------------------------------------------------------------- data
@pytest.fixture(scope="session")
def phantom_zips(tmp_path_factory) -> dict[str, bytes]:
    """SYNTHETIC phantom datasets as zips: a training domain (16 images) and an unseen one (6), 32 px."""
    from sikd_core.data import generate_phantoms
    from tests.service_helpers import zip_folder

    root = tmp_path_factory.mktemp("phantom_zips")
    out = {}
    for domain, n, seed in (("vendor_a", 16, 1), ("vendor_b", 6, 2)):
        folder = generate_phantoms(root / domain, domain=domain, n=n, seed=seed, size=32)
        out[domain] = zip_folder(folder, top=domain)
    return out


@pytest.fixture
def datasets(client, alice, phantom_zips) -> dict[str, int]:
    """Alice's two phantom datasets (ids)."""
    ids = {}
    for domain, data in phantom_zips.items():
        r = upload(client, alice, data, name=domain)
        assert r.status_code == 201, r.text
        ids[domain] = r.json()["id"]
    return ids
