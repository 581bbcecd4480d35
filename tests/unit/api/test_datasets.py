"""Dataset uploads: real data accepted with statistics; every kind of bad archive rejected with the
problem and the files named, and nothing left behind (no row, no files)."""

from __future__ import annotations

import io
import json
import os
import stat
import struct
import zipfile

import numpy as np
import pytest

from tests.conftest import copy_polyp_pairs, polyp_names
from tests.service_helpers import png_bytes, storage_listing, tiny_spec, upload, zip_bytes, zip_folder

pytestmark = pytest.mark.timeout(120)


def grey(h: int = 24, w: int = 24, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (h, w), dtype=np.uint8)


def labels(h: int = 24, w: int = 24, k: int = 3) -> np.ndarray:
    m = np.zeros((h, w), np.uint8)
    for c in range(1, k):
        m[2 * c:2 * c + 6, 3:3 + 5 * c] = c
    return m


def folder_zip(n: int = 3, top: str | None = "ds", **overrides: bytes) -> bytes:
    """images/ + masks/ label maps; ``overrides`` replace or add entries (relative names)."""
    entries = {}
    for i in range(n):
        entries[f"images/case{i}.png"] = png_bytes(grey(seed=i))
        entries[f"masks/case{i}.png"] = png_bytes(labels())
    entries.update(overrides)
    return zip_bytes({f"{top}/{k}" if top else k: v for k, v in entries.items()})


@pytest.fixture
def before(client, settings):
    """The storage listing before the upload (compared after a rejection)."""
    return storage_listing(settings)


def assert_rejected(client, headers, settings, before, response, status, *words, files=()):
    assert response.status_code == status, response.text
    body = response.json()
    detail = body["detail"]
    text = detail + " " + " ".join(body.get("problems", []))
    for w in words:
        assert w in text, f"{w!r} not in {body}"
    for f in files:
        assert any(f in x for x in body.get("files", [])), f"{f!r} not in files {body.get('files')}"
        assert f in text, f"{f!r} not named in {body}"
    assert client.get("/datasets", headers=headers).json()["count"] == 0
    assert storage_listing(settings) == before
    return body


# ------------------------------------------------------------------------------------------ accepted
def test_upload_real_polyp_pairs(client, alice, settings, tmp_path):
    kvasir = polyp_names("kvasir-seg", 4)
    folder = copy_polyp_pairs(tmp_path / "kvasir", "kvasir-seg", kvasir)
    r = upload(client, alice, zip_folder(folder, top="kvasir"), name="Kvasir sample")
    assert r.status_code == 201, r.text
    ds = r.json()
    assert ds["name"] == "Kvasir sample" and ds["format"] == "folder" and ds["num_pairs"] == 4
    assert ds["class_names"] == ["background", "foreground"] and ds["in_channels"] == 3
    st = ds["stats"]
    assert st["pairs"] == 4 and st["mask_mode"] == "binary" and st["image_modes"]["rgb"] == 4
    assert sum(st["image_sizes"].values()) == 4
    fg = st["classes"][1]
    assert 0 < fg["pixel_fraction"] < 1 and fg["images_present"] == 4
    assert [s["key"] for s in ds["samples"]] == [os.path.splitext(n)[0] for n in kvasir]
    thumb = client.get(ds["samples"][0]["url"], headers=alice)
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/png"
    from PIL import Image

    im = Image.open(io.BytesIO(thumb.content))
    assert max(im.size) == settings.thumbnail_size and im.mode == "RGB"
    # the full-size view: the image's own resolution (Kvasir images are larger than a thumbnail)
    full = Image.open(io.BytesIO(client.get(ds["samples"][0]["url"], params={"full": "true"}, headers=alice).content))
    original = Image.open(settings.datasets_dir / str(ds["id"]) / "kvasir" / "images" / kvasir[0])
    assert full.size == original.size and max(full.size) > settings.thumbnail_size
    # The stored copy lives under datasets/<id>/ and its manifest is relative to it.
    assert (settings.datasets_dir / str(ds["id"]) / "kvasir" / "images" / kvasir[0]).is_file()
    assert not list(settings.tmp_dir.iterdir())
    got = client.get(f"/datasets/{ds['id']}", headers=alice).json()
    assert got["stats"] == st
    assert client.get(f"/datasets/{ds['id']}/samples/4.png", headers=alice).status_code == 404


