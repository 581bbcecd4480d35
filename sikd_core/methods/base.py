"""The interface of a training method plug-in and the trainer that runs it (optionally with SIKD on top)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from sikd_core.training.distill import DistillationTrainer
from sikd_core.training.trainer import epoch_seed


@dataclass
class StepOutput:
    """One training step's result: the method's total loss, the student's penultimate features (what
    SIKD distils, taken from the forward pass on the un-augmented input where the method has one) and
    the loss terms to log."""

    loss: Tensor
    features: Tensor
    terms: dict[str, Tensor] = field(default_factory=dict)


class TrainingMethod(nn.Module):
    """A training method: its training-only modules (heads, decoders) are this module's children, optimised
    together with the network and saved in checkpoints, never in the deployed model bundle.

    Subclasses implement :meth:`step`. ``name`` is the registry name.
    """

    name: str = ""

    def step(self, trainer: MethodTrainer, images: Tensor, labels: Tensor) -> StepOutput:
        """Forward + losses of one batch (``images`` ``B,C,H,W`` after the shared augmentation, ``labels``
        ``B,H,W``). Runs under the trainer's autocast; the trainer adds distillation and steps."""
        raise NotImplementedError


class MethodTrainer(DistillationTrainer):
    """Trains ``model`` with a :class:`TrainingMethod`; with a ``teacher`` it also adds SIKD's
    ``alpha * MSE(f_teacher, f_student)`` on the method's student features (the "X + SIKD" rows).

    The one distillation trainer (:class:`~sikd_core.training.distill.DistillationTrainer`) with the student's
    forward replaced by the method's :meth:`TrainingMethod.step`. The teacher sees ``teacher_input_fn`` of the
    batch *before* the method's own augmentation (the class-mean image of the original), so it is the very
    teacher plain SIKD uses.
    """

    def __init__(self, *args: Any, method: TrainingMethod, teacher: nn.Module | None = None, **kwargs: Any):
        super().__init__(*args, teacher=teacher, **kwargs)
        self.method = method

    def _setup(self) -> None:
        self.method.to(self.device)
        super()._setup()  # builds the optimiser, which includes the method's parameters

    def build_optimizer(self) -> torch.optim.Optimizer:
        params = list(self.model.parameters()) + [p for p in self.method.parameters() if p.requires_grad]
        return torch.optim.Adam(params, lr=self.config.lr, weight_decay=self.config.weight_decay)

    def generator(self, salt: str) -> torch.Generator:
        """A CPU generator seeded from (seed, step, salt): a method's randomness is reproducible on resume."""
        return torch.Generator().manual_seed(epoch_seed(self.config.seed, self.state.global_step, salt))

    def student_step(self, images: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        self.method.train()
        out = self.method.step(self, images, labels)
        return out.loss, out.features, {k: v.detach() for k, v in out.terms.items()}

    def checkpoint(self) -> dict[str, Any]:
        ckpt = super().checkpoint()
        ckpt["method"] = {"name": self.method.name, "state": self.method.state_dict()}
        return ckpt

    def _resume(self) -> bool:
        if not super()._resume():
            return False
        assert self.checkpoint_dir is not None
        ckpt = torch.load(self.checkpoint_dir / "latest.pt", map_location=self.device, weights_only=False)
        if "method" in ckpt:
            self.method.load_state_dict(ckpt["method"]["state"])
        return True
