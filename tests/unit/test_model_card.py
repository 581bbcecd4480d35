"""Model cards from a finished experiment (SYNTHETIC phantoms, tiny network), and MLflow tracking of
every stage into a local file store."""

from __future__ import annotations

import json
import shutil

import pytest

from sikd_core.cli import main
from sikd_core.export.card import (
    UNKNOWN_TERMS,
    build_card,
    card_for_bundle,
    content_hash,
    data_terms,
    dataset_facts,
    render_card_markdown,
)
from sikd_core.inference import load_bundle
from sikd_core.pipeline import ExperimentRun
from tests.unit.test_pipeline import tiny_spec


@pytest.fixture(scope="module")
def finished(phantom_sets, tmp_path_factory):
    exp = ExperimentRun(tiny_spec(phantom_sets, eval_datasets=[str(phantom_sets["vendor_b"])]),
                     tmp_path_factory.mktemp("card-exp"))
    return exp, exp.run()


def test_card_of_a_student(finished, phantom_sets):
    exp, report = finished
    card = card_for_bundle(exp.stage_dir("student", 0) / "model.pt")
    assert card["card"] == "sikd-model-card/1" and card["name"] == "tiny sikd seed 0"
    assert card["model"]["network"] == "unet" and card["model"]["network_kwargs"] == {"widths": [4, 8, 16]}
    assert card["method"]["name"] == "sikd" and card["method"]["alpha"] == 2.0 and card["seed"] == 0
    assert card["spec"] == exp.spec.to_json_dict()
    ds = {d["name"]: d for d in card["datasets"]}
    assert ds["vendor_a"]["role"] == "train" and ds["vendor_a"]["n_pairs"] == 20
    assert ds["vendor_b"]["role"] == "eval" and ds["vendor_b"]["n_pairs"] == 6
    assert ds["vendor_a"]["content_hash"] == content_hash(phantom_sets["vendor_a"]).lower()
    assert ds["vendor_a"]["content_hash"] != ds["vendor_b"]["content_hash"]
    assert all(d["data_research_only"] is False and "SYNTHETIC" in d["terms"] for d in card["datasets"])
    scores = {(s["split"], s["dataset"]): s for s in card["scores"]}
    assert set(scores) == {("intra", "vendor_a"), ("cross", "vendor_b")}
    rows = {(r["split"], r["dataset"]): r for r in report["rows"] if r["method"] == "sikd" and r["seed"] == 0}
    for key, s in scores.items():
        assert s["n_cases"] == rows[key]["n_cases"] and s["dice"] == pytest.approx(rows[key]["dice"])
        lo, hi = s["dice_ci"]
        assert lo - 1e-9 <= s["dice"] <= hi + 1e-9  # equal values: the bootstrap may differ by rounding
    assert {c["dataset"] for c in card["comparisons"]} == {"vendor_a", "vendor_b"}
    record = exp.stage_record("student", 0)
    assert card["warnings"] == record["warnings"]
    assert card["research_only"] is False and "Dong" in card["citation"]["text"]
    assert card["intended_use"].startswith("Segmentation of RV, myocardium, LV")
    md = render_card_markdown(card)
    for text in ("# Model card: tiny sikd seed 0", ds["vendor_a"]["content_hash"][:23], "| vendor_b | cross | 6 |",
                 "## Intended use", "## Limits", "@article{dong2025sikd", "SIKD minus baseline"):
        assert text in md
    json.dumps(card, allow_nan=False)  # strict JSON


def test_card_of_a_baseline_before_evaluation(finished, tmp_path):
    exp, _ = finished
    info = load_bundle(exp.stage_dir("baseline", 0) / "model.pt").info
    card = build_card(info, datasets=[dataset_facts("kvasir-seg", "train", None, n_pairs=500),
                                      dataset_facts("my-clinic", "eval", None)])
    assert card["method"]["name"] == "baseline" and card["method"]["alpha"] == 0.0
    assert card["scores"] == [] and card["evaluated"] is False and "Not evaluated yet." in render_card_markdown(card)
    assert card["research_only"] is True and card["limitations"][0].startswith("RESEARCH ONLY")
    terms = {t["dataset"]: t for t in card["data_terms"]}
    assert terms["my-clinic"]["terms"] == UNKNOWN_TERMS and terms["my-clinic"]["research_only"] is None
    assert any("my-clinic" in x for x in card["limitations"])


