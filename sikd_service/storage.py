"""The storage root shared by the API and the workers.

    <root>/datasets/<id>/        an extracted, validated dataset
    <root>/experiments/<id>/     an experiment's workdir (checkpoints, models, eval/, report)
    <root>/cache/                preprocessed arrays (shared by experiments)
    <root>/tmp/                  uploads in progress and folders waiting for removal
    <root>/sikd.db               the SQLite database (default)
    <root>/broker/               the embedded broker's messages (when Redis is not configured)

Stored manifests hold paths relative to their dataset folder, so the root may move.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any

from sikd_core.data import Manifest
from sikd_service.config import Settings


def ensure_layout(settings: Settings) -> None:
    """Create the storage folders (and the embedded broker's, which kombu expects to exist)."""
    dirs = [settings.datasets_dir, settings.experiments_dir, settings.cache_dir, settings.tmp_dir]
    if settings.embedded_broker:
        dirs += [settings.broker_dir / "queue", settings.broker_dir / "control"]
    for d in dirs:
        d.mkdir(parents=True, exist_ok=True)


def dataset_dir(settings: Settings, dataset_id: int) -> Path:
    return settings.datasets_dir / str(dataset_id)


def experiment_dir(settings: Settings, experiment_id: int) -> Path:
    return settings.experiments_dir / str(experiment_id)


def new_tmp_dir(settings: Settings, prefix: str) -> Path:
    settings.tmp_dir.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=prefix, dir=settings.tmp_dir))


TRASH_PREFIX = "trash-"


def move_to_trash(settings: Settings, path: Path) -> Path | None:
    """Rename a folder into ``tmp/`` (atomic: it vanishes at once); returns where it went."""
    if not path.exists():
        return None
    settings.tmp_dir.mkdir(parents=True, exist_ok=True)
    trash = settings.tmp_dir / f"{TRASH_PREFIX}{uuid.uuid4().hex}"
    try:
        os.replace(path, trash)
    except OSError:
        return path
    return trash


def discard(settings: Settings, path: Path) -> None:
    """Remove a folder now (renamed away first, so a partial removal is never seen in place)."""
    trash = move_to_trash(settings, path)
    if trash is not None:
        shutil.rmtree(trash, ignore_errors=True)


def empty_trash(settings: Settings) -> None:
    """Delete folders left in ``tmp/`` by removals that did not finish."""
    if settings.tmp_dir.is_dir():
        for p in settings.tmp_dir.glob(f"{TRASH_PREFIX}*"):
            shutil.rmtree(p, ignore_errors=True)


def folder_size(path: Path) -> int:
    total = 0
    for dirpath, _, files in os.walk(path):
        for f in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, f)).st_size
    return total


def safe_join(base: Path, rel: str) -> Path | None:
    """``base/rel`` if it is a file inside ``base`` (no ``..``, no absolute path, no symlink out)."""
    if not rel or "\x00" in rel or rel.startswith(("/", "\\")):
        return None
    target = (base / rel).resolve()
    root = base.resolve()
    if target != root and root not in target.parents:
        return None
    return target if target.is_file() else None


# ------------------------------------------------------------------------------------------ manifests
class OutsideFolderError(ValueError):
    def __init__(self, files: list[str]):
        super().__init__("dataset files outside the uploaded archive: " + ", ".join(files[:10]))
        self.files = files


def _rel(path: str, base: str) -> str:
    rel = os.path.relpath(os.path.abspath(path), base)
    if rel == ".." or rel.startswith(".." + os.sep) or os.path.isabs(rel):
        raise OutsideFolderError([path])
    return rel.replace(os.sep, "/")


def manifest_to_stored(manifest: Manifest, base: Path) -> dict[str, Any]:
    """``manifest`` as JSON with every path relative to ``base``; raises if a path leaves ``base``."""
    b = str(base.resolve())
    d = manifest.to_dict()
    outside: list[str] = []
    for s in d["samples"]:
        try:
            s["image"] = [_rel(p, b) for p in s["image"]]
            if s.get("label"):
                s["label"] = _rel(s["label"], b)
        except OutsideFolderError as e:
            outside += e.files
    if outside:
        raise OutsideFolderError(sorted(set(outside)))
    d["root"] = _rel(d["root"], b)
    return d


def manifest_from_stored(stored: dict[str, Any], base: Path) -> Manifest:
    """Inverse of :func:`manifest_to_stored` for a dataset now at ``base``."""
    b = base.resolve()
    d = dict(stored)
    d["root"] = str(b / d["root"]) if d["root"] not in ("", ".") else str(b)
    d["samples"] = [{**s, "image": [str(b / p) for p in s["image"]],
                     "label": str(b / s["label"]) if s.get("label") else None} for s in stored["samples"]]
    return Manifest.from_dict(d)
