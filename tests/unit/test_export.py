"""Export bundles: the numpy recipe equals sikd's preprocessing, and every registered network exported to
ONNX gives `sikd predict`'s masks (>= 99.99% of pixels) and logits (within 1e-4 + 1e-4 x |logit|) on held-out
images."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from sikd_core.cli import main
from sikd_core.data import read_image
from sikd_core.errors import SIKDError
from sikd_core.export import runtime as rt
from sikd_core.export import write_bundle
from sikd_core.inference import load_bundle, predict_images, preprocess_image, save_bundle
from sikd_core.models import MODELS, create_model
from tests.conftest import SHARED, polyp_names

pytestmark = pytest.mark.slow(seconds=60)  # ONNX export and parity of every network (eleven)

# Small configurations of every registered network (the shared model test's idea: one test for all).
TINY = {
    "unet": {"widths": [4, 8, 16]},
    "basic_unet": {"features": [4, 4, 8, 8, 16, 4]},
    "attention_unet": {"channels": [4, 8, 16]},
    "swin_unetr": {"feature_size": 12, "depths": [1, 1, 1, 1], "num_heads": [1, 1, 1, 1]},
    "dynunet": {"filters": [4, 8, 16]},
    "segresnet": {"init_filters": 8, "blocks_down": [1, 1, 1], "blocks_up": [1, 1]},
    "basic_unet_pp": {"features": [4, 4, 8, 8, 16, 4]},
    "flexible_unet_resnet": {"backbone": "resnet10", "decoder_channels": [8, 8, 8, 4, 4]},
    "flexible_unet_efficientnet": {"backbone": "efficientnet-b0", "decoder_channels": [8, 8, 8, 4, 4]},
    "unetr": {"img_size": [64, 64], "feature_size": 4, "hidden_size": 16, "mlp_dim": 32, "num_heads": 2},
    "transunet": {"widths": [4, 8, 16], "hidden_size": 16, "num_layers": 1, "num_heads": 2, "mlp_dim": 32},
}
NOT_EXPORTABLE: dict[str, str] = {}  # name -> why; every registered network exports today


def test_every_registered_network_has_a_parity_case():
    assert set(MODELS) == set(TINY) | set(NOT_EXPORTABLE)


def make_bundle(path, name: str, images: list[np.ndarray] | None = None, in_channels: int = 3, num_classes: int = 2,
                size=(64, 64), seed: int = 0):
    """A bundle of a randomly initialised network; with ``images``, its head bias is set so that every class
    wins on about an equal share of their pixels (a random head usually predicts one class everywhere,
    which would make a mask comparison trivially true)."""
    torch.manual_seed(seed)
    net = create_model(name, in_channels, num_classes, **TINY[name]).eval()
    if images is not None:
        head = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d) and m.out_channels == num_classes][-1]
        x = torch.from_numpy(np.stack([preprocess_image(im, size, in_channels) for im in images]))
        with torch.no_grad():
            lg = net(x)
            head.bias -= lg.transpose(0, 1).reshape(num_classes, -1).median(1).values
    classes = ["background", "polyp"] if num_classes == 2 else ["background"] + [f"c{i}" for i in range(1, num_classes)]
    return save_bundle(path, net, network=name, network_kwargs=TINY[name], in_channels=in_channels,
                       num_classes=num_classes, image_size=list(size), class_names=classes,
                       normalization={"method": "percentile", "lower": 0.5, "upper": 99.5}, method="sikd", seed=seed,
                       spec={"name": "parity"})


@pytest.fixture(scope="module")
def held_out() -> list[np.ndarray]:
    """Real images of both polyp sources (different sizes, RGB JPEG and PNG) and a grey 16-bit image."""
    imgs = [read_image(SHARED / "cvc-clinicdb" / "images" / n) for n in polyp_names("cvc-clinicdb", 2)]
    imgs += [read_image(SHARED / "kvasir-seg" / "images" / n) for n in polyp_names("kvasir-seg", 2)]
    rng = np.random.default_rng(0)
    imgs.append((rng.random((50, 70, 1)) * 4000).astype(np.float32))
    return imgs


def torch_logits(loaded, image: np.ndarray) -> np.ndarray:
    """`sikd predict`'s logits at the original size (before its argmax)."""
    x = torch.from_numpy(preprocess_image(image, loaded.image_size, loaded.in_channels))[None]
    with torch.no_grad():
        lg = loaded.model(x)
    return F.interpolate(lg, size=image.shape[:2], mode="bilinear", align_corners=False)[0].numpy()


@pytest.mark.parametrize("size", [(64, 64), (48, 80), (300, 200)])
@pytest.mark.parametrize("channels", [(1, 1), (1, 3), (3, 1), (3, 3)])
def test_recipe_preprocessing_equals_sikds(size, channels):
    rng = np.random.default_rng(1)
    src_c, net_c = channels
    for shape in [(100, 130), (37, 41), (64, 64), (500, 17)]:
        img = (rng.random((*shape, src_c)) * 255).astype(np.float32)
        ours, theirs = rt.preprocess(img, size, net_c), preprocess_image(img, size, net_c)
        assert ours.shape == theirs.shape == (net_c, *size) and ours.dtype == np.float32
        assert np.abs(ours - theirs).max() < 2e-5


