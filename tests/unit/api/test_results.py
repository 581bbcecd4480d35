"""A finished experiment through the API: results, report, overlays, feature maps, files, predictions,
models (download, predict). The experiment is run by the worker's task functions in-process.

The experiment (four trained stages) is run ONCE per module and database backend and shared by the tests
here: they only read it, except where noted (a test that changes a setting or a file puts it back; the
deletion test runs last).
"""

from __future__ import annotations

import base64
import io
import zipfile
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from PIL import Image

from tests.service_helpers import ADMIN_TOKEN, drain, new_user, png_bytes, tiny_spec, upload
from tests.unit.conftest import module_service

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def shared(database_url, tmp_path_factory, phantom_zips) -> Iterator[dict[str, Any]]:
    """Settings, client, Alice and her finished experiment, built once for this module and backend."""
    with module_service(database_url, tmp_path_factory.mktemp("results") / "storage") as (settings, client, jobs):
        alice = new_user(client, {"Authorization": f"Bearer {ADMIN_TOKEN}"}, "alice")
        datasets = {}
        for domain, data in phantom_zips.items():
            r = upload(client, alice, data, name=domain)
            assert r.status_code == 201, r.text
            datasets[domain] = r.json()["id"]
        r = client.post("/experiments", json=tiny_spec(datasets, name="done"), headers=alice)
        assert r.status_code == 201, r.text
        assert [out for _, _, out in drain(jobs)] == ["succeeded"] * 4
        yield {"settings": settings, "client": client, "alice": alice, "finished": r.json()}


@pytest.fixture(autouse=True)
def _current(shared) -> Iterator[None]:
    """The shared settings are the process's settings during each test; limits a test changes are restored."""
    from sikd_service.celery_app import configure
    from sikd_service.config import set_settings

    s = shared["settings"]
    saved = {k: getattr(s, k) for k in ("max_predict_files", "max_predict_file_bytes", "max_predict_pixels")}
    set_settings(s)
    configure(s)
    yield
    for k, v in saved.items():
        setattr(s, k, v)
    set_settings(None)


@pytest.fixture
def settings(shared) -> Any:
    return shared["settings"]


@pytest.fixture
def client(shared) -> Any:
    return shared["client"]


@pytest.fixture
def alice(shared) -> dict[str, str]:
    return shared["alice"]


@pytest.fixture
def finished(shared) -> dict:
    return shared["finished"]


def test_results_and_report(client, alice, finished):
    eid = finished["id"]
    res = client.get(f"/experiments/{eid}/results", headers=alice).json()
    keys = {(r["method"], r["seed"], r["dataset"], r["split"]) for r in res["data"]}
    assert keys == {(m, 0, d, s) for m in ("baseline", "sikd") for d, s in (("vendor_a", "intra"), ("vendor_b", "cross"))}
    assert res["count"] == 4 and res["class_names"] == ["background", "RV", "myocardium", "LV"]
    assert res["units"] == "px" and {c["dataset"] for c in res["comparisons"]} == {"vendor_a", "vendor_b"}
    for row in res["data"]:
        assert 0 <= row["dice"] <= 1 and set(row["per_class"]) == {"RV", "myocardium", "LV"}
    assert res["summary"]
    md = client.get(f"/experiments/{eid}/report", headers=alice)
    assert md.headers["content-type"].startswith("text/markdown")
    assert "# SIKD Studio report: done" in md.text and "| SIKD |" in md.text


def test_results_are_parsed_once_per_version_of_the_report(client, alice, finished, settings):
    import json

    from sikd_service.experiments import _parsed
    from sikd_service.storage import experiment_dir
    from tests.service_helpers import count_queries

    url = f"/experiments/{finished['id']}/results"
    first = client.get(url, headers=alice).json()
    hits = _parsed.cache_info().hits
    with count_queries(settings) as q:
        assert client.get(url, headers=alice).json() == first
    assert _parsed.cache_info().hits == hits + 1  # not read from disk again
    assert len(q) == 1, q  # the experiment with its stages; the token came from the cache
    path = experiment_dir(settings, finished["id"]) / "report.json"
    saved = path.read_text()
    try:
        path.write_text(json.dumps({**json.loads(saved), "warnings": ["rewritten"]}))
        assert client.get(url, headers=alice).json()["warnings"] == ["rewritten"]  # a new version is read
    finally:
        path.write_text(saved)
    assert client.get(url, headers=alice).json() == first


