"""The dashboard's data shaping (no API needed) and its boundary: ui/ imports neither sikd_core nor the DB."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from ui.data import (
    experiment_eta,
    kind_progress,
    parse_seeds,
    score_table,
    spec_differences,
    spec_errors,
    table_html,
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
    assert len(list((UI / "app_pages").glob("*.py"))) == 6


def summary(method, dataset, split, dice, hd95, n=2):
    return {"method": method, "dataset": dataset, "split": split, "n_seeds": n,
            "dice_mean": dice, "dice_std": 0.01, "iou_mean": dice / 2, "iou_std": 0.0,
            "hd95_mean": hd95, "hd95_std": 1.0,
            "per_class": {"LV": {"dice_mean": dice + 0.1, "dice_std": 0.0, "iou_mean": 0.5, "iou_std": 0.0,
                                 "hd95_mean": hd95 - 1, "hd95_std": 0.0}}}


def test_score_table_rows_columns_and_delta_signs():
    s = [summary("baseline", "B", "cross", 0.50, 10.0), summary("sikd", "B", "cross", 0.40, 8.0),
         summary("baseline", "A", "intra", 0.80, 5.0), summary("sikd", "A", "intra", 0.85, 6.0)]
    text, signs = score_table(s, dataset_units={"B": "mm"})
    assert text.index.tolist() == ["Baseline", "SIKD", "Δ SIKD − baseline"]
    assert text.columns.tolist() == [("A (intra)", "Dice"), ("A (intra)", "IoU"), ("A (intra)", "HD95 (px)"),
                                     ("B (cross)", "Dice"), ("B (cross)", "IoU"), ("B (cross)", "HD95 (mm)")]
    assert text.iloc[0].tolist()[:3] == ["0.800 ± 0.010", "0.400 ± 0.000", "5.00 ± 1.00"]
    assert text.iloc[2].tolist() == ["+0.050", "+0.025", "+1.00", "-0.100", "-0.050", "-2.00"]
    # A: Dice up (better), IoU up (better), HD95 up (worse); B: Dice down, IoU down (worse), HD95 down (better)
    assert signs.iloc[2].tolist() == [1, 1, -1, -1, -1, 1]
    assert signs.iloc[:2].abs().sum().sum() == 0
    per_class, _ = score_table(s, class_name="LV")
    assert per_class.iloc[1, 0] == "0.950 ± 0.000"
    html = table_html(text, signs, css_class="t")
    assert html.count("colspan='3'") == 2 and html.count("#1a7f37") == 3 and html.count("#cf222e") == 3


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
    a = {"name": "x", "alpha": 1.0, "seeds": [0], "model_kwargs": {"widths": [4, 8]}, "loss": "ce"}
    b = {"name": "y", "alpha": 2.0, "seeds": [0], "model_kwargs": {"widths": [4, 8]}, "loss": "ce"}
    c = {"name": "z", "alpha": 1.0, "seeds": [0], "model_kwargs": {"widths": [8, 16]}, "loss": "ce"}
    assert spec_differences([a, b]) == ["alpha"]
    assert spec_differences([a, b, c]) == ["alpha", "model_kwargs"]
    assert spec_differences([a, dict(a, name="other")]) == []
    assert spec_differences([a]) == []


def test_spec_errors_from_the_api_wording():
    detail = ("invalid experiment spec:\n  seeds: Value error, duplicates in [0, 0]\n  device: Value error, device must"
              " be auto, cpu, cuda, cuda:N or mps; got 'tpu'\n  (spec): Value error, val_fraction + test_fraction must"
              " leave data to train on (< 0.95)\n  image_size.0: Input should be a valid integer")
    fields, general = spec_errors(detail)
    assert fields == {"seeds": ["duplicates in [0, 0]"],
                      "device": ["device must be auto, cpu, cuda, cuda:N or mps; got 'tpu'"],
                      "image_size": ["Input should be a valid integer"]}
    assert general == ["val_fraction + test_fraction must leave data to train on (< 0.95)"]
    assert spec_errors("unknown dataset id(s): 7") == ({}, ["unknown dataset id(s): 7"])
    assert spec_errors([{"loc": ["body", "epochs"], "msg": "bad"}]) == ({"epochs": ["bad"]}, [])


def test_parse_seeds():
    assert parse_seeds("0, 1 2;3") == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="'x' is not a whole number"):
        parse_seeds("0, x")
    with pytest.raises(ValueError, match="at least one seed"):
        parse_seeds("  ")
