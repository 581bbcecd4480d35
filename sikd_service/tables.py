"""Database tables (SQLAlchemy 2.0 declarative, ``Mapped[]``). Schema changes go through Alembic."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    select,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, column_property, deferred, mapped_column, relationship

EXPERIMENT_STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")
STAGE_STATUSES = ("pending", "queued", "running", "succeeded", "failed", "cancelled")
STAGE_KINDS = ("baseline", "teacher", "student", "evaluation")
ACTIVE_EXPERIMENT = ("queued", "running")
FINISHED_STAGE = ("succeeded", "failed", "cancelled")


#: Ids and the foreign keys to them: BIGINT on PostgreSQL (ids reach 2^63-1, the API's bound), and on SQLite
#: INTEGER, which is already 64-bit and must stay INTEGER for ``INTEGER PRIMARY KEY AUTOINCREMENT`` (0003, 0005).
IdType = BigInteger().with_variant(Integer(), "sqlite")


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite returns naive ones otherwise)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return value


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime, dict[str, Any]: JSON, list[Any]: JSON}


class User(Base):
    __tablename__ = "users"
    __table_args__ = {"sqlite_autoincrement": True}  # ids are never reused (migration 0002)

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ApiToken(Base):
    """Bearer tokens, stored as SHA-256 hex digests; the token itself is shown once."""

    __tablename__ = "api_tokens"
    __table_args__ = {"sqlite_autoincrement": True}  # ids are never reused (migration 0002)

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    user_id: Mapped[int] = mapped_column(IdType, ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    user: Mapped[User] = relationship()


class Dataset(Base):
    """A validated upload; its files live in ``<storage>/datasets/<id>/``.

    ``manifest`` is the :class:`sikd_core.data.Manifest` with paths relative to that folder (so the
    storage root may move); experiments use it instead of re-scanning the files.
    """

    __tablename__ = "datasets"
    __table_args__ = {"sqlite_autoincrement": True}  # ids are never reused (migration 0002)

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    owner_id: Mapped[int] = mapped_column(IdType, ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    format: Mapped[str] = mapped_column(String(20))
    num_pairs: Mapped[int] = mapped_column(Integer)
    num_classes: Mapped[int] = mapped_column(Integer)
    class_names: Mapped[list[Any]]
    in_channels: Mapped[int] = mapped_column(Integer)
    stats: Mapped[dict[str, Any]]
    manifest: Mapped[dict[str, Any]] = deferred(mapped_column(JSON))
    size_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    #: Shared datasets (the SYNTHETIC demo) are listed to and usable by every user; only the owner or an
    #: admin may delete them.
    shared: Mapped[bool] = mapped_column(Boolean, default=False)
    synthetic: Mapped[bool] = mapped_column(Boolean, default=False)
    #: The files' content fingerprint (sikd_core.data.fingerprint), computed on first use (stage keys).
    content_hash: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    owner: Mapped[User] = relationship()


class Experiment(Base):
    __tablename__ = "experiments"
    __table_args__ = (
        # the tag filter's index on PostgreSQL: GIN over the tags' jsonb form (migration 0006); none on SQLite
        Index("ix_experiments_tags_gin", text("(tags::jsonb)"), postgresql_using="gin").ddl_if(dialect="postgresql"),
        {"sqlite_autoincrement": True},  # ids are never reused (migration 0002)
    )

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    owner_id: Mapped[int] = mapped_column(IdType, ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(20), default="queued", index=True)
    spec: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    error: Mapped[str | None] = mapped_column(Text)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    #: Set by the one training task that finishes the last training stage (a conditional UPDATE).
    eval_enqueued: Mapped[bool] = mapped_column(Boolean, default=False)
    #: The headline scores for lists (:func:`sikd_service.experiments.headline`), written with the report.
    summary: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    #: The owner's labels (``PATCH /experiments/{id}``, ``GET /experiments?tag=``), in the order given (0006).
    tags: Mapped[list[Any]] = mapped_column(JSON, default=list, server_default="[]")
    #: The owner's free-text note (0006).
    note: Mapped[str | None] = mapped_column(Text)
    #: The sweep request that created it (sikd_service.sweeps; the id of the sweep's first experiment) and its
    #: swept settings' values there.
    sweep_id: Mapped[int | None] = mapped_column(IdType, index=True)
    sweep_values: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)

    owner: Mapped[User] = relationship()
    stages: Mapped[list[Stage]] = relationship(
        back_populates="experiment", order_by="Stage.id", cascade="all, delete-orphan", passive_deletes=True)
    dataset_links: Mapped[list[ExperimentDataset]] = relationship(
        order_by="ExperimentDataset.position", cascade="all, delete-orphan", passive_deletes=True)


class ExperimentDataset(Base):
    """Which datasets an experiment trains and evaluates on; blocks deleting a dataset in use."""

    __tablename__ = "experiment_datasets"

    experiment_id: Mapped[int] = mapped_column(IdType, ForeignKey("experiments.id", ondelete="CASCADE"), primary_key=True)
    dataset_id: Mapped[int] = mapped_column(IdType, ForeignKey("datasets.id", ondelete="RESTRICT"), primary_key=True,
                                            index=True)
    role: Mapped[str] = mapped_column(String(10))  # "train" | "eval"
    position: Mapped[int] = mapped_column(Integer, default=0)
    #: The dataset key as written in the spec (an id as a string).
    key: Mapped[str] = mapped_column(String(50))


class Stage(Base):
    """One job of an experiment: a training stage of one seed, or the evaluation."""

    __tablename__ = "stages"
    __table_args__ = (UniqueConstraint("experiment_id", "kind", "seed", name="uq_stage"), {"sqlite_autoincrement": True})

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    experiment_id: Mapped[int] = mapped_column(IdType, ForeignKey("experiments.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(20))
    seed: Mapped[int | None] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(20), default="pending", index=True)
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    epoch: Mapped[int] = mapped_column(Integer, default=0)
    epochs: Mapped[int] = mapped_column(Integer, default=0)
    loss: Mapped[float | None] = mapped_column(Float)
    val_dice: Mapped[float | None] = mapped_column(Float)
    best_val_dice: Mapped[float | None] = mapped_column(Float)
    eta_seconds: Mapped[float | None] = mapped_column(Float)
    message: Mapped[str | None] = mapped_column(String(300))
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    heartbeat_at: Mapped[datetime | None]
    #: Fencing token of the current claim: a worker whose token was replaced stops quietly.
    claim_token: Mapped[str | None] = mapped_column(String(32))
    worker: Mapped[str | None] = mapped_column(String(200))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    resumed_from_epoch: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    traceback_summary: Mapped[str | None] = mapped_column(Text)
    warnings: Mapped[list[Any]] = mapped_column(JSON, default=list)
    #: Structured training-health findings (sikd_core.training.health), the same as in done.json.
    health: Mapped[list[Any]] = mapped_column(JSON, default=list)
    #: What identifies the stage's model (sikd_core.methods.plan.stage_key); None: never reused (the evaluation,
    #: ``reuse: false``, rows from before 0007).
    reuse_key: Mapped[str | None] = mapped_column(String(64), index=True)
    #: The experiment whose stage's model this one reuses (history: kept when that experiment is deleted).
    reused_from: Mapped[int | None] = mapped_column(IdType)
    #: The id of an identical stage still training, which this one waits for (then reuses, or trains if it fails).
    reuse_wait: Mapped[int | None] = mapped_column(IdType, index=True)

    experiment: Mapped[Experiment] = relationship(back_populates="stages")


class EpochMetric(Base):
    __tablename__ = "epoch_metrics"
    __table_args__ = (UniqueConstraint("stage_id", "epoch", name="uq_epoch_metric"), {"sqlite_autoincrement": True})

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    stage_id: Mapped[int] = mapped_column(IdType, ForeignKey("stages.id", ondelete="CASCADE"), index=True)
    epoch: Mapped[int] = mapped_column(Integer)
    #: The stage attempt that trained this epoch (a resumed stage continues with a higher attempt).
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    loss: Mapped[float | None] = mapped_column(Float)
    seg_loss: Mapped[float | None] = mapped_column(Float)
    kd_loss: Mapped[float | None] = mapped_column(Float)
    val_dice: Mapped[float | None] = mapped_column(Float)
    val_dice_per_class: Mapped[list[Any] | None] = mapped_column(JSON)
    best_val_dice: Mapped[float | None] = mapped_column(Float)
    lr: Mapped[float | None] = mapped_column(Float)
    train_seconds: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class TrainedModel(Base):
    """A trained baseline or SIKD student; ``path`` (relative to the storage root) is its model.pt."""

    __tablename__ = "models"
    __table_args__ = {"sqlite_autoincrement": True}  # ids are never reused (migration 0002)

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    owner_id: Mapped[int] = mapped_column(IdType, ForeignKey("users.id", ondelete="CASCADE"), index=True)
    experiment_id: Mapped[int] = mapped_column(IdType, ForeignKey("experiments.id", ondelete="CASCADE"), index=True)
    stage_id: Mapped[int] = mapped_column(IdType, ForeignKey("stages.id", ondelete="CASCADE"), unique=True)
    name: Mapped[str] = mapped_column(String(300))
    method: Mapped[str] = mapped_column(String(20))
    seed: Mapped[int] = mapped_column(Integer)
    architecture: Mapped[str] = mapped_column(String(100))
    image_size: Mapped[list[Any]]
    num_classes: Mapped[int] = mapped_column(Integer)
    class_names: Mapped[list[Any]]
    best_val_dice: Mapped[float | None] = mapped_column(Float)
    path: Mapped[str] = mapped_column(String(500))
    size_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    #: The experiment that trained it, when its stage reused that experiment's (read in the same SELECT).
    reused_from: Mapped[int | None] = column_property(
        select(Stage.reused_from).where(Stage.id == stage_id).correlate_except(Stage).scalar_subquery())


class WorkerDevice(Base):
    """The device a worker trains on, as the worker reports it at start and refreshes while it runs (``last_seen``);
    plans are made for the most capable live one (sikd_service.devices)."""

    __tablename__ = "worker_devices"
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    #: The Celery node name (``gpu0@host``), as stages record their ``worker``.
    worker: Mapped[str] = mapped_column(String(200), unique=True)
    host: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(10))  # "cuda" | "cpu": the device its training runs on
    name: Mapped[str] = mapped_column(String(200))
    memory_gib: Mapped[float | None] = mapped_column(Float)  # the GPU's memory (None on a CPU)
    gpus: Mapped[int] = mapped_column(Integer, default=0)
    cpu_cores: Mapped[int] = mapped_column(Integer)
    cpu_threads: Mapped[int] = mapped_column(Integer)
    torch_version: Mapped[str] = mapped_column(String(50))
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen: Mapped[datetime] = mapped_column(default=utcnow)
    stopped_at: Mapped[datetime | None]


class StepTiming(Base):
    """Training steps of one configuration (network, arguments, channels, classes, image size, batch) timed on a
    worker by ``worker.tasks.run_step_timing``: the measured basis of plans and estimates, kept and reused."""

    __tablename__ = "step_timings"
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    #: sikd_service.steptimes.config_key: the configuration's digest.
    key: Mapped[str] = mapped_column(String(64), unique=True)
    network: Mapped[str] = mapped_column(String(100))
    network_kwargs: Mapped[dict[str, Any]] = mapped_column(JSON)
    in_channels: Mapped[int] = mapped_column(Integer)
    num_classes: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    width: Mapped[int] = mapped_column(Integer)
    batch: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(20), default="queued")  # queued | measuring | measured | failed
    requested_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    measured_at: Mapped[datetime | None]
    claim_token: Mapped[str | None] = mapped_column(String(32))
    worker: Mapped[str | None] = mapped_column(String(200))
    device_kind: Mapped[str | None] = mapped_column(String(10))
    device_name: Mapped[str | None] = mapped_column(String(200))
    step_seconds: Mapped[float | None] = mapped_column(Float)
    student_step_seconds: Mapped[float | None] = mapped_column(Float)
    forward_seconds: Mapped[float | None] = mapped_column(Float)
    peak_gib: Mapped[float | None] = mapped_column(Float)
    error: Mapped[str | None] = mapped_column(Text)
