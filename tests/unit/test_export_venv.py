"""The bundle's predict.py in a fresh virtual environment holding only its stated requirements
(onnxruntime, numpy, Pillow: no torch, no sikd_core) gives the same masks and logits as in-process."""

from __future__ import annotations

import subprocess
import sys
import venv

import numpy as np
import pytest
from PIL import Image

from sikd_core.data import read_image
from sikd_core.export import runtime, write_bundle
from sikd_core.inference import load_bundle, predict_images
from tests.conftest import SHARED, polyp_names
from tests.unit.test_export import make_bundle

pytestmark = [pytest.mark.slow(seconds=12), pytest.mark.timeout(600)]


def _run(cmd: list[str], what: str, timeout: float = 420, **kw) -> subprocess.CompletedProcess:
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    if r.returncode != 0:
        pytest.fail(f"{what} failed (exit {r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
    return r


def test_predict_py_in_a_fresh_venv(tmp_path):
    images = [SHARED / "cvc-clinicdb" / "images" / n for n in polyp_names("cvc-clinicdb", 2)]
    images += [SHARED / "kvasir-seg" / "images" / n for n in polyp_names("kvasir-seg", 1)]
    arrays = [read_image(p) for p in images]
    model_pt = make_bundle(tmp_path / "model.pt", "unet", arrays)
    bundle = write_bundle(model_pt, tmp_path / "bundle", "onnx")
    reqs = (bundle / "requirements.txt").read_text().split()
    assert sorted(r.split(">=")[0].lower() for r in reqs) == ["numpy", "onnxruntime", "pillow"]

    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True, system_site_packages=False, clear=True).create(env_dir)
    py = str(env_dir / "bin" / "python")
    # pip's own cache makes repeated runs fast; PyPI (or the configured index) must be reachable once
    _run([py, "-m", "pip", "install", "-q", "--disable-pip-version-check", "-r", str(bundle / "requirements.txt")],
         "installing the bundle's requirements (onnxruntime, numpy, Pillow) with pip into a fresh venv: is the "
         "package index reachable?")
    probe = subprocess.run([py, "-c", "import torch"], capture_output=True, text=True, cwd=tmp_path)
    assert probe.returncode != 0 and "No module named 'torch'" in probe.stderr
    probe = subprocess.run([py, "-c", "import sikd_core"], capture_output=True, text=True, cwd=tmp_path)
    assert probe.returncode != 0

    out = tmp_path / "out"
    r = _run([py, str(bundle / "predict.py"), *map(str, images), "--out", str(out), "--save-logits"],
             "predict.py in the fresh venv", timeout=300, cwd=tmp_path)
    assert r.stdout.count("_mask.png") == len(images)

    reference = predict_images(load_bundle(model_pt), arrays)
    exported = runtime.load(bundle)
    for path, arr, ref in zip(images, arrays, reference, strict=True):
        mask = np.asarray(Image.open(out / f"{path.stem}_mask.png"))
        assert mask.shape == arr.shape[:2] and set(np.unique(mask)) <= {0, 255}
        assert ((mask > 0) == (ref > 0)).mean() >= 0.9999
        logits = np.load(out / f"{path.stem}_logits.npy")
        assert np.abs(logits - exported.predict_logits([arr])[0]).max() < 1e-4
        overlay = Image.open(out / f"{path.stem}_overlay.png")
        assert overlay.size == (arr.shape[1], arr.shape[0]) and overlay.mode == "RGB"
    assert sys.executable != py
