from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from sikd_core.classmean import class_mean_image
from sikd_core.errors import TrainingCancelled, TrainingHealthError
from sikd_core.models import create_model
from sikd_core.training import Callback, DistillationTrainer, TrainConfig, Trainer


def toy_data(n=24, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    labels = torch.zeros(n, size, size, dtype=torch.long)
    for i in range(n):
        r, c = torch.randint(4, size - 14, (2,), generator=g).tolist()
        labels[i, r:r + 10, c:c + 10] = 1
    images = (0.3 + 0.4 * labels.float() + 0.1 * torch.randn(n, size, size, generator=g)).clamp(0, 1)
    return images.unsqueeze(1), labels


def model(seed=0, skip=True):
    torch.manual_seed(seed)
    return create_model("unet", 1, 2, widths=(8, 16, 32), skip_connections=skip)


def cfg(**kw):
    base = dict(epochs=3, batch_size=4, lr=5e-3, seed=7, checkpoint_interval_s=0, device="cpu")  # exact resume: CPU
    base.update(kw)
    return TrainConfig(**base)


def weights_equal(a, b):
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))


class StopAt(Callback):
    def __init__(self, epoch, step):
        self.epoch, self.step = epoch, step

    def should_stop(self, trainer):
        return trainer.state.epoch == self.epoch and trainer.state.step_in_epoch == self.step


class Recorder(Callback):
    def __init__(self):
        self.events = []

    def on_train_start(self, t):
        self.events.append("start")

    def on_step_end(self, t, logs):
        self.events.append(("step", round(logs["loss"], 6)))

    def on_epoch_end(self, t, logs):
        self.events.append(("epoch", logs["epoch"], logs["val_dice"]))

    def on_train_end(self, t, r):
        self.events.append("end")


class Snapshots(Callback):
    """The model's weights at the end of every epoch (epoch number -> state dict copy)."""

    def __init__(self):
        self.weights = {}

    def on_epoch_end(self, t, logs):
        self.weights[logs["epoch"]] = {k: v.detach().clone() for k, v in t.model.state_dict().items()}


