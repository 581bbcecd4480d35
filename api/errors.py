"""Errors as JSON: every error body has a readable ``detail``; dataset errors add ``problems`` and ``files``."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from sikd_core.errors import DatasetError, SpecError

log = logging.getLogger("sikd.api")


class ApiError(Exception):
    """An HTTP error with a readable ``detail`` and optional extra JSON fields."""

    def __init__(self, status_code: int, detail: str, headers: dict[str, str] | None = None, **extra: Any):
        super().__init__(detail)
        self.status_code = status_code
        self.detail = detail
        self.headers = headers
        self.extra = extra


def not_found(kind: str, ident: object) -> ApiError:
    return ApiError(404, f"{kind} {ident} not found")


def dataset_error(e: DatasetError, status_code: int = 422) -> ApiError:
    return ApiError(status_code, e.message, problems=e.problems, files=e.files)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
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
