"""Hostile input: integers past 64 bits, loose types, archive names that cannot be extracted, JSON nested
beyond the parser, images and volumes whose headers claim more than may be decoded, specs no worker can
run. Every case is a 4xx naming the problem, never a 5xx, and nothing is stored."""

from __future__ import annotations

import gzip
import io
import struct
import time
import zipfile
import zlib

import numpy as np
import pytest

from tests.service_helpers import png_bytes, tiny_spec, upload, zip_bytes

pytestmark = [pytest.mark.slow(seconds=21), pytest.mark.timeout(120)]

BIG = 2**63  # one past the largest 64-bit id
HUGE = 10**30


def grey(h: int = 24, w: int = 24, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (h, w), dtype=np.uint8)


def labels(h: int = 24, w: int = 24) -> np.ndarray:
    m = np.zeros((h, w), np.uint8)
    m[4:12, 4:14] = 1
    return m


def folder_zip(**extra: bytes) -> bytes:
    entries = {}
    for i in range(3):
        entries[f"ds/images/case{i}.png"] = png_bytes(grey(seed=i))
        entries[f"ds/masks/case{i}.png"] = png_bytes(labels())
    entries.update(extra)
    return zip_bytes(entries)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_claiming(width: int, height: int, rows: int | None = None) -> bytes:
    """A grey PNG whose header says ``width x height``; ``rows`` rows of zeros are really compressed (all of
    them by default: a real decompression bomb that is a few hundred kB on disk)."""
    rows = height if rows is None else rows
    comp = zlib.compressobj(9)
    row = b"\x00" * (width + 1)
    idat = b"".join(comp.compress(row) for _ in range(rows)) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def nifti_gz_claiming(shape: tuple[int, ...]) -> bytes:
    """A gzipped NIfTI whose header claims ``shape`` (uint8) followed by a little zero data."""
    import nibabel as nib

    hdr = nib.Nifti1Header()
    hdr.set_data_shape(shape)
    hdr.set_data_dtype(np.uint8)
    raw = hdr.binaryblock + b"\x00" * 4 + b"\x00" * 65536
    return gzip.compress(raw, compresslevel=1)


# ----------------------------------------------------------------------------- integers past 64 bits
@pytest.mark.parametrize("method,path", [
    ("get", "/experiments/{n}"), ("get", "/experiments/{n}/metrics"), ("post", "/experiments/{n}/cancel"),
    ("delete", "/experiments/{n}"), ("get", "/datasets/{n}"), ("delete", "/datasets/{n}"),
    ("get", "/datasets/1/samples/{n}.png"), ("get", "/models/{n}"), ("get", "/models/{n}/download"),
    ("post", "/users/{n}/tokens"), ("get", "/experiments?skip={n}"), ("get", "/models?experiment_id={n}"),
    ("get", "/datasets?skip={n}"), ("get", "/users?skip={n}"),
])
@pytest.mark.parametrize("n", [BIG, HUGE, -BIG - 1])
def test_out_of_range_integers_are_422(client, admin, method, path, n):
    r = getattr(client, method)(path.format(n=n), headers=admin)
    assert r.status_code == 422, r.text
    assert "less than or equal" in r.text or "greater than or equal" in r.text


def id_routes(app) -> list[tuple[str, str]]:
    """(method, path template) of every operation with an id in its path, from the OpenAPI schema."""
    out = []
    for path, ops in app.openapi()["paths"].items():
        if "_id}" in path:
            out += [(method, path) for method in ops]
    return out


def fill(path: str, n: int) -> str:
    """``path`` with every id set to ``n`` (sample index 0, file path x) and the required query parameters."""
    url = path.replace("{index}", "0").replace("{path}", "x")
    for name in ("experiment_id", "dataset_id", "model_id", "user_id", "other_id", "sweep_id"):
        url = url.replace("{" + name + "}", str(n))
    return url + ("?dataset=a&key=b" if url.endswith("view.png") else "")


