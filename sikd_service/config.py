"""The service's one settings object, read from the environment (prefix ``SIKD_``) once per process.

The API, the worker and ``sikd serve`` share it. ``DATABASE_URL`` and ``REDIS_URL`` are accepted
without the prefix too, as most hosting platforms set them. Without a database URL the service uses
SQLite at ``<storage>/sikd.db``; without a Redis URL it uses the embedded broker (kombu's filesystem
transport under ``<storage>/broker/``), which needs no extra process.
"""

from __future__ import annotations

import json
import os
import re
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any

from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SIKD_", extra="ignore", populate_by_name=True)

    # ---------------------------------------------------------------- where things live
    storage_dir: Path = Field(Path("sikd_data"), description="Root of uploads, datasets, caches and runs.")
    database_url: str | None = Field(
        None, validation_alias=AliasChoices("SIKD_DATABASE_URL", "DATABASE_URL", "database_url"),
        description="SQLAlchemy URL; default sqlite:///<storage>/sikd.db. postgres:// URLs use psycopg 3.")
    redis_url: str | None = Field(
        None, validation_alias=AliasChoices("SIKD_REDIS_URL", "REDIS_URL", "redis_url"),
        description="Celery broker on Redis; unset: the embedded filesystem broker under <storage>/broker.")
    celery_namespace: str = Field(
        "sikd", description="Prefix of the Redis keys and name of the control exchange; unique per deployment.")
    train_queue: str = "train"
    default_queue: str = "default"
    visibility_timeout_seconds: int = Field(12 * 3600, ge=60, description="Redis redelivery of unacked jobs.")
    broker_polling_interval: float = Field(0.2, gt=0, description="Embedded broker: seconds between polls.")

    # ---------------------------------------------------------------- auth
    admin_token: str | None = Field(None, description="Bearer token of the first admin (else generated).")

    # ---------------------------------------------------------------- uploads
    max_upload_bytes: int = Field(2 * 1024**3, ge=1, description="Largest dataset .zip accepted.")
    max_json_bytes: int = Field(
        4 * 1024**2, ge=1, description="Largest body of any request but the two uploads (dataset .zip, predict): "
                                      "refused (413) from its Content-Length, or cut as it streams, before it is read.")
    max_archive_files: int = Field(100_000, ge=1, description="Most entries a dataset .zip may hold.")
    max_unused_files: int = Field(
        1000, ge=0, description="Most files of a dataset .zip that cannot be part of a dataset (not an image, a "
                                "volume or JSON): more is refused before extraction; fewer are not kept.")
    max_uncompressed_bytes: int = Field(20 * 1024**3, ge=1, description="Largest total size after extraction.")
    max_compression_ratio: float = Field(100.0, gt=1, description="Largest uncompressed/compressed ratio.")
    max_predict_files: int = Field(16, ge=1)
    max_predict_file_bytes: int = Field(32 * 1024**2, ge=1)
    max_image_pixels: int = Field(
        4096 * 4096, ge=1, description="Largest 2D image decoded (width x height, read from the header before "
                                      "decoding): a small file that claims more is refused, not decoded.")
    max_volume_voxels: int = Field(
        64_000_000, ge=1, description="Largest NIfTI volume decoded (voxels, from the header before reading data).")
    max_predict_pixels: int = Field(
        4096 * 4096, ge=1, description="Pixels one predict request may hold, all its images together (read from the "
                                       "headers before decoding; 413 beyond): one image at the largest size, or "
                                       "sixteen of 1024x1024. Images are decoded one at a time.")
    samples_per_dataset: int = Field(6, ge=0, le=50, description="Thumbnails listed per dataset.")
    thumbnail_size: int = Field(192, ge=32, le=1024)

    # ---------------------------------------------------------------- experiments and workers
    max_active_experiments: int = Field(3, ge=1, description="Queued + running experiments per user.")
    max_model_parameters: int = Field(
        1_000_000_000, ge=1, description="Largest network accepted (parameters, counted before queueing).")
    max_training_memory_bytes: int = Field(
        128 * 1024**3, ge=1, description="Largest estimated memory of one training step (weights, Adam state and "
                                         "activations at the spec's batch and image size): beyond any worker.")
    max_training_steps: int = Field(
        10_000_000, ge=1, description="Most optimiser steps of one experiment (all stages and seeds).")
    progress_interval_seconds: float = Field(2.0, ge=0, description="Throttle of progress writes.")
    cancel_check_seconds: float = Field(
        2.0, ge=0, description="Throttle of the running stage's cancel check (a database read; 0: every step): "
                               "a cancel takes effect at most this much later.")
    heartbeat_seconds: float = Field(10.0, gt=0, description="How often a running stage proves it is alive.")
    stale_heartbeat_seconds: float = Field(120.0, gt=0, description="A running stage silent this long is requeued.")
    reconcile_seconds: float = Field(
        5.0, gt=0, description="Worker: how often it looks for stages whose pool process died (requeued at once) and "
                               "queued stages whose message the broker lost (sent again after two looks).")
    max_stage_attempts: int = Field(
        3, ge=1, description="Times a stage is started at most: when the process of its last attempt dies (e.g. "
                             "killed for memory) it fails with the reason. A worker stopping in order does not count.")
    checkpoint_interval_seconds: float = Field(
        30.0, ge=0, description="How often a training stage writes latest.pt (0: every epoch): at most this much "
                                "training is repeated after a crash.")
    worker_stages_per_gpu: int = Field(
        1, ge=1, le=16, description="Jobs a worker runs at once when `sikd worker` is given no --concurrency (and "
                                    "the worker of `sikd serve`): >1 trains several stages on one GPU at once. "
                                    "Not yet measured on a GPU (bench/gpu_scale.py measures it).")
    worker_ping_timeout: float = Field(1.0, gt=0)
    health_cache_seconds: float = Field(5.0, ge=0)
    status_cache_seconds: float = Field(
        1.0, ge=0, description="API: how long GET /experiments/{id}'s answer is kept per experiment (0: off); a "
                               "cancel or delete through that API process drops it at once.")
    token_cache_seconds: float = Field(
        5.0, ge=0, description="API: how long a resolved bearer token is kept in memory (0: off). Revoking tokens "
                               "through the API takes effect at once in that API process.")
    db_pool_size: int = Field(5, ge=1, description="Database connections each process keeps open.")
    db_max_overflow: int = Field(
        15, ge=0, description="Connections opened beyond db_pool_size under load. The API runs its blocking "
                              "handlers on db_pool_size + db_max_overflow threads, so no thread waits for one.")
    predict_cache_size: int = Field(4, ge=1, description="Loaded models kept for /predict.")
    demo_data: bool = Field(True, description="`sikd serve` preloads SYNTHETIC phantom datasets.")
    restart_backoff_seconds: float = Field(
        1.0, gt=0, description="`sikd serve`: delay before the second restart in a row of a component that "
                               "died (the first is at once; doubles with every further restart in a row).")
    restart_backoff_cap_seconds: float = Field(60.0, gt=0, description="`sikd serve`: the longest restart delay.")
    restart_stable_seconds: float = Field(
        60.0, gt=0, description="`sikd serve`: a component up this long starts again from the first delay.")
    mlflow_tracking_uri: str | None = Field(
        None, description="Log every stage to this MLflow tracking server (needs the mlflow extra); unset: off.")
    reuse_folders: Annotated[list[Path], NoDecode] = Field(
        default_factory=list,
        description="Folders of CLI experiments (each holds experiment folders, as the parent of `sikd run --out`) "
                    "whose finished stages and evaluations the worker reuses by key, for every user: same data "
                    "content, same settings, same model. Separated by ':' (or a JSON list); unset: none.")

    @field_validator("storage_dir")
    @classmethod
    def _absolute(cls, v: Path) -> Path:
        return v.expanduser().resolve()

    @field_validator("reuse_folders", mode="before")
    @classmethod
    def _folders(cls, v: Any) -> Any:
        if isinstance(v, str):
            v = json.loads(v) if v.strip().startswith("[") else [p for p in v.split(os.pathsep) if p.strip()]
        if isinstance(v, list):
            v = [Path(str(p).strip()).expanduser().resolve() for p in v]
            missing = [str(p) for p in v if not p.is_dir()]
            if missing:
                raise ValueError(f"reuse_folders: not a folder: {', '.join(missing)}")
        return v

    @field_validator("celery_namespace", "train_queue", "default_queue")
    @classmethod
    def _plain_name(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9_.-]{1,80}", v):
            raise ValueError(f"use letters, digits, '.', '_' or '-' only; got {v!r}")
        return v

    @model_validator(mode="after")
    def _backoff_cap(self) -> Settings:
        if self.restart_backoff_cap_seconds < self.restart_backoff_seconds:
            raise ValueError(f"SIKD_RESTART_BACKOFF_CAP_SECONDS ({self.restart_backoff_cap_seconds}) must be at least "
                             f"SIKD_RESTART_BACKOFF_SECONDS ({self.restart_backoff_seconds})")
        return self

    # ---------------------------------------------------------------- derived
    @cached_property
    def sqlalchemy_url(self) -> str:
        url = self.database_url or f"sqlite:///{self.storage_dir / 'sikd.db'}"
        for prefix in ("postgres://", "postgresql://"):
            if url.startswith(prefix):
                return "postgresql+psycopg://" + url[len(prefix):]
        return url

    @property
    def api_threads(self) -> int:
        """Threads of the API's pool for blocking handlers: one per database connection the pool can open."""
        return self.db_pool_size + self.db_max_overflow

    @property
    def embedded_broker(self) -> bool:
        return not self.redis_url

    @property
    def datasets_dir(self) -> Path:
        return self.storage_dir / "datasets"

    @property
    def experiments_dir(self) -> Path:
        return self.storage_dir / "experiments"

    @property
    def cache_dir(self) -> Path:
        return self.storage_dir / "cache"

    @property
    def tmp_dir(self) -> Path:
        """Uploads in progress and folders waiting for removal (same filesystem: renames are atomic)."""
        return self.storage_dir / "tmp"

    @property
    def broker_dir(self) -> Path:
        return self.storage_dir / "broker"

    @property
    def admin_token_file(self) -> Path:
        return self.storage_dir / "admin_token"


_settings: Settings | None = None


def get_settings() -> Settings:
    """The process's settings, read from the environment on first use."""
    global _settings
    if _settings is None:
        _settings = Settings()
    return _settings


def set_settings(settings: Settings | None) -> None:
    """Replace the process's settings (``sikd serve`` and tests); ``None`` re-reads the environment."""
    global _settings
    _settings = settings
