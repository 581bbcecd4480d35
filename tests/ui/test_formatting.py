"""The dashboard's data shaping (no API needed) and its boundary: ui/ imports neither sikd_core nor the DB."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from ui.compare_data import readable_spec, spec_differences
from ui.datasets_data import frames_warning
from ui.experiments_data import (
    experiment_eta,
    kind_progress,
    planned_epochs,
    queue_wait,
    smooth_eta,
    split_sizes,
)
from ui.formatting import comparison_pair, fmt_p
from ui.new_experiment_data import estimate_text, field_errors, parse_seeds, plan_choice
from ui.scores_data import (
    cases_long,
    cases_wide,
    comparisons_table,
    dataset_aliases,
    generalisation_frame,
    score_table,
    table_html,
    table_latex,
)

UI = Path(__file__).resolve().parents[2] / "ui"


def test_ui_talks_to_the_api_only():
    forbidden = ("sikd_core", "api", "worker", "sqlalchemy", "psycopg", "celery", "redis", "torch")
    found = []
    for path in sorted(UI.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            found += [f"{path.relative_to(UI)}: {n}" for n in names if n.split(".")[0] in forbidden]
    assert not found
    assert len(list((UI / "app_pages").glob("*.py"))) == 7  # the six pages and the sweep view


def summary(method, dataset, split, dice, hd95, n=2):
    return {"method": method, "dataset": dataset, "split": split, "n_seeds": n,
            "dice_mean": dice, "dice_std": 0.01, "iou_mean": dice / 2, "iou_std": 0.0,
            "hd95_mean": hd95, "hd95_std": 1.0,
            "per_class": {"LV": {"dice_mean": dice + 0.1, "dice_std": 0.0, "iou_mean": 0.5, "iou_std": 0.0,
                                 "hd95_mean": hd95 - 1, "hd95_std": 0.0}}}


def comparison(dataset, split, dice_ci, hd_ci, **names):
    return {"dataset": dataset, "split": split, "n_cases": 10, **names,
            "dice": {"mean_diff": sum(dice_ci) / 2, "ci_low": dice_ci[0], "ci_high": dice_ci[1], "p_value": 0.0004,
                     "better": 6, "worse": 3, "ties": 1},
            "hd95": {"mean_diff": sum(hd_ci) / 2, "ci_low": hd_ci[0], "ci_high": hd_ci[1], "p_value": 0.2}}


def test_score_table_rows_columns_and_delta_signs():
    s = [summary("baseline", "B", "cross", 0.50, 10.0), summary("sikd", "B", "cross", 0.40, 8.0),
         summary("baseline", "A", "intra", 0.80, 5.0), summary("sikd", "A", "intra", 0.85, 6.0)]
    text, signs = score_table(s, dataset_units={"B": "mm"})
    assert text.index.tolist() == ["Baseline", "SIKD", "Δ SIKD − Baseline"]
    assert text.columns.tolist() == [("A (intra)", "Dice"), ("A (intra)", "IoU"), ("A (intra)", "HD95 (px)"),
                                     ("B (cross)", "Dice"), ("B (cross)", "IoU"), ("B (cross)", "HD95 (mm)")]
    assert text.iloc[0].tolist()[:3] == ["0.800 ± 0.010", "0.400 ± 0.000", "5.00 ± 1.00"]
    assert text.iloc[2].tolist() == ["+0.050", "+0.025", "+1.00", "-0.100", "-0.050", "-2.00"]
    assert signs.abs().sum().sum() == 0  # no paired CIs: no difference is shown as demonstrated
    # A: Dice CI above 0 (better), HD95 CI includes 0 (not coloured although HD95 rose);
    # B: Dice CI below 0 (worse), HD95 CI below 0 (better); IoU has no CI: never coloured
    comps = [comparison("A", "intra", (0.01, 0.09), (-0.5, 2.5)), comparison("B", "cross", (-0.2, -0.01), (-3, -1))]
    text, signs = score_table(s, dataset_units={"B": "mm"}, comparisons=comps)
    assert signs.iloc[2].tolist() == [1, 0, 0, -1, 0, 1]
    assert signs.iloc[:2].abs().sum().sum() == 0
    per_class, _ = score_table(s, class_name="LV")
    assert per_class.iloc[1, 0] == "0.950 ± 0.000"
    html = table_html(text, signs, css_class="t")
    assert html.count("colspan='3'") == 2 and html.count("#1a7f37") == 2 and html.count("#cf222e") == 1


def test_score_table_any_number_of_methods():
    s = [summary(m, "A", "intra", d, 5.0, n=1) for m, d in (("baseline", 0.7), ("gin", 0.75), ("gin+sikd", 0.8),
                                                            ("sikd", 0.78))]
    comps = [comparison("A", "intra", (0.02, 0.1), (-1, 1), method="gin+sikd", reference="gin"),
             comparison("A", "intra", (-0.01, 0.1), (-1, 1), method="sikd", reference="baseline")]
    text, signs = score_table(s, comparisons=comps)
    assert text.index.tolist() == ["Baseline", "SIKD", "GIN", "GIN+SIKD", "Δ GIN+SIKD − GIN", "Δ SIKD − Baseline"]
    assert text.loc["Δ GIN+SIKD − GIN"].iloc[0] == "+0.050" and signs.loc["Δ GIN+SIKD − GIN"].iloc[0] == 1
    assert signs.loc["Δ SIKD − Baseline"].iloc[0] == 0  # its CI includes 0
    # without comparisons: every method against the baseline
    assert score_table(s)[0].index.tolist()[4:] == ["Δ SIKD − Baseline", "Δ GIN − Baseline", "Δ GIN+SIKD − Baseline"]
    # old reports: comparisons with a/b (or nothing) mean SIKD − baseline
    assert comparison_pair({"a": "sikd", "b": "baseline"}) == ("sikd", "baseline") == comparison_pair({})


def test_comparisons_table_p_values_and_ci_colours():
    comps = [comparison("kvasir-seg-very-long-name", "intra", (0.01, 0.09), (-0.5, 2.5)),
             comparison("B", "cross", (-0.2, 0.01), (-3, -1), method="maxstyle", reference="baseline")]
    comps[1]["dice"]["p_value"] = 0.0123
    text, signs = comparisons_table(comps, aliases={"kvasir-seg-very-long-name": "kvasir-seg…"})
    assert text["Comparison"].tolist() == ["SIKD − Baseline", "MaxStyle − Baseline"]
    assert text["Dataset"].tolist() == ["kvasir-seg…", "B"]
    assert text["p (Dice)"].tolist() == ["<0.001", "0.012"]
    assert signs["ΔDice"].tolist() == [1, 0] and signs["ΔHD95 (px)"].tolist() == [0, 1]
    assert fmt_p(0.0009999) == "<0.001" and fmt_p(0.001) == "0.001" and fmt_p(None) == "–"
    assert "p Holm (Dice)" not in text.columns
    comps[0]["p_holm"] = 0.0002
    assert comparisons_table(comps)[0]["p Holm (Dice)"].tolist() == ["<0.001", "–"]


def test_per_case_frames():
    def case(method, seed, key, dice, per):
        return {"method": method, "seed": seed, "dataset": "A", "split": "intra", "case": key, "keys": [key],
                "dice": dice, "iou": dice / 2, "hd95": 3.0, "hd": 4.0,
                "per_class": {"dice": per, "iou": per, "hd95": [3.0, 3.0], "hd": [4.0, 4.0]}}

    raw = [case("baseline", 0, "c1", 0.5, [0.4, 0.6]), case("baseline", 1, "c1", 0.7, [0.6, 0.8]),
           case("sikd", 0, "c1", 0.9, [0.8, 1.0]), case("sikd", 1, "c1", 0.9, [0.8, 1.0]),
           case("baseline", 0, "c2", 0.2, [0.2, 0.2]), case("sikd", 0, "c2", 0.1, [0.1, 0.1])]
    long = cases_long(raw, ["background", "RV", "LV"])
    assert len(long) == 4  # (case, method), seeds averaged
    c1 = long[(long["Case"] == "c1") & (long["Method"] == "baseline")].iloc[0]
    assert c1["Dice"] == pytest.approx(0.6) and c1["Dice RV"] == pytest.approx(0.5) and c1["Dice LV"] == 0.7
    wide = cases_wide(long, [("sikd", "baseline")])
    assert wide["Key"].tolist() == ["c1", "c2"]
    assert wide["ΔDice SIKD − Baseline"].round(3).tolist() == [0.3, -0.1]
    assert "Dice LV · SIKD" in wide.columns and "HD95 · Baseline" in wide.columns
    gen = generalisation_frame([summary("baseline", "A", "intra", 0.8, 5), summary("baseline", "B", "cross", 0.5, 9),
                                summary("baseline", "C", "cross", 0.3, 9), summary("sikd", "A", "intra", 0.8, 5)])
    assert gen.set_index("Method").loc["Baseline"].tolist() == pytest.approx([0.8, 0.4, 0.4])
    assert gen.set_index("Method").loc["SIKD"].isna().tolist() == [False, True, True]


def test_latex_table_escapes_and_groups():
    s = [summary("baseline", "a_b", "intra", 0.8, 5.0), summary("sikd", "a_b", "intra", 0.85, 6.0)]
    tex = table_latex(score_table(s)[0])
    assert r"\multicolumn{3}{c}{a\_b (intra)}" in tex and r"0.800 $\pm$ 0.010" in tex
    assert r"$\Delta$ SIKD $-$ Baseline" in tex and tex.count(r"\\") == 5 and "\\toprule" in tex
    assert dataset_aliases(["short", "x" * 30, "x" * 29]) == {"short": "short", "x" * 30: "x" * 17 + "…",
                                                               "x" * 29: "x" * 17 + "…2"}


def test_score_table_single_seed_and_single_method():
    text, signs = score_table([summary("sikd", "A", "intra", 0.8, 5.0, n=1)])
    assert text.index.tolist() == ["SIKD"] and text.iloc[0, 0] == "0.800"


def test_eta_adds_waiting_stages_at_the_running_rate():
    def st(kind, status, epoch=0, epochs=10, eta=None):
        return {"kind": kind, "seed": 0, "status": status, "epoch": epoch, "epochs": epochs, "eta_seconds": eta,
                "progress": epoch / epochs if epochs else 0}

    exp = {"status": "running", "stages": [st("baseline", "succeeded", 10), st("teacher", "running", 6, 10, 40.0),
                                           st("student", "pending"), st("evaluation", "pending", 0, 0)]}
    assert experiment_eta(exp) == pytest.approx(40.0 + 10 * 10)  # 10 s/epoch, 10 student epochs to go
    exp["stages"][1]["eta_seconds"] = None
    assert experiment_eta(exp) is None  # no estimate yet
    assert experiment_eta({**exp, "status": "succeeded"}) is None
    assert kind_progress(exp["stages"]) == {"baseline": 1.0, "teacher": 0.6, "student": 0.0, "evaluation": 0.0}


def test_spec_differences():
    a = {"name": "x", "alpha": 1.0, "seeds": [0], "network_kwargs": {"widths": [4, 8]}, "loss": "ce"}
    b = {"name": "y", "alpha": 2.0, "seeds": [0], "network_kwargs": {"widths": [4, 8]}, "loss": "ce"}
    c = {"name": "z", "alpha": 1.0, "seeds": [0], "network_kwargs": {"widths": [8, 16]}, "loss": "ce"}
    assert spec_differences([a, b]) == ["alpha"]
    assert spec_differences([a, b, c]) == ["alpha", "network_kwargs"]
    assert spec_differences([a, dict(a, name="other")]) == []
    assert spec_differences([a]) == []


def test_field_errors_read_the_apis_error_items():
    """The 422's ``errors`` (``{loc, msg, type}``) give each field its messages; no text is parsed back."""
    body = {"detail": "invalid experiment spec:\n  ...", "errors": [
        {"loc": ["body", "seeds"], "msg": "duplicates in [0, 0]", "type": "value_error"},
        {"loc": ["body", "image_size", 0], "msg": "Input should be a valid integer", "type": "int_type"},
        {"loc": ["body", "seeds"], "msg": "second", "type": "value_error"},
        {"loc": ["body"], "msg": "the experiment is too large to run", "type": "value_error"}]}
    fields, general = field_errors(body)
    assert fields == {"seeds": ["duplicates in [0, 0]", "second"], "image_size": ["Input should be a valid integer"]}
    assert general == ["the experiment is too large to run"]
    assert field_errors({"detail": "you have 3 experiments queued"}) == ({}, ["you have 3 experiments queued"])
    assert field_errors(None, "unknown dataset id(s): 7") == ({}, ["unknown dataset id(s): 7"])


