"""The manifest: a format-independent list of image/label samples.

Every loader in :mod:`sikd_core.data.formats` turns a dataset on disk (folder, nnU-Net, MONAI datalist)
into a :class:`Manifest`, so splitting, preprocessing and evaluation never care about the source format.
A manifest holds paths and metadata only; pixels are read by :mod:`sikd_core.data.preprocess`.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

FORMATS = ("folder", "nnunet", "datalist", "dicom")
MASK_MODES = ("label", "binary")


@dataclass(frozen=True)
class Sample:
    """One 2D training sample: an image (one file per channel for nnU-Net) and its label map.

    For 3D volumes each slice is one sample; ``slice_index`` says which slice of the volume to take
    along its last axis.
    """

    image: tuple[str, ...]
    label: str | None
    case_id: str
    group_id: str
    dataset: str
    slice_index: int | None = None
    num_slices: int | None = None
    spacing: tuple[float, float] | None = None
    slice_spacing: float | None = None
    fixed_split: str | None = None

    @property
    def key(self) -> str:
        """Unique key of the sample within its dataset: ``case_id`` (2D) or ``case_id:0007`` (3D)."""
        if self.slice_index is None:
            return self.case_id
        return f"{self.case_id}:{self.slice_index:04d}"

    @property
    def volume_key(self) -> tuple[tuple[str, ...], str | None]:
        """Identifies the files the sample is read from; slices of one volume share it."""
        return (self.image, self.label)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict (tuples become lists)."""
        d = asdict(self)
        d["image"] = list(self.image)
        if self.spacing is not None:
            d["spacing"] = list(self.spacing)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Sample:
        """Inverse of :meth:`to_dict`; unknown keys are ignored so older manifests still load."""
        known = {f.name for f in fields(cls)}
        kw = {k: v for k, v in d.items() if k in known}
        kw["image"] = tuple(kw["image"]) if not isinstance(kw["image"], str) else (kw["image"],)
        if kw.get("spacing") is not None:
            kw["spacing"] = (float(kw["spacing"][0]), float(kw["spacing"][1]))
        return cls(**kw)


@dataclass
class Manifest:
    """A dataset as a list of samples plus what is known about its classes and channels.

    ``mask_mode`` is ``"label"`` (mask values are class indices) or ``"binary"`` (foreground is
    value > 127). ``stats`` caches the result of :func:`sikd_core.data.scan.scan_dataset`.
    """

    name: str
    root: str
    format: str
    samples: list[Sample]
    class_names: list[str]
    in_channels: int
    mask_mode: str
    volumetric: bool
    stats: dict[str, Any] | None = field(default=None, compare=False, repr=False)

    @property
    def num_classes(self) -> int:
        """Number of classes, background included."""
        return len(self.class_names)

    def __len__(self) -> int:
        return len(self.samples)

    def rel(self, path: str | os.PathLike[str] | None) -> str:
        """``path`` relative to the dataset root (for messages); absolute when outside the root."""
        if path is None:
            return "<none>"
        return relative_to(path, self.root)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict that :meth:`from_dict` turns back into an equal manifest."""
        return {
            "name": self.name,
            "root": self.root,
            "format": self.format,
            "class_names": list(self.class_names),
            "in_channels": self.in_channels,
            "mask_mode": self.mask_mode,
            "volumetric": self.volumetric,
            "samples": [s.to_dict() for s in self.samples],
            "stats": self.stats,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Manifest:
        """Inverse of :meth:`to_dict`."""
        return cls(
            name=d["name"],
            root=d["root"],
            format=d["format"],
            samples=[Sample.from_dict(s) for s in d["samples"]],
            class_names=list(d["class_names"]),
            in_channels=int(d["in_channels"]),
            mask_mode=d["mask_mode"],
            volumetric=bool(d["volumetric"]),
            stats=d.get("stats"),
        )

    def subset(self, indices: list[int] | range) -> Manifest:
        """A manifest holding only ``samples[i]`` for ``i`` in ``indices`` (in that order).

        Cached stats are dropped because they describe the full dataset.
        """
        n = len(self.samples)
        idx = [int(i) for i in indices]
        bad = [i for i in idx if not 0 <= i < n]
        if bad:
            raise IndexError(f"subset indices out of range [0, {n}): {bad[:10]}")
        return replace(self, samples=[self.samples[i] for i in idx], stats=None)


def relative_to(path: str | os.PathLike[str], root: str | os.PathLike[str]) -> str:
    """POSIX-style path of ``path`` relative to ``root``; the absolute path if it lies outside."""
    p = os.path.abspath(os.fspath(path))
    r = os.path.abspath(os.fspath(root))
    try:
        rel = os.path.relpath(p, r)
    except ValueError:  # different drives on Windows
        return p.replace(os.sep, "/")
    if rel.startswith(".."):
        return p.replace(os.sep, "/")
    return rel.replace(os.sep, "/")
