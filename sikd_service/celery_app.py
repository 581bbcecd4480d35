"""The Celery app: queues, routes and the settings long training jobs need.

Broker: Redis when ``SIKD_REDIS_URL``/``REDIS_URL`` is set, else the embedded filesystem broker under
``<storage>/broker`` (see :mod:`sikd_service.broker`). No result backend: state lives in the database.

Queues: ``train`` (teacher, student, baseline, evaluation, and the few training steps timed for a plan or an
estimate) and ``default`` (light work such as removing
deleted datasets). One training job per worker (``-c 1``, prefetch 1); run one worker per GPU::

    CUDA_VISIBLE_DEVICES=0 celery -A worker.app worker -Q train -c 1 -n gpu0@%h
    CUDA_VISIBLE_DEVICES=1 celery -A worker.app worker -Q train -c 1 -n gpu1@%h
    celery -A worker.app worker -Q default -c 2 -n light@%h

Jobs are acknowledged late and rejected (redelivered) when their worker is lost; Redis redelivers an
unacknowledged job only after ``visibility_timeout`` (12 h by default, longer than any job), so a dead
worker's stage is also requeued from the database by its heartbeat (see :mod:`worker.recovery`).
"""

from __future__ import annotations

from celery import Celery
from kombu import Queue

from sikd_core.data.io import set_decode_limits
from sikd_service.config import Settings, get_settings

TASK_TRAIN = "sikd.train_stage"
TASK_EVALUATE = "sikd.evaluate"
TASK_REMOVE = "sikd.remove_paths"
TASK_TIME_STEPS = "sikd.time_steps"

app = Celery("sikd")  # the tasks are registered by worker.app, the worker processes' entry point


def broker_options(settings: Settings) -> dict:
    """``broker_url``, ``broker_transport`` and ``broker_transport_options`` for ``settings``."""
    if settings.redis_url:
        return {"broker_url": settings.redis_url, "broker_transport": None,
                "broker_transport_options": {"visibility_timeout": settings.visibility_timeout_seconds,
                                             "global_keyprefix": f"{settings.celery_namespace}:"}}
    folder = settings.broker_dir  # created by sikd_service.storage.ensure_layout (API start, worker init)
    return {"broker_url": "filesystem://localhost/", "broker_transport": "sikd_service.broker:Transport",
            "broker_transport_options": {"data_folder_in": str(folder / "queue"),
                                         "data_folder_out": str(folder / "queue"),
                                         "control_folder": str(folder / "control"),
                                         "polling_interval": settings.broker_polling_interval}}


def configure(settings: Settings) -> None:
    """(Re)configure the app; the API, the worker and tests call it with their settings.

    The process's decode limits (largest image and volume read) are set here too: every service process
    configures this app once at start.
    """
    set_decode_limits(max_pixels=settings.max_image_pixels, max_voxels=settings.max_volume_voxels)
    app.conf.update(
        **broker_options(settings),
        broker_connection_retry_on_startup=True,
        result_backend=None,
        task_ignore_result=True,
        task_serializer="json",
        accept_content=["json"],
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        worker_cancel_long_running_tasks_on_connection_loss=False,
        task_default_queue=settings.default_queue,
        task_queues=(Queue(settings.train_queue), Queue(settings.default_queue)),
        task_routes={TASK_TRAIN: {"queue": settings.train_queue},
                     TASK_EVALUATE: {"queue": settings.train_queue},
                     TASK_TIME_STEPS: {"queue": settings.train_queue},  # timed on the device that trains
                     TASK_REMOVE: {"queue": settings.default_queue}},
        control_exchange=settings.celery_namespace,
        worker_send_task_events=False,
    )
    # Objects built from an earlier configuration (connection pools, queues, the control mailbox with its
    # exchange name) must not outlive it; tests reconfigure the app in one process.
    app._pool = None
    for cached in ("amqp", "control"):
        app.__dict__.pop(cached, None)


configure(get_settings())
