"""Model cards and export bundles of the service's trained models (built on demand, cached on disk).

The card's dataset facts come from the experiment's dataset rows (name, pair count, SYNTHETIC flag) and
the stored dataset folders (content hash, licence files); scores and health from the experiment folder.
Export bundles are written once per model and format next to the model (``export/<format>.zip``) and
rebuilt when the model file is newer.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from sikd_core.export.card import card_for_bundle, dataset_facts
from sikd_service.config import Settings
from sikd_service.health import model_health
from sikd_service.storage import dataset_dir, new_tmp_dir
from sikd_service.tables import Dataset, Experiment, ExperimentDataset, TrainedModel


def experiment_datasets(settings: Settings, session: Session, experiment_id: int) -> list[dict[str, Any]]:
    """Card entries of an experiment's training and evaluation datasets, training first."""
    links = session.scalars(select(ExperimentDataset).where(ExperimentDataset.experiment_id == experiment_id)
                            .order_by(ExperimentDataset.role.desc(), ExperimentDataset.position)).all()
    rows = {d.id: d for d in session.scalars(select(Dataset).where(Dataset.id.in_([link.dataset_id for link in links])))}
    out = []
    for link in links:
        ds = rows.get(link.dataset_id)
        if ds is not None:
            out.append(dataset_facts(ds.name, link.role, dataset_dir(settings, ds.id), n_pairs=ds.num_pairs,
                                     synthetic=ds.synthetic))
    return out


def model_card(settings: Settings, session: Session, row: TrainedModel) -> dict[str, Any]:
    """The card of a trained-model row (see :func:`sikd_core.export.card_for_bundle`); its health is the one
    the experiment shows for this model (:func:`sikd_service.health.model_health`)."""
    exp = session.get(Experiment, row.experiment_id)
    health = model_health(exp, row.method, row.seed) if exp is not None else None
    return card_for_bundle(settings.storage_dir / row.path, datasets=experiment_datasets(settings, session,
                                                                                         row.experiment_id),
                           name=row.name, links={"model_id": row.id, "experiment_id": row.experiment_id},
                           health=health)


def export_zip(settings: Settings, session: Session, row: TrainedModel, fmt: str) -> Path:
    """``export/<fmt>.zip`` beside the model, (re)built when missing or older than the model file.
    Written under a temporary name and renamed, so concurrent requests never serve a partial file."""
    model = settings.storage_dir / row.path
    target = model.parent / "export" / f"{fmt}.zip"
    if target.is_file() and target.stat().st_mtime_ns >= model.stat().st_mtime_ns:
        return target
    from sikd_core.export.bundle import write_bundle, zip_bundle  # PyTorch: not imported at the API's start

    card = model_card(settings, session, row)
    work = new_tmp_dir(settings, "export-")
    try:
        folder = write_bundle(model, work / f"sikd-model-{row.id}-{fmt}", fmt, card=card)
        tmp_zip = zip_bundle(folder, work / f"sikd-model-{row.id}-{fmt}.zip")
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp_zip, target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target
