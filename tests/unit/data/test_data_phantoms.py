"""SYNTHETIC phantoms: determinism, classes, domain differences, writer."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import ndimage

from sikd_core.data import DOMAINS, generate_phantoms, load_dataset, phantom_arrays, read_image, read_mask


def test_deterministic_and_prefix_stable():
    a_img, a_msk = phantom_arrays("vendor_a", 6, seed=1, size=64)
    b_img, b_msk = phantom_arrays("vendor_a", 6, seed=1, size=64)
    assert np.array_equal(a_img, b_img) and np.array_equal(a_msk, b_msk)
    assert a_img.shape == a_msk.shape == (6, 64, 64) and a_img.dtype == a_msk.dtype == np.uint8
    c_img, c_msk = phantom_arrays("vendor_a", 6, seed=2, size=64)
    assert not np.array_equal(a_msk, c_msk)
    p_img, p_msk = phantom_arrays("vendor_a", 3, seed=1, size=64)  # sample i does not depend on n
    assert np.array_equal(p_img, a_img[:3]) and np.array_equal(p_msk, a_msk[:3])


@pytest.mark.parametrize("domain", sorted(DOMAINS))
def test_every_class_in_every_image(domain):
    img, msk = phantom_arrays(domain, 24, seed=0, size=96)
    assert set(np.unique(msk)) == {0, 1, 2, 3}
    for k in range(4):
        assert (msk == k).any(axis=(1, 2)).all(), f"class {k} missing in some {domain} image"
    lv, myo = msk == 3, msk == 2
    ring = ndimage.binary_dilation(lv, structure=np.ones((1, 3, 3), bool)) & ~lv
    assert (myo[ring]).mean() > 0.9  # the LV blood pool sits inside the myocardium ring
    blood = img[msk == 3].mean()
    bright_bg = (img > 0.8 * blood) & (msk == 0)  # distractor blobs: as bright as blood, background
    assert bright_bg.any(axis=(1, 2)).mean() > 0.5


def _highpass_energy(img: np.ndarray, msk: np.ndarray) -> float:
    x = img.astype(np.float32)
    hp = x - ndimage.gaussian_filter(x, sigma=(0, 2, 2))
    return float(hp[msk == 2].std())


def test_domains_differ_in_appearance_not_in_shape():
    stats = {}
    for d in sorted(DOMAINS):
        img, msk = phantom_arrays(d, 64, seed=0, size=96)
        frac = np.array([(msk == k).mean() for k in range(4)])
        means = np.array([img[msk == k].mean() for k in range(4)])
        stats[d] = (frac, means, _highpass_energy(img, msk))
    names = sorted(stats)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            fa, ma, ea = stats[a]
            fb, mb, eb = stats[b]
            np.testing.assert_allclose(fa, fb, rtol=0.2)  # shared shape distribution
            differs = np.abs(ma - mb).max() > 5 or abs(ea - eb) / max(ea, eb) > 0.25
            assert differs, f"{a} and {b} look alike"
    energies = [stats[d][2] for d in names]
    assert max(energies) / min(energies) > 1.5  # texture differs between domains
    for d in names:  # intensity order shared by all domains: blood bright, myocardium dark
        _, m, _ = stats[d]
        assert m[3] > m[0] and m[1] > m[0] and m[2] < m[3]


def test_unknown_domain_lists_known():
    with pytest.raises(ValueError, match="vendor_a.*vendor_b.*vendor_c.*vendor_d"):
        phantom_arrays("siemens", 2)


def test_generate_writes_a_loadable_folder_dataset(tmp_path):
    out = generate_phantoms(tmp_path / "ph", domain="vendor_c", n=5, seed=3, size=48)
    assert sorted(p.name for p in (out / "images").iterdir()) == [f"{i:04d}.png" for i in range(5)]
    assert "SYNTHETIC phantom data, not real patients" in (out / "README.txt").read_text()
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["synthetic"] is True and "SYNTHETIC" in meta["description"] and meta["domain"] == "vendor_c"
    m = load_dataset(out)
    assert (m.format, m.mask_mode, m.in_channels) == ("folder", "label", 1)
    assert m.class_names == ["background", "RV", "myocardium", "LV"]
    assert all(c["images_present"] == 5 for c in m.stats["classes"])
    img, msk = phantom_arrays("vendor_c", 5, seed=3, size=48)
    np.testing.assert_array_equal(read_image(m.samples[2].image[0])[:, :, 0], img[2])
    np.testing.assert_array_equal(read_mask(m.samples[2].label, "label"), msk[2])
    with pytest.raises(FileExistsError):
        generate_phantoms(out, domain="vendor_c", n=2)
    again = generate_phantoms(out, domain="vendor_a", n=2, size=48, overwrite=True)
    assert len(list((again / "masks").iterdir())) == 2
