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
