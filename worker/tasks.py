"""Celery tasks: load the rows by id, call sikd_core, record the outcome. Nothing else.

A task first claims its stage (an atomic UPDATE): a duplicate delivery, a stage already finished or an
experiment cancelled meanwhile claims nothing and the task returns quietly. Training resumes from the
stage's ``latest.pt`` and a finished stage is never retrained (sikd_core's ``ExperimentRun`` guarantees
both), so running a stage again after a crash is safe.
"""

from __future__ import annotations

import json
import logging
import traceback
import uuid
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from sikd_core.errors import SIKDError, SpecError, TrainingCancelled
from sikd_core.inference import load_bundle
from sikd_core.pipeline import TRAIN_STAGES, DatasetRef, ExperimentRun, is_train_stage
from sikd_core.spec import method_of_stage, parse_spec
from sikd_service import crud, dispatch, steptimes
from sikd_service.celery_app import TASK_EVALUATE, TASK_REMOVE, TASK_TIME_STEPS, TASK_TRAIN, app
from sikd_service.config import Settings, get_settings
from sikd_service.db import session_scope
from sikd_service.experiments import headline
from sikd_service.reuse import (
    evaluation_reuse,
    fingerprints,
    release_waiting,
    reuse_stage,
    score_sources,
    wait_at_claim,
)
from sikd_service.storage import dataset_dir, discard, experiment_dir, manifest_from_stored
from sikd_service.tables import utcnow
from worker.progress import DbProgressCallback, StageRecorder, finite
from worker.recovery import INSTANCE

log = logging.getLogger("sikd.worker")


@dataclass
class Claimed:
    stage_id: int
    kind: str
    seed: int | None
    attempt: int
    experiment_id: int
    owner_id: int
    spec: dict[str, Any]
    datasets: dict[str, int]  # spec key -> dataset id
    token: str


def describe_error(e: BaseException) -> str:
    """sikd_core's messages (e.g. TrainingHealthError) are meant for users and are shown as they are."""
    return str(e) if isinstance(e, SIKDError) else f"{type(e).__name__}: {e}"


def traceback_summary(e: BaseException, frames: int = 4, max_chars: int = 3000) -> str:
    text = "".join(traceback.format_exception(type(e), e, e.__traceback__, limit=-frames))
    return text[-max_chars:]


def claim(settings: Settings, stage_id: int, worker: str, kinds: tuple[str, ...], *,
          any_method: bool = False) -> Claimed | None:
    """Claim the stage (of one of ``kinds``, or with ``any_method`` any method's training stage such as
    ``gin+sikd``) for this worker, or None when there is nothing to run."""
    with session_scope(settings) as s:
        stage = crud.get_stage(s, stage_id=stage_id)
        if stage is None or (stage.kind not in kinds and not (any_method and is_train_stage(stage.kind))):
            return None
        exp = crud.get_experiment_for_worker(s, experiment_id=stage.experiment_id)
        if exp is None or exp.cancel_requested:
            return None
        # The token starts with this worker process's instance id: its reconciler finds the stages its pool
        # processes hold, and requeues those whose process died (worker.recovery).
        token = INSTANCE + uuid.uuid4().hex[len(INSTANCE):]
        stale = utcnow() - timedelta(seconds=settings.stale_heartbeat_seconds)
        previous_worker = stage.worker
        if not crud.claim_stage(s, stage_id=stage_id, token=token, worker=worker, stale_before=stale):
            return None
        s.refresh(stage)
        if stage.attempts > settings.max_stage_attempts:  # taken over from a dead process, out of attempts
            error = crud.out_of_attempts_error(stage.attempts - 1, previous_worker, settings.max_stage_attempts)
            crud.finish_stage(s, stage_id=stage_id, token=token, status="failed", error=error)
            name = stage.kind if stage.seed is None else f"{stage.kind} (seed {stage.seed})"
            crud.fail_experiment(s, experiment_id=exp.id, error=f"{name} failed: {error}")
            log.error("stage %d failed: %s", stage_id, error)
            return None
        return Claimed(stage_id=stage.id, kind=stage.kind, seed=stage.seed, attempt=stage.attempts,
                       experiment_id=exp.id, owner_id=exp.owner_id, spec=dict(exp.spec),
                       datasets={link.key: link.dataset_id for link in exp.dataset_links}, token=token)


