"""Data layer: dataset formats -> :class:`Manifest`, grouped splits, cached preprocessing,
batched augmentation and synthetic phantoms.

Typical use::

    manifest = load_dataset("/data/kvasir-seg")          # detects the layout, checks every pair
    splits = make_splits(manifest, seed=0)               # grouped, deterministic
    train = prepare(manifest, (256, 256), cache_dir, indices=splits.train)
    images, labels = train.tensors()
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sikd_core.lazy import lazy_attributes

#: Each name and the module that defines it, imported on first use: the service reads manifests and scans
#: uploads without PyTorch, so the API starts without importing it (a restarted API answers sooner).
_WHERE = {
    "Augmenter": "augment",
    "load_dataset": "formats",
    "read_image": "io", "read_mask": "io",
    "Manifest": "manifest", "Sample": "manifest",
    "DOMAINS": "phantoms", "generate_phantoms": "phantoms", "phantom_arrays": "phantoms",
    "PreparedData": "preprocess", "iter_cases": "preprocess", "load_case": "preprocess",
    "load_original": "preprocess", "normalize_intensity": "preprocess", "prepare": "preprocess",
    "dataset_stats": "scan", "scan_dataset": "scan",
    "Splits": "splits", "assert_no_leakage": "splits", "cvc_clinicdb_groups": "splits", "make_splits": "splits",
}

if TYPE_CHECKING:
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


__getattr__ = lazy_attributes(__name__, _WHERE, globals())

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
