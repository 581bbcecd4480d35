"""Stand-alone runtime of an exported SIKD Studio model: numpy + Pillow + onnxruntime, nothing else.

This file is copied verbatim into every export bundle as ``predict.py``; it must not import sikd_core,
torch or anything beyond numpy and Pillow at module level (onnxruntime, or torch for a TorchScript
bundle, is imported when a model is loaded). It implements the recipe ``sikd-preprocess/1`` declared in
the bundle's ``recipe.json``, numerically the same as ``sikd predict``:

1. read: Pillow; grey -> 1 channel, RGB -> 3, alpha dropped, palette/other modes -> RGB, 16-bit and float
   images keep their values (float32).
2. channels: grey -> ``in_channels`` by repetition; RGB -> grey by ITU-R BT.601 luminance.
3. intensity: clip to the image's own 0.5th / 99.5th percentiles (numpy's linear interpolation, all
   channels jointly), scale to [0, 1]; a constant image becomes zeros.
4. resize to the network size: separable bilinear (triangle) filter, antialiased when shrinking
   (PyTorch's ``interpolate(..., antialias=True)``; PIL's BILINEAR), half-pixel centres, clamp to [0, 1].
5. network: ``input`` ``B,C,h,w`` float32 -> ``logits`` ``B,K,h,w``.
6. resize back: the logits, bilinear without antialiasing (half-pixel centres), to the original size.
7. argmax over classes -> ``H,W`` uint8 class map.

A DICOM series (a folder or a .zip of its files) is normalised as one volume (percentiles over all its slices,
as training normalises volumes), segmented slice by slice and written as a DICOM SEG that references it; that needs pydicom and highdicom (``pip install pydicom highdicom``) and the bundle's
``sikd_dicom.py`` beside this file.

Usage::

    python predict.py IMAGE... --out DIR          # masks (0/255 for one foreground class) + overlays
    python predict.py SERIES_DIR_OR_ZIP --out DIR # a DICOM SEG (<name>_seg.dcm) over the series
    python -c "import predict; m = predict.load('.'); masks = m.predict([array])"
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

RECIPE = "sikd-preprocess/1"
LUMINANCE = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R BT.601
_GREY_MODES = ("L", "I", "F", "I;16", "I;16L", "I;16B", "I;16N")
_COLOURS = np.array([[0, 0, 0], [230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48],
                     [145, 30, 180], [70, 240, 240], [240, 50, 230]], dtype=np.float32)


# ------------------------------------------------------------------------------------ preprocessing

def read_image(path: str | os.PathLike[str]) -> np.ndarray:
    """A 2D image file as float32 ``H,W,C`` raw intensities (C = 1 or 3)."""
    im = Image.open(path)
    im.seek(0)
    im.load()
    mode = im.mode
    if mode == "1":
        arr = np.asarray(im.convert("L"))[:, :, None]
    elif mode in _GREY_MODES:
        arr = np.asarray(im)[:, :, None]
    elif mode == "LA":
        arr = np.asarray(im)[:, :, :1]
    elif mode == "RGB":
        arr = np.asarray(im)
    elif mode == "RGBA":
        arr = np.asarray(im)[:, :, :3]
    else:
        arr = np.asarray(im.convert("RGB"))
    return np.ascontiguousarray(arr, dtype=np.float32)


def convert_channels(x: np.ndarray, in_channels: int) -> np.ndarray:
    """Channels-last ``H,W,C`` -> ``H,W,in_channels`` (grey repeated; RGB -> grey by luminance)."""
    c = x.shape[-1]
    if c == in_channels:
        return x
    if c == 1:
        return np.repeat(x, in_channels, axis=-1)
    if c == 3 and in_channels == 1:
        return (x.astype(np.float32, copy=False) @ LUMINANCE)[..., None]
    raise ValueError(f"cannot convert an image with {c} channels to {in_channels}")


def normalize_intensity(x: np.ndarray, lower: float = 0.5, upper: float = 99.5) -> np.ndarray:
    """Clip to the ``lower``/``upper`` percentiles (all channels jointly), then scale to [0, 1]."""
    a = np.asarray(x, dtype=np.float32)
    if a.size == 0:
        return a.copy()
    if not np.all(np.isfinite(a)):
        a = np.nan_to_num(a, nan=0.0, posinf=0.0, neginf=0.0)
    lo, hi = (float(v) for v in np.percentile(a, [lower, upper]))
    if not hi > lo:
        return np.zeros_like(a, dtype=np.float32)
    out = np.clip(a, lo, hi)
    out -= lo
    out *= 1.0 / (hi - lo)
    return np.clip(out, 0.0, 1.0, out=out)


def _aa_weights(in_size: int, out_size: int) -> np.ndarray:
    """``out,in`` weights of PyTorch's antialiased bilinear resize (half-pixel centres, triangle filter
    widened by the scale when shrinking, weights renormalised at the borders)."""
    scale = in_size / out_size
    support = scale if scale >= 1.0 else 1.0
    invscale = 1.0 / scale if scale >= 1.0 else 1.0
    w = np.zeros((out_size, in_size), dtype=np.float64)
    for i in range(out_size):  # one row per output pixel: O(out) Python steps, the work is vectorised
        center = scale * (i + 0.5)
        xmin = max(int(center - support + 0.5), 0)
        xmax = min(int(center + support + 0.5), in_size)
        j = np.arange(xmin, xmax)
        t = np.clip(1.0 - np.abs((j - center + 0.5) * invscale), 0.0, None)
        total = t.sum()
        w[i, xmin:xmax] = t / total if total != 0 else t
    return w


def resize_image(x: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``C,H,W`` float32 in [0, 1] -> ``C,*size``, antialiased bilinear, clamped to [0, 1]."""
    h, w = x.shape[-2:]
    if (h, w) == tuple(size):
        return x
    wy = _aa_weights(h, size[0]).astype(np.float32)
    wx = _aa_weights(w, size[1]).astype(np.float32)
    out = np.einsum("hH,cHW,wW->chw", wy, x.astype(np.float32, copy=False), wx, optimize=True)
    return np.clip(out, 0.0, 1.0).astype(np.float32, copy=False)