def build_experiment(settings: Settings, c: Claimed, *, evaluation: bool = False) -> ExperimentRun:
    """sikd_core's ExperimentRun on the stored spec, resolving dataset ids to the stored manifests. For the
    evaluation, with the evaluation datasets' fingerprints and the earlier evaluations it may take scores from."""
    spec = parse_spec(c.spec)
    eval_hashes: dict[str, str] = {}
    with session_scope(settings) as s:
        rows = crud.get_datasets_by_id(s, ids=list(c.datasets.values()), with_manifest=True)
        train_rows = [rows.get(c.datasets.get(k, -1)) for k in spec.train_datasets]
        hashes = [r.content_hash for r in train_rows if r is not None and r.content_hash]
        if evaluation and spec.reuse:
            found = [(k, rows[c.datasets[k]]) for k in spec.eval_datasets if c.datasets.get(k) in rows]
            eval_hashes = dict(zip([k for k, _ in found], fingerprints(settings, [r for _, r in found]), strict=True))
        refs = {key: DatasetRef(key=key, path=dataset_dir(settings, ds_id), name=rows[ds_id].name,
                                manifest=manifest_from_stored(rows[ds_id].manifest, dataset_dir(settings, ds_id)))
                for key, ds_id in c.datasets.items() if ds_id in rows}

    def resolver(key: str) -> DatasetRef:
        if key not in refs:
            raise SpecError(f"dataset {key} no longer exists")
        return refs[key]

    return ExperimentRun(spec, experiment_dir(settings, c.experiment_id), resolver=resolver,
                      cache_dir=settings.cache_dir, checkpoint_interval_s=settings.checkpoint_interval_seconds,
                      fingerprints=hashes if len(hashes) == len(spec.train_datasets) else None,
                      eval_fingerprints=eval_hashes,
                      score_sources=score_sources(settings, experiment_id=c.experiment_id, owner_id=c.owner_id)
                      if evaluation and spec.reuse else {})


def _stopped(settings: Settings, c: Claimed, rec: StageRecorder, e: BaseException) -> str:
    """Record why a stage ended without success (unless another worker holds it now)."""
    with session_scope(settings) as s:
        deleted = crud.get_stage(s, stage_id=c.stage_id) is None
    if deleted:  # the experiment was deleted while this stage ran: what it wrote since goes too
        discard(settings, experiment_dir(settings, c.experiment_id))
        release_waiting(settings)
        return "cancelled"
    if rec.lost:
        log.warning("stage %d was taken over by another worker; stopping", c.stage_id)
        return "lost"
    if type(e).__name__ == "Terminated":  # billiard: this pool process got SIGTERM, its worker is stopping
        log.warning("stage %d interrupted: its worker is stopping (the stage is given back, not failed)", c.stage_id)
        return "lost"  # the worker's hand-back (or the reconciler) puts it back in the queue
    if isinstance(e, TrainingCancelled):
        with session_scope(settings) as s:
            crud.finish_stage(s, stage_id=c.stage_id, token=c.token, status="cancelled")
        release_waiting(settings)  # stages elsewhere waiting for this one train themselves
        return "cancelled"
    with session_scope(settings) as s:
        msg = describe_error(e)
        if not crud.finish_stage(s, stage_id=c.stage_id, token=c.token, status="failed", error=msg,
                                 traceback_summary=traceback_summary(e)):
            # the claim was given back (a stopping worker) or taken over meanwhile: not ours to fail
            log.warning("stage %d ended with %s after its claim was given back; the experiment goes on",
                        c.stage_id, msg)
            return "lost"
        name = c.kind if c.seed is None else f"{c.kind} (seed {c.seed})"
        crud.fail_experiment(s, experiment_id=c.experiment_id, error=f"{name} failed: {msg}")
    log.error("stage %d (%s) failed: %s", c.stage_id, name, msg)
    release_waiting(settings)  # stages elsewhere waiting for this one train themselves
    return "failed"