@pytest.mark.parametrize("n,status", [(2**31, 404), (2**63 - 1, 404), (2**63, 422)])
def test_every_id_route_answers_404_or_422_at_the_64_bit_edges(client, admin, n, status):
    """On SQLite AND PostgreSQL (the ``settings`` fixture): 2^31 and 2^63-1 are ids like any other (BIGINT
    columns, migration 0005; a 32-bit column made them a 500 NumericValueOutOfRange), 2^63 is out of range."""
    routes = id_routes(client.app)
    assert len(routes) >= 20, routes
    for method, path in routes:
        url = fill(path, n)
        body = {"json": {"tags": []}} if method == "patch" else {}  # a valid body: the id alone is at stake
        r = client.request(method.upper(), url, headers=admin, **body)
        assert r.status_code == status, (method, url, r.text)
        assert isinstance(r.json()["detail"], str)
    for url in (f"/models?experiment_id={n}", f"/experiments?skip={n}", f"/datasets?skip={n}"):
        assert client.get(url, headers=admin).status_code == (200 if status == 404 else 422), url


def test_spec_dataset_ids_at_the_64_bit_edges(client, alice, datasets, jobs):
    for n in (2**31, 2**63 - 1):
        r = client.post("/experiments", json=tiny_spec(datasets, train_dataset=n), headers=alice)
        assert r.status_code == 422 and f"unknown dataset id(s): {n}" in r.json()["detail"], r.text
    assert not jobs


@pytest.mark.parametrize("raw", ["%201", "1%20", "+1", "01", "%EF%BC%91", "%D9%A1", "1_0", "1.0", "0x1"])
def test_ids_are_ascii_digits_only(client, admin, raw):
    """A leading space, a plus sign, a leading zero, full-width or Arabic-Indic digits: Python's ``int()``
    reads them all, and pydantic's lax mode used to; an id is plain ASCII digits."""
    for url in (f"/users/{raw}/tokens", f"/experiments/{raw}", f"/experiments?skip={raw}",
                f"/models?experiment_id={raw}"):
        r = client.request("POST" if url.endswith("tokens") else "GET", url, headers=admin)
        assert r.status_code == 422, (url, r.text)
        assert "ASCII digits" in r.json()["detail"] or "valid integer" in r.json()["detail"], r.text


@pytest.mark.parametrize("value", ["yes", "true", 1, "1", "on"])
def test_is_admin_is_a_strict_boolean(client, admin, value):
    r = client.post("/users", json={"name": "mallory", "is_admin": value}, headers=admin)
    assert r.status_code == 422 and "is_admin" in r.json()["detail"], r.text
    assert "mallory" not in client.get("/users", headers=admin).text
    r = client.post("/users", json={"name": "mallory", "is_admin": False}, headers=admin)
    assert r.status_code == 201 and r.json()["user"]["is_admin"] is False


@pytest.mark.parametrize("key,value,words", [
    ("seeds", [BIG], "seeds.0"), ("seeds", [HUGE], "seeds.0"), ("split_seed", HUGE, "split_seed"),
    ("epochs", HUGE, "epochs"), ("steps_per_epoch", 10**12, "steps_per_epoch"),
    ("train_dataset", BIG, "not an id"), ("train_dataset", HUGE, "not an id"),
    ("epochs", True, "epochs"), ("batch_size", "4", "batch_size"), ("lr", True, "lr"), ("augment", "yes", "augment"),
    ("amp", 1, "amp"), ("network_kwargs", {"widths": [4, 8, 16], "skip_connections": "maybe"}, "skip_connections"),
    ("network_kwargs", {"widths": ["4", 8, 16]}, "widths"),
    ("train_dataset", " 4", "not an id"), ("train_dataset", "05", "not an id"),
    ("train_dataset", "\u0664", "not an id"), ("train_dataset", "+4", "not an id"),
])
def test_spec_integers_and_types_are_strict(client, alice, datasets, jobs, key, value, words):
    spec = tiny_spec(datasets, **{key: value})
    r = client.post("/experiments", json=spec, headers=alice)
    assert r.status_code == 422, r.text
    assert words in r.json()["detail"]
    assert client.get("/experiments", headers=alice).json()["count"] == 0 and not jobs


