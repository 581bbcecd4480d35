"""Dependencies shared by the routes: settings, a DB session per request, the caller, pagination."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import Depends, Path, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from api.auth import TokenCache
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
    """The token's user: from the token cache (no query, no thread), else looked up in a worker thread."""
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
Skip = Annotated[int, Query(ge=0, le=MAX_INT64, description="Items to skip.")]
Limit = Annotated[int, Query(ge=1, le=500, description="Most items returned.")]


def id_path(what: str) -> Any:
    """A path id: a positive 64-bit integer (anything else is a 422 naming the parameter)."""
    return Path(ge=1, le=MAX_INT64, description=f"The {what}'s id.")


ExperimentId = Annotated[int, id_path("experiment")]
DatasetId = Annotated[int, id_path("dataset")]
ModelId = Annotated[int, id_path("model")]
UserId = Annotated[int, id_path("user")]
SampleIndex = Annotated[int, Path(ge=0, le=MAX_INT64, description="The sample's index in the dataset.")]
ExperimentFilter = Annotated[int | None, Query(ge=1, le=MAX_INT64, description="Only this experiment's models.")]
