"""Training health: every finding fires on a constructed case and stays quiet on a healthy one.

Per-epoch findings are checked on constructed histories and on real (tiny) Trainer runs; cross-stage findings
on constructed per-case scores; the degenerate end-to-end run (lr 1: every pixel one class) on SYNTHETIC
phantoms through the pipeline, the report and the CLI.
"""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from sikd_core.errors import TrainingHealthError
from sikd_core.health import (
    evaluation_findings,
    health_markdown,
    health_section,
    mark_comparisons,
    trivial_dice,
)
from sikd_core.training import HealthMonitor, TrainConfig, Trainer
from sikd_core.training.health import (
    TEACHER_MIN_DICE,
    bad_epochs_needed,
    epoch_findings,
    teacher_finding,
)

SCHEMA_KEYS = {"code", "severity", "stage", "seed", "method", "epoch", "message", "values"}
NAMES = ["background", "RV", "myocardium", "LV"]


def epoch(e, loss=0.5, dice=0.8, pred=(0.7, 0.1, 0.1, 0.1), true=(0.7, 0.1, 0.1, 0.1)):
    return {"epoch": e, "loss": loss, "val_dice": dice, "val_pred_fraction": list(pred), "val_true_fraction": list(true)}


def findings(history, epochs=10):
    return epoch_findings(history, epochs=epochs, class_names=NAMES, stage="baseline", seed=0, method="baseline")


# ------------------------------------------------------------------------------------------ per epoch
def test_bad_epochs_needed_scales_with_the_run():
    assert [bad_epochs_needed(n) for n in (1, 2, 3, 10, 50, 100)] == [1, 2, 3, 3, 10, 20]


def test_healthy_history_is_quiet():
    hist = [epoch(e, loss=1.0 / e, dice=0.5 + 0.04 * e, pred=(0.69, 0.11, 0.1, 0.1)) for e in range(1, 11)]
    assert findings(hist) == []


def test_exploding_loss():
    hist = [epoch(1, loss=0.7), epoch(2, loss=0.4), epoch(3, loss=9.0)]
    (f,) = findings(hist)
    assert f["code"] == "exploding_loss" and f["epoch"] == 3 and f["severity"] == "warning"
    assert f["values"]["loss"] == 9.0 and set(f) == SCHEMA_KEYS
    assert findings([epoch(1, loss=0.7), epoch(2, loss=6.9)]) == []  # below 10x


def test_val_dice_zero_needs_consecutive_epochs():
    zero = [epoch(e, dice=0.0) for e in range(1, 4)]
    codes = [f["code"] for f in findings(zero)]
    assert codes == ["val_dice_zero"]
    f = findings(zero)[0]
    assert f["epoch"] == 3 and f["values"]["epochs"] == 3 and f["severity"] == "error"
    assert findings([epoch(1, dice=0.0), epoch(2, dice=0.0), epoch(3, dice=0.3)]) == []


def test_collapsed_prediction_never_predicted_class():
    """The 4-class phantom case: the student never predicts class 1 (RV)."""
    hist = [epoch(e, pred=(0.75, 0.0, 0.13, 0.12)) for e in range(1, 5)]
    (f,) = findings(hist)
    assert f["code"] == "collapsed_prediction" and f["values"]["class"] == "RV"
    assert f["values"]["kind"] == "never" and f["values"]["epochs"] == 4 and "never predicted RV" in f["message"]
    # a class absent from the ground truth may go unpredicted
    assert findings([epoch(e, pred=(0.8, 0.0, 0.1, 0.1), true=(0.8, 0.0, 0.1, 0.1)) for e in range(1, 5)]) == []


def test_collapsed_prediction_every_pixel_one_class():
    """The vessel case: every pixel predicted as vessel (the other classes' 'never' is implied, not repeated)."""
    hist = [epoch(e, dice=0.2, pred=(0.0, 1.0), true=(0.9, 0.1)) for e in range(1, 4)]
    fs = epoch_findings(hist, epochs=3, class_names=["background", "vessel"], stage="teacher", seed=1, method="sikd")
    assert [(f["code"], f["values"]["kind"], f["values"]["class"]) for f in fs] == [
        ("collapsed_prediction", "always", "vessel")]
    assert fs[0]["stage"] == "teacher" and fs[0]["seed"] == 1 and fs[0]["method"] == "sikd"


def test_teacher_finding_only_for_near_perfect_inputs():
    f = teacher_finding(0.5, teacher_input="class_mean", seed=0, epoch=7)
    assert f["code"] == "teacher_not_learned" and f["values"]["threshold"] == TEACHER_MIN_DICE and f["epoch"] == 7
    assert teacher_finding(0.5, teacher_input="label_map", seed=0, epoch=1) is not None
    assert teacher_finding(0.5, teacher_input="image", seed=0, epoch=1) is None  # the ablation is not expected to be
    assert teacher_finding(0.95, teacher_input="class_mean", seed=0, epoch=1) is None


