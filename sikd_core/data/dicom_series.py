"""DICOM series in, DICOM SEG in and out: numpy and pydicom (highdicom to write a SEG), nothing of SIKD Studio.

This file is also copied verbatim into every export bundle as ``sikd_dicom.py`` (the bundle's ``predict.py``
imports it when it is given a DICOM series), so it imports neither sikd_core nor torch.

What is read, and what is refused rather than guessed (every refusal is a :class:`DicomError` naming the file
and the problem; patient-identifying attributes never enter a message):

* A series: single-frame images (one file per slice) of one SeriesInstanceUID, each with the image plane
  (ImagePositionPatient, ImageOrientationPatient, PixelSpacing), all the same size and orientation, evenly
  spaced along the slice normal, monochrome. Slices are ordered by their position along the normal, not by
  file name or InstanceNumber. Multi-frame (enhanced) images are refused. Stored values are turned into
  modality values (RescaleSlope / RescaleIntercept: Hounsfield units for CT) as float32 ``rows, columns, slices``.
* Compressed pixel data is decoded by pydicom's decoders; one that is not installed is named (the pip
  packages that provide it) before any pixel is read.
* A SEG (BINARY or LABELMAP; FRACTIONAL is refused: it would need a threshold): each frame is placed on the
  slice it references (its source SOP instance, else its plane position), and must match that slice's size
  and position. Segments are identified by their SegmentLabel.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

SEG_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"
MEDIA_DIRECTORY_SOP_CLASS = "1.2.840.10008.1.3.10"  # DICOMDIR
POSITION_TOLERANCE_MM = 0.01
#: pydicom's decoder requirements -> what to ``pip install`` for them.
PLUGIN_PACKAGES = {"gdcm": "python-gdcm"}  # the others are installed under their plugin's name


class DicomError(ValueError):
    """A DICOM file that cannot be used: ``file`` (as the caller named it) and ``problem``."""

    def __init__(self, file: str, problem: str):
        self.file = file
        self.problem = problem
        super().__init__(f"{file}: {problem}")


def _pydicom():  # noqa: ANN202 - the module
    try:
        import pydicom
    except ImportError:  # pragma: no cover - the bundle's predict.py reports it
        raise ImportError("reading DICOM needs pydicom: pip install pydicom highdicom") from None
    return pydicom


def is_dicom_file(path: str | os.PathLike[str]) -> bool:
    """True when the file has the DICOM Part 10 preamble (``DICM`` at byte 128)."""
    try:
        with open(path, "rb") as f:
            head = f.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def read_header(name: str, path: str | os.PathLike[str]) -> Any:
    """The file's attributes without its pixel data (a pydicom Dataset); DicomError when unreadable."""
    pydicom = _pydicom()
    try:
        return pydicom.dcmread(os.fspath(path), stop_before_pixels=True)
    except Exception as exc:  # noqa: BLE001 - pydicom raises assorted errors on damaged files
        raise DicomError(name, f"not a readable DICOM file ({type(exc).__name__})") from None


def decoder_problem(ds: Any) -> str | None:
    """None when the pixel data can be decoded here; else which transfer syntax and which packages are needed."""
    meta = getattr(ds, "file_meta", None)
    ts = getattr(meta, "TransferSyntaxUID", None)
    if ts is None:
        return "the file meta information has no TransferSyntaxUID"
    from pydicom.uid import UID

    ts = UID(str(ts))
    if not ts.is_compressed:
        return None
    from pydicom.pixels import get_decoder

    try:
        decoder = get_decoder(ts)
    except NotImplementedError:
        return f"its pixel data uses the transfer syntax {ts} ({ts.name}), which pydicom cannot decode"
    if decoder.is_available:
        return None
    needs = []
    for line in decoder.missing_dependencies:  # e.g. "pylibjpeg - requires pylibjpeg>=2.0 and pylibjpeg-libjpeg>=2.1"
        plugin, _, req = line.partition(" - requires ")
        names = [re.split(r"[<>=!~ ]", part.strip(), maxsplit=1)[0] for part in req.split(" and ") if part.strip()]
        needs.append(" ".join(PLUGIN_PACKAGES.get(n, n) for n in names or [plugin.strip()]))
    return (f"its pixel data is compressed as {ts.name} and no decoder for it is installed; install one of: "
            + "; ".join(f"pip install {n}" for n in needs or ["pylibjpeg pylibjpeg-libjpeg"]))


