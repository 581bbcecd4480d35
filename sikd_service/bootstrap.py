"""First-start duties of ``sikd serve``: the admin token and the SYNTHETIC demo datasets."""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil

from sikd_core.data import generate_phantoms
from sikd_service import crud
from sikd_service.config import Settings
from sikd_service.db import session_scope
from sikd_service.ingest import register_folder
from sikd_service.storage import new_tmp_dir

log = logging.getLogger("sikd.sikd_service.bootstrap")

#: (domain, images, seed, name): a training domain and two unseen ones (cross-dataset evaluation).
DEMO_DATASETS = (
    ("vendor_a", 120, 1, "Cardiac phantoms vendor A (SYNTHETIC)"),
    ("vendor_b", 40, 2, "Cardiac phantoms vendor B (SYNTHETIC)"),
    ("vendor_c", 40, 3, "Cardiac phantoms vendor C (SYNTHETIC)"),
)
DEMO_SIZE = 128


def admin_token(settings: Settings) -> tuple[str, bool]:
    """``SIKD_ADMIN_TOKEN``, else the token stored under the storage root, else a new one (stored with
    mode 0600). Returns the token and whether it was just generated."""
    if settings.admin_token:
        return settings.admin_token, False
    path = settings.admin_token_file
    if path.is_file():
        return path.read_text().strip(), False
    token = secrets.token_urlsafe(32)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    return token, True


def ensure_admin(settings: Settings, token: str) -> int:
    with session_scope(settings) as s:
        return crud.ensure_admin(s, token=token).id


def ensure_demo_datasets(settings: Settings, owner_id: int) -> list[int]:
    """Generate and register the demo phantom datasets once (a marker file remembers it, so datasets a
    user deleted are not recreated). Shared: every user can train on them."""
    marker = settings.storage_dir / "demo_datasets.json"
    if marker.is_file():
        return json.loads(marker.read_text())
    ids = []
    for domain, n, seed, name in DEMO_DATASETS:
        tmp = new_tmp_dir(settings, "demo-")
        try:
            folder = generate_phantoms(tmp / domain, domain=domain, n=n, seed=seed, size=DEMO_SIZE)
            with session_scope(settings) as s:
                owner = crud.get_user(s, user_id=owner_id)
                assert owner is not None
                ids.append(register_folder(s, settings, owner=owner, folder=folder, name=name, shared=True,
                                           synthetic=True).id)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        log.info("registered demo dataset %s", name)
    marker.write_text(json.dumps(ids))
    return ids


def redispatch_queued(settings: Settings) -> list[int]:
    """Send again every stage an earlier life of the service left ``queued``.

    Its message may be gone: the API stopped between committing an experiment and sending it, or a
    broker without persistence restarted. Re-sending is safe: a stage is claimed by one conditional
    UPDATE (``crud.claim_stage``), so the copy of a message still in the queue claims nothing. A broker
    that is down is reported and left to the stages' next redelivery.
    """
    from sikd_service import dispatch
    from sikd_service.celery_app import configure

    configure(settings)
    with session_scope(settings) as s:
        stages = [(st.id, st.kind, crud.student_ids(s, experiment_id=st.experiment_id, seed=st.seed)
                   if st.kind == "teacher" else []) for st in crud.queued_stages(s)]
    sent = []
    try:
        for stage_id, kind, student in stages:
            dispatch.enqueue_stage(stage_id, kind=kind, then_student_ids=student)
            sent.append(stage_id)
    except Exception:  # noqa: BLE001 - the service still starts; the health check shows the broker
        log.exception("could not re-send queued stages %s", [i for i, _, _ in stages if i not in sent])
    if sent:
        log.info("re-sent %d queued stage(s): %s", len(sent), sent)
    return sent
