"""The SIKD student's trainer: the one training loop with a frozen teacher and the feature-distillation term."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from sikd_core.losses import FeatureDistillationLoss
from sikd_core.training.teacher import FrozenTeacher
from sikd_core.training.trainer import InputFn, Trainer


def copy_head(teacher: nn.Module, student: nn.Module) -> None:
    """Load the teacher's segmentation head (the final 1x1 conv) into the student's, in place."""
    t_head, s_head = teacher.head_module(), student.head_module()  # type: ignore[operator]
    t_state, s_state = t_head.state_dict(), s_head.state_dict()
    shapes = {k: tuple(v.shape) for k, v in t_state.items()}
    if shapes != {k: tuple(v.shape) for k, v in s_state.items()}:
        raise ValueError(f"the teacher's head {shapes} does not fit the student's "
                         f"{ {k: tuple(v.shape) for k, v in s_state.items()} }; both need the same feature width "
                         "and classes")
    with torch.no_grad():
        for k, v in s_state.items():
            v.copy_(t_state[k])


class DistillationTrainer(Trainer):
    """The SIKD student: ``L = L_seg + alpha * MSE(f_teacher, f_student)`` on penultimate features.

    The teacher is frozen (eval mode, no gradients, no graph kept) and sees ``teacher_input_fn`` of the
    same augmented batch, so both feature maps are aligned pixel for pixel. It runs through
    :class:`~sikd_core.training.teacher.FrozenTeacher`: BN folded; on CUDA compiled (``teacher_mode``) and on
    a side stream overlapping the student's forward (``teacher_side_stream``).

    ``head_from_teacher``: the student's 1x1 head starts as a copy of the teacher's (then trains as usual).
    The MSE pins the student's features to the teacher's, so the teacher's head is the one that already
    reads them; a random head has to align with features it cannot move, and on small nets it did not
    (see :class:`~sikd_core.spec.ExperimentSpec` ``student_head_init``).
    """

    def __init__(self, *args: Any, teacher: nn.Module, alpha: float, teacher_input_fn: InputFn | None = None,
                 teacher_mode: str = "auto", teacher_side_stream: bool = True, head_from_teacher: bool = False,
                 **kwargs: Any):
        super().__init__(*args, **kwargs)
        if head_from_teacher:
            copy_head(teacher, self.model)
        self.teacher = teacher
        self.alpha = alpha
        self.teacher_input_fn = teacher_input_fn
        self.teacher_mode = teacher_mode
        self.teacher_side_stream = teacher_side_stream
        self.kd_loss = FeatureDistillationLoss(alpha)

    def _setup(self) -> None:
        super()._setup()
        self.teacher.eval().requires_grad_(False)  # frozen; the runner works on a BN-folded copy
        self.frozen_teacher = FrozenTeacher(self.teacher, self.device, autocast=self.autocast,
                                            channels_last=self.channels_last, mode=self.teacher_mode,
                                            side_stream=self.teacher_side_stream, bf16=self.use_amp)

    def train_step(self, images: Tensor, labels: Tensor) -> dict[str, Tensor]:
        with torch.no_grad():
            t_in = self.teacher_input_fn(images, labels) if self.teacher_input_fn is not None else images
        t_feat = self.frozen_teacher.submit(t_in)
        with self.autocast():
            logits, s_feat = self.model.forward_with_features(self.model_input(images, labels))
            seg = self.loss_fn(logits, labels)
            kd = self.kd_loss(s_feat, t_feat())
            loss = seg + kd
        self.backward(loss)
        if self.frozen_teacher.fallback_reason:
            self.warn(self.frozen_teacher.fallback_reason)
        return {"loss": loss, "seg_loss": seg, "kd_loss": kd}
