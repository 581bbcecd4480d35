"""SYNTHETIC cardiac-like phantoms for tests and demos. Not real patients, not medical data.

Each image shows a short-axis-like "heart" inside a body outline: a left-ventricle blood pool (class 3)
inside a myocardium ring (class 2), a right-ventricle crescent (class 1) attached beside the ring, and
distractor blobs as bright as blood that are background (class 0). The shape distribution is the same
in every domain; the named DOMAINS differ in texture (band-passed noise patterns, a different one per
tissue), class contrast, bias field, noise and blur: shape and relative intensity transfer between
domains, texture does not. The shift is mild, though: measured (README, 30 epochs), a plain U-Net
trained on vendor_a keeps Dice 0.96-0.97 on vendor_b and vendor_c, and SIKD does not beat it there.
The phantoms demonstrate the workflow; evidence about SIKD needs real data.

Everything is vectorised over samples with numpy; sample ``i`` of ``(domain, seed)`` is always the same,
whatever ``n`` is (its random numbers come from its own generator).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from sikd_core.errors import OutputExistsError

log = logging.getLogger(__name__)

CLASS_NAMES = ["background", "RV", "myocardium", "LV"]
# Drawing regions (class in brackets): air [0], body tissue [0], RV [1], myocardium [2], LV [3],
# distractor blob [0].
_AIR, _TISSUE, _RV, _MYO, _LV, _BLOB = range(6)
_REGION_CLASS = np.array([0, 0, 1, 2, 3, 0], dtype=np.uint8)
_CHUNK = 64  # samples computed together (bounds memory)
SYNTHETIC_NOTE = "SYNTHETIC phantom data, not real patients"


@dataclass(frozen=True)
class DomainStyle:
    """Appearance of one domain ("scanner vendor"); shapes are shared by all domains."""

    description: str
    region_mean: tuple[float, float, float, float, float, float]  # per region (air, tissue, RV, myo, LV, blob)
    textures: tuple[tuple[float, float, float | None], ...]  # (centre freq cycles/px, bandwidth, orientation deg)
    region_texture: tuple[int, int, int, int, int, int]  # texture index per region
    region_texture_amp: tuple[float, float, float, float, float, float]
    bias: float  # strength of the smooth multiplicative bias field
    noise: float  # Rician noise sigma (intensity units, image in [0, 1])
    blur: float  # Gaussian blur sigma in pixels at size 128


DOMAINS: dict[str, DomainStyle] = {
    "vendor_a": DomainStyle(
        "bright blood, smooth blotchy texture, mild bias, low noise",
        (0.03, 0.40, 0.78, 0.22, 0.82, 0.80),
        ((0.03, 0.015, None), (0.08, 0.03, None), (0.16, 0.04, None)),
        (0, 0, 1, 2, 1, 1),
        (0.0, 0.05, 0.05, 0.07, 0.05, 0.05),
        0.15, 0.015, 0.6,
    ),
    "vendor_b": DomainStyle(
        "lower contrast, fine high-frequency grain, stronger noise",
        (0.06, 0.45, 0.72, 0.30, 0.76, 0.74),
        ((0.32, 0.06, None), (0.22, 0.05, None), (0.40, 0.05, None)),
        (0, 2, 0, 1, 0, 0),
        (0.0, 0.07, 0.06, 0.09, 0.06, 0.06),
        0.10, 0.04, 0.0,
    ),
    "vendor_c": DomainStyle(
        "oriented stripe texture, strong bias field",
        (0.05, 0.35, 0.80, 0.18, 0.85, 0.83),
        ((0.10, 0.02, 30.0), (0.12, 0.02, 120.0), (0.06, 0.02, 75.0)),
        (0, 1, 2, 0, 2, 2),
        (0.0, 0.06, 0.06, 0.08, 0.06, 0.06),
        0.35, 0.02, 0.4,
    ),
    "vendor_d": DomainStyle(
        "mid-frequency speckle, blurred, brighter myocardium",
        (0.08, 0.42, 0.74, 0.34, 0.79, 0.77),
        ((0.18, 0.05, None), (0.05, 0.02, None), (0.26, 0.08, 0.0)),
        (0, 1, 0, 2, 0, 0),
        (0.0, 0.08, 0.07, 0.10, 0.07, 0.07),
        0.20, 0.03, 1.2,
    ),
}


def _domain(domain: str) -> DomainStyle:
    if domain not in DOMAINS:
        raise ValueError(f"unknown phantom domain {domain!r}; known domains: {', '.join(sorted(DOMAINS))}")
    return DOMAINS[domain]


def _domain_code(domain: str) -> int:
    """Stable number for a domain name (independent of the order of DOMAINS)."""
    return zlib.crc32(domain.encode())


def _draw_shapes(domain: str, seed: int, first: int, n: int, size: int) -> dict[str, np.ndarray]:
    """Shape parameters of samples ``first .. first+n-1`` as ``(n, 1, 1)`` arrays (pixel units)."""
    names = (
        "bx", "by", "ba", "bb", "bt",  # body ellipse
        "hx", "hy", "la", "lb", "lt", "thick", "h2", "h3", "p2", "p3",  # LV + myocardium
        "rphi", "roff", "ra", "rb",  # RV
        "d1a", "d1r", "d1x", "d1y", "d1t", "d1on", "d2a", "d2r", "d2x", "d2y", "d2t", "d2on",  # blobs
    )
    rows = []
    code = _domain_code(domain)
    s = float(size)
    for i in range(first, first + n):
        r = np.random.default_rng([seed, code, i, 0])
        u = r.random(len(names))
        rows.append(u)
    u = np.asarray(rows).T.reshape(len(names), n, 1, 1)
    p = dict(zip(names, u, strict=True))
    out = {
        "bx": s / 2 + (p["bx"] - 0.5) * 0.04 * s,
        "by": s / 2 + (p["by"] - 0.5) * 0.04 * s,
        "ba": (0.42 + 0.06 * p["ba"]) * s,
        "bb": (0.36 + 0.07 * p["bb"]) * s,
        "bt": (p["bt"] - 0.5) * 0.4,
        "hx": s / 2 + (p["hx"] - 0.5) * 0.16 * s,
        "hy": s / 2 + (p["hy"] - 0.5) * 0.16 * s,
        "la": (0.08 + 0.05 * p["la"]) * s,
        "lt": p["lt"] * np.pi,
        "thick": (0.025 + 0.025 * p["thick"]) * s,
        "h2": 0.06 * p["h2"],
        "h3": 0.04 * p["h3"],
        "p2": p["p2"] * 2 * np.pi,
        "p3": p["p3"] * 2 * np.pi,
        "rphi": p["rphi"] * 2 * np.pi,
        "roff": 0.6 + 0.3 * p["roff"],
        "ra": 0.7 + 0.3 * p["ra"],
        "rb": 1.1 + 0.4 * p["rb"],
    }
    out["lb"] = out["la"] * (0.75 + 0.25 * p["lb"])
    for k in ("d1", "d2"):
        out[f"{k}a"] = p[f"{k}a"] * 2 * np.pi
        out[f"{k}r"] = (0.30 + 0.12 * p[f"{k}r"]) * s
        out[f"{k}x"] = (0.03 + 0.035 * p[f"{k}x"]) * s
        out[f"{k}y"] = (0.03 + 0.035 * p[f"{k}y"]) * s
        out[f"{k}t"] = p[f"{k}t"] * np.pi
        out[f"{k}on"] = p[f"{k}on"] < 0.8
    return out


def _ellipse_rho(xx: np.ndarray, yy: np.ndarray, cx, cy, a, b, t) -> tuple[np.ndarray, np.ndarray]:
    """Normalised radius (1 on the ellipse boundary) and polar angle in the ellipse frame."""
    dx, dy = xx - cx, yy - cy
    c, s = np.cos(t), np.sin(t)
    u = (dx * c + dy * s) / a
    v = (-dx * s + dy * c) / b
    return np.sqrt(u * u + v * v), np.arctan2(v, u)


def _label_regions(p: dict[str, np.ndarray], size: int) -> np.ndarray:
    """Region map ``(n, size, size)`` uint8 from shape parameters."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    xx, yy = xx[None], yy[None]
    n = p["bx"].shape[0]
    region = np.full((n, size, size), _AIR, dtype=np.uint8)
    body = _ellipse_rho(xx, yy, p["bx"], p["by"], p["ba"], p["bb"], p["bt"])[0] <= 1.0
    region[body] = _TISSUE
    for k in ("d1", "d2"):
        cx = p["hx"] + p[f"{k}r"] * np.cos(p[f"{k}a"])
        cy = p["hy"] + p[f"{k}r"] * np.sin(p[f"{k}a"])
        blob = (_ellipse_rho(xx, yy, cx, cy, p[f"{k}x"], p[f"{k}y"], p[f"{k}t"])[0] <= 1.0) & body & p[f"{k}on"]
        region[blob] = _BLOB
    # LV and myocardium: the same wobbly ellipse, inner and outer radius.
    rho, ang = _ellipse_rho(xx, yy, p["hx"], p["hy"], p["la"], p["lb"], p["lt"])
    wobble = 1.0 + p["h2"] * np.cos(2 * ang + p["p2"]) + p["h3"] * np.cos(3 * ang + p["p3"])
    lv = rho <= wobble
    rho_o, ang_o = _ellipse_rho(xx, yy, p["hx"], p["hy"], p["la"] + p["thick"], p["lb"] + p["thick"], p["lt"])
    wobble_o = 1.0 + p["h2"] * np.cos(2 * ang_o + p["p2"]) + p["h3"] * np.cos(3 * ang_o + p["p3"])
    outer = rho_o <= wobble_o
    # RV: an ellipse beside the ring, wider tangentially, minus the ring -> a crescent.
    r_out = (p["la"] + p["lb"]) / 2 + p["thick"]
    rcx = p["hx"] + p["roff"] * r_out * np.cos(p["rphi"])
    rcy = p["hy"] + p["roff"] * r_out * np.sin(p["rphi"])
    rv = (_ellipse_rho(xx, yy, rcx, rcy, p["ra"] * r_out, p["rb"] * r_out, p["rphi"])[0] <= 1.0) & ~outer
    region[rv & body] = _RV
    region[outer & ~lv & body] = _MYO
    region[lv & body] = _LV
    return region


