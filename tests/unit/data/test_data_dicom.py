"""DICOM datasets (series + SEG) read like their NIfTI twin; every input that cannot be read is refused naming
the file and the problem, and nothing is written. The data are real BUSI images (tests/dicom_data.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
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
            dd.edit(f, lambda ds: setattr(ds, "PatientID", "same-patient"))
    groups = {s.case_id: s.group_id for s in load_dataset(fresh).samples}
    assert groups["case01"] == groups["case03"] == "case01" and groups["case02"] == "case02"


@pytest.mark.parametrize("case", list(dd.BROKEN))
def test_each_unreadable_input_is_refused_naming_the_file_and_nothing_is_written(fresh, case):
    if case == "no decoder":
        from pydicom.pixels import get_decoder
        from pydicom.uid import JPEGLosslessSV1

        if get_decoder(JPEGLosslessSV1).is_available:
            pytest.skip("a JPEG Lossless decoder is installed here")
    breaks, file, words = dd.BROKEN[case]
    breaks(fresh)
    with pytest.raises(DatasetError) as exc:
        load_dataset(fresh)
    assert file in exc.value.files, (exc.value.files, str(exc.value))
    assert any(p.startswith(f"{file}: ") and words in p for p in exc.value.problems), str(exc.value)
    assert not [p.name for p in fresh.iterdir() if p.name.startswith(CONVERTED_DIR)]  # nothing stored
    assert dd.PATIENT_ID not in str(exc.value) and dd.PATIENT_NAME not in str(exc.value)


def test_compressed_series_are_read_where_a_decoder_is_installed(built, fresh):
    from pydicom.uid import JPEGLSLossless, RLELossless

    dd.edit(fresh / "case01" / "IM0000", lambda ds: ds.compress(RLELossless, generate_instance_uid=False))  # pydicom's own encoder
    dd.edit(fresh / "case01" / "IM0002", lambda ds: ds.compress(JPEGLSLossless, generate_instance_uid=False))  # pyjpegls (highdicom's dependency)
    m, t = load_dataset(fresh), load_dataset(built[1])
    for i in range(3):
        assert np.array_equal(load_original(m, i)[0], load_original(t, i)[0])