def _floats(ds: Any, keyword: str, n: int, name: str) -> np.ndarray:
    value = getattr(ds, keyword, None)
    try:
        arr = np.asarray([float(v) for v in value], dtype=np.float64) if value is not None else None
    except (TypeError, ValueError):
        arr = None
    if arr is None or arr.shape != (n,) or not np.all(np.isfinite(arr)):
        raise DicomError(name, f"has no valid {keyword}: the slice cannot be placed in space")
    return arr


def frames_of(ds: Any) -> int:
    try:
        return int(getattr(ds, "NumberOfFrames", 1) or 1)
    except (TypeError, ValueError):
        return 1


@dataclass
class Series:
    """One image series, its slices ordered along the slice normal."""

    names: list[str]  # the files as the caller named them, in slice order
    paths: list[str]
    headers: list[Any]
    rows: int
    columns: int
    spacing: tuple[float, float]  # between rows, between columns (mm): PixelSpacing
    slice_spacing: float
    orientation: np.ndarray  # the 6 direction cosines (row direction, column direction)
    positions: np.ndarray  # slices x 3, ImagePositionPatient (LPS, mm)
    modality: str
    sop_uids: list[str] = field(default_factory=list)

    @property
    def num_slices(self) -> int:
        return len(self.paths)

    @property
    def voxels(self) -> int:
        return self.rows * self.columns * self.num_slices

    @property
    def normal(self) -> np.ndarray:
        return np.cross(self.orientation[:3], self.orientation[3:])

    def affine(self) -> np.ndarray:
        """The RAS voxel-to-world matrix of the ``rows, columns, slices`` volume (NIfTI convention)."""
        lps = np.eye(4)
        lps[:3, 0] = self.orientation[3:] * self.spacing[0]  # down the rows: the column direction
        lps[:3, 1] = self.orientation[:3] * self.spacing[1]  # along a row: the row direction
        lps[:3, 2] = self.normal * self.slice_spacing
        lps[:3, 3] = self.positions[0]
        return np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps

    def plane(self) -> str:
        """axial, coronal, sagittal or oblique, from the slice normal."""
        n = np.abs(self.normal)
        k = int(n.argmax())
        return ("sagittal", "coronal", "axial")[k] if n[k] > 0.99 else "oblique"

    def read_slice(self, k: int) -> Any:
        """Slice ``k``'s whole dataset (pixel data included)."""
        pydicom = _pydicom()
        try:
            return pydicom.dcmread(self.paths[k])
        except Exception as exc:  # noqa: BLE001
            raise DicomError(self.names[k], f"not a readable DICOM file ({type(exc).__name__})") from None

    def volume(self) -> np.ndarray:
        """float32 ``rows, columns, slices`` modality values (rescale slope and intercept applied)."""
        out = np.empty((self.rows, self.columns, self.num_slices), dtype=np.float32)
        for k in range(self.num_slices):
            out[:, :, k] = slice_values(self.read_slice(k), self.names[k], (self.rows, self.columns))
        return out

    def integral(self) -> bool:
        """Whether every slice's modality values are integers (slope and intercept whole numbers)."""
        return all(float(getattr(h, "RescaleSlope", 1) or 1).is_integer()
                   and float(getattr(h, "RescaleIntercept", 0) or 0).is_integer() for h in self.headers)


def slice_values(ds: Any, name: str, shape: tuple[int, int]) -> np.ndarray:
    """One single-frame image's pixels as float32 modality values."""
    problem = decoder_problem(ds)
    if problem:
        raise DicomError(name, problem)
    try:
        arr = ds.pixel_array
    except Exception as exc:  # noqa: BLE001 - corrupt or truncated pixel data
        raise DicomError(name, f"its pixel data cannot be decoded ({type(exc).__name__}: {exc})") from None
    if arr.shape != shape:
        raise DicomError(name, f"its pixel data has shape {arr.shape}, not {shape[0]}x{shape[1]}")
    slope = float(getattr(ds, "RescaleSlope", 1) or 1)
    intercept = float(getattr(ds, "RescaleIntercept", 0) or 0)
    return arr.astype(np.float32) * np.float32(slope) + np.float32(intercept)


