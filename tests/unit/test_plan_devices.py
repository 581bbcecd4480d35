"""sikd_core.plan for a described device (no GPU needed): a GPU by its memory, a CPU by its cores. The rules
checked: a bigger GPU never gets a smaller configuration, the planned step fits the memory model, and the model
counts what sikd_core.models.budget (the check POST /experiments refuses specs with) counts on the meta device."""

from __future__ import annotations

import json

import pytest

from sikd_core.cli import main
from sikd_core.errors import SIKDError
from sikd_core.plan import (
    MEMORY_SHARE,
    describe_device,
    plan,
    plan_batch,
    plan_image_size,
    plan_widths,
    plan_yaml,
    step_memory_bytes,
    unet_size,
)

#: A Kvasir-SEG-like fingerprint: 1000 RGB pairs of about 530x620 px, polyps on 15% of the pixels.
FP = {"name": "polyps", "dataset": "polyps", "pairs": 1000, "groups": 0, "median_size": [530, 620], "aspect": 1.17,
      "min_size": [332, 487], "max_size": [1072, 1348], "in_channels": 3, "num_classes": 2,
      "class_names": ["background", "polyp"], "foreground_fraction": 0.15,
      "class_fractions": {"background": 0.85, "polyp": 0.15}, "sampled": 32, "read_seconds_per_pair": 0.01}


def planned(**device: float) -> dict:
    return plan(1, fp=FP, dev=describe_device(**device), measure=False)  # type: ignore[arg-type]


@pytest.mark.parametrize(("widths", "size", "channels", "classes"), [
    ([4, 8, 16], [32, 32], 1, 4), ([16, 32, 64, 128], [96, 128], 3, 2), ([8, 16, 32], [33, 47], 1, 3),
    ([64, 128, 256, 512, 1024], [448, 512], 3, 2)])
def test_the_unet_model_counts_what_the_meta_device_counts(widths, size, channels, classes):
    import torch

    from sikd_core.models import budget, create_model

    params, acts, _ = unet_size(widths, size, channels, classes)
    assert (params, acts) == budget._network_size("unet", json.dumps({"widths": widths}), channels, classes, 1,
                                                  tuple(size))
    with torch.device("meta"):
        teacher = create_model("unet", channels, classes, widths=widths, skip_connections=False)
    assert unet_size(widths, size, channels, classes, skip_connections=False)[0] == sum(
        p.numel() for p in teacher.parameters())


def test_the_memory_model_is_the_budgets():
    from sikd_core import plan as plan_module
    from sikd_core.models import budget

    assert plan_module.BYTES_PER_PARAMETER == budget.BYTES_PER_PARAMETER
    assert plan_module.BYTES_PER_ACTIVATION == budget.BYTES_PER_ACTIVATION


@pytest.mark.parametrize("gib", [16, 80])
def test_plan_for_a_described_gpu(gib):
    result = planned(memory_gib=gib)
    spec, dev = result["spec"], result["device"]
    assert dev == {"kind": "cuda", "device": "cuda", "name": "a GPU", "memory_gib": gib,
                   "source": "described"}
    assert spec["device"] == "cuda" and result["estimate"] is None
    h, w = spec["image_size"]
    assert h % 32 == 0 and w % 32 == 0 and w > h  # the images are wider than tall
    widths = spec["network_kwargs"]["widths"]
    assert widths == [64, 128, 256, 512, 1024]  # 16 GiB and more: the paper's widths
    batch = spec["batch_size"]
    memory = step_memory_bytes(widths, [h, w], 3, 2, batch)
    assert memory <= MEMORY_SHARE * gib * 2**30 < step_memory_bytes(widths, [h, w], 3, 2, batch + 1)
    assert {16: ([320, 384], 4), 80: ([448, 512], 12)}[gib] == ([h, w], batch)
    assert "images fit in half of" in result["reasons"]["batch"][-1]


def test_a_bigger_gpu_never_gets_a_smaller_configuration():
    before = None
    for gib in (0.5, 1, 2, 4, 6, 8, 11, 12, 15.9, 16, 20, 24, 32, 39.9, 40, 48, 64, 80, 96, 141, 192):
        spec = planned(memory_gib=gib)["spec"]
        size, widths, batch = spec["image_size"], spec["network_kwargs"]["widths"], spec["batch_size"]
        assert step_memory_bytes(widths, size, 3, 2, batch) <= MEMORY_SHARE * gib * 2**30, gib  # it fits
        work = batch * unet_size(widths, size, 3, 2)[2]  # multiply-accumulates of a step
        if before is not None:
            b_size, b_widths, b_work = before
            assert size[0] >= b_size[0] and size[1] >= b_size[1], gib
            assert len(widths) >= len(b_widths) and widths[0] >= b_widths[0], gib
            assert work >= b_work, gib
        before = size, widths, work
    assert planned(memory_gib=1024)["spec"]["batch_size"] == 35  # nnU-Net's cap: 5% of the 700 training images


