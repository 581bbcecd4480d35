"""Reading images, masks and volumes; mask conventions; mask-mode detection."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from sikd_core.data import io as dio
from sikd_core.data import read_image, read_mask
from sikd_core.errors import DatasetError


def _grad(h: int = 8, w: int = 10) -> np.ndarray:
    return (np.arange(h * w).reshape(h, w) * 3 % 256).astype(np.uint8)


@pytest.mark.parametrize(
    "ext, build, channels",
    [
        (".png", lambda a: Image.fromarray(a), 1),
        (".bmp", lambda a: Image.fromarray(a), 1),
        (".tif", lambda a: Image.fromarray(a), 1),
        (".png", lambda a: Image.fromarray(np.stack([a, a // 2, 255 - a], -1)), 3),
        (".png", lambda a: Image.fromarray(np.stack([a, a, a, np.full_like(a, 7)], -1)), 3),  # RGBA
        (".png", lambda a: Image.fromarray(a).convert("LA"), 1),
        (".gif", lambda a: Image.fromarray(a).convert("P"), 3),
    ],
)
def test_read_image_modes(tmp_path, make, ext, build, channels):
    a = _grad()
    path = make.png(tmp_path / f"x{ext}", build(a))
    img = read_image(path)
    assert img.dtype == np.float32 and img.shape == (8, 10, channels)
    if channels == 1:
        np.testing.assert_array_equal(img[:, :, 0], a)


def test_read_image_palette_to_rgb_and_16bit_kept(tmp_path, make):
    pal = Image.new("P", (4, 3))
    pal.putpalette([0, 0, 0, 200, 10, 30] + [0] * 762)
    pal.putpixel((1, 1), 1)
    img = read_image(make.png(tmp_path / "p.png", pal))
    assert img.shape == (3, 4, 3)
    np.testing.assert_array_equal(img[1, 1], [200, 10, 30])
    deep = (np.arange(12).reshape(3, 4) * 4000).astype(np.uint16)
    for ext in (".png", ".tif"):
        out = read_image(make.png(tmp_path / f"d{ext}", Image.fromarray(deep)))
        np.testing.assert_array_equal(out[:, :, 0], deep)  # 16-bit values kept, not scaled


def test_read_image_jpeg_and_gif_first_frame(tmp_path, make):
    rgb = np.zeros((16, 16, 3), np.uint8)
    rgb[..., 0] = 200
    img = read_image(make.jpeg(tmp_path / "x.jpeg", rgb, quality=95))
    assert img.shape == (16, 16, 3) and abs(img[..., 0].mean() - 200) < 3
    frames = [Image.fromarray(np.full((5, 5), v, np.uint8)) for v in (10, 250)]
    frames[0].save(tmp_path / "a.gif", save_all=True, append_images=frames[1:])
    first = read_image(tmp_path / "a.gif")
    assert first.shape == (5, 5, 3) and np.allclose(first, first[0, 0, 0]) and first[0, 0, 0] < 128


@pytest.mark.parametrize("content", [b"", b"not an image at all", b"\x89PNG\r\n\x1a\n" + b"\x00" * 40])
def test_unreadable_image_names_the_file(tmp_path, content):
    bad = tmp_path / "broken.png"
    bad.write_bytes(content)
    with pytest.raises(DatasetError, match="broken.png") as ei:
        read_image(bad)
    assert str(bad) in ei.value.files
    with pytest.raises(DatasetError, match="broken.png"):
        read_mask(bad, "binary")


def test_truncated_png_is_unreadable(tmp_path, make):
    good = make.png(tmp_path / "g.png", np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8))
    data = good.read_bytes()
    (tmp_path / "t.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(DatasetError, match="t.png"):
        read_image(tmp_path / "t.png")


def test_read_mask_label_map_and_modes(tmp_path, make):
    m = np.array([[0, 1, 2], [3, 0, 1]], np.uint8)
    p = make.png(tmp_path / "m.png", m)
    out = read_mask(p, "label")
    assert out.dtype == np.int64
    np.testing.assert_array_equal(out, m)
    np.testing.assert_array_equal(read_mask(p, "binary"), np.zeros_like(m))  # all <= 127
    with pytest.raises(ValueError, match="mask_mode"):
        read_mask(p, "auto")


def test_rgb_mask_with_identical_channels_uses_channel_0(tmp_path, make):
    m = np.array([[0, 255, 200], [100, 0, 255]], np.uint8)
    p = make.png(tmp_path / "m.png", np.stack([m, m, m], -1))
    np.testing.assert_array_equal(read_mask(p, "binary"), (m > 127).astype(np.int64))
    np.testing.assert_array_equal(read_mask(p, "label"), m)


def test_colour_rgb_mask_is_refused(tmp_path, make):
    m = np.zeros((4, 4, 3), np.uint8)
    m[0, 0] = (255, 0, 0)
    m[1, 1] = (0, 255, 0)
    p = make.png(tmp_path / "colour.png", m)
    with pytest.raises(DatasetError, match="colour-coded RGB masks are not supported; store a grey label map") as ei:
        read_mask(p, "label")
    assert "colour.png" in str(ei.value)


def test_binary_jpeg_mask_soft_edges_threshold_127(tmp_path, make):
    m = np.zeros((64, 64), np.uint8)
    m[16:48, 20:44] = 255
    p = make.jpeg(tmp_path / "m.jpg", np.stack([m] * 3, -1), quality=60)
    raw = dio.read_mask_values(p)
    assert ((raw > 0) & (raw < 255)).any(), "JPEG should leave soft edge values"
    out = read_mask(p, "binary")
    assert set(np.unique(out)) == {0, 1}
    np.testing.assert_array_equal(out, (raw > 127).astype(np.int64))
    assert (out != (m > 127)).mean() < 0.01
    assert dio.detect_mask_mode({"m.jpg": np.unique(raw)}) == "binary"


def test_cvc_shadow_values_are_background(tmp_path, make):
    m = np.zeros((10, 10), np.uint8)
    m[:3, :3] = 255
    m[5:, 5:] = np.arange(5, 30).reshape(5, 5) * 4  # shadows 20..116
    assert m[5:, 5:].max() <= 127
    p = make.png(tmp_path / "cvc.png", np.stack([m] * 3, -1))
    out = read_mask(p, "binary")
    assert out[5:, 5:].sum() == 0 and out[:3, :3].all() and out.sum() == 9


def test_palette_and_1bit_masks(tmp_path, make):
    pm = Image.frombytes("P", (2, 2), bytes([0, 1, 2, 0]))
    pm.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [0] * 759)
    p = make.png(tmp_path / "pal.png", pm)
    np.testing.assert_array_equal(read_mask(p, "label"), [[0, 1], [2, 0]])  # palette indices = classes
    one = Image.fromarray(np.array([[0, 255], [255, 0]], np.uint8)).convert("1")
    p1 = make.png(tmp_path / "one.png", one)
    np.testing.assert_array_equal(read_mask(p1, "binary"), [[0, 1], [1, 0]])


def test_detect_mask_mode_rules():
    assert dio.detect_mask_mode({"a": [0, 255], "b": [0, 3, 255], "c": [0]}) == "binary"
    assert dio.detect_mask_mode({"a": [0, 1, 2], "b": [0], "c": [0, 127]}) == "label"
    assert dio.detect_mask_mode({"a": [0], "b": [0]}) == "binary"  # no foreground at all
    with pytest.raises(DatasetError, match="inconsistent class values") as ei:
        dio.detect_mask_mode({"masks/b1.png": [0, 255], "masks/l1.png": [0, 1, 2], "masks/z.png": [0]})
    text = str(ei.value)
    assert "masks/b1.png" in text and "masks/l1.png" in text and "masks/z.png" not in text
    assert set(ei.value.files) == {"masks/b1.png", "masks/l1.png"}


def test_read_volume_3d_2d_and_4d(tmp_path, make):
    vol = np.random.default_rng(0).normal(size=(6, 5, 4)).astype(np.float32)
    p = make.nifti(tmp_path / "v.nii.gz", vol, (0.7, 0.8, 3.0))
    arr, sp = dio.read_volume(p)
    assert dio.is_volume_file(p) and not dio.is_volume_file(tmp_path / "x.png")
    np.testing.assert_allclose(arr, vol)
    assert sp == pytest.approx((0.7, 0.8, 3.0))
    assert dio.volume_header(p) == ((6, 5, 4), pytest.approx((0.7, 0.8, 3.0)))
    two = make.nifti(tmp_path / "two.nii", vol[:, :, 0], (0.5, 0.5))
    assert dio.read_volume(two)[0].shape == (6, 5)
    assert read_image(two).shape == (6, 5, 1)
    single = make.nifti(tmp_path / "s.nii.gz", vol[..., None], (1.0, 1.0, 2.0, 1.0))
    assert dio.read_volume(single)[0].shape == (6, 5, 4)  # trailing singleton dropped
    four = make.nifti(tmp_path / "four.nii.gz", np.zeros((3, 3, 3, 2), np.float32), (1.0, 1.0, 1.0, 1.0))
    with pytest.raises(DatasetError, match="four.nii.gz.*4D"):
        dio.read_volume(four)
    (tmp_path / "junk.nii.gz").write_bytes(b"garbage")
    with pytest.raises(DatasetError, match="junk.nii.gz"):
        dio.read_volume(tmp_path / "junk.nii.gz")


def test_float_label_volume_must_be_whole_numbers(tmp_path, make):
    ok = make.nifti(tmp_path / "ok.nii.gz", np.array([[[0.0, 1.0], [2.0, 0.0]]], np.float32))
    assert dio.read_label_volume(ok).dtype.kind in "iu"
    bad = make.nifti(tmp_path / "bad.nii.gz", np.array([[[0.0, 0.5], [2.0, 0.0]]], np.float32))
    with pytest.raises(DatasetError, match="bad.nii.gz.*whole numbers"):
        dio.read_label_volume(bad)
