"""Enqueueing stages. Messages carry primary keys only; the task re-reads the rows.

A teacher and its student travel as one Celery chain (the student is sent when the teacher task
returns); baselines go alone, so two workers train them side by side.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

from celery import chain
from celery.canvas import Signature

from sikd_service.celery_app import TASK_EVALUATE, TASK_REMOVE, TASK_TIME_STEPS, TASK_TRAIN, app
from sikd_service.config import Settings
from sikd_service.storage import move_to_trash


def _sig(name: str, *args: object) -> Signature:
    return app.signature(name, args=args, immutable=True)


def _send(sig: Signature) -> None:
    sig.apply_async()


def enqueue_training(stage_id: int, *, then_student_ids: Sequence[int] = ()) -> None:
    """Send a training stage; ``then_student_ids`` (every student of a teacher: sikd's and each ``X+sikd``)
    are chained after it."""
    if then_student_ids:
        _send(chain(_sig(TASK_TRAIN, stage_id), *(_sig(TASK_TRAIN, i) for i in then_student_ids)))
    else:
        _send(_sig(TASK_TRAIN, stage_id))


def enqueue_evaluation(stage_id: int) -> None:
    _send(_sig(TASK_EVALUATE, stage_id))


def enqueue_step_timing(timing_id: int) -> None:
    """Ask a training worker to time a few steps of a configuration (a ``step_timings`` row)."""
    _send(_sig(TASK_TIME_STEPS, timing_id))


def enqueue_removal(paths: list[str]) -> None:
    """Ask a light worker (``default`` queue) to delete folders under the storage root."""
    _send(_sig(TASK_REMOVE, list(paths)))


def remove_in_background(settings: Settings, path: Path) -> None:
    """Move a folder out of the way at once and let a light worker delete it (here, without a broker)."""
    trash = move_to_trash(settings, path)
    if trash is None:
        return
    try:
        enqueue_removal([str(trash)])
    except Exception:  # noqa: BLE001 - no broker: remove it here
        shutil.rmtree(trash, ignore_errors=True)


def enqueue_stage(stage_id: int, *, kind: str, then_student_ids: Sequence[int] = ()) -> None:
    """Send any stage: the evaluation, or a training stage (a teacher with its students chained)."""
    if kind == "evaluation":
        enqueue_evaluation(stage_id)
    else:
        enqueue_training(stage_id, then_student_ids=then_student_ids)
