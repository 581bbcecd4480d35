"""A remote-control command of the workers: which accelerator each one trains on.

``GET /health`` broadcasts ``sikd_devices`` (instead of a bare ping) so the dashboard can choose a size
preset that fits the workers (the paper's on a GPU, a quick one on CPUs). Imported by :mod:`worker.app`.

The command runs in the worker's main process, whose pool processes are forked from it and train on the GPU:
it must never initialise CUDA there (a forked child cannot use CUDA its parent initialised). It answers from
the profile a short-lived child process read when the worker started (:data:`worker.devices.PROFILE`), and
says it is still being read until then (the worker counts as alive; it has no device yet).
"""

from __future__ import annotations

from typing import Any

from celery.worker.control import inspect_command

#: The reply while the worker's device profile is still being read (its first seconds).
PENDING = {"pending": "this worker's device profile is being read"}


def describe_devices() -> dict[str, Any]:
    """``{"accelerator": "cuda"|"cpu", "gpus": N, "gpu_names": [...]}`` from the profile read at start (honours
    ``CUDA_VISIBLE_DEVICES``, as training does), or :data:`PENDING`."""
    from worker import devices

    p = devices.PROFILE
    if p is None:
        return dict(PENDING)
    return {"accelerator": p["kind"], "gpus": p["gpus"], "gpu_names": list(p.get("gpu_names") or [])}


@inspect_command(name="sikd_devices")
def sikd_devices(state: Any) -> dict[str, Any]:
    return describe_devices()
