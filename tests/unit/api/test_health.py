"""GET /health: database, broker and worker checks, without a token."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.timeout(60)


def test_health_without_workers_is_degraded(client, settings):
    h = client.get("/health").json()
    assert h["status"] == "degraded" and h["version"]
    assert h["database"]["ok"] is True and h["database"]["detail"].startswith(("sqlite", "postgresql"))
    assert h["broker"] == {"ok": True, "detail": "embedded filesystem broker"}
    assert str(settings.storage_dir) not in str(h)  # /health is public: no server paths
    assert h["workers"] == {"ok": False, "count": 0, "names": [], "devices": {}}


def test_health_reports_an_unreachable_database(tmp_path):
    from api.routes.health import HealthChecker
    from sikd_service.celery_app import configure
    from sikd_service.config import Settings

    s = Settings(storage_dir=tmp_path, database_url="postgresql://nobody@127.0.0.1:1/none")
    configure(s)
    h = HealthChecker(s).check()
    assert h.status == "degraded" and not h.database.ok and "postgresql" in h.database.detail
    assert "OperationalError" in h.database.detail


def test_health_pings_redis_for_real(tmp_path):
    """A Redis that does not answer is reported down, by type. (One that went away after answering, when a
    pooled connection used to say 'ok': tests/integration/test_recovery.py.)"""
    from api.routes.health import HealthChecker
    from sikd_service.celery_app import configure
    from sikd_service.config import Settings
    from tests.service_helpers import free_port

    s = Settings(storage_dir=tmp_path, redis_url=f"redis://127.0.0.1:{free_port()}/0", health_cache_seconds=0)
    configure(s)
    try:
        h = HealthChecker(s).check()
        assert h.status == "degraded" and h.broker.ok is False and h.broker.detail == "redis: ConnectionError", h
        assert h.workers.ok is False
    finally:
        configure(Settings())