def check_image(name: str, ds: Any) -> None:
    """Refuse an image that cannot be one slice of a series (before its pixels are read)."""
    if frames_of(ds) > 1:
        raise DicomError(name, f"is a multi-frame image ({frames_of(ds)} frames, e.g. an enhanced CT/MR object); "
                               "only single-frame series (one file per slice) are read: export the series as "
                               "classic single-frame images")
    if not hasattr(ds, "Rows") or not hasattr(ds, "Columns"):
        raise DicomError(name, "holds no image (no Rows/Columns)")
    if int(getattr(ds, "SamplesPerPixel", 1) or 1) != 1 or str(getattr(ds, "PhotometricInterpretation", "")) not in (
            "MONOCHROME1", "MONOCHROME2"):
        raise DicomError(name, f"is a {getattr(ds, 'PhotometricInterpretation', 'colour')} image; only monochrome "
                               "(CT/MR-like) slices are read")
    problem = decoder_problem(ds)
    if problem:
        raise DicomError(name, problem)


def build_series(items: list[tuple[str, str, Any]]) -> Series:
    """A series from ``(name, path, header)`` of its single-frame images (any order): geometry checked."""
    if not items:
        raise ValueError("a series needs at least one image")
    for name, _, ds in items:
        check_image(name, ds)
    name0, _, h0 = items[0]
    size = (int(h0.Rows), int(h0.Columns))
    iop = _floats(h0, "ImageOrientationPatient", 6, name0)
    spacing = _floats(h0, "PixelSpacing", 2, name0)
    if np.any(spacing <= 0):
        raise DicomError(name0, f"has a non-positive PixelSpacing {spacing.tolist()}")
    for name, _, ds in items[1:]:
        if (int(ds.Rows), int(ds.Columns)) != size:
            raise DicomError(name, f"is {int(ds.Rows)}x{int(ds.Columns)} pixels but {name0} of the same series is "
                                   f"{size[0]}x{size[1]}")
        if np.abs(_floats(ds, "ImageOrientationPatient", 6, name) - iop).max() > 1e-4:
            raise DicomError(name, f"has another ImageOrientationPatient than {name0} of the same series")
        if np.abs(_floats(ds, "PixelSpacing", 2, name) - spacing).max() > 1e-4 * float(spacing.max()):
            raise DicomError(name, f"has another PixelSpacing than {name0} of the same series")
    normal = np.cross(iop[:3], iop[3:])
    pos = np.array([_floats(ds, "ImagePositionPatient", 3, name) for name, _, ds in items])
    along = pos @ normal
    order = np.argsort(along, kind="stable")
    items = [items[i] for i in order]
    pos, along = pos[order], along[order]
    if len(items) > 1:
        gaps = np.diff(along)
        dup = int(np.argmin(gaps))
        if gaps[dup] < POSITION_TOLERANCE_MM:
            raise DicomError(items[dup + 1][0], f"lies at the same position as {items[dup][0]} of the same series "
                                                "(two images of one slice?)")
        step = float(np.median(gaps))
        worst = int(np.argmax(np.abs(gaps - step)))
        if abs(gaps[worst] - step) > max(POSITION_TOLERANCE_MM, 0.01 * step):
            raise DicomError(items[worst + 1][0], f"lies {gaps[worst]:.3f} mm from the slice before it "
                                                  f"({items[worst][0]}) where the series' slices are {step:.3f} mm "
                                                  "apart: a missing or extra slice?")
        inplane = pos - np.outer(along - along[0], normal) - pos[0]
        if np.abs(inplane).max() > max(POSITION_TOLERANCE_MM, 0.01 * float(spacing.max())):
            raise DicomError(items[int(np.abs(inplane).max(axis=1).argmax())][0],
                             "is shifted within the slice plane relative to the series' other slices")
    else:
        step = float(getattr(h0, "SpacingBetweenSlices", 0) or getattr(h0, "SliceThickness", 0) or 1.0)
    return Series(names=[n for n, _, _ in items], paths=[os.fspath(p) for _, p, _ in items],
                  headers=[d for _, _, d in items], rows=size[0], columns=size[1],
                  spacing=(float(spacing[0]), float(spacing[1])), slice_spacing=step, orientation=iop,
                  positions=pos, modality=str(getattr(h0, "Modality", "") or "unknown"),
                  sop_uids=[str(d.SOPInstanceUID) for _, _, d in items])


