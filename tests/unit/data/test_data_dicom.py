"""DICOM datasets (series + SEG) read like their NIfTI twin; every input that cannot be read is refused naming
the file and the problem, and nothing is written. The data are real BUSI images (tests/dicom_data.py)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest

from sikd_core.data import load_dataset, load_original
from sikd_core.data.dicom import CONVERTED_DIR
from sikd_core.errors import DatasetError
from tests import dicom_data as dd


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, Path, dict[str, dd.Case]]:
    root = tmp_path_factory.mktemp("dicom")
    cases = dd.build(root / "dicom")
    return root / "dicom", dd.write_twin(root / "twin", cases), cases


@pytest.fixture
def fresh(built, tmp_path) -> Path:
    """A copy of the DICOM dataset (never loaded, so never converted) to break."""
    return dd.copy_dataset(built[0], tmp_path / "data")


def _edit(path: Path, change) -> None:
    ds = pydicom.dcmread(path)
    change(ds)
    ds.save_as(path)


def test_a_dicom_dataset_reads_exactly_like_its_nifti_twin(built):
    dicom, twin, cases = built
    m, t = load_dataset(dicom), load_dataset(twin)
    assert m.format == "dicom" and m.volumetric and m.mask_mode == "label" and m.class_names == dd.CLASSES
    assert len(m.samples) == len(t.samples) == 15
    for i, (a, b) in enumerate(zip(m.samples, t.samples, strict=True)):
        assert (a.key, a.group_id, a.slice_index, a.num_slices) == (b.key, b.group_id, b.slice_index, b.num_slices)
        assert a.spacing == pytest.approx(dd.SPACING) and a.slice_spacing == pytest.approx(dd.SLICE)
        image, label = load_original(m, i)
        twin_image, twin_label = load_original(t, i)
        assert np.array_equal(image, twin_image) and np.array_equal(label, twin_label)
    # case02 lists "malignant mass" as segment 1: classes follow the labels, not the segment numbers
    assert np.array_equal(load_original(m, 4)[1], cases["case02"].labels[:, :, 1])
    assert (cases["case02"].labels[:, :, 1] == dd.CLASSES.index("malignant mass")).any()
    assert m.stats["dicom"] == {"series": 5, "modalities": {"CT": 5}, "planes": {"axial": 4, "sagittal": 1},
                                "segment_labels": ["benign mass", "malignant mass"], "ignored_objects": 0}
    stored = json.dumps(m.to_dict()) + (dicom / CONVERTED_DIR / "index.json").read_text()
    assert dd.PATIENT_NAME.split("^")[0] not in stored and dd.PATIENT_ID not in stored
    again = load_dataset(dicom)  # the conversion is reused while the DICOM files are unchanged
    assert again.samples == m.samples


def test_cases_of_one_patient_share_a_group(fresh):
    for case in ("case01", "case03"):
        for f in (fresh / case).iterdir():
            _edit(f, lambda ds: setattr(ds, "PatientID", "same-patient"))
    groups = {s.case_id: s.group_id for s in load_dataset(fresh).samples}
    assert groups["case01"] == groups["case03"] == "case01" and groups["case02"] == "case02"


def _jpeg_lossless_placeholder(path: Path) -> None:
    """Mark a slice as JPEG Lossless (process 14), the usual CT compression. No encoder for it exists here, so the
    frame holds the raw pixels encapsulated: the refusal comes from the transfer syntax before any byte is read."""
    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEGLosslessSV1

    def change(ds):
        ds.PixelData = encapsulate([ds.PixelData])
        ds["PixelData"].VR = "OB"
        ds.file_meta.TransferSyntaxUID = JPEGLosslessSV1
    _edit(path, change)


def _shift_frame(ds):
    ds.PerFrameFunctionalGroupsSequence[0].PlanePositionSequence[0].ImagePositionPatient[2] += 5.0


def _relabel(old, new):
    def change(ds):
        for item in ds.SegmentSequence:
            if item.SegmentLabel == old:
                item.SegmentLabel = new
    return change


def _recode(ds):
    item = next(i for i in ds.SegmentSequence if i.SegmentLabel == "malignant mass")
    item.SegmentedPropertyTypeCodeSequence[0].CodeValue = "108369006"  # Neoplasm, not Mass


def _small_seg(root: Path) -> None:
    """case01's SEG rebuilt over half-size copies of its slices (same instances): frames that fit no slice."""
    sources = []
    for k in range(3):
        ds = pydicom.dcmread(root / "case01" / f"IM{k:04d}")
        ds.PixelData = np.ascontiguousarray(ds.pixel_array[::2, ::2]).tobytes()
        ds.Rows, ds.Columns = dd.ROWS // 2, dd.COLS // 2
        ds.PixelSpacing = [2 * v for v in dd.SPACING]
        sources.append(ds)
    mask = np.zeros((dd.ROWS // 2, dd.COLS // 2, 3), bool)
    mask[5:10, 5:10, :] = True
    dd.write_seg(root / "case01" / "seg.dcm", sources, {"benign mass": mask}, ["benign mass"])


def _overlapping_seg(root: Path) -> None:
    sources = [pydicom.dcmread(root / "case02" / f"IM{k:04d}") for k in range(3)]
    a = np.zeros((dd.ROWS, dd.COLS, 3), bool)
    a[5:20, 5:20, 1] = True
    b = np.roll(a, 5, axis=0)
    dd.write_seg(root / "case02" / "seg.dcm", sources, {"benign mass": a, "malignant mass": b},
                 ["benign mass", "malignant mass"])


def _second_seg(root: Path) -> None:
    shutil.copy(root / "case01" / "seg.dcm", root / "case01" / "seg_b.dcm")
    _edit(root / "case01" / "seg_b.dcm", lambda ds: setattr(ds, "SOPInstanceUID", pydicom.uid.generate_uid()))


BROKEN = {  # name -> (how to break the dataset, the file named, words of the problem)
    "instance missing": (lambda r: (r / "case02" / "IM0001").unlink(), "case02/seg.dcm",
                         "references 1 image(s) of its series that are not in the dataset"),
    "series missing": (lambda r: [f.unlink() for f in (r / "case03").glob("IM*")], "case03/seg.dcm",
                       "segments a series none of whose 3 images are in the dataset"),
    "frame misplaced": (lambda r: _edit(r / "case03" / "seg.dcm", _shift_frame), "case03/seg.dcm",
                        "frame 1 is placed at"),
    "frame size": (_small_seg, "case01/seg.dcm", "its frames are 20x24 pixels but the slices of the series they "
                                                 "segment are 40x48"),
    "label spelling": (lambda r: _edit(r / "case04" / "seg.dcm", _relabel("benign mass", "Benign  Mass")),
                       "case04/seg.dcm", "segment label 'Benign  Mass' is spelled 'benign mass' in"),
    "label coding": (lambda r: _edit(r / "case05" / "seg.dcm", _recode), "case05/seg.dcm",
                     "segment 'malignant mass' is coded as SCT 108369006 but as SCT"),
    "label twice": (lambda r: _edit(r / "case02" / "seg.dcm", _relabel("malignant mass", "benign mass")),
                    "case02/seg.dcm", "two segments are labelled 'benign mass'"),
    "overlap": (_overlapping_seg, "case02/seg.dcm", "segments overlap on slice case02/IM0001"),
    "no decoder": (lambda r: _jpeg_lossless_placeholder(r / "case01" / "IM0001"), "case01/IM0001",
                   "compressed as JPEG Lossless, Non-Hierarchical, First-Order Prediction (Process 14 [Selection "
                   "Value 1]) and no decoder for it is installed; install one of: pip install python-gdcm; "
                   "pip install pylibjpeg pylibjpeg-libjpeg"),
    "multi-frame": (lambda r: _edit(r / "case05" / "IM0002", lambda ds: setattr(ds, "NumberOfFrames", 3)),
                    "case05/IM0002", "is a multi-frame image (3 frames"),
    "no SEG": (lambda r: (r / "case01" / "seg.dcm").unlink(), "case01/IM0000",
               "its series (3 image(s)) has no SEG object"),
    "two SEGs": (_second_seg, "case01/seg_b.dcm", "segments the same series as case01/seg.dcm"),
    "uneven slices": (lambda r: _edit(r / "case03" / "IM0002", lambda ds: ds.ImagePositionPatient.__setitem__(
        2, float(ds.ImagePositionPatient[2]) + 1.0)), "case03/IM0001", "where the series' slices are 3.000 mm apart"),
    "not an image": (lambda r: _edit(r / "case02" / "IM0002", lambda ds: delattr(ds, "ImagePositionPatient")),
                     "case02/IM0002", "has no valid ImagePositionPatient: the slice cannot be placed in space"),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_each_unreadable_input_is_refused_naming_the_file_and_nothing_is_written(fresh, case):
    if case == "no decoder":
        from pydicom.pixels import get_decoder
        from pydicom.uid import JPEGLosslessSV1

        if get_decoder(JPEGLosslessSV1).is_available:
            pytest.skip("a JPEG Lossless decoder is installed here")
    breaks, file, words = BROKEN[case]
    breaks(fresh)
    with pytest.raises(DatasetError) as exc:
        load_dataset(fresh)
    assert file in exc.value.files, (exc.value.files, str(exc.value))
    assert any(p.startswith(f"{file}: ") and words in p for p in exc.value.problems), str(exc.value)
    assert not [p.name for p in fresh.iterdir() if p.name.startswith(CONVERTED_DIR)]  # nothing stored
    assert dd.PATIENT_ID not in str(exc.value) and dd.PATIENT_NAME not in str(exc.value)


def test_compressed_series_are_read_where_a_decoder_is_installed(built, fresh):
    from pydicom.uid import JPEGLSLossless, RLELossless

    _edit(fresh / "case01" / "IM0000", lambda ds: ds.compress(RLELossless, generate_instance_uid=False))  # pydicom's own encoder
    _edit(fresh / "case01" / "IM0002", lambda ds: ds.compress(JPEGLSLossless, generate_instance_uid=False))  # pyjpegls (highdicom's dependency)
    m, t = load_dataset(fresh), load_dataset(built[1])
    for i in range(3):
        assert np.array_equal(load_original(m, i)[0], load_original(t, i)[0])