def test_card_health_is_readable_text_and_a_student_carries_its_teachers_findings():
    """The card's health section is sentences, never the raw ``{"status": ...}`` JSON, and never "no training
    warnings" next to findings; an X+sikd student of an unlearned teacher is unhealthy; a finding code the card
    does not know is shown like any other."""
    teacher = {"code": "teacher_not_learned", "severity": "warning", "stage": "teacher", "seed": 0, "method": "sikd",
               "epoch": 4, "message": "teacher: best validation Dice 0.210 on its class_mean images", "values": {}}
    future = {**teacher, "code": "some_future_check", "stage": "gin+sikd", "method": "gin+sikd",
              "message": "a check added later"}
    report = {"health": {"status": "unhealthy", "findings": [teacher, future], "models": {}}}
    info = {"method": "gin+sikd", "stage": "gin+sikd", "seed": 0, "spec": {"name": "x"}, "class_names": ["bg", "polyp"]}
    card = build_card(info, report=report, record={"warnings": [teacher["message"], "lr was lowered"]})
    assert card["health"] == {"status": "unhealthy", "findings": [teacher, future]}
    md = render_card_markdown(card)
    section = md[md.index("## Health"):md.index("## Intended use")]
    assert "**UNHEALTHY** (2 findings)" in section
    assert "`teacher_not_learned` (stage teacher, seed 0, epoch 4): teacher: best validation Dice 0.210" in section
    assert "`some_future_check`" in section and "a check added later" in section
    assert "- lr was lowered" in section and section.count("best validation Dice 0.210") == 1
    assert "no training warnings" not in section and '{"' not in section and "'status'" not in section
    # a baseline of the same experiment inherits nothing; before evaluation the stage records decide
    base = build_card({**info, "method": "baseline", "stage": "baseline"}, report=report)
    assert base["health"]["status"] == "healthy" and "Healthy: no health finding" in render_card_markdown(base)
    early = build_card(info, record={"health": [], "warnings": []}, teacher_record={"health": [teacher]})
    assert early["health"]["findings"] == [teacher]


def test_content_hash_and_terms(phantom_sets, tmp_path):
    copy = shutil.copytree(phantom_sets["vendor_b"], tmp_path / "elsewhere")
    assert content_hash(copy) == content_hash(phantom_sets["vendor_b"])
    (copy / ".sikd-cache").mkdir()  # hidden folders (caches) do not count
    (copy / ".sikd-cache" / "x").write_bytes(b"1")
    assert content_hash(copy) == content_hash(phantom_sets["vendor_b"])
    img = sorted((copy / "images").iterdir())[0]
    img.write_bytes(img.read_bytes() + b"\0")
    assert content_hash(copy) != content_hash(phantom_sets["vendor_b"])
    assert data_terms("Kvasir-SEG")["research_only"] is True
    assert data_terms("cvc-clinicdb")["research_only"] is True
    (tmp_path / "lic").mkdir()
    (tmp_path / "lic" / "LICENSE.txt").write_text("Permission is hereby granted, cite the article.")
    assert "Permission is hereby granted" in data_terms("bus-bra", tmp_path / "lic")["terms"]
    assert data_terms("whatever")["terms"] == UNKNOWN_TERMS


def test_export_bundle_carries_the_card(finished, tmp_path):
    exp, _ = finished
    out = tmp_path / "bundle"
    assert main(["export", str(exp.stage_dir("student", 0) / "model.pt"), "--out", str(out)]) == 0
    card = json.loads((out / "model_card.json").read_text())
    assert card["name"] == "tiny sikd seed 0" and card["scores"]
    assert "# Model card: tiny sikd seed 0" in (out / "model_card.md").read_text()


def test_mlflow_logs_every_stage(phantom_sets, tmp_path, monkeypatch):
    """`sikd run --mlflow file:...`: params, per-epoch metrics and artifacts of every stage and the evaluation."""
    mlflow = pytest.importorskip("mlflow")
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 wants an explicit opt-in for file stores
    store = f"file:{tmp_path / 'mlruns'}"
    spec = tiny_spec(phantom_sets, name="tracked", eval_datasets=[str(phantom_sets["vendor_b"])], epochs=2)
    (tmp_path / "spec.json").write_text(json.dumps(spec.to_json_dict()))
    assert main(["run", str(tmp_path / "spec.json"), "--out", str(tmp_path / "run"), "--mlflow", store]) == 0
    client = mlflow.tracking.MlflowClient(tracking_uri=store)
    exp = client.get_experiment_by_name("tracked")
    runs = {r.info.run_name: r for r in client.search_runs([exp.experiment_id])}
    assert set(runs) == {"tracked baseline seed 0", "tracked teacher seed 0", "tracked student seed 0",
                         "tracked evaluation"}
    for name in ("tracked baseline seed 0", "tracked student seed 0", "tracked teacher seed 0"):
        run = runs[name]
        assert run.info.status == "FINISHED"
        assert run.data.params["spec.name"] == "tracked" and run.data.params["train.epochs"] == "2"
        assert run.data.params["seed"] == "0" and run.data.params["spec.network_kwargs.widths"] == "[4, 8, 16]"
        history = client.get_metric_history(run.info.run_id, "loss")
        assert [m.step for m in history] == [1, 2]
        assert len(client.get_metric_history(run.info.run_id, "val_dice")) == 2
        top = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert {"done.json", "model_card"} <= top
        card_files = {a.path for a in client.list_artifacts(run.info.run_id, "model_card")}
        assert card_files == {"model_card/model_card.json", "model_card/model_card.md"}
    assert len(client.get_metric_history(runs["tracked student seed 0"].info.run_id, "kd_loss")) == 2
    for name in ("tracked baseline seed 0", "tracked student seed 0"):
        exported = {a.path for a in client.list_artifacts(runs[name].info.run_id, "export_onnx")}
        assert {"export_onnx/model.onnx", "export_onnx/predict.py", "export_onnx/recipe.json"} <= exported
    ev = runs["tracked evaluation"]
    assert {"report.json", "report.md", "cases.json", "model_cards"} <= {a.path for a in client.list_artifacts(ev.info.run_id)}
    assert "intra/vendor_a/sikd/dice" in ev.data.metrics and "cross/vendor_b/delta_dice" in ev.data.metrics
