"""Dependencies shared by the routes: settings, a DB session per request, the caller, pagination."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import Depends, Path, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BeforeValidator, Field
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from api.auth import TokenCache
from api.guard import USER_KEY
from sikd_service import crud
from sikd_service.config import Settings
from sikd_service.errors import ServiceError
from sikd_service.tables import User


# The cheap dependencies are ``async``: FastAPI runs a sync dependency in the thread pool, one hop per
# dependency, and under 50 concurrent clients those hops (not the queries) were most of a status read's time.
# A session connects lazily, at its first query, which runs in the route's (or the user lookup's) thread.
# The caller's token is resolved from a short cache (api.auth), so a status read makes one hop: its route.
async def get_settings_dep(request: Request) -> Settings:
    return request.app.state.settings


async def get_session(request: Request) -> AsyncIterator[Session]:
    with request.app.state.sessionmaker() as session:
        yield session


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
SessionDep = Annotated[Session, Depends(get_session)]
_bearer = HTTPBearer(auto_error=False, description="A token from `sikd serve` (admin) or POST /users.")
_CHALLENGE = {"WWW-Authenticate": "Bearer"}


def _lookup(session: Session, digest: str) -> User | None:
    """The token's user; the transaction ends here, so the connection goes back to the pool before the request
    waits for its next thread (a request holding a connection while waiting for a thread can starve both)."""
    user = crud.get_user_by_digest(session, digest=digest)
    session.commit()  # nothing is pending: this only gives the connection back (objects stay loaded)
    return user


async def get_current_user(request: Request, session: SessionDep,
                           creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> User:
    """The token's user: as the request guard (api.guard) resolved it before the body was read; else (an app
    without the guard) from the token cache (no query, no thread), else looked up in a worker thread."""
    guarded = request.scope.get("state", {}).get(USER_KEY)
    if guarded is not None:
        return session.merge(guarded, load=False)
    if creds is None or not creds.credentials:
        raise ServiceError(401, "missing bearer token: send 'Authorization: Bearer <token>'", headers=_CHALLENGE)
    cache: TokenCache = request.app.state.token_cache
    digest = crud.hash_token(creds.credentials)
    user = cache.get(session, digest)
    if user is None:
        generation = cache.generation
        user = await run_in_threadpool(_lookup, session, digest)
        if user is None:
            raise ServiceError(401, "invalid or revoked token", headers=_CHALLENGE)
        cache.put(digest, user, generation)
    return user


CurrentUser = Annotated[User, Depends(get_current_user)]


async def get_admin(user: CurrentUser) -> User:
    if not user.is_admin:
        raise ServiceError(403, "only an admin may do this")
    return user


AdminUser = Annotated[User, Depends(get_admin)]
#: The largest id or count a 64-bit database column holds: larger integers are a 422, never an overflow (500).
MAX_INT64 = 2**63 - 1
#: An integer as sent in a path or query: ASCII digits, an optional minus, no leading zero, space or plus sign.
_ASCII_INT = re.compile(r"-?(?:0|[1-9][0-9]*)")


def _ascii_int(v: Any) -> Any:
    """Refuse what Python's ``int()`` (pydantic's lax mode) would read: `` 1``, ``+1``, ``01``, ``１`` (full-width),
    ``1_000``; the bounds are checked after this, by ``ge``/``le`` (so 2^63 is a 422 naming the bound)."""
    if isinstance(v, str) and not _ASCII_INT.fullmatch(v):
        raise ValueError(f"must be an integer written in ASCII digits (no spaces, sign or leading zeros), not {v[:40]!r}")
    return v


def ascii_int(ge: int, le: int) -> Any:
    """An int from ``ge`` to ``le`` written in ASCII digits. The bounds sit in the inner ``Annotated`` (with the
    validator) so that the OpenAPI schema shows them as ``minimum``/``maximum``."""
    return Annotated[int, Field(ge=ge, le=le), BeforeValidator(_ascii_int)]


Skip = Annotated[ascii_int(0, MAX_INT64), Query(description="Items to skip.")]
Limit = Annotated[ascii_int(1, 500), Query(description="Most items returned.")]
Id = ascii_int(1, MAX_INT64)


def id_path(what: str) -> Any:
    """A path id: a positive 64-bit integer (anything else is a 422 naming the parameter)."""
    return Path(description=f"The {what}'s id.")


ExperimentId = Annotated[Id, id_path("experiment")]
DatasetId = Annotated[Id, id_path("dataset")]
ModelId = Annotated[Id, id_path("model")]
UserId = Annotated[Id, id_path("user")]
SampleIndex = Annotated[ascii_int(0, MAX_INT64), Path(description="The sample's index in the dataset.")]
ExperimentFilter = Annotated[Id | None, Query(description="Only this experiment's models.")]
