"""Crash recovery: stages whose worker died are requeued from the database.

With ``acks_late`` a killed worker's message comes back only after the broker's visibility timeout
(12 h by default), so a worker also looks for stages marked ``running`` whose heartbeat has gone stale
(``stale_heartbeat_seconds``), or that were held by an earlier life of this same worker name, when it
starts and then periodically from a timer thread (no celery beat needed). Requeueing is a conditional
UPDATE, so several workers recovering at once requeue each stage once; the resumed stage continues from
its ``latest.pt`` checkpoint.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta

from celery.signals import worker_init, worker_ready, worker_shutting_down

from sikd_service import crud, dispatch
from sikd_service.config import Settings, get_settings
from sikd_service.db import session_scope
from sikd_service.storage import empty_trash, ensure_layout
from sikd_service.tables import utcnow

log = logging.getLogger("sikd.worker.recovery")

STARTED_AT = utcnow()
_stop = threading.Event()


def recover(settings: Settings, *, worker: str | None = None, worker_started: datetime | None = None) -> list[int]:
    """Requeue the stages of dead workers; returns their ids."""
    stale = utcnow() - timedelta(seconds=settings.stale_heartbeat_seconds)
    with session_scope(settings) as s:
        stages = crud.requeue_stale(s, stale_before=stale, worker=worker, worker_started=worker_started)
        jobs = [(st.id, st.kind, st.seed, crud.student_ids(s, experiment_id=st.experiment_id, seed=st.seed)
                 if st.kind == "teacher" else []) for st in stages]
    for stage_id, kind, seed, student in jobs:
        log.warning("requeueing stage %d (%s, seed %s): its worker stopped", stage_id, kind, seed)
        dispatch.enqueue_stage(stage_id, kind=kind, then_student_ids=student)
    return [job[0] for job in jobs]


def _periodic(settings: Settings, interval: float) -> None:
    while not _stop.wait(interval):
        try:
            recover(settings)
        except Exception:  # noqa: BLE001 - the database may be briefly unreachable; try again later
            log.exception("stale-stage recovery failed")


@worker_init.connect
def _on_init(**_: object) -> None:
    global STARTED_AT
    STARTED_AT = utcnow()
    settings = get_settings()
    ensure_layout(settings)
    empty_trash(settings)


@worker_ready.connect
def _on_ready(sender: object = None, **_: object) -> None:
    settings = get_settings()
    hostname = getattr(sender, "hostname", None)
    try:
        ids = recover(settings, worker=hostname, worker_started=STARTED_AT)
        if ids:
            log.warning("worker %s requeued stages %s left running by a stopped worker", hostname, ids)
    except Exception:  # noqa: BLE001
        log.exception("stale-stage recovery at start failed")
    interval = max(1.0, settings.stale_heartbeat_seconds / 2)
    threading.Thread(target=_periodic, args=(settings, interval), name="sikd-recovery", daemon=True).start()


@worker_shutting_down.connect
def _on_shutdown(**_: object) -> None:
    _stop.set()
