"""Stage reuse in the service: a training stage identical to a finished one is not trained again.

* **At creation** (:func:`plan_reuse`) every training stage gets its key (:func:`sikd_core.methods.plan.stage_key`:
  the training datasets' content fingerprints, kept on the dataset rows, and the settings that reach the stage).
  A stage identical to one still queued or running in an earlier experiment the owner may reuse (a sweep's first
  experiment, or a separate request) waits for it (``pending``, ``reuse_wait``) instead of training the same
  thing side by side: what experiments share trains once. No worker is held while a stage waits.
* **At claim** (:func:`wait_at_claim`) a stage with an identical one queued or running, of a lower id (two requests
  stored at the same moment: neither saw the other), gives its claim back and waits for it.
* **At claim** (:func:`reuse_stage`, by the worker) a stage whose key matches a succeeded stage the owner may
  reuse links that stage's files (:func:`sikd_core.reuse.link_stage`: hard links, so the files outlive the first
  experiment and go with the last one that holds them), copies its epoch curve, and succeeds with
  ``reused_from`` and the message "reused from experiment N"; what follows (students released, evaluation
  queued, a model row) is what a trained stage gets.
* **Evaluation** (:func:`score_sources`): the experiments whose evaluations scored the same models (a shared
  stage key) and that the owner may reuse are handed to the evaluation, which takes their per-case scores where
  the evaluation data is the same content too, and computes the rest.
* **Waiting stages** are released (:func:`release_waiting`) when what they wait for ends: they then reuse it, or
  train themselves if it failed, was cancelled or deleted. The worker calls it after each stage, the API after a
  cancel or delete, and the worker's reconciler every pass (for any path that was missed).

Ownership: a user reuses their own stages, and another user's only when every training dataset of that stage's
experiment is shared (the SYNTHETIC demo): never a stage trained on someone's private data.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from sikd_core.data.fingerprint import manifest_fingerprint
from sikd_core.methods.plan import is_student_stage, stage_keys
from sikd_core.reuse import (
    experiment_folders,
    find_stage,
    finished_record,
    link_stage,
    origin_label,
    reuse_message,
)
from sikd_core.spec import ExperimentSpec
from sikd_service import crud, dispatch
from sikd_service.config import Settings
from sikd_service.db import session_scope
from sikd_service.storage import dataset_dir, experiment_dir, manifest_from_stored
from sikd_service.tables import Dataset, EpochMetric, Experiment, ExperimentDataset, Stage

log = logging.getLogger("sikd.sikd_service.reuse")

ACTIVE_STAGE = ("pending", "queued", "running")


def fingerprints(settings: Settings, datasets: list[Dataset]) -> list[str]:
    """Each dataset's content fingerprint, computed from its files once and kept on its row."""
    out = []
    for ds in datasets:
        if ds.content_hash is None:
            folder = dataset_dir(settings, ds.id)
            ds.content_hash = manifest_fingerprint(manifest_from_stored(ds.manifest, folder))
        out.append(ds.content_hash)
    return out


def _may_reuse(session: Session, *, owner_id: int, source: Experiment) -> bool:
    """The owner's own stage, or one trained only on shared datasets."""
    if source.owner_id == owner_id:
        return True
    shared = session.scalars(select(Dataset.shared).join(ExperimentDataset)
                             .where(ExperimentDataset.experiment_id == source.id, ExperimentDataset.role == "train"))
    flags = list(shared)
    return bool(flags) and all(flags)


def _candidates(session: Session, *, key: str, owner_id: int, statuses: tuple[str, ...],
                not_experiment: int) -> list[tuple[Stage, Experiment]]:
    rows = session.execute(select(Stage, Experiment).join(Experiment)
                           .where(Stage.reuse_key == key, Stage.status.in_(statuses),
                                  Stage.experiment_id != not_experiment, Experiment.cancel_requested.is_(False))
                           .order_by(Stage.id)).all()
    return [(st, e) for st, e in rows if _may_reuse(session, owner_id=owner_id, source=e)]


def _leader(session: Session, *, key: str, owner_id: int, experiment_id: int,
            below: int | None = None) -> tuple[Stage, Experiment] | None:
    """The first identical stage, queued or running (or pending) in another experiment the owner may reuse, that
    waits for nothing itself (of an id below ``below``): what a stage with ``key`` waits for. A waiting stage waits
    for a stage of a lower id that waits for nothing, so waits never form a cycle."""
    for st, e in _candidates(session, key=key, owner_id=owner_id, statuses=ACTIVE_STAGE, not_experiment=experiment_id):
        if st.reuse_wait is None and (below is None or st.id < below):
            return st, e
    return None


def _waiting_message(leader: Stage, exp: Experiment) -> str:
    return f"waiting for experiment {exp.id}'s identical {leader.kind} stage"