# -------------------------------------------------------------------------------------------- SEG in


def _item(seq: Any) -> Any:
    return seq[0] if seq is not None and len(seq) else None


def segment_labels(name: str, seg: Any) -> dict[int, str]:
    """{segment number: SegmentLabel} of a SEG; refuses unlabelled or repeated labels."""
    out: dict[int, str] = {}
    for item in getattr(seg, "SegmentSequence", None) or []:
        try:
            number = int(item.SegmentNumber)
        except (AttributeError, TypeError, ValueError):
            raise DicomError(name, "a segment has no valid SegmentNumber") from None
        label = str(getattr(item, "SegmentLabel", "") or "").strip()
        if not label:
            raise DicomError(name, f"segment {number} has no SegmentLabel: segments become classes by their labels")
        if label in out.values():
            raise DicomError(name, f"two segments are labelled {label!r}; each label must name one segment")
        out[number] = label
    if not out:
        raise DicomError(name, "holds no segments (empty SegmentSequence)")
    return out


def _frame_refs(seg: Any, frame: int) -> tuple[int | None, str | None, np.ndarray | None]:
    """(segment number, source SOP instance UID, plane position) of a SEG frame (0-based index)."""
    shared = _item(getattr(seg, "SharedFunctionalGroupsSequence", None))
    per = seg.PerFrameFunctionalGroupsSequence[frame] if "PerFrameFunctionalGroupsSequence" in seg else None

    def find(keyword: str) -> Any:
        for group in (per, shared):
            if group is not None and keyword in group:
                return _item(group[keyword].value)
        return None

    ident = find("SegmentIdentificationSequence")
    number = int(ident.ReferencedSegmentNumber) if ident is not None and "ReferencedSegmentNumber" in ident else None
    uid = None
    deriv = find("DerivationImageSequence")
    if deriv is not None:
        src = _item(getattr(deriv, "SourceImageSequence", None))
        if src is not None and "ReferencedSOPInstanceUID" in src:
            uid = str(src.ReferencedSOPInstanceUID)
    plane = find("PlanePositionSequence")
    pos = None
    if plane is not None and "ImagePositionPatient" in plane:
        pos = np.asarray([float(v) for v in plane.ImagePositionPatient])
    return number, uid, pos


def seg_frames(name: str, path: str | os.PathLike[str]) -> tuple[Any, np.ndarray]:
    """A SEG's full dataset and its frames as ``frames, rows, columns`` integers."""
    pydicom = _pydicom()
    try:
        seg = pydicom.dcmread(os.fspath(path))
    except Exception as exc:  # noqa: BLE001
        raise DicomError(name, f"not a readable DICOM file ({type(exc).__name__})") from None
    kind = str(getattr(seg, "SegmentationType", ""))
    if kind == "FRACTIONAL":
        raise DicomError(name, "is a FRACTIONAL segmentation (probabilities or occupancy); only BINARY and "
                               "LABELMAP segmentations are read, since a fractional one would need a threshold")
    if kind not in ("BINARY", "LABELMAP"):
        raise DicomError(name, f"has SegmentationType {kind or 'missing'}; expected BINARY or LABELMAP")
    problem = decoder_problem(seg)
    if problem:
        raise DicomError(name, problem)
    try:
        frames = np.asarray(seg.pixel_array)
    except Exception as exc:  # noqa: BLE001
        raise DicomError(name, f"its segmentation frames cannot be decoded ({type(exc).__name__}: {exc})") from None
    n = frames_of(seg)
    if frames.ndim == 2:
        frames = frames[None]
    if frames.shape[0] != n:
        raise DicomError(name, f"declares {n} frames but its pixel data holds {frames.shape[0]}")
    return seg, frames


