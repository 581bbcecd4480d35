"""Liveness of the service: database, broker and workers (no auth)."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import asdict
from importlib.metadata import PackageNotFoundError, version

from fastapi import APIRouter, Request
from sqlalchemy import text

from api.schemas_service import CheckPublic, ComponentPublic, HealthPublic, WorkersPublic
from sikd_service.config import Settings
from sikd_service.db import get_engine
from sikd_service.supervisor import read_status

router = APIRouter(tags=["health"])
log = logging.getLogger("sikd.api.health")


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
        try:
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            return CheckPublic(ok=True, detail=engine.dialect.name)
        except Exception as e:  # noqa: BLE001 - reported (by type only: /health is public), logged in full
            log.warning("health: database check failed: %s", e)
            return CheckPublic(ok=False, detail=f"{engine.dialect.name}: {type(e).__name__}")

    def _broker(self) -> CheckPublic:
        """A real round trip (Redis PING on a fresh connection; the embedded broker: a file written in its
        queue folder): a pooled connection opened before the broker went away would say nothing."""
        from sikd_service.broker_state import ping

        s = self.settings
        where = "redis" if s.redis_url else "embedded filesystem broker"
        try:
            ping(s)
            return CheckPublic(ok=True, detail=where)
        except Exception as e:  # noqa: BLE001
            log.warning("health: broker check failed: %s", e)
            return CheckPublic(ok=False, detail=f"{where}: {type(e).__name__}")

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
        status = read_status(self.settings.storage_dir)
        components = ({name: ComponentPublic(**asdict(c)) for name, c in status.items()}  # type: ignore[arg-type]
                      if status is not None else None)
        ok = db.ok and broker.ok and workers.ok and all(c.state == "up" for c in (components or {}).values())
        return HealthPublic(status="ok" if ok else "degraded", database=db, broker=broker, workers=workers,
                            version=service_version(), components=components)


@router.get("/health", response_model=HealthPublic)
def health(request: Request) -> HealthPublic:
    """``ok`` when the database and broker answer and at least one worker replies to a ping."""
    return request.app.state.health.check()
