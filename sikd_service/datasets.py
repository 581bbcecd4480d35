"""Dataset operations beyond upload (see :mod:`sikd_service.ingest`): deletion (names: :mod:`sikd_service.names`)."""

from __future__ import annotations

from sqlalchemy.orm import Session

from sikd_service import crud, dispatch
from sikd_service.config import Settings
from sikd_service.errors import ServiceError, not_found
from sikd_service.storage import dataset_dir
from sikd_service.tables import User


def delete(session: Session, settings: Settings, *, user: User, dataset_id: int) -> None:
    """Delete a dataset row its owner (or an admin) may delete and no experiment uses, then remove its files
    in the background (default queue): the row goes at once, the folder when a light worker gets to it."""
    ds = crud.get_dataset(session, user=user, dataset_id=dataset_id)
    if ds is None:
        raise not_found("dataset", dataset_id)
    if ds.owner_id != user.id and not user.is_admin:
        raise ServiceError(403, f"dataset {dataset_id} is shared with you; only its owner or an admin may delete it")
    users = crud.experiments_using_dataset(session, dataset_id=dataset_id)
    if users:
        names = ", ".join(f"{e.id} ({e.name!r})" for e in users)
        raise ServiceError(409, f"dataset {dataset_id} is used by experiment(s) {names}; delete them first",
                       experiments=[e.id for e in users])
    session.delete(ds)
    session.commit()
    dispatch.remove_in_background(settings, dataset_dir(settings, dataset_id))