def seg_label_volume(name: str, path: str | os.PathLike[str], series: Series,
                     class_of_label: dict[str, int]) -> np.ndarray:
    """The SEG as a uint8 ``rows, columns, slices`` class map of ``series`` (classes by segment label)."""
    try:
        return _seg_label_volume(name, path, series, class_of_label)
    except (AttributeError, KeyError, IndexError, TypeError, ValueError) as e:
        if isinstance(e, DicomError):
            raise
        raise DicomError(name, f"is a malformed SEG ({type(e).__name__}: {e})") from None


def _seg_label_volume(name: str, path: str | os.PathLike[str], series: Series,
                      class_of_label: dict[str, int]) -> np.ndarray:
    seg, frames = seg_frames(name, path)
    labels = segment_labels(name, seg)
    if (int(seg.Rows), int(seg.Columns)) != (series.rows, series.columns):
        raise DicomError(name, f"its frames are {int(seg.Rows)}x{int(seg.Columns)} pixels but the slices of the "
                               f"series they segment are {series.rows}x{series.columns}")
    for_uid = str(getattr(seg, "FrameOfReferenceUID", "") or "")
    if for_uid and for_uid != str(getattr(series.headers[0], "FrameOfReferenceUID", "") or for_uid):
        raise DicomError(name, f"its frame of reference differs from that of the series it segments "
                               f"({series.names[0]}): its frames cannot be placed on the slices")
    plane = _item(getattr(_item(getattr(seg, "SharedFunctionalGroupsSequence", None)), "PlaneOrientationSequence", None))
    if plane is not None and "ImageOrientationPatient" in plane:
        iop = np.asarray([float(v) for v in plane.ImageOrientationPatient])
        if iop.shape == (6,) and np.abs(iop - series.orientation).max() > 1e-4:
            raise DicomError(name, f"its frames are oriented {np.round(iop, 4).tolist()} but the slices of the "
                                   f"series they segment {np.round(series.orientation, 4).tolist()}")
    by_uid = {u: k for k, u in enumerate(series.sop_uids)}
    tol = max(POSITION_TOLERANCE_MM, 0.01 * min(series.spacing))
    out = np.zeros((series.rows, series.columns, series.num_slices), dtype=np.uint8)
    labelmap = str(seg.SegmentationType) == "LABELMAP"
    missing = []
    for f in range(frames.shape[0]):
        number, uid, pos = _frame_refs(seg, f)
        if uid is not None:
            if uid not in by_uid:
                missing.append(f + 1)
                continue
            k = by_uid[uid]
            if pos is not None and np.abs(pos - series.positions[k]).max() > tol:
                raise DicomError(name, f"frame {f + 1} is placed at {np.round(pos, 3).tolist()} mm but the slice it "
                                       f"references ({series.names[k]}) lies at "
                                       f"{np.round(series.positions[k], 3).tolist()} mm")
        elif pos is not None:
            near = np.abs(series.positions - pos).max(axis=1)
            k = int(near.argmin())
            if near[k] > tol:
                raise DicomError(name, f"frame {f + 1} lies at {np.round(pos, 3).tolist()} mm, where the series "
                                       "has no slice")
        else:
            raise DicomError(name, f"frame {f + 1} names neither its source image nor its position")
        frame = frames[f]
        if labelmap:
            values = {int(v) for v in np.unique(frame)} - {0}
            unknown = values - set(labels)
            if unknown:
                raise DicomError(name, f"frame {f + 1} holds values {sorted(unknown)} that are no segment")
            lut = np.zeros(int(frame.max()) + 1, dtype=np.uint8)
            for number_, label in labels.items():
                if number_ < len(lut):
                    lut[number_] = class_of_label[label]
            cls_map = lut[frame]
            hit = frame > 0
        else:
            if number is None or number not in labels:
                raise DicomError(name, f"frame {f + 1} refers to segment {number}, which the SEG does not describe")
            hit = frame > 0
            cls_map = np.full(frame.shape, class_of_label[labels[number]], dtype=np.uint8)
        clash = hit & (out[:, :, k] > 0) & (out[:, :, k] != cls_map)
        if clash.any():
            raise DicomError(name, f"segments overlap on slice {series.names[k]} ({int(clash.sum())} pixels in two "
                                   "segments): overlapping segments cannot be one class map")
        out[:, :, k][hit] = cls_map[hit]
    if missing:
        shown = ", ".join(str(f) for f in missing[:10]) + (" ..." if len(missing) > 10 else "")
        raise DicomError(name, f"{len(missing)} of its frames ({shown}) segment images that are not in the dataset "
                               "(their referenced SOP instances are missing)")
    return out


