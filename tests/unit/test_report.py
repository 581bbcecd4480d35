from __future__ import annotations

import math

import numpy as np
import pytest

from sikd_core.report import (
    aggregate_rows,
    bootstrap_ci,
    paired_comparisons,
    render_markdown,
    summarise,
    wilcoxon_p,
)


def case(method, seed, dataset, split, name, dice, hd95):
    return {"method": method, "seed": seed, "dataset": dataset, "split": split, "case": name, "dice": dice,
            "iou": dice / (2 - dice), "hd95": hd95, "hd": hd95 * 1.5,
            "per_class": {"dice": [dice], "iou": [dice / (2 - dice)], "hd95": [hd95], "hd": [hd95 * 1.5]}}


def test_bootstrap_ci_brackets_the_mean_and_narrows_with_n():
    rng = np.random.default_rng(1)
    small, large = rng.normal(0.1, 0.2, 20), rng.normal(0.1, 0.2, 2000)
    lo_s, hi_s = bootstrap_ci(small)
    lo_l, hi_l = bootstrap_ci(large)
    assert lo_s < small.mean() < hi_s and lo_l < large.mean() < hi_l
    assert (hi_l - lo_l) < (hi_s - lo_s) / 5
    assert bootstrap_ci(small) == bootstrap_ci(small)  # seeded: reproducible
    assert all(math.isnan(v) for v in bootstrap_ci(np.array([])))


def test_wilcoxon_p():
    assert wilcoxon_p(np.zeros(10)) == 1.0
    assert math.isnan(wilcoxon_p(np.array([0.1])))
    assert wilcoxon_p(np.linspace(0.01, 0.2, 30)) < 1e-5
    assert wilcoxon_p(np.array([0.1, -0.1, 0.2, -0.2, 0.05, -0.05])) > 0.5


def test_rows_summary_and_pairing_over_seeds():
    cases = []
    for seed in (0, 1):
        for i in range(5):
            cases.append(case("baseline", seed, "A", "intra", f"c{i}", 0.6 + 0.01 * i, 10.0))
            cases.append(case("sikd", seed, "A", "intra", f"c{i}", 0.7 + 0.01 * i + 0.01 * seed, 8.0))
    rows = aggregate_rows(cases, ["background", "polyp"])
    assert len(rows) == 4 and all(r["n_cases"] == 5 for r in rows)
    sikd0 = next(r for r in rows if r["method"] == "sikd" and r["seed"] == 0)
    assert sikd0["dice"] == pytest.approx(0.72) and sikd0["per_class"]["polyp"]["hd95"] == 8.0
    summary = {s["method"]: s for s in summarise(rows)}
    assert summary["sikd"]["n_seeds"] == 2 and summary["sikd"]["dice_mean"] == pytest.approx(0.725)
    assert summary["sikd"]["dice_std"] == pytest.approx(np.std([0.72, 0.73], ddof=1))
    comp = paired_comparisons(cases)[0]
    assert comp["n_cases"] == 5 and comp["n_pairs"] == 10
    assert comp["dice"]["mean_diff"] == pytest.approx(0.105) and comp["dice"]["better"] == 5
    assert comp["hd95"]["mean_diff"] == pytest.approx(-2.0) and comp["hd95"]["better"] == 5


def test_paired_p_value_is_the_exact_two_sided_wilcoxon():
    """6 cases x 2 seeds, every case better with SIKD by a different amount: the exact two-sided signed-rank
    p-value is 2 / 2**6; with one case worse (the smallest difference) it is 4 / 2**6."""
    def cases_with(diffs):
        return [case(m, seed, "A", "intra", f"c{i}", 0.5 + (d if m == "sikd" else 0.0) + 0.01 * seed, 3.0)
                for i, d in enumerate(diffs) for seed in (0, 1) for m in ("baseline", "sikd")]

    up = paired_comparisons(cases_with([0.01, 0.02, 0.03, 0.04, 0.05, 0.06]))[0]
    assert up["n_cases"] == 6 and up["n_pairs"] == 12 and (up["dice"]["better"], up["dice"]["worse"]) == (6, 0)
    assert up["dice"]["p_value"] == pytest.approx(2 / 2**6)
    one_worse = paired_comparisons(cases_with([-0.01, 0.02, 0.03, 0.04, 0.05, 0.06]))[0]
    assert one_worse["dice"]["p_value"] == pytest.approx(4 / 2**6) and one_worse["dice"]["worse"] == 1
    assert up["hd95"]["p_value"] == 1.0  # identical HD95 everywhere: no difference, p = 1


def test_markdown_table_layout():
    cases = [case(m, 0, ds, sp, f"c{i}", d + 0.001 * i, 5.0)
             for m, d in (("baseline", 0.5), ("sikd", 0.6)) for ds, sp in (("A", "intra"), ("B", "cross"))
             for i in range(30)]
    rows = aggregate_rows(cases, ["background", "polyp"])
    report = {"spec": {"name": "t", "network": "unet", "network_kwargs": {}, "image_size": [64, 64], "epochs": 1,
                       "teacher_epochs": None, "batch_size": 2, "lr": 0.001, "loss": "ce", "alpha": 2.0,
                       "teacher_input": "class_mean", "seeds": [0]},
              "train_dataset": "A", "n_test_cases": 30, "class_names": ["background", "polyp"], "units": "px",
              "rows": rows, "summary": summarise(rows), "comparisons": paired_comparisons(cases), "stages": []}
    md = render_markdown(report)
    assert "| Method | A (intra) Dice | IoU | HD95 (px) | B (cross) Dice | IoU | HD95 (px) |" in md
    assert "| Δ SIKD − baseline | +0.100 |" in md
    assert "| <0.001 |" in md  # p-values below 0.001 are not printed as 0.000
