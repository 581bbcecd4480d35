"""Optional MLflow tracking (the ``mlflow`` extra): one MLflow run per training stage and one for the
evaluation, named as in the service.

:class:`MlflowCallback` is an ordinary training callback: at the start of a stage it opens a run and logs
the spec and the stage's training settings as parameters, after every epoch the epoch's numbers as
metrics (step = epoch), and :meth:`MlflowCallback.finish`, called once the stage's ``model.pt`` exists,
logs the artifacts (stage record, model card, exported ONNX bundle) and closes the run.
:func:`log_evaluation` logs the report, the per-case scores and every final model's card. Nothing here
runs unless a caller creates these objects (the CLI with ``--mlflow``, the worker with
``SIKD_MLFLOW_TRACKING_URI``). MLflow errors are logged as warnings and never fail training.
"""

from __future__ import annotations

import json
import logging
import math
import re
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sikd_core.errors import SIKDError
from sikd_core.spec import with_current_names
from sikd_core.training.callbacks import Callback

if TYPE_CHECKING:  # pragma: no cover
    from sikd_core.training.trainer import Trainer, TrainResult

log = logging.getLogger(__name__)

EXPORTED_STAGES = ("baseline", "student")  # the models a user takes away


def experiment_label(spec_name: str, experiment_id: int | None = None) -> str:
    """The MLflow experiment name: the spec's name, with the service's ``#id`` when there is one."""
    return f"{spec_name} #{experiment_id}" if experiment_id is not None else spec_name


def run_name(label: str, stage: str, seed: int | None = None) -> str:
    """A stage's run name, as the service names its models: ``"<label> <stage> seed <seed>"``."""
    return f"{label} {stage}" + (f" seed {seed}" if seed is not None else "")


def flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested dict -> ``{"a.b": "value"}`` strings (MLflow parameters are flat strings, <= 6000 chars)."""
    out: dict[str, str] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping) and v:
            out.update(flatten(v, key + "."))
        else:
            out[key] = (json.dumps(v) if isinstance(v, (list, tuple, dict)) else str(v))[:6000]
    return out


def _metric_key(key: str) -> str:
    return re.sub(r"[^A-Za-z0-9_\-. /:]", "_", key)


def _client(tracking_uri: str) -> Any:
    try:
        from mlflow.tracking import MlflowClient
    except ImportError:
        raise SIKDError("MLflow tracking needs the mlflow extra: pip install 'sikd-studio[mlflow]'") from None
    return MlflowClient(tracking_uri=tracking_uri)


def _experiment_id(client: Any, name: str) -> str:
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return str(exp.experiment_id)
    try:
        return str(client.create_experiment(name))
    except Exception:  # noqa: BLE001 - another process created it first
        exp = client.get_experiment_by_name(name)
        if exp is None:
            raise
        return str(exp.experiment_id)


class MlflowCallback(Callback):
    """Logs one training stage to an MLflow tracking server (see the module docstring)."""

    def __init__(self, tracking_uri: str, label: str, stage: str, seed: int, params: Mapping[str, Any] | None = None,
                 tags: Mapping[str, str] | None = None, export_format: str | None = "onnx",
                 card_fn: Callable[[Path], dict[str, Any]] | None = None):
        self.tracking_uri = tracking_uri
        self.label = label
        self.stage = stage
        self.seed = seed
        self.params = dict(params or {})
        self.tags = dict(tags or {})
        self.export_format = export_format
        self.card_fn = card_fn  # model.pt -> card (the service passes one that knows its dataset rows)
        self.run_id: str | None = None
        self._client: Any = None
        self._warnings: list[str] = []

    @property
    def run_name(self) -> str:
        return run_name(self.label, self.stage, self.seed)

    def _safely(self, what: str, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except SIKDError:
            raise
        except Exception as e:  # noqa: BLE001 - tracking must never break training
            log.warning("MLflow: %s failed: %s: %s", what, type(e).__name__, e)
            return None

    def on_train_start(self, trainer: Trainer) -> None:
        self._safely("starting the run", self._start, trainer)

    def _start(self, trainer: Trainer) -> None:
        from mlflow.entities import Param

        self._client = _client(self.tracking_uri)
        exp_id = _experiment_id(self._client, self.label)
        run = self._client.create_run(exp_id, run_name=self.run_name,
                                      tags={"sikd.stage": self.stage, "sikd.seed": str(self.seed), **self.tags})
        self.run_id = run.info.run_id
        cfg = trainer.config
        params = {**flatten(self.params, "spec."), "stage": self.stage, "seed": str(self.seed),
                  **{f"train.{k}": str(v) for k, v in vars(cfg).items() if not k.startswith("_")}}
        items = [Param(k, v) for k, v in sorted(params.items())]
        for i in range(0, len(items), 100):  # MLflow takes at most 100 parameters per batch
            self._client.log_batch(self.run_id, params=items[i:i + 100])

    def on_epoch_end(self, trainer: Trainer, logs: dict[str, Any]) -> None:
        if self.run_id is not None:
            self._safely("logging epoch metrics", self._epoch, logs)

    def _epoch(self, logs: dict[str, Any]) -> None:
        import time

        from mlflow.entities import Metric

        step = int(logs.get("epoch", 0))
        now = int(time.time() * 1000)
        metrics = []
        for k, v in logs.items():
            if k == "epoch":
                continue
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
                metrics.append(Metric(_metric_key(k), float(v), now, step))
            elif isinstance(v, (list, tuple)):
                metrics += [Metric(_metric_key(f"{k}.{i}"), float(x), now, step) for i, x in enumerate(v)
                            if isinstance(x, (int, float)) and math.isfinite(x)]
        if metrics:
            self._client.log_batch(self.run_id, metrics=metrics)

    def on_warning(self, trainer: Trainer, message: str) -> None:
        self._warnings.append(message)

    def on_train_end(self, trainer: Trainer, result: TrainResult) -> None:
        if self.run_id is not None and math.isfinite(result.best_score):
            self._safely("logging the result", self._client.log_metric, self.run_id, "best_val_dice",
                         float(result.best_score))

    def finish(self, stage_dir: str | Path, status: str = "FINISHED") -> None:
        """Log the stage's artifacts (record, model card, exported model) and close the run. Call it after
        the stage wrote ``model.pt``; a stage that was already done (no run opened) logs nothing."""
        if self.run_id is None:
            return
        self._safely("logging artifacts", self._artifacts, Path(stage_dir), status)

    def _artifacts(self, stage_dir: Path, status: str) -> None:
        from sikd_core.export.bundle import write_bundle, write_card
        from sikd_core.export.card import card_for_bundle

        try:
            with tempfile.TemporaryDirectory(prefix="sikd-mlflow-") as tmp:
                if self._warnings:
                    (Path(tmp) / "warnings.txt").write_text("\n".join(self._warnings) + "\n")
                    self._client.log_artifact(self.run_id, str(Path(tmp) / "warnings.txt"))
                if (stage_dir / "done.json").is_file():
                    self._client.log_artifact(self.run_id, str(stage_dir / "done.json"))
                model = stage_dir / "model.pt"
                if status == "FINISHED" and model.is_file():
                    card = self.card_fn(model) if self.card_fn else card_for_bundle(model)
                    write_card(card, Path(tmp) / "card")
                    self._client.log_artifacts(self.run_id, str(Path(tmp) / "card"), "model_card")
                    if self.export_format and self.stage in EXPORTED_STAGES:
                        out = write_bundle(model, Path(tmp) / "export", self.export_format, card=card)
                        self._client.log_artifacts(self.run_id, str(out), f"export_{self.export_format}")
        finally:
            self._client.set_terminated(self.run_id, status)


def log_evaluation(tracking_uri: str, label: str, workdir: str | Path, spec: Mapping[str, Any] | None = None) -> str | None:
    """Log an evaluated experiment folder as run ``"<label> evaluation"``: summary metrics, the report,
    the per-case scores and every final model's card. Returns the run id (None if MLflow failed)."""
    try:
        return _log_evaluation(tracking_uri, label, Path(workdir), spec)
    except SIKDError:
        raise
    except Exception as e:  # noqa: BLE001 - tracking must never fail the evaluation
        log.warning("MLflow: logging the evaluation failed: %s: %s", type(e).__name__, e)
        return None


