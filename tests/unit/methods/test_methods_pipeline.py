"""End to end: all seven methods and a two-dataset training list through `sikd run` (tiny phantoms, 1 epoch)."""

from __future__ import annotations

import json

import yaml

from sikd_core.cli import main
from sikd_core.report import comparison_pairs

SEVEN = ["baseline", "sikd", "sdm", "gin", "gin+sikd", "maxstyle", "maxstyle+sikd"]


def test_sikd_run_with_seven_methods_and_two_training_sources(phantom_sets, tmp_path):
    spec = dict(name="seven", train_dataset=[str(phantom_sets["vendor_a"]), str(phantom_sets["vendor_b"])],
                eval_datasets=[str(phantom_sets["vendor_c"])], network="unet", network_kwargs={"widths": [4, 8, 16]},
                image_size=32, epochs=1, batch_size=4, lr=5e-3, seeds=[0], methods=SEVEN, device="cpu",
                feature_maps=0, val_fraction=0.2, test_fraction=0.34)
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    out = tmp_path / "out"
    assert main(["run", str(path), "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["methods"] == SEVEN
    assert report["train_datasets"] == ["vendor_a", "vendor_b"] and report["train_dataset"] == "vendor_a + vendor_b"
    keys = {(r["method"], r["seed"], r["dataset"], r["split"]) for r in report["rows"]}
    assert keys == {(m, 0, d, sp) for m in SEVEN
                    for d, sp in (("vendor_a", "intra"), ("vendor_b", "intra"), ("vendor_c", "cross"))}
    pairs = {(c["method"], c["reference"], c["dataset"]) for c in report["comparisons"]}
    expected_pairs = comparison_pairs(SEVEN)
    assert ("gin+sikd", "gin") in expected_pairs and ("maxstyle+sikd", "maxstyle") in expected_pairs
    assert len(expected_pairs) == 8
    assert pairs == {(a, b, d) for a, b in expected_pairs for d in ("vendor_a", "vendor_b", "vendor_c")}
    for c in report["comparisons"]:
        assert c["p_holm"] == c["dice"]["p_holm"]
        assert c["p_holm"] != c["p_holm"] or c["p_holm"] >= c["dice"]["p_value"] - 1e-12
    # one shared teacher per seed; every distilled method has its own student stage
    stages = [s["stage"] for s in report["stages"]]
    assert stages.count("teacher") == 1 and set(stages) == {"baseline", "sdm", "gin", "maxstyle", "teacher", "student",
                                                          "gin+sikd", "maxstyle+sikd"}
    splits = json.loads((out / "splits.json").read_text())
    assert [s["dataset"] for s in splits["sources"]] == ["vendor_a", "vendor_b"]
    md = (out / "report.md").read_text()
    assert "| GIN + SIKD |" in md and "| MaxStyle |" in md and "vendor_b (intra) Dice" in md
    assert "GIN + SIKD − GIN" in md and "p (Holm)" in md
