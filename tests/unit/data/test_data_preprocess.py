"""Normalisation, prepare() and its cache, channel conversion, original-size access."""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import pytest
import torch

from sikd_core.data import io as dio
from sikd_core.data import iter_cases, load_case, load_dataset, load_original, normalize_intensity, prepare
from sikd_core.data import preprocess as pp
from sikd_core.errors import DatasetError

READERS = ("read_image", "read_mask_values", "read_volume", "read_label_volume")


@pytest.fixture
def decodes(monkeypatch) -> dict[str, int]:
    """Counts calls of every decoder in sikd_core.data.io."""
    counts = dict.fromkeys(READERS, 0)
    for name in READERS:
        real = getattr(dio, name)

        def wrapper(*a, _real=real, _name=name, **kw):
            counts[_name] += 1
            return _real(*a, **kw)

        monkeypatch.setattr(dio, name, wrapper)
    return counts


# ---------------------------------------------------------------- normalisation


def test_normalize_percentiles_and_range():
    x = np.arange(1000, dtype=np.float32).reshape(10, 10, 10)
    y = normalize_intensity(x)
    assert y.dtype == np.float32 and y.shape == x.shape and y.min() == 0.0 and y.max() == 1.0
    lo, hi = np.percentile(x, [0.5, 99.5])
    np.testing.assert_allclose(y[5, 5, 5], (555 - lo) / (hi - lo), rtol=1e-5)
    hot = np.tile(np.linspace(10, 20, 100, dtype=np.float32), (100, 1))
    hot[0, 0] = 1e6  # one hot pixel must not squash the rest
    out = normalize_intensity(hot)
    assert out[0, 0] == 1.0 and out[50].max() > 0.95 and out[50].min() < 0.05
    assert not normalize_intensity(np.full((4, 4, 3), 7.0)).any()
    with pytest.raises(ValueError):
        normalize_intensity(x, lower=50, upper=10)


def test_normalize_is_joint_over_channels():
    rng = np.random.default_rng(0)
    x = np.stack([rng.uniform(0, 100, (20, 20)), rng.uniform(0, 10, (20, 20))], -1)
    y = normalize_intensity(x, 0.0, 100.0)
    assert y[..., 0].max() == pytest.approx(1.0) and y[..., 1].max() < 0.11


def test_resize_labels_only_existing_values():
    lab = np.random.default_rng(0).integers(0, 5, (37, 53)).astype(np.uint8)
    for size in ((16, 16), (64, 80), (37, 53)):
        out = pp.resize_labels(lab, size)
        assert out.shape == size and set(np.unique(out)) <= set(np.unique(lab))


# ---------------------------------------------------------------- prepare + cache


def test_prepare_arrays_and_cache_hit_without_decoding(tmp_path, make, decodes):
    m = load_dataset(make.folder(tmp_path / "d", n=5, size=(24, 32), k=3))
    n_scan = dict(decodes)
    assert n_scan["read_image"] == 5 and n_scan["read_mask_values"] == 5  # the scan read each file once
    data = prepare(m, (16, 20), tmp_path / "cache")
    assert decodes["read_image"] == 10 and decodes["read_mask_values"] == 10  # prepare: once more each
    assert isinstance(data.images, np.memmap) and not data.images.flags.writeable
    assert data.images.shape == (5, 1, 16, 20) and data.images.dtype == np.float16
    assert data.labels.shape == (5, 16, 20) and data.labels.dtype == np.uint8
    assert set(np.unique(data.labels)) == {0, 1, 2} and len(data) == 5
    assert data.orig_shapes == [(24, 32)] * 5 and data.keys == [s.key for s in m.samples]
    assert data.indices == [0, 1, 2, 3, 4] and data.manifest is m and data.spacing == [None] * 5
    assert 0.0 <= float(data.images.min()) and float(data.images.max()) <= 1.0
    img_t, lab_t = data.tensors()
    assert img_t.dtype == torch.float32 and lab_t.dtype == torch.int64 and img_t.shape == (5, 1, 16, 20)
    files = sorted(p.name for p in data.path.iterdir())
    assert files == ["images.npy", "labels.npy", "meta.json"]

    again = prepare(m, (16, 20), tmp_path / "cache")
    assert decodes["read_image"] == 10 and decodes["read_mask_values"] == 10  # nothing decoded
    assert again.path == data.path
    np.testing.assert_array_equal(again.images, data.images)
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [data.path.name]  # no temp dirs left

    other = prepare(m, (16, 16), tmp_path / "cache", indices=[3, 1])
    assert other.path != data.path and other.keys == ["case03", "case01"] and other.indices == [3, 1]