# ------------------------------------------------------------------------------------------ real trainer
def threshold_data(n=16, size=16, seed=0):
    """Foreground = bright pixels: a 1x1 convolution learns it in a few steps."""
    g = torch.Generator().manual_seed(seed)
    labels = (torch.rand(n, size, size, generator=g) > 0.6).long()
    images = (0.2 + 0.6 * labels.float() + 0.05 * torch.randn(n, size, size, generator=g)).clamp(0, 1)
    return images.unsqueeze(1), labels


class Constant(nn.Module):
    """Predicts class ``k`` everywhere (a 1x1 conv with a huge bias; a tiny lr keeps it so)."""

    def __init__(self, k: int, classes: int = 2):
        super().__init__()
        self.conv = nn.Conv2d(1, classes, 1)
        with torch.no_grad():
            self.conv.weight.zero_()
            self.conv.bias.fill_(0.0)
            self.conv.bias[k] = 50.0

    def forward(self, x):
        return self.conv(x)


def run(net, *, epochs=3, lr=0.1, monitor=None, data=None, stage="baseline", **cfg):
    data = data or threshold_data()
    train, val = (data[0][:12], data[1][:12]), (data[0][12:], data[1][12:])
    config = TrainConfig(epochs=epochs, batch_size=4, lr=lr, device="cpu", checkpoint_interval_s=0, amp=False, **cfg)
    t = Trainer(net, train, val, config, num_classes=2, stage=stage, meta={"class_names": ["background", "fg"]},
                callbacks=[monitor or HealthMonitor(method="baseline")])
    return t, t.fit()


def test_validation_reports_predicted_and_true_fractions():
    t, r = run(Constant(1), epochs=1, lr=1e-9)
    h = r.history[0]
    assert h["val_pred_fraction"] == [0.0, 1.0]
    assert h["val_true_fraction"][1] == pytest.approx(float(t.val[1].float().mean()))


def test_healthy_trainer_run_is_quiet():
    torch.manual_seed(0)
    t, r = run(nn.Conv2d(1, 2, 1), epochs=4, lr=0.1)
    assert r.best_score > 0.9, r.history
    assert r.health == [] and t.state.health == []


def test_constant_model_collapses_and_stop_raises():
    t, r = run(Constant(1), epochs=3, lr=1e-9)
    assert [f["code"] for f in r.health] == ["collapsed_prediction"]
    f = r.health[0]
    assert set(f) == SCHEMA_KEYS and f["values"]["kind"] == "always" and f["epoch"] == 3
    assert f["message"] in r.warnings  # the old string channel carries the message
    with pytest.raises(TrainingHealthError, match="every pixel is one class.*on_unhealthy: stop"):
        run(Constant(1), epochs=3, lr=1e-9, monitor=HealthMonitor("stop", method="baseline"))
    t, r = run(Constant(0), epochs=3, lr=1e-9)
    assert sorted(f["code"] for f in r.health) == ["collapsed_prediction", "val_dice_zero"]


def test_nonfinite_loss_is_a_finding_and_stops():
    images, labels = threshold_data()
    images[0, 0, 0, 0] = float("nan")
    torch.manual_seed(0)
    seen = []

    class Spy(HealthMonitor):
        def on_warning(self, trainer, message):
            seen.append(list(trainer.state.health))

    with pytest.raises(TrainingHealthError, match="loss became nan"):
        run(nn.Conv2d(1, 2, 1), data=(images, labels), monitor=Spy(), steps_per_epoch=3)
    assert seen and seen[-1][-1]["code"] == "nonfinite_loss" and seen[-1][-1]["severity"] == "error"


def test_monitor_flags_a_teacher_that_did_not_learn():
    t, r = run(Constant(0), epochs=1, lr=1e-9, stage="teacher",
               monitor=HealthMonitor(method="sikd", teacher_input="class_mean"))
    codes = [f["code"] for f in r.health]
    assert "teacher_not_learned" in codes and all(f["stage"] == "teacher" for f in r.health)
    assert any("did not learn" in w for w in r.warnings)


# ------------------------------------------------------------------------------------------ cross-stage
def case(method, seed, name, dice, split="intra", dataset="a", digest=None, gt=(0.3,)):
    return {"method": method, "seed": seed, "dataset": dataset, "split": split, "case": name, "dice": dice,
            "hd95": 1.0, "per_class": {"dice": [dice], "hd95": [1.0]}, "gt_fraction": list(gt),
            "pred_digest": digest or f"{method}{name}"}


