"""The DICOM round trip on real images (BUSI, tests/dicom_data.py): DICOM series + SEG in, train (tiny), predict a
series with ``sikd predict`` and with the exported ONNX bundle's ``predict.py``, a DICOM SEG out that highdicom
reads back and that references the input instances; every score equals the NIfTI twin's."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import highdicom as hd
import numpy as np
import pytest

from sikd_core.cli import main as sikd
from sikd_core.data.dicom_series import read_one_series
from sikd_core.data.io import read_volume
from sikd_core.inference import load_bundle, predict_volume
from sikd_core.metrics import case_metrics
from sikd_core.pipeline import ExperimentRun
from sikd_core.spec import parse_spec
from tests import dicom_data as dd

pytestmark = pytest.mark.slow(seconds=60)  # two tiny trainings and an ONNX export (30 s of it on a busy 2-core box)


def _spec(train: Path, evaluate: Path) -> object:
    return parse_spec(dict(name="dicom", train_dataset=str(train), eval_datasets=[str(evaluate)], network="unet",
                           network_kwargs={"widths": [4, 8, 16]}, image_size=32, epochs=2, batch_size=4, lr=5e-3,
                           seeds=[0], methods=["baseline"], device="cpu", feature_maps=0))


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("roundtrip")
    cases = dd.build(root / "dicom")
    twin = dd.write_twin(root / "twin", cases)
    reports = {
        "dicom": ExperimentRun(_spec(root / "dicom", twin), root / "exp_dicom").run(),
        "twin": ExperimentRun(_spec(twin, root / "dicom"), root / "exp_twin").run(),
    }
    return {"root": root, "cases": cases, "twin": twin, "reports": reports,
            "model": root / "exp_dicom" / "seed_0" / "baseline" / "model.pt"}


def _scores(report: dict) -> list[tuple]:
    return sorted((r["split"], r["n_cases"], r["dice"], r["iou"], r["hd95"], r["hd"]) for r in report["rows"])


def test_a_dicom_dataset_trains_and_scores_like_its_nifti_twin(trained):
    dicom, twin = trained["reports"]["dicom"], trained["reports"]["twin"]
    assert _scores(dicom) == _scores(twin) and len(dicom["rows"]) == 2
    assert dicom["dataset_units"] == {"dicom": "mm", "twin": "mm"}  # spacing from the DICOM headers reaches HD95
    assert {r["dataset"] for r in dicom["rows"]} == {"dicom", "twin"}


def _read_seg(path: Path, case: dd.Case) -> np.ndarray:
    """The SEG read back with highdicom as a rows, cols, slices class map (after checking what it references)."""
    seg = hd.seg.segread(path)
    assert seg.segmentation_type == hd.seg.SegmentationTypeValues.BINARY
    assert [seg.get_segment_description(n).segment_label for n in seg.get_segment_numbers()] == dd.CLASSES[1:]
    series = read_one_series([(str(f), str(f)) for f in case.files])
    assert {uid for _, _, uid in seg.get_source_image_uids()} == set(series.sop_uids)
    assert seg.FrameOfReferenceUID == series.headers[0].FrameOfReferenceUID
    assert seg.StudyInstanceUID == series.headers[0].StudyInstanceUID
    pixels = seg.get_pixels_by_source_instance(source_sop_instance_uids=series.sop_uids, combine_segments=True)
    return np.moveaxis(np.asarray(pixels), 0, -1)


def _dice(pred: np.ndarray, truth: np.ndarray) -> float:
    return float(case_metrics(np.moveaxis(pred, -1, 0), np.moveaxis(truth, -1, 0), len(dd.CLASSES)).as_dict()["dice"])


def test_sikd_predict_returns_a_dicom_seg_scored_like_the_nifti_path(trained, tmp_path, capsys):
    lm = load_bundle(trained["model"])
    for name in ("case02", "case04"):  # case04 is sagittal, its files named against the slice order
        case = trained["cases"][name]
        assert sikd(["predict", str(trained["model"]), str(case.files[0].parent), "--out", str(tmp_path)]) == 0
        assert f"{tmp_path / (name + '_seg.dcm')} (DICOM SEG;" in capsys.readouterr().out
        seg = _read_seg(tmp_path / f"{name}_seg.dcm", case)
        volume, _ = read_volume(trained["twin"] / "images" / f"{name}.nii.gz")
        nifti = predict_volume(lm, volume)
        assert np.array_equal(seg, nifti)  # same data as NIfTI -> same prediction, read back from the SEG
        assert _dice(seg, case.labels) == _dice(nifti, case.labels)
        assert (seg > 0).any()
    # a .zip of the series gives the same SEG pixels
    case = trained["cases"]["case02"]
    with zipfile.ZipFile(tmp_path / "series.zip", "w") as z:
        for f in case.files:
            z.write(f, f"case02/{f.name}")
    assert sikd(["predict", str(trained["model"]), str(tmp_path / "series.zip"), "--out", str(tmp_path / "z")]) == 0
    assert np.array_equal(_read_seg(tmp_path / "z" / "series_seg.dcm", case), _read_seg(tmp_path / "case02_seg.dcm", case))


def test_the_exported_bundle_writes_the_same_seg(trained, tmp_path):
    from sikd_core.export import write_bundle

    bundle = write_bundle(trained["model"], tmp_path / "bundle", "onnx")
    assert (bundle / "sikd_dicom.py").is_file()
    case = trained["cases"]["case02"]
    run = subprocess.run([sys.executable, str(bundle / "predict.py"), str(case.files[0].parent), "--out",
                          str(tmp_path / "out")], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "case02_seg.dcm (DICOM SEG)" in run.stdout
    seg = _read_seg(tmp_path / "out" / "case02_seg.dcm", case)
    assert sikd(["predict", str(trained["model"]), str(case.files[0].parent), "--out", str(tmp_path / "ref")]) == 0
    reference = _read_seg(tmp_path / "ref" / "case02_seg.dcm", case)
    assert (seg == reference).mean() >= 0.999  # onnxruntime vs torch: ties at class borders may differ
    # without highdicom the bundle says which packages a DICOM series needs
    blocked = ("import runpy, sys; sys.modules['highdicom'] = None; "
               f"sys.argv = ['predict.py', {str(case.files[0].parent)!r}, '--out', {str(tmp_path / 'no')!r}]; "
               f"runpy.run_path({str(bundle / 'predict.py')!r}, run_name='__main__')")
    run = subprocess.run([sys.executable, "-c", blocked], capture_output=True, text=True, timeout=120)
    assert run.returncode == 1 and "a DICOM series needs pydicom and highdicom: pip install pydicom highdicom" in run.stderr
