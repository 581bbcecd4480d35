"""`sikd plan`: a spec planned from the dataset's fingerprint and this machine, accepted by `sikd run`."""

from __future__ import annotations

import pytest
import yaml

from sikd_core.cli import main
from sikd_core.errors import SIKDError
from sikd_core.models import create_model
from sikd_core.plan import device_info, plan, plan_image_size, plan_widths
from sikd_core.spec import load_spec, parse_spec
from tests.conftest import SHARED, copy_polyp_pairs, polyp_names

pytestmark = pytest.mark.slow(seconds=35)  # reads a sample of two real datasets and times a few steps
BUSI = SHARED.parent / "breast-us" / "busi"


def test_plan_on_kvasir_writes_a_spec_sikd_run_accepts(tmp_path, capsys):
    out = tmp_path / "plan.yaml"
    assert main(["plan", str(SHARED / "kvasir-seg"), "--eval", str(SHARED / "cvc-clinicdb"), "--device", "cpu",
                 "--budget-minutes", "20", "--out", str(out)]) == 0
    assert "sikd run" in capsys.readouterr().err
    text = out.read_text()
    spec = load_spec(out)  # what `sikd run` does first
    assert spec.network == "unet" and spec.train_dataset.endswith("kvasir-seg") and spec.device == "cpu"
    h, w = spec.image_size
    assert h % 32 == 0 and w % 32 == 0 and max(h, w) <= 192 and w > h  # Kvasir's images are wider than tall
    assert 2 <= spec.batch_size <= 8 and 5 <= spec.epochs <= 300
    assert "# estimated run time:" in text and "foreground" in text and "500 pairs" in text
    est = float(text.split("# estimated run time: ")[1].split(" min")[0])
    # fitted to the budget (the images' read time is an estimate of its own), or, where this machine is too slow
    # (loaded) for even the least epochs planned, the plan says so instead of promising the budget
    over = "over the budget: give a larger budget" in text
    assert (est > 20 and spec.epochs == 5) if over else 0 < est <= 20 * 1.25, text
    create_model(spec.network, 3, 2, **spec.network_kwargs)(__import__("torch").rand(1, 3, h, w))  # it builds and runs
    with pytest.raises(SystemExit) as e:
        main(["run", "--help"])
    assert e.value.code == 0


def test_plan_on_busi_without_measuring(capsys):
    assert main(["plan", str(BUSI), "--device", "cpu", "--no-measure", "--seeds", "0", "1"]) == 0
    text = capsys.readouterr().out
    data = yaml.safe_load(text)
    spec = parse_spec(data)
    assert spec.seeds == [0, 1] and spec.train_dataset.endswith("busi") and spec.eval_datasets == []
    assert "estimated run time" not in text and "# network:" in text
    assert len(spec.network_kwargs["widths"]) >= 3


def test_the_estimate_is_within_2x_of_a_measured_stage(tmp_path):
    """The baseline stage of the planned spec, trained here, takes about the plan's estimate for it. The claim is
    2x (measured on a quiet box: 1.24-1.30, README); in the suite other workers share the cores between the plan's
    timed steps and the stage (a run saw 0.49), so the test holds it to 3x either way."""
    from sikd_core.pipeline import ExperimentRun

    data = copy_polyp_pairs(tmp_path / "kv24", "kvasir-seg", polyp_names("kvasir-seg", 24))
    result = plan(data, device="cpu", target_steps=20)
    est = result["estimate"]["stage_seconds"]["baseline"]
    spec = parse_spec(result["spec"])
    assert spec.epochs == 5 and spec.batch_size == 2  # 17 training images: nnU-Net's 5% cap, at least 2
    rec = ExperimentRun(spec, tmp_path / "run").run_stage("baseline", 0)
    ratio = rec["wall_seconds"] / est
    assert 1 / 3 <= ratio <= 3.0, f"estimated {est:.1f} s, measured {rec['wall_seconds']:.1f} s"


def test_planning_rules():
    cpu = {"kind": "cpu", "device": "cpu", "cores": 2, "threads": 2}
    gpu = {"kind": "cuda", "device": "cuda", "name": "x", "memory_gib": 80.0}
    fp = {"median_size": [480, 640], "aspect": 1.333, "class_names": ["background", "lesion"],
          "class_fractions": {"background": 0.9, "lesion": 0.1}}
    assert plan_image_size(fp, cpu)[0] == [96, 128]
    assert plan_image_size(fp, gpu)[0] == [384, 512]
    small = {**fp, "class_fractions": {"background": 0.995, "lesion": 0.005}}
    size, why = plan_image_size(small, cpu)
    assert size == [160, 192] and "one step larger" in why[1]
    tiny = {**fp, "median_size": [40, 40], "aspect": 1.0}
    assert plan_image_size(tiny, gpu)[0] == [32, 32]  # never above the median image
    assert plan_widths([96, 128], cpu)[0] == [16, 32, 64, 128]
    assert plan_widths([384, 512], gpu)[0] == [64, 128, 256, 512, 1024]


def test_plan_errors(tmp_path):
    with pytest.raises(SIKDError, match="does not exist"):
        plan(tmp_path / "nope", device="cpu")
    with pytest.raises(SIKDError, match="device must be"):
        device_info("tpu")
    with pytest.raises(SIKDError, match="budget_minutes must be > 0"):
        plan(SHARED / "kvasir-seg", budget_minutes=0)
