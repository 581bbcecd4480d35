"""Training callbacks: one list of them receives every progress event of a training run.

The CLI attaches :class:`ProgressBar`; the worker attaches a callback that writes progress to the
database and answers :meth:`Callback.should_stop` when the user cancels. Both drive the same loop.
Evaluation reports to the same kind of list (:meth:`Callback.on_eval_progress`).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from sikd_core.training.trainer import Trainer, TrainResult

log = logging.getLogger("sikd_core.training")


class Callback:
    """Base class; override what you need. ``logs`` are plain dicts of floats/lists (JSON-safe)."""

    def on_train_start(self, trainer: Trainer) -> None: ...

    def on_epoch_start(self, trainer: Trainer) -> None: ...

    def on_step_end(self, trainer: Trainer, logs: dict[str, float]) -> None: ...

    def on_epoch_end(self, trainer: Trainer, logs: dict[str, Any]) -> None: ...

    def on_train_end(self, trainer: Trainer, result: TrainResult) -> None: ...

    def on_warning(self, trainer: Trainer, message: str) -> None: ...

    def on_eval_progress(self, fraction: float, message: str) -> None:
        """Evaluation progress (0..1 and what is being done); raising :class:`TrainingCancelled` here stops it."""

    def should_stop(self, trainer: Trainer) -> bool:
        """Checked after every training step; ``True`` cancels the run (TrainingCancelled)."""
        return False


class CallbackList(Callback):
    def __init__(self, callbacks: Iterable[Callback] = ()):
        self.callbacks = list(callbacks)

    def on_train_start(self, trainer: Trainer) -> None:
        for c in self.callbacks:
            c.on_train_start(trainer)

    def on_epoch_start(self, trainer: Trainer) -> None:
        for c in self.callbacks:
            c.on_epoch_start(trainer)

    def on_step_end(self, trainer: Trainer, logs: dict[str, float]) -> None:
        for c in self.callbacks:
            c.on_step_end(trainer, logs)

    def on_epoch_end(self, trainer: Trainer, logs: dict[str, Any]) -> None:
        for c in self.callbacks:
            c.on_epoch_end(trainer, logs)

    def on_train_end(self, trainer: Trainer, result: TrainResult) -> None:
        for c in self.callbacks:
            c.on_train_end(trainer, result)

    def on_warning(self, trainer: Trainer, message: str) -> None:
        for c in self.callbacks:
            c.on_warning(trainer, message)

    def on_eval_progress(self, fraction: float, message: str) -> None:
        for c in self.callbacks:
            c.on_eval_progress(fraction, message)

    def should_stop(self, trainer: Trainer) -> bool:
        return any(c.should_stop(trainer) for c in self.callbacks)


class LoggingCallback(Callback):
    """Logs one line per epoch and every warning through :mod:`logging`."""

    def on_epoch_end(self, trainer: Trainer, logs: dict[str, Any]) -> None:
        log.info("%s epoch %d/%d loss %.4f val_dice %s", trainer.stage, logs["epoch"], trainer.config.epochs,
                 logs["loss"], _fmt(logs.get("val_dice")))

    def on_warning(self, trainer: Trainer, message: str) -> None:
        log.warning("%s: %s", trainer.stage, message)


def _fmt(v: float | None) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.4f}"


class ProgressBar(Callback):
    """A live tqdm bar per stage: epoch, loss, validation Dice and ETA."""

    def __init__(self, desc: str | None = None, position: int = 0, leave: bool = True, file: Any = None):
        self.desc = desc
        self.position = position
        self.leave = leave
        self.file = file
        self.bar: Any = None
        self.val_dice: float | None = None

    def on_train_start(self, trainer: Trainer) -> None:
        from tqdm.auto import tqdm

        total = trainer.config.epochs * trainer.steps_per_epoch
        self.bar = tqdm(total=total, initial=trainer.state.global_step, desc=self.desc or trainer.stage,
                        position=self.position, leave=self.leave, file=self.file, dynamic_ncols=True,
                        unit="step")

    def on_step_end(self, trainer: Trainer, logs: dict[str, float]) -> None:
        if self.bar is None:
            return
        self.bar.update(1)
        self.bar.set_postfix(epoch=f"{trainer.state.epoch + 1}/{trainer.config.epochs}",
                             loss=f"{logs['loss']:.4f}", val_dice=_fmt(self.val_dice), refresh=False)

    def on_epoch_end(self, trainer: Trainer, logs: dict[str, Any]) -> None:
        self.val_dice = logs.get("val_dice")

    def on_warning(self, trainer: Trainer, message: str) -> None:
        if self.bar is not None:
            self.bar.write(f"warning ({trainer.stage}): {message}")

    def on_train_end(self, trainer: Trainer, result: TrainResult) -> None:
        self.close()

    def on_eval_progress(self, fraction: float, message: str) -> None:
        """The evaluation's bar, in percent."""
        if self.bar is None:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=100, desc=self.desc or "evaluation", position=self.position, leave=self.leave,
                            file=self.file, dynamic_ncols=True, unit="%")
        self.bar.update(round(fraction * 100) - self.bar.n)
        self.bar.set_postfix_str(message, refresh=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class Throttle:
    """True at most once per ``seconds``; for callbacks that write somewhere slow (a database)."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self._last = -math.inf

    def ready(self, force: bool = False) -> bool:
        now = time.monotonic()
        if force or now - self._last >= self.seconds:
            self._last = now
            return True
        return False
