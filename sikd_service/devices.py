"""The workers' devices: recorded by each worker (at start, refreshed while it runs), read by the API to plan.

A worker reports what it trains on (``worker.devices.device_profile``: CUDA GPU or CPU, the GPU's memory, cores
and threads, PyTorch's version, its host) into ``worker_devices``; its reconciler refreshes ``last_seen`` and a
clean stop sets ``stopped_at``. A worker is *live* when it was seen within ``stale_heartbeat_seconds`` (the window
after which its running stages count as dead) and has not stopped since. :func:`plan_device` picks the device a
plan is for, without PyTorch: the most capable live worker's, else the most capable one ever reported (said so),
else this API host's CPU (only when no worker has ever reported).
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from sikd_core.errors import SIKDError
from sikd_core.plan import check_device, describe_device
from sikd_service.config import Settings
from sikd_service.tables import WorkerDevice, utcnow

#: The keys of a profile a worker reports (worker.devices.device_profile), as the table's columns.
PROFILE_KEYS = ("host", "kind", "name", "memory_gib", "gpus", "cpu_cores", "cpu_threads", "torch_version")
API_HOST = "API host (no worker has reported)"


def record_profile(session: Session, *, worker: str, profile: dict[str, Any], started: bool = False) -> WorkerDevice:
    """Insert or update ``worker``'s device; ``started``: it has just started (its start time and no stop)."""
    missing = [k for k in PROFILE_KEYS if k not in profile]
    if missing:
        raise ValueError(f"a worker's device profile lacks {missing}")
    row = session.scalar(select(WorkerDevice).where(WorkerDevice.worker == worker))
    now = utcnow()
    if row is None:
        row = WorkerDevice(worker=worker, started_at=now)
        session.add(row)
    for k in PROFILE_KEYS:
        setattr(row, k, profile[k])
    row.last_seen = now
    if started or row.stopped_at is not None:
        row.started_at, row.stopped_at = now, None
    session.flush()
    return row


def touch(session: Session, *, worker: str) -> bool:
    """The worker is still there (one UPDATE); False when it has not reported its device yet."""
    res = session.execute(update(WorkerDevice).where(WorkerDevice.worker == worker)
                          .values(last_seen=utcnow(), stopped_at=None))
    return bool(res.rowcount)  # type: ignore[attr-defined]


def mark_stopped(session: Session, *, worker: str) -> None:
    session.execute(update(WorkerDevice).where(WorkerDevice.worker == worker).values(stopped_at=utcnow()))


def is_live(row: WorkerDevice, settings: Settings) -> bool:
    return row.stopped_at is None and row.last_seen >= utcnow() - timedelta(seconds=settings.stale_heartbeat_seconds)


def capability(row: WorkerDevice) -> tuple[int, float, int]:
    """Order of devices: a GPU before a CPU, then the GPU's memory, then the cores."""
    return (1 if row.kind == "cuda" else 0, row.memory_gib or 0.0, row.cpu_cores)


def profiles(session: Session) -> list[WorkerDevice]:
    return list(session.scalars(select(WorkerDevice).order_by(WorkerDevice.worker)))


def public(row: WorkerDevice, settings: Settings) -> dict[str, Any]:
    return {"worker": row.worker, "host": row.host, "kind": row.kind, "name": row.name, "memory_gib": row.memory_gib,
            "gpus": row.gpus, "cpu_cores": row.cpu_cores, "cpu_threads": row.cpu_threads,
            "torch_version": row.torch_version, "last_seen": row.last_seen.isoformat(), "live": is_live(row, settings)}


def _as_device(row: WorkerDevice, kind: str, source: str) -> dict[str, Any]:
    if kind == "cuda":
        dev = describe_device(memory_gib=row.memory_gib, name=row.name, source=source)
    else:
        dev = describe_device(cores=row.cpu_cores, threads=row.cpu_threads, source=source,
                              name=row.name if row.kind == "cpu" else None)
    return {**dev, "worker": row.worker}


def api_host_device() -> dict[str, Any]:
    """This API host's CPU, without PyTorch (its threads: what this process may use)."""
    cores = os.cpu_count() or 1
    threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cores
    omp = os.environ.get("OMP_NUM_THREADS", "")
    if omp.isdigit() and int(omp) > 0:
        threads = min(threads, int(omp))
    return describe_device(cores=cores, threads=threads, source=API_HOST)


def plan_device(session: Session, settings: Settings, *, device: str = "auto",
                memory_gib: float | None = None) -> dict[str, Any]:
    """The device a plan is for, with ``source`` saying whose it is. ``device``: auto (the most capable), cpu (a
    worker's CPU) or cuda (a worker's GPU); ``memory_gib``: a GPU described in the request instead."""
    check_device(device)
    if memory_gib is not None:
        return describe_device(memory_gib=memory_gib, source="described in the request")
    rows = profiles(session)
    kind = "cuda" if device.startswith("cuda") else device
    usable = [r for r in rows if kind != "cuda" or r.kind == "cuda"]
    if not usable:
        if kind == "cuda":
            reported = ", ".join(f"{r.worker} ({r.kind})" for r in rows) or "none has reported"
            raise SIKDError(f"device {device!r}: no worker has reported a GPU ({reported}); plan for auto or cpu, or "
                            "describe the GPU (device_memory_gb)")
        return api_host_device()
    live = [r for r in usable if is_live(r, settings)]
    pool = live or usable
    key = (lambda r: (r.cpu_cores, r.cpu_threads)) if kind == "cpu" else capability
    best = max(pool, key=key)
    what = "CPU" if kind == "cpu" else "device"
    if live:
        source = (f"worker {best.worker} on {best.host} (the {'only' if len(live) == 1 else 'most capable'} "
                  f"{what} of {len(live)} live worker{'s' if len(live) > 1 else ''})")
    else:
        source = (f"worker {best.worker} on {best.host}, last seen {best.last_seen:%Y-%m-%d %H:%M} UTC (no worker "
                  f"is live now; the most capable {what} of {len(usable)} that reported)")
    return _as_device(best, kind if kind in ("cpu", "cuda") else best.kind, source)
