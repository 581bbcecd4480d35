"""A remote-control command of the workers: which accelerator each one trains on.

``GET /health`` broadcasts ``sikd_devices`` (instead of a bare ping) so the dashboard can choose a size
preset that fits the workers (the paper's on a GPU, a quick one on CPUs). Imported by :mod:`worker.app`.
"""

from __future__ import annotations

from typing import Any

from celery.worker.control import inspect_command


def describe_devices() -> dict[str, Any]:
    """``{"accelerator": "cuda"|"cpu", "gpus": N, "gpu_names": [...]}`` of this process (honours
    ``CUDA_VISIBLE_DEVICES``, as training does)."""
    import torch

    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return {"accelerator": "cuda" if n else "cpu", "gpus": n,
            "gpu_names": [torch.cuda.get_device_name(i) for i in range(n)]}


@inspect_command(name="sikd_devices")
def sikd_devices(state: Any) -> dict[str, Any]:
    return describe_devices()