def mlflow_tracker(settings: Settings, c: Claimed) -> Any:
    """An MLflow callback for this stage when ``SIKD_MLFLOW_TRACKING_URI`` is set, else None."""
    if not settings.mlflow_tracking_uri:
        return None
    from sikd_core.export import card_for_bundle
    from sikd_core.export.tracking import MlflowCallback, experiment_label
    from sikd_service.cards import experiment_datasets

    label = experiment_label(str(c.spec.get("name", "experiment")), c.experiment_id)

    def card(model: Path) -> dict[str, Any]:  # named like the model row the stage is about to get
        with session_scope(settings) as s:
            datasets = experiment_datasets(settings, s, c.experiment_id)
        info = load_bundle(model).info
        return card_for_bundle(model, datasets=datasets, name=f"{label} {info['method']} seed {c.seed}", info=info)

    return MlflowCallback(settings.mlflow_tracking_uri, label, c.kind, int(c.seed or 0), params=c.spec,
                          tags={"sikd.experiment_id": str(c.experiment_id)}, card_fn=card)


def run_training_stage(stage_id: int, *, worker: str = "local") -> str:
    """Train one stage; returns the outcome (succeeded, failed, cancelled, skipped, lost, or waiting: an identical
    stage trains elsewhere)."""
    settings = get_settings()
    c = claim(settings, stage_id, worker, TRAIN_STAGES, any_method=True)
    if c is None:
        return "skipped"
    reused = reuse_stage(settings, stage_id=stage_id, owner_id=c.owner_id)
    if reused is None and wait_at_claim(settings, stage_id=stage_id, token=c.token, owner_id=c.owner_id):
        return "waiting"  # an identical stage trains elsewhere: released (and sent again) when it ends
    if reused is not None:  # an identical stage has finished: its model and scores, not a second training
        record, done = reused.record, reused.done
    else:
        outcome = _train(settings, c)
        if isinstance(outcome, str):
            return outcome
        record = outcome
        done = dict(best_val_dice=finite(record.get("best_val_dice")), epoch=record["epochs"],
                    warnings=list(record.get("warnings") or []), health=finite(list(record.get("health") or [])))
    with session_scope(settings) as s:
        if not crud.finish_stage(s, stage_id=stage_id, token=c.token, status="succeeded", **done):
            return "lost"
        if method_of_stage(c.kind) is not None:  # a deployable model (not the teacher)
            path = Path(record["model_path"])
            info = load_bundle(path).info
            stage = crud.get_stage(s, stage_id=stage_id)
            assert stage is not None
            crud.create_model_row(s, stage=stage, owner_id=c.owner_id,
                                  name=f"{c.spec.get('name', 'experiment')} #{c.experiment_id} "
                                       f"{info['method']} seed {c.seed}",
                                  path=str(path.relative_to(settings.storage_dir)), info=info,
                                  size_bytes=path.stat().st_size)
        if c.kind == "teacher":
            crud.release_student(s, experiment_id=c.experiment_id, seed=int(c.seed or 0))
    with session_scope(settings) as s:
        eval_id = crud.queue_evaluation_once(s, experiment_id=c.experiment_id)
    if eval_id is not None:
        dispatch.enqueue_evaluation(eval_id)
    release_waiting(settings)  # stages elsewhere waiting for this identical one now reuse it
    return "succeeded"


def _train(settings: Settings, c: Claimed) -> dict[str, Any] | str:
    """Train the claimed stage: its record, or the outcome when it did not succeed."""
    with StageRecorder(settings, c.stage_id, c.token) as rec:
        tracker = None
        try:
            exp = build_experiment(settings, c)
            cb = DbProgressCallback(rec, experiment_id=c.experiment_id, attempt=c.attempt)
            tracker = mlflow_tracker(settings, c)
            record = exp.run_stage(c.kind, int(c.seed or 0), callbacks=[cb] + ([tracker] if tracker else []))
        except Exception as e:  # noqa: BLE001 - every failure is recorded on the stage
            if tracker is not None:
                tracker.finish(exp.stage_dir(c.kind, int(c.seed or 0)), status="FAILED")
            return _stopped(settings, c, rec, e)
        if tracker is not None:
            tracker.finish(exp.stage_dir(c.kind, int(c.seed or 0)))
    return record