def test_learns_and_selects_on_val_dice(tmp_path):
    x, y = toy_data()
    rec, snaps = Recorder(), Snapshots()
    net = model()
    r = Trainer(net, (x, y), (x[:8], y[:8]), cfg(epochs=5), num_classes=2, checkpoint_dir=tmp_path,
                callbacks=[rec, snaps]).fit()
    dice = [h["val_dice"] for h in r.history]
    assert [h["epoch"] for h in r.history] == [1, 2, 3, 4, 5]
    # The best epoch is the first argmax of the recorded validation Dice, and its score that maximum.
    assert r.best_epoch == 1 + max(range(len(dice)), key=lambda i: (dice[i], -i))
    assert r.best_score == dice[r.best_epoch - 1] == max(dice) and r.best_score > 0.5
    assert rec.events[0] == "start" and rec.events[-1] == "end"
    assert sum(1 for e in rec.events if e[0] == "epoch") == 5
    assert sum(1 for e in rec.events if e[0] == "step") == 5 * (24 // 4)
    ckpt = torch.load(tmp_path / "latest.pt", weights_only=False)
    assert {"model", "optimizer", "scheduler", "epoch", "best_score", "config"} <= set(ckpt)
    assert ckpt["epoch"] == 5
    best = torch.load(tmp_path / "best.pt", weights_only=False)
    assert best["epoch"] == r.best_epoch and best["best_score"] == r.best_score
    # The saved best weights are that epoch's weights, and fit() ends with them loaded.
    chosen = snaps.weights[r.best_epoch]
    assert all(torch.equal(best["model"][k], chosen[k]) for k in chosen)
    assert all(torch.equal(v, chosen[k]) for k, v in net.state_dict().items())
    others = [e for e in snaps.weights if e != r.best_epoch]
    assert all(any(not torch.equal(snaps.weights[e][k], chosen[k]) for k in chosen) for e in others)


class ScriptedValidation(Trainer):
    """The real loop, with the validation Dice of each epoch set by a script: the best epoch is known."""

    script = (0.2, 0.9, 0.5, 0.9, 0.6)

    def validation_step(self, images, labels):
        return torch.full((images.shape[0], self.num_classes - 1), self.script[self.state.epoch])


def test_best_epoch_and_weights_are_the_first_maximum_of_val_dice(tmp_path):
    x, y = toy_data(n=8)  # the scores are scripted: a tiny run is enough
    snaps = Snapshots()
    net = model()
    r = ScriptedValidation(net, (x, y), (x[:4], y[:4]), cfg(epochs=5), num_classes=2, checkpoint_dir=tmp_path,
                           callbacks=[snaps]).fit()
    assert [h["val_dice"] for h in r.history] == pytest.approx(list(ScriptedValidation.script))
    assert r.best_epoch == 2 and r.best_score == pytest.approx(0.9)  # epoch 4 ties and does not replace it
    best = torch.load(tmp_path / "best.pt", weights_only=False)
    assert best["epoch"] == 2
    assert all(torch.equal(best["model"][k], v) for k, v in snaps.weights[2].items())
    assert all(torch.equal(v, snaps.weights[2][k]) for k, v in net.state_dict().items())  # loaded at the end
    assert not all(torch.equal(v, snaps.weights[5][k]) for k, v in net.state_dict().items())


def test_resume_equals_uninterrupted_run(tmp_path):
    x, y = toy_data()
    val = (x[:6], y[:6])
    a = model()
    Trainer(a, (x, y), val, cfg(), num_classes=2, checkpoint_dir=tmp_path / "a").fit()
    b = model()
    with pytest.raises(TrainingCancelled):
        Trainer(b, (x, y), val, cfg(), num_classes=2, checkpoint_dir=tmp_path / "b", callbacks=[StopAt(1, 2)]).fit()
    assert torch.load(tmp_path / "b" / "latest.pt", weights_only=False)["epoch"] == 1  # really resumes
    resumed = model(seed=99)  # fresh process: different init, everything comes from the checkpoint
    r = Trainer(resumed, (x, y), val, cfg(), num_classes=2, checkpoint_dir=tmp_path / "b").fit()
    assert r.epochs == 3
    # Both runs end with the best weights loaded; compare the final (latest) weights too.
    assert weights_equal(a, resumed)
    la = torch.load(tmp_path / "a" / "latest.pt", weights_only=False)["model"]
    lb = torch.load(tmp_path / "b" / "latest.pt", weights_only=False)["model"]
    assert all(torch.equal(la[k], lb[k]) for k in la)


def test_latest_checkpoint_interval(tmp_path):
    x, y = toy_data()
    epochs = []

    class Spy(Callback):
        def on_epoch_end(self, t, logs):
            p = tmp_path / "latest.pt"
            epochs.append(torch.load(p, weights_only=False)["epoch"] if p.exists() else None)

    Trainer(model(), (x, y), None, cfg(checkpoint_interval_s=3600), num_classes=2, checkpoint_dir=tmp_path,
            callbacks=[Spy()]).fit()
    assert epochs == [None, None, 3]  # only the final epoch within the hour


def test_finished_run_is_not_retrained(tmp_path):
    x, y = toy_data()
    Trainer(model(), (x, y), (x[:6], y[:6]), cfg(epochs=2), num_classes=2, checkpoint_dir=tmp_path).fit()
    rec = Recorder()
    r = Trainer(model(5), (x, y), (x[:6], y[:6]), cfg(epochs=2), num_classes=2, checkpoint_dir=tmp_path,
                callbacks=[rec]).fit()
    assert r.epochs == 2 and not any(e[0] == "step" for e in rec.events if isinstance(e, tuple))


def test_cancel_within_one_step():
    x, y = toy_data()
    rec = Recorder()
    with pytest.raises(TrainingCancelled, match="epoch 1, step 3"):
        Trainer(model(), (x, y), None, cfg(), num_classes=2, callbacks=[rec, StopAt(0, 2)]).fit()
    assert sum(1 for e in rec.events if isinstance(e, tuple) and e[0] == "step") == 3


def test_nan_loss_stops_with_clear_message():
    x, y = toy_data()
    x[0, 0, 0, 0] = float("nan")
    x[:] = float("nan")
    with pytest.raises(TrainingHealthError, match=r"loss became nan at epoch 1, step 1.*learning rate"):
        Trainer(model(), (x, y), None, cfg(), num_classes=2).fit()


def test_zero_dice_class_warns():
    x, y = toy_data()
    y3 = y.clone()
    warnings = []

    class W(Callback):
        def on_warning(self, t, msg):
            warnings.append(msg)

    # Class 2 exists only in validation: the network can never learn it.
    vy = y3[:4].clone()
    vy[:, :4, :4] = 2
    torch.manual_seed(0)
    net = create_model("unet", 1, 3, widths=(8, 16, 32))
    r = Trainer(net, (x, y3), (x[:4], vy), cfg(epochs=5, lr=2e-2, batch_size=2), num_classes=3, callbacks=[W()],
                meta={"class_names": ["bg", "a", "rare"]}).fit()
    assert [w for w in warnings if "zero validation Dice" in w] == [
        "rare has had zero validation Dice in every epoch (first 3): it may be too rare or too small at this "
        "image size, or the learning rate too high"]  # once, for the unlearnable class only
    assert r.warnings == warnings


def test_no_val_split_keeps_last_epoch_and_warns():
    x, y = toy_data()
    r = Trainer(model(), (x, y), None, cfg(epochs=2), num_classes=2).fit()
    assert any("no validation split" in w for w in r.warnings)
    assert r.best_epoch == 2 or math.isfinite(r.best_score)


def test_alpha_zero_student_equals_baseline():
    """The baseline is SIKD with alpha = 0 trained the same way: identical weights, step for step."""
    x, y = toy_data()
    base = model()
    Trainer(base, (x, y), None, cfg(), num_classes=2).fit()
    student = model()
    DistillationTrainer(student, (x, y), None, cfg(), num_classes=2, teacher=model(3, skip=False), alpha=0.0,
                        teacher_input_fn=lambda i, lab: class_mean_image(i, lab, 2)).fit()
    assert weights_equal(base, student)


def test_distillation_pulls_features_to_frozen_teacher():
    x, y = toy_data()
    teacher = model(3, skip=False)
    Trainer(teacher, (x, y), None, cfg(epochs=2), num_classes=2,
            input_fn=lambda i, lab: class_mean_image(i, lab, 2)).fit()
    frozen = {k: v.clone() for k, v in teacher.state_dict().items()}
    t_in = class_mean_image(x, y, 2)

    def feature_gap(student):
        student.eval()
        teacher.eval()
        with torch.no_grad():
            return F.mse_loss(student.forward_features(x), teacher.forward_features(t_in)).item()

    plain, distilled = model(), model()
    Trainer(plain, (x, y), None, cfg(), num_classes=2).fit()
    r = DistillationTrainer(distilled, (x, y), None, cfg(), num_classes=2, teacher=teacher, alpha=10.0,
                            teacher_input_fn=lambda i, lab: class_mean_image(i, lab, 2)).fit()
    assert all(torch.equal(frozen[k], v) for k, v in teacher.state_dict().items())  # teacher untouched
    assert not any(p.requires_grad for p in teacher.parameters())
    assert {"seg_loss", "kd_loss"} <= set(r.history[-1])
    assert feature_gap(distilled) < 0.5 * feature_gap(plain)


@pytest.mark.parametrize("split", ["training", "validation"])
def test_labels_out_of_range_are_refused_once_at_construction(split):
    """The trainer checks its labels once, so the per-step class-mean image can skip the check."""
    x, y = toy_data(8)
    bad = y.clone()
    bad[3, 0, 0] = 2
    train, val = ((x, bad), (x, y)) if split == "training" else ((x, y), (x, bad))
    with pytest.raises(ValueError, match=rf"{split} labels must lie in \[0, 2\); found range \[0, 2\]"):
        Trainer(model(), train, val, cfg(), num_classes=2)


def test_student_head_starts_from_teacher_and_still_trains():
    """``head_from_teacher``: the student's 1x1 head is the frozen teacher's at start, then learns on its own."""
    x, y = toy_data(8)
    teacher, student = model(3, skip=False), model(0)
    t_head = {k: v.clone() for k, v in teacher.head.state_dict().items()}
    assert not torch.equal(student.head.weight, teacher.head.weight)
    body = {k: v.clone() for k, v in student.state_dict().items() if not k.startswith("head.")}
    tr = DistillationTrainer(student, (x, y), None, cfg(epochs=1), num_classes=2, teacher=teacher, alpha=2.0,
                             teacher_input_fn=lambda i, lab: class_mean_image(i, lab, 2), head_from_teacher=True)
    assert all(torch.equal(v, t_head[k]) for k, v in student.head.state_dict().items())
    assert student.head.weight.data_ptr() != teacher.head.weight.data_ptr()  # a copy, not shared weights
    # Only the head is taken over; the rest of the student keeps its own initialisation.
    assert all(torch.equal(v, body[k]) for k, v in student.state_dict().items() if k in body)
    tr.fit()
    assert not torch.equal(student.head.weight, t_head["weight"])
    assert all(torch.equal(v, t_head[k]) for k, v in teacher.head.state_dict().items())


def test_student_head_from_teacher_needs_matching_heads():
    x, y = toy_data(4)
    torch.manual_seed(0)
    wider = create_model("unet", 1, 2, widths=(16, 32, 64), skip_connections=False)
    with pytest.raises(ValueError, match="does not fit the student"):
        DistillationTrainer(model(), (x, y), None, cfg(), num_classes=2, teacher=wider, alpha=2.0,
                            head_from_teacher=True)


class CrashAt(Callback):
    """Dies (as a killed process would, without any cleanup) after global step ``step``; times each step."""

    def __init__(self, step, delay=0.0):
        self.step, self.delay, self.times = step, delay, []

    def on_step_end(self, trainer, logs):
        import time

        time.sleep(self.delay)
        self.times.append(time.monotonic())
        if trainer.state.global_step == self.step:
            raise KeyboardInterrupt("crash")


def test_mid_epoch_checkpoint_resumes_bit_for_bit(tmp_path):
    """Checkpoints after every step (interval ~0): a crash in the middle of epoch 2 resumes at the next step,
    with the batch order and the augmentation draws of the same generator, and ends with exactly the weights
    of an uninterrupted run (CPU)."""
    from sikd_core.data.augment import Augmenter

    x, y = toy_data()
    conf = cfg(epochs=2, checkpoint_interval_s=1e-9)
    a = model()
    Trainer(a, (x, y), None, conf, num_classes=2, checkpoint_dir=tmp_path / "a", augmenter=Augmenter()).fit()
    b = model()
    with pytest.raises(KeyboardInterrupt):
        Trainer(b, (x, y), None, conf, num_classes=2, checkpoint_dir=tmp_path / "b", augmenter=Augmenter(),
                callbacks=[CrashAt(6 + 3)]).fit()  # epoch 2 (6 steps per epoch), after its third step
    ckpt = torch.load(tmp_path / "b" / "latest.pt", weights_only=False)
    assert ckpt["epoch"] == 1 and ckpt["mid_epoch"]["next_step"] == 2  # step 3 died before its checkpoint
    assert ckpt["state"]["global_step"] == 8
    resumed = model(seed=99)  # a fresh process: everything comes from the checkpoint
    t = Trainer(resumed, (x, y), None, conf, num_classes=2, checkpoint_dir=tmp_path / "b", augmenter=Augmenter(),
                callbacks=[rec := Recorder()])
    t.fit()
    assert sum(1 for e in rec.events if e[0] == "step") == 4  # steps 3..6 of epoch 2: one repeated
    assert weights_equal(a, resumed)
    la = torch.load(tmp_path / "a" / "latest.pt", weights_only=False)
    lb = torch.load(tmp_path / "b" / "latest.pt", weights_only=False)
    assert all(torch.equal(la["model"][k], lb["model"][k]) for k in la["model"])
    assert [h["loss"] for h in la["state"]["history"]] == [h["loss"] for h in lb["state"]["history"]]


def test_crash_repeats_at_most_the_checkpoint_interval(tmp_path):
    """With a 0.2 s interval and 50+ ms steps, a crash in the middle of a long epoch repeats at most the
    interval (plus the step that was running), not the epoch."""
    x, y = toy_data()
    interval, crash = 0.2, 9
    conf = cfg(epochs=1, steps_per_epoch=12, checkpoint_interval_s=interval)
    spy = CrashAt(crash, delay=0.05)
    t = Trainer(model(), (x, y), None, conf, num_classes=2, checkpoint_dir=tmp_path, callbacks=[spy])
    with pytest.raises(KeyboardInterrupt):
        t.fit()
    assert t.mid_epoch_saves >= 2
    saved = torch.load(tmp_path / "latest.pt", weights_only=False)["state"]["global_step"]
    repeated = crash - saved
    assert 1 <= repeated < crash
    # the repeated steps are those that ended after the last checkpoint; all but the one running at the
    # crash ended within the interval of it (else a checkpoint would have been written at their end)
    t_save = t._last_save
    after = [x for x in spy.times if x > t_save]
    assert len(after) == repeated
    assert all(x - t_save < interval for x in after[:-1]), (repeated, [x - t_save for x in after])


def test_one_distillation_trainer_for_sikd_and_every_x_plus_sikd():
    """The X+sikd trainer is the SIKD student's trainer with only the student's forward replaced: with a method
    whose step is the plain network's, both end with identical weights and log the same terms (the two trainers
    had diverged: the X+sikd one dropped the frozen teacher's warnings and its mode)."""
    from sikd_core.methods import MethodTrainer, StepOutput, TrainingMethod

    class Plain(TrainingMethod):
        name = "plain"

        def step(self, trainer, images, labels):
            logits, feats = trainer.model.forward_with_features(trainer.model_input(images, labels))
            seg = trainer.loss_fn(logits, labels)
            return StepOutput(loss=seg, features=feats, terms={"seg_loss": seg})

    assert issubclass(MethodTrainer, DistillationTrainer)
    x, y = toy_data()
    teacher = model(3, skip=False)
    Trainer(teacher, (x, y), None, cfg(epochs=1), num_classes=2,
            input_fn=lambda i, lab: class_mean_image(i, lab, 2)).fit()
    kw = dict(num_classes=2, teacher=teacher, alpha=2.0, head_from_teacher=True,
              teacher_input_fn=lambda i, lab: class_mean_image(i, lab, 2))
    sikd, composed = model(), model()
    a = DistillationTrainer(sikd, (x, y), None, cfg(epochs=2), **kw).fit()
    b = MethodTrainer(composed, (x, y), None, cfg(epochs=2), method=Plain(), **kw).fit()
    assert weights_equal(sikd, composed)
    assert [h["kd_loss"] for h in a.history] == [h["kd_loss"] for h in b.history]
    assert set(a.history[-1]) == set(b.history[-1])


def test_unwritable_checkpoint_is_a_clear_error_naming_the_path_and_errno(tmp_path):
    """A read-only checkpoint folder: torch's writer said "File ... cannot be opened."; the error now names the
    checkpoint, its path and the errno, and leaves no temporary file."""
    import os
    import shutil
    import subprocess

    from sikd_core.errors import StorageWriteError

    x, y = toy_data()
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    if os.geteuid() != 0:
        ckpt.chmod(0o555)
        undo = lambda: ckpt.chmod(0o755)  # noqa: E731
    elif shutil.which("chattr") and subprocess.run(["chattr", "+i", str(ckpt)]).returncode == 0:
        undo = lambda: subprocess.run(["chattr", "-i", str(ckpt)], check=True)  # noqa: E731
    else:
        pytest.skip("running as root without chattr: cannot make a folder read-only")
    try:
        with pytest.raises(StorageWriteError) as info:
            Trainer(model(), (x, y), (x, y), cfg(epochs=1), num_classes=2, checkpoint_dir=ckpt).fit()
    finally:
        undo()
    msg = str(info.value)
    assert msg.startswith("cannot write the checkpoint " + str(ckpt)), msg
    assert "[Errno " in msg and ("EACCES" in msg or "EPERM" in msg) and info.value.errno in (1, 13)
    assert list(ckpt.iterdir()) == []


def test_save_atomically_reports_a_full_disk(tmp_path):
    """/dev/full: every write fails with ENOSPC, the way a full disk does."""
    import os

    from sikd_core.errors import StorageWriteError
    from sikd_core.files import save_atomically

    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full")
    link = tmp_path / f"latest.pt.tmp{os.getpid()}"  # the temporary file save_atomically opens
    link.symlink_to("/dev/full")
    with pytest.raises(StorageWriteError, match=r"cannot write the checkpoint .*latest.pt: \[Errno 28\] ENOSPC"):
        save_atomically({"w": torch.zeros(100_000)}, tmp_path / "latest.pt", "checkpoint")
    assert not (tmp_path / "latest.pt").exists()
