"""Liveness of the service: database, broker and workers (no auth)."""

from __future__ import annotations

import threading
import time
from importlib.metadata import PackageNotFoundError, version

from fastapi import APIRouter, Request
from sqlalchemy import text

from api.schemas import CheckPublic, HealthPublic, WorkersPublic
from sikd_service.config import Settings
from sikd_service.db import get_engine

router = APIRouter(tags=["health"])


def service_version() -> str:
    try:
        return version("sikd-studio")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        import sikd_core

        return getattr(sikd_core, "__version__", "unknown")


class HealthChecker:
    """Runs the checks at most once per ``health_cache_seconds`` (the worker ping waits for replies)."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self._lock = threading.Lock()
        self._cached: tuple[float, HealthPublic] | None = None

    def check(self) -> HealthPublic:
        with self._lock:
            now = time.monotonic()
            if self._cached and now - self._cached[0] < self.settings.health_cache_seconds:
                return self._cached[1]
            result = self._check()
            self._cached = (time.monotonic(), result)
            return result

    def _database(self) -> CheckPublic:
        engine = get_engine(self.settings)
        where = engine.url.render_as_string(hide_password=True)
        try:
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            return CheckPublic(ok=True, detail=f"{engine.dialect.name} at {where}")
        except Exception as e:  # noqa: BLE001 - reported, not raised
            return CheckPublic(ok=False, detail=f"{engine.dialect.name} at {where}: {type(e).__name__}: {e}")

    def _broker(self) -> CheckPublic:
        from sikd_service.celery_app import app

        s = self.settings
        where = (f"redis (namespace {s.celery_namespace})" if s.redis_url
                 else f"embedded filesystem broker at {s.broker_dir}")
        try:
            with app.connection_for_write() as conn:
                conn.ensure_connection(max_retries=1, timeout=2)
            return CheckPublic(ok=True, detail=where)
        except Exception as e:  # noqa: BLE001
            return CheckPublic(ok=False, detail=f"{where}: {type(e).__name__}: {e}")

    def _workers(self) -> WorkersPublic:
        from sikd_service.celery_app import app

        try:  # answers like a ping, with each worker's accelerator (worker/control.py)
            replies = app.control.broadcast("sikd_devices", reply=True,
                                            timeout=self.settings.worker_ping_timeout) or []
        except Exception:  # noqa: BLE001
            replies = []
        answers = {name: body for r in replies for name, body in r.items()}
        names = sorted(answers)
        devices = {n: b for n, b in answers.items() if isinstance(b, dict) and "accelerator" in b}
        return WorkersPublic(ok=bool(names), count=len(names), names=names, devices=devices)

    def _check(self) -> HealthPublic:
        db, broker = self._database(), self._broker()
        workers = self._workers() if broker.ok else WorkersPublic(ok=False, count=0, names=[])
        ok = db.ok and broker.ok and workers.ok
        return HealthPublic(status="ok" if ok else "degraded", database=db, broker=broker, workers=workers,
                            version=service_version())


@router.get("/health", response_model=HealthPublic)
def health(request: Request) -> HealthPublic:
    """``ok`` when the database and broker answer and at least one worker replies to a ping."""
    return request.app.state.health.check()
