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
    assert set(profile) == {*devices.PROFILE_KEYS, "gpu_names"}
    assert profile == {**worker_devices.device_profile(), "cpu_threads": profile["cpu_threads"],
                       "gpu_names": worker_devices.gpu_names()}
    assert len(profile["gpu_names"]) == profile["gpus"]
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


def test_the_control_command_answers_from_the_profile_and_never_touches_cuda(monkeypatch):
    """``sikd_devices`` runs in the worker's main process (its pool is forked from it): it answers from the profile
    read in a child process at start, 'pending' before that, and never calls into torch.cuda."""
    import torch

    from worker import control

    def forbidden(*_a, **_k):
        raise AssertionError("sikd_devices touched CUDA in the worker's main process")

    for name in ("is_available", "device_count", "get_device_name", "get_device_properties", "init"):
        monkeypatch.setattr(torch.cuda, name, forbidden)
    monkeypatch.setattr(worker_devices, "PROFILE", None)
    assert control.sikd_devices(None) == control.PENDING and "accelerator" not in control.PENDING
    monkeypatch.setattr(worker_devices, "PROFILE", {"kind": "cuda", "gpus": 2, "gpu_names": ["NVIDIA H200"] * 2,
                                                    "name": "NVIDIA H200", "memory_gib": 139.8})
    assert control.sikd_devices(None) == {"accelerator": "cuda", "gpus": 2, "gpu_names": ["NVIDIA H200"] * 2}


def test_the_profile_read_at_start_is_kept_for_the_control_command(settings, monkeypatch):
    from worker import control

    monkeypatch.setattr(worker_devices, "PROFILE", None)
    worker_devices._record_at_start(settings, "w9@h")  # what worker_ready starts in a thread
    assert worker_devices.PROFILE is not None and row(settings, "w9@h").kind == worker_devices.PROFILE["kind"]
    reply = control.describe_devices()
    assert reply["accelerator"] == worker_devices.PROFILE["kind"] and reply["gpus"] == worker_devices.PROFILE["gpus"]
