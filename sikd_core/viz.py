"""Pictures for people: mask overlays with contours, and feature maps (the paper's Fig. 7).

Everything works on numpy arrays (``H,W,3`` uint8 out) so the API, the CLI and the pipeline share it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

#: Colours of the contours drawn for each source (RGB).
CONTOUR_COLORS: dict[str, tuple[int, int, int]] = {
    "ground_truth": (0, 230, 0),
    "baseline": (255, 60, 60),
    "sikd": (40, 140, 255),
    "prediction": (255, 200, 0),
}
#: Fill colours per class index (class 0 unused), for filled prediction masks.
CLASS_COLORS = np.array(
    [[0, 0, 0], [255, 80, 80], [80, 200, 120], [80, 140, 255], [255, 200, 60], [200, 90, 255],
     [60, 220, 220], [255, 140, 40], [160, 160, 160]], dtype=np.uint8)
#: Pixels blended at once by :func:`overlay_fill` (bounds its temporary arrays on large images).
_CHUNK_PIXELS = 1 << 20


def to_rgb_uint8(image: np.ndarray) -> np.ndarray:
    """``H,W`` / ``H,W,C`` image in [0,1] (or uint8) -> ``H,W,3`` uint8."""
    img = np.asarray(image)
    if img.ndim == 2:
        img = img[..., None]
    if img.dtype != np.uint8:  # in place on one float32 copy: a large image costs one copy, not four
        f = img.astype(np.float32)
        np.clip(f, 0, 1, out=f)
        f *= 255
        f += 0.5
        img = f.astype(np.uint8)
        del f
    if img.shape[2] == 1:
        img = np.repeat(img, 3, axis=2)
    elif img.shape[2] > 3:
        img = img[..., :3]
    return np.ascontiguousarray(img)


def class_colors(num_classes: int) -> np.ndarray:
    reps = int(np.ceil(num_classes / len(CLASS_COLORS)))
    return np.tile(CLASS_COLORS, (reps, 1))[:num_classes]


def mask_boundary(mask: np.ndarray, thickness: int = 1) -> np.ndarray:
    """Pixels on the border of any foreground class region (class changes), as a bool map."""
    from scipy import ndimage  # here, not at import: scipy.ndimage costs 0.5 s of every API (re)start

    m = np.asarray(mask)
    edge = np.zeros(m.shape, dtype=bool)
    edge[:-1, :] |= m[:-1, :] != m[1:, :]
    edge[1:, :] |= m[1:, :] != m[:-1, :]
    edge[:, :-1] |= m[:, :-1] != m[:, 1:]
    edge[:, 1:] |= m[:, 1:] != m[:, :-1]
    edge &= ndimage.binary_dilation(m > 0, iterations=1)  # keep the line on the foreground side
    # A region that reaches the image border is closed along it: an all-foreground prediction (a collapsed
    # model) would otherwise have no class change, hence no visible outline at all.
    frame = np.zeros(m.shape, dtype=bool)
    frame[0, :] = frame[-1, :] = frame[:, 0] = frame[:, -1] = True
    edge |= frame & (m > 0)
    if thickness > 1:
        edge = ndimage.binary_dilation(edge, iterations=thickness - 1)
    return edge


def overlay_contours(
    image: np.ndarray,
    masks: Mapping[str, np.ndarray],
    colors: Mapping[str, tuple[int, int, int]] | None = None,
    thickness: int | None = None,
) -> np.ndarray:
    """Draw the outline of each mask (``H,W`` class indices) on the image in its own colour."""
    out = to_rgb_uint8(image).copy()
    colors = {**CONTOUR_COLORS, **(colors or {})}
    if thickness is None:
        thickness = max(1, round(max(out.shape[:2]) / 300))
    palette = list(CONTOUR_COLORS.values())
    for i, (name, mask) in enumerate(masks.items()):
        if mask.shape != out.shape[:2]:
            raise ValueError(f"mask {name!r} has shape {mask.shape}, image {out.shape[:2]}")
        color = colors.get(name, palette[i % len(palette)])
        out[mask_boundary(mask, thickness)] = color
    return out


def overlay_fill(image: np.ndarray, mask: np.ndarray, opacity: float = 0.45) -> np.ndarray:
    """Blend class colours over the image where the mask is foreground."""
    out = to_rgb_uint8(image).copy()
    if mask.shape != out.shape[:2]:
        raise ValueError(f"mask has shape {mask.shape}, image {out.shape[:2]}")
    k = int(mask.max()) + 1 if mask.size else 1
    tint = class_colors(max(k, 2)) * opacity  # float64, as uint8 colours times a float always were
    rows = max(1, _CHUNK_PIXELS // max(1, out.shape[1]))
    for r in range(0, out.shape[0], rows):  # a band of rows at a time: a large image needs no float copy of it
        m = mask[r:r + rows]
        fg = m > 0
        if fg.any():
            band = out[r:r + rows]
            band[fg] = (band[fg].astype(np.float32) * (1 - opacity) + tint[m[fg]]).astype(np.uint8)
    return out


def class_contours(image: np.ndarray, mask: np.ndarray, num_classes: int, thickness: int | None = None) -> np.ndarray:
    """Outline each foreground class of ``mask`` (``H,W`` class indices) in its class colour
    (:data:`CLASS_COLORS`, the colours of :func:`overlay_fill`), so classes are told apart."""
    out = to_rgb_uint8(image).copy()
    if mask.shape != out.shape[:2]:
        raise ValueError(f"mask has shape {mask.shape}, image {out.shape[:2]}")
    if thickness is None:
        thickness = max(1, round(max(out.shape[:2]) / 300))
    colors = class_colors(max(num_classes, 2))
    for k in range(1, max(num_classes, 2)):
        region = mask == k
        if region.any():
            out[mask_boundary(region.astype(np.uint8), thickness)] = colors[k]
    return out


#: Colours of the error map: predicted but not in the ground truth, missed, and correctly found foreground.
ERROR_COLORS: dict[str, tuple[int, int, int]] = {"false positive": (255, 60, 60), "false negative": (40, 140, 255),
                                                 "true positive": (0, 200, 0)}


def error_map(image: np.ndarray, pred: np.ndarray, target: np.ndarray, opacity: float = 0.5) -> np.ndarray:
    """The prediction's errors over the image: false-positive pixels (foreground where the ground truth
    has another class) red, false negatives (ground-truth foreground predicted as background) blue,
    correct foreground green. Visible for any prediction, also one that fills the whole image."""
    if pred.shape != target.shape:
        raise ValueError(f"prediction has shape {pred.shape}, ground truth {target.shape}")
    out = to_rgb_uint8(image).astype(np.float32)
    if pred.shape != out.shape[:2]:
        raise ValueError(f"masks have shape {pred.shape}, image {out.shape[:2]}")
    wrong = pred != target
    layers = {"false positive": (pred > 0) & wrong, "false negative": (target > 0) & wrong & (pred == 0),
              "true positive": (pred > 0) & ~wrong}
    for name, where in layers.items():
        colour = np.array(ERROR_COLORS[name], dtype=np.float32)
        out[where] = out[where] * (1 - opacity) + colour * opacity
    return out.astype(np.uint8)


def _viridis_lut() -> np.ndarray:
    # Anchor colours of matplotlib's viridis, linearly interpolated to 256 entries.
    anchors = np.array([[68, 1, 84], [72, 40, 120], [62, 74, 137], [49, 104, 142], [38, 130, 142],
                        [31, 158, 137], [53, 183, 121], [109, 205, 89], [180, 222, 44], [253, 231, 37]],
                       dtype=np.float32)
    x = np.linspace(0, 1, len(anchors))
    t = np.linspace(0, 1, 256)
    return np.stack([np.interp(t, x, anchors[:, c]) for c in range(3)], 1).astype(np.uint8)


VIRIDIS = _viridis_lut()


def feature_activation(features: np.ndarray) -> np.ndarray:
    """``F,H,W`` feature map -> ``H,W`` mean absolute activation over channels."""
    return np.abs(np.asarray(features, dtype=np.float32)).mean(0)


def feature_map_image(features: np.ndarray, scale: tuple[float, float] | None = None) -> np.ndarray:
    """``F,H,W`` feature map -> ``H,W,3`` uint8 (viridis): mean absolute activation over channels, scaled to
    ``scale`` = (low, high) when given (one scale shared by maps that are compared), else to its own range."""
    f = feature_activation(features)
    lo, hi = scale if scale is not None else (float(f.min()), float(f.max()))
    f = np.clip((f - lo) / (hi - lo), 0, 1) if hi > lo else np.zeros_like(f)
    return VIRIDIS[(f * 255).astype(np.uint8)]


def hstack_panels(panels: Sequence[np.ndarray], gap: int = 4) -> np.ndarray:
    """Place ``H,W,3`` panels of equal height side by side with a white gap."""
    h = max(p.shape[0] for p in panels)
    parts = []
    for i, p in enumerate(panels):
        if p.shape[0] != h:
            raise ValueError("panels must share their height")
        if i:
            parts.append(np.full((h, gap, 3), 255, np.uint8))
        parts.append(p)
    return np.concatenate(parts, axis=1)


def downscale(image: np.ndarray, max_side: int) -> np.ndarray:
    """Shrink an ``H,W,3`` uint8 picture so its longer side is at most ``max_side`` (area average)."""
    h, w = image.shape[:2]
    s = max(h, w) / max_side
    if s <= 1:
        return image
    from PIL import Image

    return np.asarray(Image.fromarray(image).resize((round(w / s), round(h / s)), Image.BILINEAR))


def save_png(path, image: np.ndarray) -> None:
    from PIL import Image

    # level 1: masks and overlays compress almost as well, and encoding level 6 took an eighth of an evaluation
    Image.fromarray(np.asarray(image)).save(path, optimize=False, compress_level=1)