def _band_noise(noise: np.ndarray, centre: float, width: float, orient: float | None) -> np.ndarray:
    """Band-pass filter white noise ``(n, H, W)`` around ``centre`` cycles/pixel; unit std per image."""
    h, w = noise.shape[-2:]
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.rfftfreq(w)[None, :]
    r = np.sqrt(fx * fx + fy * fy)
    filt = np.exp(-0.5 * ((r - centre) / width) ** 2)
    if orient is not None:
        th = np.deg2rad(orient)
        cosang = (fx * np.cos(th) + fy * np.sin(th)) / np.maximum(r, 1e-9)
        filt = filt * cosang**8  # keeps frequencies near one direction: stripes
    out = np.fft.irfft2(np.fft.rfft2(noise) * filt, s=(h, w)).astype(np.float32)
    out -= out.mean(axis=(1, 2), keepdims=True)
    out /= out.std(axis=(1, 2), keepdims=True) + 1e-8
    return out


def _render(region: np.ndarray, style: DomainStyle, domain: str, seed: int, first: int) -> np.ndarray:
    """Intensity image in [0, 1] ``(n, H, W)`` float32 for a region map."""
    n, h, w = region.shape
    code = _domain_code(domain)
    n_tex = len(style.textures)
    white = np.empty((n, n_tex + 2, h, w), dtype=np.float32)
    coef = np.empty((n, 6), dtype=np.float32)
    gain = np.empty((n, 1, 1), dtype=np.float32)
    for j, i in enumerate(range(first, first + n)):
        r = np.random.default_rng([seed, code, i, 1])
        white[j] = r.standard_normal((n_tex + 2, h, w), dtype=np.float32)
        coef[j] = r.uniform(-1.0, 1.0, 6)
        gain[j] = r.uniform(0.92, 1.08)
    tex = np.stack([_band_noise(white[:, k], c, bw, o) for k, (c, bw, o) in enumerate(style.textures)])
    mean = np.asarray(style.region_mean, dtype=np.float32)[region]
    amp = np.asarray(style.region_texture_amp, dtype=np.float32)[region]
    tidx = np.asarray(style.region_texture)[region]
    texture = np.take_along_axis(tex, tidx[None], axis=0)[0]
    img = (mean + amp * texture) * gain
    if style.blur > 0:
        sig = style.blur * h / 128.0
        from scipy import ndimage  # here: scipy.ndimage costs 0.5 s of every API start (restarts too)

        img = ndimage.gaussian_filter(img, sigma=(0, sig, sig))
    # Smooth multiplicative bias field: a random 2nd-order polynomial over the image.
    yy, xx = np.mgrid[-1 : 1 : h * 1j, -1 : 1 : w * 1j].astype(np.float32)
    basis = np.stack([xx, yy, xx * yy, xx * xx - 0.33, yy * yy - 0.33, np.ones_like(xx) * 0.0])
    field = 1.0 + style.bias * np.tensordot(coef, basis, axes=(1, 0)) / 2.0
    img = img * np.clip(field, 0.5, 1.5)
    # Rician (magnitude) noise, as in MR magnitude images.
    sig = style.noise
    img = np.sqrt((img + sig * white[:, n_tex]) ** 2 + (sig * white[:, n_tex + 1]) ** 2)
    return np.clip(img, 0.0, 1.0)


