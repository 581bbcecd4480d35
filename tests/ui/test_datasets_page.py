"""Datasets page: empty state, upload (valid: the validation report; invalid: the API's exact error with
its problem files), list, thumbnails, class fractions, delete."""

from __future__ import annotations

import pytest

from tests.ui.apptest_helpers import all_text, no_exceptions, plotly_traces, record_requests, texts

#: Generous: the first test of a session also starts the services (and trains the sweep).
pytestmark = pytest.mark.timeout(300)


def upload(at, data: bytes, filename: str, name: str = ""):
    at.file_uploader(key="ds_file").set_value((filename, data, "application/zip"))
    at.run()
    if name:
        at.text_input(key="ds_name").input(name)
    return at.button(key="ds_upload").click().run()


def test_empty_state_points_to_the_upload(dashboard, services, queue_user):
    at = dashboard("datasets", url=services.queue.url, token=queue_user.token)
    no_exceptions(at)
    info = "\n".join(texts(at, "info"))
    assert "No datasets yet" in info and "Upload one above" in info
    assert not at.dataframe
    assert at.button(key="ds_upload").disabled  # nothing chosen yet


def test_valid_upload_shows_the_validation_report_and_the_dataset(dashboard, services, queue_user, zips):
    at = dashboard("datasets", url=services.queue.url, token=queue_user.token)
    at = upload(at, zips["vendor_a"], "vendor_a.zip", name="Vendor A phantoms")
    no_exceptions(at)
    stored = queue_user.get("/datasets")["data"]
    assert [d["name"] for d in stored] == ["Vendor A phantoms"]
    ds = queue_user.get(f"/datasets/{stored[0]['id']}")
    assert any(f"#{ds['id']} Vendor A phantoms** is valid" in s for s in texts(at, "success"))
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Image/mask pairs"] == "20" and metrics["Classes"] == str(ds["num_classes"])
    assert metrics["Cases"] == str(ds["stats"]["cases"])
    table = at.dataframe[0].value
    assert table["Name"].tolist() == ["Vendor A phantoms"] and table["Pairs"].tolist() == [20]
    assert table["Class names"].tolist() == [", ".join(ds["class_names"])]
    # the gallery pages through every pair (9 per page), captioned with the index (and the key when listed)
    def captions():
        return [c for img in at.get("image") for c in (i.caption for i in img.proto.imgs)]

    keys = {s["index"]: s["key"] for s in ds["samples"]}
    want = [f"#{i}" + (f" · {keys[i]}" if i in keys else "") for i in range(20)]
    assert sorted(captions()) == sorted(want[:9])
    at.number_input(key=f"ds_page_{ds['id']}").set_value(3).run()
    no_exceptions(at)
    assert sorted(captions()) == sorted(want[18:])
    metrics = {m.label: m.value for m in at.metric}
    assert ds["stats"]["groups"] == ds["stats"]["cases"] == 20 and metrics["Groups"] == "none"  # no groups.csv
    assert any("an experiment trains on about 14 pairs, validates on 2 and scores intra on 4" in c
               for c in texts(at, "caption"))
    legend = [m.value for m in at.markdown if "sikd-class-legend" in m.value]
    assert legend and all(name in legend[0] for name in ds["class_names"][1:])
    # class pixel fractions as a bar chart with the API's numbers
    traces = plotly_traces(at, "class_fractions")
    xs = [x for trace in traces for x in trace["x"]]
    ys = [y for trace in traces for y in trace["y"]]
    assert xs == ds["class_names"]
    assert ys == [c["pixel_fraction"] for c in ds["stats"]["classes"]]
    # the bars wear the masks' class colours, the legend's
    from ui.formatting import CLASS_COLORS

    colours = {t["name"]: t["marker"]["color"] for t in traces}
    assert [colours[n] for n in ds["class_names"][1:]] == list(CLASS_COLORS[1:len(ds["class_names"])])
    assert all(CLASS_COLORS[k] in legend[0] for k in range(1, len(ds["class_names"])))


def test_a_repeated_upload_is_kept_with_a_warning_naming_the_first(dashboard, services, queue_user, zips):
    """Uploading the same archive twice: both kept, the second upload's report names the first dataset."""
    at = dashboard("datasets", url=services.queue.url, token=queue_user.token)
    at = upload(at, zips["vendor_b"], "vendor_b.zip", name="first B")
    assert not any("uploaded before" in w for w in texts(at, "warning"))
    at = upload(at, zips["vendor_b"], "vendor_b.zip", name="second B")
    no_exceptions(at)
    stored = queue_user.get("/datasets")["data"]
    assert [d["name"] for d in stored] == ["first B", "second B"]
    warned = [w for w in texts(at, "warning") if "The same data was uploaded before" in w]
    assert warned and f"**#{stored[0]['id']} first B** holds exactly these files" in warned[0]


def test_rejected_upload_shows_the_api_error_with_problems_and_files(dashboard, services, queue_user, broken_zip):
    expected = queue_user.call("POST", "/datasets", expect=422,
                               files={"file": ("bad.zip", broken_zip, "application/zip")})
    expected = expected.json() if hasattr(expected, "json") else expected
    at = dashboard("datasets", url=services.queue.url, token=queue_user.token)
    at = upload(at, broken_zip, "bad.zip")
    no_exceptions(at)
    errors = "\n".join(texts(at, "error"))
    assert "rejected; nothing was kept" in errors
    assert expected["detail"] in errors and "HTTP 422" in errors
    code = [c.value for c in at.code]
    assert "\n".join(expected["problems"]) in code and "\n".join(expected["files"]) in code
    assert expected["files"] == ["masks/case_02.png", "masks/case_03.png"]
    assert queue_user.get("/datasets")["count"] == 0


