"""A lab's own network as a plug-in: examples/plugin_network pip-installed (into a temporary target, never into
the shared venv) shows up in `sikd models` and GET /options' registry, and trains with SIKD; a broken plug-in
is skipped with a warning naming it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

from sikd_core.models import MODELS, load_plugins, model_info
from sikd_core.models.plugins import PluginWarning
from sikd_core.pipeline import ExperimentRun
from sikd_core.spec import parse_spec

pytestmark = pytest.mark.slow(seconds=20)  # pip builds and installs the example package
ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "plugin_network"


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The example package installed by pip into a temporary folder, on sys.path for this module's tests."""
    target = tmp_path_factory.mktemp("site")
    src = tmp_path_factory.mktemp("src") / "plugin_network"
    shutil.copytree(EXAMPLE, src)  # setuptools writes build/ and *.egg-info beside the sources: not in the repo
    env = {**os.environ, "PIP_NO_INPUT": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index",
                    "--target", str(target), str(src)], check=True, capture_output=True, text=True, env=env,
                   timeout=300)
    assert any(p.name.startswith("sikd_example_network") and p.suffix == ".dist-info" for p in target.iterdir())
    sys.path.insert(0, str(target))
    try:
        yield target
    finally:
        sys.path.remove(str(target))
        MODELS.pop("lab_unet", None)
        for mod in [m for m in sys.modules if m.startswith("sikd_example_network")]:
            del sys.modules[mod]


def test_plugin_is_listed_by_sikd_models(installed):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(installed), str(ROOT)])}
    out = subprocess.run([sys.executable, "-m", "sikd_core.cli", "models"], capture_output=True, text=True,
                         env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    line = next(x for x in lines if x.startswith("lab_unet "))
    assert "Lab U-Net (example plug-in)" in line and "[plug-in: sikd-example-network]" in line
    assert len([x for x in lines if not x.startswith(" ")]) >= 11  # the built-in networks are all still there


def test_plugin_trains_with_sikd_and_its_teacher_drops_the_skip(installed, phantom_sets, tmp_path):
    assert load_plugins(reload=True) == ["lab_unet"]
    info = model_info("lab_unet")
    assert info.plugin == "sikd-example-network" and info.skip_switch and info.head == "head"
    assert info.defaults == {"width": 16, "skip_connections": True}
    spec = parse_spec(dict(name="plugin", train_dataset=str(phantom_sets["vendor_a"]), eval_datasets=[],
                           network="lab_unet", network_kwargs={"width": 4}, image_size=32, epochs=1, steps_per_epoch=1,
                           batch_size=2, seeds=[0], methods=["baseline", "sikd"], device="cpu", feature_maps=1))
    exp = ExperimentRun(spec, tmp_path)
    assert exp.network_kwargs("teacher") == {"width": 4, "skip_connections": False}
    teacher = exp.build_model("teacher", 0)
    assert teacher.net.skip_connections is False and teacher.net.dec[0].in_channels == 4
    feats = teacher.forward_features(torch.rand(1, exp.in_channels, 31, 33))
    assert feats.shape == (1, 4, 31, 33)
    for stage in ("baseline", "teacher", "student"):
        rec = exp.run_stage(stage, 0)
        assert rec["epochs"] == 1
    bundle = torch.load(exp.stage_dir("student", 0) / "model.pt", map_location="cpu", weights_only=False)
    assert bundle["network"] == "lab_unet" and bundle["network_kwargs"] == {"width": 4}


def test_options_lists_the_plugin(installed):
    from api.routes.experiments import options

    load_plugins(reload=True)
    names = {m.name: m for m in options(user=None).networks}
    assert names["lab_unet"].plugin == "sikd-example-network" and names["lab_unet"].skip_switch
    assert "transunet" in names and names["unetr"].teacher_note.startswith("keeps its skip connections")


def _fake_dist(site: Path, name: str, entry: str) -> None:
    """An installed distribution's metadata (what pip writes), declaring one sikd.networks entry point."""
    info = site / f"{name.replace('-', '_')}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[sikd.networks]\n{entry}\n")


def test_a_broken_plugin_is_a_warning_naming_it_not_a_crash(tmp_path):
    _fake_dist(tmp_path, "broken-net", "broken = no_such_module_xyz:build")
    _fake_dist(tmp_path, "clash-net", "unet = no_such_module_xyz:build")
    sys.path.insert(0, str(tmp_path))
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert load_plugins(reload=True) == []
        msgs = [str(w.message) for w in caught if issubclass(w.category, PluginWarning)]
        assert any("'broken'" in m and "broken-net" in m and "ModuleNotFoundError" in m for m in msgs), msgs
        assert any("'unet'" in m and "already taken by a built-in network" in m for m in msgs), msgs
        assert "broken" not in MODELS and model_info("unet").plugin == ""
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}
        out = subprocess.run([sys.executable, "-m", "sikd_core.cli", "models"], capture_output=True, text=True,
                             env=env, timeout=120)
        assert out.returncode == 0 and "unet " in out.stdout
        assert "sikd network plug-in 'broken'" in out.stderr
    finally:
        sys.path.remove(str(tmp_path))