def preprocess(image: np.ndarray, image_size: tuple[int, int], in_channels: int,
               lower: float = 0.5, upper: float = 99.5) -> np.ndarray:
    """A raw ``H,W`` / ``H,W,C`` image -> the network's ``C,h,w`` float32 input (steps 2-4)."""
    img = np.asarray(image, dtype=np.float32)
    if img.ndim == 2:
        img = img[..., None]
    if img.ndim != 3:
        raise ValueError(f"an image must be H,W or H,W,C; got shape {img.shape}")
    if img.shape[2] in (2, 4):  # grey+alpha / RGBA: drop alpha
        img = img[..., : img.shape[2] - 1]
    img = normalize_intensity(convert_channels(img, in_channels), lower, upper)
    return resize_image(np.ascontiguousarray(img.transpose(2, 0, 1)), image_size)


# ------------------------------------------------------------------------------------ postprocessing

def _linear_taps(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two-tap bilinear sampling (half-pixel centres, no antialias): indices i0, i1 and weight of i1."""
    f = np.float32  # single precision like PyTorch's CPU kernel, so positions round the same way
    scale = f(in_size) / f(out_size)
    src = np.maximum(scale * (np.arange(out_size, dtype=f) + f(0.5)) - f(0.5), f(0.0))
    i0 = np.minimum(src.astype(np.int64), in_size - 1)
    i1 = np.minimum(i0 + 1, in_size - 1)
    return i0, i1, (src - i0.astype(f)).astype(f)


def resize_logits(logits: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``K,h,w`` logits -> ``K,*size`` by bilinear interpolation (as ``F.interpolate(..., 'bilinear')``)."""
    h, w = logits.shape[-2:]
    if (h, w) == tuple(size):
        return logits.astype(np.float32, copy=False)
    y0, y1, ly = _linear_taps(h, size[0])
    x0, x1, lx = _linear_taps(w, size[1])
    lg = logits.astype(np.float32, copy=False)
    rows = lg[:, y0, :] * (np.float32(1.0) - ly)[:, None] + lg[:, y1, :] * ly[:, None]
    return rows[:, :, x0] * (np.float32(1.0) - lx) + rows[:, :, x1] * lx


def logits_to_mask(logits: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``K,h,w`` logits -> ``H,W`` uint8 class map at the original ``size`` (steps 6-7)."""
    return resize_logits(logits, size).argmax(0).astype(np.uint8)


def overlay(image: np.ndarray, mask: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """RGB uint8 picture of the normalised image with the classes filled in colour."""
    shown = normalize_intensity(image)
    if shown.ndim == 2:
        shown = shown[..., None]
    shown = shown[..., :3] if shown.shape[-1] >= 3 else np.repeat(shown[..., :1], 3, axis=-1)
    colours = _COLOURS[mask.astype(np.int64) % len(_COLOURS)]
    fg = (mask > 0)[..., None]
    mixed = np.where(fg, (1 - alpha) * shown * 255 + alpha * colours, shown * 255)
    return np.clip(mixed + 0.5, 0, 255).astype(np.uint8)


# ------------------------------------------------------------------------------------ the model

class ExportedModel:
    """A loaded bundle: ``recipe.json`` plus ``model.onnx`` (onnxruntime) or ``model.ts`` (torch)."""

    def __init__(self, folder: str | os.PathLike[str], threads: int | None = None, spinning: bool = True):
        self.folder = Path(folder)
        recipe_path = self.folder / "recipe.json"
        if not recipe_path.is_file():
            raise FileNotFoundError(f"{recipe_path} not found: not a SIKD Studio export bundle")
        self.recipe: dict[str, Any] = json.loads(recipe_path.read_text())
        if self.recipe.get("recipe") != RECIPE:
            raise ValueError(f"this predict.py implements {RECIPE}; the bundle declares {self.recipe.get('recipe')!r}")
        pre = self.recipe["preprocess"]
        self.image_size = (int(pre["image_size"][0]), int(pre["image_size"][1]))
        self.in_channels = int(pre["in_channels"])
        self.lower, self.upper = float(pre["normalize"]["lower"]), float(pre["normalize"]["upper"])
        self.class_names: list[str] = list(self.recipe["class_names"])
        model_file = self.folder / self.recipe["model_file"]
        self.format = self.recipe["format"]
        if self.format == "onnx":
            import onnxruntime as ort

            opts = ort.SessionOptions()
            if threads:
                opts.intra_op_num_threads = int(threads)
            if not spinning:  # idle threads sleep instead of busy-waiting (fair to other work on few cores)
                opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
            self._session = ort.InferenceSession(str(model_file), opts, providers=["CPUExecutionProvider"])
        elif self.format == "torchscript":
            import torch

            self._module = torch.jit.load(str(model_file), map_location="cpu").eval()
        else:
            raise ValueError(f"unknown model format {self.format!r}")

    def preprocess(self, image: np.ndarray) -> np.ndarray:
        return preprocess(image, self.image_size, self.in_channels, self.lower, self.upper)

    def run(self, batch: np.ndarray) -> np.ndarray:
        """``B,C,h,w`` float32 network inputs -> ``B,K,h,w`` float32 logits."""
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        if self.format == "onnx":
            io = self.recipe["io"]
            return self._session.run([io["output"]], {io["input"]: batch})[0]
        import torch

        with torch.no_grad():
            return self._module(torch.from_numpy(batch)).numpy()

    def predict_logits(self, images: list[np.ndarray], batch_size: int = 8) -> list[np.ndarray]:
        """Raw images -> ``K,H,W`` float32 logits at each image's original size."""
        out: list[np.ndarray] = []
        for start in range(0, len(images), batch_size):
            chunk = images[start:start + batch_size]
            logits = self.run(np.stack([self.preprocess(im) for im in chunk]))
            out += [resize_logits(lg, np.asarray(im).shape[:2]) for lg, im in zip(logits, chunk)]  # noqa: B905 - runs on Python < 3.10 too
        return out

    def predict(self, images: list[np.ndarray], batch_size: int = 8) -> list[np.ndarray]:
        """Raw ``H,W`` / ``H,W,C`` images (any intensity range) -> ``H,W`` uint8 class maps."""
        out: list[np.ndarray] = []
        for start in range(0, len(images), batch_size):
            chunk = images[start:start + batch_size]
            logits = self.run(np.stack([self.preprocess(im) for im in chunk]))
            out += [logits_to_mask(lg, np.asarray(im).shape[:2]) for lg, im in zip(logits, chunk)]  # noqa: B905
        return out

    def predict_volume(self, volume: np.ndarray, batch_size: int = 8) -> np.ndarray:
        """A raw ``H,W,Z`` volume (a DICOM series) -> ``H,W,Z`` uint8 class map: normalised over the whole volume
        (as training normalises volumes), then each slice resized and segmented."""
        vol = np.asarray(volume, dtype=np.float32)
        vol = normalize_intensity(convert_channels(vol[..., None], self.in_channels), self.lower, self.upper)
        out = np.empty(vol.shape[:3], dtype=np.uint8)
        for start in range(0, vol.shape[2], batch_size):
            ks = list(range(start, min(start + batch_size, vol.shape[2])))
            batch = np.stack([resize_image(np.ascontiguousarray(vol[:, :, k, :].transpose(2, 0, 1)), self.image_size)
                              for k in ks])
            for k, lg in zip(ks, self.run(batch)):  # noqa: B905
                out[:, :, k] = logits_to_mask(lg, vol.shape[:2])
        return out


def load(folder: str | os.PathLike[str] = ".", threads: int | None = None, spinning: bool = True) -> ExportedModel:
    """Load the bundle in ``folder`` (default: the current directory). ``threads``: onnxruntime's intra-op
    threads (default: one per core); ``spinning=False`` stops idle threads busy-waiting."""
    return ExportedModel(folder, threads, spinning)


def _dicom_module():  # noqa: ANN202 - the bundle's sikd_dicom.py
    try:
        import highdicom  # noqa: F401
        import pydicom  # noqa: F401
    except ImportError:
        raise SystemExit("a DICOM series needs pydicom and highdicom: pip install pydicom highdicom") from None
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import sikd_dicom

    return sikd_dicom


def predict_series(model: ExportedModel, path: str | os.PathLike[str], out: Path) -> Path:
    """A DICOM series (folder or .zip) -> ``out/<name>_seg.dcm``, a DICOM SEG that references it."""
    import tempfile
    import zipfile

    dicom = _dicom_module()
    src = Path(path)
    with tempfile.TemporaryDirectory(prefix="sikd-series-") as tmp:
        folder = src
        if src.is_file():
            with zipfile.ZipFile(src) as zf:
                root = Path(tmp).resolve()
                for name in zf.namelist():
                    if root not in (root / name).resolve().parents:
                        raise SystemExit(f"{src}: entry {name!r} leaves the archive")
                zf.extractall(root)
            folder = Path(tmp)
        files = sorted(f for f in folder.rglob("*") if f.is_file() and not f.name.startswith("."))
        named = [(f.relative_to(folder).as_posix(), str(f)) for f in files if dicom.is_dicom_file(f)]
        try:
            series = dicom.read_one_series(named)
            volume = series.volume()
        except dicom.DicomError as e:
            raise SystemExit(f"cannot use DICOM file {e}") from None
        classes = model.predict_volume(volume)
        seg = dicom.write_seg(series, classes, model.class_names, algorithm="SIKD Studio exported model",
                              version=str(model.recipe.get("recipe")))
    target = out / f"{src.stem if src.is_file() else src.name}_seg.dcm"
    seg.save_as(str(target))
    return target


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Segment images with an exported SIKD Studio model.")
    p.add_argument("images", nargs="+", help="image files (PNG, JPEG, TIFF, BMP, GIF), or a DICOM series (folder "
                   "or .zip; needs pydicom and highdicom) for a DICOM SEG")
    p.add_argument("--out", required=True, help="output folder for <name>_mask.png and <name>_overlay.png")
    p.add_argument("--bundle", default=str(Path(__file__).resolve().parent), help="bundle folder (default: here)")
    p.add_argument("--label-values", action="store_true", help="write class indices even for binary models")
    p.add_argument("--save-logits", action="store_true", help="also write <name>_logits.npy (K,H,W float32)")
    args = p.parse_args(argv)
    model = load(args.bundle)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for path in args.images:
        if Path(path).is_dir() or Path(path).suffix.lower() == ".zip":
            sys.stdout.write(f"{path}: {predict_series(model, path, out)} (DICOM SEG)\n")
            continue
        img = read_image(path)
        stem = Path(path).stem
        if args.save_logits:
            lg = model.predict_logits([img])[0]
            np.save(out / f"{stem}_logits.npy", lg)
            mask = lg.argmax(0).astype(np.uint8)
        else:
            mask = model.predict([img])[0]
        binary = len(model.class_names) == 2 and not args.label_values
        Image.fromarray((mask * 255).astype(np.uint8) if binary else mask).save(out / f"{stem}_mask.png")
        Image.fromarray(overlay(img, mask)).save(out / f"{stem}_overlay.png")
        fractions = ", ".join(f"{n} {float((mask == k).mean()):.1%}" for k, n in enumerate(model.class_names) if k)
        sys.stdout.write(f"{path}: {out / (stem + '_mask.png')} ({fractions})\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
