"""The request guard: the token and the body's size are checked before any byte of the body is read.

FastAPI reads (and parses) a request's whole body before its dependencies run, so a route's token check
came after the body: a 500 MB JSON body without a token was read, held and parsed (1 GB of the API's memory,
other clients stalled for seconds) before its 422. This ASGI middleware sits in front of the routes:

- a route that needs a caller (its dependencies include :func:`api.deps.get_current_user`) is answered 401 at
  once when the request has no bearer token or an unknown one; the resolved user is handed to the route
  (``scope["state"]``), so the token is looked up once per request, as before;
- every body has a limit by route kind: the dataset upload ``SIKD_MAX_UPLOAD_BYTES``, predict the files'
  limit, everything else ``SIKD_MAX_JSON_BYTES``. A ``Content-Length`` over it is a 413 at once; a body
  without one (chunked) is counted as it streams and cut with a 413 when it passes the limit.

Neither answer reads the rest of the body; the server then closes the connection.
"""

from __future__ import annotations

from collections.abc import Iterator
from re import Pattern
from typing import Any

from fastapi.routing import APIRoute
from sqlalchemy.orm import make_transient_to_detached
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse
from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.uploads import MULTIPART_OVERHEAD
from sikd_service import crud
from sikd_service.config import Settings
from sikd_service.tables import User

CHALLENGE = {"WWW-Authenticate": "Bearer"}
#: The scope key under which the guard hands the resolved caller to :func:`api.deps.get_current_user`.
USER_KEY = "sikd_user"


def human(n: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"  # pragma: no cover


def body_limit(route_name: str | None, settings: Settings) -> tuple[int, str]:
    """The most bytes a request to ``route_name`` may send, and the setting that sets it."""
    if route_name == "upload_dataset":
        return settings.max_upload_bytes + MULTIPART_OVERHEAD, "SIKD_MAX_UPLOAD_BYTES"
    if route_name == "predict":
        return (settings.max_predict_file_bytes * settings.max_predict_files + MULTIPART_OVERHEAD,
                "SIKD_MAX_PREDICT_FILE_BYTES x SIKD_MAX_PREDICT_FILES")
    return settings.max_json_bytes, "SIKD_MAX_JSON_BYTES"


def _needs_caller(dependant: Any) -> bool:
    from api.deps import get_current_user

    return any(d.call is get_current_user or _needs_caller(d) for d in dependant.dependencies)


def _api_routes(routes: list[Any], prefix: str = "") -> Iterator[tuple[str, APIRoute]]:
    """(full path, route) of every API route, included routers walked (FastAPI >= 0.165 keeps them nested)."""
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            yield from _api_routes(inner.routes, prefix + getattr(route.include_context, "prefix", ""))
        elif isinstance(route, APIRoute):
            yield prefix + route.path, route


def _bearer(scope: Scope) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            return token.strip() or None if scheme.lower() == "bearer" else None
    return None


def _content_length(scope: Scope) -> int | None:
    for key, value in scope.get("headers", ()):
        if key == b"content-length":
            return int(value) if value.isdigit() else -1
    return None


def _lookup(sessionmaker: Any, digest: str) -> User | None:
    """The token's user as a detached copy (its columns only), its session closed in this thread."""
    with sessionmaker() as session:
        user = crud.get_user_by_digest(session, digest=digest)
        if user is None:
            return None
        copy = User(id=user.id, name=user.name, is_admin=user.is_admin, created_at=user.created_at)
    make_transient_to_detached(copy)
    return copy


class RequestGuard:
    """ASGI middleware: 401 and 413 before the body is read (see the module docstring)."""

    def __init__(self, app: ASGIApp):
        self.app = app
        self._routes: list[tuple[Pattern[str], set[str], str, bool]] | None = None

    def _route(self, scope: Scope) -> tuple[str | None, bool]:
        """(name, needs a caller) of the route that ``scope``'s method and path match; (None, False) for none."""
        if self._routes is None:
            self._routes = [(compile_path(path)[0], route.methods, route.name, _needs_caller(route.dependant))
                            for path, route in _api_routes(scope["app"].router.routes)]
        path, method = scope["path"], scope["method"]
        root = scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root):]
        for regex, methods, name, needs in self._routes:
            if method in methods and regex.match(path):
                return name, needs
        return None, False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        app = scope["app"]
        settings: Settings = app.state.settings
        name, needs_caller = self._route(scope)
        if needs_caller:
            token = _bearer(scope)
            if token is None:
                await self._refuse(scope, send, 401, "missing bearer token: send 'Authorization: Bearer <token>'",
                                   CHALLENGE)
                return
            user = await self._resolve(app, token)
            if user is None:
                await self._refuse(scope, send, 401, "invalid or revoked token", CHALLENGE)
                return
            scope.setdefault("state", {})[USER_KEY] = user
        limit, setting = body_limit(name, settings)
        length = _content_length(scope)
        if length is not None and (length < 0 or length > limit):
            what = "an invalid Content-Length" if length < 0 else f"a body of {human(length)}"
            await self._refuse(scope, send, 413 if length >= 0 else 400,
                               f"this request has {what}; the limit here is {human(limit)} ({setting})")
            return
        await self._limited(scope, receive, send, limit, setting)

    async def _resolve(self, app: Any, token: str) -> User | None:
        cache = app.state.token_cache
        digest = crud.hash_token(token)
        user = cache.peek(digest)
        if user is None:
            generation = cache.generation
            user = await run_in_threadpool(_lookup, app.state.sessionmaker, digest)
            if user is not None:
                cache.put(digest, user, generation)
        return user

    async def _limited(self, scope: Scope, receive: Receive, send: Send, limit: int, setting: str) -> None:
        """Run the app with a receive that counts the body and stops it at ``limit`` (a 413 sent here; what the
        app answers after the cut is dropped)."""
        received = 0
        cut = False
        started = False

        async def counted() -> Message:
            nonlocal received, cut
            if cut:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    cut = True
                    if not started:
                        await self._refuse(scope, send, 413, f"the request body passed the limit of {human(limit)} "
                                                             f"here ({setting}); it was not read further")
                    return {"type": "http.disconnect"}
            return message

        async def tracked(message: Message) -> None:
            nonlocal started
            if cut:
                return  # the app's answer to the cut body: the 413 went out instead
            started = True
            await send(message)

        try:
            await self.app(scope, counted, tracked)
        except Exception:
            if not cut:
                raise  # after the cut, whatever the app made of the missing body is moot: the 413 is out

    @staticmethod
    async def _refuse(scope: Scope, send: Send, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
        async def no_body() -> Message:
            return {"type": "http.disconnect"}

        length = _content_length(scope)
        unread = length is None and any(k == b"transfer-encoding" for k, _ in scope.get("headers", ())) or bool(length)
        close = {"Connection": "close"} if unread else {}  # an unread body: the connection cannot be reused
        await JSONResponse({"detail": detail}, status_code=status, headers={**(headers or {}), **close})(
            scope, no_body, send)
