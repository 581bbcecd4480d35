"""One shared test for every registered model (forward, backward, odd sizes, save/load, features)."""

from __future__ import annotations

import io
import math

import pytest
import torch

from sikd_core.errors import SpecError, UnknownModelError
from sikd_core.models import (
    SegmentationModel,
    UNet,
    available_models,
    create_model,
    fold_batchnorm,
    model_info,
)

SMALL = {
    "unet": {"widths": (8, 16, 32, 64)},
    "basic_unet": {"features": (8, 8, 16, 32, 64, 8)},
    "attention_unet": {"channels": (8, 16, 32, 64)},
    "swin_unetr": {"feature_size": 12, "depths": (1, 1, 1, 1), "num_heads": (1, 1, 1, 1)},
    "dynunet": {"filters": (8, 16, 32, 64)},
    "segresnet": {"init_filters": 8, "blocks_down": (1, 1, 1), "blocks_up": (1, 1)},
    "basic_unet_pp": {"features": (8, 8, 16, 16, 32, 8)},
    "flexible_unet_resnet": {"backbone": "resnet10", "decoder_channels": (16, 16, 8, 8, 8)},
    "flexible_unet_efficientnet": {"backbone": "efficientnet-b0", "decoder_channels": (16, 16, 8, 8, 8),
                                   "drop_connect_rate": 0.0},
    "unetr": {"img_size": (32, 32), "feature_size": 4, "hidden_size": 16, "mlp_dim": 32, "num_heads": 2},
    "transunet": {"widths": (8, 16, 32), "hidden_size": 16, "num_layers": 1, "num_heads": 2, "mlp_dim": 32},
}


def test_every_model_has_a_small_config():
    assert set(available_models()) == set(SMALL)
    assert {"unet", "basic_unet", "attention_unet", "swin_unetr"} <= set(available_models())
    assert len(available_models()) >= 10


@pytest.fixture(params=sorted(SMALL))
def name(request):
    return request.param


@pytest.mark.parametrize("in_ch,k", [(1, 2), (3, 4)])
def test_forward_backward_features(name, in_ch, k):
    torch.manual_seed(0)
    model = create_model(name, in_ch, k, **SMALL[name])
    assert isinstance(model, SegmentationModel)
    x = torch.rand(2, in_ch, 33, 47)  # odd sizes
    logits, feats = model.forward_with_features(x)
    assert logits.shape == (2, k, 33, 47)
    assert feats.ndim == 4 and feats.shape[0] == 2 and feats.shape[2:] == (33, 47)
    assert torch.allclose(model(x), logits, atol=1e-5)
    assert torch.allclose(model.forward_features(x), feats, atol=1e-5)
    (logits.mean() + feats.mean()).backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_features_are_head_input(name):
    """forward_features must be exactly what the final 1x1 conv sees."""
    torch.manual_seed(0)
    model = create_model(name, 1, 3, **SMALL[name]).eval()
    x = torch.rand(1, 1, 32, 32)
    logits, feats = model.forward_with_features(x)
    head = model.head if isinstance(model, UNet) else None
    if head is None:  # MONAI: the hooked final conv; its weight is (K, F, 1, 1)
        convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d) and m.out_channels == 3]
        head = convs[-1]
    assert head.weight.shape[1] == feats.shape[1]
    torch.testing.assert_close(head(feats), logits, atol=1e-5, rtol=1e-4)
    # head_module() (what the SIKD student's head is copied through) is, or wraps, that conv; registered once.
    hm = model.head_module()
    assert any(m is head for m in hm.modules()) and any(m is hm for m in model.modules())
    torch.testing.assert_close(hm(feats), logits, atol=1e-5, rtol=1e-4)
    assert not any(k.startswith("_head") for k in model.state_dict())


def test_fold_batchnorm_keeps_features(name):
    """The frozen teacher is BN-folded: same features and logits as the unfolded eval model, original untouched."""
    torch.manual_seed(0)
    model = create_model(name, 3, 3, **SMALL[name])
    model.train()
    for _ in range(3):  # give BatchNorm non-trivial running statistics
        model(torch.rand(2, 3, 32, 32) * 3 + 1)
    model.eval()
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        ref_logits, ref_feats = model.forward_with_features(x)
        folded = fold_batchnorm(model)
        logits, feats = folded.forward_with_features(x)
    torch.testing.assert_close(feats, ref_feats, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(logits, ref_logits, atol=1e-4, rtol=1e-4)
    assert not any(p.requires_grad for p in folded.parameters())
    assert any(p.requires_grad for p in model.parameters())  # the original is left as it was
    if name == "unet":  # every conv-BN pair of the paper U-Net is folded; the original keeps its BN
        assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
        assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())