def test_list_items_carry_the_stored_summary(client, alice, finished, settings):
    """The list's items hold each succeeded experiment's headline Dice (stored when the evaluation finished,
    read from the row: no report is opened); one stored before summaries existed is filled from its report once."""
    from sqlalchemy import update

    from sikd_service.db import session_scope
    from sikd_service.tables import Experiment

    eid = finished["id"]
    res = client.get(f"/experiments/{eid}/results", headers=alice).json()
    summary = res["summary"]

    def mean(method, split):
        v = [s["dice_mean"] for s in summary if s["method"] == method and s["split"] == split]
        return sum(v) / len(v)

    want = {"dice": {m: {"intra": pytest.approx(mean(m, "intra")), "cross": pytest.approx(mean(m, "cross"))}
                     for m in ("baseline", "sikd")},
            "health": {"findings": res["health"]["findings"], "models": [["baseline", 0], ["sikd", 0]]}}
    [item] = [e for e in client.get("/experiments", headers=alice).json()["data"] if e["id"] == eid]
    assert item["summary"] == want and list(item["summary"]["dice"]) == ["baseline", "sikd"]
    report = settings.experiments_dir / str(eid) / "report.json"
    saved = report.read_bytes()
    try:
        report.write_text("{}")  # the list never reads the report while the row has a summary
        assert [e["summary"] for e in client.get("/experiments", headers=alice).json()["data"]
                if e["id"] == eid] == [want]
        report.write_bytes(saved)
        with session_scope(settings) as s:  # an experiment that finished before summaries were kept
            s.execute(update(Experiment).where(Experiment.id == eid).values(summary=None))
        [item] = [e for e in client.get("/experiments", headers=alice).json()["data"] if e["id"] == eid]
        assert item["summary"] == want
        report.write_text("{}")
        with session_scope(settings) as s:
            assert s.get(Experiment, eid).summary is not None  # stored: the report was read once
    finally:
        report.write_bytes(saved)
    assert client.get(f"/experiments/{eid}", headers=alice).json()["summary"] == want


def test_overlays_features_and_files(client, alice, finished):
    eid = finished["id"]
    ov = client.get(f"/experiments/{eid}/overlays", headers=alice).json()
    assert ov["count"] > 0 and {o["dataset"] for o in ov["data"]} == {"vendor_a", "vendor_b"}
    png = client.get(ov["data"][0]["url"], headers=alice)
    assert png.status_code == 200 and png.content[:8] == b"\x89PNG\r\n\x1a\n"
    b = client.get(f"/experiments/{eid}/overlays?dataset=vendor_b&category=worst&sort=worst", headers=alice).json()
    assert b["count"] >= 1 and all(o["dataset"] == "vendor_b" and "worst" in o["categories"] for o in b["data"])
    worst = [o["scores"]["sikd"]["dice"] for o in b["data"]]
    assert worst == sorted(worst)
    diffs = [o["dice_diff"] for o in client.get(f"/experiments/{eid}/overlays?sort=dice_diff",
                                                 headers=alice).json()["data"]]
    assert diffs == sorted(diffs, reverse=True)
    page = client.get(f"/experiments/{eid}/overlays?skip=1&limit=1", headers=alice).json()
    assert page["count"] == ov["count"] and page["data"] == ov["data"][1:2]
    feats = client.get(f"/experiments/{eid}/features", headers=alice).json()
    assert feats["count"] == 2 and feats["data"][0]["panels"] == ["image", "teacher_input", "baseline",
                                                                      "teacher", "sikd"]
    assert client.get(feats["data"][0]["url"], headers=alice).status_code == 200
    assert client.get(f"/experiments/{eid}/files/cases.json", headers=alice).json()