def test_sample_index_beyond_64_bits_and_strict_ids_still_work(client, alice, datasets):
    ds = datasets["vendor_a"]
    assert client.get(f"/datasets/{ds}/samples/{BIG - 1}.png", headers=alice).status_code == 404
    r = client.post("/experiments", json=tiny_spec(datasets, train_dataset=str(ds)), headers=alice)
    assert r.status_code == 201, r.text


# ----------------------------------------------------------------------------- archives
def test_entry_name_over_255_bytes_is_400(client, alice, settings):
    r = upload(client, alice, folder_zip(**{"ds/images/" + "a" * 300 + ".png": png_bytes(grey())}))
    assert r.status_code == 400, r.text
    assert "longer than 255 bytes" in r.json()["detail"]


def test_file_beside_folder_of_same_name_is_400(client, alice):
    r = upload(client, alice, folder_zip(**{"ds/extra": b"x", "ds/extra/y.txt": b"y"}))
    assert r.status_code == 400, r.text
    assert "a file and a folder of the same name" in r.json()["detail"] and "ds/extra" in r.json()["files"]


@pytest.mark.parametrize("name", ["datalist.json", "ds/dataset.json"])
def test_json_nested_beyond_the_parser_is_4xx(client, alice, name):
    deep = b"[" * 100_000 + b"]" * 100_000
    r = upload(client, alice, folder_zip(**{name: deep}))
    assert r.status_code in (400, 422), r.text
    assert "nested too deeply" in r.text