def test_a_small_gpu_gets_a_smaller_image_and_a_too_small_one_a_clear_error():
    result = planned(memory_gib=1)
    assert result["spec"]["image_size"] == [128, 160] and result["spec"]["batch_size"] == 2
    assert result["reasons"]["batch"][0] == "image size cut to 128x160 so that 2 images fit"
    with pytest.raises(SIKDError, match="cannot train the planned U-Net"):
        planned(memory_gib=0.2)
    for bad in ({"memory_gib": 0}, {"memory_gib": 9000}, {"cores": 0}, {}):
        with pytest.raises(SIKDError):
            describe_device(**bad)


@pytest.mark.parametrize(("cores", "side"), [(2, 128), (4, 128), (16, 192)])
def test_plan_for_a_cpu_with_n_cores(cores, side):
    result = planned(cores=cores)
    spec = result["spec"]
    assert result["device"]["cores"] == cores and result["device"]["threads"] == cores and spec["device"] == "cpu"
    assert max(spec["image_size"]) == side and spec["batch_size"] == 8 and spec["network_kwargs"]["widths"][0] == 16
    assert f"CPU, {cores} cores ({cores} torch threads); described" in plan_yaml(result)


def test_a_described_device_is_not_timed_here_and_timings_can_be_given():
    result = plan(1, fp=FP, dev=describe_device(memory_gib=80))
    assert result["estimate"] == {"seconds": None, "minutes": None,
                                  "basis": "not measured: the plan is for a described device, not this machine"}
    assert "# estimated run time: not measured" in plan_yaml(result)
    seen = []

    def timings(config: dict) -> dict:
        seen.append(config)
        return {"step_s": 0.2, "student_step_s": 0.3, "forward_s": 0.05, "basis": "timed on worker gpu0"}

    result = plan(1, fp=FP, dev=describe_device(memory_gib=80), timings=timings, budget_minutes=20)
    spec, est = result["spec"], result["estimate"]
    assert seen == [{"network": "unet", "network_kwargs": spec["network_kwargs"], "in_channels": 3, "num_classes": 2,
                     "image_size": spec["image_size"], "batch": spec["batch_size"]}]
    assert est["basis"] == "timed on worker gpu0" and est["step_seconds"] == 0.2 and 0 < est["minutes"] <= 20 * 1.05
    assert spec["epochs"] < 300 and "cut to" in result["reasons"]["epochs"]  # fitted to the 20 minutes


def test_a_budget_too_small_for_the_least_epochs_is_said_not_promised():
    """A device too slow for even the 5 epochs the plan keeps at least: the estimate is over the budget and the
    reason says so (the plan never claims to fit a budget it does not)."""
    def slow(config: dict) -> dict:
        return {"step_s": 2.0, "student_step_s": 3.0, "forward_s": 0.5, "basis": "timed on worker cpu"}

    result = plan(1, fp=FP, dev=describe_device(cores=2), timings=slow, budget_minutes=20)
    why, est = result["reasons"]["epochs"], result["estimate"]
    assert result["spec"]["epochs"] == 5 and est["minutes"] > 20
    assert f"even 5 epochs (the least planned) take {est['minutes']:.1f} min, over the budget" in why
    assert "over the budget" in plan_yaml(result)
    # a budget between: cut to the most epochs that fit it, the evaluation's fixed time included
    budget = 3 * est["minutes"]
    fits = plan(1, fp=FP, dev=describe_device(cores=2), timings=slow, budget_minutes=budget)
    assert "over the budget" not in fits["reasons"]["epochs"] and "cut to" in fits["reasons"]["epochs"]
    assert fits["spec"]["epochs"] > 5 and fits["estimate"]["seconds"] <= budget * 60
    one_more = plan(1, fp=FP, dev=describe_device(cores=2), timings=slow, budget_minutes=budget,
                    target_steps=10**9)["estimate"]["seconds"]
    assert one_more == fits["estimate"]["seconds"]  # the fit does not depend on where it was cut from


def test_cli_plans_for_another_machine(tmp_path, capsys):
    from sikd_core.data import generate_phantoms

    data = generate_phantoms(tmp_path / "ph", domain="vendor_a", n=40, seed=1, size=48)
    assert main(["plan", str(data), "--device-memory-gb", "80"]) == 0
    text = capsys.readouterr().out
    assert "# device: a GPU, 80.0 GiB; described on the command line" in text
    assert "device: cuda" in text and "# estimated run time: not measured" in text
    assert main(["plan", str(data), "--cpu-cores", "16", "--no-measure"]) == 0
    assert "CPU, 16 cores (16 torch threads)" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["plan", str(data), "--cpu-cores", "4", "--device-memory-gb", "8"])  # one or the other


def test_rules_for_a_gpu_need_no_gpu():
    gpu = describe_device(memory_gib=80)
    size, _ = plan_image_size(FP, gpu)
    widths, _ = plan_widths(size, gpu)
    assert plan_batch(FP, gpu, size, widths, cap=3)[0] == 3  # nnU-Net's cap wins over the memory
