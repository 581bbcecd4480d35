"""DICOM through the API, on real images (BUSI written as CT-like series + SEG, tests/dicom_data.py): a DICOM
dataset uploads (no patient attribute in any answer, stored file or log line; no DICOM header kept), every
unreadable upload is refused naming the file and the problem with nothing stored, and a trained model answers a
series with a DICOM SEG that highdicom reads back and that references the series."""

from __future__ import annotations

import io
import logging
import zipfile
from pathlib import Path

import highdicom as hd
import numpy as np
import pytest

from tests import dicom_data as dd
from tests.service_helpers import drain, storage_listing, upload, zip_folder

SECRETS = (dd.PATIENT_NAME, dd.PATIENT_NAME.replace("^", " "), dd.PATIENT_ID, "19700101")


@pytest.fixture(scope="session")
def dicom_root(tmp_path_factory) -> tuple[Path, dict[str, dd.Case]]:
    root = tmp_path_factory.mktemp("dicom_api") / "hospital"
    return root, dd.build(root)


@pytest.fixture(scope="session")
def dicom_zip(dicom_root) -> bytes:
    return zip_folder(dicom_root[0], top="hospital")


def _no_secrets(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text


def test_a_dicom_dataset_uploads_and_keeps_nothing_identifying(client, alice, dicom_zip, settings, caplog):
    caplog.set_level(logging.DEBUG)
    r = upload(client, alice, dicom_zip, name="hospital")
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["stats"]["format"] == "dicom" and body["stats"]["pairs"] == 15
    assert [c["name"] for c in body["stats"]["classes"]] == dd.CLASSES
    assert body["stats"]["dicom"]["planes"] == {"axial": 4, "sagittal": 1}
    assert any("DICOM file(s) were read into NIfTI volumes" in w for w in body["stats"]["warnings"])
    listing = storage_listing(settings)
    kept = [p for p in listing if Path(settings.storage_dir, p).is_file()]
    assert kept and all("/.sikd-dicom/" in p or "/.thumbs/" in p for p in kept), kept  # no DICOM file kept
    for p in kept:  # nothing stored holds a patient attribute
        data = Path(settings.storage_dir, p).read_bytes()
        assert not any(s.encode() in data for s in SECRETS), p
    shown = client.get(f"/datasets/{body['id']}", headers=alice)
    assert shown.status_code == 200
    thumb = client.get(shown.json()["samples"][0]["url"], headers=alice)  # the dashboard's picture of a slice
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/png"
    for text in (r.text, shown.text, "\n".join(rec.getMessage() for rec in caplog.records)):
        _no_secrets(text)


@pytest.mark.parametrize("case", ["instance missing", "frame misplaced", "label spelling", "no decoder",
                                  "multi-frame", "two SEGs"])
def test_each_unreadable_dicom_upload_is_refused_naming_the_file(client, alice, dicom_root, settings, tmp_path,
                                                                 case):
    if case == "no decoder":
        from pydicom.pixels import get_decoder
        from pydicom.uid import JPEGLosslessSV1

        if get_decoder(JPEGLosslessSV1).is_available:
            pytest.skip("a JPEG Lossless decoder is installed here")
    folder = dd.copy_dataset(dicom_root[0], tmp_path / "hospital")
    breaks, file, words = dd.BROKEN[case]
    breaks(folder)
    before = storage_listing(settings)
    r = upload(client, alice, zip_folder(folder, top="hospital"), name="broken")
    assert r.status_code == 422, r.text
    body = r.json()
    assert file in body["files"] and any(p.startswith(f"{file}: ") and words in p for p in body["problems"]), body
    assert storage_listing(settings) == before  # nothing stored
    assert client.get("/datasets", headers=alice).json()["count"] == 0
    _no_secrets(r.text)


def _series_zip(case: dd.Case, extra: dict[str, bytes] | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for f in case.files:
            z.write(f, f"{f.parent.name}/{f.name}")
        for name, data in (extra or {}).items():
            z.writestr(name, data)
    return buf.getvalue()


@pytest.mark.timeout(240)
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # a training: SQLite only, like test_results
def test_a_model_answers_a_series_with_a_dicom_seg_that_references_it(client, alice, dicom_zip, dicom_root, jobs,
                                                                     settings, caplog, tmp_path):
    from sikd_core.data.dicom_series import read_one_series
    from sikd_core.inference import load_bundle, predict_volume

    ds = upload(client, alice, dicom_zip, name="hospital").json()["id"]
    spec = dict(name="dicom", train_dataset=ds, eval_datasets=[], network_kwargs={"widths": [4, 8, 16]},
                image_size=32, epochs=1, batch_size=4, lr=5e-3, seeds=[0], methods=["baseline"], device="cpu",
                feature_maps=0)
    r = client.post("/experiments", json=spec, headers=alice)
    assert r.status_code == 201, r.text
    assert [out for _, _, out in drain(jobs)] == ["succeeded"] * 2
    model = client.get(f"/models?experiment_id={r.json()['id']}", headers=alice).json()["data"][0]
    report = client.get(f"/experiments/{r.json()['id']}/report", headers=alice)
    assert report.status_code == 200 and "mm" in report.text  # HD95 from the DICOM spacing

    case = dicom_root[1]["case02"]
    caplog.set_level(logging.DEBUG)
    answer = client.post(f"/models/{model['id']}/predict", headers=alice,
                         files=[("files", ("case02.zip", _series_zip(case, {"case02/seg.dcm": case.seg.read_bytes()}),
                                           "application/zip"))])
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/dicom" and answer.headers["x-sikd-slices"] == "3"
    seg = hd.seg.segread(io.BytesIO(answer.content))
    series = read_one_series([(str(f), str(f)) for f in case.files])
    assert {uid for _, _, uid in seg.get_source_image_uids()} == set(series.sop_uids)
    assert [seg.get_segment_description(n).segment_label for n in seg.get_segment_numbers()] == dd.CLASSES[1:]
    got = np.moveaxis(seg.get_pixels_by_source_instance(source_sop_instance_uids=series.sop_uids,
                                                        combine_segments=True), 0, -1)
    model_pt = tmp_path / "model.pt"
    model_pt.write_bytes(client.get(f"/models/{model['id']}/download", headers=alice).content)
    expected = predict_volume(load_bundle(model_pt), series.volume())
    assert np.array_equal(got, expected)
    _no_secrets("\n".join(rec.getMessage() for rec in caplog.records))

    # the series' files sent one by one give the same SEG pixels
    files = [("files", (f.name, f.read_bytes(), "application/dicom")) for f in case.files]
    again = client.post(f"/models/{model['id']}/predict", headers=alice, files=files)
    assert again.status_code == 200, again.text
    seg2 = hd.seg.segread(io.BytesIO(again.content))
    assert np.array_equal(np.moveaxis(seg2.get_pixels_by_source_instance(
        source_sop_instance_uids=series.sop_uids, combine_segments=True), 0, -1), expected)

    # refusals: a multi-frame slice (naming it), two series, a series over the pixel budget
    broken = dd.copy_dataset(dicom_root[0], tmp_path / "broken")
    dd.edit(broken / "case02" / "IM0001", lambda d: setattr(d, "NumberOfFrames", 2))
    payload = dd.Case("x", case.hu, case.labels, files=sorted((broken / "case02").glob("IM*")))
    r = client.post(f"/models/{model['id']}/predict", headers=alice,
                    files=[("files", ("s.zip", _series_zip(payload), "application/zip"))])
    assert r.status_code == 422 and "case02/IM0001" in r.json()["files"] and "multi-frame" in r.json()["detail"], r.text
    two = dd.Case("x", case.hu, case.labels, files=[*case.files, dicom_root[1]["case01"].files[0]])
    r = client.post(f"/models/{model['id']}/predict", headers=alice,
                    files=[("files", ("two.zip", _series_zip(two), "application/zip"))])
    assert r.status_code == 422 and "expected one image series, found 2" in r.json()["detail"], r.text
    settings.max_predict_pixels = dd.ROWS * dd.COLS * 3 - 1
    r = client.post(f"/models/{model['id']}/predict", headers=alice,
                    files=[("files", ("case02.zip", _series_zip(case), "application/zip"))])
    assert r.status_code == 413 and "per-request budget" in r.json()["detail"], r.text