def test_per_case_scores(client, alice, finished):
    eid = finished["id"]
    every = client.get(f"/experiments/{eid}/cases", headers=alice).json()
    # 4 intra test cases + 6 cross cases, each scored by the baseline and SIKD (seed 0)
    assert every["count"] == 2 * (4 + 6) == len(every["data"])
    assert {(c["method"], c["split"]) for c in every["data"]} == {(m, s) for m in ("baseline", "sikd")
                                                                    for s in ("intra", "cross")}
    for c in every["data"]:
        assert 0 <= c["dice"] <= 1 and len(c["per_class"]["dice"]) == 3 and c["keys"]
    one = client.get(f"/experiments/{eid}/cases?dataset=vendor_b&method=sikd", headers=alice).json()
    assert one["count"] == 6 and all(c["dataset"] == "vendor_b" and c["method"] == "sikd" for c in one["data"])
    page = client.get(f"/experiments/{eid}/cases?split=intra&skip=2&limit=3", headers=alice).json()
    assert page["count"] == 8 and len(page["data"]) == 3 and all(c["split"] == "intra" for c in page["data"])
    assert client.get(f"/experiments/{eid}/cases?split=sideways", headers=alice).status_code == 422


def test_case_view_renders_ground_truth_and_predictions(client, alice, finished, settings):
    eid = finished["id"]
    case = client.get(f"/experiments/{eid}/cases?dataset=vendor_b&limit=1", headers=alice).json()["data"][0]
    key = case["keys"][0]
    sizes = {}
    for methods, mode in (([], "contours"), (["baseline"], "fill"), (["baseline", "sikd"], "contours"),
                          (["baseline", "sikd"], "errors")):
        r = client.get(f"/experiments/{eid}/cases/view.png", params={"dataset": "vendor_b", "key": key,
                                                                       "methods": methods, "mode": mode},
                       headers=alice)
        assert r.status_code == 200 and r.headers["content-type"] == "image/png", r.text
        img = Image.open(io.BytesIO(r.content))
        sizes[(len(methods), mode)] = img.size
    # full resolution (the saved prediction's size), one panel per method after the ground truth
    saved = settings.experiments_dir / str(eid) / "eval" / "predictions" / "sikd" / "vendor_b" / f"{key}.png"
    w, h = Image.open(saved).size
    assert sizes[(0, "contours")] == (w, h)
    assert sizes[(1, "fill")] == (2 * w + 4, h)
    assert sizes[(2, "contours")] == sizes[(2, "errors")] == (3 * w + 2 * 4, h)
    # overlay: one picture, the ground truth's outline (green) with the two methods' outlines (red, blue)
    r = client.get(f"/experiments/{eid}/cases/view.png", headers=alice, params={
        "dataset": "vendor_b", "key": key, "methods": ["baseline", "sikd"], "mode": "overlay"})
    assert r.status_code == 200, r.text
    pic = np.asarray(Image.open(io.BytesIO(r.content)).convert("RGB"))
    colours = {c: bool((pic == c).all(-1).any()) for c in ((0, 230, 0), (255, 60, 60), (40, 140, 255))}
    assert pic.shape[:2] == (h, w) and any(colours.values()), colours
    r = client.get(f"/experiments/{eid}/cases/view.png", headers=alice, params={
        "dataset": "vendor_b", "key": key, "methods": ["baseline", "sikd", "baseline"], "mode": "overlay"})
    assert r.status_code == 422 and "at most 2 methods" in r.json()["detail"]
    bad = {"dataset": "vendor_b", "key": key}
    assert client.get(f"/experiments/{eid}/cases/view.png", params={**bad, "dataset": "nope"},
                      headers=alice).status_code == 404
    assert client.get(f"/experiments/{eid}/cases/view.png", params={**bad, "key": "nope"},
                      headers=alice).status_code == 404
    r = client.get(f"/experiments/{eid}/cases/view.png", params={**bad, "methods": ["../../x"]}, headers=alice)
    assert r.status_code == 422
    r = client.get(f"/experiments/{eid}/cases/view.png", params={**bad, "methods": ["maxstyle"]}, headers=alice)
    assert r.status_code == 404 and "no saved prediction of 'maxstyle'" in r.json()["detail"]


