"""Evaluation reuse (sikd_core.score_reuse): per-case scores of a model already scored on the same data are taken
from the earlier evaluation, only what is new is computed, and the report equals a recomputation."""

from __future__ import annotations

import json
import shutil

import pytest

from sikd_core import score_reuse
from sikd_core.pipeline import ExperimentRun
from sikd_core.score_reuse import score_key
from sikd_core.spec import parse_spec

SETTINGS = {"image_size": [32, 32], "in_channels": 1, "num_classes": 2}
KEY = ("m" * 64, "d" * 64, "cross", ["a", "b"], SETTINGS)


@pytest.mark.parametrize("change", [
    {0: "n" * 64},  # another model (stage key)
    {1: "e" * 64},  # another dataset content
    {2: "intra"}, {3: ["a"]}, {3: ["b", "a"]},  # another split, other samples, another order
    {4: {**SETTINGS, "image_size": [48, 48]}}, {4: {**SETTINGS, "num_classes": 3}},
])
def test_a_score_key_changes_with_what_reaches_a_score(change):
    args = [change.get(i, v) for i, v in enumerate(KEY)]
    assert score_key(*args) != score_key(*KEY)


def test_a_score_key_changes_with_the_evaluation_code(monkeypatch):
    before = score_key(*KEY)
    assert score_key(*KEY) == before
    monkeypatch.setattr(score_reuse, "EVAL_CODE_VERSION", score_reuse.EVAL_CODE_VERSION + 1)
    assert score_key(*KEY) != before


NUMBERS = ("rows", "summary", "comparisons", "baseline_strength", "health", "stages", "units", "dataset_units")


def test_scores_of_reused_models_are_reused_and_the_report_equals_a_recomputation(phantom_sets, tmp_path):
    base = dict(name="e", train_dataset=str(phantom_sets["vendor_a"]), eval_datasets=[str(phantom_sets["vendor_b"])],
                image_size=32, epochs=1, network_kwargs={"widths": [4, 8]}, batch_size=4, device="cpu", feature_maps=1,
                save_predictions=True, methods=["baseline", "sikd"])
    root = tmp_path / "runs"

    def run(folder, **kw):
        return ExperimentRun(parse_spec({**base, **kw}), root / folder, reuse_roots=[root])

    first = run("a").run()
    assert first["reused_scores"] == []
    index = json.loads((root / "a/eval/scores.json").read_text())
    assert {(e["method"], e["split"]) for e in index["entries"]} == {
        (m, s) for m in ("baseline", "sikd") for s in ("intra", "cross")}
    # alpha differs: the baseline's scores (and masks) come from the first, the student's are computed
    second = run("b", alpha=0.5)
    report = second.run()
    origin = {"folder": str(root / "a")}
    assert sorted((r["method"], r["split"], r["dataset"]) for r in report["reused_scores"]) == [
        ("baseline", "cross", "vendor_b"), ("baseline", "intra", "vendor_a")]
    assert all(r["reused_from"] == origin for r in report["reused_scores"])
    masks = sorted((root / "b/eval/predictions/baseline").rglob("*.png"))
    assert masks and all(m.samefile(root / "a" / m.relative_to(root / "b")) for m in masks)
    assert not any(m.samefile(root / "a" / m.relative_to(root / "b"))
                   for m in (root / "b/eval/predictions/sikd").rglob("*.png"))
    assert report["overlays"] and (root / "b/eval/overlays").is_dir()
    cases = json.loads((root / "b/eval/cases.json").read_text())
    # the same evaluation computed from scratch (reuse off: nothing taken from elsewhere) gives the same report
    shutil.rmtree(root / "b/eval")
    again = ExperimentRun(parse_spec({**base, "alpha": 0.5, "reuse": False}), root / "b").evaluate()
    assert again["reused_scores"] == []
    assert {k: report[k] for k in NUMBERS} == {k: again[k] for k in NUMBERS}
    assert json.loads((root / "b/eval/cases.json").read_text()) == cases
    assert [m.samefile(root / "a" / m.relative_to(root / "b")) for m in masks] == [False] * len(masks)  # rewritten
    # everything identical (another name): every score is reused, from the experiment that computed it
    third = run("c", name="same again").run()
    assert sorted((r["method"], r["split"]) for r in third["reused_scores"]) == [
        (m, s) for m in ("baseline", "sikd") for s in ("cross", "intra")]
    assert all(r["reused_from"] == origin for r in third["reused_scores"])
    assert third["rows"] == first["rows"]
    # another cross dataset: its scores are computed, the intra ones reused
    fourth = run("d", eval_datasets=[str(phantom_sets["vendor_c"])]).run()
    assert sorted((r["method"], r["split"]) for r in fourth["reused_scores"]) == [
        ("baseline", "intra"), ("sikd", "intra")]
    # the same cross dataset's files elsewhere and under another name: the same content, reused
    shutil.copytree(phantom_sets["vendor_b"], tmp_path / "moved_b")
    fifth = run("e", eval_datasets=[str(tmp_path / "moved_b")]).run()
    assert sorted((r["method"], r["split"], r["dataset"]) for r in fifth["reused_scores"]) == [
        (m, s, d) for m in ("baseline", "sikd") for s, d in (("cross", "moved_b"), ("intra", "vendor_a"))]
    assert {r["dataset"] for r in fifth["rows"]} == {"vendor_a", "moved_b"}


