"""The frozen teacher's runner: same features as the plain forward, on CPU and (when present) CUDA."""

from __future__ import annotations

import contextlib

import pytest
import torch

from sikd_core.classmean import class_mean_image
from sikd_core.models import create_model
from sikd_core.training import DistillationTrainer, TrainConfig
from sikd_core.training.teacher import FrozenTeacher
from tests.unit.test_models import SMALL

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def trained_unet(widths=(8, 16, 32, 64), device="cpu") -> torch.nn.Module:
    """A teacher U-Net without skips whose BatchNorm statistics are not the defaults."""
    torch.manual_seed(0)
    model = create_model("unet", 3, 2, widths=widths, skip_connections=False).to(device)
    with torch.no_grad():
        for _ in range(3):
            model(torch.rand(4, 3, 32, 32, device=device) * 2 + 0.5)
    return model.eval()


def bf16():
    return torch.autocast("cuda", dtype=torch.bfloat16)


def test_cpu_runs_the_folded_plain_forward_and_leaves_the_model_untouched():
    model = trained_unet()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    teacher = FrozenTeacher(model, torch.device("cpu"), channels_last=True, mode="compile", side_stream=True)
    assert teacher.mode == "eager" and teacher.stream is None  # compile and streams: CUDA only
    x = torch.rand(2, 3, 40, 36)
    with torch.no_grad():
        ref = model.forward_features(x)
    got = teacher.submit(x)()
    assert not got.requires_grad and got.shape == ref.shape
    torch.testing.assert_close(got, ref, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(teacher(x), ref, atol=1e-4, rtol=1e-4)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in teacher.model.modules())  # folded copy


def test_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="unknown teacher mode 'jit'; choose one of auto, eager, compile"):
        FrozenTeacher(trained_unet(), torch.device("cpu"), mode="jit")


@cuda
@pytest.mark.parametrize("side_stream", [False, True])
@pytest.mark.parametrize("amp", [True, False])
def test_compiled_teacher_gives_the_plain_forward(side_stream, amp):
    dev = torch.device("cuda")
    model = trained_unet((16, 32, 64, 128, 256), dev)
    ac = bf16 if amp else contextlib.nullcontext
    plain = FrozenTeacher(model, dev, autocast=ac, channels_last=True, mode="eager")
    fast = FrozenTeacher(model, dev, autocast=ac, channels_last=True, side_stream=side_stream, bf16=amp)
    assert fast.mode == "compile"  # auto on CUDA
    for step in range(3):
        x = torch.rand(4, 3, 64, 64, device=dev) + step
        got = fast.submit(x)()
        assert fast.fallback_reason is None and got.dtype == (torch.bfloat16 if amp else torch.float32)
        tol = 2e-2 if amp else 1e-4
        torch.testing.assert_close(got.float(), plain(x).float(), atol=tol, rtol=tol)


def test_a_failing_compile_falls_back_to_the_plain_forward_with_a_reason():
    model = trained_unet()
    teacher = FrozenTeacher(model, torch.device("cpu"))
    x = torch.rand(2, 3, 32, 32)

    def broken(_x):
        raise RuntimeError("no C++ compiler found")

    teacher.mode, teacher._compiled = "compile", broken  # what torch.compile gives where it cannot build
    with torch.no_grad():
        ref = model.forward_features(x)
    torch.testing.assert_close(teacher(x), ref, atol=1e-4, rtol=1e-4)
    assert teacher.mode == "eager" and teacher._compiled is None
    assert teacher.fallback_reason == ("torch.compile failed, the teacher runs its plain forward: "
                                       "RuntimeError: no C++ compiler found")


def rel_err(a: torch.Tensor, ref: torch.Tensor) -> float:
    return float((a.float() - ref).norm() / ref.norm())


@cuda
@pytest.mark.parametrize("name", sorted(SMALL))
def test_every_model_runs_as_a_compiled_teacher_on_cuda(name):
    """Compiled features are as close to the float32 forward as the plain bf16 forward's are. (Elementwise
    they differ from the plain bf16 forward by a bf16 rounding step here and there: Inductor keeps fused
    intermediates in float32.)"""
    dev = torch.device("cuda")
    torch.manual_seed(0)
    model = create_model(name, 3, 2, **SMALL[name]).to(dev).eval()
    fp32 = FrozenTeacher(model, dev, mode="eager")
    plain = FrozenTeacher(model, dev, autocast=bf16, mode="eager")
    fast = FrozenTeacher(model, dev, autocast=bf16, mode="compile", bf16=True, side_stream=True)
    assert FrozenTeacher(model, dev).mode == ("compile" if name == "unet" else "eager")  # what auto picks
    for _ in range(2):
        x = torch.rand(2, 3, 64, 64, device=dev)
        ref = fp32(x).float()
        assert rel_err(fast(x), ref) <= 2 * rel_err(plain(x), ref) + 1e-2
    assert fast.mode == "compile" and fast.fallback_reason is None


@cuda
def test_distillation_agrees_with_compiled_teacher_on_a_side_stream():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(8, 3, 64, 64, generator=g)
    y = (x.mean(1) > 0.5).long()
    teacher = trained_unet((16, 32, 64, 128, 256))
    losses = {}
    for mode, stream in (("eager", False), ("auto", True)):
        torch.manual_seed(1)
        student = create_model("unet", 3, 2, widths=(16, 32, 64, 128, 256))
        trainer = DistillationTrainer(student, (x, y), None, TrainConfig(epochs=2, batch_size=4, device="cuda"),
                                      num_classes=2, teacher=teacher, alpha=2.0, teacher_mode=mode,
                                      teacher_side_stream=stream,
                                      teacher_input_fn=lambda i, lab: class_mean_image(i, lab, 2, check_labels=False))
        result = trainer.fit()
        losses[mode] = [h["kd_loss"] for h in result.history]
        assert trainer.frozen_teacher.mode == ("compile" if mode == "auto" else "eager")
        assert not any("plain forward" in w for w in result.warnings)
    eager, fast = losses.values()
    assert all(v > 0 for v in eager)
    torch.testing.assert_close(torch.tensor(fast), torch.tensor(eager), rtol=5e-2, atol=1e-4)