def test_cache_invalidated_when_a_file_changes(tmp_path, make, decodes):
    d = make.folder(tmp_path / "d", n=3)
    m = load_dataset(d)
    first = prepare(m, (8, 8), tmp_path / "cache")
    mask = d / "masks" / "case01.png"
    make.png(mask, np.zeros((24, 32), np.uint8))
    st = os.stat(mask)
    os.utime(mask, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    before = decodes["read_image"]
    second = prepare(m, (8, 8), tmp_path / "cache")
    assert second.path != first.path and decodes["read_image"] == before + 3
    assert second.labels[1].max() == 0 and first.labels[1].max() > 0


def test_failed_prepare_leaves_nothing(tmp_path, make, monkeypatch):
    m = load_dataset(make.folder(tmp_path / "d", n=4))
    real, calls = dio.read_image, []

    def flaky(path):
        calls.append(path)
        if len(calls) == 3:
            raise dio.UnreadableFileError(path, "disk on fire")
        return real(path)

    monkeypatch.setattr(dio, "read_image", flaky)
    with pytest.raises(DatasetError, match="disk on fire"):
        prepare(m, (8, 8), tmp_path / "cache", workers=1)
    assert list((tmp_path / "cache").iterdir()) == []


def test_concurrent_prepare_keeps_the_first_complete_cache(tmp_path, make, monkeypatch):
    """Another process finishing the same cache while we write: our rename fails, theirs is used."""
    m = load_dataset(make.folder(tmp_path / "d", n=3))
    real_write, state = pp._write, {"nested": False}

    def write_then_race(*args, **kw):
        real_write(*args, **kw)
        if not state["nested"]:
            state["nested"] = True
            state["other"] = prepare(m, (8, 8), tmp_path / "cache")  # "the other process" wins

    monkeypatch.setattr(pp, "_write", write_then_race)
    mine = prepare(m, (8, 8), tmp_path / "cache")
    assert mine.path == state["other"].path
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [mine.path.name]
    np.testing.assert_array_equal(mine.labels, state["other"].labels)


def test_prepare_rejects_bad_arguments(tmp_path, make):
    m = load_dataset(make.folder(tmp_path / "d", n=3))
    with pytest.raises(IndexError):
        prepare(m, (8, 8), tmp_path / "c", indices=[7])
    with pytest.raises(ValueError, match="image_size"):
        prepare(m, (0, 8), tmp_path / "c")
    with pytest.raises(ValueError, match="mask_mode"):
        prepare(dataclasses.replace(m, mask_mode="auto"), (8, 8), tmp_path / "c")


# ---------------------------------------------------------------- channels


def test_grey_to_rgb_and_rgb_to_grey(tmp_path, make):
    grey = load_dataset(make.folder(tmp_path / "g", n=2))
    g3 = prepare(grey, (24, 32), tmp_path / "c", in_channels=3)
    assert g3.images.shape[1] == 3
    np.testing.assert_array_equal(g3.images[:, 0], g3.images[:, 2])
    rgb = load_dataset(make.folder(tmp_path / "r", n=2, rgb=True))
    assert rgb.in_channels == 3 and prepare(rgb, (24, 32), tmp_path / "c").images.shape[1] == 3
    r1 = prepare(rgb, (24, 32), tmp_path / "c", in_channels=1)
    raw = dio.read_image(rgb.samples[0].image[0])
    expect = normalize_intensity(raw @ np.array([0.299, 0.587, 0.114], np.float32))
    np.testing.assert_allclose(r1.images[0, 0], expect, atol=1e-3)
    with pytest.raises(DatasetError, match="cannot convert 3 channels to 2"):
        prepare(rgb, (8, 8), tmp_path / "c", in_channels=2)


def test_resize_bilinear_antialias_labels_nearest(tmp_path, make):
    d = tmp_path / "d"
    img = np.zeros((40, 40), np.uint8)
    img[:, ::2] = 255  # 1-pixel stripes: antialiasing averages them when shrinking by 4
    make.png(d / "images" / "a.png", img)
    make.png(d / "images" / "b.png", np.tile(np.arange(40, dtype=np.uint8) * 6, (40, 1)))
    lab = np.zeros((40, 40), np.uint8)
    lab[10:30, 10:30] = 2
    lab[0:5, 0:5] = 1
    for n in ("a", "b"):
        make.png(d / "masks" / f"{n}.png", lab)
    data = prepare(load_dataset(d), (10, 10), tmp_path / "c")
    assert np.allclose(data.images[0, 0, :, 1:-1], 0.5, atol=0.02)  # border columns see a cut kernel
    assert set(np.unique(data.labels)) == {0, 1, 2}
    np.testing.assert_array_equal(data.labels[0], pp.resize_labels(lab, (10, 10)))
    assert data.labels[0, 2:7, 2:7].min() == 2 and data.labels[0, 7].max() == 0 and data.labels[0, 0, 0] == 1


# ---------------------------------------------------------------- volumes, originals, cases


def test_prepare_volumes_decodes_each_once_normalised_per_volume(tmp_path, make, decodes):
    m = load_dataset(make.nnunet_3d(tmp_path / "D"))
    before = dict(decodes)
    data = prepare(m, (12, 10), tmp_path / "c")
    assert decodes["read_volume"] - before["read_volume"] == 4  # 2 volumes x 2 channel files
    assert decodes["read_label_volume"] - before["read_label_volume"] == 2
    assert data.images.shape == (8, 2, 12, 10) and data.orig_shapes == [(12, 10)] * 8
    assert data.keys[5] == "heart_002:0000" and data.spacing[0] == pytest.approx((0.8, 0.9))
    vol, _ = dio.read_volume(m.samples[0].image[1])
    expect = normalize_intensity(vol)  # per volume, per channel file
    np.testing.assert_allclose(data.images[:5, 1].astype(np.float32), expect.transpose(2, 0, 1), atol=2e-3)
    assert data.images[0].mean() < data.images[2].mean()  # the darker first slice stays darker
    lab = dio.read_label_volume(m.samples[5].label)
    np.testing.assert_array_equal(data.labels[5:], lab.transpose(2, 0, 1))
    sub = prepare(m, (6, 5), tmp_path / "c", indices=[7, 5])
    assert sub.keys == ["heart_002:0002", "heart_002:0000"]


def test_load_original_iter_cases_and_load_case(tmp_path, make, decodes):
    m = load_dataset(make.nnunet_3d(tmp_path / "D"))
    assert list(iter_cases(m)) == [("heart_001", [0, 1, 2, 3, 4]), ("heart_002", [5, 6, 7])]
    assert list(iter_cases(m, [7, 2, 5, 0])) == [("heart_002", [5, 7]), ("heart_001", [0, 2])]
    pp._VolumeCache.clear()
    before = decodes["read_volume"]
    imgs, labs = load_case(m, [0, 1, 2, 3, 4])
    assert imgs.shape == (5, 12, 10, 2) and labs.shape == (5, 12, 10) and labs.dtype == np.int64
    assert decodes["read_volume"] - before == 2  # the volume was decoded once for its 5 slices
    img, lab = load_original(m, 6)
    assert img.shape == (12, 10, 2) and img.dtype == np.float32 and 0 <= img.min() and img.max() <= 1
    data = prepare(m, (12, 10), tmp_path / "c")
    np.testing.assert_allclose(data.images[6].transpose(1, 2, 0).astype(np.float32), img, atol=2e-3)
    np.testing.assert_array_equal(data.labels[6], lab)


def test_load_original_2d_at_original_size(tmp_path, make):
    m = load_dataset(make.folder(tmp_path / "d", n=2, size=(24, 32), rgb=True))
    img, lab = load_original(m, 1)
    assert img.shape == (24, 32, 3) and lab.shape == (24, 32) and lab.dtype == np.int64
    np.testing.assert_array_equal(lab, dio.read_mask(m.samples[1].label, "label"))


def test_unlabelled_sample_gets_zero_labels(tmp_path, make):
    m = load_dataset(make.folder(tmp_path / "d", n=2))
    m.samples[1] = dataclasses.replace(m.samples[1], label=None)
    data = prepare(m, (8, 8), tmp_path / "c")
    assert data.labels[1].max() == 0 and data.labels[0].max() > 0
    assert load_original(m, 1)[1].max() == 0


def test_real_polyp_prepare(polyp_copy, tmp_path):
    m = load_dataset(polyp_copy["kvasir"])
    data = prepare(m, (64, 64), tmp_path / "c")
    assert data.images.shape == (3, 3, 64, 64) and set(np.unique(data.labels)) == {0, 1}
    assert data.orig_shapes[1] == (1070, 1348)
