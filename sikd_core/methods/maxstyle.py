"""``maxstyle``: MaxStyle, adversarial style composition (Chen et al., "MaxStyle: Adversarial style composition
for robust medical image segmentation", MICCAI 2022; arXiv:2206.01737).

A dual-branch network: the segmentation U-Net's encoder is shared with an auxiliary *image decoder*
(same shape as the segmentation decoder, a 1x1 conv to the image channels) trained to reconstruct the
input (MSE). Style layers in the image decoder's last three blocks (the low-level ones, as the authors'
``decoder_layers_indexes``) re-style the features: per-instance channel statistics ``mu, sigma`` are
mixed with those of another image of the batch (``lambda``) and perturbed by noise scaled by the batch
spread of the statistics (``gamma, beta``). ``lambda, gamma, beta`` are optimised *adversarially*
(``n_iter`` Adam steps, lr 0.1, maximising the segmentation loss of the network on the decoded image);
the network is then trained on the clean image and on that hardest styled image:
``L = L_seg(x) + L_rec(x) + L_seg(x_style)``. The image decoder is trained by the reconstruction loss
only (the authors' "separate training"); it and the style layers are train-time only.

Defaults as the authors' public code (cherise215/MaxStyle, ``MaxStyle`` and config
``MICCAI2022_MaxStyle.json``): applied with probability p = 0.5 per batch, ``lambda ~ Beta(0.1, 0.1)``
(``always_use_beta``), ``gamma, beta ~ N(0, 1)``, mixing and noise both learnable, 5 adversarial steps at
lr 0.1, segmentation loss as the adversarial objective. Our own implementation. Needs a network with an
exposed encoder/decoder (the registry's ``unet``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sikd_core.errors import SpecError
from sikd_core.methods.base import MethodTrainer, StepOutput, TrainingMethod
from sikd_core.methods.registry import register_method
from sikd_core.models.unet import UNet, UpBlock


def style_statistics(x: Tensor, eps: float = 1e-6) -> tuple[Tensor, Tensor]:
    """Per-instance, per-channel mean and std ``B,C,1,1`` of features ``B,C,H,W`` (detached, as MaxStyle)."""
    mu = x.mean(dim=(2, 3), keepdim=True)
    sig = (x.var(dim=(2, 3), keepdim=True) + eps).sqrt()
    return mu.detach(), sig.detach()


def restyle(x: Tensor, lmda: Tensor, gamma: Tensor, beta: Tensor, perm: Tensor, eps: float = 1e-6) -> Tensor:
    """MaxStyle's style layer: ``(sig_mix + gamma * std_B(sig)) * x_norm + (mu_mix + beta * std_B(mu))``.

    ``lmda`` ``B,1,1,1`` (clamped to [0, 1]) mixes each image's statistics with those of image ``perm[i]``;
    ``gamma``, ``beta`` ``B,C,1,1`` add noise in units of the batch's spread of the statistics.
    """
    mu, sig = style_statistics(x, eps)
    x_norm = (x - mu) / sig
    gamma_std = sig.std(dim=0, keepdim=True)
    beta_std = mu.std(dim=0, keepdim=True)
    lam = lmda.clamp(0, 1)
    sig_mix = sig * (1 - lam) + sig[perm] * lam
    mu_mix = mu * (1 - lam) + mu[perm] * lam
    return (sig_mix + gamma * gamma_std) * x_norm + (mu_mix + beta * beta_std)


def _decode(blocks: nn.ModuleList, feats: list[Tensor], styles: dict[int, tuple[Tensor, ...]] | None = None) -> Tensor:
    x = feats[-1]
    for j, up in enumerate(blocks):
        x = up(x, feats[-2 - j])
        if styles and j in styles:
            x = restyle(x, *styles[j])
    return x


class ImageDecoder(nn.Module):
    """The auxiliary branch: a decoder shaped as the U-Net's, reconstructing the image from its encoder."""

    def __init__(self, model: UNet, in_channels: int):
        super().__init__()
        w = model.widths
        self.blocks = nn.ModuleList([UpBlock(w[i], w[i - 1], model.skip_connections) for i in range(len(w) - 1, 0, -1)])
        self.out = nn.Conv2d(w[0], in_channels, 1)

    def forward(self, feats: list[Tensor], styles: dict[int, tuple[Tensor, ...]] | None = None) -> Tensor:
        return self.out(_decode(self.blocks, feats, styles))


