"""Overlays that stay visible for any prediction: outlines at the image border, per-class colours, error maps."""

from __future__ import annotations

import numpy as np
import pytest

from sikd_core.viz import CLASS_COLORS, ERROR_COLORS, class_contours, error_map, mask_boundary


def test_all_foreground_mask_has_a_visible_outline():
    full = np.ones((8, 10), dtype=np.uint8)  # a collapsed model: every pixel foreground
    edge = mask_boundary(full)
    assert edge[0].all() and edge[-1].all() and edge[:, 0].all() and edge[:, -1].all()
    assert not edge[2:-2, 2:-2].any()
    assert not mask_boundary(np.zeros((8, 10), dtype=np.uint8)).any()


def test_class_contours_colour_each_class():
    img = np.full((12, 12), 0.5, dtype=np.float32)
    mask = np.zeros((12, 12), dtype=np.int64)
    mask[2:6, 2:6] = 1
    mask[7:11, 7:11] = 2
    out = class_contours(img, mask, num_classes=3)
    assert (out[2, 3] == CLASS_COLORS[1]).all() and (out[7, 8] == CLASS_COLORS[2]).all()
    assert (out[0, 0] == 128).all()  # background untouched
    with pytest.raises(ValueError, match="shape"):
        class_contours(img, mask[:5], num_classes=3)


def test_error_map_marks_false_positives_and_negatives():
    img = np.zeros((4, 4), dtype=np.float32)
    gt = np.zeros((4, 4), dtype=np.int64)
    gt[:2] = 1
    pred = np.ones((4, 4), dtype=np.int64)  # all foreground: FP below, TP above
    pred[0, 0] = 0  # one missed pixel: FN
    out = error_map(img, pred, gt, opacity=1.0)
    assert tuple(out[3, 3]) == ERROR_COLORS["false positive"]
    assert tuple(out[0, 0]) == ERROR_COLORS["false negative"]
    assert tuple(out[1, 1]) == ERROR_COLORS["true positive"]
    with pytest.raises(ValueError, match="shape"):
        error_map(img, pred[:2], gt)


@pytest.mark.parametrize("shape", [(37, 53), (37, 53, 3), (1500, 800)])  # the last spans several row bands
def test_lean_overlay_fill_and_rgb_equal_the_plain_formulas(shape, monkeypatch):
    """overlay_fill and to_rgb_uint8 work on bands / in place (a 4096^2 picture cost over 1 GB); the pixels
    are exactly those of the plain whole-array formulas they replaced."""
    import sikd_core.viz as viz

    monkeypatch.setattr(viz, "_CHUNK_PIXELS", 4096)
    rng = np.random.default_rng(0)
    img = rng.normal(0.5, 0.4, shape).astype(np.float32)  # values outside [0, 1] too
    mask = rng.integers(0, 4, shape[:2]).astype(np.uint8)
    rgb = (np.clip(img.astype(np.float32), 0, 1) * 255 + 0.5).astype(np.uint8)
    if rgb.ndim == 2:
        rgb = rgb[..., None]
    rgb = np.ascontiguousarray(np.repeat(rgb, 3, axis=2) if rgb.shape[2] == 1 else rgb)
    assert np.array_equal(viz.to_rgb_uint8(img), rgb)
    colored = viz.class_colors(4)[mask]
    plain = np.where((mask > 0)[..., None], rgb.astype(np.float32) * 0.55 + colored * 0.45,
                     rgb.astype(np.float32)).astype(np.uint8)
    before = rgb.copy()
    assert np.array_equal(viz.overlay_fill(rgb, mask, opacity=0.45), plain)
    assert np.array_equal(rgb, before)  # the caller's picture is not drawn on
    with pytest.raises(ValueError, match="shape"):
        viz.overlay_fill(rgb, mask[:5])


def test_logits_to_masks_in_bands_equal_one_argmax():
    import torch
    import torch.nn.functional as F

    from sikd_core.inference import logits_to_masks

    logits = torch.randn(2, 3, 16, 16)
    logits[1, :, :4] = 0.0  # ties: the first class wins, as in torch.argmax
    sizes = [(1300, 900), (16, 16)]
    got = logits_to_masks(logits, sizes)
    for i, (h, w) in enumerate(sizes):
        lg = logits[i:i + 1]
        lg = lg if (h, w) == (16, 16) else F.interpolate(lg, size=(h, w), mode="bilinear", align_corners=False)
        assert got[i].dtype == np.uint8 and np.array_equal(got[i], lg.argmax(1)[0].to(torch.uint8).numpy())
