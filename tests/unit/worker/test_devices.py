"""A worker's device profile (worker.devices): read in a child process at start, recorded, refreshed by the
reconciler, marked stopped; what counts as live (sikd_service.devices), on SQLite and on Postgres."""

from __future__ import annotations

from datetime import timedelta

import pytest

from sikd_service import devices
from sikd_service.db import session_scope
from sikd_service.tables import WorkerDevice, utcnow
from worker import devices as worker_devices

pytestmark = pytest.mark.timeout(180)


def row(settings, worker: str) -> WorkerDevice:
    with session_scope(settings) as s:
        found = s.query(WorkerDevice).filter_by(worker=worker).one()
        s.expunge(found)
        return found


def test_the_profile_read_in_a_child_process_is_this_machines():
    import torch

    profile = worker_devices.probe_profile()  # what a worker records at its start (its main process loads no CUDA)
    assert set(profile) == set(devices.PROFILE_KEYS)
    assert profile == {**worker_devices.device_profile(), "cpu_threads": profile["cpu_threads"]}
    assert profile["kind"] == ("cuda" if torch.cuda.is_available() else "cpu") and profile["cpu_cores"] >= 1
    assert profile["torch_version"] == torch.__version__.split("+")[0] and profile["cpu_threads"] >= 1


def test_recorded_refreshed_stopped_and_live(settings, monkeypatch):
    profile = worker_devices.device_profile()
    worker_devices.record(settings, "w1@h", profile, started=True)
    first = row(settings, "w1@h")
    assert first.kind == profile["kind"] and first.stopped_at is None
    with session_scope(settings) as s:
        assert [devices.is_live(r, settings) for r in devices.profiles(s)] == [True]
        s.query(WorkerDevice).update({"last_seen": utcnow() - timedelta(seconds=settings.stale_heartbeat_seconds + 1)})
    with session_scope(settings) as s:
        assert [devices.is_live(r, settings) for r in devices.profiles(s)] == [False]  # silent too long
    monkeypatch.setattr(worker_devices, "NODE", "w1@h")
    worker_devices.refresh(settings)  # the reconciler's pass
    assert row(settings, "w1@h").last_seen > first.last_seen
    worker_devices._on_shutdown()
    stopped = row(settings, "w1@h")
    with session_scope(settings) as s:
        assert stopped.stopped_at is not None and not devices.is_live(s.merge(stopped), settings)
    worker_devices.record(settings, "w1@h", profile, started=True)  # started again
    again = row(settings, "w1@h")
    assert again.stopped_at is None and again.started_at > first.started_at and again.id == first.id
    with session_scope(settings) as s, pytest.raises(ValueError, match="lacks"):
        devices.record_profile(s, worker="w2@h", profile={"kind": "cpu"})


def test_refresh_before_the_profile_is_recorded_does_nothing(settings, monkeypatch):
    monkeypatch.setattr(worker_devices, "NODE", "new@h")
    worker_devices.refresh(settings)
    with session_scope(settings) as s:
        assert devices.profiles(s) == []
