"""Stage reuse: a finished stage whose key (:func:`sikd_core.methods.plan.stage_key`) matches is not trained again.

A stage folder (``seed_<s>/<stage>/``: ``model.pt``, ``history.json``, ``done.json``) is linked into the new
experiment's folder: its files are hard links where the file system allows (the same bytes, counted by the file
system: deleting either experiment's folder keeps them for the other, and they go with the last one), else copies.
The new ``done.json`` says where the stage was trained (``reused_from``) and points at its own ``model.pt``. The
CLI finds earlier stages in the sibling folders of its output folder and in ``--reuse-from`` folders (any folder of
experiment folders: the service's ``<storage>/experiments`` too); the service finds them by key in its database,
then in the operator's ``reuse_folders`` (CLI folders), and links the same way.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from sikd_core.workdir import write_json

log = logging.getLogger("sikd_core.reuse")

#: Files of a finished stage that are not linked: checkpoints a finished stage no longer has, and its record
#: (rewritten for the new place).
_NOT_LINKED = ("done.json", "latest.pt", "best.pt")
#: An evaluation's score keys, ``eval/scores.json`` (:mod:`sikd_core.score_reuse`).
SCORE_INDEX = "scores.json"


def experiment_folders(roots: Iterable[Path], *, exclude: Path | None = None) -> dict[Path, dict[str, Any]]:
    """The experiment folders under ``roots`` whose evaluation wrote a score index (:mod:`sikd_core.score_reuse`),
    each with its origin ``{"folder": ...}``: where the CLI and the service's ``reuse_folders`` take scores from."""
    skip = exclude.resolve() if exclude is not None else None
    out: dict[Path, dict[str, Any]] = {}
    for root in roots:
        if not root.is_dir():
            continue
        for index in sorted(root.glob(f"*/eval/{SCORE_INDEX}")):
            folder = index.parents[1]
            if skip is None or folder.resolve() != skip:
                out[folder] = {"folder": str(folder)}
    return out


def origin_label(origin: dict[str, Any]) -> str:
    """Where a reused stage or score came from, in words: ``experiment 5`` (the service) or the folder (the CLI)."""
    return f"experiment {origin['experiment']}" if "experiment" in origin else str(origin.get("folder", origin))


def finished_record(stage_dir: Path) -> dict[str, Any] | None:
    """The ``done.json`` of a finished stage whose model is present, else None."""
    try:
        rec = json.loads((stage_dir / "done.json").read_text())
    except (OSError, ValueError):
        return None
    return rec if isinstance(rec, dict) and (stage_dir / "model.pt").is_file() else None


def _link(src: Path, dst: Path) -> None:
    dst.unlink(missing_ok=True)
    try:
        os.link(src, dst)
    except OSError:  # another file system, or links not allowed: a copy
        shutil.copy2(src, dst)


def link_stage(src: Path, dst: Path, *, reused_from: dict[str, Any]) -> dict[str, Any]:
    """Make ``dst`` a finished stage with ``src``'s model and record (see the module docstring); returns the new
    record. ``done.json`` is written last: a reader never sees a half-linked stage as finished."""
    record = finished_record(src)
    if record is None:
        raise FileNotFoundError(f"{src} is not a finished stage (no done.json or model.pt)")
    dst.mkdir(parents=True, exist_ok=True)
    for f in sorted(src.iterdir()):
        if f.is_file() and f.name not in _NOT_LINKED:
            _link(f, dst / f.name)
    # where it was trained: a stage reused from one that was itself reused names the first
    record = {**record, "model_path": str(dst / "model.pt"), "reused_from": record.get("reused_from") or reused_from}
    write_json(dst / "done.json", record)
    return record


def find_stage(roots: Iterable[Path], key: str, *, exclude: Path | None = None) -> Path | None:
    """A finished stage folder with ``key`` in its record, under the experiment folders in ``roots``
    (``root/<experiment>/seed_<s>/<stage>/``), else None. ``exclude``: an experiment folder not to look in."""
    skip = exclude.resolve() if exclude is not None else None
    for root in roots:
        if not root.is_dir():
            continue
        for done in sorted(root.glob("*/seed_*/*/done.json")):
            if skip is not None and done.parents[2].resolve() == skip:
                continue
            rec = finished_record(done.parent)
            if rec is not None and rec.get("key") == key:
                return done.parent
    return None


def reuse_message(report: dict[str, Any]) -> str | None:
    """What an evaluation reused, in words: "evaluation reused from experiment 5" when every score came from one
    place, else per model ("scores reused: baseline (seed 0) from experiment 5; computed: sikd (seed 0)"); None
    when nothing was reused."""
    reused = report.get("reused_scores") or []
    if not reused:
        return None
    pairs = {(r["method"], r["seed"], r["dataset"], r["split"]) for r in report.get("rows") or []}
    origins = {origin_label(r["reused_from"]) for r in reused}
    if len(origins) == 1 and len(reused) == len(pairs):
        return f"evaluation reused from {origins.pop()}"
    got = {(r["method"], r["seed"], r["dataset"], r["split"]): origin_label(r["reused_from"]) for r in reused}
    models = list(dict.fromkeys((m, s) for m, s, _, _ in sorted(pairs)))
    parts, computed = [], []
    for m, s in models:
        mine = sorted(p for p in pairs if p[:2] == (m, s))
        hits = [p for p in mine if p in got]
        if not hits:
            computed.append(f"{m} (seed {s})")
            continue
        where = ", ".join(sorted({got[p] for p in hits}))
        on = "" if len(hits) == len(mine) else " on " + ", ".join(f"{p[2]} ({p[3]})" for p in hits)
        parts.append(f"{m} (seed {s}){on} from {where}")
    return "scores reused: " + "; ".join(parts) + (f"; computed: {', '.join(computed)}" if computed else "")