def test_per_case_scores_wait_for_success(client, alice, datasets):
    r = client.post("/experiments", json=tiny_spec(datasets, name="queued"), headers=alice)
    res = client.get(f"/experiments/{r.json()['id']}/cases", headers=alice)
    assert res.status_code == 409 and "per-case scores exist once it has succeeded" in res.json()["detail"]


def test_files_serve_nothing_outside_eval(client, alice, finished, settings):
    workdir = settings.experiments_dir / str(finished["id"])
    assert (workdir / "report.json").is_file()
    link = workdir / "eval" / "link.json"
    link.symlink_to(workdir / "report.json")
    try:
        # Encoded dots and slashes reach the handler as "../report.json", "/etc/passwd"...
        for path in ("..%2Freport.json", "%2E%2E/report.json", "overlays/%2E%2E/%2E%2E/report.json",
                     "%2Fetc%2Fpasswd", "link.json", "overlays", "nope.png"):
            r = client.get(f"/experiments/{finished['id']}/files/{path}", headers=alice)
            assert r.status_code == 404 and r.json()["detail"].startswith("file "), path
    finally:
        link.unlink()


def test_predictions_zip_streams_every_mask(client, alice, finished, settings):
    r = client.get(f"/experiments/{finished['id']}/predictions.zip", headers=alice)
    assert r.status_code == 200 and r.headers["content-type"] == "application/zip"
    names = zipfile.ZipFile(io.BytesIO(r.content)).namelist()
    root = settings.experiments_dir / str(finished["id"]) / "eval" / "predictions"
    assert sorted(names) == sorted(p.relative_to(root).as_posix() for p in root.rglob("*.png"))
    assert {n.split("/")[0] for n in names} == {"baseline", "sikd"} and len(names) == 2 * (4 + 6)


def test_models_download_and_predict(client, alice, finished, tmp_path):
    models = client.get(f"/models?experiment_id={finished['id']}", headers=alice).json()
    assert models["count"] == 2 and {m["method"] for m in models["data"]} == {"baseline", "sikd"}
    sikd = next(m for m in models["data"] if m["method"] == "sikd")
    assert client.get(f"/models/{sikd['id']}", headers=alice).json() == sikd
    dl = client.get(f"/models/{sikd['id']}/download", headers=alice)
    assert dl.status_code == 200 and "sikd-exp" in dl.headers["content-disposition"]
    (tmp_path / "model.pt").write_bytes(dl.content)
    from sikd_core.inference import load_bundle

    lm = load_bundle(tmp_path / "model.pt")
    assert lm.info["method"] == "sikd" and lm.num_classes == 4 and lm.info["spec"]["name"] == "done"
    # sikd predict works on the download
    from sikd_core.cli import main

    img = np.random.default_rng(0).integers(0, 255, (40, 50), dtype=np.uint8)
    (tmp_path / "x.png").write_bytes(png_bytes(img))
    assert main(["predict", str(tmp_path / "model.pt"), str(tmp_path / "x.png"), "--out", str(tmp_path / "out")]) == 0
    r = client.post(f"/models/{sikd['id']}/predict", headers=alice,
                    files=[("files", ("a.png", png_bytes(img), "image/png")),
                           ("files", ("b.png", png_bytes(img[:30, :20]), "image/png"))])
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    assert [(d["filename"], d["width"], d["height"]) for d in data] == [("a.png", 50, 40), ("b.png", 20, 30)]
    for d in data:
        assert set(d["class_fractions"]) == {"background", "RV", "myocardium", "LV"}
        assert abs(sum(d["class_fractions"].values()) - 1) < 1e-6 and d["mask_values"] == "class index"
        mask = np.asarray(Image.open(io.BytesIO(base64.b64decode(d["mask_png"]))))
        overlay = Image.open(io.BytesIO(base64.b64decode(d["overlay_png"])))
        assert mask.shape == (d["height"], d["width"]) and mask.max() < 4
        assert overlay.size == (d["width"], d["height"]) and overlay.mode == "RGB"
    expected = np.asarray(Image.open(tmp_path / "out" / "x_mask.png"))
    got = np.asarray(Image.open(io.BytesIO(base64.b64decode(data[0]["mask_png"]))))
    assert np.array_equal(got, expected)  # the API and the CLI predict the same


