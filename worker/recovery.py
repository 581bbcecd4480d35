"""Crash recovery: the worker's reconciler puts back stages whose process died and jobs the broker lost.

A thread of the worker's main process (no celery beat needed) runs every ``SIKD_RECONCILE_SECONDS``:

* **Dead pool processes.** Every claim token starts with this worker process's instance id
  (:data:`INSTANCE`, inherited by its pool processes). A running stage claimed under this id whose job the
  worker no longer holds (``celery.worker.state``: reserved or executing) lost its pool process, e.g. to
  the kernel's out-of-memory killer: it is requeued at once. (Celery itself puts the message back, but the
  stage then still looks alive and the redelivery claims nothing.) The database is read before the held
  jobs, and a job is held from its arrival until after its task returned, so a stage being claimed or
  finishing is never taken for dead.
* **Jobs the broker lost.** A ``queued`` stage that no message in the broker carries (waiting, delivered
  and unacknowledged, or chained behind a teacher; :func:`sikd_service.broker_state.inspect`), nor a job of
  this worker, at two looks ``SIKD_RECONCILE_SECONDS`` apart or more (a stage being sent or handed on is
  missing for a moment), is sent again: Redis restarted without its data, or was flushed. Queue bindings
  the broker forgot are declared again first, so jobs sent afterwards are delivered.
* **Stages waiting for an identical stage** (:mod:`sikd_service.reuse`) whose stage ended (it succeeded, failed,
  was cancelled or deleted) are queued and sent, every pass: the paths that end a stage release them at once,
  this catches any that did not.
* **This worker is live**: its device profile's ``last_seen`` is refreshed with the dead-worker check below
  (:mod:`worker.devices`), so plans are made for live workers' devices.
* **Dead workers.** Stages marked ``running`` whose heartbeat has gone stale (``stale_heartbeat_seconds``:
  the whole worker or its machine died), or held by an earlier life of this same worker name (checked
  at start), are requeued, every ``stale_heartbeat_seconds / 2``.

A stage that has had ``SIKD_MAX_STAGE_ATTEMPTS`` attempts fails with the reason instead of being requeued
again. A worker that stops in order (SIGTERM, SIGQUIT) gives its running stages back and sends them again
(its running task loses its claim and stops), and that interrupted attempt is not counted. Requeueing is a
conditional UPDATE and a duplicate message claims nothing, so several workers recovering at once are safe;
the resumed stage continues from its ``latest.pt`` checkpoint.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from datetime import datetime, timedelta

from celery.signals import worker_init, worker_ready, worker_shutting_down

from sikd_service import broker_state, crud, dispatch
from sikd_service.config import Settings, get_settings
from sikd_service.db import session_scope
from sikd_service.reuse import release_waiting
from sikd_service.storage import empty_trash, ensure_layout
from sikd_service.tables import Stage, utcnow
from worker import devices as worker_devices

log = logging.getLogger("sikd.worker.recovery")

#: This worker process's id, the first characters of every claim token its pool processes write.
INSTANCE = uuid.uuid4().hex[:8]
STARTED_AT = utcnow()
_stop = threading.Event()


def _send(jobs: list[tuple[int, str, list[int]]], why: str) -> None:
    for stage_id, kind, students in jobs:
        log.warning("sending stage %d (%s) again: %s", stage_id, kind, why)
        dispatch.enqueue_stage(stage_id, kind=kind, then_student_ids=students)


def _jobs(s: object, stages: list[Stage]) -> list[tuple[int, str, list[int]]]:
    """(id, kind, the students chained behind a teacher) of each stage, to send it as the API does."""
    return [(st.id, st.kind, crud.student_ids(s, experiment_id=st.experiment_id, seed=st.seed)  # type: ignore[arg-type]
             if st.kind == "teacher" else []) for st in stages]


def recover(settings: Settings, *, worker: str | None = None, worker_started: datetime | None = None) -> list[int]:
    """Requeue the stages of dead workers (stale heartbeat); returns their ids."""
    stale = utcnow() - timedelta(seconds=settings.stale_heartbeat_seconds)
    with session_scope(settings) as s:
        stages = crud.requeue_stale(s, stale_before=stale, worker=worker, worker_started=worker_started,
                                    max_attempts=settings.max_stage_attempts)
        jobs = _jobs(s, stages)
    _send(jobs, "its worker stopped")
    return [job[0] for job in jobs]


def held_stage_ids() -> set[int] | None:
    """Stages of the jobs this worker process holds (received, waiting or executing); None when the sets
    kept changing under us (read again at the next pass)."""
    from celery.worker import state

    for _ in range(10):
        try:
            requests = list(state.reserved_requests) + list(state.active_requests)
            break
        except RuntimeError:  # the main thread changed a set while we copied it
            time.sleep(0.01)
    else:
        return None
    ids = set()
    for r in requests:
        if r.task_name in broker_state.STAGE_TASKS and r.args and isinstance(r.args[0], int):
            ids.add(int(r.args[0]))
    return ids


def release_dead_children(settings: Settings, held: set[int] | None = None) -> list[int]:
    """Requeue (or fail, out of attempts) the stages this worker claimed but no longer holds; their ids."""
    with session_scope(settings) as s:
        claims = crud.claimed_with_prefix(s, prefix=INSTANCE)
    if not claims:
        return []
    held = held_stage_ids() if held is None else held  # read after the database: see the module docstring
    if held is None:
        return []
    lost = [(i, t) for i, t in claims if i not in held]
    if not lost:
        return []
    with session_scope(settings) as s:
        jobs = _jobs(s, crud.release_lost(s, claims=lost, max_attempts=settings.max_stage_attempts))
    gone = sorted(i for i, _ in lost)
    requeued = [j[0] for j in jobs]
    log.warning("stages %s: their pool process died (killed?); requeued: %s; not requeued (out of attempts: failed; "
                "experiment stopping: cancelled; or finished meanwhile): %s", gone, requeued,
                [i for i in gone if i not in requeued])
    _send(jobs, "its pool process died")
    return [j[0] for j in jobs]


class LostJobs:
    """Queued stages that no broker message carries, sent again once missing for ``grace`` seconds."""

    def __init__(self, settings: Settings, grace: float):
        self.settings = settings
        self.grace = grace
        self.missing_since: dict[int, float] = {}

    def check(self, held: set[int] | None = None) -> list[int]:
        now = time.monotonic()
        with session_scope(self.settings) as s:
            queued = {st.id for st in crud.queued_stages(s)}
        if not queued:
            self.missing_since.clear()
            return []
        view = broker_state.inspect(self.settings)
        if view.redeclared:
            log.warning("the broker had lost the bindings of queues %s (restarted without its data?): declared "
                        "again", view.redeclared)
        missing = queued - view.stage_ids - (held or set())
        self.missing_since = {i: self.missing_since.get(i, now) for i in missing}
        due = sorted(i for i, since in self.missing_since.items() if now - since >= self.grace)
        if not due:
            return []
        with session_scope(self.settings) as s:
            stages = [st for st in crud.queued_stages(s) if st.id in due]  # still queued
            jobs = _jobs(s, stages)
        _send(jobs, "the broker lost its message")
        for stage_id, _, _ in jobs:
            self.missing_since[stage_id] = now  # looked at again after another grace period
        return [j[0] for j in jobs]


def reconcile_forever(settings: Settings) -> None:
    """The reconciler thread's loop (see the module docstring)."""
    lost = LostJobs(settings, grace=max(2.0, settings.reconcile_seconds))
    stale_every = max(1.0, settings.stale_heartbeat_seconds / 2)
    last_stale = time.monotonic()
    broker_down = False
    while not _stop.wait(settings.reconcile_seconds):
        try:
            release_dead_children(settings)
        except Exception:  # noqa: BLE001 - the database may be briefly unreachable; try again later
            log.exception("reconciler: dead pool process check failed")
        try:
            lost.check(held_stage_ids())
            if broker_down:
                log.warning("reconciler: the broker answers again")
            broker_down = False
        except Exception as e:  # noqa: BLE001 - broker or database down: said once, tried at every pass
            if not broker_down:
                log.warning("reconciler: cannot compare the queued stages with the broker: %s", e)
            broker_down = True
        if time.monotonic() - last_stale >= stale_every:
            last_stale = time.monotonic()
            try:
                recover(settings)
            except Exception:  # noqa: BLE001
                log.exception("stale-stage recovery failed")
            try:  # this worker is live: plans are made for its device (worker.devices)
                worker_devices.refresh(settings)
            except Exception:  # noqa: BLE001
                log.exception("reconciler: refreshing this worker's device profile failed")
        try:  # stages waiting for an identical one that ended by a path that did not release them
            release_waiting(settings)
        except Exception:  # noqa: BLE001
            log.exception("reconciler: releasing waiting stages failed")


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
    _stop.clear()
    threading.Thread(target=reconcile_forever, args=(settings,), name="sikd-reconciler", daemon=True).start()


@worker_shutting_down.connect
def _on_shutdown(**_: object) -> None:
    """Give the running stages back (not counted as an attempt) and send them again."""
    _stop.set()
    settings = get_settings()
    try:
        with session_scope(settings) as s:
            jobs = _jobs(s, crud.hand_back(s, prefix=INSTANCE))
        _send(jobs, "its worker is stopping")
    except Exception:  # noqa: BLE001 - database or broker gone: the stale-heartbeat recovery will see them
        log.exception("could not give the running stages back")