def test_parse_seeds():
    assert parse_seeds("0, 1 2;3") == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="'x' is not a whole number"):
        parse_seeds("0, x")
    with pytest.raises(ValueError, match="at least one seed"):
        parse_seeds("  ")


def test_readable_spec_names_datasets():
    spec = {"train_dataset": "3", "eval_datasets": [5, "1"], "seeds": [0, 1], "network_kwargs": {"widths": [8, 16]},
            "alpha": 2.0}
    out = readable_spec(spec, {"3": "kvasir-seg", "5": "cvc-clinicdb"})
    assert out == {"train_dataset": "kvasir-seg", "eval_datasets": "cvc-clinicdb, #1", "seeds": "0, 1",
                   "network_kwargs": "widths=[8, 16]", "alpha": 2.0}
    assert readable_spec({"train_dataset": ["3", "5"]}, {"3": "kvasir-seg"}) == {"train_dataset": "kvasir-seg + #5"}


def stage(kind, status, epoch=0, epochs=10, eta=None, start=None, end=None, seed=0):
    return {"kind": kind, "seed": seed, "status": status, "epoch": epoch, "epochs": epochs, "eta_seconds": eta,
            "progress": epoch / epochs if epochs else 0, "started_at": start, "finished_at": end}


def test_eta_of_waiting_stages_uses_the_finished_stages_of_their_kind():
    t0 = "2026-01-01T00:00:00+00:00"
    exp = {"id": 2, "status": "running", "stages": [
        stage("baseline", "succeeded", 10, 10, start=t0, end="2026-01-01T00:01:40+00:00"),  # 10 s/epoch
        stage("teacher", "succeeded", 10, 10, start=t0, end="2026-01-01T00:00:50+00:00"),   # 5 s/epoch
        stage("student", "running", 2, 10, eta=200.0),                                       # 25 s/epoch
        stage("baseline", "queued", seed=1), stage("teacher", "queued", seed=1), stage("student", "pending", seed=1),
        stage("evaluation", "pending", 0, 0)]}
    # the running student's own ETA, then seed 1: baseline at 10, teacher at 5, student at any finished (7.5)
    assert experiment_eta(exp) == pytest.approx(200 + 100 + 50 + 75)
    # between stages (nothing running) the finished ones still give an estimate (the old code gave none)
    exp["stages"][2] = stage("student", "succeeded", 10, 10, start=t0, end="2026-01-01T00:03:20+00:00")
    assert experiment_eta(exp) == pytest.approx(100 + 50 + 200)
    queued = {"id": 3, "status": "queued", "stages": []}
    assert queue_wait(queued, [exp, queued], workers=2) == pytest.approx(350 / 2)
    assert queue_wait({**queued, "id": 1}, [exp], workers=1) == 0  # submitted before: nothing ahead


