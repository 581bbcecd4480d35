"""How a running stage reports to the database: a heartbeat thread and the training callback.

Every write names the stage's claim token; when another worker has taken the stage over (this one was
presumed dead), the write matches nothing, the claim counts as lost and training stops quietly.
"""

from __future__ import annotations

import math
import threading
from typing import Any

from sikd_core.errors import TrainingCancelled
from sikd_core.training import Callback, Throttle
from sikd_service import crud
from sikd_service.config import Settings
from sikd_service.db import session_scope


def finite(v: Any) -> Any:
    """NaN/inf -> None (JSON and Postgres' json type have no NaN), recursively for lists."""
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, (list, tuple)):
        return [finite(x) for x in v]
    if isinstance(v, dict):
        return {k: finite(x) for k, x in v.items()}
    return v


def cancel_requested(settings: Settings, experiment_id: int) -> bool:
    with session_scope(settings) as s:
        return crud.experiment_cancel_requested(s, experiment_id=experiment_id)


class StageRecorder:
    """Writes to a claimed stage and keeps its heartbeat fresh while the stage runs (also during data
    preparation and evaluation, when no training callback fires)."""

    def __init__(self, settings: Settings, stage_id: int, token: str):
        self.settings = settings
        self.stage_id = stage_id
        self.token = token
        self.lost = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat-{stage_id}", daemon=True)

    def write(self, **values: Any) -> bool:
        if self.lost:
            return False
        with session_scope(self.settings) as s:
            ok = crud.update_claimed_stage(s, stage_id=self.stage_id, token=self.token,
                                           **{k: finite(v) for k, v in values.items()})
        if not ok:
            self.lost = True
        return ok

    def _beat(self) -> None:
        while not self._stop.wait(self.settings.heartbeat_seconds):
            try:
                if not self.write():
                    return
            except Exception:  # noqa: BLE001 - a failed beat is retried at the next one
                continue

    def __enter__(self) -> StageRecorder:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


class DbProgressCallback(Callback):
    """Records training progress (throttled), one metrics row per epoch, warnings and evaluation progress; stops on cancel (checked in the
    database at most once per ``cancel_check_seconds``: the check runs after every training step)."""

    def __init__(self, recorder: StageRecorder, *, experiment_id: int, attempt: int):
        self.recorder = recorder
        self.experiment_id = experiment_id
        self.attempt = attempt
        self.throttle = Throttle(recorder.settings.progress_interval_seconds)
        self.cancel_throttle = Throttle(recorder.settings.cancel_check_seconds)
        self.cancelled = False

    def _record_epochs(self, history: list[dict[str, Any]], attempt: int, replace: bool) -> None:
        with session_scope(self.recorder.settings) as s:
            for logs in history:
                crud.record_epoch(s, stage_id=self.recorder.stage_id, attempt=attempt,
                                  logs={k: finite(v) for k, v in logs.items()}, replace=replace)

    def on_train_start(self, trainer: Any) -> None:
        st = trainer.state
        # A resumed run: epochs finished before the restart whose rows were not written (the worker died
        # between saving the checkpoint and recording the epoch) are recorded from the checkpoint, as the
        # work of the attempt before this one.
        self._record_epochs(st.history, max(1, self.attempt - 1), replace=False)
        best = st.best_score if (trainer.val is not None and st.best_epoch > 0) else None
        self.recorder.write(epochs=trainer.config.epochs, epoch=st.epoch, progress=trainer.progress,
                            resumed_from_epoch=st.epoch or None, best_val_dice=best,
                            val_dice=st.history[-1].get("val_dice") if st.history else None,
                            warnings=list(st.warnings), health=list(st.health))

    def on_step_end(self, trainer: Any, logs: dict[str, float]) -> None:
        if self.throttle.ready():
            self.recorder.write(progress=trainer.progress, epoch=trainer.state.epoch + 1, loss=logs["loss"],
                                eta_seconds=trainer.eta_seconds)

    def on_epoch_end(self, trainer: Any, logs: dict[str, Any]) -> None:
        self._record_epochs([logs], self.attempt, replace=True)
        self.recorder.write(progress=trainer.progress, epoch=logs["epoch"], loss=logs.get("loss"),
                            val_dice=logs.get("val_dice"), best_val_dice=logs.get("best_val_dice"),
                            eta_seconds=trainer.eta_seconds)
        self.throttle.ready(force=True)

    def on_warning(self, trainer: Any, message: str) -> None:
        self.recorder.write(warnings=list(trainer.state.warnings), health=list(trainer.state.health))

    def on_eval_progress(self, fraction: float, message: str) -> None:
        self.recorder.write(progress=fraction, message=message[:300])
        if self.should_stop(None):
            raise TrainingCancelled("evaluation cancelled")

    def should_stop(self, trainer: Any) -> bool:
        if self.recorder.lost:
            return True
        if not self.cancelled and self.cancel_throttle.ready():
            self.cancelled = cancel_requested(self.recorder.settings, self.experiment_id)
        return self.cancelled
