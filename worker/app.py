"""The worker processes' Celery app: the service core's app with this package's tasks registered.

``celery -A worker.app worker ...`` (what ``sikd worker`` runs). The app itself lives in
:mod:`sikd_service.celery_app`, so the API can enqueue jobs by name without importing the worker.
"""

from __future__ import annotations

from sikd_service.celery_app import app

# importing registers the tasks, the sikd_devices control command and the device profile's signals on ``app``
from worker import control, devices, recovery, tasks  # noqa: F401

__all__ = ["app"]
