from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from sikd_core.metrics import batch_dice, case_metrics


def square(shape, r0, r1, c0, c1, value=1):
    m = np.zeros(shape, dtype=np.int64)
    m[r0:r1, c0:c1] = value
    return m


def test_perfect_prediction():
    g = square((32, 32), 4, 20, 4, 20)
    m = case_metrics(g, g, 2)
    assert m.dice == [1.0] and m.iou == [1.0] and m.hd95 == [0.0] and m.hd == [0.0]


def test_known_overlap_values():
    g = square((40, 40), 0, 10, 0, 10)  # 100 px
    p = square((40, 40), 0, 10, 5, 15)  # 50 px overlap
    m = case_metrics(p, g, 2)
    assert m.dice[0] == pytest.approx(2 * 50 / 200)
    assert m.iou[0] == pytest.approx(50 / 150)
    assert m.hd[0] == pytest.approx(5.0)


def test_shifted_square_hausdorff_in_pixels_and_mm():
    g = square((64, 64), 10, 30, 10, 30)
    p = square((64, 64), 10, 30, 18, 38)  # shifted 8 columns
    px = case_metrics(p, g, 2)
    mm = case_metrics(p, g, 2, spacing=(1.0, 0.5))
    assert px.hd[0] == pytest.approx(8.0)
    assert mm.hd[0] == pytest.approx(4.0)
    assert px.hd95[0] <= px.hd[0]


@pytest.mark.parametrize(
    "pred_empty,gt_empty,dice,hd_is_diag",
    [(True, True, 1.0, False), (False, True, 0.0, True), (True, False, 0.0, True)],
)
def test_empty_conventions(pred_empty, gt_empty, dice, hd_is_diag):
    full = square((30, 40), 5, 15, 5, 15)
    empty = np.zeros((30, 40), dtype=np.int64)
    m = case_metrics(empty if pred_empty else full, empty if gt_empty else full, 2)
    assert m.dice[0] == dice and m.iou[0] == dice
    expected = math.hypot(30, 40) if hd_is_diag else 0.0
    assert m.hd95[0] == pytest.approx(expected) and m.hd[0] == pytest.approx(expected)


def test_per_class_multi_class_and_3d():
    g = np.zeros((4, 20, 20), dtype=np.int64)
    g[:, 2:8, 2:8] = 1
    g[:, 10:18, 10:18] = 2
    p = g.copy()
    p[:, 10:18, 10:18] = 0  # class 2 missed entirely
    m = case_metrics(p, g, 3, spacing=(2.0, 1.0, 1.0))
    assert m.dice == [1.0, 0.0]
    assert m.hd95[1] == pytest.approx(math.sqrt(8**2 + 20**2 + 20**2))
    assert m.mean("dice") == 0.5
    d = m.as_dict()
    assert d["dice"] == 0.5 and d["per_class"]["dice"] == [1.0, 0.0]


def test_bad_inputs():
    with pytest.raises(ValueError, match="differ"):
        case_metrics(np.zeros((4, 4), int), np.zeros((4, 5), int), 2)
    with pytest.raises(ValueError, match="outside"):
        case_metrics(np.full((4, 4), 2), np.zeros((4, 4), int), 2)
    with pytest.raises(ValueError, match="spacing"):
        case_metrics(np.zeros((4, 4), int), np.zeros((4, 4), int), 2, spacing=(1, 1, 1))


def test_batch_dice_matches_case_metrics():
    g = torch.randint(0, 3, (3, 16, 16))
    p = torch.randint(0, 3, (3, 16, 16))
    bd = batch_dice(p, g, 3)
    for i in range(3):
        assert bd[i].tolist() == pytest.approx(case_metrics(p[i].numpy(), g[i].numpy(), 3).dice, abs=1e-6)


def test_one_pass_hausdorff_equals_monais_two_calls():
    """hausdorff_pair computes the surface distances once for HD95 and HD; MONAI's two calls give the same."""
    import warnings

    from monai.metrics import compute_hausdorff_distance

    from sikd_core.metrics import _one_hot, hausdorff_pair

    rng = np.random.default_rng(0)
    for shape, spacing in (((60, 80), None), ((60, 80), (0.5, 0.8)), ((4, 30, 40), (2.0, 0.5, 0.5))):
        for _ in range(3):
            p, g = _one_hot(torch.from_numpy(rng.random(shape) > 0.6), 2), _one_hot(torch.from_numpy(rng.random(shape) > 0.7), 2)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ref95 = compute_hausdorff_distance(p[:, 1:], g[:, 1:], include_background=True, percentile=95,
                                                   spacing=spacing).item()
                ref = compute_hausdorff_distance(p[:, 1:], g[:, 1:], include_background=True, spacing=spacing).item()
            assert hausdorff_pair(p[0, 1], g[0, 1], spacing) == (ref95, ref)


def test_class_argmax_is_argmax_ties_included():
    from sikd_core.inference import class_argmax

    for k in (2, 3, 5):
        x = torch.randn(k, 31, 47)
        x[k - 1, :5] = x[0, :5]  # ties go to the first class, as argmax's
        assert torch.equal(class_argmax(x), x.argmax(0).to(torch.uint8))
