"""Errors as JSON: every error body has a readable ``detail``; dataset errors add ``problems`` and ``files``."""

from __future__ import annotations

import errno
import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from sikd_core.errors import DatasetError, SpecError
from sikd_core.spec import format_error_items, spec_error_message
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


def _body_model(request: Request) -> Any:
    """The pydantic model of the matched route's JSON body, if it has one."""
    field = getattr(request.scope.get("route"), "body_field", None)
    model = getattr(getattr(field, "field_info", None), "annotation", None)
    return model if isinstance(model, type) and hasattr(model, "model_fields") else None


def validation_body(request: Request, errors: Sequence[Any]) -> dict[str, Any]:
    """A 422's body: ``errors`` as ``{loc, msg, type}`` (FastAPI's items) and a readable ``detail``. For a body
    model with an ``error_title`` (the experiment spec) the messages are worded as the spec's own
    (:func:`sikd_core.spec.spec_error_message`: an unknown key lists the known ones) and ``detail`` is the title
    then one ``  <field>: <message>`` line each; else ``<loc>: <msg>`` joined by ``;``."""
    model = _body_model(request)
    title = getattr(model, "error_title", None)
    items = []
    for e in errors:
        loc = list(e.get("loc", ()))
        in_body = title is not None and loc[:1] == ["body"]
        msg = spec_error_message(e, list(model.model_fields)) if in_body else str(e.get("msg", ""))
        items.append({"loc": loc, "msg": msg, "type": e.get("type", "")})
    if title is not None and items and all(i["loc"][:1] == ["body"] for i in items):
        return {"detail": f"{title}:\n" + format_error_items(items, skip=1), "errors": items}
    lines = [f"{'.'.join(str(p) for p in i['loc']) or 'request'}: {i['msg']}" for i in items]
    return {"detail": "; ".join(lines) or "invalid request", "errors": items}


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ServiceError)
    async def _api_error(request: Request, exc: ServiceError) -> JSONResponse:
        return _json(request, {"detail": exc.detail, **exc.extra}, exc.status_code, exc.headers)

    @app.exception_handler(DatasetError)
    async def _dataset_error(request: Request, exc: DatasetError) -> JSONResponse:
        return _json(request, {"detail": exc.message, "problems": exc.problems, "files": exc.files}, 422)

    @app.exception_handler(SpecError)
    async def _spec_error(request: Request, exc: SpecError) -> JSONResponse:
        errors = [{**e, "loc": ["body", *e["loc"]]} for e in exc.errors]
        return _json(request, {"detail": str(exc), **({"errors": errors} if errors else {})}, 422)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _json(request, validation_body(request, exc.errors()), 422)

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
