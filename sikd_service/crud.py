"""Queries. Every function takes the session first and keyword-only arguments after it.

Visibility: a user sees the rows they own; admins see every row; shared datasets (the SYNTHETIC demo)
are visible to all. Invisible rows are reported as missing, so ids of other users' rows reveal nothing.

The worker's state changes are single conditional UPDATEs (claim, heartbeat, finish, "enqueue the
evaluation once"), atomic on SQLite and Postgres alike, so duplicate deliveries and concurrent workers
cannot both win.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import and_, delete, exists, func, or_, select, update
from sqlalchemy.orm import Session, joinedload, selectinload, undefer

from sikd_core.methods.plan import is_student_stage
from sikd_service.tables import (
    ACTIVE_EXPERIMENT,
    ApiToken,
    Dataset,
    EpochMetric,
    Experiment,
    ExperimentDataset,
    Stage,
    TrainedModel,
    User,
    utcnow,
)

# ------------------------------------------------------------------------------------------ users


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def get_user_by_token(session: Session, *, token: str) -> User | None:
    return get_user_by_digest(session, digest=hash_token(token))


def get_user_by_digest(session: Session, *, digest: str) -> User | None:
    """The user whose token has this SHA-256 hex digest (a unique-index lookup)."""
    return session.scalar(select(User).join(ApiToken).where(ApiToken.token_hash == digest))


def revoke_tokens(session: Session, *, user: User) -> int:
    """Delete every token of ``user``; returns how many there were."""
    return session.execute(delete(ApiToken).where(ApiToken.user_id == user.id)).rowcount


def get_user(session: Session, *, user_id: int) -> User | None:
    return session.get(User, user_id)


def get_user_by_name(session: Session, *, name: str) -> User | None:
    return session.scalar(select(User).where(User.name == name))


def list_users(session: Session, *, skip: int, limit: int) -> tuple[list[User], int]:
    count = session.scalar(select(func.count()).select_from(User)) or 0
    rows = session.scalars(select(User).order_by(User.id).offset(skip).limit(limit)).all()
    return list(rows), count


def create_user(session: Session, *, name: str, is_admin: bool) -> User:
    user = User(name=name, is_admin=is_admin)
    session.add(user)
    session.flush()
    return user


def add_token(session: Session, *, user: User, token: str | None = None) -> str:
    """Store a new token of ``user`` (hashed) and return it in clear, for showing once."""
    token = token or secrets.token_urlsafe(32)
    session.add(ApiToken(user_id=user.id, token_hash=hash_token(token)))
    session.flush()
    return token


def ensure_admin(session: Session, *, token: str) -> User:
    """Make ``token`` an admin's token: the token's user if it exists, else the first admin (created as
    ``admin`` when there is none) gets it."""
    user = get_user_by_token(session, token=token)
    if user is not None:
        if not user.is_admin:
            raise ValueError("the configured admin token belongs to a user who is not an admin")
        return user
    user = session.scalar(select(User).where(User.is_admin).order_by(User.id).limit(1))
    if user is None:
        name = "admin"
        while get_user_by_name(session, name=name) is not None:
            name += "_"
        user = create_user(session, name=name, is_admin=True)
    add_token(session, user=user, token=token)
    return user


# ------------------------------------------------------------------------------------------ datasets


def _visible_dataset(user: User) -> Any:
    return True if user.is_admin else or_(Dataset.owner_id == user.id, Dataset.shared)


def list_datasets(session: Session, *, user: User, skip: int, limit: int) -> tuple[list[Dataset], int]:
    cond = _visible_dataset(user)
    count = session.scalar(select(func.count()).select_from(Dataset).where(cond)) or 0
    rows = session.scalars(select(Dataset).where(cond).order_by(Dataset.id).offset(skip).limit(limit)).all()
    return list(rows), count


def get_dataset(session: Session, *, user: User, dataset_id: int, with_manifest: bool = False) -> Dataset | None:
    q = select(Dataset).where(Dataset.id == dataset_id, _visible_dataset(user))
    if with_manifest:
        q = q.options(undefer(Dataset.manifest))
    return session.scalar(q)


def get_datasets_by_id(session: Session, *, ids: Sequence[int], with_manifest: bool = False) -> dict[int, Dataset]:
    q = select(Dataset).where(Dataset.id.in_(list(ids)))
    if with_manifest:
        q = q.options(undefer(Dataset.manifest))
    return {d.id: d for d in session.scalars(q)}


def create_dataset(session: Session, *, owner: User, name: str, manifest: dict[str, Any], stats: dict[str, Any],
                   size_bytes: int, shared: bool = False, synthetic: bool = False) -> Dataset:
    ds = Dataset(owner_id=owner.id, name=name, format=manifest["format"], num_pairs=len(manifest["samples"]),
                 num_classes=len(manifest["class_names"]), class_names=list(manifest["class_names"]),
                 in_channels=int(manifest["in_channels"]), stats=stats, manifest=manifest,
                 size_bytes=size_bytes, shared=shared, synthetic=synthetic)
    session.add(ds)
    session.flush()
    return ds


def experiments_using_dataset(session: Session, *, dataset_id: int) -> list[Experiment]:
    q = (select(Experiment).join(ExperimentDataset).where(ExperimentDataset.dataset_id == dataset_id)
         .order_by(Experiment.id))
    return list(session.scalars(q))


# ------------------------------------------------------------------------------------------ experiments


def _visible_owned(model: Any, user: User) -> Any:
    return True if user.is_admin else model.owner_id == user.id


def lock_user(session: Session, *, user: User) -> None:
    """Serialise one user's check-then-insert (the active-experiment limit) until the next commit.

    A no-op UPDATE of the user's row takes its row lock on PostgreSQL and the database write lock on
    SQLite, so a concurrent request of the same user waits here and then counts what this one stored.
    """
    session.execute(update(User).where(User.id == user.id).values(id=User.id)
                    .execution_options(synchronize_session=False))


def count_active_experiments(session: Session, *, user: User) -> int:
    group = func.coalesce(Experiment.sweep_id, Experiment.id)  # a sweep's experiments count once
    q = select(func.count(func.distinct(group))).select_from(Experiment).where(
        Experiment.owner_id == user.id, Experiment.status.in_(ACTIVE_EXPERIMENT))
    return session.scalar(q) or 0


def create_experiment(session: Session, *, owner: User, name: str, spec: dict[str, Any], plan: Sequence[Any],
                      datasets: Sequence[tuple[str, str, Dataset]]) -> Experiment:
    """An experiment with a row per stage of its ``plan`` (:func:`sikd_core.methods.plan.stage_plan`) plus one
    evaluation stage.

    ``datasets`` are ``(role, key, dataset)``. Stages that can start at once are ``queued``; a student
    waits for its teacher and the evaluation for every training stage (``pending``).
    """
    exp = Experiment(owner_id=owner.id, name=name, spec=spec, status="queued")
    for p in plan:
        exp.stages.append(Stage(kind=p.stage, seed=p.seed, status="pending" if p.role == "student" else "queued",
                                epochs=p.epochs, warnings=[], health=[]))
    exp.stages.append(Stage(kind="evaluation", seed=None, status="pending", epochs=0, warnings=[], health=[]))
    for pos, (role, key, ds) in enumerate(datasets):
        exp.dataset_links.append(ExperimentDataset(dataset_id=ds.id, role=role, position=pos, key=key))
    session.add(exp)
    session.flush()
    return exp


def get_experiment(session: Session, *, user: User, experiment_id: int) -> Experiment | None:
    """The experiment with its stages, in one query (a status read is this query and nothing else)."""
    q = (select(Experiment).where(Experiment.id == experiment_id, _visible_owned(Experiment, user))
         .options(joinedload(Experiment.stages)))
    return session.scalars(q).unique().first()


def epoch_metrics(session: Session, *, stage_ids: Sequence[int]) -> dict[int, list[EpochMetric]]:
    out: dict[int, list[EpochMetric]] = {i: [] for i in stage_ids}
    q = select(EpochMetric).where(EpochMetric.stage_id.in_(list(stage_ids))).order_by(EpochMetric.epoch)
    for m in session.scalars(q):
        out[m.stage_id].append(m)
    return out


def request_cancel(session: Session, *, experiment_id: int, reason: str | None = None,
                   status: str = "cancelled") -> bool:
    """Ask running stages to stop; stages that have not started are cancelled now.

    Returns False when the experiment had already finished (nothing changes then).
    """
    now = utcnow()
    n = session.execute(
        update(Experiment)
        .where(Experiment.id == experiment_id, Experiment.status.in_(ACTIVE_EXPERIMENT))
        .values(cancel_requested=True, status=status, finished_at=now, error=reason)
    ).rowcount
    if not n:
        return False
    session.execute(
        update(Stage)
        .where(Stage.experiment_id == experiment_id, Stage.status.in_(("pending", "queued")))
        .values(status="cancelled", finished_at=now)
    )
    return True


def delete_experiment(session: Session, *, experiment: Experiment) -> None:
    session.delete(experiment)
    session.flush()

# ------------------------------------------------------------------------------------------ models


def list_models(session: Session, *, user: User, experiment_id: int | None, skip: int,
                limit: int) -> tuple[list[TrainedModel], int]:
    cond = [_visible_owned(TrainedModel, user)]
    if experiment_id is not None:
        cond.append(TrainedModel.experiment_id == experiment_id)
    count = session.scalar(select(func.count()).select_from(TrainedModel).where(*cond)) or 0
    q = select(TrainedModel).where(*cond).order_by(TrainedModel.id).offset(skip).limit(limit)
    return list(session.scalars(q)), count


def get_model(session: Session, *, user: User, model_id: int) -> TrainedModel | None:
    return session.scalar(select(TrainedModel).where(TrainedModel.id == model_id,
                                                     _visible_owned(TrainedModel, user)))


# ------------------------------------------------------------------------------------------ worker side


def get_stage(session: Session, *, stage_id: int) -> Stage | None:
    return session.get(Stage, stage_id)


def get_experiment_for_worker(session: Session, *, experiment_id: int) -> Experiment | None:
    return session.scalar(select(Experiment).where(Experiment.id == experiment_id)
                          .options(selectinload(Experiment.dataset_links)))


def claim_stage(session: Session, *, stage_id: int, token: str, worker: str, stale_before: datetime) -> bool:
    """Take a stage for running: it must be ``queued`` (a student only after its teacher succeeded, the
    evaluation only after every training stage), or ``running`` with a heartbeat older than
    ``stale_before`` (its worker died). A duplicate or early delivery claims nothing."""
    now = utcnow()
    n = session.execute(
        update(Stage)
        .where(Stage.id == stage_id,
               or_(Stage.status == "queued",
                   and_(Stage.status == "running",
                        or_(Stage.heartbeat_at.is_(None), Stage.heartbeat_at < stale_before))))
        .values(status="running", claim_token=token, worker=worker, heartbeat_at=now, attempts=Stage.attempts + 1,
                started_at=func.coalesce(Stage.started_at, now), finished_at=None, error=None,
                traceback_summary=None)
    ).rowcount
    if n:
        session.execute(update(Experiment)
                        .where(Experiment.id == select(Stage.experiment_id).where(Stage.id == stage_id)
                               .scalar_subquery(), Experiment.status == "queued")
                        .values(status="running", started_at=now))
    return bool(n)


def update_claimed_stage(session: Session, *, stage_id: int, token: str, **values: Any) -> bool:
    """Write progress of a stage this worker holds (and prove it is alive); False if the claim was lost."""
    values.setdefault("heartbeat_at", utcnow())
    n = session.execute(update(Stage).where(Stage.id == stage_id, Stage.claim_token == token,
                                            Stage.status == "running").values(**values)).rowcount
    return bool(n)


def finish_stage(session: Session, *, stage_id: int, token: str, status: str, error: str | None = None,
                 traceback_summary: str | None = None, **values: Any) -> bool:
    values.update(status=status, finished_at=utcnow(), error=error, traceback_summary=traceback_summary,
                  eta_seconds=None, claim_token=None)
    if status == "succeeded":
        values["progress"] = 1.0
    return update_claimed_stage(session, stage_id=stage_id, token=token, **values)


def experiment_cancel_requested(session: Session, *, experiment_id: int) -> bool:
    """The cancel flag (a primary-key lookup, asked after every training step); a deleted experiment
    counts as cancelled."""
    flag = session.scalar(select(Experiment.cancel_requested).where(Experiment.id == experiment_id))
    return flag is None or bool(flag)


def fail_experiment(session: Session, *, experiment_id: int, error: str) -> None:
    """Mark the experiment failed and stop its other stages."""
    request_cancel(session, experiment_id=experiment_id, reason=error, status="failed")


def _student_kinds(session: Session, *, experiment_id: int) -> list[str]:
    """The experiment's stage kinds that distil from a teacher (the plan's rule, on its few stage rows)."""
    kinds = session.scalars(select(Stage.kind).where(Stage.experiment_id == experiment_id).distinct())
    return sorted(k for k in set(kinds) if is_student_stage(k))


def release_student(session: Session, *, experiment_id: int, seed: int) -> None:
    """The teacher is done: its students (sent next by the Celery chain) are queued (not those ``reuse_wait``s)."""
    kinds = _student_kinds(session, experiment_id=experiment_id)  # an empty IN matches nothing
    session.execute(update(Stage).where(Stage.experiment_id == experiment_id, Stage.kind.in_(kinds), Stage.seed == seed,
                                        Stage.status == "pending", Stage.reuse_wait.is_(None)).values(status="queued"))


def student_ids(session: Session, *, experiment_id: int, seed: int | None) -> list[int]:
    """Every student stage of a teacher, in creation order."""
    kinds = _student_kinds(session, experiment_id=experiment_id)
    return list(session.scalars(select(Stage.id).where(Stage.experiment_id == experiment_id, Stage.kind.in_(kinds),
                                                       Stage.seed == seed).order_by(Stage.id)))


def queue_evaluation_once(session: Session, *, experiment_id: int) -> int | None:
    """If every training stage has succeeded and nobody has queued the evaluation yet, mark it queued and
    return its stage id (exactly one caller ever gets an id back)."""
    unfinished = exists().where(Stage.experiment_id == experiment_id, Stage.kind != "evaluation",
                                Stage.status != "succeeded")
    n = session.execute(
        update(Experiment)
        .where(Experiment.id == experiment_id, Experiment.eval_enqueued.is_(False),
               Experiment.cancel_requested.is_(False), ~unfinished)
        .values(eval_enqueued=True)
    ).rowcount
    if not n:
        return None
    stage_id = session.scalar(select(Stage.id).where(Stage.experiment_id == experiment_id,
                                                     Stage.kind == "evaluation"))
    session.execute(update(Stage).where(Stage.id == stage_id).values(status="queued"))
    return stage_id


def finish_experiment(session: Session, *, experiment_id: int, summary: dict[str, Any] | None = None) -> None:
    session.execute(update(Experiment).where(Experiment.id == experiment_id, Experiment.status == "running")
                    .values(status="succeeded", finished_at=utcnow(), summary=summary))


def record_epoch(session: Session, *, stage_id: int, attempt: int, logs: dict[str, Any],
                 replace: bool = True) -> None:
    """Store one epoch's metrics; an epoch trained again (restart without checkpoint) replaces its row."""
    fields = ("loss", "seg_loss", "kd_loss", "val_dice", "val_dice_per_class", "best_val_dice", "lr",
              "train_seconds")
    values = {k: logs.get(k) for k in fields}
    row = session.scalar(select(EpochMetric).where(EpochMetric.stage_id == stage_id,
                                                   EpochMetric.epoch == int(logs["epoch"])))
    if row is None:
        session.add(EpochMetric(stage_id=stage_id, epoch=int(logs["epoch"]), attempt=attempt, **values))
    elif replace:
        for k, v in values.items():
            setattr(row, k, v)
        row.attempt = attempt
    session.flush()