@pytest.mark.parametrize("out", [(100, 130), (37, 41), (64, 64), (20, 300)])
def test_recipe_resize_back_equals_torch(out):
    lg = torch.randn(3, 64, 48)
    ref = F.interpolate(lg[None], size=out, mode="bilinear", align_corners=False)[0].numpy()
    assert np.abs(rt.resize_logits(lg.numpy(), out) - ref).max() < 1e-4


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA", "I;16", "P", "LA"])
def test_runtime_reads_images_like_sikd(tmp_path, mode):
    rng = np.random.default_rng(2)
    rgb = Image.fromarray((rng.random((20, 30, 3)) * 255).astype(np.uint8))
    im = {"L": rgb.convert("L"), "RGB": rgb, "RGBA": rgb.convert("RGBA"), "P": rgb.convert("P"), "LA": rgb.convert("LA"),
          "I;16": Image.fromarray((rng.random((20, 30)) * 60000).astype(np.uint16))}[mode]
    path = tmp_path / "x.png"
    im.save(path)
    assert np.array_equal(rt.read_image(path), read_image(path))


@pytest.mark.parametrize("name", sorted(TINY))
def test_onnx_parity_with_sikd_predict(tmp_path, held_out, name):
    """The export bundle's numpy+onnxruntime path against `sikd predict` on held-out images."""
    model_pt = make_bundle(tmp_path / "model.pt", name, held_out)
    out = write_bundle(model_pt, tmp_path / "bundle", "onnx")
    recipe = json.loads((out / "recipe.json").read_text())
    assert recipe["recipe"] == "sikd-preprocess/1" and recipe["opset"] == 18 and recipe["class_names"][1] == "polyp"
    assert {p.name for p in out.iterdir()} >= {"model.onnx", "recipe.json", "predict.py", "requirements.txt",
                                               "model_card.md", "model_card.json", "README.md"}
    loaded = load_bundle(model_pt)
    exported = rt.load(out)
    masks_torch = predict_images(loaded, held_out)
    masks_onnx = exported.predict(held_out, batch_size=3)  # dynamic batch: chunks of 3 and 2
    same = sum(int((a == b).sum()) for a, b in zip(masks_torch, masks_onnx, strict=True))
    total = sum(m.size for m in masks_torch)
    assert same / total >= 0.9999, f"{name}: masks agree on {same / total:.6f} of pixels"
    fg = sum(int(m.sum()) for m in masks_torch) / total
    assert 0.05 < fg < 0.95, f"degenerate case: foreground {fg:.3f} of the pixels"
    for img, lg in zip(held_out, exported.predict_logits(held_out), strict=True):
        # float32 through two runtimes: within 1e-4 + 1e-4 x |logit| (DynUNet's instance norms gave 1.1e-4 on
        # logits near 1 under a loaded suite)
        np.testing.assert_allclose(lg, torch_logits(loaded, img), rtol=1e-4, atol=1e-4)
    # The network alone, same input: onnxruntime against PyTorch.
    x = np.stack([preprocess_image(im, loaded.image_size, 3) for im in held_out])
    with torch.no_grad():
        ref = loaded.model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(exported.run(x), ref, rtol=1e-4, atol=1e-4)


def test_torchscript_bundle_and_cli(tmp_path, held_out, capsys):
    model_pt = make_bundle(tmp_path / "model.pt", "unet", held_out, in_channels=1, num_classes=3)
    assert main(["export", str(model_pt), "--format", "torchscript", "--out", str(tmp_path / "ts"),
                 "--zip", str(tmp_path / "ts.zip")]) == 0
    assert "torchscript" in capsys.readouterr().out and (tmp_path / "ts.zip").is_file()
    exported = rt.load(tmp_path / "ts")
    assert exported.format == "torchscript" and exported.in_channels == 1
    loaded = load_bundle(model_pt)
    for a, b in zip(predict_images(loaded, held_out), exported.predict(held_out), strict=True):
        assert (a == b).mean() >= 0.9999
    assert "torch" in (tmp_path / "ts" / "requirements.txt").read_text()


def test_export_errors(tmp_path):
    model_pt = make_bundle(tmp_path / "model.pt", "unet")
    with pytest.raises(SIKDError, match="unknown export format"):
        write_bundle(model_pt, tmp_path / "x", "tflite")
    with pytest.raises(SIKDError, match="not found"):
        write_bundle(tmp_path / "missing.pt", tmp_path / "x", "onnx")
    (tmp_path / "b").mkdir()
    with pytest.raises(FileNotFoundError, match="not a SIKD Studio export bundle"):
        rt.load(tmp_path / "b")
