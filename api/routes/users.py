"""Users and their bearer tokens."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from sqlalchemy.exc import IntegrityError

from api.deps import AdminUser, CurrentUser, Limit, SessionDep, Skip, UserId
from api.schemas import Page, TokenPublic, UserCreate, UserPublic, error_responses
from sikd_service import crud
from sikd_service.errors import ServiceError, not_found

router = APIRouter(tags=["users"])


@router.get("/me", response_model=UserPublic)
def read_me(user: CurrentUser) -> UserPublic:
    return UserPublic.model_validate(user)


@router.get("/users", response_model=Page[UserPublic], responses=error_responses(403))
def list_users(session: SessionDep, admin: AdminUser, skip: Skip = 0, limit: Limit = 100) -> Page[UserPublic]:
    rows, count = crud.list_users(session, skip=skip, limit=limit)
    return Page(data=[UserPublic.model_validate(u) for u in rows], count=count)


@router.post("/users", response_model=TokenPublic, status_code=201,
             responses=error_responses(403, 409))
def create_user(body: UserCreate, session: SessionDep, admin: AdminUser) -> TokenPublic:
    """Create a user and their first token (shown once)."""
    if crud.get_user_by_name(session, name=body.name) is not None:
        raise ServiceError(409, f"a user named {body.name!r} already exists")
    try:
        user = crud.create_user(session, name=body.name, is_admin=body.is_admin)
        token = crud.add_token(session, user=user)
        session.commit()
    except IntegrityError:
        session.rollback()
        raise ServiceError(409, f"a user named {body.name!r} already exists") from None
    return TokenPublic(token=token, user=UserPublic.model_validate(user))


@router.post("/users/{user_id}/tokens", response_model=TokenPublic, status_code=201,
             responses=error_responses(404))
def create_token(user_id: UserId, session: SessionDep, user: CurrentUser) -> TokenPublic:
    """A new token for yourself (or, as an admin, for anyone); shown once."""
    target = crud.get_user(session, user_id=user_id) if (user.is_admin or user.id == user_id) else None
    if target is None:
        raise not_found("user", user_id)
    token = crud.add_token(session, user=target)
    session.commit()
    return TokenPublic(token=token, user=UserPublic.model_validate(target))


@router.delete("/users/{user_id}/tokens", status_code=204, response_class=Response,
             responses=error_responses(404))
def revoke_tokens(user_id: UserId, request: Request, session: SessionDep, user: CurrentUser) -> Response:
    """Revoke every token of yourself (or, as an admin, of anyone): they stop working at once."""
    target = crud.get_user(session, user_id=user_id) if (user.is_admin or user.id == user_id) else None
    if target is None:
        raise not_found("user", user_id)
    crud.revoke_tokens(session, user=target)
    session.commit()
    request.app.state.token_cache.drop_user(user_id)
    return Response(status_code=204)