def _log_evaluation(tracking_uri: str, label: str, workdir: Path, spec: Mapping[str, Any] | None) -> str:
    from sikd_core.export.bundle import write_card
    from sikd_core.export.card import card_for_bundle

    client = _client(tracking_uri)
    report = json.loads((workdir / "report.json").read_text())
    run = client.create_run(_experiment_id(client, label), run_name=run_name(label, "evaluation"),
                            tags={"sikd.stage": "evaluation"})
    rid = run.info.run_id
    try:
        params = with_current_names(dict(spec or report.get("spec") or {}))  # an older report says "model"
        for k, v in sorted(flatten(params, "spec.").items())[:500]:
            client.log_param(rid, k, v)
        for s in report.get("summary", []):
            for m in ("dice", "iou", "hd95"):
                v = s.get(f"{m}_mean")
                if isinstance(v, (int, float)) and math.isfinite(v):
                    client.log_metric(rid, _metric_key(f"{s['split']}/{s['dataset']}/{s['method']}/{m}"), float(v))
        for c in report.get("comparisons", []):
            v = c["dice"]["mean_diff"]
            if isinstance(v, (int, float)) and math.isfinite(v):
                client.log_metric(rid, _metric_key(f"{c['split']}/{c['dataset']}/delta_dice"), float(v))
        for name in ("report.json", "report.md"):
            if (workdir / name).is_file():
                client.log_artifact(rid, str(workdir / name))
        if (workdir / "eval" / "cases.json").is_file():
            client.log_artifact(rid, str(workdir / "eval" / "cases.json"))
        with tempfile.TemporaryDirectory(prefix="sikd-mlflow-") as tmp:
            for model in sorted(workdir.glob("seed_*/*/model.pt")):
                if model.parent.name in EXPORTED_STAGES:
                    dest = Path(tmp) / f"{model.parent.parent.name}_{model.parent.name}"
                    write_card(card_for_bundle(model), dest)
                    client.log_artifacts(rid, str(dest), f"model_cards/{dest.name}")
    finally:
        client.set_terminated(rid)
    return rid
