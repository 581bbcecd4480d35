"""The training loop, its callbacks and checkpoints."""

from __future__ import annotations

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
