"""bench/reference_budget.py in its smoke mode: real images, two tiny budgets; each row carries the baseline's
paired difference to the reference, both trends and the reference's convergence as the report judges it."""

from __future__ import annotations

import json
import re

import pytest

from tests.conftest import SHARED, load_bench

pytestmark = pytest.mark.slow(seconds=20)


def test_smoke_mode_trains_baseline_and_reference_at_each_budget(tmp_path, capsys):
    data = SHARED.parent
    for rel in ("polyp/kvasir-seg", "breast-us/busi"):
        if not (data / rel / "images").is_dir():
            pytest.fail(f"shared data missing under {data / rel}; set SIKD_SHARED_DATASETS")
    bench = load_bench("reference_budget")
    assert bench.SETTINGS["epochs"] == [20, 50, 100] and bench.SETTINGS["lr"] == 5e-3
    out = tmp_path / "rb"
    assert bench.main(["--data", str(data), "--out", str(out), "--smoke", "--device", "cpu"]) == 0
    rows = json.loads((out / "results.json").read_text())["rows"]
    assert [(r["dataset"], r["steps"]) for r in rows] == [("kvasir-seg", 8), ("kvasir-seg", 16), ("busi", 8),
                                                         ("busi", 16)]
    for r in rows:
        report = json.loads((out / r["dataset"] / f"e{r['epochs']}" / "report.json").read_text())
        strength = [b for b in report["baseline_strength"] if b["split"] == "intra"][0]
        assert r["baseline_minus_reference"]["mean_diff"] == pytest.approx(strength["dice"]["mean_diff"])
        assert r["reference_converged"] == strength["reference_converged"]
        assert r["reference_converged"] == ("reference_not_converged" not in r["findings"])
        assert len(r["trend_gain"]["baseline"]) == len(r["trend_gain"]["reference"]) == 1
        assert set(r["health"]) == {"baseline/0", "reference/0"}
    text = (out / "tables.md").read_text()
    assert text.count("| kvasir-seg |") == 2 and text.count("| busi |") == 2
    assert "SMOKE" in capsys.readouterr().out
    # the same folder again resumes: nothing is retrained
    assert bench.main(["--data", str(data), "--out", str(out), "--smoke", "--device", "cpu"]) == 0
    assert "steps/baseline" not in capsys.readouterr().out
    # other settings in the same folder are refused
    assert bench.main(["--data", str(data), "--out", str(out), "--smoke", "--device", "cpu", "--epochs", "3"]) == 2
    # a longer budget added in a new folder for one dataset: the finished budgets are linked from the first
    more = tmp_path / "rb-more"
    assert bench.main(["--data", str(data), "--out", str(more), "--smoke", "--device", "cpu", "--epochs", "4", "8",
                       "12", "--reuse", str(out), "--datasets", "busi"]) == 0
    printed = capsys.readouterr().out
    assert printed.count("reused from") == 4 and "kvasir-seg" not in printed  # 2 budgets x (baseline, reference)
    trained = {m.group(1) for m in re.finditer(r"/(\d+) steps/\w+/0 epoch", printed)}
    assert trained == {"24"}
    rows = json.loads((more / "results.json").read_text())["rows"]
    assert [(r["dataset"], r["steps"]) for r in rows] == [("busi", 8), ("busi", 16), ("busi", 24)]
