"""Errors as JSON: every error body has a readable ``detail``; dataset errors add ``problems`` and ``files``."""

from __future__ import annotations

import errno
import logging
import re
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from sikd_core.errors import DatasetError, SpecError
from sikd_service.errors import ServiceError

log = logging.getLogger("sikd.api")


def without_server_paths(obj: Any, storage_dir: Path) -> Any:
    """``obj`` (str, list, dict) with the server's paths taken out: a file inside an upload being checked is
    named relative to the upload, anything else under the storage root as ``<storage>/...``. Errors name
    the user's files, never where the server keeps them."""
    if isinstance(obj, str):
        root = re.escape(str(storage_dir))
        obj = re.sub(root + r"/tmp/[^/\s'\"]+/(?:data/|upload/)?", "", obj)
        return re.sub(root, "<storage>", obj)
    if isinstance(obj, list):
        return [without_server_paths(v, storage_dir) for v in obj]
    if isinstance(obj, dict):
        return {k: without_server_paths(v, storage_dir) for k, v in obj.items()}
    return obj


def _json(request: Request, body: dict[str, Any], status_code: int, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(without_server_paths(body, request.app.state.settings.storage_dir), status_code=status_code,
                        headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ServiceError)
    async def _api_error(request: Request, exc: ServiceError) -> JSONResponse:
        return _json(request, {"detail": exc.detail, **exc.extra}, exc.status_code, exc.headers)

    @app.exception_handler(DatasetError)
    async def _dataset_error(request: Request, exc: DatasetError) -> JSONResponse:
        return _json(request, {"detail": exc.message, "problems": exc.problems, "files": exc.files}, 422)

    @app.exception_handler(SpecError)
    async def _spec_error(request: Request, exc: SpecError) -> JSONResponse:
        return _json(request, {"detail": str(exc)}, 422)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        lines = [f"{'.'.join(str(p) for p in e.get('loc', ())) or 'request'}: {e.get('msg')}" for e in errors]
        return JSONResponse({"detail": "; ".join(lines) or "invalid request",
                             "errors": [{k: e[k] for k in ("loc", "msg", "type") if k in e} for e in errors]},
                            status_code=422)

    @app.exception_handler(OSError)
    async def _storage_error(request: Request, exc: OSError) -> JSONResponse:
        """The server's storage refused a write (read-only, permissions, full): a clear 503/507, not a 500. The
        operations clean up after themselves (an upload keeps nothing), so the message can say so."""
        where = f" ({exc.filename})" if exc.filename else ""
        if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            log.error("storage not writable in %s %s: %s", request.method, request.url.path, exc)
            return _json(request, {"detail": f"the server cannot write to its storage: {exc.strerror}{where}; nothing "
                                             "was stored. Its administrator must make the storage writable "
                                             "(SIKD_STORAGE_DIR)."}, 503, {"Retry-After": "60"})
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            log.error("storage full in %s %s: %s", request.method, request.url.path, exc)
            return _json(request, {"detail": f"the server's storage is full: {exc.strerror}{where}; nothing was "
                                             "stored. Free space or ask its administrator."}, 507)
        return await _unexpected(request, exc)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error in %s %s", request.method, request.url.path)
        return JSONResponse({"detail": f"internal server error ({type(exc).__name__}); see the server log"},
                            status_code=500)
