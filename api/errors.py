"""Errors as JSON: every error body has a readable ``detail``; dataset errors add ``problems`` and ``files``."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from sikd_core.errors import DatasetError, SpecError


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