def test_upload_nnunet_layout_with_default_name(client, alice):
    meta = {"channel_names": {"0": "CT"}, "labels": {"background": 0, "liver": 1, "tumour": 2},
            "numTraining": 2, "file_ending": ".png"}
    entries = {"Dataset001_Liver/dataset.json": json.dumps(meta).encode()}
    for c in ("liver_001", "liver_002"):
        entries[f"Dataset001_Liver/imagesTr/{c}_0000.png"] = png_bytes(grey())
        entries[f"Dataset001_Liver/labelsTr/{c}.png"] = png_bytes(labels(k=3))
    r = client.post("/datasets", files={"file": ("liver.zip", zip_bytes(entries), "application/zip")}, headers=alice)
    assert r.status_code == 201, r.text
    ds = r.json()
    assert ds["name"] == "liver" and ds["format"] == "nnunet"
    assert ds["class_names"] == ["background", "liver", "tumour"] and ds["num_pairs"] == 2


def test_list_paginates_and_delete_removes_row_and_files(client, alice, settings, phantom_zips):
    ids = [upload(client, alice, phantom_zips["vendor_b"], name=f"b{i}").json()["id"] for i in range(3)]
    page = client.get("/datasets?skip=1&limit=1", headers=alice).json()
    assert page["count"] == 3 and [d["id"] for d in page["data"]] == [ids[1]]
    assert client.get("/datasets?limit=0", headers=alice).status_code == 422
    assert client.delete(f"/datasets/{ids[0]}", headers=alice).status_code == 204
    assert not (settings.datasets_dir / str(ids[0])).exists()
    assert client.get(f"/datasets/{ids[0]}", headers=alice).status_code == 404
    assert client.get("/datasets", headers=alice).json()["count"] == 2


def test_a_repeated_upload_is_kept_and_names_the_earlier_dataset(client, alice, bob, phantom_zips):
    """The same archive twice: both kept (201), the second names the first (by content, not by name); another
    user's copy is not named to alice; different data names nothing."""
    first = upload(client, alice, phantom_zips["vendor_b"], name="b").json()
    assert first["duplicates"] == []
    upload(client, bob, phantom_zips["vendor_b"], name="bobs b")
    again = upload(client, alice, phantom_zips["vendor_b"], name="b again")
    assert again.status_code == 201, again.text
    assert again.json()["duplicates"] == [{"id": first["id"], "name": "b"}]
    assert client.get(f"/datasets/{again.json()['id']}", headers=alice).json()["duplicates"] == again.json()["duplicates"]
    other = upload(client, alice, phantom_zips["vendor_a"], name="a").json()
    assert other["duplicates"] == []


def test_numbering_covers_every_key_not_the_thumbnails():
    from sikd_service.datasets import numbering

    keys = [str(i) for i in sorted(range(1, 613), key=str)]  # "1", "10", "100", ... as a folder lists them
    assert numbering(keys) == {"first": 1, "last": 612, "numbered": 612}
    assert numbering(["frame_0007", "frame_0012", "overview"]) == {"first": 7, "last": 12, "numbered": 2}
    assert numbering(["a", "b"]) is None


