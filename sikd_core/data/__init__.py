"""Data layer: dataset formats -> :class:`Manifest`, grouped splits, cached preprocessing,
batched augmentation and synthetic phantoms.

Typical use::

    manifest = load_dataset("/data/kvasir-seg")          # detects the layout, checks every pair
    splits = make_splits(manifest, seed=0)               # grouped, deterministic
    train = prepare(manifest, (256, 256), cache_dir, indices=splits.train)
    images, labels = train.tensors()
"""

from __future__ import annotations

from sikd_core.data.augment import Augmenter
from sikd_core.data.formats import load_dataset
from sikd_core.data.io import read_image, read_mask
from sikd_core.data.manifest import Manifest, Sample
from sikd_core.data.phantoms import DOMAINS, generate_phantoms, phantom_arrays
from sikd_core.data.preprocess import (
    PreparedData,
    iter_cases,
    load_case,
    load_original,
    normalize_intensity,
    prepare,
)
from sikd_core.data.scan import dataset_stats, scan_dataset
from sikd_core.data.splits import Splits, assert_no_leakage, cvc_clinicdb_groups, make_splits

__all__ = [
    "DOMAINS",
    "Augmenter",
    "Manifest",
    "PreparedData",
    "Sample",
    "Splits",
    "assert_no_leakage",
    "cvc_clinicdb_groups",
    "dataset_stats",
    "generate_phantoms",
    "iter_cases",
    "load_case",
    "load_dataset",
    "load_original",
    "make_splits",
    "normalize_intensity",
    "phantom_arrays",
    "prepare",
    "read_image",
    "read_mask",
    "scan_dataset",
]
