"""The interface every segmentation network in the registry follows."""

from __future__ import annotations

import copy
import math

import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """A copy of ``model`` for frozen inference, with every BatchNorm that directly follows a Conv2d in an
    ``nn.Sequential`` folded into that conv's weights (exact in eval mode: same outputs up to rounding,
    one memory pass less per layer). Used for the SIKD teacher, which only ever runs forward."""
    folded = copy.deepcopy(model).eval()
    for module in folded.modules():
        if not isinstance(module, nn.Sequential):
            continue
        for i in range(len(module) - 1):
            conv, bn = module[i], module[i + 1]
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d) and bn.track_running_stats:
                module[i] = fuse_conv_bn_eval(conv, bn)
                module[i + 1] = nn.Identity()
    return folded.requires_grad_(False)


class SegmentationModel(nn.Module):
    """A 2D segmentation network that exposes its penultimate feature map.

    Subclasses implement :meth:`forward_with_features`; ``forward`` returns logits ``B,K,H,W`` and
    ``forward_features`` the head's input ``B,F,H,W`` at the input's resolution.
    """

    in_channels: int
    num_classes: int

    def forward_with_features(self, x: Tensor) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def forward_features(self, x: Tensor) -> Tensor:
        return self.forward_with_features(x)[1]

    def head_module(self) -> nn.Module:
        """The final 1x1 conv (features -> logits); the SIKD student may start from the teacher's."""
        raise NotImplementedError(f"{type(self).__name__} does not expose its segmentation head")

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_with_features(x)[0]


class HookedSegmenter(SegmentationModel):
    """Adapts a third-party network (MONAI): features come from a forward hook on its final 1x1 conv.

    Inputs are zero-padded to a multiple of ``size_multiple`` (networks with fixed down-sampling depth
    need it) and to at least ``min_size`` (instance norm needs more than one element at the bottleneck),
    and outputs cropped back, so any input size works.
    """

    def __init__(self, net: nn.Module, head: nn.Module, in_channels: int, num_classes: int, size_multiple: int,
                 min_size: int = 0):
        super().__init__()
        self.net = net
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.size_multiple = size_multiple
        self.min_size = min_size
        self._captured: Tensor | None = None
        self._head = (head,)  # a tuple: a plain reference, not a second registration of the submodule
        head.register_forward_hook(self._capture)

    def head_module(self) -> nn.Module:
        return self._head[0]

    def _capture(self, module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
        self._captured = inputs[0]

    def forward_with_features(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"expected input B,{self.in_channels},H,W; got {tuple(x.shape)}")
        h, w = x.shape[-2:]
        m = self.size_multiple
        ph = max(math.ceil(h / m) * m, self.min_size) - h
        pw = max(math.ceil(w / m) * m, self.min_size) - w
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph))
        self._captured = None
        logits = self.net(x)
        feats = self._captured
        self._captured = None
        if feats is None:
            raise RuntimeError("the feature hook on the final conv did not fire")
        return logits[..., :h, :w], feats[..., :h, :w]