def test_delete_in_use_is_409_naming_the_experiments(client, alice, datasets, jobs):
    r = client.post("/experiments", json=tiny_spec(datasets, name="uses-it"), headers=alice)
    assert r.status_code == 201, r.text
    exp_id = r.json()["id"]
    r = client.delete(f"/datasets/{datasets['vendor_b']}", headers=alice)
    assert r.status_code == 409
    assert f"{exp_id} ('uses-it')" in r.json()["detail"] and r.json()["experiments"] == [exp_id]
    assert client.delete(f"/experiments/{exp_id}", headers=alice).status_code == 204
    assert client.delete(f"/datasets/{datasets['vendor_b']}", headers=alice).status_code == 204


# ------------------------------------------------------------------------------------------ rejected
def test_reject_not_a_zip(client, alice, settings, before):
    r = upload(client, alice, b"this is not a zip archive at all" * 10, filename="data.zip")
    assert_rejected(client, alice, settings, before, r, 400, "not a zip archive")


def test_reject_no_pairs(client, alice, settings, before):
    data = zip_bytes({"ds/images/readme.txt": b"x", "ds/masks/notes.txt": b"y"})
    assert_rejected(client, alice, settings, before, upload(client, alice, data), 422, "no image/mask pairs")


def test_reject_unmatched_names_listing_them(client, alice, settings, before):
    data = folder_zip(**{"images/lonely.png": png_bytes(grey()), "masks/orphan.png": png_bytes(labels())})
    r = upload(client, alice, data)
    assert_rejected(client, alice, settings, before, r, 422, "without a mask", "without an image",
                    files=["images/lonely.png", "masks/orphan.png"])


def test_reject_unreadable_image_naming_it(client, alice, settings, before):
    data = folder_zip(**{"images/case1.png": b"\x89PNG\r\n\x1a\n garbage"})
    r = upload(client, alice, data)
    assert_rejected(client, alice, settings, before, r, 422, "could not be read", files=["images/case1.png"])


def test_reject_mask_size_mismatch_naming_it(client, alice, settings, before):
    data = folder_zip(**{"masks/case2.png": png_bytes(labels(20, 24))})
    r = upload(client, alice, data)
    assert_rejected(client, alice, settings, before, r, 422, "do not match the size", "24x20", "24x24",
                    files=["masks/case2.png"])


def test_reject_inconsistent_class_values(client, alice, settings, before):
    binary = (labels() > 0).astype(np.uint8) * 255
    data = folder_zip(**{"masks/case0.png": png_bytes(binary)})
    r = upload(client, alice, data)
    assert_rejected(client, alice, settings, before, r, 422, "inconsistent class values",
                    files=["masks/case0.png", "masks/case1.png"])


def test_reject_class_values_beyond_the_declared_classes(client, alice, settings, before):
    data = folder_zip(**{"classes.json": json.dumps(["background", "a"]).encode()})
    r = upload(client, alice, data)
    assert_rejected(client, alice, settings, before, r, 422, "label values must be < 2",
                    files=["masks/case0.png"])


@pytest.mark.parametrize("name,why", [("ds/../evil.png", "leaves the archive"),
                                      ("../../evil.png", "leaves the archive"),
                                      ("/etc/evil.png", "absolute path"),
                                      ("C:/evil.png", "absolute path")])
def test_reject_paths_escaping_the_archive(client, alice, settings, before, name, why):
    data = zip_bytes({"ds/images/a.png": png_bytes(grey()), "ds/masks/a.png": png_bytes(labels()),
                      name: b"evil"})
    r = upload(client, alice, data)
    assert_rejected(client, alice, settings, before, r, 400, "unsafe entries", why, files=[name])
    assert not (settings.storage_dir.parent / "evil.png").exists()


def test_reject_symlinks(client, alice, settings, before):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("ds/images/a.png", png_bytes(grey()))
        zf.writestr("ds/masks/a.png", png_bytes(labels()))
        link = zipfile.ZipInfo("ds/images/b.png")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(link, "/etc/passwd")
    r = upload(client, alice, buf.getvalue())
    assert_rejected(client, alice, settings, before, r, 400, "symbolic link", files=["ds/images/b.png"])