def test_list_select_and_delete_with_confirmation(dashboard, services, queue_user, queue_data):
    at = dashboard("datasets", url=services.queue.url, token=queue_user.token)
    no_exceptions(at)
    assert at.dataframe[0].value["ID"].tolist() == sorted(queue_data.values())
    at.selectbox(key="ds_selected").select(queue_data["vendor_b"]).run()
    assert any(t.value == f"#{queue_data['vendor_b']} vendor_b" for t in at.subheader)
    at.button(key="ds_delete").click().run()
    assert any("Delete dataset" in w for w in texts(at, "warning"))
    at.button(key="ds_delete_no").click().run()
    assert queue_user.get("/datasets")["count"] == 3
    at.button(key="ds_delete").click().run()
    at.button(key="ds_delete_yes").click().run()
    no_exceptions(at)
    assert sorted(d["id"] for d in queue_user.get("/datasets")["data"]) == sorted(
        [queue_data["vendor_a"], queue_data["vendor_c"]])
    assert at.dataframe[0].value["ID"].tolist() == sorted([queue_data["vendor_a"], queue_data["vendor_c"]])


def test_dataset_used_by_an_experiment_cannot_be_deleted_and_says_why(dashboard, services, queue_user, queue_data):
    from tests.ui.stack import tiny_spec

    exp = queue_user.post("/experiments", json=tiny_spec(queue_data["vendor_a"], [queue_data["vendor_b"]]))
    at = dashboard("datasets", url=services.queue.url, token=queue_user.token)
    at.selectbox(key="ds_selected").select(queue_data["vendor_a"]).run()
    at.button(key="ds_delete").click().run()
    at.button(key="ds_delete_yes").click().run()
    no_exceptions(at)
    errors = "\n".join(texts(at, "error"))
    assert "Not possible now" in errors and f"used by experiment(s) {exp['id']}" in errors
    assert queue_user.get("/datasets")["count"] == 3
    assert "No datasets yet" not in all_text(at)


def test_near_duplicates_by_content_are_warned_about(dashboard, services, queue_user):
    """The API compares the images' content at upload (not their names): shifted, noisy copies under other
    names are a warning on the dataset; the same images without the copies are not."""
    import io

    import numpy as np
    from PIL import Image

    from tests.service_helpers import zip_bytes
    from tests.unit.data.test_data_duplicates import copies, smooth_image

    rng = np.random.default_rng(7)
    originals = {f"case_{i:02d}": smooth_image(rng) for i in range(10)}

    def zipped(images: dict[str, np.ndarray]) -> bytes:
        def png(a: np.ndarray) -> bytes:
            buf = io.BytesIO()
            Image.fromarray(a).save(buf, format="PNG")
            return buf.getvalue()

        files = {}
        for k, img in images.items():
            files[f"d/images/{k}.png"], files[f"d/masks/{k}.png"] = png(img), png((img > 128).astype(np.uint8) * 255)
        return zip_bytes(files)

    dup = queue_user.upload(zipped({**originals, **copies(originals)}), "with copies")["id"]
    clean = queue_user.upload(zipped(originals), "distinct")["id"]
    at = dashboard("datasets", url=services.queue.url, token=queue_user.token)
    at.selectbox(key="ds_selected").select(dup).run()
    no_exceptions(at)
    [warning] = [w for w in texts(at, "warning") if "near-duplicates" in w]
    assert warning.startswith("3 pair(s) of images look like near-duplicates") and "case_00 ≈ case_00_again" in warning
    at.selectbox(key="ds_selected").select(clean).run()
    no_exceptions(at)
    assert not [w for w in texts(at, "warning") if "near-duplicates" in w]


def test_columns_and_full_size_view(dashboard, services, queue_user, queue_data, monkeypatch):
    """Thumbnails are small: fewer columns make them larger (one column shows full-size pictures), and any pair
    of the page opens at its own resolution (readable in fullscreen)."""
    from ui import client

    seen = record_requests(monkeypatch)
    ds = queue_data["vendor_a"]
    at = dashboard("datasets", url=services.queue.url, token=queue_user.token)
    at.selectbox(key="ds_selected").select(ds).run()
    def offered():
        return [o.split(" · ")[0] for o in at.selectbox(key=f"ds_full_{ds}").options]

    assert offered() == [f"#{i}" for i in range(9)]  # 3 columns x 3 rows
    at.select_slider(key="ds_cols").set_value(4).run()
    no_exceptions(at)
    assert offered() == [f"#{i}" for i in range(12)]
    at.number_input(key=f"ds_page_{ds}").set_value(2).run()
    seen.clear()
    at.selectbox(key=f"ds_full_{ds}").select(13).run()
    no_exceptions(at)
    assert f"/datasets/{ds}/samples/13.png?full=true" in seen
    assert any(i.caption.startswith("#13") and "full size" in i.caption for img in at.get("image") for i in img.proto.imgs)
    seen.clear()
    client.clear_cache()
    at.select_slider(key="ds_cols").set_value(1).run()
    no_exceptions(at)
    shown = [p for p in seen if "/samples/" in p]
    assert shown and all(p.endswith("?full=true") for p in shown)