@register_method(
    "maxstyle", "MaxStyle: an auxiliary image decoder whose feature styles are mixed and perturbed "
    "adversarially; the network also trains on the hardest styled images. Train-time only.",
    "Chen et al., MaxStyle: Adversarial style composition for robust medical image segmentation, MICCAI 2022",
    networks=("unet",))
class MaxStyleMethod(TrainingMethod):
    name = "maxstyle"

    def __init__(self, model: nn.Module, *, in_channels: int, num_classes: int, p: float = 0.5, n_iter: int = 5,
                 adv_lr: float = 0.1, beta_alpha: float = 0.1, n_styled_layers: int = 3):
        super().__init__()
        if not isinstance(model, UNet):
            raise SpecError("maxstyle needs a network with an exposed encoder and decoder: use model 'unet'")
        self.decoder = ImageDecoder(model, in_channels)
        n_blocks = len(self.decoder.blocks)
        self.styled = list(range(max(0, n_blocks - n_styled_layers), n_blocks))
        self.widths = [model.widths[-2 - j] for j in range(n_blocks)]
        self.p, self.n_iter, self.adv_lr, self.beta_alpha = p, n_iter, adv_lr, beta_alpha

    def _init_styles(self, b: int, gen: torch.Generator, device: torch.device) -> dict[int, list[Tensor]]:
        perm = torch.randperm(b, generator=gen)
        while b > 1 and torch.equal(perm, torch.arange(b)):
            perm = torch.randperm(b, generator=gen)
        beta = torch.distributions.Beta(self.beta_alpha, self.beta_alpha)
        styles = {}
        for j in self.styled:
            c = self.widths[j]
            u = torch.rand(b, generator=gen)  # Beta via inverse-free sampling from the generator's uniforms
            lmda = _beta_from_uniform(beta, u).view(b, 1, 1, 1)
            gamma = torch.randn(b, c, 1, 1, generator=gen)
            bta = torch.randn(b, c, 1, 1, generator=gen)
            styles[j] = [lmda.to(device).requires_grad_(), gamma.to(device).requires_grad_(),
                         bta.to(device).requires_grad_(), perm.to(device)]
        return styles

    def adversarial_styles(self, trainer: MethodTrainer, feats: list[Tensor], labels: Tensor,
                           gen: torch.Generator) -> dict[int, tuple[Tensor, ...]] | None:
        """Style parameters maximising the segmentation loss on the decoded image (None: not applied)."""
        b = labels.shape[0]
        if b < 2 or float(torch.rand(1, generator=gen)) >= self.p:
            return None
        styles = self._init_styles(b, gen, labels.device)
        params = [t for s in styles.values() for t in s[:3]]
        opt = torch.optim.Adam(params, lr=self.adv_lr)
        for _ in range(self.n_iter):
            styled = self.decoder(feats, {j: tuple(s) for j, s in styles.items()})
            loss = trainer.loss_fn(trainer.model(trainer.model_input(styled, labels)), labels)
            grads = torch.autograd.grad(-loss, params)  # ascent; network and decoder get no gradient here
            opt.zero_grad(set_to_none=True)
            for t, g in zip(params, grads, strict=True):
                t.grad = g
            opt.step()
        return {j: tuple(t.detach() for t in s) for j, s in styles.items()}

    def step(self, trainer: MethodTrainer, images: Tensor, labels: Tensor) -> StepOutput:
        model = trainer.model
        assert isinstance(model, UNet)
        x = trainer.model_input(images, labels)
        feats = model.encode(x)
        h = _decode(model.decoder, feats)
        logits = model.head(h)
        seg = trainer.loss_fn(logits, labels)
        recon = self.decoder(feats)
        rec = F.mse_loss(recon.float(), x.float())
        gen = trainer.generator("maxstyle")
        detached = [f.detach() for f in feats]
        styles = self.adversarial_styles(trainer, detached, labels, gen)
        with torch.no_grad():
            styled = self.decoder(detached, styles)
        seg_style = trainer.loss_fn(model(trainer.model_input(styled.to(images.dtype), labels)), labels)
        return StepOutput(seg + rec + seg_style, h, {"seg_loss": seg, "rec_loss": rec, "style_seg_loss": seg_style})


def _beta_from_uniform(dist: torch.distributions.Beta, u: Tensor) -> Tensor:
    """A Beta(a, a) sample from uniforms by the inverse CDF (scipy), so the step's generator drives it."""
    from scipy.stats import beta as beta_dist

    a = float(dist.concentration1)
    return torch.from_numpy(beta_dist.ppf(u.double().numpy(), a, a)).float()
