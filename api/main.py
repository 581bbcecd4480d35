"""The FastAPI application: ``create_app()`` (``uvicorn api.main:create_app --factory``)."""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio.to_thread
from fastapi import FastAPI

from api.auth import TokenCache
from api.errors import install_error_handlers
from api.guard import RequestGuard
from api.routes import (
    datasets,
    estimates,
    experiment_meta,
    experiments,
    health,
    sweeps,
    trained_models,
    users,
)
from api.routes.health import HealthChecker, service_version
from api.schemas import error_responses
from sikd_service import crud
from sikd_service import experiments as experiments_service
from sikd_service.config import Settings, get_settings
from sikd_service.db import session_factory, session_scope, upgrade_database
from sikd_service.predict import ModelCache
from sikd_service.storage import ensure_layout

log = logging.getLogger("sikd.api")

DESCRIPTION = """Train and compare segmentation models with **shape-intensity knowledge distillation** (SIKD):
upload datasets, start experiments (baseline vs SIKD, intra- and cross-dataset), follow their progress,
read results and overlays, download models and segment new images.

Authenticate with `Authorization: Bearer <token>` (the admin token is printed by `sikd serve`)."""


def _warm_up() -> None:
    try:
        log.info("warmed the spec checks in %.2f s", experiments_service.warm_up())
    except Exception:  # noqa: BLE001 - a warm-up must never take the API down
        log.exception("warm-up failed (the first POST /experiments will be slower)")


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app; at start it applies the database migrations and registers ``SIKD_ADMIN_TOKEN``."""
    settings = settings or get_settings()

    from sikd_service.celery_app import configure

    configure(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Blocking handlers run on anyio's pool (40 threads by default): one thread per database connection
        # the pool can open, so a handler never waits for a connection (or times out) while holding a thread.
        anyio.to_thread.current_default_thread_limiter().total_tokens = settings.api_threads
        ensure_layout(settings)
        upgrade_database(settings)
        if settings.admin_token:
            with session_scope(settings) as s:
                crud.ensure_admin(s, token=settings.admin_token)
        # The first spec check and cost estimate set up PyTorch's meta kernels (seconds): done now, beside the
        # requests (the API answers meanwhile), instead of in the first POST /experiments.
        warm = threading.Thread(target=_warm_up, name="sikd-warm-up")
        warm.start()
        yield
        warm.join(timeout=60)  # never exit under it: torch aborts a process whose thread it is still running in

    app = FastAPI(title="SIKD Studio", version=service_version(), description=DESCRIPTION, lifespan=lifespan)
    app.state.settings = settings
    app.state.sessionmaker = session_factory(settings)
    app.state.model_cache = ModelCache(settings.predict_cache_size)
    app.state.health = HealthChecker(settings)
    app.state.token_cache = TokenCache(settings.token_cache_seconds)
    install_error_handlers(app)
    app.add_middleware(RequestGuard)  # token and body size, before any body is read
    # Every route documents the errors it really answers (schemathesis checks them): the guard's 401 and 413 and
    # a malformed body's 400, and the 422 in its real shape (``detail`` a string, not FastAPI's list).
    app.include_router(health.router, responses=error_responses(400, 413))
    for r in (users.router, datasets.router, estimates.router, experiments.router, experiment_meta.router,
              sweeps.router, trained_models.router):
        app.include_router(r, responses=error_responses(400, 401, 413, 422))

    @app.get("/", include_in_schema=False)
    def root() -> dict[str, str]:
        return {"name": "SIKD Studio", "docs": "/docs", "health": "/health"}

    return app