def create_model_row(session: Session, *, stage: Stage, owner_id: int, name: str, path: str, info: dict[str, Any],
                     size_bytes: int) -> TrainedModel:
    row = session.scalar(select(TrainedModel).where(TrainedModel.stage_id == stage.id))
    if row is None:
        row = TrainedModel(stage_id=stage.id, experiment_id=stage.experiment_id, owner_id=owner_id)
        session.add(row)
    row.name, row.path, row.size_bytes = name, path, size_bytes
    row.method, row.seed = info["method"], int(info["seed"])
    row.architecture, row.image_size = info["network"], list(info["image_size"])
    row.num_classes, row.class_names = int(info["num_classes"]), list(info["class_names"])
    row.best_val_dice = info.get("best_val_dice")
    session.flush()
    return row


def queued_stages(session: Session) -> list[Stage]:
    """Stages waiting in ``queued``, of experiments not being cancelled."""
    return list(session.execute(select(Stage).join(Experiment)
                                .where(Stage.status == "queued", Experiment.cancel_requested.is_(False))
                                .order_by(Stage.id)).scalars())


def out_of_attempts_error(attempts: int, worker: str | None, max_attempts: int) -> str:
    """Why a stage that kept dying fails: said once, here, for every path that notices it."""
    return (f"its process was stopped {attempts} time(s) before the stage could finish (last on worker "
            f"{worker or 'unknown'}); a process killed again and again is usually the kernel's out-of-memory killer: "
            f"the spec needs more memory than the worker has (a smaller batch, image size or network helps). "
            f"Gave up after SIKD_MAX_STAGE_ATTEMPTS={max_attempts} attempts.")