def test_scores_are_computed_when_the_earlier_masks_are_gone_or_reuse_is_off(phantom_sets, tmp_path):
    base = dict(name="e", train_dataset=str(phantom_sets["vendor_a"]), image_size=32, epochs=1, feature_maps=0,
                network_kwargs={"widths": [4, 8]}, batch_size=4, device="cpu", methods=["baseline"])
    root = tmp_path / "runs"
    ExperimentRun(parse_spec({**base, "save_predictions": False}), root / "a", reuse_roots=[root]).run()
    # the first saved no masks; this one needs them for its overlays: computed
    need = ExperimentRun(parse_spec(base), root / "b", reuse_roots=[root]).run()
    assert need["reused_scores"] == [] and need["overlays"]
    off = ExperimentRun(parse_spec({**base, "save_predictions": False, "reuse": False}), root / "c",
                        reuse_roots=[root]).run()
    assert off["reused_scores"] == []
    later = ExperimentRun(parse_spec({**base, "save_predictions": False, "name": "x"}), root / "d",
                          reuse_roots=[root]).run()
    assert [r["method"] for r in later["reused_scores"]] == ["baseline"]


def test_the_message_says_what_was_reused_from_where():
    from sikd_core.reuse import reuse_message

    rows = [{"method": m, "seed": 0, "dataset": d, "split": s} for m in ("baseline", "sikd")
            for d, s in (("a", "intra"), ("b", "cross"))]

    def reused(*pairs):
        return [{"method": m, "seed": 0, "dataset": d, "split": s, "reused_from": o} for m, d, s, o in pairs]

    five, six = {"experiment": 5}, {"experiment": 6}
    assert reuse_message({"rows": rows, "reused_scores": []}) is None
    every = reused(*((m, d, s, five) for m in ("baseline", "sikd") for d, s in (("a", "intra"), ("b", "cross"))))
    assert reuse_message({"rows": rows, "reused_scores": every}) == "evaluation reused from experiment 5"
    assert reuse_message({"rows": rows, "reused_scores": every[:2] + reused(("sikd", "a", "intra", six),
                                                                            ("sikd", "b", "cross", six))}) == (
        "scores reused: baseline (seed 0) from experiment 5; sikd (seed 0) from experiment 6")
    assert reuse_message({"rows": rows, "reused_scores": reused(("baseline", "a", "intra", {"folder": "/x/a"}))}) == (
        "scores reused: baseline (seed 0) on a (intra) from /x/a; computed: sikd (seed 0)")
