"""Evaluation reuse: per-case scores of a model already scored on the same data are not computed again.

A model's scores on one evaluation set (the intra test split, or a cross dataset) are identified by a **score key**
(:func:`score_key`): the model's stage key (:func:`sikd_core.methods.plan.stage_key`: the same key, the same
weights), the content fingerprint of the dataset, the split, the samples scored (their keys, in order), the
evaluation settings that reach a score (image size, channels, classes) and :data:`EVAL_CODE_VERSION`. An
evaluation writes the keys of what it scored to ``eval/scores.json`` next to ``eval/cases.json``; a later one
takes the per-case records of a matching key from an earlier experiment's folder (with the predicted masks it
saved, hard-linked, when this one saves them too) and computes only the rest. :func:`merge_cases` puts every
record where a recomputation would have put it, so the report is the same.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sikd_core.data import Manifest, iter_cases
from sikd_core.reuse import SCORE_INDEX
from sikd_core.workdir import safe_name

log = logging.getLogger("sikd_core.score_reuse")

#: Bump when a change to the evaluation (prediction, resizing, metrics) changes a per-case score.
EVAL_CODE_VERSION = 1
INDEX = SCORE_INDEX
FORMAT = "sikd-scores/1"


def score_key(model_key: str, dataset: str, split: str, sample_keys: Sequence[str],
              settings: Mapping[str, Any]) -> str:
    """SHA-256 of what determines a model's per-case scores on one evaluation set (see the module docstring)."""
    body = {"version": EVAL_CODE_VERSION, "model": model_key, "dataset": dataset, "split": split,
            "samples": list(sample_keys), "settings": dict(settings)}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def case_order(manifest: Manifest, indices: Sequence[int]) -> list[str]:
    """The set's case ids in the order the evaluation scores them."""
    return [case for case, _ in iter_cases(manifest, indices)]


@dataclass
class Found:
    """Scores of one (model, set) found in an earlier evaluation."""

    cases: list[dict[str, Any]]
    origin: dict[str, Any]
    #: The folder holding the source's predicted masks for this model and dataset, when it saved them.
    predictions: Path | None = None
    entry: dict[str, Any] = field(default_factory=dict)


class ScoreIndex:
    """The score keys of earlier evaluations in ``sources`` (experiment folders, each with its origin: what a
    reused score says it came from, e.g. ``{"experiment": 5}`` or ``{"folder": "..."}``)."""

    def __init__(self, sources: Mapping[Path, dict[str, Any]]):
        self._entries: dict[str, tuple[Path, dict[str, Any], dict[str, Any]]] = {}
        self._cases: dict[Path, list[dict[str, Any]]] = {}
        for folder, origin in sources.items():
            try:
                index = json.loads((folder / "eval" / INDEX).read_text())
            except (OSError, ValueError):
                continue
            if not isinstance(index, dict) or index.get("format") != FORMAT:
                continue
            for e in index.get("entries") or []:
                if isinstance(e, dict) and isinstance(e.get("key"), str):
                    self._entries.setdefault(e["key"], (Path(folder), e, origin))

    def __len__(self) -> int:
        return len(self._entries)

    def _folder_cases(self, folder: Path) -> list[dict[str, Any]]:
        if folder not in self._cases:
            try:
                self._cases[folder] = json.loads((folder / "eval" / "cases.json").read_text())
            except (OSError, ValueError):
                self._cases[folder] = []
        return self._cases[folder]

    def find(self, key: str, *, case_ids: list[str], need_predictions: bool) -> Found | None:
        """The per-case records stored under ``key`` (one per case of ``case_ids``), else None (none, files gone,
        incomplete, or without the predicted masks this evaluation needs)."""
        hit = self._entries.get(key)
        if hit is None:
            return None
        folder, entry, origin = hit
        rows = [c for c in self._folder_cases(folder)
                if (c.get("method"), c.get("seed"), c.get("dataset"), c.get("split"))
                == (entry.get("method"), entry.get("seed"), entry.get("dataset"), entry.get("split"))]
        mine = {c.get("case"): c for c in rows}
        if len(rows) != len(case_ids) or set(mine) != set(case_ids):
            return None
        predictions = None
        if need_predictions:
            predictions = folder / "eval" / "predictions" / str(entry.get("method")) / safe_name(str(entry["dataset"]))
            if not entry.get("predictions") or not predictions.is_dir():
                return None
        return Found(cases=[mine[c] for c in case_ids], origin=dict(entry.get("reused_from") or origin),
                     predictions=predictions, entry=entry)


def link_predictions(src: Path, dst: Path, sample_keys: Sequence[str]) -> bool:
    """Hard-link (else copy) the predicted masks of ``sample_keys`` from ``src`` to ``dst``; False when one is
    missing (nothing is left half-linked that matters: the caller then predicts them again and overwrites)."""
    names = [f"{safe_name(k)}.png" for k in sample_keys]
    if not all((src / n).is_file() for n in names):
        return False
    dst.mkdir(parents=True, exist_ok=True)
    for n in names:
        (dst / n).unlink(missing_ok=True)
        try:
            os.link(src / n, dst / n)
        except OSError:
            shutil.copy2(src / n, dst / n)
    return True


def merge_cases(sets: Sequence[tuple[str, Manifest, list[int]]], model_order: Sequence[tuple[str, int]],
                records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every record in the order :func:`sikd_core.evaluation.score_cases` emits them (set by set, case by case,
    model by model), whichever were computed and whichever reused."""
    rank = {m: i for i, m in enumerate(model_order)}
    pos: dict[tuple[str, str, str], tuple[int, int]] = {}
    for s, (split, manifest, indices) in enumerate(sets):
        for c, case in enumerate(case_order(manifest, indices)):
            pos[(split, manifest.name, case)] = (s, c)
    return sorted(records, key=lambda r: (*pos[(r["split"], r["dataset"], r["case"])],
                                          rank[(r["method"], r["seed"])]))


def write_index(eval_dir: Path, entries: list[dict[str, Any]]) -> None:
    from sikd_core.workdir import write_json

    write_json(eval_dir / INDEX, {"format": FORMAT, "entries": entries})
