from __future__ import annotations

import pytest
import torch

from sikd_core.classmean import METHODS, class_mean_image, label_map_image

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def naive_class_mean(images: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Reference: Eq. 1 written literally, one image, class and channel at a time."""
    out = torch.zeros_like(images, dtype=torch.float64)
    for b in range(images.shape[0]):
        for k in range(num_classes):
            mask = labels[b] == k
            if mask.any():
                for c in range(images.shape[1]):
                    out[b, c][mask] = images[b, c][mask].double().mean()
    return out


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("b,c,h,w,k", [(1, 1, 8, 8, 2), (3, 3, 17, 11, 4), (2, 1, 32, 32, 6), (4, 2, 5, 9, 3)])
def test_matches_naive_reference(b, c, h, w, k, method, device):
    g = torch.Generator().manual_seed(b * 100 + k)
    images = torch.rand(b, c, h, w, generator=g)
    labels = torch.randint(0, k, (b, h, w), generator=g)
    labels[0] = labels[0].clamp(max=k - 2) if k > 2 else labels[0]  # a class absent from one image
    got = class_mean_image(images.to(device), labels.to(device), k, method=method)
    assert got.shape == images.shape and got.dtype == images.dtype and got.device.type == device
    torch.testing.assert_close(got.cpu().double(), naive_class_mean(images, labels, k), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("device", DEVICES)
def test_methods_agree_at_training_size(device):
    """16x3x256x256, 4 classes (the benchmark's size): every method gives the same image, TF32 or not."""
    g = torch.Generator().manual_seed(1)
    images = torch.rand(16, 3, 256, 256, generator=g).to(device)
    labels = torch.randint(0, 4, (16, 256, 256), generator=g).to(device)
    ref = class_mean_image(images.double(), labels, 4, method="scatter")
    tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = True
    try:
        for method in METHODS:
            torch.testing.assert_close(class_mean_image(images, labels, 4, method=method).double(), ref,
                                       rtol=2e-5, atol=0)  # TF32 would be ~1e-3 off
    finally:
        torch.backends.cuda.matmul.allow_tf32 = tf32
    assert torch.backends.cuda.matmul.allow_tf32 == tf32


def test_each_image_uses_its_own_means():
    images = torch.stack([torch.full((1, 4, 4), 0.2), torch.full((1, 4, 4), 0.8)])
    images[1, 0, 0, 0] = 0.0
    labels = torch.zeros(2, 4, 4, dtype=torch.long)
    out = class_mean_image(images, labels, 2)
    assert torch.allclose(out[0], torch.full((1, 4, 4), 0.2))
    assert torch.allclose(out[1], torch.full((1, 4, 4), 0.75))


def test_removes_texture_keeps_shape():
    g = torch.Generator().manual_seed(0)
    labels = torch.zeros(1, 32, 32, dtype=torch.long)
    labels[0, 8:24, 8:24] = 1
    images = (0.3 + 0.4 * labels.float() + 0.1 * torch.randn(1, 32, 32, generator=g)).unsqueeze(1)
    out = class_mean_image(images, labels, 2)
    assert torch.unique(out).numel() == 2  # one value per class
    assert ((out[0, 0] > out[0, 0].mean()) == (labels[0] == 1)).all()


def test_rgb_channels_independent():
    images = torch.zeros(1, 3, 2, 2)
    images[0, 0] = torch.tensor([[1.0, 3.0], [0.0, 0.0]])
    images[0, 2] = torch.tensor([[0.5, 0.5], [2.0, 4.0]])
    labels = torch.tensor([[[1, 1], [0, 0]]])
    out = class_mean_image(images, labels, 2)
    assert out[0, 0, 0].tolist() == [2.0, 2.0] and out[0, 0, 1].tolist() == [0.0, 0.0]
    assert out[0, 2, 0].tolist() == [0.5, 0.5] and out[0, 2, 1].tolist() == [3.0, 3.0]


def test_half_precision_accumulates_in_float32():
    images = torch.rand(2, 1, 64, 64).half()
    labels = torch.randint(0, 3, (2, 64, 64))
    out = class_mean_image(images, labels, 3)
    assert out.dtype == torch.float16
    torch.testing.assert_close(out.double(), naive_class_mean(images.float(), labels, 3), atol=2e-3, rtol=0)


@pytest.mark.parametrize(
    "images,labels,k,err",
    [
        (torch.rand(2, 4, 4), torch.zeros(2, 4, 4, dtype=torch.long), 2, "B,C,H,W"),
        (torch.rand(2, 1, 4, 4), torch.zeros(2, 4, dtype=torch.long), 2, "B,H,W"),
        (torch.rand(2, 1, 4, 4), torch.zeros(2, 5, 4, dtype=torch.long), 2, "does not match"),
        (torch.rand(1, 1, 4, 4), torch.full((1, 4, 4), 3), 3, r"\[0, 3\)"),
        (torch.rand(1, 1, 4, 4), torch.full((1, 4, 4), -1), 3, r"\[0, 3\)"),
        (torch.rand(1, 1, 4, 4), torch.zeros(1, 4, 4), 2, "integer"),
        (torch.rand(1, 1, 4, 4), torch.zeros(1, 4, 4, dtype=torch.long), 2, "unknown method"),
    ],
)
def test_bad_arguments(images, labels, k, err):
    with pytest.raises((ValueError, TypeError), match=err):
        class_mean_image(images, labels, k, method="fft" if err == "unknown method" else "auto")


def test_unchecked_labels_skip_the_range_check():
    """check_labels=False (the trainers, whose data is checked once) skips the scan; values stay right."""
    images, labels = torch.rand(2, 1, 4, 4), torch.randint(0, 3, (2, 4, 4))
    torch.testing.assert_close(class_mean_image(images, labels, 3, check_labels=False),
                               class_mean_image(images, labels, 3))


def test_label_map_input():
    labels = torch.tensor([[[0, 1], [2, 3]]])
    out = label_map_image(labels, 4, 3)
    assert out.shape == (1, 3, 2, 2)
    assert out[0, 1].flatten().tolist() == pytest.approx([0.0, 1 / 3, 2 / 3, 1.0])
