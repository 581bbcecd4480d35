"""The training loop, its callbacks and checkpoints."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sikd_core.lazy import lazy_attributes

if TYPE_CHECKING:
    from sikd_core.training.callbacks import Callback, CallbackList, LoggingCallback, ProgressBar, Throttle
    from sikd_core.training.distill import DistillationTrainer, copy_head
    from sikd_core.training.health import HealthMonitor
    from sikd_core.training.teacher import FrozenTeacher
    from sikd_core.training.trainer import (
        TrainConfig,
        Trainer,
        TrainResult,
        TrainState,
        epoch_seed,
        resolve_device,
    )

#: Imported on first use (:mod:`sikd_core.lazy`): health findings are read without PyTorch.
_WHERE = {"Callback": "callbacks", "CallbackList": "callbacks", "LoggingCallback": "callbacks",
          "ProgressBar": "callbacks", "Throttle": "callbacks", "DistillationTrainer": "distill",
          "copy_head": "distill", "HealthMonitor": "health", "FrozenTeacher": "teacher", "TrainConfig": "trainer",
          "Trainer": "trainer", "TrainResult": "trainer", "TrainState": "trainer", "epoch_seed": "trainer",
          "resolve_device": "trainer"}
__getattr__ = lazy_attributes(__name__, _WHERE, globals())

__all__ = [
    "Callback",
    "CallbackList",
    "DistillationTrainer",
    "FrozenTeacher",
    "HealthMonitor",
    "LoggingCallback",
    "ProgressBar",
    "Throttle",
    "TrainConfig",
    "TrainResult",
    "TrainState",
    "Trainer",
    "copy_head",
    "epoch_seed",
    "resolve_device",
]
