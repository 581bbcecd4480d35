"""The shared test every registered training method passes (as tests/unit/test_models.py for networks),
and the registry's names, compositions and errors."""

from __future__ import annotations

import pytest
import torch

from sikd_core.errors import SpecError
from sikd_core.inference import load_bundle, save_bundle
from sikd_core.methods import (
    MethodTrainer,
    available_methods,
    create_method,
    method_names,
    method_options,
    parse_method,
)
from sikd_core.models import create_model
from sikd_core.spec import parse_spec
from sikd_core.training import TrainConfig

#: The training plug-ins (baseline and sikd are the plain trainer's; the reference recipe has its own trainer).
PLUGINS = [m for m in available_methods() if m not in ("baseline", "sikd", "reference")]


def test_the_papers_methods_are_registered_with_references():
    assert PLUGINS == ["sdm", "gin", "maxstyle"]
    opts = {o["name"]: o for o in method_options()}
    assert set(opts) == {"baseline", "sikd", "sdm", "gin", "maxstyle", "reference"}
    assert not opts["reference"]["composable"]
    assert all(o["description"] and o["reference"] for o in opts.values())
    assert {n for n, o in opts.items() if o["composable"]} == {"sdm", "gin", "maxstyle"}
    assert {"sdm+sikd", "gin+sikd", "maxstyle+sikd"} <= set(method_names())


@pytest.mark.parametrize("name, parsed", [("sikd", ("baseline", True)), ("gin+sikd", ("gin", True)),
                                          ("sdm", ("sdm", False)), ("baseline", ("baseline", False))])
def test_parse_method(name, parsed):
    assert parse_method(name) == parsed


@pytest.mark.parametrize("bad", ["foo", "baseline+sikd", "sikd+sikd", "gin+sdm", "+sikd", ""])
def test_bad_names_and_compositions_name_the_known_methods(bad):
    with pytest.raises(SpecError, match="known methods: baseline, sikd, sdm, gin, maxstyle"):
        parse_method(bad)
    with pytest.raises(SpecError, match="methods"):
        parse_spec({"train_dataset": "x", "methods": ["baseline", bad]})


def test_maxstyle_needs_the_unet():
    with pytest.raises(SpecError, match="maxstyle.*needs network unet"):
        parse_spec({"train_dataset": "x", "network": "basic_unet", "methods": ["maxstyle"]})


def _tiny_data(n=6, size=32):
    g = torch.Generator().manual_seed(0)
    images = torch.rand(n, 1, size, size, generator=g)
    labels = torch.zeros(n, size, size, dtype=torch.long)
    labels[:, 8:20, 10:24] = 1
    labels[:, 22:28, 4:12] = 2
    return images, labels


@pytest.mark.parametrize("distilled", [False, True], ids=["plain", "+sikd"])
@pytest.mark.parametrize("name", PLUGINS)
def test_every_method_trains_a_step_and_deploys_only_the_plain_network(name, distilled, tmp_path):
    torch.manual_seed(0)
    model = create_model("unet", 1, 3, widths=[4, 8, 16])
    method = create_method(name, model, in_channels=1, num_classes=3)
    calls = []
    for module in method.children():  # the method's own modules must never run at inference
        module.register_forward_hook(lambda *_: calls.append(1))
    teacher = create_model("unet", 1, 3, widths=[4, 8, 16], skip_connections=False) if distilled else None
    before = {k: v.clone() for k, v in model.state_dict().items()}
    config = TrainConfig(epochs=1, batch_size=3, lr=1e-2, device="cpu", steps_per_epoch=1)
    trainer = MethodTrainer(model, _tiny_data(), None, config, num_classes=3, method=method, teacher=teacher,
                            alpha=2.0, checkpoint_dir=tmp_path / "ckpt")
    result = trainer.fit()
    terms = result.history[-1]
    assert terms["seg_loss"] > 0 and ("kd_loss" in terms) == distilled
    if distilled:  # the student is trained with both losses: total = method's loss + distillation
        assert terms["kd_loss"] > 0 and terms["loss"] > terms["seg_loss"]
    changed = [k for k, v in model.state_dict().items() if v.dtype.is_floating_point and not torch.equal(v, before[k])]
    assert changed  # the step updated the network
    assert calls or name == "gin"  # the training-only modules did run in training (GIN has none)
    bundle = tmp_path / "model.pt"
    save_bundle(bundle, model, network="unet", network_kwargs={"widths": [4, 8, 16]}, in_channels=1, num_classes=3,
                image_size=(32, 32))
    loaded = load_bundle(bundle, device="cpu").model
    assert set(loaded.state_dict()) == set(model.state_dict())  # no heads or decoders in the deployed model
    calls.clear()
    with torch.no_grad():
        out = loaded(torch.rand(2, 1, 32, 32))
        model.eval()(torch.rand(2, 1, 32, 32))
    assert out.shape == (2, 3, 32, 32) and not calls


def test_method_state_is_checkpointed_and_resumed(tmp_path):
    torch.manual_seed(0)
    model = create_model("unet", 1, 3, widths=[4, 8, 16])
    method = create_method("sdm", model, in_channels=1, num_classes=3)
    config = TrainConfig(epochs=1, batch_size=3, device="cpu", steps_per_epoch=1, checkpoint_interval_s=0)
    MethodTrainer(model, _tiny_data(), None, config, num_classes=3, method=method, checkpoint_dir=tmp_path).fit()
    head = method.head.weight.detach().clone()
    fresh = create_method("sdm", create_model("unet", 1, 3, widths=[4, 8, 16]), in_channels=1, num_classes=3)
    config2 = TrainConfig(epochs=1, batch_size=3, device="cpu", steps_per_epoch=1)
    t2 = MethodTrainer(create_model("unet", 1, 3, widths=[4, 8, 16]), _tiny_data(), None, config2, num_classes=3,
                       method=fresh, checkpoint_dir=tmp_path)
    t2._setup()
    assert t2._resume()
    torch.testing.assert_close(fresh.head.weight, head)


def test_cli_lists_the_methods(capsys):
    from sikd_core.cli import main

    assert main(["methods"]) == 0
    out = capsys.readouterr().out
    assert "gin+sikd" in out and "Xue et al." in out and "MaxStyle" in out
