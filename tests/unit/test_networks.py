"""Every registered network trains with baseline and SIKD (teacher, then student) through the pipeline, and
the SIKD teacher follows the paper's skip rule: U-Net and TransUNet drop their skip connections, the others
keep them (and say so). ONNX parity of every network is test_export.py's shared parity test (TINY)."""

from __future__ import annotations

import pytest
import torch

from sikd_core.models import available_models, create_model, model_info
from sikd_core.pipeline import ExperimentRun
from sikd_core.spec import parse_spec
from tests.unit.test_models import SMALL

pytestmark = pytest.mark.slow(seconds=60)  # one training step of three stages for each of eleven networks


def spec_for(sets, name: str, kwargs: dict, **kw):
    base = dict(name=f"net-{name}", train_dataset=str(sets["vendor_a"]), eval_datasets=[], network=name,
                network_kwargs={k: list(v) if isinstance(v, tuple) else v for k, v in kwargs.items()},
                image_size=32, epochs=1, steps_per_epoch=1, batch_size=2, lr=1e-3, seeds=[0],
                methods=["baseline", "sikd"], device="cpu", feature_maps=1, augment=False)
    base.update(kw)
    return parse_spec(base)


def train_one_step_each(exp: ExperimentRun) -> dict[str, dict]:
    """Baseline, teacher and student of seed 0, one optimiser step each; every stage must move its weights."""
    records = {}
    for stage in ("baseline", "teacher", "student"):
        init = exp.build_model(stage, 0).state_dict()
        records[stage] = rec = exp.run_stage(stage, 0)
        assert rec["epochs"] == 1 and rec["model_path"], rec
        trained = torch.load(rec["model_path"], map_location="cpu", weights_only=False)["state_dict"]
        moved = [k for k, v in init.items() if v.is_floating_point() and not torch.equal(v, trained[k].to(v.dtype))]
        assert moved, f"{exp.spec.network} {stage}: no weight changed after a training step"
    return records


def perturbed_skips_change_output(net: torch.nn.Module) -> bool:
    """Add noise to the skip tensor every decoder block receives (as test_models does for the U-Net)."""
    x = torch.rand(1, net.in_channels, 32, 32)
    g = torch.Generator().manual_seed(3)
    net.eval()
    with torch.no_grad():
        clean = net(x)
        hooks = [up.register_forward_pre_hook(lambda m, args: (args[0], args[1] + torch.randn(
            args[1].shape, generator=g))) for up in net.decoder]
        try:
            perturbed = net(x)
        finally:
            for h in hooks:
                h.remove()
    return not torch.equal(clean, perturbed)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_network_trains_baseline_and_sikd_with_the_papers_skip_rule(phantom_sets, tmp_path, name):
    torch.manual_seed(0)
    exp = ExperimentRun(spec_for(phantom_sets, name, SMALL[name]), tmp_path / name)
    info = model_info(name)
    teacher_kw, baseline_kw = exp.network_kwargs("teacher"), exp.network_kwargs("baseline")
    assert info.teacher_note, f"{name}: sikd networks must say what its teacher keeps or drops"
    if info.skip_switch:
        assert teacher_kw == {**baseline_kw, "skip_connections": False}
        assert perturbed_skips_change_output(exp.build_model("baseline", 0))
        assert not perturbed_skips_change_output(exp.build_model("teacher", 0))
    else:  # same architecture for teacher and student
        assert teacher_kw == baseline_kw and "skip_connections" not in teacher_kw
        assert "keeps its skip connections" in info.teacher_note
    records = train_one_step_each(exp)
    teacher = torch.load(records["teacher"]["model_path"], map_location="cpu", weights_only=False)
    assert teacher["network"] == name and teacher["network_kwargs"] == teacher_kw


def test_the_papers_skip_switch_networks():
    switch = {n for n in available_models() if model_info(n).skip_switch}
    assert {"unet", "transunet"} <= switch
    assert not switch & {"basic_unet", "basic_unet_pp", "segresnet", "dynunet", "attention_unet", "unetr"}