def test_predict_rejects_bad_images_and_too_many_files(client, alice, finished, settings):
    mid = client.get(f"/models?experiment_id={finished['id']}", headers=alice).json()["data"][0]["id"]
    r = client.post(f"/models/{mid}/predict", headers=alice, files=[("files", ("bad.png", b"nope", "image/png"))])
    assert r.status_code == 422 and "bad.png" in r.json()["detail"] and r.json()["files"] == ["bad.png"]
    settings.max_predict_files = 1
    img = png_bytes(np.zeros((8, 8), np.uint8))
    r = client.post(f"/models/{mid}/predict", headers=alice,
                    files=[("files", ("a.png", img, "image/png")), ("files", ("b.png", img, "image/png"))])
    assert r.status_code == 413 and "at most 1" in r.json()["detail"]
    settings.max_predict_files, settings.max_predict_file_bytes = 4, 100
    r = client.post(f"/models/{mid}/predict", headers=alice, files=[("files", ("c.png", b"x" * 500, "image/png"))])
    assert r.status_code == 413 and "c.png" in r.json()["detail"]
    r = client.post(f"/models/{mid}/predict", headers=alice, data={"x": "1"})
    assert r.status_code in (415, 422)
    assert not list(settings.tmp_dir.iterdir())


def test_predict_pixel_budget_is_checked_from_the_headers_before_decoding(client, alice, finished, settings):
    """Over the per-request budget: 413 naming it, before any image is decoded (a truncated body, whose
    header is valid but whose pixels cannot be decoded, is refused for its size, not for its data)."""
    mid = client.get(f"/models?experiment_id={finished['id']}", headers=alice).json()["data"][0]["id"]
    img = png_bytes(np.random.default_rng(1).integers(0, 255, (40, 50), dtype=np.uint8))
    truncated = img[: len(img) // 2]
    settings.max_predict_pixels = 3 * 40 * 50
    files = [("files", (f"{i}.png", img, "image/png")) for i in range(3)]
    r = client.post(f"/models/{mid}/predict", headers=alice, files=files)  # exactly the budget: accepted
    assert r.status_code == 200, r.text
    assert [d["filename"] for d in r.json()["data"]] == ["0.png", "1.png", "2.png"]
    r = client.post(f"/models/{mid}/predict", headers=alice,
                    files=files + [("files", ("t.png", truncated, "image/png"))])
    assert r.status_code == 413, r.text
    detail = r.json()["detail"]
    assert "8000 pixels" in detail and "budget of 6000 pixels" in detail and "SIKD_MAX_PREDICT_PIXELS" in detail
    settings.max_predict_pixels = 10 * 40 * 50  # within budget, the truncated one fails on decoding, by name
    r = client.post(f"/models/{mid}/predict", headers=alice,
                    files=[("files", ("t.png", truncated, "image/png")), ("files", ("ok.png", img, "image/png"))])
    assert r.status_code == 422 and r.json()["files"] == ["t.png"], r.text
    assert not list(settings.tmp_dir.iterdir())


# Keep this test LAST in the module: it deletes the shared experiment.
def test_deleting_a_finished_experiment_removes_models_and_files(client, alice, finished, settings):
    eid = finished["id"]
    assert client.delete(f"/experiments/{eid}", headers=alice).status_code == 204
    assert client.get(f"/models?experiment_id={eid}", headers=alice).json()["count"] == 0
    assert not (settings.experiments_dir / str(eid)).exists()
    assert client.get(f"/experiments/{eid}/metrics", headers=alice).status_code == 404
