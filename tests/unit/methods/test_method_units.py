"""Each method's defining computation, pinned on small inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.ndimage import distance_transform_edt

from sikd_core.methods.gin import gin_augment
from sikd_core.methods.maxstyle import restyle, style_statistics
from sikd_core.methods.sdm import product_loss, signed_distance_maps, squared_distance_to


def _random_masks(n: int, size: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    masks = np.zeros((n, size, size), dtype=bool)
    yy, xx = np.mgrid[:size, :size]
    for i in range(n):
        for _ in range(rng.integers(1, 3)):
            cy, cx, r = rng.integers(2, size - 2), rng.integers(2, size - 2), rng.integers(1, size // 3)
            masks[i] |= (yy - cy) ** 2 + ((xx - cx) * rng.uniform(0.5, 1.5)) ** 2 <= r * r
        masks[i, 0, 0] = False  # keep some background
    return masks


def test_squared_distances_equal_scipys_exact_transform():
    masks = _random_masks(6, 23, seed=0)
    got = squared_distance_to(torch.from_numpy(~masks)).sqrt().numpy()  # distance to the nearest outside pixel
    for m, g in zip(masks, got, strict=True):
        np.testing.assert_allclose(g[m], distance_transform_edt(m)[m], rtol=1e-6, atol=1e-6)
    rect = torch.zeros(1, 5, 7, dtype=torch.bool)
    assert torch.isinf(squared_distance_to(rect)).all()  # no site: infinite distance


def _scipy_sdf(mask: np.ndarray) -> np.ndarray:
    """The reference normalisation (Ma et al.'s compute_sdf) from scipy's exact EDT."""
    d_in, d_out = distance_transform_edt(mask), distance_transform_edt(~mask)
    sdf = d_out / d_out.max() - d_in / d_in.max()
    sdf[mask & (d_in <= 1)] = 0.0
    return sdf


def test_signed_distance_maps_match_scipy_per_class():
    masks = _random_masks(4, 20, seed=1)
    labels = torch.from_numpy(masks.astype(np.int64))
    labels[:, 15:, 15:] = 2  # a second foreground class
    sdm = signed_distance_maps(labels, 3)
    assert sdm.shape == (4, 2, 20, 20) and sdm.min() >= -1 and sdm.max() <= 1
    for b in range(4):
        for k in (1, 2):
            ref = _scipy_sdf(labels[b].numpy() == k)
            np.testing.assert_allclose(sdm[b, k - 1].numpy(), ref, atol=1e-5)
    inside = labels == 1
    assert (sdm[:, 0][inside] <= 0).all() and (sdm[:, 0][~inside] > 0).all()


def test_signed_distance_maps_of_absent_and_full_classes():
    labels = torch.zeros(2, 8, 8, dtype=torch.long)
    labels[1] = 1
    sdm = signed_distance_maps(labels, 2)
    assert (sdm[0] == 1).all() and (sdm[1] == -1).all()
    with pytest.raises(ValueError, match="B,H,W"):
        signed_distance_maps(labels[0], 2)


def test_product_loss_rewards_the_right_sign():
    g = torch.tensor([0.5, -0.5, 0.8])
    assert product_loss(g, g) < product_loss(torch.zeros(3), g) < product_loss(-g, g)


def _standardise(t):
    m = t.mean(dim=(1, 2, 3), keepdim=True)
    return m, t.std(dim=(1, 2, 3), keepdim=True, correction=0)


def test_gin_keeps_each_images_frobenius_norm_and_differs_per_call():
    x = torch.rand(4, 3, 16, 16)
    gen = torch.Generator().manual_seed(0)
    a, b = gin_augment(x, gen), gin_augment(x, gen)
    assert a.shape == x.shape and torch.isfinite(a).all()
    # the norm is kept in each image's standardised space (the authors' z-scored inputs): ||z'|| = ||z|| = sqrt(CHW)
    mean, std = _standardise(x)
    z_out = (a - mean) / std
    torch.testing.assert_close(z_out.flatten(1).norm(dim=1), torch.full((4,), (3 * 16 * 16) ** 0.5), rtol=1e-3, atol=1e-3)
    assert not torch.allclose(a, b)  # fresh random nets every call
    assert not torch.allclose(a[0], a[1] * x[0].norm() / x[1].norm())  # and per image
    again = gin_augment(x, torch.Generator().manual_seed(0))
    torch.testing.assert_close(again, a)  # reproducible from the generator's state
    grey = gin_augment(torch.rand(2, 1, 9, 11), gen)
    assert grey.shape == (2, 1, 9, 11)


def test_gin_keeps_an_images_level_and_contrast_scale():
    """On [0, 1] intensities GIN must not turn an image negative or flat: the output lives at the image's
    mean and scale (shifting and scaling the input shifts and scales the output the same way)."""
    x = torch.rand(16, 1, 32, 32) * 0.6 + 0.2
    out = gin_augment(x, torch.Generator().manual_seed(3))
    moved = gin_augment(x * 2 + 5, torch.Generator().manual_seed(3))
    torch.testing.assert_close(moved, out * 2 + 5, rtol=1e-4, atol=1e-4)
    mean, std = _standardise(x)
    out_mean, out_std = _standardise(out)
    # ||z'||^2 / N = mean(z')^2 + std(z')^2 = 1: level within one std of the input's, contrast at most the input's
    assert ((out_mean - mean).abs() <= std + 1e-4).all()
    assert (out_std <= std * (1 + 1e-3)).all() and out_std.mean() > 0.3 * std.mean()


def test_maxstyle_statistics_mix_and_noise():
    torch.manual_seed(0)
    x = torch.randn(4, 3, 8, 8) * torch.tensor([1.0, 2.0, 3.0])[None, :, None, None] + 5
    mu, sig = style_statistics(x)
    torch.testing.assert_close(mu[:, :, 0, 0], x.mean((2, 3)))
    torch.testing.assert_close(sig[:, :, 0, 0], x.var((2, 3)).add(1e-6).sqrt())
    perm = torch.tensor([1, 2, 3, 0])
    zeros = torch.zeros(4, 3, 1, 1)
    same = restyle(x, torch.zeros(4, 1, 1, 1), zeros, zeros, perm)
    torch.testing.assert_close(same, x, rtol=1e-4, atol=1e-4)  # no mixing, no noise: identity
    swapped = restyle(x, torch.ones(4, 1, 1, 1), zeros, zeros, perm)
    mu2, sig2 = style_statistics(swapped)
    torch.testing.assert_close(mu2, mu[perm], rtol=1e-4, atol=1e-4)  # lambda = 1: the other image's style
    torch.testing.assert_close(sig2, sig[perm], rtol=1e-3, atol=1e-3)
    noisy = restyle(x, torch.zeros(4, 1, 1, 1), zeros, torch.ones(4, 3, 1, 1), perm)
    mu3, _ = style_statistics(noisy)
    torch.testing.assert_close(mu3 - mu, mu.std(0, keepdim=True).expand_as(mu), rtol=1e-4, atol=1e-4)
