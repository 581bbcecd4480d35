"""Dataset layouts -> Manifest, the load-time checks and their error messages, and dataset stats."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from sikd_core.data import Manifest, dataset_stats, load_dataset, read_mask
from sikd_core.data import io as dio
from sikd_core.data.splits import cvc_clinicdb_groups
from sikd_core.errors import DatasetError

POLYP = Path("/work/shared/datasets/polyp")  # real, read-only; tests copy from it (see conftest)


# ---------------------------------------------------------------- folder datasets


def test_folder_label_maps(tmp_path, make):
    make.folder(tmp_path / "ds", n=4, k=3)
    m = load_dataset(tmp_path / "ds")
    assert (m.format, m.mask_mode, m.in_channels, m.volumetric) == ("folder", "label", 1, False)
    assert m.class_names == ["background", "class_1", "class_2"] and m.num_classes == 3
    assert [s.key for s in m.samples] == ["case00", "case01", "case02", "case03"]
    s = m.samples[0]
    assert os.path.isabs(s.image[0]) and s.label.endswith("masks/case00.png")
    assert s.group_id == s.case_id and s.dataset == "ds" and s.slice_index is None
    st = m.stats
    assert st is not None and dataset_stats(m) is st
    assert st["pairs"] == 4 and st["cases"] == 4 and st["image_sizes"] == {"32x24": 4}
    assert (st["min_width"], st["max_height"]) == (32, 24)
    assert st["image_modes"]["grey"] == 4 and st["mask_mode"] == "label"
    fr = [c["pixel_fraction"] for c in st["classes"]]
    assert sum(fr) == pytest.approx(1.0) and all(f > 0 for f in fr)
    assert [c["images_present"] for c in st["classes"]] == [4, 4, 4]
    json.dumps(st)  # JSON-serialisable


def test_folder_nested_jpeg_images_png_masks_ignores_junk(tmp_path, make):
    root = tmp_path / "upload"
    ds = make.folder(root / "MyPolyps", n=3, rgb=True, img_ext=".jpg", mask_dir="gt")
    (ds / "images" / ".DS_Store").write_bytes(b"x")
    (ds / "images" / "Thumbs.db").write_bytes(b"x")
    make.png(ds / "__MACOSX" / "images" / "._case00.png", np.zeros((2, 2), np.uint8))
    make.png(ds / "masks_hidden" / ".x.png", np.zeros((2, 2), np.uint8))
    (root / ".hidden").mkdir()
    m = load_dataset(root)
    assert m.root == str(ds) and m.name == "MyPolyps" and len(m.samples) == 3
    assert m.in_channels == 3 and m.stats["image_modes"] == {"grey": 0, "rgb": 3}


@pytest.mark.parametrize("mask_dir", ["labels", "mask", "gt", "Masks"])
def test_folder_mask_dir_names(tmp_path, make, mask_dir):
    make.folder(tmp_path / "d", n=3, mask_dir=mask_dir)
    assert len(load_dataset(tmp_path / "d").samples) == 3


def test_folder_mixed_grey_and_rgb_gives_3_channels(tmp_path, make):
    make.folder(tmp_path / "d", n=3)
    make.png(tmp_path / "d" / "images" / "rgb.png", np.zeros((24, 32, 3), np.uint8))
    make.png(tmp_path / "d" / "masks" / "rgb.png", np.zeros((24, 32), np.uint8))
    m = load_dataset(tmp_path / "d")
    assert m.in_channels == 3 and m.stats["image_modes"] == {"grey": 3, "rgb": 1}
    assert m.stats["empty_masks"] == 1 and "1 of 4 mask(s) have no foreground" in m.stats["warnings"][0]


def test_folder_mask_suffix_matching(tmp_path, make):
    for n in ("a", "b"):
        make.png(tmp_path / "d" / "images" / f"{n}.png", np.zeros((4, 4), np.uint8))
        make.png(tmp_path / "d" / "masks" / f"{n}_mask.png", np.full((4, 4), 255, np.uint8))
    m = load_dataset(tmp_path / "d")
    assert [s.case_id for s in m.samples] == ["a", "b"] and m.mask_mode == "binary"


def test_folder_class_names_and_groups(tmp_path, make):
    d = make.folder(tmp_path / "d", n=4, k=3)
    make.json(d / "classes.json", ["bg", "liver", "tumour"])
    (d / "groups.csv").write_text("name,group\ncase00.png,p1\ncase01,p1\ncase02,p2\n")
    m = load_dataset(d)
    assert m.class_names == ["bg", "liver", "tumour"]
    assert [s.group_id for s in m.samples] == ["p1", "p1", "p2", "case03"]
    assert m.stats["groups"] == 3


def test_folder_dataset_json_labels(tmp_path, make):
    d = make.folder(tmp_path / "d", n=2, k=3)
    make.json(d / "dataset.json", {"labels": {"background": 0, "b": 2, "a": 1}})
    assert load_dataset(d).class_names == ["background", "a", "b"]


def test_label_value_beyond_class_names_names_the_file(tmp_path, make):
    d = make.folder(tmp_path / "d", n=3, k=4)
    make.json(d / "classes.json", ["background", "one", "two"])
    with pytest.raises(DatasetError, match="label values must be < 3") as ei:
        load_dataset(d)
    assert "masks/case00.png: values 3" in str(ei.value) and "masks/case00.png" in ei.value.files


def test_forced_mask_mode(tmp_path, make):
    d = make.folder(tmp_path / "d", n=2, k=3)
    m = load_dataset(d, mask_mode="binary", name="forced")
    assert m.mask_mode == "binary" and m.class_names == ["background", "foreground"] and m.name == "forced"
    assert m.stats["classes"][1]["pixel_fraction"] == 0.0
    with pytest.raises(ValueError, match="mask_mode"):
        load_dataset(d, mask_mode="rgb")


def test_scan_false_settles_mode_without_stats(tmp_path, make):
    d = make.folder(tmp_path / "d", n=3, k=3, rgb=True)
    m = load_dataset(d, scan=False)
    assert m.stats is None and m.mask_mode == "label" and m.num_classes == 3 and m.in_channels == 3
    st = dataset_stats(m)
    assert st["pairs"] == 3 and m.stats is st


def test_manifest_round_trip_and_subset(tmp_path, make):
    m = load_dataset(make.folder(tmp_path / "d", n=4))
    back = Manifest.from_dict(json.loads(json.dumps(m.to_dict())))
    assert back == m and back.samples[0].image == m.samples[0].image and back.stats == m.stats
    sub = m.subset([3, 1])
    assert [s.key for s in sub.samples] == ["case03", "case01"] and sub.stats is None and len(m.samples) == 4
    with pytest.raises(IndexError):
        m.subset([9])


# ---------------------------------------------------------------- folder errors


def test_unmatched_names_listed_both_ways(tmp_path, make):
    d = make.folder(tmp_path / "d", n=3)
    os.rename(d / "masks" / "case01.png", d / "masks" / "other.png")
    with pytest.raises(DatasetError, match="1 image.*without a mask and 1 mask.*without an image") as ei:
        load_dataset(d)
    text = str(ei.value)
    assert "images/case01.png: no mask" in text and "masks/other.png: no image" in text
    assert set(ei.value.files) == {"images/case01.png", "masks/other.png"}


def test_no_matching_names_at_all(tmp_path, make):
    make.png(tmp_path / "d" / "images" / "a.png", np.zeros((4, 4), np.uint8))
    make.png(tmp_path / "d" / "masks" / "b.png", np.zeros((4, 4), np.uint8))
    with pytest.raises(DatasetError, match="no image/mask pairs found"):
        load_dataset(tmp_path / "d")


def test_mask_size_mismatch_names_file_and_sizes(tmp_path, make):
    d = make.folder(tmp_path / "d", n=3, size=(24, 32))
    make.png(d / "masks" / "case02.png", np.zeros((20, 30), np.uint8))
    with pytest.raises(DatasetError, match="do not match the size") as ei:
        load_dataset(d)
    text = str(ei.value)
    assert "masks/case02.png: mask size 30x20 differs from image images/case02.png size 32x24" in text
    assert ei.value.files == ["masks/case02.png"]


def test_inconsistent_class_values(tmp_path, make):
    d = make.folder(tmp_path / "d", n=3, k=3)
    make.png(d / "masks" / "case01.png", np.where(make.label_map(24, 32, 2, 1) > 0, 255, 0).astype(np.uint8))
    with pytest.raises(DatasetError, match="inconsistent class values") as ei:
        load_dataset(d)
    text = str(ei.value)
    assert "masks/case01.png (max value 255" in text and "masks/case00.png (max value 2" in text


def test_unreadable_files_are_all_listed(tmp_path, make):
    d = make.folder(tmp_path / "d", n=3)
    (d / "images" / "case00.png").write_bytes(b"garbage")
    (d / "masks" / "case02.png").write_bytes(b"")
    with pytest.raises(DatasetError, match="2 file\\(s\\) could not be read") as ei:
        load_dataset(d)
    assert sorted(ei.value.files) == ["images/case00.png", "masks/case02.png"]


def test_empty_dataset_says_what_was_found(tmp_path):
    (tmp_path / "d" / "images").mkdir(parents=True)
    (tmp_path / "d" / "masks").mkdir()
    (tmp_path / "d" / "images" / "a.dcm").write_bytes(b"x")
    (tmp_path / "d" / "images" / "notes.txt").write_text("x")
    with pytest.raises(DatasetError, match="no image/mask pairs found") as ei:
        load_dataset(tmp_path / "d")
    text = str(ei.value)
    assert "images/: 0 image file(s)" in text and "1 .dcm file(s)" in text and "masks/: 0 image file(s)" in text


def test_unknown_layout_missing_path_and_non_json_file(tmp_path, make):
    make.png(tmp_path / "d" / "pics" / "a.png", np.zeros((4, 4), np.uint8))
    (tmp_path / "d" / "notes.txt").write_text("x")
    with pytest.raises(DatasetError, match="no supported dataset layout found") as ei:
        load_dataset(tmp_path / "d")
    text = str(ei.value)
    assert "pics/" in text and "nnU-Net" in text and "MONAI datalist" in text and "images/ and masks/" in text
    with pytest.raises(DatasetError, match="does not exist"):
        load_dataset(tmp_path / "nope")
    with pytest.raises(DatasetError, match="is a file"):
        load_dataset(tmp_path / "d" / "notes.txt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="it is empty"):
        load_dataset(tmp_path / "empty")


def test_layout_hints(tmp_path, make):
    make.png(tmp_path / "d" / "Images" / "a.png", np.zeros((4, 4), np.uint8))
    with pytest.raises(DatasetError, match="no supported dataset layout") as ei:
        load_dataset(tmp_path / "d")
    assert "found an image folder but no mask folder" in str(ei.value)
    (tmp_path / "n" / "imagesTr").mkdir(parents=True)
    (tmp_path / "n" / "labelsTr").mkdir()
    with pytest.raises(DatasetError, match="need a dataset.json"):
        load_dataset(tmp_path / "n")


def test_folder_of_nifti_volumes(tmp_path, make):
    for i, z in enumerate((4, 2)):
        lab = np.zeros((8, 9, z), np.int16)
        lab[2:5, 2:6] = 1 + i
        make.nifti(tmp_path / "d" / "images" / f"v{i}.nii.gz", np.random.default_rng(i).normal(size=(8, 9, z)).astype(np.float32), (0.5, 0.6, 4.0))
        make.nifti(tmp_path / "d" / "masks" / f"v{i}.nii.gz", lab, (0.5, 0.6, 4.0))
    m = load_dataset(tmp_path / "d")
    assert m.volumetric and m.mask_mode == "label" and m.class_names == ["background", "class_1", "class_2"]
    assert [s.key for s in m.samples] == ["v0:0000", "v0:0001", "v0:0002", "v0:0003", "v1:0000", "v1:0001"]
    assert m.samples[4].spacing == pytest.approx((0.5, 0.6)) and m.stats["volumes"] == 2


def test_ambiguous_mask_folders(tmp_path, make):
    d = make.folder(tmp_path / "d", n=2)
    make.folder(tmp_path / "d", n=2, mask_dir="labels")
    with pytest.raises(DatasetError, match="several mask folders"):
        load_dataset(d)


# ---------------------------------------------------------------- nnU-Net


def test_nnunet_nifti_sliced_with_spacing(tmp_path, make):
    root = make.nnunet_3d(tmp_path / "Dataset001_Heart")
    (root / "imagesTs").mkdir()
    m = load_dataset(root)
    assert (m.format, m.mask_mode, m.in_channels, m.volumetric) == ("nnunet", "label", 2, True)
    assert m.class_names == ["background", "RV", "LV"] and m.name == "Dataset001_Heart"
    assert len(m.samples) == 8
    s = m.samples[6]
    assert (s.case_id, s.slice_index, s.num_slices, s.key) == ("heart_002", 1, 3, "heart_002:0001")
    assert s.spacing == pytest.approx((0.8, 0.9)) and s.slice_spacing == pytest.approx(2.5)
    assert s.image[0].endswith("heart_002_0000.nii.gz") and s.image[1].endswith("heart_002_0001.nii.gz")
    st = m.stats
    assert (st["volumes"], st["slices"], st["pairs"], st["cases"]) == (2, 8, 8, 2)
    assert st["image_sizes"] == {"10x12": 8} and st["image_modes"] == {"grey": 0, "rgb": 0, "multichannel": 8}
    assert [c["images_present"] for c in st["classes"]] == [8, 8, 6]


def test_nnunet_png_2d(tmp_path, make):
    root = tmp_path / "Dataset120_Roads"
    make.json(root / "dataset.json", {
        "channel_names": {"0": "R", "1": "G", "2": "B"}, "labels": {"background": 0, "road": 1},
        "numTraining": 2, "file_ending": ".png",
    })
    for i in range(2):
        make.png(root / "imagesTr" / f"img{i}_0000.png", np.full((8, 9, 3), 40 * i, np.uint8))
        make.png(root / "labelsTr" / f"img{i}.png", make.label_map(8, 9, 2, i))
    m = load_dataset(root)
    assert (m.format, m.in_channels, m.volumetric, m.mask_mode) == ("nnunet", 3, False, "label")
    assert [s.key for s in m.samples] == ["img0", "img1"] and m.samples[0].slice_index is None


def test_nnunet_grey_png_and_missing_label(tmp_path, make):
    root = tmp_path / "D"
    make.json(root / "dataset.json", {"channel_names": {"0": "US"}, "labels": {"background": 0, "x": 1}, "file_ending": ".png"})
    for i in range(3):
        make.png(root / "imagesTr" / f"c{i}_0000.png", np.zeros((6, 6), np.uint8))
    for i in range(2):
        make.png(root / "labelsTr" / f"c{i}.png", np.zeros((6, 6), np.uint8))
    with pytest.raises(DatasetError, match="incomplete") as ei:
        load_dataset(root)
    assert "imagesTr/c2_0000.png: case 'c2' has no label" in str(ei.value)
    make.png(root / "labelsTr" / "c2.png", np.ones((6, 6), np.uint8))
    m = load_dataset(root)
    assert m.in_channels == 1 and len(m.samples) == 3


def test_nnunet_missing_channel_file(tmp_path, make):
    root = make.nnunet_3d(tmp_path / "D")
    os.remove(root / "imagesTr" / "heart_001_0001.nii.gz")
    with pytest.raises(DatasetError, match="missing _0001"):
        load_dataset(root)


# ---------------------------------------------------------------- MONAI datalist


def test_datalist_fixed_splits_base_dir_and_channels(tmp_path, make):
    data = tmp_path / "data"
    for i in range(5):
        make.png(data / "img" / f"s{i}_a.png", np.full((6, 7), 10 * i, np.uint8))
        make.png(data / "img" / f"s{i}_b.png", np.full((6, 7), 5 * i, np.uint8))
        make.png(data / "lab" / f"s{i}.png", make.label_map(6, 7, 2, i))
    entry = lambda i: {"image": [f"img/s{i}_a.png", f"img/s{i}_b.png"], "label": f"lab/s{i}.png"}  # noqa: E731
    lst = make.json(tmp_path / "lists" / "split.json", {
        "base_dir": "../data",
        "labels": {"0": "background", "1": "lesion"},
        "training": [entry(0), entry(1), entry(2)],
        "validation": [entry(3)],
        "test": [entry(4), "img/s0_a.png", {"image": "img/s1_a.png"}],
    })
    m = load_dataset(lst)
    assert (m.format, m.name, m.root) == ("datalist", "split", str(data))
    assert m.in_channels == 2 and m.class_names == ["background", "lesion"]
    assert [s.fixed_split for s in m.samples] == ["train", "train", "train", "val", "test"]
    assert m.samples[0].image == (str(data / "img" / "s0_a.png"), str(data / "img" / "s0_b.png"))
    assert m.stats["fixed_splits"] == {"train": 3, "val": 1, "test": 1}


def test_datalist_training_only_is_not_fixed_and_folder_detection(tmp_path, make):
    for i in range(3):
        make.png(tmp_path / "d" / "x" / f"{i}.png", np.zeros((5, 5, 3), np.uint8))
        make.png(tmp_path / "d" / "y" / f"{i}.png", np.full((5, 5), 255 * (i > 0), np.uint8))
    make.json(tmp_path / "d" / "datalist.json", {"training": [{"image": f"x/{i}.png", "label": f"y/{i}.png"} for i in range(3)]})
    m = load_dataset(tmp_path / "d")
    assert m.format == "datalist" and m.name == "d" and m.in_channels == 3 and m.mask_mode == "binary"
    assert all(s.fixed_split is None for s in m.samples)


def test_datalist_missing_file_and_duplicates(tmp_path, make):
    make.png(tmp_path / "a.png", np.zeros((4, 4), np.uint8))
    lst = make.json(tmp_path / "l.json", {"training": [{"image": "a.png", "label": "nope/a.png"}]})
    with pytest.raises(DatasetError, match="do not exist") as ei:
        load_dataset(lst)
    assert "training[0]: nope/a.png does not exist" in str(ei.value) and ei.value.files == ["nope/a.png"]
    make.png(tmp_path / "m.png", np.zeros((4, 4), np.uint8))
    lst = make.json(tmp_path / "l.json", {"training": [{"image": "a.png", "label": "m.png"}], "validation": [{"image": "a.png", "label": "m.png"}]})
    with pytest.raises(DatasetError, match="more than once"):
        load_dataset(lst)
    with pytest.raises(DatasetError, match="not a MONAI datalist"):
        load_dataset(make.json(tmp_path / "x.json", {"foo": 1}))


def test_decathlon_style_dataset_json_is_a_datalist(tmp_path, make):
    root = tmp_path / "Task02_Heart"
    lab = np.zeros((6, 6, 2), np.uint8)
    lab[1:3, 1:3] = 1
    for i in range(2):
        make.nifti(root / "imagesTr" / f"la_{i}.nii.gz", np.random.default_rng(i).normal(size=(6, 6, 2)).astype(np.float32), (1.25, 1.25, 1.37))
        make.nifti(root / "labelsTr" / f"la_{i}.nii.gz", lab, (1.25, 1.25, 1.37))
    make.json(root / "dataset.json", {
        "name": "LeftAtrium", "modality": {"0": "MRI"}, "labels": {"0": "background", "1": "left atrium"},
        "training": [{"image": f"./imagesTr/la_{i}.nii.gz", "label": f"./labelsTr/la_{i}.nii.gz"} for i in range(2)],
        "test": ["./imagesTs/la_9.nii.gz"],
    })
    m = load_dataset(root)
    assert m.format == "datalist" and m.volumetric and len(m.samples) == 4 and m.class_names[1] == "left atrium"
    assert m.samples[1].key == "la_0:0001" and m.samples[0].slice_spacing == pytest.approx(1.37)


# ---------------------------------------------------------------- real polyp data


def test_real_kvasir_pairs(polyp_copy):
    m = load_dataset(polyp_copy["kvasir"])
    assert (m.mask_mode, m.in_channels, m.class_names) == ("binary", 3, ["background", "foreground"])
    st = m.stats
    assert st["pairs"] == 3 and st["empty_masks"] == 0 and st["classes"][1]["images_present"] == 3
    assert 0.005 < st["classes"][1]["pixel_fraction"] < 0.76
    assert st["image_sizes"]["622x529"] == 1 and st["max_width"] == 1348
    raw = dio.read_mask_values(m.samples[0].label)
    assert ((raw > 0) & (raw < 255)).any()  # soft JPEG edges exist ...
    assert set(np.unique(read_mask(m.samples[0].label, m.mask_mode))) == {0, 1}  # ... and are thresholded


def test_real_cvc_shadows_background_and_sequence_groups(polyp_copy):
    m = load_dataset(polyp_copy["cvc"])
    assert m.mask_mode == "binary" and m.stats["image_sizes"] == {"384x288": 4}
    groups = {s.case_id: s.group_id for s in m.samples}
    assert groups == {"1": "cvc_seq01", "2": "cvc_seq01", "26": "cvc_seq02", "51": "cvc_seq03"}
    one = next(s for s in m.samples if s.case_id == "1")
    raw = dio.read_mask_values(one.label)
    shadows = (raw > 0) & (raw <= 127)
    assert shadows.sum() > 1000
    assert read_mask(one.label, "binary")[shadows].sum() == 0


def test_cvc_readme_table_parses_all_612_frames():
    g = cvc_clinicdb_groups(POLYP / "cvc-clinicdb")
    assert len(g) == 612 and len(set(g.values())) == 29
    assert (g["1"], g["25"], g["26"], g["408"], g["409"], g["612"]) == (
        "cvc_seq01", "cvc_seq01", "cvc_seq02", "cvc_seq19", "cvc_seq20", "cvc_seq29")