def test_save_load_roundtrip(name):
    torch.manual_seed(0)
    a = create_model(name, 1, 2, **SMALL[name]).eval()
    buf = io.BytesIO()
    torch.save(a.state_dict(), buf)
    buf.seek(0)
    torch.manual_seed(1)
    b = create_model(name, 1, 2, **SMALL[name]).eval()
    b.load_state_dict(torch.load(buf))
    x = torch.rand(1, 1, 32, 32)
    torch.testing.assert_close(a(x), b(x))


def test_unet_defaults_match_paper():
    m = create_model("unet", 1, 2)
    assert m.widths == (64, 128, 256, 512, 1024)
    assert m.skip_connections is True
    assert m.head.kernel_size == (1, 1) and m.head.in_channels == 64


def test_unet_without_skips_is_a_different_network():
    with_skip = create_model("unet", 1, 2, widths=(8, 16, 32))
    no_skip = create_model("unet", 1, 2, widths=(8, 16, 32), skip_connections=False)
    # Decoder blocks take only the upsampled path: fewer input channels, fewer weights.
    assert no_skip.decoder[0].block[0].in_channels == 16
    assert with_skip.decoder[0].block[0].in_channels == 32
    assert sum(p.numel() for p in no_skip.parameters()) < sum(p.numel() for p in with_skip.parameters())
    # And its output does not depend on the encoder's features through a shortcut: changing the skip
    # tensor handed to every decoder block changes the skip net's output and leaves the other's unchanged.
    x = torch.rand(1, 1, 32, 32)

    def perturb_skips(net):
        g = torch.Generator().manual_seed(3)
        return [up.register_forward_pre_hook(lambda m, args: (args[0], args[1] + torch.randn(
            args[1].shape, generator=g))) for up in net.decoder]

    for net, uses_skips in ((with_skip, True), (no_skip, False)):
        net.eval()
        with torch.no_grad():
            clean = net(x)
            hooks = perturb_skips(net)
            try:
                perturbed = net(x)
            finally:
                for h in hooks:
                    h.remove()
        assert clean.shape == (1, 2, 32, 32)
        assert torch.equal(clean, perturbed) is not uses_skips, f"skip_connections={uses_skips}"
    assert model_info("unet").skip_switch and not model_info("basic_unet").skip_switch


def test_unknown_model_lists_known():
    with pytest.raises(UnknownModelError, match="known networks: attention_unet, basic_unet, basic_unet_pp, dynunet, flexible_unet_efficientnet"):
        create_model("resnet", 1, 2)


def test_unknown_kwarg_lists_accepted():
    with pytest.raises(SpecError, match="does not take 'depth'.*widths"):
        create_model("unet", 1, 2, depth=3)


def test_too_small_input_is_explained():
    m = create_model("unet", 1, 2, widths=(4, 8, 16, 32, 64))
    with pytest.raises(ValueError, match="minimum 16"):
        m(torch.rand(1, 1, 8, 8))


def test_registry_defaults_come_from_the_builders():
    assert model_info("unet").defaults == {"widths": [64, 128, 256, 512, 1024], "skip_connections": True}
    assert model_info("swin_unetr").defaults["feature_size"] == 24


def test_check_model_kwargs_allocates_nothing():
    from sikd_core.models import check_model_kwargs

    check_model_kwargs("unet", {"widths": [64, 128, 256, 512, 1024, 2048]})  # ~124M parameters, on "meta"
    with pytest.raises(SpecError, match="cannot be built"):
        check_model_kwargs("attention_unet", {"channels": "abc"})


def test_unet_uses_the_authors_kaiming_initialisation():
    # The SIKD authors' U-Net is initialised with He-normal convs (fan-in, ReLU gain), zero biases and
    # identity BatchNorm; PyTorch's default is ~2.4x smaller and let narrow heads lock into all-background.
    torch.manual_seed(0)
    m = create_model("unet", 3, 2, widths=(32, 64, 128))
    conv = m.encoder[2][3]  # 128 -> 128, fan-in 1152: enough weights for a tight estimate
    fan_in = conv.weight[0].numel()
    assert abs(float(conv.weight.detach().std()) / math.sqrt(2 / fan_in) - 1) < 0.05
    assert abs(float(m.head.weight.detach().std()) / math.sqrt(2 / 32) - 1) < 0.35  # only 64 weights
    assert float(m.head.bias.detach().abs().max()) == 0.0
    bns = [b for b in m.modules() if isinstance(b, torch.nn.BatchNorm2d)]
    assert all(bool((b.weight == 1).all()) and bool((b.bias == 0).all()) for b in bns)
