"""Models page: the empty state; every trained model with its experiment, scores and health; the three
downloads; the model card; the try-it box's predicted overlay."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest
from PIL import Image

from tests.ui.apptest_helpers import all_text, no_exceptions, texts

pytestmark = pytest.mark.timeout(300)


def test_no_models_yet(dashboard, services, queue_user):
    at = dashboard("models", url=services.queue.url, token=queue_user.token)
    no_exceptions(at)
    assert "No trained models yet" in "\n".join(texts(at, "info"))


def test_models_table_downloads_card_and_try_it(dashboard, services, trained):
    api = trained["api"]
    at = dashboard("models", url=services.work.url, token=api.token, timeout=60)
    no_exceptions(at)
    models = api.get("/models", params={"limit": 500})["data"]
    table = at.dataframe[0].value
    assert sorted(table.index.tolist()) == sorted(m["id"] for m in models) and len(models) == 8  # 2 exps x 2 seeds x 2
    for m in models:
        row = table.loc[m["id"]]
        res = api.get(f"/experiments/{m['experiment_id']}/results")["data"]
        mine = [r for r in res if r["method"] == m["method"] and r["seed"] == m["seed"]]
        intra = [r["dice"] for r in mine if r["split"] == "intra"]
        cross = [r["dice"] for r in mine if r["split"] == "cross"]
        assert row["intra Dice"] == pytest.approx(intra[0]) and row["cross Dice"] == pytest.approx(np.mean(cross))
        assert row["experiment"] == f"experiment?id={m['experiment_id']}"
        assert row["method"] == ("SIKD student" if m["method"] == "sikd" else "baseline") and row["seed"] == m["seed"]
        exp = api.get(f"/experiments/{m['experiment_id']}")
        findings = exp["health"]["by_model"][f"{m['method']}/{m['seed']}"]  # what the experiment page shows
        assert row["health"] == "healthy" if not findings else row["health"].startswith("⚠ unhealthy: ")
    labels = [b.label for b in at.get("download_button")]
    assert labels == ["PyTorch (model.pt)", "ONNX bundle (zip)", "Model card (Markdown)", "Model card (JSON)"]
    chosen = at.selectbox(key="models_pick").value
    assert "Intended use" in all_text(at) and "vendor_a (train" in all_text(at)

    # try it: one uploaded image -> its predicted overlay, as the API predicts it
    img = np.random.default_rng(0).integers(0, 255, (40, 50), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    at.file_uploader(key="models_try").set_value([("probe.png", buf.getvalue(), "image/png")]).run()
    no_exceptions(at)
    captions = [i.caption for el in at.get("image") for i in el.proto.imgs]
    assert any(c.startswith("probe.png: RV ") for c in captions), captions

    # the downloads fetch the API's files when clicked: the ONNX bundle is a zip with the network and recipe
    from ui.client import Client

    c = Client(base=services.work.url, token=api.token)
    z = zipfile.ZipFile(io.BytesIO(c.downloader(f"/models/{chosen}/export?format=onnx")()))
    assert {f"sikd-model-{chosen}-onnx/{n}" for n in ("model.onnx", "recipe.json", "predict.py")} <= set(z.namelist())
    assert c.downloader(f"/models/{chosen}/card?format=md")().decode().startswith("# Model card:")


def test_try_it_answers_a_dicom_series_with_a_seg_to_download(dashboard, services, trained, tmp_path):
    """A DICOM series (one zip of its files, real BUSI images written as a CT-like series) sent from the Models
    page comes back as a DICOM SEG that references it, offered as a download with its summary."""
    import highdicom as hd

    from tests import dicom_data as dd

    case = dd.build(tmp_path)["case02"]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for f in case.files:
            z.write(f, f"{f.parent.name}/{f.name}")
    api = trained["api"]
    at = dashboard("models", url=services.work.url, token=api.token, timeout=60)
    at.file_uploader(key="models_try").set_value([("case02.zip", buf.getvalue(), "application/zip")]).run(timeout=120)
    no_exceptions(at)
    ok = "\n".join(texts(at, "success"))
    assert "DICOM SEG ready" in ok and "3 slices" in ok, ok
    button = next(b for b in at.get("download_button") if b.label == "DICOM SEG (.dcm)")
    assert button.proto.url  # the SEG's bytes are served for download
    from ui.client import Client

    chosen = at.selectbox(key="models_pick").value
    seg_bytes, name, slices = Client(base=services.work.url, token=api.token).predict_series(
        chosen, [("case02.zip", buf.getvalue(), "application/zip")])
    seg = hd.seg.segread(io.BytesIO(seg_bytes))
    sources = {uid for _, _, uid in seg.get_source_image_uids()}
    import pydicom

    assert sources == {str(pydicom.dcmread(f).SOPInstanceUID) for f in case.files}
    assert name == f"sikd-model-{chosen}-seg.dcm" and slices == 3
    # images and a series in one upload are not a series: a clear message, no crash
    at.file_uploader(key="models_try").set_value([("case02.zip", buf.getvalue(), "application/zip"),
                                                  ("x.png", b"not a png", "image/png")]).run(timeout=60)
    no_exceptions(at)
    assert texts(at, "error"), "a mixed upload must say why it was refused"
