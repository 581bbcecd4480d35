"""The worker's device profile: what it trains on, recorded in the database for the API's plans.

At start (``worker_ready``) the profile is read in a short-lived child process, so this worker's main process never
initialises CUDA (its pool processes are forked from it and train on the GPU), and recorded
(:func:`sikd_service.devices.record_profile`); the reconciler refreshes ``last_seen`` (:func:`refresh`, one
UPDATE); a clean stop marks it stopped. A step-timing task records the profile of the pool process it ran in.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import socket
import subprocess
import sys
import threading
from typing import Any

from celery.signals import worker_ready, worker_shutting_down

from sikd_service import devices
from sikd_service.config import Settings, get_settings
from sikd_service.db import session_scope

log = logging.getLogger("sikd.worker.devices")

#: This worker's node name once it is ready (``gpu0@host``); None before.
NODE: str | None = None
#: This worker's profile (:func:`device_profile` and ``gpu_names``) once the child process has read it; None before.
#: The ``sikd_devices`` control command answers from it, so the main process never touches CUDA.
PROFILE: dict[str, Any] | None = None
_PROBE = ("import json; from worker.devices import device_profile, gpu_names; "
          "print(json.dumps({**device_profile(), 'gpu_names': gpu_names()}))")


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "CPU"


def device_profile() -> dict[str, Any]:
    """This process's training device (what ``device: auto`` trains on: the first visible GPU, else the CPU),
    its CPU and PyTorch (honours ``CUDA_VISIBLE_DEVICES``)."""
    import torch

    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if gpus:
        props = torch.cuda.get_device_properties(0)
        kind, name, memory = "cuda", props.name, round(props.total_memory / 2**30, 1)
    else:
        kind, name, memory = "cpu", _cpu_name(), None
    return {"host": socket.gethostname(), "kind": kind, "name": name, "memory_gib": memory, "gpus": gpus,
            "cpu_cores": os.cpu_count() or 1, "cpu_threads": torch.get_num_threads(),
            "torch_version": torch.__version__.split("+")[0]}


def gpu_names() -> list[str]:
    """The name of every GPU this process sees (honours ``CUDA_VISIBLE_DEVICES``)."""
    import torch

    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return [torch.cuda.get_device_name(i) for i in range(n)]


def training_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def probe_profile(timeout: float = 300.0) -> dict[str, Any]:
    """:func:`device_profile` and :func:`gpu_names` read in a child process (with this process's environment)."""
    out = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=timeout,
                         env=os.environ.copy(), check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def record(settings: Settings, worker: str, profile: dict[str, Any], *, started: bool = False) -> None:
    with session_scope(settings) as s:
        devices.record_profile(s, worker=worker, profile=profile, started=started)


def refresh(settings: Settings) -> None:
    """The reconciler's pass: this worker is still there (nothing before its profile is recorded)."""
    if NODE is not None:
        with session_scope(settings) as s:
            devices.touch(s, worker=NODE)


def _record_at_start(settings: Settings, worker: str) -> None:
    global PROFILE
    try:
        profile = probe_profile()
        PROFILE = profile  # known to the control command even if the database is away
        record(settings, worker, profile, started=True)
        log.info("worker %s trains on %s (%s)", worker, profile["kind"], profile["name"])
    except Exception:  # noqa: BLE001 - plans then use another worker's device, or the API host's
        log.exception("could not record this worker's device profile")


@worker_ready.connect
def _on_ready(sender: Any = None, **_: object) -> None:
    global NODE
    NODE = getattr(sender, "hostname", None) or f"worker@{socket.gethostname()}"
    threading.Thread(target=_record_at_start, args=(get_settings(), NODE), name="sikd-device-profile",
                     daemon=True).start()


@worker_shutting_down.connect
def _on_shutdown(**_: object) -> None:
    if NODE is None:
        return
    try:
        with session_scope(get_settings()) as s:
            devices.mark_stopped(s, worker=NODE)
    except Exception:  # noqa: BLE001 - the database is gone: the profile goes stale by itself
        log.exception("could not mark this worker stopped")