def phantom_arrays(domain: str, n: int, seed: int = 0, size: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """SYNTHETIC phantoms: ``(images uint8 [n,H,W], masks uint8 [n,H,W] with values 0..3)``.

    Deterministic for ``(domain, seed)``; sample ``i`` does not depend on ``n``.
    """
    style = _domain(domain)
    if n < 0:
        raise ValueError(f"n must be >= 0; got {n}")
    if size < 32:
        raise ValueError(f"size must be >= 32; got {size}")
    images = np.empty((n, size, size), dtype=np.uint8)
    masks = np.empty((n, size, size), dtype=np.uint8)
    for first in range(0, n, _CHUNK):
        m = min(_CHUNK, n - first)
        region = _label_regions(_draw_shapes(domain, seed, first, m, size), size)
        masks[first : first + m] = _REGION_CLASS[region]
        img = _render(region, style, domain, seed, first)
        images[first : first + m] = np.rint(img * 255.0).astype(np.uint8)
    return images, masks


def generate_phantoms(
    out_dir: str | os.PathLike[str], *, domain: str, n: int, seed: int = 0, size: int = 128, overwrite: bool = False
) -> Path:
    """Write ``n`` SYNTHETIC phantoms of ``domain`` as a folder dataset and return its path.

    Layout: ``images/NNNN.png`` (grey uint8), ``masks/NNNN.png`` (label map 0..3), ``classes.json``,
    ``dataset.json`` and ``README.txt`` (both state that the data are synthetic). An existing non-empty
    ``out_dir`` is refused unless ``overwrite`` is set.
    """
    style = _domain(domain)
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise OutputExistsError(f"{out} is not empty; choose an empty folder (or pass overwrite=True)")
        for sub in ("images", "masks"):
            shutil.rmtree(out / sub, ignore_errors=True)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "masks").mkdir(parents=True, exist_ok=True)
    images, masks = phantom_arrays(domain, n, seed, size)
    digits = max(4, len(str(max(n - 1, 0))))
    for i in range(n):
        name = f"{i:0{digits}d}.png"
        Image.fromarray(images[i]).save(out / "images" / name, compress_level=1)
        Image.fromarray(masks[i]).save(out / "masks" / name, compress_level=1)
    (out / "classes.json").write_text(json.dumps(CLASS_NAMES))
    meta = {
        "name": f"phantom_{domain}",
        "description": f"{SYNTHETIC_NOTE}. Cardiac-like phantoms, domain {domain}: {style.description}.",
        "synthetic": True,
        "domain": domain,
        "seed": seed,
        "size": size,
        "numTraining": n,
        "labels": {name: i for i, name in enumerate(CLASS_NAMES)},
    }
    (out / "dataset.json").write_text(json.dumps(meta, indent=2))
    (out / "README.txt").write_text(
        f"{SYNTHETIC_NOTE}.\n\n"
        f"Generated by sikd_core.data.phantoms (domain={domain}, seed={seed}, n={n}, size={size}).\n"
        "Classes: 0 background, 1 RV (crescent), 2 myocardium (ring), 3 LV (blood pool).\n"
        "Bright background blobs are distractors (class 0). Domains share the shape distribution and\n"
        f"differ in texture, contrast, bias field, noise and blur. This domain: {style.description}.\n"
    )
    log.info("wrote %d synthetic %s phantoms to %s", n, domain, out)
    return out