def test_reject_too_many_files(client, alice, settings, before):
    settings.max_archive_files = 5
    r = upload(client, alice, folder_zip(n=3))
    assert_rejected(client, alice, settings, before, r, 413, "holds 6 files", "limit is 5")


def test_reject_upload_over_max_upload_bytes(client, alice, settings, before):
    settings.max_upload_bytes = 20_000
    data = folder_zip(n=3, **{"images/big.bin": os.urandom(40_000)})
    r = upload(client, alice, data)
    assert_rejected(client, alice, settings, before, r, 413, "larger than the limit")


def test_reject_over_uncompressed_limit(client, alice, settings, before):
    settings.max_uncompressed_bytes = 1000
    r = upload(client, alice, folder_zip(n=3))
    assert_rejected(client, alice, settings, before, r, 413, "would expand to", "limit is 1000")


def test_reject_compression_ratio_bomb(client, alice, settings, before):
    data = folder_zip(n=2, **{"images/bomb.png": b"\0" * (8 * 1024 * 1024)})
    assert len(data) < 100_000  # 8 MiB of zeros deflate to a few KiB
    r = upload(client, alice, data)
    assert_rejected(client, alice, settings, before, r, 413, "compression ratio", files=["ds/images/bomb.png"])


def test_reject_entry_lying_about_its_size(client, alice, settings, before):
    """A central directory declaring fewer bytes than the entry holds: stopped during extraction."""
    data = bytearray(folder_zip(n=2))
    name = b"ds/images/case0.png"
    real = zipfile.ZipFile(io.BytesIO(bytes(data))).getinfo(name.decode()).file_size
    pos = data.find(b"PK\x01\x02")  # central directory entries; the name starts at offset 46
    while data[pos + 46:pos + 46 + len(name)] != name:
        pos = data.find(b"PK\x01\x02", pos + 4)
    struct.pack_into("<I", data, pos + 24, real // 4)  # the declared uncompressed size
    r = upload(client, alice, bytes(data))
    assert_rejected(client, alice, settings, before, r, 400, "corrupt")


def test_reject_wrong_field_and_missing_file(client, alice, settings, before):
    r = client.post("/datasets", files={"upload": ("a.zip", b"x", "application/zip")}, headers=alice)
    assert_rejected(client, alice, settings, before, r, 400, "unexpected file field 'upload'")
    r = client.post("/datasets", data={"name": "nothing"}, headers=alice)
    assert r.status_code in (415, 422)
    r = client.post("/datasets", content=b"{}", headers={**alice, "Content-Type": "application/json"})
    assert_rejected(client, alice, settings, before, r, 415, "multipart/form-data")


@pytest.mark.parametrize("where", ["absolute", "relative"])
def test_reject_json_pointing_outside_the_archive(client, alice, settings, before, tmp_path, where):
    """A datalist may not make the server read files outside the upload (e.g. /etc/passwd, /dev/zero)."""
    outside = tmp_path / "secret"
    outside.mkdir()
    (outside / "img.png").write_bytes(png_bytes(grey()))
    (outside / "lab.png").write_bytes(png_bytes(labels()))
    ref = str(outside / "img.png") if where == "absolute" else "../../secret/img.png"
    datalist = {"labels": ["background", "a", "b"], "training": [{"image": ref, "label": "lab.png"}]}
    data = zip_bytes({"ds/datalist.json": json.dumps(datalist).encode(), "ds/lab.png": png_bytes(labels())})
    r = upload(client, alice, data)
    assert_rejected(client, alice, settings, before, r, 400, "outside the archive", ref, files=["ds/datalist.json"])


def test_unauthenticated_upload_is_refused_before_reading(client, settings, before, phantom_zips):
    r = client.post("/datasets", files={"file": ("a.zip", phantom_zips["vendor_b"], "application/zip")})
    assert r.status_code == 401
    assert storage_listing(settings) == before