def _release_running(session: Session, st: Stage, *, cancelled: bool, max_attempts: int | None,
                     still: Sequence[Any] = ()) -> str | None:
    """A running stage whose process is gone: ``cancelled`` (its experiment is stopping), ``failed`` (it has
    had ``max_attempts`` attempts) or back to ``queued``. Conditional on the claim it had (and ``still``), so
    a stage claimed again meanwhile is left alone; returns what it became, or None."""
    values: dict[str, Any]
    if cancelled:
        values = {"status": "cancelled", "finished_at": utcnow()}
    elif max_attempts is not None and st.attempts >= max_attempts:
        values = {"status": "failed", "finished_at": utcnow(),
                  "error": out_of_attempts_error(st.attempts, st.worker, max_attempts)}
    else:
        values = {"status": "queued"}
    n = session.execute(update(Stage).where(Stage.id == st.id, Stage.status == "running",
                                            Stage.claim_token == st.claim_token, *still)
                        .values(claim_token=None, eta_seconds=None, **values)).rowcount
    if not n:
        return None
    if values["status"] == "failed":
        name = st.kind if st.seed is None else f"{st.kind} (seed {st.seed})"
        fail_experiment(session, experiment_id=st.experiment_id, error=f"{name} failed: {values['error']}")
    return str(values["status"])