def test_many_entries_are_refused_quickly(client, alice, settings):
    """100 001 tiny entries, the last a duplicate: refused on the entry count at once, and with a higher limit
    on the duplicate, still in seconds (the quadratic check took minutes)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf, pytest.warns(UserWarning, match="Duplicate"):
        for i in range(100_001):
            zf.writestr(f"d/{i % 100_000}", b"")
    t = time.perf_counter()
    r = upload(client, alice, buf.getvalue())
    took = time.perf_counter() - t
    assert r.status_code == 413, r.text
    assert "holds 100001 files and folders" in r.json()["detail"]
    assert took < 10, took
    from sikd_service.ingest import declared_entries

    path = settings.tmp_dir / "many.zip"
    path.write_bytes(buf.getvalue())
    assert declared_entries(path) == 100_001  # from the zip64 end record, no entry parsed
    path.unlink()
    # just under the limit, all duplicates checked: still fast (a quadratic check took minutes)
    settings.max_archive_files = 200_000
    t = time.perf_counter()
    r = upload(client, alice, buf.getvalue())
    assert r.status_code == 400 and "the same file more than once: d/0" in r.json()["detail"], r.text
    assert time.perf_counter() - t < 10


def test_an_archive_declaring_fewer_entries_than_it_holds_is_still_counted(client, alice, settings):
    data = bytearray(folder_zip())  # 3 pairs: 6 files (no folder entries)
    eocd = data.rfind(b"PK\x05\x06")
    data[eocd + 8:eocd + 12] = (1).to_bytes(2, "little") * 2  # the end record now claims 1 entry
    settings.max_archive_files = 5
    r = upload(client, alice, bytes(data))
    assert r.status_code == 413 and "holds 6 files and folders" in r.json()["detail"], r.text


# ----------------------------------------------------------------------------- decode limits
def test_png_claiming_100000_squared_is_422_on_upload(client, alice):
    r = upload(client, alice, folder_zip(**{"ds/images/case0.png": png_claiming(100_000, 100_000, rows=1)}))
    assert r.status_code == 422, r.text
    assert "too large to decode" in r.text and "case0.png" in r.text


def test_png_bomb_12000_squared_is_refused_before_decoding(client, alice, settings):
    bomb = png_claiming(12_000, 12_000)
    assert len(bomb) < 400_000
    r = upload(client, alice, folder_zip(**{"ds/images/case1.png": bomb}))
    assert r.status_code == 422, r.text
    assert "144000000 pixels, more than the limit of 16777216 pixels" in r.text


def test_nifti_claiming_a_huge_volume_is_refused(client, alice):
    entries = {"d/dataset.json": b'{"labels": {"background": 0, "x": 1}, "channel_names": {"0": "CT"}, '
                                 b'"numTraining": 1, "file_ending": ".nii.gz"}',
               "d/imagesTr/c_0000.nii.gz": nifti_gz_claiming((1024, 1024, 256)),
               "d/labelsTr/c.nii.gz": nifti_gz_claiming((1024, 1024, 256))}
    r = upload(client, alice, zip_bytes(entries))
    assert r.status_code == 422, r.text
    assert "too large to decode" in r.text and "voxels" in r.text


def test_decode_limits_follow_the_settings(tmp_path):
    from sikd_core.data.io import DECODE_LIMITS, UnreadableFileError, read_image, set_decode_limits

    p = tmp_path / "x.png"
    p.write_bytes(png_bytes(grey(40, 50)))
    old = DECODE_LIMITS.max_pixels
    try:
        set_decode_limits(max_pixels=1999)
        with pytest.raises(UnreadableFileError, match="50x40 = 2000 pixels"):
            read_image(p)
        set_decode_limits(max_pixels=2000)
        assert read_image(p).shape == (40, 50, 1)
    finally:
        set_decode_limits(max_pixels=old)


# ----------------------------------------------------------------------------- specs no worker can run
@pytest.mark.parametrize("override,words", [
    ({"network_kwargs": {"widths": [65536] * 5}}, "SIKD_MAX_MODEL_PARAMETERS"),
    ({"image_size": 4096, "batch_size": 1024}, "SIKD_MAX_TRAINING_MEMORY_BYTES"),
    ({"steps_per_epoch": 10**9}, "SIKD_MAX_TRAINING_STEPS"),
])
def test_specs_beyond_any_worker_are_refused(client, alice, datasets, jobs, override, words):
    t = time.perf_counter()
    r = client.post("/experiments", json=tiny_spec(datasets, **override), headers=alice)
    assert r.status_code == 422, r.text
    assert words in r.json()["detail"] and "too large to run" in r.json()["detail"]
    assert time.perf_counter() - t < 10
    assert client.get("/experiments", headers=alice).json()["count"] == 0 and not jobs


@pytest.mark.parametrize("override,words", [
    ({"network_kwargs": {"widths": [8] * 40}}, "widths has 40 levels; at most 13"),
    ({"network_kwargs": {"widths": [8] * 2000}}, "widths has 2000 levels; at most 13"),
    ({"network_kwargs": {"widths": [8] * 13}}, "needs inputs of at least 4096 px"),
    ({"network": "attention_unet", "network_kwargs": {"channels": [8] * 40}}, "channels has 40 levels"),
    ({"network": "swin_unetr", "network_kwargs": {"depths": [2000, 2, 2, 2]}}, "at most 32 blocks per stage"),
])
def test_absurd_depths_are_refused_early(client, alice, datasets, jobs, override, words):
    """A 40-level U-Net was a 500 (ValueError in the cost estimate); 2 000 levels held a thread 24 s first."""
    t = time.perf_counter()
    r = client.post("/experiments", json=tiny_spec(datasets, **override), headers=alice)
    assert r.status_code == 422, r.text
    assert words in r.json()["detail"] and len(r.json()["detail"]) < 1000, r.text
    assert time.perf_counter() - t < 2
    assert not jobs


def test_cost_limits_are_settings(client, alice, datasets, settings):
    settings.max_training_steps = 3  # tiny_spec: 2 epochs x 3 stages x 2 steps
    r = client.post("/experiments", json=tiny_spec(datasets), headers=alice)
    assert r.status_code == 422 and "SIKD_MAX_TRAINING_STEPS" in r.text
    assert r.json()["cost"]["total_steps"] > 3
    settings.max_training_steps = 10_000
    assert client.post("/experiments", json=tiny_spec(datasets), headers=alice).status_code == 201


# ----------------------------------------------------------------------------- smaller things
def test_ids_are_not_reused_after_a_delete(client, alice, phantom_zips):
    first = upload(client, alice, phantom_zips["vendor_b"], name="one").json()["id"]
    assert client.delete(f"/datasets/{first}", headers=alice).status_code == 204
    second = upload(client, alice, phantom_zips["vendor_b"], name="two").json()["id"]
    assert second > first  # SQLite without AUTOINCREMENT would hand out the same id again
    assert client.get(f"/datasets/{first}", headers=alice).status_code == 404


def test_sixteen_bit_mask_with_values_to_299_is_refused_with_a_reason(client, alice):
    mask = np.zeros((24, 24), np.uint16)
    mask[2:20, 2:20] = np.arange(18 * 18).reshape(18, 18) % 300
    r = upload(client, alice, folder_zip(**{"ds/masks/case1.png": png_bytes(mask)}))
    assert r.status_code == 422, r.text
    body = r.json()
    assert "label value 299 is too large" in body["detail"] and "16-bit" in body["detail"]
    assert body["files"] == ["masks/case1.png"]


def test_upload_without_a_file_name_is_read_as_the_file(client, alice):
    r = client.post("/datasets", files={"file": ("", folder_zip(), "application/zip")}, data={"name": "nameless"},
                    headers=alice)
    assert r.status_code == 201, r.text
    assert r.json()["name"] == "nameless"


@pytest.mark.parametrize("name", ["evil\x00name", "line\nbreak", "bell\x07", "<script>alert(1)</script>",
                                  "rtl\u202eoverride"])
def test_dataset_names_with_control_characters_or_markup_are_refused(client, alice, name):
    r = upload(client, alice, folder_zip(), name=name)
    assert r.status_code == 422, r.text
    assert "not allowed" in r.json()["detail"]
    assert client.get("/datasets", headers=alice).json()["count"] == 0


def test_errors_do_not_show_server_paths(client, alice, settings):
    r = upload(client, alice, folder_zip(**{"ds/images/case0.png": b"not a png"}))
    assert r.status_code == 422, r.text
    assert str(settings.storage_dir) not in r.text and "/tmp/" not in r.text
    assert "images/case0.png" in r.text
    h = client.get("/health")
    assert str(settings.storage_dir) not in h.text and str(settings.broker_dir) not in h.text


@pytest.mark.parametrize("path", ["/datasets", "/models/{model}/predict"])
def test_a_5000_character_multipart_boundary_is_400(client, alice, path):
    boundary = "b" * 5000
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.zip"\r\n\r\nxx\r\n'
            f"--{boundary}--\r\n").encode()
    url = path.format(model=model_id(client, alice)) if "{model}" in path else path
    r = client.post(url, content=body, headers={**alice, "Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert r.status_code == 400, r.text
    assert "Boundary length 5000" in r.json()["detail"]


def model_id(client, alice) -> int:
    """A stored model of alice's (a tiny untrained U-Net: enough to reach the upload)."""
    from sikd_core.inference import save_bundle
    from sikd_core.methods.plan import PlannedStage
    from sikd_core.models import create_model
    from sikd_service import crud
    from sikd_service.config import get_settings
    from sikd_service.db import session_scope

    settings = get_settings()
    with session_scope(settings) as db:
        user = crud.get_user_by_name(db, name="alice")
        plan = [PlannedStage("baseline", 0, "plain", "baseline", "baseline", None, 1, "unet")]
        exp = crud.create_experiment(db, owner=user, name="m", spec={}, plan=plan, datasets=[])
        db.flush()
        info = {"network": "unet", "network_kwargs": {"widths": [4, 8]}, "in_channels": 1, "num_classes": 2,
                "image_size": [32, 32], "class_names": ["background", "fg"], "method": "baseline", "seed": 0}
        save_bundle(settings.storage_dir / "m.pt", create_model("unet", 1, 2, widths=[4, 8]), **info)
        return crud.create_model_row(db, stage=exp.stages[0], owner_id=user.id, name="m", path="m.pt", info=info,
                                     size_bytes=1).id


