"""The API process starts without PyTorch: status reads, lists and uploads need none of it, so a restarted API
answers in about a second and a half instead of five (``python bench/api_restart.py``). PyTorch is imported on
first use (a spec check, a prediction, a picture, an export) and by the warm-up thread after the start."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import json, sys, tempfile
import api.main
from sikd_service.config import Settings
app = api.main.create_app(Settings(storage_dir=tempfile.mkdtemp()))
heavy = sorted(m for m in ("torch", "monai", "scipy", "onnx", "onnxruntime") if m in sys.modules)
import sikd_core.data, sikd_core.export, sikd_core.methods, sikd_core.training
names = [sikd_core.data.prepare, sikd_core.export.write_bundle, sikd_core.methods.MethodTrainer,
         sikd_core.training.Trainer]  # the lazy names still resolve
print(json.dumps({"heavy": heavy, "torch_after_use": "torch" in sys.modules}))
"""


def test_the_api_imports_and_builds_without_pytorch() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIKD_")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["heavy"] == [], f"imported at the API's start: {result['heavy']} (import them where they are used)"
    assert result["torch_after_use"]


def test_lazy_packages_refuse_unknown_names() -> None:
    import pytest

    import sikd_core.data

    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        sikd_core.data.nope  # noqa: B018
