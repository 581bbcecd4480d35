from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from sikd_core.losses import FeatureDistillationLoss, SegmentationLoss


def test_ce_is_cross_entropy():
    logits, target = torch.randn(2, 3, 8, 8), torch.randint(0, 3, (2, 8, 8))
    assert torch.allclose(SegmentationLoss("ce", 3)(logits, target), F.cross_entropy(logits, target))


def test_dice_ce_adds_dice():
    logits, target = torch.randn(2, 3, 8, 8), torch.randint(0, 3, (2, 8, 8))
    ce = SegmentationLoss("ce", 3)(logits, target)
    dce = SegmentationLoss("dice_ce", 3)(logits, target)
    assert dce > ce  # CE + a positive Dice term
    perfect = F.one_hot(target, 3).permute(0, 3, 1, 2).float() * 50
    assert SegmentationLoss("dice_ce", 3)(perfect, target) < 1e-3


@pytest.mark.parametrize(
    "logits,target,err",
    [
        (torch.randn(2, 3, 8), torch.zeros(2, 8, dtype=torch.long), "B,K,H,W"),
        (torch.randn(2, 3, 8, 8), torch.zeros(2, 1, 8, 8, dtype=torch.long), "B,H,W"),
        (torch.randn(2, 3, 8, 8), torch.zeros(2, 8, 7, dtype=torch.long), "do not match"),
        (torch.randn(2, 3, 8, 8), torch.zeros(2, 8, 8), "integer"),
        (torch.randn(2, 2, 8, 8), torch.zeros(2, 8, 8, dtype=torch.long), "expected 3"),
    ],
)
def test_seg_loss_contract(logits, target, err):
    with pytest.raises((ValueError, TypeError), match=err):
        SegmentationLoss("ce", 3)(logits, target)


def test_unknown_loss():
    with pytest.raises(ValueError, match="ce, dice_ce"):
        SegmentationLoss("focal")


@pytest.mark.parametrize("alpha", [0.0, 1.0, 2.0, 5.5])
def test_distillation_is_alpha_mse(alpha):
    s, t = torch.randn(2, 8, 4, 4, requires_grad=True), torch.randn(2, 8, 4, 4)
    loss = FeatureDistillationLoss(alpha)(s, t)
    assert torch.allclose(loss, alpha * F.mse_loss(s, t))


@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_distillation_value_and_gradient_match_mse_loss(layout, dtype):
    """The fused MSE gives F.mse_loss's value and gradient for any layout and dtype (bf16 under autocast)."""
    torch.manual_seed(0)
    s = torch.randn(2, 16, 9, 7, dtype=dtype)
    t = torch.randn(2, 16, 9, 7, dtype=dtype)
    if layout == "channels_last":
        s, t = s.contiguous(memory_format=torch.channels_last), t.contiguous(memory_format=torch.channels_last)
    s1, s2 = s.clone().requires_grad_(), s.clone().requires_grad_()
    got = FeatureDistillationLoss(2.0)(s1, t)
    want = 2.0 * F.mse_loss(s2.double(), t.double())
    got.backward()
    want.backward()
    assert got.dtype == torch.float32 and s1.grad.dtype == dtype
    tol = 1e-2 if dtype == torch.bfloat16 else 1e-5
    torch.testing.assert_close(got.double(), want.detach(), atol=tol, rtol=tol)
    torch.testing.assert_close(s1.grad.double(), s2.grad.double(), atol=tol, rtol=tol)


def test_distillation_does_not_reach_teacher():
    s = torch.randn(1, 4, 4, 4, requires_grad=True)
    t = torch.randn(1, 4, 4, 4, requires_grad=True)
    FeatureDistillationLoss(2.0)(s, t).backward()
    assert s.grad is not None and t.grad is None


def test_distillation_shape_mismatch_explained():
    with pytest.raises(ValueError, match="share the architecture"):
        FeatureDistillationLoss()(torch.randn(1, 4, 4, 4), torch.randn(1, 8, 4, 4))
    with pytest.raises(ValueError, match=">= 0"):
        FeatureDistillationLoss(-1)