def plan_reuse(session: Session, settings: Settings, *, exp: Experiment, spec: ExperimentSpec,
               train: list[Dataset]) -> None:
    """Key the new experiment's training stages; one identical to a stage still queued or running in an earlier
    experiment waits for it."""
    if not spec.reuse:
        return
    keys = stage_keys(spec, fingerprints(settings, train))
    for st in exp.stages:
        if st.kind == "evaluation":
            continue
        st.reuse_key = keys[(st.kind, int(st.seed or 0))]
        if _candidates(session, key=st.reuse_key, owner_id=exp.owner_id, statuses=("succeeded",),
                       not_experiment=exp.id):
            continue  # a finished one is reused when the worker claims the stage
        found = _leader(session, key=st.reuse_key, owner_id=exp.owner_id, experiment_id=exp.id)
        if found is not None:
            st.status, st.reuse_wait, st.message = "pending", found[0].id, _waiting_message(*found)
    session.flush()


def reuse_preview(session: Session, settings: Settings, *, spec: ExperimentSpec, train: list[Dataset],
                  owner_id: int) -> dict[tuple[str, int], tuple[str, int]]:
    """What a new experiment of ``spec`` would reuse, for the estimate: per training stage ``(kind, seed)``,
    ``("reused", N)`` when a finished identical stage of experiment N may be linked, ``("waits", N)`` when an
    identical one is still queued or running in experiment N; stages absent train. Nothing is stored."""
    if not spec.reuse:
        return {}
    out = {}
    for (kind, seed), key in stage_keys(spec, fingerprints(settings, train)).items():
        done = _candidates(session, key=key, owner_id=owner_id, statuses=("succeeded",), not_experiment=-1)
        if done:
            out[(kind, seed)] = ("reused", done[0][1].id)
            continue
        found = _leader(session, key=key, owner_id=owner_id, experiment_id=-1)
        if found is not None:
            out[(kind, seed)] = ("waits", found[1].id)
    return out


def wait_at_claim(settings: Settings, *, stage_id: int, token: str, owner_id: int) -> int | None:
    """A claimed stage with an identical one of a lower id still queued or running elsewhere (two requests stored
    at once) gives its claim back and waits for it: returns that stage's id, else None (train or reuse)."""
    with session_scope(settings) as s:
        stage = crud.get_stage(s, stage_id=stage_id)
        if stage is None or stage.reuse_key is None:
            return None
        found = _leader(s, key=stage.reuse_key, owner_id=owner_id, experiment_id=stage.experiment_id,
                        below=stage.id)
        if found is None:
            return None
        leader = found[0].id
        n = s.execute(update(Stage).where(Stage.id == stage_id, Stage.claim_token == token, Stage.status == "running")
                      .values(status="pending", reuse_wait=leader, message=_waiting_message(*found),
                              claim_token=None, worker=None, heartbeat_at=None,
                              attempts=Stage.attempts - 1)).rowcount  # waiting is not an attempt
    if not n:
        return None
    release_waiting(settings)  # it may have finished meanwhile: then this one goes on at once
    return leader


@dataclass
class Reused:
    """A stage linked from an identical finished one: its record and what its row records."""

    record: dict[str, Any]
    #: Stage row fields: best_val_dice, epoch, warnings, health, reused_from (the experiment that trained it; None
    #: for a CLI folder), message.
    done: dict[str, Any]


def reuse_stage(settings: Settings, *, stage_id: int, owner_id: int) -> Reused | None:
    """Link a succeeded identical stage into this (claimed) stage, from the database (one the owner may reuse) or
    else from the operator's CLI folders (``reuse_folders``); None when there is none (or its files are gone)."""
    with session_scope(settings) as s:
        stage = crud.get_stage(s, stage_id=stage_id)
        if stage is None or stage.reuse_key is None:
            return None
        dst = experiment_dir(settings, stage.experiment_id) / f"seed_{int(stage.seed or 0)}" / stage.kind
        for src_stage, src_exp in _candidates(s, key=stage.reuse_key, owner_id=owner_id, statuses=("succeeded",),
                                              not_experiment=stage.experiment_id):
            src = experiment_dir(settings, src_exp.id) / f"seed_{int(src_stage.seed or 0)}" / src_stage.kind
            if finished_record(src) is None:
                continue
            origin = src_stage.reused_from or src_exp.id  # the experiment that trained it
            try:
                record = link_stage(src, dst, reused_from={"experiment": origin})
            except OSError as e:  # deleted meanwhile: try the next one, or train
                log.warning("stage %d: cannot reuse stage %d (%s)", stage_id, src_stage.id, e)
                continue
            fields = ("epoch", "attempt", "loss", "seg_loss", "kd_loss", "val_dice", "val_dice_per_class",
                      "best_val_dice", "lr", "train_seconds")
            s.execute(EpochMetric.__table__.delete().where(EpochMetric.stage_id == stage_id))
            for m in s.scalars(select(EpochMetric).where(EpochMetric.stage_id == src_stage.id)):
                s.add(EpochMetric(stage_id=stage_id, **{f: getattr(m, f) for f in fields}))
            log.info("stage %d reused stage %d of experiment %d", stage_id, src_stage.id, src_exp.id)
            return Reused(record, dict(best_val_dice=src_stage.best_val_dice, epoch=src_stage.epoch,
                                       warnings=list(src_stage.warnings or []), health=list(src_stage.health or []),
                                       reused_from=origin, message=f"reused from experiment {origin}"))
        found = find_stage(settings.reuse_folders, stage.reuse_key) if settings.reuse_folders else None
        if found is None:
            return None
        try:
            record = link_stage(found, dst, reused_from={"folder": str(found.parents[1])})
        except OSError as e:
            log.warning("stage %d: cannot reuse %s (%s)", stage_id, found, e)
            return None
        from sikd_service.experiments import json_safe  # (it imports this module)

        s.execute(EpochMetric.__table__.delete().where(EpochMetric.stage_id == stage_id))
        for logs in record.get("history") or []:  # the curve, from the stage's own record
            if isinstance(logs, dict) and "epoch" in logs:
                crud.record_epoch(s, stage_id=stage_id, attempt=1, logs=json_safe(logs))
        log.info("stage %d reused %s", stage_id, found)
        return Reused(record, dict(best_val_dice=json_safe(record.get("best_val_dice")), epoch=int(record["epochs"]),
                                   warnings=list(record.get("warnings") or []),
                                   health=json_safe(list(record.get("health") or [])), reused_from=None,
                                   message=f"reused from {origin_label(record['reused_from'])}"[:300]))