def test_smoothed_eta_does_not_jump():
    s = smooth_eta(None, 1800.0, now=0.0)
    assert s == (1800.0, 0.0)
    s = smooth_eta(s, 555.0, now=40.0)  # a new estimate far off: moves 30 % of the way, after the countdown
    assert s[0] == pytest.approx(1760 + 0.3 * (555 - 1760))
    assert smooth_eta(s, None, now=50.0)[0] == pytest.approx(s[0] - 10)
    assert smooth_eta(None, None, now=0.0) is None


def test_plan_helpers():
    assert split_sizes(1000, 0.1, 0.2) == {"train": 700, "val": 100, "test": 200}
    assert split_sizes(3, 0.0, 0.2) == {"train": 2, "val": 0, "test": 1}
    # the API's plan: one teacher per seed shared by every distilled method (88 epochs where the old rule, a
    # teacher per distilled method, counted 96)
    plan = [{"stage": st, "seed": seed, "epochs": 4 if st == "teacher" else 10}
            for seed in (0, 1) for st in ("baseline", "gin", "teacher", "student", "gin+sikd")]
    assert planned_epochs(plan) == 2 * (4 * 10 + 4) == 88


def test_estimate_and_plan_texts_say_where_the_figures_come_from():
    plan = [{"stage": "baseline", "seed": 0}]
    unknown = {"seconds": None, "training_seconds": None, "evaluation_seconds": None, "planned_epochs": 5,
               "plan": plan, "stages": [{"basis": "not measured yet (being timed on a worker)"}],
               "timing": "unet 32x32 batch 4 is queued for timing since 10:00:00 UTC"}
    text = estimate_text(unknown)
    assert text.startswith("**Estimated run time:** not known yet: 1 training stages of 5 epochs in all")
    assert "(unet 32x32 batch 4 is queued for timing since 10:00:00 UTC)" in text and "about" not in text
    known = {**unknown, "seconds": 90.0, "training_seconds": 60.0, "evaluation_seconds": 30.0, "timing": None,
             "stages": [{"basis": "timed on worker w1 (NVIDIA H100)"}], "evaluation_basis": "measured"}
    assert "about 1 min 30 s" in estimate_text(known) and "timed on worker w1 (NVIDIA H100)" in estimate_text(known)
    spec = {"image_size": [64, 64], "batch_size": 8, "epochs": 5, "network": "unet", "lr": 1e-3,
            "network_kwargs": {"widths": [16, 32]}}
    choice = plan_choice({"spec": spec, "reasons": {}, "fingerprint": {"name": "d", "pairs": 10, "median_size": [64, 64]},
                          "device": {"kind": "cuda", "name": "H100", "memory_gib": 79.1, "source": "worker gpu0@box"}})
    assert "for H100 (79.1 GiB): worker gpu0@box" in choice["description"]


