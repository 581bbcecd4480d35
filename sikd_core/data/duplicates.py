"""Probable near-duplicate images (the same picture shifted a little, re-encoded or with noise; neighbouring
video frames) found by content, not by file name: each image becomes a tiny grey thumbnail, and thumbnails
that correlate almost perfectly are reported when their images may land in different splits (different
groups), where a split by image would leak between train and test.

The thumbnail is the block mean over an 8x8 grid, centred and scaled to unit length, so the dot product of two
is their Pearson correlation. On real data (8x8, threshold 0.98): Kvasir-SEG (500 images) 1 pair, BUS-BRA
(1875) 1 pair (one patient's left and right views), BUSI (780) 226 pairs (BUSI is known to hold duplicates,
some filed under two classes); SYNTHETIC phantoms of one domain stay below (at most 0.973); a copy shifted by
~2 % with noise keeps a correlation around 0.98. Comparing is one matrix product in blocks, at most :data:`MAX_COMPARED`
images (evenly spaced beyond that), so the cost stays bounded.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

GRID = 8
THRESHOLD = 0.98
MAX_COMPARED = 4000
MAX_EXAMPLES = 5
_BLOCK = 1024


def fingerprint(image: np.ndarray) -> np.ndarray | None:
    """``H,W`` or ``H,W,C`` image -> a unit vector of ``GRID*GRID`` float32 (its centred 8x8 block means);
    None for a flat image (no structure to compare) or one smaller than the grid."""
    g = np.asarray(image, dtype=np.float32)
    if g.ndim == 3:
        g = g.mean(axis=2)
    h, w = g.shape[:2]
    if h < GRID or w < GRID:
        return None
    rows = np.linspace(0, h, GRID + 1).astype(int)[:-1]
    cols = np.linspace(0, w, GRID + 1).astype(int)[:-1]
    sums = np.add.reduceat(np.add.reduceat(g, rows, axis=0), cols, axis=1)
    counts = np.outer(np.diff(np.append(rows, h)), np.diff(np.append(cols, w))).astype(np.float32)
    v = (sums / counts).ravel()
    v -= v.mean()
    n = float(np.linalg.norm(v))
    return (v / n).astype(np.float32) if n > 1e-3 * max(float(np.abs(g).max()), 1.0) else None


def near_duplicates(fingerprints: Sequence[np.ndarray | None], groups: Sequence[str], keys: Sequence[str],
                    threshold: float = THRESHOLD) -> dict[str, Any]:
    """Pairs of images in different groups whose fingerprints correlate at least ``threshold``:
    ``{pairs, checked, threshold, examples: [[key, key, correlation], ...]}`` (the most similar first)."""
    idx = [i for i, f in enumerate(fingerprints) if f is not None]
    if len(idx) > MAX_COMPARED:
        idx = [idx[int(k)] for k in np.linspace(0, len(idx) - 1, MAX_COMPARED).round().astype(int)]
    out: dict[str, Any] = {"pairs": 0, "checked": len(idx), "threshold": threshold, "examples": []}
    if len(idx) < 2:
        return out
    f = np.stack([fingerprints[i] for i in idx])  # type: ignore[misc]
    _, group = np.unique(np.asarray([groups[i] for i in idx]), return_inverse=True)
    found: list[tuple[float, int, int]] = []
    total = 0
    for start in range(0, len(idx), _BLOCK):
        sims = f[start:start + _BLOCK] @ f.T
        rows = np.arange(start, min(start + _BLOCK, len(idx)))[:, None]
        hit = (sims >= threshold) & (np.arange(len(idx))[None, :] > rows) & (group[rows] != group[None, :])
        a, b = np.nonzero(hit)
        total += len(a)
        if len(a):
            top = np.argsort(-sims[a, b], kind="stable")[:MAX_EXAMPLES]
            found += [(float(sims[a[k], b[k]]), start + int(a[k]), int(b[k])) for k in top]
    found.sort(key=lambda t: -t[0])
    out["pairs"] = total
    out["examples"] = [[keys[idx[i]], keys[idx[j]], round(s, 4)] for s, i, j in found[:MAX_EXAMPLES]]
    return out


def near_duplicate_warning(found: dict[str, Any]) -> str | None:
    """The dataset warning for :func:`near_duplicates`' result, or None when there are none."""
    n = int(found.get("pairs") or 0)
    if not n:
        return None
    ex = ", ".join(f"{a} ≈ {b}" for a, b, _ in found.get("examples") or [])
    return (f"{n} pair(s) of images look like near-duplicates (e.g. {ex}; grey 8x8 thumbnails correlate "
            f"≥ {found.get('threshold', THRESHOLD):g}) but are not in one group, so a split can put one in train and "
            "the other in test and inflate the intra scores; give near-duplicates one group in a groups.csv "
            "(name,group rows)")
