"""The SIKD student's trainer: the one training loop with a frozen teacher and the feature-distillation term."""

from __future__ import annotations

from collections.abc import Callable
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
    """The one distillation trainer: ``L = L_seg + alpha * MSE(f_teacher, f_student)`` on penultimate features.

    The SIKD student uses it as it is; every ``X+sikd`` student is a
    :class:`~sikd_core.methods.base.MethodTrainer`, which subclasses it and replaces only the student's forward
    (the method's :meth:`step`): the teacher's input, its frozen runner, the distillation term, the head copy
    and the runner's warnings are this class's, for both. Without a ``teacher`` it trains as the plain loop.

    The teacher is frozen (eval mode, no gradients, no graph kept) and sees ``teacher_input_fn`` of the
    same augmented batch, so both feature maps are aligned pixel for pixel. It runs through
    :class:`~sikd_core.training.teacher.FrozenTeacher`: BN folded; on CUDA compiled (``teacher_mode``) and on
    a side stream overlapping the student's forward (``teacher_side_stream``).

    ``head_from_teacher``: the student's 1x1 head starts as a copy of the teacher's (then trains as usual).
    The MSE pins the student's features to the teacher's, so the teacher's head is the one that already
    reads them; a random head has to align with features it cannot move, and on small nets it did not
    (see :class:`~sikd_core.spec.ExperimentSpec` ``student_head_init``).
    """

    def __init__(self, *args: Any, teacher: nn.Module | None, alpha: float = 2.0,
                 teacher_input_fn: InputFn | None = None, teacher_mode: str = "auto",
                 teacher_side_stream: bool = True, head_from_teacher: bool = False, **kwargs: Any):
        super().__init__(*args, **kwargs)
        if teacher is not None and head_from_teacher:
            copy_head(teacher, self.model)
        self.teacher = teacher
        self.alpha = alpha
        self.teacher_input_fn = teacher_input_fn
        self.teacher_mode = teacher_mode
        self.teacher_side_stream = teacher_side_stream
        self.kd_loss = FeatureDistillationLoss(alpha)

    def _setup(self) -> None:
        super()._setup()
        if self.teacher is not None:
            self.teacher.eval().requires_grad_(False)  # frozen; the runner works on a BN-folded copy
            self.frozen_teacher = FrozenTeacher(self.teacher, self.device, autocast=self.autocast,
                                                channels_last=self.channels_last, mode=self.teacher_mode,
                                                side_stream=self.teacher_side_stream, bf16=self.use_amp)

    def submit_teacher(self, images: Tensor, labels: Tensor) -> Callable[[], Tensor] | None:
        """Start the frozen teacher on ``teacher_input_fn(images, labels)``; call the result for its features
        (None without a teacher). Submitted before the student's forward so the two can overlap."""
        if self.teacher is None:
            return None
        with torch.no_grad():
            t_in = self.teacher_input_fn(images, labels) if self.teacher_input_fn is not None else images
        return self.frozen_teacher.submit(t_in)

    def distil(self, student_features: Tensor, teacher: Callable[[], Tensor] | None) -> Tensor | None:
        """``alpha * MSE`` of the student's features to the teacher's (None without a teacher)."""
        return None if teacher is None else self.kd_loss(student_features, teacher())

    def student_step(self, images: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        """The student's forward and its own loss: ``(loss, penultimate features, terms to log)``. The plain
        SIKD student: the segmentation loss of the network."""
        logits, feats = self.model.forward_with_features(self.model_input(images, labels))  # type: ignore[operator]
        seg = self.loss_fn(logits, labels)
        return seg, feats, {"seg_loss": seg}

    def train_step(self, images: Tensor, labels: Tensor) -> dict[str, Tensor]:
        teacher = self.submit_teacher(images, labels)
        with self.autocast():
            loss, feats, terms = self.student_step(images, labels)
            kd = self.distil(feats, teacher)
            if kd is not None:
                terms = {**terms, "kd_loss": kd}
                loss = loss + kd
        self.backward(loss)
        if self.teacher is not None and self.frozen_teacher.fallback_reason:
            self.warn(self.frozen_teacher.fallback_reason)
        return {"loss": loss, **terms}