def read_only(path):
    """Make ``path`` really unwritable: ``chattr +i`` for root (whom permissions do not stop), else chmod."""
    import os
    import shutil
    import subprocess

    if os.geteuid() != 0:
        path.chmod(0o555)
        return lambda: path.chmod(0o755)
    if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", str(path)]).returncode != 0:
        pytest.skip("running as root without chattr: cannot make a folder read-only")
    return lambda: subprocess.run(["chattr", "-i", str(path)], check=True)


@pytest.mark.parametrize("folder", ["tmp", "datasets"])
def test_uploads_into_read_only_storage_are_503_and_store_nothing(client, alice, settings, phantom_zips, folder):
    from tests.service_helpers import storage_listing

    target = settings.storage_dir / folder
    target.mkdir(exist_ok=True)
    before = storage_listing(settings)
    undo = read_only(target)
    try:
        r = upload(client, alice, phantom_zips["vendor_b"], name="ro")
    finally:
        undo()
    assert r.status_code == 503, r.text
    assert "cannot write to its storage" in r.json()["detail"] and "nothing was stored" in r.json()["detail"]
    assert str(settings.storage_dir) not in r.text
    assert client.get("/datasets", headers=alice).json()["count"] == 0
    assert storage_listing(settings) == before
    assert upload(client, alice, phantom_zips["vendor_b"], name="rw").status_code == 201  # writable again: works


