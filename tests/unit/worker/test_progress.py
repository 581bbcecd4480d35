"""The worker's training callback: the cancel check (a database read) is throttled like the progress writes."""

from __future__ import annotations

import pytest

from sikd_core.errors import TrainingCancelled
from sikd_service.db import session_scope
from sikd_service.tables import Experiment, User
from worker import progress
from worker.progress import DbProgressCallback, StageRecorder


@pytest.fixture
def experiment_id(settings) -> int:
    with session_scope(settings) as s:
        user = User(name="progress-test")
        s.add(user)
        s.flush()
        exp = Experiment(owner_id=user.id, name="x", spec={}, status="running")
        s.add(exp)
        s.flush()
        return exp.id


def cancel(settings, experiment_id: int) -> None:
    with session_scope(settings) as s:
        s.get(Experiment, experiment_id).cancel_requested = True


def callback(settings, experiment_id: int, check_seconds: float) -> DbProgressCallback:
    cfg = settings.model_copy(update={"cancel_check_seconds": check_seconds})
    return DbProgressCallback(StageRecorder(cfg, stage_id=0, token="t"), experiment_id=experiment_id, attempt=1)


def count_reads(monkeypatch) -> list[int]:
    reads = []
    real = progress.cancel_requested

    def counted(settings, experiment_id):
        reads.append(experiment_id)
        return real(settings, experiment_id)

    monkeypatch.setattr(progress, "cancel_requested", counted)
    return reads


def test_the_cancel_check_reads_the_database_at_most_once_per_interval(settings, experiment_id, monkeypatch):
    reads = count_reads(monkeypatch)
    cb = callback(settings, experiment_id, check_seconds=3600)
    assert not any(cb.should_stop(None) for _ in range(200))
    assert len(reads) == 1  # the first step asks; the next 199 within the hour do not
    cancel(settings, experiment_id)
    assert not cb.should_stop(None)  # not yet seen: the next read is an hour away
    cb.cancel_throttle._last -= 3600  # as if the hour had passed
    assert cb.should_stop(None) and cb.should_stop(None) and len(reads) == 2  # a seen cancel sticks, no re-read


def test_without_the_throttle_every_step_reads_and_a_cancel_stops_at_once(settings, experiment_id, monkeypatch):
    reads = count_reads(monkeypatch)
    cb = callback(settings, experiment_id, check_seconds=0)
    assert not any(cb.should_stop(None) for _ in range(5)) and len(reads) == 5
    cancel(settings, experiment_id)
    assert cb.should_stop(None)


def test_evaluation_progress_is_recorded_and_a_cancel_stops_it(settings, experiment_id, monkeypatch):
    writes = []
    cb = callback(settings, experiment_id, check_seconds=0)
    monkeypatch.setattr(cb.recorder, "write", lambda **values: writes.append(values) or True)
    cb.on_eval_progress(0.5, "evaluated 5/10 images")
    assert writes == [{"progress": 0.5, "message": "evaluated 5/10 images"}]
    cancel(settings, experiment_id)
    with pytest.raises(TrainingCancelled, match="evaluation cancelled"):
        cb.on_eval_progress(0.6, "evaluated 6/10 images")
