"""Deterministic, grouped train/val/test splits.

Samples are split by ``group_id`` (a patient, a 3D volume, a video sequence), never individually, so
near-identical samples cannot leak between training and evaluation. Fixed splits given by the source
format (a MONAI datalist's ``validation``/``test`` lists) are honoured.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sikd_core.data.manifest import Manifest
from sikd_core.errors import DatasetError

log = logging.getLogger(__name__)

SPLIT_NAMES = ("train", "val", "test")


@dataclass
class Splits:
    """Sample indices (into ``manifest.samples``) of each split, sorted."""

    train: list[int] = field(default_factory=list)
    val: list[int] = field(default_factory=list)
    test: list[int] = field(default_factory=list)

    def to_dict(self) -> dict[str, list[int]]:
        """JSON-serialisable ``{"train": [...], "val": [...], "test": [...]}``."""
        return {"train": list(self.train), "val": list(self.val), "test": list(self.test)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Splits:
        """Inverse of :meth:`to_dict`."""
        return cls(**{k: sorted(int(i) for i in d.get(k, [])) for k in SPLIT_NAMES})

    def __getitem__(self, name: str) -> list[int]:
        if name not in SPLIT_NAMES:
            raise KeyError(f"unknown split {name!r}; expected one of {SPLIT_NAMES}")
        return getattr(self, name)

    def sizes(self) -> dict[str, int]:
        """Number of samples per split."""
        return {k: len(self[k]) for k in SPLIT_NAMES}


def make_splits(
    manifest: Manifest, *, val_fraction: float = 0.1, test_fraction: float = 0.2, seed: int = 0
) -> Splits:
    """Split ``manifest`` by ``group_id`` into train/val/test, deterministically for ``seed``.

    Fractions are of the samples; whole groups are assigned (in a seeded random order) until each
    split reaches its share, so a split may exceed its share by at most one group. Groups whose
    samples carry ``fixed_split`` go there. A split with a positive fraction is never empty when there
    are >= 3 groups; if only fixed "train" groups are left to fill an otherwise empty val/test split,
    some are moved there (with a warning) because a run needs both. Raises :class:`DatasetError`
    when the dataset has too few groups for the requested splits.
    """
    for nm, frac in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0.0 <= frac < 1.0:
            raise ValueError(f"{nm} must be in [0, 1); got {frac}")
    if val_fraction + test_fraction >= 1.0:
        raise ValueError(f"val_fraction + test_fraction must be < 1; got {val_fraction + test_fraction}")
    n = len(manifest.samples)
    if n == 0:
        raise DatasetError(f"dataset {manifest.name!r} has no samples to split")

    groups: dict[str, list[int]] = {}
    for i, s in enumerate(manifest.samples):
        groups.setdefault(s.group_id, []).append(i)
    fixed: dict[str, str | None] = {}
    conflicts: list[str] = []
    for g, idx in groups.items():
        kinds = {manifest.samples[i].fixed_split for i in idx}
        if len(kinds) > 1:
            conflicts.append(f"group {g!r}: samples fixed to {sorted(str(k) for k in kinds)}")
        fixed[g] = next(iter(kinds))
        if fixed[g] is not None and fixed[g] not in SPLIT_NAMES:
            raise DatasetError(f"group {g!r} has unknown fixed split {fixed[g]!r}; expected one of {SPLIT_NAMES}")
    if conflicts:
        raise DatasetError("samples of one group are fixed to different splits", problems=conflicts)

    fractions = {"val": val_fraction, "test": test_fraction}
    required = ["train"] + [k for k in ("val", "test") if fractions[k] > 0]
    n_groups = len(groups)
    if n_groups < len(required):
        raise DatasetError(
            f"dataset {manifest.name!r} is too small to split: it has {n_groups} group(s) "
            f"({n} sample(s)) but train{', val' if val_fraction > 0 else ''}"
            f"{', test' if test_fraction > 0 else ''} need one group each; add data or set "
            "val_fraction/test_fraction to 0"
        )

    assigned: dict[str, list[str]] = {k: [] for k in SPLIT_NAMES}
    for g in sorted(groups):
        if fixed[g] is not None:
            assigned[str(fixed[g])].append(g)
    rng = np.random.default_rng(seed)
    free = [g for g in sorted(groups) if fixed[g] is None]
    free = [free[i] for i in rng.permutation(len(free))]

    def count(split: str) -> int:
        return sum(len(groups[g]) for g in assigned[split])

    # Fill test then val up to their share of samples, keeping at least one free group per
    # required split that still has none.
    for split in ("test", "val"):
        if fractions[split] <= 0:
            continue
        target = fractions[split] * n
        while free and (count(split) < target or not assigned[split]):
            others_needing = [k for k in required if k != split and not assigned[k]]
            if len(free) <= len(others_needing):
                break
            assigned[split].append(free.pop(0))
    assigned["train"].extend(free)

    # Only fixed-train groups remain to fill an empty val/test: move some (never fixed val/test).
    for split in ("test", "val"):
        if fractions[split] > 0 and not assigned[split]:
            movable = [g for g in sorted(assigned["train"]) if fixed[g] == "train"]
            movable = [movable[i] for i in rng.permutation(len(movable))]
            target = fractions[split] * n
            while len(assigned["train"]) > 1 and movable and (count(split) < target or not assigned[split]):
                g = movable.pop(0)
                assigned["train"].remove(g)
                assigned[split].append(g)
            if assigned[split]:
                log.warning(
                    "dataset %r fixes no %s split; moved %d group(s) of its fixed training set to %s",
                    manifest.name, split, len(assigned[split]), split,
                )
    empty = [k for k in required if not assigned[k]]
    if empty:
        raise DatasetError(
            f"cannot make a non-empty {', '.join(empty)} split for dataset {manifest.name!r} "
            f"({n_groups} group(s), fixed splits: "
            f"{ {k: len(v) for k, v in assigned.items()} }); add data or lower the fractions"
        )
    splits = Splits(**{k: sorted(i for g in assigned[k] for i in groups[g]) for k in SPLIT_NAMES})
    assert_no_leakage(manifest, splits)
    return splits


def assert_no_leakage(manifest: Manifest, splits: Splits) -> None:
    """Raise :class:`DatasetError` if a group (or a sample) appears in more than one split."""
    where: dict[str, set[str]] = {}
    seen: dict[int, str] = {}
    problems: list[str] = []
    n = len(manifest.samples)
    for split in SPLIT_NAMES:
        for i in splits[split]:
            if not 0 <= i < n:
                problems.append(f"{split}: index {i} is out of range [0, {n})")
                continue
            if i in seen and seen[i] != split:
                problems.append(f"sample {manifest.samples[i].key!r} is in both {seen[i]} and {split}")
            seen[i] = split
            where.setdefault(manifest.samples[i].group_id, set()).add(split)
    for g, sp in sorted(where.items()):
        if len(sp) > 1:
            problems.append(f"group {g!r} is in {', '.join(k for k in SPLIT_NAMES if k in sp)}")
    if problems:
        raise DatasetError("data leakage between splits", problems=problems)


_CVC_ROW = re.compile(r"(\d+)\s*to\s*(\d+)\s*\|\s*(\d+)\s*\|")


def find_cvc_clinicdb_readme(root: str | os.PathLike[str]) -> Path | None:
    """The CVC-ClinicDB README (``README*CVC*ClinicDB*.txt``) directly inside ``root``, if any."""
    base = Path(root)
    if not base.is_dir():
        return None
    for p in sorted(base.iterdir()):
        low = p.name.lower()
        if p.is_file() and low.startswith("readme") and "cvc" in low and "clinicdb" in low:
            return p
    return None


def cvc_clinicdb_groups(root: str | os.PathLike[str]) -> dict[str, str]:
    """Frame number -> video sequence id (``"cvc_seq01"``...) from CVC-ClinicDB's own README.

    The README's table maps frame ranges (``1 to 25 | 1``) to the 29 sequences. Keys are frame
    numbers as strings without leading zeros (``"1"`` ... ``"612"``). ``root`` is the dataset folder
    (or the README file itself); an empty dict is returned when no parseable table is found.
    """
    path = Path(root)
    readme = path if path.is_file() else find_cvc_clinicdb_readme(path)
    if readme is None:
        return {}
    text = readme.read_bytes().decode("latin-1")  # the file is ISO-8859-1
    out: dict[str, str] = {}
    for lo, hi, seq in _CVC_ROW.findall(text):
        a, b, s = int(lo), int(hi), int(seq)
        if a > b or b - a > 10000:
            continue
        for frame in range(a, b + 1):
            out[str(frame)] = f"cvc_seq{s:02d}"
    return out