def run_evaluation_stage(stage_id: int, *, worker: str = "local") -> str:
    """Evaluate every final model and write the report; the experiment then succeeds."""
    settings = get_settings()
    c = claim(settings, stage_id, worker, ("evaluation",))
    if c is None:
        return "skipped"
    with StageRecorder(settings, stage_id, c.token) as rec:
        cb = DbProgressCallback(rec, experiment_id=c.experiment_id, attempt=c.attempt)
        try:
            exp = build_experiment(settings, c, evaluation=True)
            report = exp.evaluate([cb])
            summary = headline(report)
        except Exception as e:  # noqa: BLE001
            return _stopped(settings, c, rec, e)
        if settings.mlflow_tracking_uri:
            from sikd_core.export.tracking import experiment_label, log_evaluation

            log_evaluation(settings.mlflow_tracking_uri,
                           experiment_label(str(c.spec.get("name", "experiment")), c.experiment_id), exp.workdir)
    with session_scope(settings) as s:
        if not crud.finish_stage(s, stage_id=stage_id, token=c.token, status="succeeded",
                                 **evaluation_reuse(report)):
            return "lost"
        crud.finish_experiment(s, experiment_id=c.experiment_id, summary=summary)
    return "succeeded"


def run_step_timing(timing_id: int, *, worker: str = "local", steps: int = 3) -> str:
    """Time a few training steps of a ``step_timings`` row's configuration on this worker's training device and
    record them (and this worker's device profile); returns succeeded, failed or skipped (claimed elsewhere)."""
    from sikd_core.steptime import measure_steps
    from worker.devices import device_profile, record, training_device

    settings = get_settings()
    claimed = steptimes.claim(settings, timing_id, worker)
    if claimed is None:
        return "skipped"
    cfg, token = claimed
    profile = device_profile()
    record(settings, worker, profile)
    try:
        t = measure_steps(cfg.network, json.loads(cfg.kwargs_json), cfg.in_channels, cfg.num_classes,
                          [cfg.height, cfg.width], cfg.batch, training_device(), steps=steps)
    except Exception as e:  # noqa: BLE001 - recorded on the row: the API says why there is no figure
        log.warning("step timing %d failed: %s", timing_id, describe_error(e))
        steptimes.finish(settings, timing_id, token, device=profile, error=describe_error(e))
        return "failed"
    if not steptimes.finish(settings, timing_id, token, device=profile, timings=t):
        return "lost"
    log.info("step timing %d: %s %dx%d batch %d: %.4f s per step on %s", timing_id, cfg.network, cfg.height,
             cfg.width, cfg.batch, t["step_s"], profile["name"])
    return "succeeded"


def remove_paths(paths: list[str]) -> int:
    """Delete folders under the storage root (never outside it)."""
    settings = get_settings()
    root = settings.storage_dir.resolve()
    n = 0
    for p in paths:
        path = Path(p).resolve()
        if root in path.parents:
            discard(settings, path)
            n += 1
    return n


@app.task(name=TASK_TRAIN, bind=True)
def train_stage(self: Any, stage_id: int) -> str:
    return run_training_stage(stage_id, worker=self.request.hostname or "worker")


@app.task(name=TASK_EVALUATE, bind=True)
def evaluate(self: Any, stage_id: int) -> str:
    return run_evaluation_stage(stage_id, worker=self.request.hostname or "worker")


@app.task(name=TASK_TIME_STEPS, bind=True)
def time_steps(self: Any, timing_id: int) -> str:
    return run_step_timing(timing_id, worker=self.request.hostname or "worker")


@app.task(name=TASK_REMOVE)
def remove(paths: list[str]) -> int:
    return remove_paths(paths)