def test_flexible_unet_loads_a_local_encoder_state_dict_and_explains_mismatches(tmp_path):
    kw = SMALL["flexible_unet_resnet"]
    torch.manual_seed(5)
    donor = create_model("flexible_unet_resnet", 3, 2, **kw)
    path = tmp_path / "encoder.pth"
    torch.save(donor.net.encoder.state_dict(), path)
    torch.manual_seed(6)
    net = create_model("flexible_unet_resnet", 3, 2, **kw, pretrained_path=str(path))
    for k, v in donor.net.encoder.state_dict().items():
        assert torch.equal(net.net.encoder.state_dict()[k], v), k
    from sikd_core.errors import SpecError

    with pytest.raises(SpecError, match="does not match the encoder: .*wrong shape"):  # 3-channel stem into 1
        create_model("flexible_unet_resnet", 1, 2, **kw, pretrained_path=str(path))
    torch.save({"conv1.weight": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(SpecError, match="missing .*unexpected 0|missing"):
        create_model("flexible_unet_resnet", 3, 2, **kw, pretrained_path=str(tmp_path / "other.pt"))
    with pytest.raises(SpecError, match="not a file"):
        create_model("flexible_unet_resnet", 3, 2, **kw, pretrained_path=str(tmp_path / "nope.pt"))
    (tmp_path / "w.h5").write_bytes(b"x")
    with pytest.raises(SpecError, match="unsupported format; use one of .pt, .pth, .safetensors"):
        create_model("flexible_unet_resnet", 3, 2, **kw, pretrained_path=str(tmp_path / "w.h5"))
    with pytest.raises(SpecError, match="backbone 'resnet9' is not one of"):
        create_model("flexible_unet_resnet", 3, 2, backbone="resnet9")


@pytest.mark.parametrize("name", ["transunet", "segresnet", "flexible_unet_efficientnet", "unetr"])
def test_the_comparison_methods_train_the_new_networks(phantom_sets, tmp_path, name):
    """sdm (a head on the penultimate features) and gin (input augmentation) are network-agnostic: one step
    each on networks beyond the paper's U-Net."""
    exp = ExperimentRun(spec_for(phantom_sets, name, SMALL[name], methods=["sdm", "gin"]), tmp_path / name)
    for stage in ("sdm", "gin"):
        init = exp.build_model(stage, 0).state_dict()
        rec = exp.run_stage(stage, 0)
        trained = torch.load(rec["model_path"], map_location="cpu", weights_only=False)["state_dict"]
        assert set(trained) == set(init), f"{stage}: the bundle holds the plain network only"
        assert any(not torch.equal(v, trained[k]) for k, v in init.items() if v.is_floating_point()), stage


def test_efficientnet_encoder_weights_from_monais_own_encoder(tmp_path):
    """A state_dict saved from MONAI's EfficientNet encoder (with the classifier layers the segmenter does not
    run) loads into flexible_unet_efficientnet; a .safetensors file needs the safetensors package."""
    import importlib.util

    from monai.networks.nets.efficientnet import EfficientNetEncoder

    from sikd_core.errors import SpecError

    torch.manual_seed(7)
    donor = EfficientNetEncoder("efficientnet-b0", pretrained=False, spatial_dims=2, in_channels=3)
    assert any(k.startswith("_fc.") for k in donor.state_dict())
    torch.save(donor.state_dict(), tmp_path / "b0.pt")
    kw = SMALL["flexible_unet_efficientnet"]
    net = create_model("flexible_unet_efficientnet", 3, 2, **kw, pretrained_path=str(tmp_path / "b0.pt"))
    own = net.net.encoder.state_dict()
    assert own and all(torch.equal(v, donor.state_dict()[k]) for k, v in own.items())
    st = tmp_path / "b0.safetensors"
    if importlib.util.find_spec("safetensors") is None:
        st.write_bytes(b"\0" * 16)
        with pytest.raises(SpecError, match="safetensors package is not installed"):
            create_model("flexible_unet_efficientnet", 3, 2, **kw, pretrained_path=str(st))
    else:
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in donor.state_dict().items()}, str(st))
        net = create_model("flexible_unet_efficientnet", 3, 2, **kw, pretrained_path=str(st))
        assert all(torch.equal(v, donor.state_dict()[k]) for k, v in net.net.encoder.state_dict().items())


def test_a_spec_with_mismatched_encoder_weights_is_refused_before_training(phantom_sets, tmp_path):
    from sikd_core.errors import SpecError

    torch.save({"conv1.weight": torch.zeros(1)}, tmp_path / "other.pt")
    kw = {**SMALL["flexible_unet_resnet"], "pretrained_path": str(tmp_path / "other.pt")}
    with pytest.raises(SpecError, match="network_kwargs: .*does not match the encoder"):
        spec_for(phantom_sets, "flexible_unet_resnet", kw)