# -------------------------------------------------------------------------------------------- SEG out


def write_seg(series: Series, classes: np.ndarray, class_names: list[str], *, algorithm: str,
              version: str, series_number: int = 9001) -> Any:
    """A BINARY DICOM SEG of ``classes`` (uint8 ``rows, columns, slices``, 0 background) over ``series``,
    one segment per foreground class (labelled by its name), built and checked by highdicom."""
    try:
        import highdicom as hd
        from pydicom.sr.codedict import codes
    except ImportError:
        raise ImportError("writing a DICOM SEG needs highdicom: pip install highdicom") from None
    sources = [series.read_slice(k) for k in range(series.num_slices)]
    algo = hd.AlgorithmIdentificationSequence(name=algorithm[:64], version=version[:64],
                                              family=codes.cid7162.ArtificialIntelligence)
    descriptions = [
        hd.seg.SegmentDescription(
            segment_number=k, segment_label=name[:64], segmented_property_category=codes.SCT.Tissue,
            segmented_property_type=codes.SCT.Tissue, algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=algo)
        for k, name in enumerate(class_names) if k > 0
    ]
    pixels = np.ascontiguousarray(np.moveaxis(classes.astype(np.uint8), 2, 0))  # slices, rows, columns
    return hd.seg.Segmentation(
        source_images=sources, pixel_array=pixels, segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions, series_instance_uid=hd.UID(), series_number=series_number,
        sop_instance_uid=hd.UID(), instance_number=1, manufacturer="SIKD Studio",
        manufacturer_model_name=algorithm[:64], software_versions=version[:64], device_serial_number="none",
        series_description="SIKD Studio prediction", omit_empty_frames=False)


def group_files(named: list[tuple[str, str]], errors: list[DicomError] | None = None
                ) -> tuple[dict[str, list[tuple[str, str, Any]]], list[tuple[str, str, Any]], list[str]]:
    """Read every header of ``(name, path)``: images by SeriesInstanceUID, SEG objects, and skipped names
    (DICOMDIR and objects without an image). With ``errors`` a file that cannot be read is listed there
    instead of raising."""
    series: dict[str, list[tuple[str, str, Any]]] = {}
    segs, skipped = [], []
    for name, path in named:
        try:
            ds = read_header(name, path)
            sop_class = str(getattr(ds, "SOPClassUID", ""))
            if sop_class == SEG_SOP_CLASS or str(getattr(ds, "Modality", "")) == "SEG":
                segs.append((name, path, ds))
            elif sop_class == MEDIA_DIRECTORY_SOP_CLASS or not hasattr(ds, "Rows"):
                skipped.append(name)
            else:
                uid = str(getattr(ds, "SeriesInstanceUID", "") or "")
                if not uid or not str(getattr(ds, "SOPInstanceUID", "") or ""):
                    raise DicomError(name, "has no SeriesInstanceUID or SOPInstanceUID")
                series.setdefault(uid, []).append((name, path, ds))
        except DicomError as e:
            if errors is None:
                raise
            errors.append(e)
    return series, segs, skipped


def read_one_series(named: list[tuple[str, str]]) -> Series:
    """The one image series among ``(name, path)`` files (SEG objects and DICOMDIR are ignored)."""
    groups, _, _ = group_files(named)
    if len(groups) != 1:
        raise DicomError(named[0][0] if named else "<none>",
                         f"expected one image series, found {len(groups)}: send the files of one series")
    return build_series(next(iter(groups.values())))
