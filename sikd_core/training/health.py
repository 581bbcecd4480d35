"""Training health: named, structured findings about a training stage that went wrong without crashing.

A finding is a plain JSON dict (the schema the report, the API and the dashboard share)::

    {"code": str, "severity": "warning" | "error", "stage": str, "seed": int, "method": str | None,
     "epoch": int | None, "message": str, "values": {str: number | str | list}}

:class:`HealthMonitor` is a training :class:`~sikd_core.training.callbacks.Callback` that looks at every
epoch's validation statistics (the trainer's validation already returns the fraction of pixels predicted
as each class, so no second pass is needed) and reports through the trainer's warning channel
(:meth:`Trainer.warn`), so the CLI's console, the worker's database callback, ``done.json`` and the report
all see the same findings. With ``on_unhealthy="stop"`` the first finding raises
:class:`~sikd_core.errors.TrainingHealthError`. Findings that compare stages (student vs baseline, cross-dataset
vs chance) are computed at evaluation time in :mod:`sikd_core.health`.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Literal

from sikd_core.errors import TrainingHealthError
from sikd_core.training.callbacks import Callback

if TYPE_CHECKING:  # pragma: no cover
    from sikd_core.training.trainer import Trainer, TrainResult

OnUnhealthy = Literal["warn", "stop"]

#: A class counts as "never predicted" on validation when at most this fraction of its pixels is predicted
#: as it, while the ground truth holds it.
NEVER_PREDICTED_FRACTION = 1e-6
#: A class counts as "always predicted" when at least this fraction of all validation pixels is predicted as
#: it while the ground truth holds at most :data:`ALWAYS_TRUE_FRACTION` of it (every pixel one class).
ALWAYS_PREDICTED_FRACTION = 0.995
ALWAYS_TRUE_FRACTION = 0.95
#: Collapse and zero-Dice findings need this many consecutive epochs: at least
#: :data:`MIN_BAD_EPOCHS`, or :data:`BAD_EPOCH_FRACTION` of the run if that is more (never more than the run).
MIN_BAD_EPOCHS = 3
BAD_EPOCH_FRACTION = 0.2
#: Validation Dice at or below this counts as zero.
ZERO_DICE = 1e-6
#: An epoch's mean loss above this multiple of the first epoch's is "exploding".
EXPLODING_FACTOR = 10.0
#: A teacher that sees class-mean images (or label maps) should segment them nearly perfectly; below this
#: best validation Dice it has not learned its task and cannot teach shape.
TEACHER_MIN_DICE = 0.9
#: Stage inputs for which the teacher is expected to be near perfect (not the "image" ablation).
NEAR_PERFECT_TEACHER_INPUTS = ("class_mean", "label_map")

ERROR_CODES = frozenset({"nonfinite_loss", "collapsed_prediction", "val_dice_zero", "student_equals_baseline"})


def make_finding(code: str, message: str, *, stage: str, seed: int, method: str | None, epoch: int | None,
                 values: dict[str, Any] | None = None, severity: str | None = None) -> dict[str, Any]:
    """One finding in the shared schema; severity defaults by code (errors make the model unusable)."""
    return {"code": code, "severity": severity or ("error" if code in ERROR_CODES else "warning"),
            "stage": stage, "seed": int(seed), "method": method, "epoch": epoch, "message": message,
            "values": dict(values or {})}


def bad_epochs_needed(epochs: int) -> int:
    """Consecutive bad epochs before a collapse or zero-Dice finding (see :data:`MIN_BAD_EPOCHS`)."""
    return max(1, min(epochs, max(MIN_BAD_EPOCHS, math.ceil(BAD_EPOCH_FRACTION * epochs))))


def _streak(flags: list[bool]) -> tuple[int, int]:
    """Longest run of True in ``flags`` and the (0-based) index where it ends."""
    best, end, cur = 0, -1, 0
    for i, f in enumerate(flags):
        cur = cur + 1 if f else 0
        if cur > best:
            best, end = cur, i
    return best, end


def epoch_findings(history: list[dict[str, Any]], *, epochs: int, class_names: list[str], stage: str, seed: int,
                   method: str | None) -> list[dict[str, Any]]:
    """Every per-epoch finding the history shows so far (the caller drops those already reported).

    ``history`` holds the trainer's epoch logs: ``loss``, ``val_dice``, ``val_pred_fraction`` and
    ``val_true_fraction`` (per class, background included).
    """
    out: list[dict[str, Any]] = []
    need = bad_epochs_needed(epochs)
    ctx = dict(stage=stage, seed=seed, method=method)
    # exploding loss: an epoch's mean loss far above the first epoch's
    losses = [h.get("loss") for h in history]
    if len(losses) >= 2 and losses[0] is not None and math.isfinite(losses[0]) and losses[0] > 0:
        for i, v in enumerate(losses[1:], start=1):
            if v is not None and math.isfinite(v) and v > EXPLODING_FACTOR * losses[0]:
                out.append(make_finding(
                    "exploding_loss", f"{stage}: the training loss rose to {v:.4g} in epoch {i + 1}, more than "
                    f"{EXPLODING_FACTOR:g}x the first epoch's {losses[0]:.4g}; lower the learning rate",
                    epoch=i + 1, values={"loss": v, "first_loss": losses[0], "factor": EXPLODING_FACTOR}, **ctx))
                break
    val = [h for h in history if h.get("val_dice") is not None]
    if not val:
        return out
    # validation Dice stuck at zero
    run, end = _streak([float(h["val_dice"]) <= ZERO_DICE for h in val])
    if run >= need:
        out.append(make_finding(
            "val_dice_zero", f"{stage}: validation Dice was 0 in {run} consecutive epochs (up to epoch "
            f"{val[end]['epoch']}): the network segments nothing of the foreground",
            epoch=int(val[end]["epoch"]), values={"epochs": run, "val_dice": float(val[end]["val_dice"])}, **ctx))
    # collapsed predictions: a class never, or always, predicted
    fr = [h for h in val if h.get("val_pred_fraction") and h.get("val_true_fraction")]
    if not fr:
        return out
    k = len(fr[0]["val_pred_fraction"])
    names = list(class_names) if len(class_names) == k else ["background", *[f"class {c}" for c in range(1, k)]]
    collapsed: list[dict[str, Any]] = []
    for c in range(k):
        pred = [float(h["val_pred_fraction"][c]) for h in fr]
        true = [float(h["val_true_fraction"][c]) for h in fr]
        never = [c > 0 and t > 0 and p <= NEVER_PREDICTED_FRACTION for p, t in zip(pred, true, strict=True)]
        always = [p >= ALWAYS_PREDICTED_FRACTION and t <= ALWAYS_TRUE_FRACTION
                  for p, t in zip(pred, true, strict=True)]
        for kind, flags in (("never", never), ("always", always)):
            run, end = _streak(flags)
            if run < need:
                continue
            if kind == "never":
                what = f"never predicted {names[c]} on validation (ground truth: {true[end]:.1%} of the pixels)"
            else:
                what = (f"predicted {pred[end]:.1%} of all validation pixels as {names[c]} (ground truth: "
                        f"{true[end]:.1%}): every pixel is one class")
            collapsed.append(make_finding(
                "collapsed_prediction", f"{stage}: {what} in {run} consecutive epochs (up to epoch "
                f"{fr[end]['epoch']})", epoch=int(fr[end]["epoch"]),
                values={"class": names[c], "class_index": c, "kind": kind, "epochs": run,
                        "pred_fraction": pred[end], "true_fraction": true[end]}, **ctx))
    # one class everywhere implies every other one never: report the cause only
    if any(f["values"]["kind"] == "always" for f in collapsed):
        collapsed = [f for f in collapsed if f["values"]["kind"] == "always"]
    return out + collapsed


def teacher_finding(best_val_dice: float | None, *, teacher_input: str, seed: int, epoch: int | None,
                    method: str | None = "sikd", stage: str = "teacher") -> dict[str, Any] | None:
    """``teacher_not_learned`` when a class-mean (or label-map) teacher ends below :data:`TEACHER_MIN_DICE`."""
    if teacher_input not in NEAR_PERFECT_TEACHER_INPUTS or best_val_dice is None or not math.isfinite(best_val_dice):
        return None
    if best_val_dice >= TEACHER_MIN_DICE:
        return None
    return make_finding(
        "teacher_not_learned", f"{stage}: best validation Dice {best_val_dice:.3f} on its {teacher_input} images, "
        f"below {TEACHER_MIN_DICE:g}: the teacher did not learn its (easy) task, so it cannot teach shape; "
        "train it longer or check the labels", stage=stage, seed=seed, method=method, epoch=epoch,
        values={"best_val_dice": best_val_dice, "threshold": TEACHER_MIN_DICE, "teacher_input": teacher_input})


def finding_key(f: dict[str, Any]) -> tuple:
    """Identity of a finding within a stage: its code and what it is about (class and kind)."""
    v = f.get("values") or {}
    return (f["code"], f.get("stage"), f.get("seed"), v.get("class_index"), v.get("kind"))


class HealthMonitor(Callback):
    """Checks every epoch of a training stage and reports findings through ``trainer.warn``.

    Args:
        on_unhealthy: ``"warn"`` records findings; ``"stop"`` raises :class:`TrainingHealthError` with the first.
        teacher_input: for a teacher stage, what it sees; class-mean and label-map teachers must end near
            perfect (:data:`TEACHER_MIN_DICE`).
        method: the method the stage belongs to (``baseline``, ``sikd``...), copied into findings.
    """

    def __init__(self, on_unhealthy: OnUnhealthy = "warn", *, teacher_input: str | None = None,
                 method: str | None = None):
        if on_unhealthy not in ("warn", "stop"):
            raise ValueError(f"on_unhealthy must be 'warn' or 'stop'; got {on_unhealthy!r}")
        self.on_unhealthy = on_unhealthy
        self.teacher_input = teacher_input
        self.method = method

    def _report(self, trainer: Trainer, findings: list[dict[str, Any]]) -> None:
        seen = {finding_key(f) for f in trainer.state.health}
        for f in findings:
            if finding_key(f) in seen:
                continue
            seen.add(finding_key(f))
            trainer.warn(f["message"], finding=f)
            if self.on_unhealthy == "stop":
                raise TrainingHealthError(f"{f['message']} (stopped: the spec says on_unhealthy: stop)")

    def on_epoch_end(self, trainer: Trainer, logs: dict[str, Any]) -> None:
        names = list(trainer.meta.get("class_names") or [])
        self._report(trainer, epoch_findings(trainer.state.history, epochs=trainer.config.epochs, class_names=names,
                                             stage=trainer.stage, seed=trainer.config.seed, method=self.method))

    def on_train_end(self, trainer: Trainer, result: TrainResult) -> None:
        if self.teacher_input is None or trainer.val is None:
            return
        f = teacher_finding(result.best_score, teacher_input=self.teacher_input, seed=trainer.config.seed,
                            epoch=result.best_epoch if result.best_epoch > 0 else None, method=self.method,
                            stage=trainer.stage)
        if f is not None:
            self._report(trainer, [f])
            result.warnings[:] = list(trainer.state.warnings)
            result.health[:] = list(trainer.state.health)