def junk_zip(n: int, with_data: bool) -> bytes:
    """``n`` entries: random bytes under ``ds/junk/`` (after the 3 pairs of a valid dataset, ``with_data``)."""
    import os

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        if with_data:
            for i in range(3):
                zf.writestr(f"ds/images/case{i}.png", png_bytes(grey(seed=i)))
                zf.writestr(f"ds/masks/case{i}.png", png_bytes(labels()))
        for i in range(n - (6 if with_data else 0)):
            zf.writestr(f"ds/junk/{i}.bin", os.urandom(8))
    return buf.getvalue()


@pytest.mark.parametrize("with_data", [False, True])
def test_a_100000_entry_zip_of_junk_is_refused_before_extraction(client, alice, settings, with_data):
    """100 000 entries (the archive limit) of random bytes: it took 25 s to refuse (extracted first), and beside a
    valid dataset it was accepted with all its junk kept. Now refused from the names, at once, nothing kept."""
    from tests.service_helpers import storage_listing

    before = storage_listing(settings)
    t = time.perf_counter()
    r = upload(client, alice, junk_zip(100_000, with_data))
    took = time.perf_counter() - t
    assert r.status_code == 422, r.text
    # the message comes from the check of the names, before anything is extracted (the timing is a loose bound:
    # the upload of 100 000 entries itself takes seconds on a busy machine)
    assert "cannot be part of a dataset" in r.json()["detail"] and "SIKD_MAX_UNUSED_FILES" in r.json()["detail"]
    assert took < 20, took
    assert storage_listing(settings) == before
    assert client.get("/datasets", headers=alice).json()["count"] == 0


def test_a_few_extra_files_are_not_kept(client, alice, settings):
    """Under the limit the dataset is accepted, but only what it uses (and its JSON) is stored; a warning says
    how many files were left out."""
    r = upload(client, alice, junk_zip(6 + 20, with_data=True))
    assert r.status_code == 201, r.text
    body = r.json()
    assert any("20 file(s) not part of the dataset were not kept" in w for w in body["stats"]["warnings"]), body
    stored = settings.storage_dir / "datasets" / str(body["id"])
    kept = sorted(p.relative_to(stored).as_posix() for p in stored.rglob("*") if p.is_file())
    assert kept == [f"ds/{k}/case{i}.png" for k in ("images", "masks") for i in range(3)], kept
    assert client.get(f"/datasets/{body['id']}/samples/0.png", headers=alice).status_code == 200


def test_the_spec_checks_are_warmed_at_start(settings, caplog):
    """The first POST /experiments after a start took 1.3 s (PyTorch's meta kernels set up on first use); the
    API now does that in a background thread at start (``python bench/first_post.py`` measures the effect)."""
    import logging
    import threading

    from fastapi.testclient import TestClient

    from api.main import create_app

    with caplog.at_level(logging.INFO, logger="sikd.api"), TestClient(create_app(settings)) as c:
        assert c.get("/health").status_code == 200  # the API answers while it warms up
        for thread in [t for t in threading.enumerate() if t.name == "sikd-warm-up"]:
            thread.join(timeout=60)
    assert "warmed the spec checks in" in caplog.text, caplog.text
