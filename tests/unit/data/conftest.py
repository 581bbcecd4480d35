"""Fixtures for the data-layer tests: tiny datasets written on the fly, plus a few real polyp pairs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from tests.conftest import SHARED as POLYP

KVASIR_NAMES = ["cju0qkwl35piu0993l0dewei2", "cju0qoxqj9q6s0835b43399p4", "cju0qx73cjw570799j4n5cjze"]
CVC_FRAMES = ["1", "2", "26", "51"]  # sequences 1, 1, 2, 3; frames 1 and 2 hold "shadow" values


class Make:
    """Writes small image/mask/volume files and dataset layouts."""

    @staticmethod
    def png(path: Path, arr: np.ndarray | Image.Image) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        im = arr if isinstance(arr, Image.Image) else Image.fromarray(np.asarray(arr))
        im.save(path)
        return path

    @staticmethod
    def jpeg(path: Path, arr: np.ndarray, quality: int = 75) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.asarray(arr, dtype=np.uint8)).save(path, quality=quality)
        return path

    @staticmethod
    def nifti(path: Path, arr: np.ndarray, zooms: tuple[float, ...] = (1.0, 1.0, 1.0)) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        img = nib.Nifti1Image(np.asarray(arr), np.diag([*zooms[:3], *([1.0] * (3 - len(zooms[:3]))), 1.0]))
        img.header.set_zooms(zooms[: np.asarray(arr).ndim])
        nib.save(img, str(path))
        return path

    @staticmethod
    def json(path: Path, obj: object) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(obj))
        return path

    @staticmethod
    def label_map(h: int, w: int, k: int, seed: int) -> np.ndarray:
        """uint8 label map with rectangles of classes 1..k-1 (every class present)."""
        rng = np.random.default_rng(seed)
        m = np.zeros((h, w), np.uint8)
        for c in range(1, k):
            y, x = rng.integers(0, h // 2), rng.integers(0, w // 2)
            m[y : y + h // 3, x : x + w // 3] = c
        return m

    def nnunet_3d(self, root: Path, cases: tuple[str, ...] = ("heart_001", "heart_002"), depth: tuple[int, ...] = (5, 3)) -> Path:
        """nnU-Net v2 dataset of 2-channel NIfTI volumes (12x10xZ, spacing 0.8/0.9/2.5) with 3 classes."""
        self.json(root / "dataset.json", {
            "channel_names": {"0": "T1", "1": "T2"},
            "labels": {"background": 0, "LV": 2, "RV": 1},
            "numTraining": len(cases),
            "file_ending": ".nii.gz",
        })
        rng = np.random.default_rng(0)
        for case, z in zip(cases, depth, strict=True):
            lab = np.zeros((12, 10, z), np.uint8)
            lab[2:6, 2:6, :] = 1
            lab[7:10, 5:9, 1:] = 2
            for ch in range(2):
                img = rng.normal(100 * (ch + 1), 10, size=lab.shape).astype(np.float32) + lab * 50
                img[..., 0] -= 60  # a darker first slice: per-volume normalisation keeps it darker
                self.nifti(root / "imagesTr" / f"{case}_{ch:04d}.nii.gz", img, (0.8, 0.9, 2.5))
            self.nifti(root / "labelsTr" / f"{case}.nii.gz", lab, (0.8, 0.9, 2.5))
        return root

    def folder(
        self, root: Path, n: int = 4, size: tuple[int, int] = (24, 32), k: int = 3, rgb: bool = False,
        img_ext: str = ".png", mask_ext: str = ".png", mask_dir: str = "masks",
    ) -> Path:
        """Folder dataset of ``n`` label-map pairs (images correlated with labels)."""
        h, w = size
        for i in range(n):
            m = self.label_map(h, w, k, i)
            img = (m * 60 + 20 + np.random.default_rng(100 + i).integers(0, 20, (h, w))).astype(np.uint8)
            if rgb:
                img = np.stack([img, img // 2, 255 - img], -1)
            name = f"case{i:02d}"
            if img_ext in (".jpg", ".jpeg"):
                self.jpeg(root / "images" / f"{name}{img_ext}", img, quality=95)
            else:
                self.png(root / "images" / f"{name}{img_ext}", img)
            self.png(root / mask_dir / f"{name}{mask_ext}", m)
        return root


@pytest.fixture
def make() -> Make:
    return Make()


@pytest.fixture(scope="session")
def polyp_copy(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A few real Kvasir-SEG and CVC-ClinicDB pairs copied into temporary folder datasets."""
    out = tmp_path_factory.mktemp("polyp")
    kv = out / "kvasir"
    for sub in ("images", "masks"):
        (kv / sub).mkdir(parents=True)
        for n in KVASIR_NAMES:
            shutil.copy(POLYP / "kvasir-seg" / sub / f"{n}.jpg", kv / sub / f"{n}.jpg")
    cvc = out / "cvc"
    for sub in ("images", "masks"):
        (cvc / sub).mkdir(parents=True)
        for f in CVC_FRAMES:
            shutil.copy(POLYP / "cvc-clinicdb" / sub / f"{f}.png", cvc / sub / f"{f}.png")
    shutil.copy(POLYP / "cvc-clinicdb" / "README_CVC-ClinicDB_original.txt", cvc)
    return {"kvasir": kv, "cvc": cvc}
