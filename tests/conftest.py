"""Shared fixtures: small SYNTHETIC phantom datasets and a few real polyp pairs."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "2")

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "polyp"


@pytest.fixture(scope="session")
def phantom_sets(tmp_path_factory) -> dict[str, Path]:
    """SYNTHETIC phantoms: a training domain and two unseen domains (64 px, small)."""
    from sikd_core.data import generate_phantoms

    root = tmp_path_factory.mktemp("phantoms")
    return {
        "vendor_a": generate_phantoms(root / "vendor_a", domain="vendor_a", n=20, seed=1, size=64),
        "vendor_b": generate_phantoms(root / "vendor_b", domain="vendor_b", n=6, seed=2, size=64),
        "vendor_c": generate_phantoms(root / "vendor_c", domain="vendor_c", n=6, seed=3, size=64),
    }


def copy_polyp_pairs(dest: Path, source: str, names: list[str]) -> Path:
    """Copy a few real pairs of ../shared/datasets/polyp/<source> into a folder dataset."""
    src = SHARED / source
    if not src.is_dir():
        pytest.fail(f"shared polyp data missing at {src}")
    for sub in ("images", "masks"):
        (dest / sub).mkdir(parents=True, exist_ok=True)
        for n in names:
            shutil.copy(src / sub / n, dest / sub / n)
    return dest
