"""Near-duplicates by content: a dataset holding shifted and noised copies of its images is warned about at
scan time (unless the copies share a group); one of distinct images is not."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sikd_core.data import load_dataset
from sikd_core.data.duplicates import MAX_COMPARED, fingerprint, near_duplicates


def smooth_image(rng: np.random.Generator, size: int = 64) -> np.ndarray:
    """A random smooth grey picture (a few blobs), like a low-frequency medical image."""
    y, x = np.mgrid[0:size, 0:size] / size
    img = np.zeros((size, size))
    for _ in range(4):
        cy, cx, s, a = rng.uniform(0.1, 0.9), rng.uniform(0.1, 0.9), rng.uniform(0.08, 0.3), rng.uniform(-1, 1)
        img += a * np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * s * s))
    return ((img - img.min()) / (np.ptp(img) + 1e-9) * 200 + 20).astype(np.uint8)


def write(folder: Path, images: dict[str, np.ndarray], groups: dict[str, str] | None = None) -> Path:
    for name, img in images.items():
        for sub, arr in (("images", img), ("masks", (img > 128).astype(np.uint8) * 255)):
            (folder / sub).mkdir(parents=True, exist_ok=True)
            Image.fromarray(arr).save(folder / sub / f"{name}.png")
    if groups:
        (folder / "groups.csv").write_text("name,group\n" + "".join(f"{k},{v}\n" for k, v in groups.items()))
    return folder


@pytest.fixture(scope="module")
def originals() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    return {f"case_{i:02d}": smooth_image(rng) for i in range(10)}


def copies(originals: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Three of the originals again, shifted by a pixel (1.5 % of the side) and with noise."""
    rng = np.random.default_rng(1)
    out = {}
    for shift, (name, img) in zip(((1, 0), (0, 1), (1, 1)), list(originals.items())[:3], strict=True):
        moved = np.roll(img.astype(np.float32), shift, axis=(0, 1)) + rng.normal(0, 6, img.shape)
        out[f"{name}_again"] = np.clip(moved, 0, 255).astype(np.uint8)
    return out


def test_distinct_images_raise_no_warning(tmp_path, originals):
    m = load_dataset(write(tmp_path / "distinct", originals), name="distinct", scan=True)
    assert m.stats["near_duplicates"]["pairs"] == 0 and m.stats["near_duplicates"]["checked"] == 10
    assert not [w for w in m.stats["warnings"] if "near-duplicates" in w]


def test_shifted_noisy_copies_are_warned_about(tmp_path, originals):
    m = load_dataset(write(tmp_path / "dups", {**originals, **copies(originals)}), name="dups", scan=True)
    near = m.stats["near_duplicates"]
    assert near["pairs"] == 3 and near["checked"] == 13
    assert sorted(tuple(sorted(e[:2])) for e in near["examples"]) == [
        (f"case_0{i}", f"case_0{i}_again") for i in range(3)]
    assert all(e[2] >= near["threshold"] for e in near["examples"])
    [warning] = [w for w in m.stats["warnings"] if "near-duplicates" in w]
    assert warning.startswith("3 pair(s) of images look like near-duplicates") and "groups.csv" in warning


def test_copies_in_their_originals_group_are_fine(tmp_path, originals):
    groups = {f"case_0{i}{suffix}": f"patient_{i}" for i in range(3) for suffix in ("", "_again")}
    folder = write(tmp_path / "grouped", {**originals, **copies(originals)}, groups)
    m = load_dataset(folder, name="grouped", scan=True)
    assert m.stats["near_duplicates"]["pairs"] == 0
    assert not [w for w in m.stats["warnings"] if "near-duplicates" in w]


def test_fingerprint_edge_cases_and_bounded_comparison():
    assert fingerprint(np.full((32, 32), 90, np.uint8)) is None  # flat: nothing to compare
    assert fingerprint(np.zeros((4, 4), np.uint8)) is None  # smaller than the grid
    rgb = np.random.default_rng(0).integers(0, 255, (30, 50, 3)).astype(np.uint8)
    f = fingerprint(rgb)
    assert f is not None and f.shape == (64,) and abs(float(f @ f) - 1) < 1e-5
    same = [f] * (MAX_COMPARED + 10)  # more than the bound: an evenly spaced subset is compared
    r = near_duplicates(same, [str(i) for i in range(len(same))], [str(i) for i in range(len(same))])
    assert r["checked"] == MAX_COMPARED and r["pairs"] == MAX_COMPARED * (MAX_COMPARED - 1) // 2
    assert len(r["examples"]) == 5