def requeue_stale(session: Session, *, stale_before: datetime, worker: str | None = None,
                  worker_started: datetime | None = None, max_attempts: int | None = None) -> list[Stage]:
    """Running stages whose worker is gone go back to ``queued`` and are returned (the caller enqueues
    them); those of cancelled or failed experiments become ``cancelled``, those that have had
    ``max_attempts`` attempts ``failed`` (with the reason, and their experiment fails).

    Gone means: no heartbeat since ``stale_before``, or (on a worker's start) the stage was claimed by
    this same worker name before this worker process started.
    """
    gone = [Stage.heartbeat_at.is_(None), Stage.heartbeat_at < stale_before]
    if worker is not None and worker_started is not None:
        gone.append(and_(Stage.worker == worker, Stage.heartbeat_at < worker_started))
    candidates = session.execute(select(Stage, Experiment.cancel_requested).join(Experiment)
                                 .where(Stage.status == "running", or_(*gone))).all()
    requeued = [st for st, cancelled in candidates
                if _release_running(session, st, cancelled=bool(cancelled), max_attempts=max_attempts,
                                    still=[or_(*gone)]) == "queued"]
    session.flush()
    return requeued


def claimed_with_prefix(session: Session, *, prefix: str) -> list[tuple[int, str]]:
    """``(stage id, claim token)`` of the running stages whose claim token starts with ``prefix`` (a worker
    process's instance id: see ``worker.recovery``)."""
    rows = session.execute(select(Stage.id, Stage.claim_token)
                           .where(Stage.status == "running", Stage.claim_token.startswith(prefix, autoescape=True)))
    return [(int(i), str(t)) for i, t in rows]


