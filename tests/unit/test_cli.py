"""The `sikd` command on SYNTHETIC phantoms and on a few real polyp pairs (Kvasir-SEG, CVC-ClinicDB)."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import yaml
from PIL import Image

from sikd_core.cli import main
from tests.conftest import SHARED, copy_polyp_pairs, polyp_names

CVC = ["1.png", "50.png", "120.png", "200.png", "300.png", "400.png"]


@pytest.fixture(scope="module")
def polyp_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("polyp")
    kv = copy_polyp_pairs(root / "kvasir", "kvasir-seg", polyp_names("kvasir-seg", 12))
    cvc = copy_polyp_pairs(root / "cvc", "cvc-clinicdb", CVC)
    spec = {"name": "polyp-smoke", "train_dataset": str(kv), "eval_datasets": [str(cvc)],
            "network_kwargs": {"widths": [4, 8, 16]}, "image_size": 32, "epochs": 1, "batch_size": 4,
            "seeds": [0], "device": "cpu", "test_fraction": 0.25, "val_fraction": 0.17,
            "methods": ["baseline", "sikd", "reference"]}
    (root / "spec.yaml").write_text(yaml.safe_dump(spec))
    assert main(["run", str(root / "spec.yaml"), "--out", str(root / "run")]) == 0
    return root


def test_run_on_real_polyp_data(polyp_run, capsys):
    report = json.loads((polyp_run / "run" / "report.json").read_text())
    assert report["class_names"] == ["background", "foreground"]
    cross = [r for r in report["rows"] if r["split"] == "cross"]
    assert {r["dataset"] for r in cross} == {"cvc"} and all(r["n_cases"] == 6 for r in cross)
    # the reference recipe's rows and the baseline's strength against it, on both datasets
    assert {r["method"] for r in cross} == {"baseline", "sikd", "reference"}
    assert {(e["dataset"], e["split"]) for e in report["baseline_strength"]} == {("kvasir", "intra"), ("cvc", "cross")}
    assert all("baseline_strength" in c for c in report["comparisons"])
    assert "## Baseline strength" in (polyp_run / "run" / "report.md").read_text()
    cases = json.loads((polyp_run / "run" / "eval" / "cases.json").read_text())
    # Predictions are scored at each image's original size: CVC is 384x288, Kvasir varies.
    pred = Image.open(polyp_run / "run" / "eval" / "predictions" / "sikd" / "cvc" / "1.png")
    assert pred.size == (384, 288)
    kv_key = next(c["case"] for c in cases if c["dataset"] == "kvasir")
    kv_pred = Image.open(polyp_run / "run" / "eval" / "predictions" / "baseline" / "kvasir" / f"{kv_key}.png")
    assert kv_pred.size == Image.open(SHARED / "kvasir-seg" / "images" / f"{kv_key}.jpg").size


def test_predict_writes_masks_and_overlays(polyp_run, tmp_path, capsys):
    model = polyp_run / "run" / "seed_0" / "student" / "model.pt"
    kv0 = polyp_names("kvasir-seg", 1)[0]
    imgs = [str(SHARED / "cvc-clinicdb" / "images" / "7.png"), str(SHARED / "kvasir-seg" / "images" / kv0)]
    assert main(["predict", str(model), *imgs, "--out", str(tmp_path)]) == 0
    for p in imgs:
        stem = os.path.splitext(os.path.basename(p))[0]
        mask = np.asarray(Image.open(tmp_path / f"{stem}_mask.png"))
        assert mask.shape == np.asarray(Image.open(p)).shape[:2]
        assert set(np.unique(mask)) <= {0, 255}
        assert Image.open(tmp_path / f"{stem}_overlay.png").mode == "RGB"
    assert "foreground" in capsys.readouterr().out


def test_eval_model_on_dataset_and_rerun_experiment_eval(polyp_run, tmp_path, capsys):
    model = polyp_run / "run" / "seed_0" / "baseline" / "model.pt"
    assert main(["eval", str(model), str(polyp_run / "cvc"), "--out", str(tmp_path)]) == 0
    out = json.loads((tmp_path / "eval.json").read_text())
    assert out["rows"][0]["dataset"] == "cvc" and out["rows"][0]["n_cases"] == 6
    report = json.loads((polyp_run / "run" / "report.json").read_text())
    base_cross = next(r for r in report["rows"] if r["method"] == "baseline" and r["split"] == "cross")
    assert out["rows"][0]["dice"] == pytest.approx(base_cross["dice"], abs=1e-6)  # same model, same scores
    assert main(["eval", str(polyp_run / "run")]) == 0
    assert "| Baseline |" in capsys.readouterr().out


def test_phantoms_and_models(tmp_path, capsys):
    assert main(["phantoms", str(tmp_path / "p"), "--domain", "vendor_b", "-n", "3", "--size", "48"]) == 0
    assert len(list((tmp_path / "p" / "images").glob("*.png"))) == 3
    assert "SYNTHETIC" in capsys.readouterr().out
    assert main(["networks"]) == 0
    listed = capsys.readouterr().out
    assert "swin_unetr" in listed
    assert main(["models"]) == 0  # the verb's old name, kept as an alias
    assert capsys.readouterr().out == listed


@pytest.mark.parametrize(
    "spec,message",
    [
        ({"train_dataset": "x", "modle": "unet"}, "modle: unknown key"),
        ({"train_dataset": "x", "network": "vit"}, "unknown network 'vit'; known networks: attention_unet"),
        ({"train_dataset": "/does/not/exist"}, "dataset not found: /does/not/exist"),
    ],
)
def test_bad_specs_exit_2_with_message(tmp_path, capsys, spec, message):
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(spec))
    assert main(["run", str(tmp_path / "s.yaml"), "--out", str(tmp_path / "o")]) == 2
    assert message in capsys.readouterr().err


def test_mask_size_mismatch_names_the_file(tmp_path, capsys):
    ds = tmp_path / "ds"
    (ds / "images").mkdir(parents=True)
    (ds / "masks").mkdir()
    for i in range(6):
        Image.fromarray(np.zeros((20, 20), np.uint8)).save(ds / "images" / f"{i}.png")
        Image.fromarray(np.zeros((20 if i != 4 else 21, 20), np.uint8)).save(ds / "masks" / f"{i}.png")
    (tmp_path / "s.yaml").write_text(yaml.safe_dump({"train_dataset": str(ds), "epochs": 1}))
    assert main(["run", str(tmp_path / "s.yaml"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "masks/4.png" in err