def test_trivial_dice():
    fg, bg = trivial_dice([0.5, 0.0])
    assert fg == pytest.approx((2 * 0.5 / 1.5 + 0.0) / 2) and bg == 0.5


def test_healthy_cases_are_quiet():
    cases = [case(m, 0, f"c{i}", 0.8 + 0.01 * i + (0.02 if m == "sikd" else 0)) for m in ("baseline", "sikd")
             for i in range(4)]
    cases += [case(m, 0, f"x{i}", 0.7, split="cross", dataset="b", gt=(0.2,)) for m in ("baseline", "sikd")
              for i in range(3)]
    cases[-1]["dice"] = 0.71
    records = {("baseline", 0): {"best_val_dice": 0.8}, ("student", 0): {"best_val_dice": 0.82}}
    assert evaluation_findings(cases, records) == []


def test_student_equals_baseline_on_predictions_or_scores():
    cases = [case(m, 0, f"c{i}", 0.5, digest=f"d{i}") for m in ("baseline", "sikd") for i in range(3)]
    (f,) = evaluation_findings(cases, {})
    assert f["code"] == "student_equals_baseline" and f["values"] == {"cases": 3, "basis": "predictions"}
    assert f["stage"] == "student" and f["method"] == "sikd" and f["severity"] == "error"
    cases = [case(m, 0, f"c{i}", 0.5 + 0.1 * i) for m in ("baseline", "sikd") for i in range(3)]
    (f,) = evaluation_findings(cases, {})
    assert f["values"]["basis"] == "scores"


def test_student_below_baseline():
    cases = [case("baseline", 1, f"c{i}", 0.8 + 0.01 * i) for i in range(3)]
    cases += [case("sikd", 1, f"c{i}", 0.6 + 0.01 * i) for i in range(3)]
    (f,) = evaluation_findings(cases, {})
    assert f["code"] == "student_below_baseline" and f["seed"] == 1
    assert f["values"]["basis"] == "intra test Dice" and f["values"]["gap"] == pytest.approx(0.2)
    # close on intra but far below on validation
    cases = [case(m, 0, f"c{i}", 0.8 + 0.01 * i + (0.005 if m == "sikd" else 0)) for m in ("baseline", "sikd")
             for i in range(3)]
    (f,) = evaluation_findings(cases, {("baseline", 0): {"best_val_dice": 0.9}, ("student", 0): {"best_val_dice": 0.7}})
    assert f["code"] == "student_below_baseline" and f["values"]["basis"] == "best validation Dice"


def test_cross_at_chance():
    # all-foreground Dice on a half-foreground image is 2*0.5/1.5 = 0.667: a model at 0.6 is at chance
    cases = [case("baseline", 0, f"x{i}", 0.6, split="cross", dataset="b", gt=(0.5,)) for i in range(3)]
    cases += [case("baseline", 0, f"y{i}", 0.9, split="cross", dataset="c", gt=(0.5,)) for i in range(3)]
    (f,) = evaluation_findings(cases, {})
    assert f["code"] == "cross_at_chance" and f["values"]["dataset"] == "b" and f["stage"] == "baseline"
    assert f["values"]["chance_dice"] == pytest.approx(2 / 3)


def test_health_section_and_comparison_marks():
    findings = [
        {"code": "cross_at_chance", "severity": "warning", "stage": "baseline", "seed": 0, "method": "baseline",
         "epoch": None, "message": "m", "values": {"dataset": "b"}},
        {"code": "collapsed_prediction", "severity": "error", "stage": "teacher", "seed": 1, "method": "sikd",
         "epoch": 3, "message": "teacher collapsed", "values": {}},
    ]
    models = [(m, s) for m in ("baseline", "sikd") for s in (0, 1)]
    h = health_section(findings, models)
    assert h["status"] == "unhealthy" and h["findings"] == findings
    assert h["models"] == {"baseline/0": "unhealthy", "baseline/1": "healthy", "sikd/0": "healthy",
                           "sikd/1": "unhealthy"}
    comps = [{"dataset": "a", "split": "intra", "a": "sikd", "b": "baseline"},
             {"dataset": "b", "split": "cross", "a": "sikd", "b": "baseline"}]
    mark_comparisons(comps, h)
    assert comps[0]["unhealthy_models"] == ["sikd/1"]
    assert comps[1]["unhealthy_models"] == ["baseline/0", "sikd/1"]
    assert health_section([], models) == {"status": "healthy", "findings": [],
                                          "models": {f"{m}/{s}": "healthy" for m, s in models}}
    md = "\n".join(health_markdown(h))
    assert "**UNHEALTHY** (2 findings; models baseline/0, sikd/1)" in md and "`collapsed_prediction`" in md
    assert "All checks passed" in "\n".join(health_markdown(health_section([], models)))