def release_lost(session: Session, *, claims: Sequence[tuple[int, str]], max_attempts: int | None) -> list[Stage]:
    """Running stages whose process is known to be gone (their worker holds no job for them any more): each
    ``(id, token)`` is requeued, failed (out of attempts) or cancelled as in :func:`requeue_stale`, if it still
    holds that token. Returns the requeued ones."""
    requeued = []
    for stage_id, token in claims:
        row = session.execute(select(Stage, Experiment.cancel_requested).join(Experiment)
                              .where(Stage.id == stage_id, Stage.claim_token == token)).first()
        if row is not None and _release_running(session, row[0], cancelled=bool(row[1]),
                                                max_attempts=max_attempts) == "queued":
            requeued.append(row[0])
    session.flush()
    return requeued


def hand_back(session: Session, *, prefix: str) -> list[Stage]:
    """A worker stopping in order gives its running stages back (``queued``; the interrupted attempt is not
    counted against ``SIKD_MAX_STAGE_ATTEMPTS``). Returns them; their tasks lose their claim and stop."""
    rows = list(session.scalars(select(Stage).where(Stage.status == "running",
                                                    Stage.claim_token.startswith(prefix, autoescape=True))))
    back = []
    for st in rows:
        n = session.execute(update(Stage).where(Stage.id == st.id, Stage.claim_token == st.claim_token,
                                                Stage.status == "running")
                            .values(status="queued", claim_token=None, eta_seconds=None,
                                    attempts=Stage.attempts - 1)).rowcount  # a running stage was claimed: >= 1
        if n:
            back.append(st)
    session.flush()
    return back
