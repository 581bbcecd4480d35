"""The default recipe must learn in small configurations (issue "Training that never fails silently").

A reduced version of the small polyp configuration that collapsed (U-Net widths 8-128, Adam 1e-3, batch 8,
plain cross-entropy, the default augmentation and poly schedule, seed 0) on 300 Kvasir-SEG images at 64 px
for 15 epochs: with PyTorch's default initialisation its 8-channel head locked into predicting background
everywhere from epoch 3 on (validation Dice exactly 0 in epochs 3-15); with the SIKD authors' He
initialisation it learns (Dice 0.35-0.40 in the last epochs; the full 128 px, 25-epoch configuration
reaches 0.6).

Re-measured 2026-12-01 with the current trainer (one CPU thread): PyTorch's default initialisation no longer
collapses here (validation Dice 0.26-0.46 in all 15 epochs, predicted/true foreground 0.54), and He
initialisation dips first (0.05-0.16 in epochs 2-5) and ends at 0.34 (ratio 0.48). So these tests guard that
the recipe learns on real data and stays learned; they no longer tell the two initialisations apart.
Shorter runs were tried to save suite time and rejected: with 8 or 10 epochs the He-initialised net ends
at 0.20 / 0.30 with a foreground ratio of 0.21 / 0.35, too close to the bounds to be a stable test.
"""

from __future__ import annotations

import pytest
import torch

from sikd_core.classmean import class_mean_image
from sikd_core.data import Augmenter, load_dataset, prepare
from sikd_core.models import create_model
from sikd_core.training import DistillationTrainer, TrainConfig, Trainer
from tests.conftest import SHARED

pytestmark = pytest.mark.slow(seconds=55)

N_IMAGES, N_VAL, SIZE, EPOCHS = 300, 50, 64, 15
KD_EPOCHS = 8  # teacher and student each


def test_small_polyp_recipe_learns_and_does_not_collapse(tmp_path):
    train, val = _small_polyp(tmp_path)
    torch.manual_seed(0)
    net = create_model("unet", 3, 2, widths=[8, 16, 32, 64, 128])
    config = TrainConfig(epochs=EPOCHS, batch_size=8, lr=1e-3, seed=0, device="cpu")
    result = Trainer(net, train, val, config, num_classes=2, augmenter=Augmenter()).fit()

    dice = [h["val_dice"] for h in result.history]
    assert max(dice) >= 0.3 and dice[-1] >= 0.25, f"validation Dice per epoch: {dice}"
    assert min(dice[EPOCHS // 2:]) > 0.1, f"collapsed after learning: {dice}"
    with torch.no_grad():
        pred = net.eval()(val[0]).argmax(1)
    # Foreground is predicted, and on roughly as many pixels as there are (not everywhere either).
    ratio = float((pred == 1).float().mean() / (val[1] == 1).float().mean())
    assert 0.25 < ratio < 4.0, f"predicted/true foreground pixels: {ratio:.2f}"


def _small_polyp(tmp_path):
    src = SHARED / "kvasir-seg"
    if not (src / "images").is_dir():
        pytest.fail(f"shared polyp data missing at {src}; set SIKD_SHARED_DATASETS to the folder holding polyp/")
    manifest = load_dataset(src, scan=False)
    data = prepare(manifest, (SIZE, SIZE), tmp_path / "cache", indices=range(N_IMAGES))
    images, labels = data.tensors()
    return (images[N_VAL:], labels[N_VAL:]), (images[:N_VAL], labels[:N_VAL])


def test_small_polyp_sikd_student_does_not_collapse(tmp_path):
    """The SIKD student (alpha 2, head started from the teacher's) of the reduced small polyp configuration.

    With a random He-initialised head the student of this configuration collapsed to all-background
    (128 px: val Dice 0.074, 0.037, 0.016, 0.007, 0.001 in epochs 1-5): the MSE pins its features to the
    teacher's and its own 8-channel head never aligned with them. In this reduced configuration (teacher and
    student 8 epochs each), measured: random head 0.203, 0.084, 0.021, 0.013, 0.009, 0.006, 0.005, 0.002;
    teacher's head 0.323, 0.423, 0.423, 0.399, 0.396, 0.355, 0.402, 0.373 (teacher 0.75-0.77 on class-mean images).
    """
    train, val = _small_polyp(tmp_path)
    teacher_in = lambda i, lab: class_mean_image(i, lab, 2)  # noqa: E731
    torch.manual_seed(0)
    teacher = create_model("unet", 3, 2, widths=[8, 16, 32, 64, 128], skip_connections=False)
    config = TrainConfig(epochs=KD_EPOCHS, batch_size=8, lr=1e-3, seed=0, device="cpu")
    Trainer(teacher, train, val, config, num_classes=2, augmenter=Augmenter(), input_fn=teacher_in).fit()
    torch.manual_seed(0)
    student = create_model("unet", 3, 2, widths=[8, 16, 32, 64, 128])
    result = DistillationTrainer(student, train, val, config, num_classes=2, augmenter=Augmenter(), teacher=teacher,
                                 alpha=2.0, teacher_input_fn=teacher_in, head_from_teacher=True).fit()

    dice = [h["val_dice"] for h in result.history]
    assert max(dice) >= 0.3 and dice[-1] >= 0.25, f"student validation Dice per epoch: {dice}"
    assert min(dice[1:]) > 0.1, f"student collapsed: {dice}"
    with torch.no_grad():
        pred = student.eval()(val[0]).argmax(1)
    ratio = float((pred == 1).float().mean() / (val[1] == 1).float().mean())
    assert 0.25 < ratio < 4.0, f"predicted/true foreground pixels: {ratio:.2f}"
