"""The ``reference`` method: an independent nnU-Net-like recipe that measures the baseline's strength.

Its parts (planned DynUNet, nnU-Net's Dice+CE, augmentation), the baseline-strength statistics and the
``baseline_below_reference`` finding, and one SYNTHETIC-phantom experiment run end to end with
``methods: [baseline, sikd, reference]`` and one with a deliberately weakened baseline.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sikd_core.errors import SpecError
from sikd_core.health import convergence_findings, reference_convergence, still_rising
from sikd_core.inference import load_bundle
from sikd_core.methods import method_names, parse_method
from sikd_core.methods.reference import (
    DiceCELossNNUNet,
    ReferenceAugmenter,
    reference_filters,
    shared_augmenter,
)
from sikd_core.models import create_model
from sikd_core.models.registry import plan_dynunet_filters
from sikd_core.pipeline import ExperimentRun
from sikd_core.report import baseline_strength, comparison_pairs, render_markdown, strength_markdown
from sikd_core.spec import parse_spec


# ------------------------------------------------------------------------------------------------ parts
@pytest.mark.parametrize(("size", "kw", "expected"), [
    ((64, 64), {}, [32, 64, 128, 256, 512]),  # 64 -> 4 px bottleneck: five levels
    ((256, 256), {}, [32, 64, 128, 256, 512, 512]),  # capped at six levels and 512 filters
    ((48, 96), {}, [32, 64, 128, 256]),  # the smaller side decides: 48 -> 6 px
    ((16, 16), {}, [32, 64, 128]),
    ((64, 64), {"base": 16, "max_filters": 128}, [16, 32, 64, 128, 128]),
])
def test_dynunet_depth_is_planned_from_the_image_size(size, kw, expected):
    assert plan_dynunet_filters(size, **kw) == expected


def test_reference_widths_follow_the_compared_network():
    assert reference_filters("unet", {"widths": [16, 32, 64, 128]}, (64, 64)) == [16, 32, 64, 128]
    # a two-level U-Net: the reference keeps DynUNet's least depth, three levels (two crashed in MONAI)
    assert reference_filters("unet", {"widths": [8, 16]}, (256, 256)) == [8, 16, 16]
    assert reference_filters("unet", {"widths": [4, 8]}, (16, 16)) == [4, 8, 8]
    net = create_model("dynunet", 1, 2, filters=reference_filters("unet", {"widths": [4, 8]}, (16, 16)))
    assert net(torch.rand(1, 1, 16, 16)).shape == (1, 2, 16, 16)
    assert reference_filters("unet", {}, (256, 256)) == [64, 128, 256, 512, 1024]  # the paper U-Net's defaults
    assert reference_filters("basic_unet", {"features": [16, 16, 32, 64, 128, 16]}, (64, 64)) == [16, 32, 64, 128, 128]
    assert reference_filters("swin_unetr", {}, (64, 64)) == [32, 64, 128, 256, 512]  # no width list: nnU-Net's


def test_dynunet_with_fewer_than_three_levels_is_a_clear_spec_error():
    with pytest.raises(SpecError, match="dynunet filters must be 3 to 8 widths"):
        create_model("dynunet", 1, 2, filters=[8, 16])


def test_dynunet_is_a_registered_network_with_features_at_any_size():
    net = create_model("dynunet", 3, 4, filters=[8, 16, 32])
    logits, feats = net.forward_with_features(torch.rand(2, 3, 45, 37))
    assert logits.shape == (2, 4, 45, 37) and feats.shape == (2, 8, 45, 37)
    assert net.head_module().kernel_size == (1, 1)


def test_nnunet_dice_ce_is_ce_plus_one_minus_batch_foreground_dice():
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 8, 8, requires_grad=True)
    target = torch.randint(0, 3, (2, 8, 8))
    loss = DiceCELossNNUNet(3, smooth=0.0)(logits, target)
    p = logits.softmax(1)
    dice = []
    for c in (1, 2):  # background excluded, sums over the whole batch
        t = (target == c).float()
        dice.append(2 * (p[:, c] * t).sum() / (p[:, c].sum() + t.sum()))
    expected = F.cross_entropy(logits, target) + 1 - torch.stack(dice).mean()
    assert torch.allclose(loss, expected, atol=1e-6)
    loss.backward()
    assert torch.isfinite(logits.grad).all()
    perfect = torch.where(F.one_hot(target, 3).permute(0, 3, 1, 2).bool(), 20.0, -20.0)
    assert float(DiceCELossNNUNet(3)(perfect, target)) < 1e-3


def test_reference_augmentation_is_deterministic_and_keeps_label_values():
    images = torch.rand(6, 3, 32, 32)
    labels = torch.randint(0, 3, (6, 32, 32), dtype=torch.uint8)
    aug = ReferenceAugmenter(noise_p=1.0, blur_p=1.0)
    a = aug(images, labels, torch.Generator().manual_seed(1))
    b = aug(images, labels, torch.Generator().manual_seed(1))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert a[0].shape == images.shape and a[0].dtype == images.dtype
    assert 0.0 <= float(a[0].min()) and float(a[0].max()) <= 1.0
    assert set(a[1].unique().tolist()) <= {0, 1, 2} and not torch.equal(a[0], images)


def test_reference_is_a_method_that_is_neither_distilled_nor_compared():
    assert "reference" in method_names() and "reference+sikd" not in method_names()
    assert parse_method("reference") == ("reference", False)
    assert comparison_pairs(["baseline", "sikd", "reference"]) == [("sikd", "baseline")]


# ------------------------------------------------------------------------------------------------ statistics
def _cases(diffs: list[float], dataset: str = "d", split: str = "intra", seeds=(0,)) -> list[dict]:
    out = []
    for seed in seeds:
        for i, d in enumerate(diffs):
            for method, dice in (("reference", 0.8), ("baseline", 0.8 + d)):
                out.append({"method": method, "seed": seed, "dataset": dataset, "split": split, "case": str(i),
                            "dice": dice, "hd95": 1.0})
    return out


@pytest.mark.parametrize(("diffs", "below"), [
    ([-0.1, -0.08, -0.12, -0.09, -0.11, -0.1], True),  # clearly below
    ([-0.01, -0.015, -0.012, -0.008, -0.01, -0.011], False),  # below, but less than 0.02
    ([-0.3, 0.25, -0.2, 0.2, -0.25, 0.15], False),  # on average below, but the CI holds 0
    ([0.05, 0.04, 0.06, 0.05, 0.05, 0.05], False),  # above
])
def test_baseline_strength_flags_only_a_clear_deficit(diffs, below):
    (entry,) = baseline_strength(_cases(diffs), ["baseline", "sikd", "reference"])
    assert entry["a"] == "baseline" and entry["b"] == "reference"
    assert entry["dice"]["mean_diff"] == pytest.approx(np.mean(diffs))
    assert entry["below_reference"] is below


def test_no_reference_no_strength_and_the_report_says_so():
    assert baseline_strength(_cases([-0.1] * 4), ["baseline", "sikd"]) == []


# ------------------------------------------------------------------------------------------------ end to end
def _spec(sets, **kw):
    base = dict(name="with reference", train_dataset=str(sets["vendor_a"]), eval_datasets=[str(sets["vendor_b"])],
                network="unet", network_kwargs={"widths": [4, 8, 16]}, image_size=32, epochs=3, steps_per_epoch=3,
                batch_size=4, lr=5e-3, seeds=[0], methods=["baseline", "sikd", "reference"], device="cpu",
                feature_maps=0, save_predictions=False)
    base.update(kw)
    return parse_spec(base)


@pytest.fixture(scope="module")
def with_reference(phantom_sets, tmp_path_factory):
    exp = ExperimentRun(_spec(phantom_sets), tmp_path_factory.mktemp("ref"))
    return exp, exp.run()


def test_run_with_reference_writes_its_rows_and_the_baseline_strength(with_reference):
    exp, report = with_reference
    assert ("reference", 0) in exp.spec.stages()
    assert {("reference", d) for d in ("vendor_a", "vendor_b")} <= {(r["method"], r["dataset"]) for r in report["rows"]}
    strength = {(e["dataset"], e["split"]): e for e in report["baseline_strength"]}
    assert set(strength) == {("vendor_a", "intra"), ("vendor_b", "cross")}
    for comp in report["comparisons"]:  # sikd - baseline carries the baseline's strength on its dataset
        assert comp["b"] == "baseline" and comp["a"] != "reference"
        bs = comp["baseline_strength"]
        assert bs["mean_diff"] == strength[(comp["dataset"], comp["split"])]["dice"]["mean_diff"]
        assert set(bs) == {"mean_diff", "ci_low", "ci_high", "p_value", "below_reference"}
    stored = json.loads((exp.workdir / "report.json").read_text())
    assert stored["baseline_strength"] == json.loads(json.dumps(report["baseline_strength"]))
    md = (exp.workdir / "report.md").read_text()
    assert "## Baseline strength" in md and "Reference (nnU-Net-like)" in md and "Baseline − reference" in md


def test_the_reference_trains_its_own_planned_network_on_the_same_budget(with_reference):
    exp, _ = with_reference
    bundle = load_bundle(exp.stage_dir("reference", 0) / "model.pt")
    assert bundle.info["network"] == "dynunet" and bundle.info["network_kwargs"] == {"filters": [4, 8, 16]}
    base = json.loads((exp.stage_dir("baseline", 0) / "done.json").read_text())
    ref = json.loads((exp.stage_dir("reference", 0) / "done.json").read_text())
    assert ref["epochs"] == base["epochs"] == 3 and ref["method"] == "reference"


def test_a_report_without_reference_says_nothing_measures_the_baseline(with_reference):
    _, report = with_reference
    md = render_markdown(dict(report, methods=["baseline", "sikd"], baseline_strength=[]))
    assert "No reference recipe was trained" in md


def test_a_weakened_baseline_triggers_baseline_below_reference(phantom_sets, tmp_path):
    """lr 1e-7 leaves the baseline at its initialisation; the reference learns: the finding fires on every
    baseline seed, marks every comparison against the baseline, and the report leads with it."""
    spec = _spec(phantom_sets, lr=1e-7, methods=["baseline", "reference"], epochs=6, steps_per_epoch=4)
    exp = ExperimentRun(spec, tmp_path)
    report = exp.run()
    (intra,) = [e for e in report["baseline_strength"] if e["split"] == "intra"]
    assert intra["below_reference"] and intra["dice"]["ci_high"] < 0, intra
    codes = [f for f in report["health"]["findings"] if f["code"] == "baseline_below_reference"]
    assert [(f["method"], f["seed"], f["severity"]) for f in codes] == [("baseline", 0, "warning")]
    assert report["health"]["models"]["baseline/0"] == "unhealthy"
    md = (tmp_path / "report.md").read_text()
    assert "**The baseline trails the reference recipe**" in md and "baseline_below_reference" in md


@pytest.mark.slow(seconds=45)
def test_with_the_default_recipe_the_baseline_stands_within_003_of_the_reference(phantom_sets, tmp_path):
    """The standard recipe (the spec's default loss) at the quick preset's learning rate: a small SYNTHETIC-phantom
    run puts our baseline within 0.03 intra Dice of the reference recipe trained on the same split and budget."""
    from sikd_core.spec import PRESETS

    quick = PRESETS["quick"][1]
    spec = _spec(phantom_sets, network_kwargs={"widths": [8, 16, 32]}, image_size=48, epochs=10, steps_per_epoch=10,
                 batch_size=8, lr=quick["lr"], methods=["baseline", "reference"])
    assert spec.recipe == "standard" and spec.loss == "dice_ce"
    report = ExperimentRun(spec, tmp_path).run()
    intra = {s["method"]: s["dice_mean"] for s in report["summary"] if s["split"] == "intra"}
    assert intra["reference"] > 0.5, intra  # the reference learned: the comparison means something
    assert intra["baseline"] >= intra["reference"] - 0.03, intra
    assert not any(e["below_reference"] for e in report["baseline_strength"])


# ------------------------------------------------------------------------------------------ convergence
def _history(vals):
    return [{"epoch": i + 1, "loss": 1.0, "val_dice": v} for i, v in enumerate(vals)]


def test_still_rising_compares_the_last_quarter_of_epochs_with_the_one_before():
    rising = still_rising(_history([0.2, 0.3, 0.4, 0.5, 0.55, 0.58, 0.61, 0.65]))
    assert rising["epochs"] == 2 and rising["before"] == pytest.approx(0.565) and rising["last"] == pytest.approx(0.63)
    assert still_rising(_history([0.5, 0.7, 0.8, 0.8])) == pytest.approx(
        {"last": 0.8, "before": 0.8, "gain": 0.0, "epochs": 1})
    assert still_rising(_history([0.5, 0.6, 0.7])) is None  # too short to say
    assert still_rising([{"epoch": i, "val_dice": None} for i in range(8)]) is None  # never validated


def test_an_unconverged_reference_gets_a_finding_and_the_strength_says_lower_bound_only():
    records = {("baseline", 0): {"history": _history([0.1 * i for i in range(8)])},  # not the reference: ignored
               ("reference", 0): {"history": _history([0.2, 0.3, 0.4, 0.5, 0.55, 0.58, 0.61, 0.65])},
               ("reference", 1): {"history": _history([0.2, 0.5, 0.6, 0.63, 0.64, 0.64, 0.645, 0.64])}}
    trends = reference_convergence(records)
    assert set(trends) == {0, 1} and trends[0]["converged"] is False and trends[1]["converged"] is True
    (finding,) = convergence_findings(trends)
    assert (finding["code"], finding["method"], finding["seed"], finding["severity"]) == \
        ("reference_not_converged", "reference", 0, "warning")
    assert finding["values"]["gain"] == pytest.approx(0.065) and "0.565 -> 0.630" in finding["message"]
    (entry,) = baseline_strength(_cases([0.05] * 6), ["baseline", "reference"], reference_converged=False)
    assert entry["reference_converged"] is False and not entry["below_reference"]
    md = "\n".join(strength_markdown({"methods": ["baseline", "reference"], "baseline_strength": [entry]}))
    assert "**The reference recipe had not converged**" in md and "bounds the baseline from below only" in md
    (entry,) = baseline_strength(_cases([0.05] * 6), ["baseline", "reference"], reference_converged=True)
    md = "\n".join(strength_markdown({"methods": ["baseline", "reference"], "baseline_strength": [entry]}))
    assert "had not converged" not in md


def test_the_report_carries_the_references_convergence_as_its_history_shows(with_reference):
    exp, report = with_reference
    hist = json.loads((exp.stage_dir("reference", 0) / "done.json").read_text())["history"]
    trend = still_rising(hist)  # three epochs: too short to judge, so the report says nothing either way
    assert trend is None and all(e["reference_converged"] is None for e in report["baseline_strength"])
    assert not [f for f in report["health"]["findings"] if f["code"] == "reference_not_converged"]


def test_the_dashboard_says_when_the_reference_had_not_converged():
    from streamlit.testing.v1 import AppTest

    from ui.strength import reference_converged, strength_frame, strength_state

    def page():
        from ui.strength import strength_banner

        row = {"dataset": "kvasir", "split": "intra", "n_cases": 6, "below_reference": False,
               "reference_converged": False, "dice": {"mean_diff": 0.145, "ci_low": 0.1, "ci_high": 0.19}}
        strength_banner({"methods": ["baseline", "reference"], "baseline_strength": [row]})

    at = AppTest.from_function(page).run()
    assert not at.exception
    info = "\n".join(i.value for i in at.info)
    assert "the reference had not converged" in info and "from below only" in info and not at.success
    row = {"dataset": "kvasir", "split": "intra", "below_reference": False, "reference_converged": False,
           "dice": {"mean_diff": 0.145, "ci_low": 0.1, "ci_high": 0.19}}
    res = {"methods": ["baseline", "reference"], "baseline_strength": [row]}
    assert strength_state(res) == "ok" and reference_converged(res) is False
    assert reference_converged({"baseline_strength": [dict(row, reference_converged=None)]}) is True  # older report
    assert strength_frame({3: res}, {3: "polyp"})["Verdict"].tolist() == [
        "not clearly below (reference not converged: a lower bound only)"]


# ------------------------------------------------------------------------------- augmentation: nnunet
def test_augmentation_nnunet_gives_every_method_the_references_augmentation(phantom_sets, tmp_path, monkeypatch):
    """``augmentation: nnunet`` trains the baseline (and every method) with the reference recipe's augmentation,
    the control for "does SIKD add to a baseline augmented as nnU-Net's"; it needs ``augment`` on."""
    from sikd_core.data import Augmenter

    with pytest.raises(SpecError, match="augmentation 'nnunet' needs augment: true"):
        _spec(phantom_sets, augment=False, augmentation="nnunet")
    with pytest.raises(SpecError, match="augmentation"):
        _spec(phantom_sets, augmentation="strong")
    calls: list[int] = []
    original = ReferenceAugmenter.__call__

    def counted(self, images, labels, generator):
        calls.append(images.shape[0])
        return original(self, images, labels, generator)

    monkeypatch.setattr(ReferenceAugmenter, "__call__", counted)
    weights = {}
    for kind in ("standard", "nnunet"):
        calls.clear()
        exp = ExperimentRun(_spec(phantom_sets, augmentation=kind, epochs=1, steps_per_epoch=2, methods=["baseline"]),
                            tmp_path / kind)
        assert type(shared_augmenter(True, kind)) is (ReferenceAugmenter if kind == "nnunet" else Augmenter)
        exp.run_stage("baseline", 0)
        assert len(calls) == (2 if kind == "nnunet" else 0), (kind, calls)  # one call per training step
        weights[kind] = load_bundle(exp.stage_dir("baseline", 0) / "model.pt").model.state_dict()
        assert exp.spec.to_json_dict()["augmentation"] == kind  # stored with the experiment's spec
    assert any(not torch.equal(weights["standard"][k], weights["nnunet"][k]) for k in weights["standard"])
    assert shared_augmenter(False, "standard") is None
