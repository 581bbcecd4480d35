"""The experiment pipeline end to end on SYNTHETIC phantoms (tiny network, a few epochs)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from scipy.stats import wilcoxon

from sikd_core.errors import SIKDError, SpecError, TrainingCancelled
from sikd_core.inference import load_bundle
from sikd_core.pipeline import ExperimentRun
from sikd_core.spec import parse_spec
from sikd_core.training import Callback


def tiny_spec(sets, **kw):
    base = dict(name="tiny", train_dataset=str(sets["vendor_a"]),
                eval_datasets=[str(sets["vendor_b"]), str(sets["vendor_c"])], network="unet",
                network_kwargs={"widths": [4, 8, 16]}, image_size=32, epochs=2, batch_size=4, lr=5e-3,
                seeds=[0], methods=["baseline", "sikd"], device="cpu", feature_maps=1)
    base.update(kw)
    return parse_spec(base)


class EvalProgress(Callback):
    def __init__(self):
        self.events = []

    def on_eval_progress(self, fraction, message):
        self.events.append((fraction, message))


EVAL_PROGRESS = EvalProgress()  # filled by the `finished` fixture's evaluation


@pytest.fixture(scope="module")
def finished(phantom_sets, tmp_path_factory):
    work = tmp_path_factory.mktemp("exp")
    exp = ExperimentRun(tiny_spec(phantom_sets, seeds=[0, 1]), work)
    report = exp.run(eval_callbacks=[EVAL_PROGRESS])
    return exp, report


def test_evaluation_reports_progress_through_the_callback_list(finished):
    fractions = [f for f, _ in EVAL_PROGRESS.events]
    assert len(fractions) >= 3 and fractions == sorted(fractions) and fractions[-1] == 1.0
    assert 0 < fractions[0] < 1 and any(m.startswith("evaluated ") for _, m in EVAL_PROGRESS.events)


def test_report_rows_cover_methods_seeds_and_datasets(finished):
    exp, report = finished
    rows = report["rows"]
    keys = {(r["method"], r["seed"], r["dataset"], r["split"]) for r in rows}
    assert keys == {(m, s, d, sp) for m in ("baseline", "sikd") for s in (0, 1)
                    for d, sp in (("vendor_a", "intra"), ("vendor_b", "cross"), ("vendor_c", "cross"))}
    for r in rows:
        assert set(r["per_class"]) == {"RV", "myocardium", "LV"}
        assert 0 <= r["dice"] <= 1 and 0 <= r["iou"] <= r["dice"] + 1e-9 and r["hd95"] >= 0
        assert set(r["per_class"]["LV"]) == {"dice", "iou", "hd95", "hd"}
    on_disk = json.loads((exp.workdir / "report.json").read_text())
    assert on_disk["rows"] == json.loads(json.dumps(rows))
    intra = [r for r in rows if r["split"] == "intra"]
    assert all(r["n_cases"] == report["n_test_cases"] > 0 for r in intra)
    split_sizes = json.loads((exp.workdir / "splits.json").read_text())["sizes"]
    assert split_sizes["test"] == report["n_test_cases"] and sum(split_sizes.values()) == 20


def test_paired_comparison_and_markdown(finished):
    exp, report = finished
    comps = {c["dataset"]: c for c in report["comparisons"]}
    assert set(comps) == {"vendor_a", "vendor_b", "vendor_c"}
    c = comps["vendor_b"]
    assert c["n_cases"] == 6 and c["n_pairs"] == 12  # 6 cases x 2 seeds
    assert c["dice"]["ci_low"] <= c["dice"]["mean_diff"] <= c["dice"]["ci_high"]
    # 6 cases with finite Dice: the Wilcoxon p-value is defined, so it must be a number in [0, 1], and the
    # one computed here from the per-case scores on disk (sikd - baseline, averaged over the seeds).
    cases = json.loads((exp.workdir / "eval" / "cases.json").read_text())
    per = {}
    for row in cases:
        if row["dataset"] == "vendor_b":
            per.setdefault(row["case"], {}).setdefault(row["seed"], {})[row["method"]] = row["dice"]
    d = np.array([np.mean([s["sikd"] - s["baseline"] for s in seeds.values()]) for seeds in per.values()])
    assert d.shape == (6,) and np.isfinite(d).all()
    expected = 1.0 if not d.any() else wilcoxon(d, zero_method="wilcox", alternative="two-sided").pvalue
    assert math.isfinite(c["dice"]["p_value"]) and 0 <= c["dice"]["p_value"] <= 1
    assert c["dice"]["p_value"] == pytest.approx(expected, rel=1e-9)
    assert c["dice"]["mean_diff"] == pytest.approx(d.mean(), abs=1e-12)
    assert (c["dice"]["better"], c["dice"]["worse"]) == (int((d > 0).sum()), int((d < 0).sum()))
    md = (exp.workdir / "report.md").read_text()
    assert "| Baseline |" in md and "| SIKD |" in md and "Δ SIKD − baseline" in md
    assert "vendor_a (intra) Dice" in md and "vendor_c (cross) Dice" in md and " ± " in md
    assert "### myocardium" in md and "Wilcoxon" in md


def test_stages_write_bundles_and_evidence(finished):
    exp, report = finished
    for stage in ("baseline", "teacher", "student"):
        rec = exp.stage_record(stage, 0)
        assert rec["epochs"] == 2 and len(rec["history"]) == 2
        assert not (exp.stage_dir(stage, 0) / "latest.pt").exists()
    teacher = load_bundle(exp.stage_dir("teacher", 0) / "model.pt")
    student = load_bundle(exp.stage_dir("student", 0) / "model.pt")
    assert teacher.model.skip_connections is False and student.model.skip_connections is True
    assert student.info["method"] == "sikd" and teacher.info["teacher_input"] == "class_mean"
    assert (exp.workdir / "eval" / "cases.json").exists()
    preds = list((exp.workdir / "eval" / "predictions" / "sikd" / "vendor_b").glob("*.png"))
    assert len(preds) == 6
    assert report["overlays"] and all((exp.workdir / "eval" / o["file"]).exists() for o in report["overlays"])
    assert {o["dataset"] for o in report["overlays"]} == {"vendor_a", "vendor_b", "vendor_c"}
    assert any("sikd_better" in o["categories"] for o in report["overlays"])
    feats = report["features"]
    assert feats[0]["panels"] == ["image", "teacher_input", "baseline", "teacher", "sikd"]
    lo, hi = feats[0]["scale"]  # one colour scale shared by the three feature maps
    assert 0 <= lo < hi
    assert all((exp.workdir / "eval" / f["file"]).exists() for f in feats)


def test_baseline_and_student_start_from_same_weights(phantom_sets, tmp_path):
    exp = ExperimentRun(tiny_spec(phantom_sets), tmp_path)
    a, b = exp.build_model("baseline", 3), exp.build_model("student", 3)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))


def test_rerun_is_idempotent(finished):
    exp, _ = finished
    before = (exp.stage_dir("student", 0) / "done.json").read_text()
    again = ExperimentRun(exp.spec, exp.workdir)
    rec = again.run_stage("student", 0)
    assert (exp.stage_dir("student", 0) / "done.json").read_text() == before
    assert rec["seconds"] == json.loads(before)["seconds"]


class CancelAfter(Callback):
    def __init__(self, steps):
        self.steps = steps

    def should_stop(self, trainer):
        return trainer.state.global_step >= self.steps


def test_interrupted_stage_resumes_to_the_same_model(phantom_sets, tmp_path):
    spec = tiny_spec(phantom_sets, methods=["baseline"], epochs=3)
    ref = ExperimentRun(spec, tmp_path / "ref")
    ref.run_stage("baseline", 0)
    exp = ExperimentRun(spec, tmp_path / "cut", checkpoint_interval_s=0)
    with pytest.raises(TrainingCancelled):
        exp.run_stage("baseline", 0, [CancelAfter(5)])  # epoch 2 of 3 (4 steps per epoch)
    assert (exp.stage_dir("baseline", 0) / "latest.pt").exists() and not exp.is_done("baseline", 0)
    resumed = ExperimentRun(spec, tmp_path / "cut").run_stage("baseline", 0)
    a = load_bundle(ref.stage_dir("baseline", 0) / "model.pt").model.state_dict()
    b = load_bundle(exp.stage_dir("baseline", 0) / "model.pt").model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert resumed["best_val_dice"] == ref.stage_record("baseline", 0)["best_val_dice"]


def test_student_needs_teacher_and_eval_needs_all(phantom_sets, tmp_path):
    exp = ExperimentRun(tiny_spec(phantom_sets), tmp_path)
    with pytest.raises(SIKDError, match="teacher of seed 0 must be trained"):
        exp.run_stage("student", 0)
    with pytest.raises(SIKDError, match="missing: baseline \\(seed 0\\), teacher"):
        exp.evaluate()
    with pytest.raises(SpecError, match="not part of this experiment"):
        exp.run_stage("baseline", 5)


def test_workdir_refuses_a_different_spec(phantom_sets, tmp_path):
    ExperimentRun(tiny_spec(phantom_sets), tmp_path)
    with pytest.raises(SpecError, match="changed: alpha"):
        ExperimentRun(tiny_spec(phantom_sets, alpha=1.0), tmp_path)


def test_missing_dataset_is_explained(phantom_sets, tmp_path):
    exp = ExperimentRun(tiny_spec(phantom_sets, train_dataset=str(tmp_path / "nope")), tmp_path / "w")
    with pytest.raises(SpecError, match="dataset not found"):
        exp.run_stage("baseline", 0)


@pytest.mark.parametrize("teacher_input", ["image", "label_map"])
def test_teacher_input_ablations(phantom_sets, tmp_path, teacher_input):
    spec = tiny_spec(phantom_sets, methods=["sikd"], epochs=1, teacher_input=teacher_input, eval_datasets=[])
    exp = ExperimentRun(spec, tmp_path)
    report = exp.run()
    assert {r["method"] for r in report["rows"]} == {"sikd"} and report["comparisons"] == []
    t = load_bundle(exp.stage_dir("teacher", 0) / "model.pt")
    assert t.info["teacher_input"] == teacher_input
