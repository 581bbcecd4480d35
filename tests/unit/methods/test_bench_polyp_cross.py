"""bench/polyp_cross.py at a tiny size on the real polyp data: seeds trained side by side in sibling folders
combine into one report with every seed, their stages linked by key instead of retrained."""

from __future__ import annotations

import json
import re

import pytest

from tests.conftest import SHARED, load_bench

pytestmark = pytest.mark.slow(seconds=30)


def test_seeds_trained_apart_combine_without_training(tmp_path, capsys):
    data = SHARED.parent / "polyp"
    if not (data / "kvasir-seg" / "images").is_dir():
        pytest.fail(f"shared polyp data missing under {data}; set SIKD_SHARED_DATASETS")
    bench = load_bench("polyp_cross")
    from methods_cross import subset_folder  # (bench/ is on the path once a bench script is loaded)

    small = tmp_path / "data"  # seeded subsets (symlinks, same folder names): evaluation in seconds
    subset_folder(data / "kvasir-seg", small, 40)
    subset_folder(data / "cvc-clinicdb", small, 12)
    tiny = ["--data", str(small), "--size", "32", "--widths", "4", "8", "--epochs", "1", "--device", "cpu"]
    for seed in (0, 1):
        assert bench.main([*tiny, "--seeds", str(seed), "--out", str(tmp_path / f"seed{seed}")]) == 0
    capsys.readouterr()
    assert bench.main([*tiny, "--seeds", "0", "1", "--out", str(tmp_path / "all")]) == 0
    out = capsys.readouterr().out
    reused = [line for line in out.splitlines() if line.startswith("  reused from ")]
    assert len(reused) == 8 and not re.search(r"epoch +\d+/\d+ loss", out)  # 4 stages x 2 seeds, none trained
    assert sum(str(tmp_path / "seed0") in line for line in reused) == 4
    report = json.loads((tmp_path / "all" / "report.json").read_text())
    assert report["spec"]["seeds"] == [0, 1]
    assert {(r["method"], r["seed"]) for r in report["rows"]} == {(m, s) for m in ("baseline", "sikd", "reference")
                                                                   for s in (0, 1)}
    one = json.loads((tmp_path / "seed1" / "report.json").read_text())
    mine = {(r["method"], r["dataset"]): r["dice"] for r in report["rows"] if r["seed"] == 1}
    assert mine == {(r["method"], r["dataset"]): r["dice"] for r in one["rows"]}  # the same models, the same scores