def test_frames_warning():
    def ds(keys, n=100, groups=0, cases=None, synthetic=False):
        return {"num_pairs": n, "synthetic": synthetic, "samples": [{"key": k} for k in keys],
                "stats": {"groups": groups, "cases": n if cases is None else cases}}

    frames = ds(["1", "21", "41", "61", "99"])
    assert "may be video frames" in frames_warning(frames) and "1…99" in frames_warning(frames)
    assert frames_warning(ds(["1", "21", "99"], groups=19)) is None  # grouped (CVC-ClinicDB's videos)
    assert "may be video frames" in frames_warning(ds(["1", "21", "99"], groups=100))  # one group per case: none
    assert frames_warning(ds(["1", "21", "99"], synthetic=True)) is None
    assert frames_warning(ds(["cju0qkwl35piu0993l0dewei2", "cju0roawvklrq0799vmjorwfv"])) is None  # hashes
    assert frames_warning(ds(["1", "5000", "90000"])) is None  # sparse ids, not frames
    assert frames_warning(ds(["1", "2"], cases=50)) is None  # several images per case: volumes or patients
    # the range is the API's, over every key, not the thumbnails' (a folder lists "1", "10", "100", ... "99")
    shown = ds(["1", "165", "232", "3", "367", "433", "5", "569", "99"], n=612)
    assert "1…569" in frames_warning(shown)  # what the thumbnails alone would say
    shown["numbering"] = {"first": 1, "last": 612, "numbered": 612}
    assert "the 612 images are numbered 1…612" in frames_warning(shown)
    shown["numbering"] = {"first": 1, "last": 612, "numbered": 300}  # half the keys are not numbers
    assert frames_warning(shown) is None
    from ui.datasets_data import duplicates_warning

    assert duplicates_warning({"duplicates": []}) is None
    assert "**#3 vendor_a** holds exactly these files" in duplicates_warning({"duplicates": [{"id": 3, "name": "vendor_a"}]})
