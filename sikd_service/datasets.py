"""Dataset operations beyond upload (see :mod:`sikd_service.ingest`): the name check, deletion."""

from __future__ import annotations

import unicodedata

from sqlalchemy.orm import Session

from sikd_service import crud, dispatch
from sikd_service.config import Settings
from sikd_service.errors import ServiceError, not_found
from sikd_service.storage import dataset_dir
from sikd_service.tables import User

#: Characters a display name may not hold: control and format characters (newlines, NUL, bidi overrides)
#: and markup brackets, which other tools showing the name could interpret.
_FORBIDDEN_CATEGORIES = ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp")
_MARKUP = set("<>")


def check_name(name: str) -> str:
    """A dataset's display name: 1 to 200 characters, none of them control, format or markup characters."""
    if not 1 <= len(name) <= 200:
        raise ServiceError(422, "the dataset name must have 1 to 200 characters")
    bad = sorted({c for c in name if c in _MARKUP or unicodedata.category(c) in _FORBIDDEN_CATEGORIES})
    if bad:
        shown = ", ".join(f"U+{ord(c):04X}" + (f" {c!r}" if c in _MARKUP else "") for c in bad)
        raise ServiceError(422, f"the dataset name holds characters that are not allowed ({shown}): use letters, "
                                "digits, spaces and punctuation other than < and >")
    return name


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
