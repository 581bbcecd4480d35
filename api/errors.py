"""Errors as JSON: every error body has a readable ``detail``; dataset errors add ``problems`` and ``files``."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from sikd_core.errors import DatasetError, SpecError
from sikd_service.errors import ServiceError

log = logging.getLogger("sikd.api")


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ServiceError)
    async def _api_error(request: Request, exc: ServiceError) -> JSONResponse:
        return JSONResponse({"detail": exc.detail, **exc.extra}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(DatasetError)
    async def _dataset_error(request: Request, exc: DatasetError) -> JSONResponse:
        return JSONResponse({"detail": exc.message, "problems": exc.problems, "files": exc.files}, status_code=422)

    @app.exception_handler(SpecError)
    async def _spec_error(request: Request, exc: SpecError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=422)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        lines = [f"{'.'.join(str(p) for p in e.get('loc', ())) or 'request'}: {e.get('msg')}" for e in errors]
        return JSONResponse({"detail": "; ".join(lines) or "invalid request",
                             "errors": [{k: e[k] for k in ("loc", "msg", "type") if k in e} for e in errors]},
                            status_code=422)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error in %s %s", request.method, request.url.path)
        return JSONResponse({"detail": f"internal server error ({type(exc).__name__}); see the server log"},
                            status_code=500)