def score_sources(settings: Settings, *, experiment_id: int, owner_id: int, limit: int = 50) -> dict[Path, dict[str, Any]]:
    """Folders of succeeded experiments the owner may reuse that share a stage key with this one (their
    evaluations scored the same models): the evaluation takes their per-case scores where the data is the same
    too (:mod:`sikd_core.score_reuse`). The newest ``limit`` of them."""
    with session_scope(settings) as s:
        keys = select(Stage.reuse_key).where(Stage.experiment_id == experiment_id, Stage.reuse_key.is_not(None))
        ids = s.scalars(select(Stage.experiment_id).join(Experiment)
                        .where(Stage.reuse_key.in_(keys), Stage.experiment_id != experiment_id,
                               Experiment.status == "succeeded").distinct()
                        .order_by(Stage.experiment_id.desc()).limit(4 * limit)).all()
        exps = [e for e in (s.get(Experiment, i) for i in ids)
                if e is not None and _may_reuse(s, owner_id=owner_id, source=e)][:limit]
        out = {experiment_dir(settings, e.id): {"experiment": e.id} for e in exps}
    return {**out, **experiment_folders(settings.reuse_folders)}  # and the operator's CLI folders


def evaluation_reuse(report: dict[str, Any]) -> dict[str, Any]:
    """The evaluation stage's ``message`` saying which scores were reused (:func:`sikd_core.reuse.reuse_message`)
    and its ``reused_from``: the experiment every score came from, when they all came from one."""
    message = reuse_message(report)
    whole = message is not None and message.startswith("evaluation reused")
    return {"message": message if message is None else message[:300],
            "reused_from": report["reused_scores"][0]["reused_from"].get("experiment") if whole else None}


def release_waiting(settings: Settings) -> list[int]:
    """Stages waiting for an identical stage that is no longer queued or running (it succeeded: they reuse it;
    it failed, was cancelled or deleted: they train) are queued and sent; returns their ids. A student whose
    teacher has not succeeded yet only stops waiting: its teacher releases it as usual."""
    jobs: list[tuple[int, str, list[int]]] = []
    with session_scope(settings) as s:
        waiting = list(s.scalars(select(Stage).where(Stage.reuse_wait.is_not(None), Stage.status == "pending")))
        for st in waiting:
            leader = s.execute(select(Stage.status, Experiment.cancel_requested).join(Experiment)
                               .where(Stage.id == st.reuse_wait)).first()
            if leader is not None and leader[0] in ACTIVE_STAGE and not leader[1]:
                continue
            teacher_ready = not is_student_stage(st.kind) or s.scalar(
                select(Stage.status).where(Stage.experiment_id == st.experiment_id, Stage.kind == "teacher",
                                           Stage.seed == st.seed)) == "succeeded"
            n = s.execute(update(Stage).where(Stage.id == st.id, Stage.status == "pending",
                                              Stage.reuse_wait == st.reuse_wait)
                          .values(reuse_wait=None, message=None,
                                  status="queued" if teacher_ready else "pending")).rowcount
            if n and teacher_ready:
                jobs.append((st.id, st.kind, crud.student_ids(s, experiment_id=st.experiment_id, seed=st.seed)
                             if st.kind == "teacher" else []))
    for stage_id, kind, students in jobs:
        try:
            dispatch.enqueue_stage(stage_id, kind=kind, then_student_ids=students)
        except Exception:  # noqa: BLE001 - queued without a message: the reconciler sends it again
            log.exception("could not send stage %d", stage_id)
    return [j[0] for j in jobs]