def test_a_student_inherits_its_teachers_findings():
    """An X+sikd student (and the SIKD student) distilled from an unlearned teacher is unhealthy; the methods
    that learn without the teacher are not; the teacher's seed decides which students."""
    teacher = {"code": "teacher_not_learned", "severity": "warning", "stage": "teacher", "seed": 0,
               "method": "sikd", "epoch": 2, "message": "teacher: best validation Dice 0.2", "values": {}}
    models = [(m, s) for m in ("baseline", "sikd", "gin", "gin+sikd", "maxstyle+sikd", "sdm") for s in (0, 1)]
    h = health_section([teacher], models)
    bad = sorted(k for k, v in h["models"].items() if v == "unhealthy")
    assert bad == ["gin+sikd/0", "maxstyle+sikd/0", "sikd/0"]
    from sikd_core.health import model_findings

    assert model_findings([teacher], [("gin+sikd", 0), ("gin", 0)]) == {"gin+sikd/0": [teacher], "gin/0": []}
    comps = [{"dataset": "a", "split": "intra", "method": "gin+sikd", "reference": "gin"},
             {"dataset": "a", "split": "intra", "method": "sdm", "reference": "baseline"}]
    mark_comparisons(comps, h)
    assert comps[0]["unhealthy_models"] == ["gin+sikd/0"] and comps[1]["unhealthy_models"] == []
    # a finding code nobody knows yet is carried like any other
    new = {**teacher, "code": "some_future_check", "stage": "sdm", "method": "sdm", "seed": 1}
    assert health_section([new], models)["models"]["sdm/1"] == "unhealthy"


# ------------------------------------------------------------------------------------------ end to end
@pytest.fixture(scope="module")
def degenerate(phantom_sets, tmp_path_factory):
    """lr 1 with Adam: every network predicts one class everywhere (SYNTHETIC phantoms, tiny U-Net)."""
    from sikd_core.pipeline import ExperimentRun
    from sikd_core.spec import parse_spec

    spec = parse_spec(dict(name="degenerate", train_dataset=str(phantom_sets["vendor_a"]),
                           eval_datasets=[str(phantom_sets["vendor_b"])], network_kwargs={"widths": [4, 8]},
                           image_size=32, epochs=2, steps_per_epoch=2, batch_size=4, lr=1.0, seeds=[0],
                           device="cpu", feature_maps=0, save_predictions=False, augment=False,
                           student_head_init="random"))  # the student collapses to one class everywhere
    work = tmp_path_factory.mktemp("degenerate")
    ExperimentRun(spec, work).run()
    return work


def test_degenerate_run_reports_its_health(degenerate):
    report = json.loads((degenerate / "report.json").read_text())
    h = report["health"]
    assert h["status"] == "unhealthy" and h["models"] == {"baseline/0": "unhealthy", "sikd/0": "unhealthy"}
    codes = {f["code"] for f in h["findings"]}
    assert {"collapsed_prediction", "val_dice_zero", "teacher_not_learned", "cross_at_chance"} <= codes
    assert all(set(f) == SCHEMA_KEYS for f in h["findings"])
    assert all(c["unhealthy_models"] == ["baseline/0", "sikd/0"] for c in report["comparisons"])
    for stage in ("baseline", "teacher", "student"):
        rec = json.loads((degenerate / "seed_0" / stage / "done.json").read_text())
        assert rec["health"] and {f["message"] for f in rec["health"]} <= set(rec["warnings"])
    md = (degenerate / "report.md").read_text()
    assert md.index("## Training health") < md.index("## Scores")
    assert "**UNHEALTHY**" in md and "| ⚠ vendor_a (unhealthy: baseline/0, sikd/0) |" in md


def test_cli_stops_on_unhealthy(phantom_sets, tmp_path, capsys):
    from sikd_core.cli import main

    spec = tmp_path / "spec.yaml"
    spec.write_text(json.dumps(dict(name="stop", train_dataset=str(phantom_sets["vendor_a"]), methods=["baseline"],
                                    network_kwargs={"widths": [4, 8]}, image_size=32, epochs=2, steps_per_epoch=2,
                                    batch_size=4, lr=1.0, device="cpu", augment=False, on_unhealthy="stop")))
    assert main(["run", str(spec), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "error: baseline:" in err and "on_unhealthy: stop" in err
    assert not (tmp_path / "out" / "seed_0" / "baseline" / "done.json").exists()
